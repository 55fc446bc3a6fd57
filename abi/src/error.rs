//! The one error type of rsvp, shared by the library and the service.
//!
//! Each variant is an outcome a caller can act on. The mapping to
//! `tonic::Status` lives in [`crate::grpc`], the only place it is made.

use std::borrow::Cow;

use crate::types::{Conflict, ReservationId, ResourceId, Violation};

/// A boxed error kept as the cause of [`Error::Unavailable`],
/// [`Error::Aborted`] and [`Error::Internal`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Every way an rsvp operation can fail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A request field is malformed. `field` is the field's path in the
    /// protobuf request (`reservation.start`, `page_token`, ...).
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// Path of the offending field.
        field: &'static str,
        /// What is wrong with it, in words a user can act on.
        reason: Cow<'static, str>,
    },

    /// No reservation has this id.
    #[error("reservation {0} not found")]
    NotFound(ReservationId),

    /// No booking has this id.
    #[error("booking {0} not found")]
    BookingNotFound(crate::BookingId),

    /// No API token has this id.
    #[error("token {0} not found")]
    TokenNotFound(crate::TokenId),

    /// No registered resource has this id.
    #[error("resource {0} not found")]
    ResourceNotFound(ResourceId),

    /// A resource with this id is already registered (deleted or not).
    #[error("resource {0} is already registered")]
    ResourceExists(ResourceId),

    /// The requested interval overlaps live reservations of the resource,
    /// or more units than the capacity leaves free.
    #[error("{0}")]
    Conflict(Box<Conflict>),

    /// The resource's rules refuse the request: every rule broken.
    #[error("not allowed by the resource's policy: {}", list_violations(.0))]
    Policy(Vec<Violation>),

    /// A booking refused: every part that could not be made. Nothing was.
    #[error("{}", booking_message(.0))]
    BookingRejected(Vec<crate::PartRejection>),

    /// A capacity cut, or a delete, refused because live reservations hold
    /// more than it would leave.
    #[error("{0}")]
    CapacityInUse(Cow<'static, str>),

    /// An update named an etag that is no longer the resource's: re-read it.
    #[error(
        "the resource changed since it was read (etag {given:?}, now {current:?}); read it again"
    )]
    EtagMismatch {
        /// The etag the update named.
        given: String,
        /// The resource's etag now.
        current: String,
    },

    /// The reservation is in a state that does not allow the operation,
    /// such as confirming an expired hold.
    #[error("{0}")]
    FailedPrecondition(Cow<'static, str>),

    /// A change of a deleted resource: it cannot change.
    #[error("resource {0} is deleted: it cannot change")]
    ResourceDeleted(ResourceId),

    /// The caller may not do this, or may not read what it names (whether
    /// it exists or not).
    #[error("permission denied: {0}")]
    PermissionDenied(Cow<'static, str>),

    /// The caller's request rate is over its limit; retrying after
    /// `retry_after` may succeed.
    #[error("{what} rate limit exceeded; retry after {retry_after:?}")]
    RateLimited {
        /// The class of calls limited: reads, writes or streams.
        what: &'static str,
        /// How long until a call of the class would be admitted.
        retry_after: std::time::Duration,
    },

    /// The database cannot be reached; retrying later may succeed.
    #[error("database unavailable")]
    Unavailable(#[source] BoxError),

    /// Every database connection stayed busy for longer than the store
    /// waits for one; retrying later may succeed.
    #[error("no database connection became free in time")]
    Busy(#[source] BoxError),

    /// The operation lost repeated lock or serialization races; retrying
    /// later may succeed.
    #[error("{reason}")]
    Aborted {
        /// What was given up on.
        reason: Cow<'static, str>,
        /// The last database error seen.
        #[source]
        source: BoxError,
    },

    /// A change feed subscriber read too slowly and its buffer overflowed.
    /// It can resume with `after_change_id = last_change_id`.
    #[error("listener fell behind; resume with after_change_id = {last_change_id}")]
    Lagged {
        /// The last change the subscriber received (0 if none).
        last_change_id: i64,
    },

    /// The server's change feed stopped (it failed and starts again, or
    /// its store closed); a listener resumes with `after_change_id =
    /// last_change_id`.
    #[error("the change feed was interrupted; resume with after_change_id = {last_change_id}")]
    FeedInterrupted {
        /// The last change the listener received (0 if none).
        last_change_id: i64,
    },

    /// A listener asked to resume after a change whose successors were
    /// already deleted by retention; the oldest retained change is named.
    #[error(
        "changes after the requested id were deleted by retention; the oldest retained is \
         {oldest_change_id} (resume with after_change_id = 0 to start there)"
    )]
    ChangesExpired {
        /// The first change still retained.
        oldest_change_id: i64,
    },

    /// Anything else. The cause is logged, never shown to clients.
    #[error("internal error")]
    Internal(#[source] BoxError),
}

impl Error {
    /// An [`Error::InvalidArgument`] for `field`.
    pub fn invalid(field: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        Error::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }

    /// An [`Error::Internal`] wrapping `source`.
    pub fn internal(source: impl Into<BoxError>) -> Self {
        Error::Internal(source.into())
    }

    /// The error and its causes, one after the other: for logs, never for
    /// clients.
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            out.push_str(": ");
            out.push_str(&cause.to_string());
            source = cause.source();
        }
        out
    }

    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Unavailable(_)
                | Error::Busy(_)
                | Error::Aborted { .. }
                | Error::Lagged { .. }
                | Error::FeedInterrupted { .. }
                | Error::RateLimited { .. }
        )
    }
}

fn list_violations(v: &[Violation]) -> String {
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<derive_builder::UninitializedFieldError> for Error {
    fn from(e: derive_builder::UninitializedFieldError) -> Self {
        Error::invalid(e.field_name(), "required")
    }
}

/// Why a single value is invalid, before it is known which field it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub Cow<'static, str>);

impl InvalidValue {
    /// A reason in words.
    pub fn new(reason: impl Into<Cow<'static, str>>) -> Self {
        InvalidValue(reason.into())
    }
}

/// Attaches a field name to a value's validation failure.
pub trait FieldContext<T> {
    /// Turns `Err(InvalidValue)` into `Err(Error::InvalidArgument { field, .. })`.
    ///
    /// # Errors
    /// Passes the error on, named after `field`.
    fn field(self, field: &'static str) -> Result<T, Error>;
}

impl<T> FieldContext<T> for Result<T, InvalidValue> {
    fn field(self, field: &'static str) -> Result<T, Error> {
        self.map_err(|e| Error::InvalidArgument { field, reason: e.0 })
    }
}

/// `Result` with rsvp's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The message of a refused booking.
pub(crate) fn booking_message(parts: &[crate::PartRejection]) -> String {
    format!("booking refused: {}", list_parts(parts))
}

/// Every failing part, in at most [`crate::types::booking::MAX_REJECTION_MESSAGE`]
/// bytes (the details name them all).
fn list_parts(parts: &[crate::PartRejection]) -> String {
    let max = crate::types::booking::MAX_REJECTION_MESSAGE;
    let mut text = String::new();
    for (n, part) in parts.iter().enumerate() {
        let next = format!("{}{part}", if n == 0 { "" } else { "; " });
        if text.len() + next.len() > max - 40 {
            if n == 0 {
                text.extend(next.chars().scan(0, |len, c| {
                    *len += c.len_utf8();
                    (*len <= max - 40).then_some(c)
                }));
                text.push('…');
            }
            if n + 1 < parts.len() || n > 0 {
                text.push_str(&format!("; and {} more", parts.len() - n.max(1)));
            }
            break;
        }
        text.push_str(&next);
    }
    text
}
