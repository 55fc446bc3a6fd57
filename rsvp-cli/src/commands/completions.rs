//! `rsvp completions`: shell completion scripts.

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
pub fn run(args: CompletionsArgs) -> Result<(), CliError> {
    let mut command = Cli::command();
    match args.out {
        Some(path) => {
            let mut file = std::fs::File::create(&path).map_err(|e| {
                CliError::new(Exit::Other, format!("cannot write {}: {e}", path.display()))
            })?;
            clap_complete::generate(args.shell, &mut command, "rsvp", &mut file);
        }
        None => clap_complete::generate(args.shell, &mut command, "rsvp", &mut std::io::stdout()),
    }
    Ok(())
}
