//! Ids as tables show them: `…9efdbf210836`. Every id `rsvp` prints is
//! remembered (in `$XDG_CACHE_HOME/rsvp/ids`, else `~/.cache/rsvp/ids`),
//! so the next command takes it as shown, as git takes a short hash: a
//! unique ending finds it; an ambiguous one says so and lists the ids it
//! could be.

use std::{
    fs::{self, OpenOptions},
    io::Write,
    path::PathBuf,
};

use crate::{error::CliError, exit::Exit};

/// Ids remembered, at most (the older half is forgotten past twice this).
const KEEP: usize = 10_000;

/// The shortest ending accepted.
const MIN_DIGITS: usize = 6;

fn cache() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|home| PathBuf::from(home).join(".cache"))
        })?;
    Some(base.join("rsvp").join("ids"))
}

/// Remembers ids just printed. Best effort: a cache that cannot be written
/// only means that shortened ids cannot be resolved later.
pub fn remember<'a>(printed: impl IntoIterator<Item = &'a str>) {
    let Some(path) = cache() else { return };
    let mut text = String::new();
    for id in printed {
        if uuid::Uuid::parse_str(id).is_ok() {
            text.push_str(id);
            text.push('\n');
        }
    }
    if text.is_empty() {
        return;
    }
    if let Some(dir) = path.parent() {
        let _ = fs::create_dir_all(dir);
    }
    if let Ok(mut file) = OpenOptions::new().create(true).append(true).open(&path) {
        let _ = file.write_all(text.as_bytes());
    }
    // Keep the file small: past twice KEEP lines, keep the newest KEEP.
    if let Ok(meta) = fs::metadata(&path)
        && meta.len() > (2 * KEEP * 37) as u64
        && let Ok(all) = fs::read_to_string(&path)
    {
        let lines: Vec<&str> = all.lines().collect();
        let keep = lines[lines.len().saturating_sub(KEEP)..].join("\n") + "\n";
        let _ = fs::write(&path, keep);
    }
}

/// The full id that `typed` names: a whole id, or the ending of one that
/// `rsvp` printed (with or without the leading `…`).
///
/// # Errors
/// A usage error when `typed` is neither, or names several ids (listed).
pub fn resolve(typed: &str) -> Result<String, CliError> {
    let ending = typed
        .trim()
        .trim_start_matches('…')
        .trim_start_matches("...")
        .to_ascii_lowercase();
    if uuid::Uuid::parse_str(&ending).is_ok() {
        return Ok(ending);
    }
    let digits = ending.chars().filter(|c| c.is_ascii_hexdigit()).count();
    if digits < MIN_DIGITS || !ending.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(CliError::new(
            Exit::Usage,
            format!(
                "{typed:?} is not a reservation id: give the whole id, or at least its last \
                 {MIN_DIGITS} digits as a table shows them"
            ),
        ));
    }
    let known = cache()
        .and_then(|path| fs::read_to_string(path).ok())
        .unwrap_or_default();
    let mut found: Vec<&str> = known
        .lines()
        .filter(|id| id.ends_with(ending.as_str()))
        .collect();
    found.sort_unstable();
    found.dedup();
    match found.as_slice() {
        [one] => Ok((*one).to_string()),
        [] => Err(CliError::new(
            Exit::Usage,
            format!(
                "no id ending in {ending} was shown here; give the whole id (`rsvp -o json` \
                 prints ids whole)"
            ),
        )),
        many => Err(CliError::new(
            Exit::Usage,
            format!(
                "{ending} is ambiguous: it ends {} ids; give more digits:\n  {}",
                many.len(),
                many.join("\n  ")
            ),
        )),
    }
}
