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
    /// The call may or may not have taken effect (it timed out, or the
    /// connection broke after it was sent).
    unknown: bool,
    /// The message holds the server's words, whose times are RFC 3339.
    pub server_words: bool,
}

/// Added when a reserve or booking without --user is refused for having no
/// user: a server that authenticates fills in the caller; one that does not
/// cannot.
pub const NO_USER_HINT: &str =
    " (this server does not authenticate callers, so it cannot tell who you are: give --user)";

impl CliError {
    /// A failure with `exit` and `message`.
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        CliError {
            exit,
            message: message.into(),
            conflict: None,
            unknown: false,
            server_words: false,
        }
    }

    /// Whether the call may have taken effect although it failed.
    pub fn outcome_unknown(&self) -> bool {
        self.unknown
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

    /// A refused ConfirmBooking or CancelBooking, in the words of `done`
    /// ("confirmed", "cancelled"): no part changed.
    pub fn booking_change(status: Status, server: &str, done: &str) -> Self {
        match abi::booking_rejection_from_status(&status) {
            Some(rejection) => CliError::rejection(
                &rejection,
                &format!("booking not {done}; no part changed:"),
                "part ",
            ),
            None => CliError::from_status(status, server),
        }
    }

    /// A refused booking call: `heading`, then each failing part, named
    /// `label` and its number from 1.
    fn rejection(rejection: &pb::BookingRejection, heading: &str, label: &str) -> Self {
        let taken = rejection.parts.iter().any(|p| p.conflict.is_some());
        let exit = if taken { Exit::Conflict } else { Exit::Policy };
        CliError::new(exit, rejection_lines(rejection, heading, label))
    }

    /// What a failed call means to the user.
    pub fn from_status(status: Status, server: &str) -> Self {
        CliError {
            server_words: true,
            ..CliError::said_by(status, server)
        }
    }

    fn said_by(status: Status, server: &str) -> Self {
        // Said with the flag a resume point is given by.
        let message = status.message().replace("after_change_id = ", "--after ");
        match status.code() {
            Code::InvalidArgument => CliError::new(Exit::InvalidArgument, in_words(&message)),
            Code::NotFound => CliError::new(Exit::NotFound, message),
            Code::FailedPrecondition => {
                if let Some(rejection) = abi::booking_rejection_from_status(&status) {
                    return CliError::rejection(
                        &rejection,
                        "booking refused; nothing was made:",
                        "--part #",
                    );
                }
                if let Some(policy) = abi::policy_from_status(&status) {
                    return CliError::new(Exit::Policy, policy_lines(&policy));
                }
                match abi::conflict_from_status(&status) {
                    Some(conflict) => CliError {
                        exit: Exit::Conflict,
                        message: conflict_line(&conflict),
                        conflict: Some(Box::new(conflict)),
                        unknown: false,
                        server_words: false,
                    },
                    None => CliError::new(Exit::NotAllowed, format!("not allowed: {message}")),
                }
            }
            Code::AlreadyExists => CliError::new(Exit::NotAllowed, message),
            Code::Unavailable => {
                if message.contains("tcp connect")
                    || message.contains("transport")
                    || message.is_empty()
                {
                    CliError::unreachable(server, message)
                } else {
                    // Refused before the call was made (credentials that
                    // cannot be checked, no database connection free):
                    // nothing was done. Otherwise it may have been.
                    let attempted = !(message.starts_with("credentials cannot be checked")
                        || message.starts_with("the server is busy"));
                    CliError {
                        unknown: attempted,
                        ..CliError::new(
                            Exit::Unreachable,
                            format!("the server is unavailable: {message}"),
                        )
                    }
                }
            }
            // The connection broke under the call (the server died, a
            // proxy cut it): it may have been made before it broke.
            Code::Unknown
                if ["transport error", "h2 protocol error", "connection"]
                    .iter()
                    .any(|broke| message.contains(broke)) =>
            {
                CliError {
                    unknown: true,
                    ..CliError::new(
                        Exit::Unreachable,
                        format!(
                            "the connection to rsvp-server at {server} broke before it \
                             answered: {message}"
                        ),
                    )
                }
            }
            Code::DeadlineExceeded | Code::Cancelled => CliError {
                unknown: true,
                ..CliError::new(
                    Exit::Unreachable,
                    format!("rsvp-server at {server} did not answer in time (--timeout)"),
                )
            },
            Code::Aborted if abi::error_reason(&status).as_deref() == Some("ETAG_MISMATCH") => {
                CliError::new(Exit::Changed, message)
            }
            Code::Aborted => CliError::new(Exit::TryLater, message),
            Code::OutOfRange => CliError::new(Exit::Expired, message),
            Code::Unauthenticated => CliError::new(
                Exit::Denied,
                format!(
                    "not authenticated: {message} (--token or RSVP_TOKEN gives the token the \
                     server's operator made for you)"
                ),
            ),
            Code::PermissionDenied => CliError::new(Exit::Denied, message),
            Code::ResourceExhausted => CliError::new(
                Exit::TryLater,
                match abi::retry_delay(&status) {
                    Some(wait) => format!(
                        "{message} (try again in {})",
                        humantime::format_duration(std::time::Duration::from_secs(
                            wait.as_secs().max(1)
                        ))
                    ),
                    None => message,
                },
            ),
            code => CliError::new(Exit::Other, format!("{code:?}: {message}")),
        }
    }
}

/// The flag a request field came from, for messages in the user's words.
fn flag(field: &str) -> Option<&'static str> {
    Some(match field {
        "reservation.user_id" | "user_id" => "--user",
        "reservation.resource_id" | "resource_id" => "--resource",
        "reservation.start" | "start" => "--start",
        "reservation.end" | "end" => "--end",
        "reservation.note" | "note" => "--note",
        "reservation.status" | "status" => "--status",
        "hold" => "--hold",
        "request_id" => "--request-id",
        "page_size" => "--page-size",
        "page_token" => "--page-token",
        "after_change_id" => "--after",
        "id" => "the id",
        "reservation.quantity" | "quantity" => "--quantity",
        _ => return resource_flag(field),
    })
}

/// The flag of `rsvp resource create|update` a resource's field came from:
/// `resource.policy.granularity` is `--grid`, `resource.open_periods[1]`
/// is `--period`.
fn resource_flag(field: &str) -> Option<&'static str> {
    let field = field.strip_prefix("resource.")?;
    let (policy, field) = match field.strip_prefix("policy.") {
        Some(rule) => (true, rule),
        None => (false, field),
    };
    let field = field.split(['[', '.']).next().unwrap_or(field);
    let rule = |name: &str| match name {
        "max_quantity" => Some("--max-quantity"),
        _ => crate::commands::resource::RULES
            .iter()
            .find(|r| r.field == name)
            .map(|r| r.option),
    };
    if policy {
        return rule(field);
    }
    Some(match field {
        "capacity" => "--capacity",
        "display_name" => "--name",
        "time_zone" => "--zone",
        "opening_hours" => "--open",
        "open_periods" => "--period",
        "admins" => "--admin",
        "labels" => "--label",
        _ => return None,
    })
}

/// `field: reason` said with the flag the field came from.
fn in_words(message: &str) -> String {
    // A booking's part: `reservations[2].start` is the third --part.
    if let Some(rest) = message.strip_prefix("reservations[")
        && let Some((index, rest)) = rest.split_once("].")
        && let Ok(index) = index.parse::<usize>()
    {
        return format!("--part #{}: {rest}", index + 1);
    }
    match message.split_once(": ") {
        Some((field, reason)) => match flag(field) {
            Some(flag) => format!("{flag}: {reason}"),
            None => format!("invalid argument: {message}"),
        },
        None => format!("invalid argument: {message}"),
    }
}

fn conflict_line(conflict: &pb::ReservationConflict) -> String {
    let n = conflict.existing.len() + conflict.omitted as usize;
    // A refusal of many parts with long ids may leave the ids out.
    let resource = conflict
        .requested
        .as_ref()
        .map(|r| r.resource_id.as_str())
        .filter(|id| !id.is_empty())
        .unwrap_or("the resource");
    let in_the_way = format!(
        "{n} live reservation{} in the way",
        if n == 1 { "" } else { "s" }
    );
    let capacity = conflict.capacity;
    let units = |n: u32| format!("{n} unit{}", if n == 1 { "" } else { "s" });
    match conflict.requested.as_ref().map_or(1, |r| r.quantity) {
        wanted if wanted > capacity => format!(
            "{resource} has {}: {wanted} cannot be held at once",
            units(capacity)
        ),
        0 if capacity > 1 => format!(
            "{resource} does not have all {capacity} units free for all that time, as a block \
             of every unit needs ({in_the_way})"
        ),
        1 if capacity > 1 => format!(
            "{resource} has none of its {capacity} units free for part of that time \
             ({in_the_way})"
        ),
        wanted if capacity > 1 => format!(
            "{resource} has fewer than {wanted} of its {capacity} units free for part of that \
             time ({in_the_way})"
        ),
        _ => format!("{resource} is taken: {in_the_way}"),
    }
}

/// Where a conflict's resource is full, in `zone`, when the reservations
/// in the way do not show it: a resource of several units, or a clash of
/// buffers (full outside the requested interval).
pub fn full_line(conflict: &pb::ReservationConflict, zone: crate::time::Zone) -> Option<String> {
    let span =
        |i: &pb::Interval| Some((crate::output::time(&i.start)?, crate::output::time(&i.end)?));
    let asked = conflict
        .requested
        .as_ref()
        .and_then(|r| Some((crate::output::time(&r.start)?, crate::output::time(&r.end)?)));
    // More units than the resource has: full everywhere, as the message
    // already says.
    if conflict.requested.as_ref().map_or(1, |r| r.quantity) > conflict.capacity {
        return None;
    }
    let full: Vec<_> = conflict.full.iter().filter_map(span).collect();
    // Full where no reservation in the way is (they are all listed): what
    // fills it is the time kept free around them.
    let mut held: Vec<_> = conflict
        .existing
        .iter()
        .filter_map(|r| Some((crate::output::time(&r.start)?, crate::output::time(&r.end)?)))
        .collect();
    held.sort();
    let mut merged: Vec<(_, _)> = Vec::new();
    for (s, e) in held {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    let outside = asked.is_some_and(|(s, e)| full.iter().any(|(a, b)| *a < s || *b > e))
        || (conflict.omitted == 0
            && !merged.is_empty()
            && full
                .iter()
                .any(|(a, b)| !merged.iter().any(|(s, e)| s <= a && b <= e)));
    if full.is_empty() || (conflict.capacity <= 1 && !outside) {
        return None;
    }
    let shown: Vec<String> = full
        .iter()
        .take(3)
        .map(|(s, e)| format!("{} to {}", zone.date_time(*s), zone.end_after(*s, *e)))
        .collect();
    let more = match full.len().saturating_sub(3) {
        0 => String::new(),
        n => format!(", and {n} more"),
    };
    let label = zone.label(full[0].0);
    Some(format!(
        "full{}: {} {label}{more}",
        if outside {
            " (the buffers kept free around reservations count)"
        } else {
            ""
        },
        shown.join(", ")
    ))
}

/// A refused booking call: `heading`, then every failing part, one per
/// line, numbered from 1 (as the `--part`s were given, for a Book).
fn rejection_lines(rejection: &pb::BookingRejection, heading: &str, label: &str) -> String {
    let mut text = String::from(heading);
    for p in &rejection.parts {
        let why = match (&p.conflict, &p.policy) {
            (Some(conflict), _) => conflict_line(conflict),
            (None, Some(policy)) => policy
                .violations
                .iter()
                .map(|v| v.message.as_str())
                .collect::<Vec<_>>()
                .join("; "),
            (None, None) => "refused".into(),
        };
        let resource = match p.resource_id.as_str() {
            "" => String::new(),
            id => format!(" ({id})"),
        };
        text.push_str(&format!("\n  {label}{}{resource}: {why}", p.index + 1));
    }
    text
}

/// A policy refusal: every rule broken, one per line.
fn policy_lines(policy: &pb::PolicyViolation) -> String {
    let mut text = String::from("not allowed by the resource's booking policy:");
    for v in &policy.violations {
        let rule = pb::PolicyRule::try_from(v.rule)
            .map(|r| {
                r.as_str_name()
                    .trim_start_matches("POLICY_RULE_")
                    .to_lowercase()
            })
            .unwrap_or_else(|_| "rule".into());
        text.push_str(&format!("\n  - {}: {}", rule.replace('_', " "), v.message));
    }
    text
}

impl From<abi::Error> for CliError {
    fn from(e: abi::Error) -> Self {
        match e {
            abi::Error::InvalidArgument { .. } => {
                CliError::new(Exit::InvalidArgument, in_words(&e.to_string()))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A call the server refused before making it is not reported as one
    /// that may have been made; one the database may have seen is.
    #[test]
    fn only_a_call_that_may_have_been_made_says_so() {
        let unknown =
            |status: Status| CliError::from_status(status, "http://rsvp:50051").outcome_unknown();
        assert!(!unknown(Status::unavailable(
            "credentials cannot be checked now: the server cannot read its tokens; retry later"
        )));
        assert!(!unknown(Status::from(abi::Error::Busy(
            "pool timed out".into()
        ))));
        assert!(unknown(Status::from(abi::Error::Unavailable(
            "connection reset".into()
        ))));
        assert!(!unknown(Status::unavailable("tcp connect error")));
    }
}
