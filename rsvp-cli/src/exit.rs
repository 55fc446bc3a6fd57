//! The exit codes of `rsvp`, one per outcome a script can act on.

use std::process::ExitCode;

/// Why `rsvp` exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Done.
    Ok = 0,
    /// Anything not listed below.
    Other = 1,
    /// The command line is wrong (unknown flag, unreadable time...).
    Usage = 2,
    /// The resource is taken for (part of) that time.
    Conflict = 3,
    /// No reservation has that id.
    NotFound = 4,
    /// The server refused a value (the message names the field).
    InvalidArgument = 5,
    /// The server cannot be reached, or cannot reach its database.
    Unreachable = 6,
    /// The reservation's or resource's state does not allow it (e.g.
    /// confirming an expired hold, deleting a resource still in use).
    NotAllowed = 7,
    /// The resource's booking policy does not allow it (too soon, off the
    /// grid, outside opening hours...); the rules broken are listed.
    Policy = 8,
    /// Credentials are missing or not valid, or the caller may not do
    /// this (or read what it names).
    Denied = 9,
    /// The resource changed since it was read (`--etag`): read it again,
    /// then decide.
    Changed = 10,
    /// Refused for now (a rate limit, too many open streams, writes racing
    /// for the same resource): the same command may succeed later.
    TryLater = 11,
    /// The changes to resume from were deleted by retention (`--after`).
    Expired = 12,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}
