//! What can go wrong, said once, with the exit code it deserves.

use abi::pb;
use tonic::{Code, Status};

use crate::exit::Exit;

/// A failed command.
#[derive(Debug)]
pub struct CliError {
    /// How `rsvp` exits.
    pub exit: Exit,
    /// One line for stderr, saying what to do next where there is something.
    pub message: String,
    /// The reservations in the way, for a conflict.
    pub conflict: Option<Box<pb::ReservationConflict>>,
}

impl CliError {
    /// A failure with `exit` and `message`.
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        CliError {
            exit,
            message: message.into(),
            conflict: None,
        }
    }

    /// The server at `server` cannot be reached.
    pub fn unreachable(server: &str, cause: impl std::fmt::Display) -> Self {
        CliError::new(
            Exit::Unreachable,
            format!(
                "cannot reach rsvp-server at {server}: {cause}; is it running? \
                 (--server or RSVP_SERVER sets the address)"
            ),
        )
    }

    /// What a failed call means to the user.
    pub fn from_status(status: Status, server: &str) -> Self {
        let message = status.message().to_string();
        match status.code() {
            Code::InvalidArgument => CliError::new(
                Exit::InvalidArgument,
                format!("invalid argument: {message}"),
            ),
            Code::NotFound => CliError::new(Exit::NotFound, message),
            Code::FailedPrecondition => match abi::conflict_from_status(&status) {
                Some(conflict) => CliError {
                    exit: Exit::Conflict,
                    message: conflict_line(&conflict),
                    conflict: Some(Box::new(conflict)),
                },
                None => CliError::new(Exit::NotAllowed, format!("not allowed: {message}")),
            },
            Code::Unavailable => {
                if message.contains("tcp connect")
                    || message.contains("transport")
                    || message.is_empty()
                {
                    CliError::unreachable(server, message)
                } else {
                    CliError::new(
                        Exit::Unreachable,
                        format!("the server is unavailable: {message}"),
                    )
                }
            }
            Code::DeadlineExceeded => CliError::new(
                Exit::Unreachable,
                format!("rsvp-server at {server} did not answer in time (--timeout)"),
            ),
            Code::Aborted => CliError::new(Exit::Other, message),
            code => CliError::new(Exit::Other, format!("{code:?}: {message}")),
        }
    }
}

fn conflict_line(conflict: &pb::ReservationConflict) -> String {
    let n = conflict.existing.len();
    let resource = conflict
        .requested
        .as_ref()
        .map(|r| r.resource_id.as_str())
        .unwrap_or("the resource");
    format!(
        "{resource} is taken: {n} live reservation{} in the way",
        if n == 1 { "" } else { "s" }
    )
}

impl From<abi::Error> for CliError {
    fn from(e: abi::Error) -> Self {
        match e {
            abi::Error::InvalidArgument { .. } => {
                CliError::new(Exit::InvalidArgument, format!("invalid argument: {e}"))
            }
            e => CliError::new(Exit::Other, e.to_string()),
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            // The reader went away (`rsvp query | head`): nothing more to say.
            return CliError::new(Exit::Ok, "");
        }
        CliError::new(Exit::Other, format!("cannot write the output: {e}"))
    }
}
