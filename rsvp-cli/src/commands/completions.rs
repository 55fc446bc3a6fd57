//! `rsvp completions`: shell completion scripts.

use std::io::Write;

use clap::CommandFactory;

use crate::{
    cli::{Cli, CompletionsArgs},
    error::CliError,
    exit::Exit,
};

/// Prints (or writes) the completion script for the shell.
///
/// # Errors
/// When the file cannot be written.
pub fn run(args: CompletionsArgs, out: &mut impl Write) -> Result<(), CliError> {
    let mut command = Cli::command();
    // Written whole from a buffer: a reader that stops early (`| head`)
    // is not an error.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "rsvp", &mut script);
    match args.out {
        Some(path) => std::fs::write(&path, script).map_err(|e| {
            CliError::new(Exit::Other, format!("cannot write {}: {e}", path.display()))
        })?,
        None => {
            out.write_all(&script)?;
            out.flush()?;
        }
    }
    Ok(())
}
