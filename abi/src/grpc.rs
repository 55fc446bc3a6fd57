//! The mapping from [`Error`] to `tonic::Status` (the only one), and the
//! client-side reading of a conflict back out of a status.

use prost::{Message, bytes::Bytes};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::{Error, pb};

/// The `type_url` of a `google.rpc.ErrorInfo` packed in a status' details.
const ERROR_INFO_TYPE_URL: &str = "type.googleapis.com/google.rpc.ErrorInfo";

/// A status whose details carry `detail` (if any) and an `ErrorInfo` with
/// `reason` in the `rsvp` domain.
fn status_with(
    code: Code,
    message: String,
    reason: &str,
    detail: Option<prost_types::Any>,
) -> Status {
    let info = tonic_types::pb::ErrorInfo {
        reason: reason.to_string(),
        domain: "rsvp".to_string(),
        metadata: Default::default(),
    };
    let mut details: Vec<prost_types::Any> = detail.into_iter().collect();
    details.push(prost_types::Any {
        type_url: ERROR_INFO_TYPE_URL.to_string(),
        value: info.encode_to_vec(),
    });
    let rpc = tonic_types::pb::Status {
        code: code as i32,
        message: message.clone(),
        details,
    };
    Status::with_details(code, message, Bytes::from(rpc.encode_to_vec()))
}

/// The most bytes a refusal's status takes in its trailers: the message as
/// `grpc-message` carries it (percent-encoded) and the details as
/// `grpc-status-details-bin` does (base64). gRPC clients accept 8 KiB of
/// headers (grpc-java always, C-core's soft limit); this leaves room for
/// the others.
pub const MAX_STATUS_WIRE_BYTES: usize = 7 * 1024;

/// The response header of a Listen naming the change id its stream starts
/// after: the request's `after_change_id`, or, without one, where "from
/// now" began. A client cut off before its first change resumes from it.
pub const AFTER_CHANGE_ID: &str = "rsvp-after-change-id";

/// The change id a Listen's response names in [`AFTER_CHANGE_ID`].
pub fn after_change_id(metadata: &tonic::metadata::MetadataMap) -> Option<i64> {
    metadata.get(AFTER_CHANGE_ID)?.to_str().ok()?.parse().ok()
}

/// What the google.rpc.Status around one detail adds to it and to the
/// message it repeats, at most: the code, two `Any` wrappers with their
/// type URLs, and the `ErrorInfo`.
const STATUS_OVERHEAD: usize = 256;

/// How many bytes `status` takes in its trailers (see
/// [`MAX_STATUS_WIRE_BYTES`]).
pub fn wire_len(status: &Status) -> usize {
    percent_encoded_len(status.message()) + base64_len(status.details().len())
}

/// At most how many bytes a refusal with `message` and one detail of
/// `detail_len` encoded bytes takes in its trailers, as [`status_with`]
/// makes it.
pub(crate) fn refusal_wire_len(message: &str, detail_len: usize) -> usize {
    percent_encoded_len(message) + base64_len(detail_len + message.len() + STATUS_OVERHEAD)
}

/// The message of a conflict's status.
pub(crate) fn conflict_message(conflict: &crate::Conflict) -> String {
    format!("reservation conflict: {conflict}")
}

/// The length of `message` percent-encoded as tonic writes `grpc-message`:
/// controls, bytes past ASCII and ` "#%<>`?{}` take three bytes.
fn percent_encoded_len(message: &str) -> usize {
    message
        .bytes()
        .map(|b| {
            if !(0x20..0x7f).contains(&b) || b" \"#%<>`?{}".contains(&b) {
                3
            } else {
                1
            }
        })
        .sum()
}

/// The length of `n` bytes in base64 without padding.
fn base64_len(n: usize) -> usize {
    (n * 4).div_ceil(3)
}

/// Makes a refused booking's details fit in the trailers where cutting
/// what its parts list (`PartRejection::fit`) was not enough: twenty parts
/// with ids of 64 characters of 4 bytes. Longest first, the copies of what
/// a part asked for lose their user and resource ids (the request has
/// them), then the parts their resource ids. Every part keeps its index,
/// which names it in the request.
fn compact_rejection(rejection: &mut pb::BookingRejection, message: &str) {
    type Shrink = fn(&mut pb::PartRejection) -> usize;
    fn requested_ids(part: &mut pb::PartRejection) -> usize {
        let requested = part.conflict.as_mut().and_then(|c| c.requested.as_mut());
        requested.map_or(0, |r| {
            std::mem::take(&mut r.user_id).len() + std::mem::take(&mut r.resource_id).len()
        })
    }
    fn resource_id(part: &mut pb::PartRejection) -> usize {
        std::mem::take(&mut part.resource_id).len()
    }
    let over = |r: &pb::BookingRejection| {
        refusal_wire_len(message, r.encoded_len()) > MAX_STATUS_WIRE_BYTES
    };
    for shrink in [requested_ids as Shrink, resource_id] {
        // Each part's saving, measured on a copy; the largest go first.
        let mut savings: Vec<(usize, usize)> = rejection
            .parts
            .iter()
            .enumerate()
            .map(|(i, part)| (shrink(&mut part.clone()), i))
            .filter(|(saved, _)| *saved > 0)
            .collect();
        savings.sort_unstable_by(|a, b| b.cmp(a));
        for (_, i) in savings {
            if !over(rejection) {
                return;
            }
            shrink(&mut rejection.parts[i]);
        }
    }
}

/// `INVALID_ARGUMENT` for `field` (a path such as `reservation.start`),
/// worded as every invalid argument is, with a `google.rpc.BadRequest`
/// naming the field.
pub fn invalid_argument(field: &str, reason: &str) -> Status {
    Status::with_error_details(
        Code::InvalidArgument,
        format!("{field}: {reason}"),
        ErrorDetails::with_bad_request_violation(field, reason),
    )
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match &e {
            Error::InvalidArgument { field, reason } => invalid_argument(field, reason),
            Error::NotFound(_)
            | Error::ResourceNotFound(_)
            | Error::BookingNotFound(_)
            | Error::TokenNotFound(_) => Status::not_found(e.to_string()),
            Error::ResourceExists(_) => Status::already_exists(e.to_string()),
            Error::Conflict(conflict) => {
                let any = prost_types::Any {
                    type_url: pb::RESERVATION_CONFLICT_TYPE_URL.to_string(),
                    value: pb::ReservationConflict::from(conflict.as_ref()).encode_to_vec(),
                };
                status_with(
                    Code::FailedPrecondition,
                    conflict_message(conflict),
                    "RESERVATION_CONFLICT",
                    Some(any),
                )
            }
            Error::Policy(violations) => {
                let any = prost_types::Any {
                    type_url: pb::POLICY_VIOLATION_TYPE_URL.to_string(),
                    value: pb::PolicyViolation::from(violations.as_slice()).encode_to_vec(),
                };
                status_with(
                    Code::FailedPrecondition,
                    e.to_string(),
                    "POLICY_VIOLATION",
                    Some(any),
                )
            }
            Error::BookingRejected(parts) => {
                let message = e.to_string();
                let mut detail = crate::types::booking::booking_rejection(parts);
                compact_rejection(&mut detail, &message);
                let any = prost_types::Any {
                    type_url: pb::BOOKING_REJECTION_TYPE_URL.to_string(),
                    value: detail.encode_to_vec(),
                };
                status_with(
                    Code::FailedPrecondition,
                    message,
                    "BOOKING_REJECTED",
                    Some(any),
                )
            }
            Error::CapacityInUse(_) => status_with(
                Code::FailedPrecondition,
                e.to_string(),
                "CAPACITY_IN_USE",
                None,
            ),
            Error::FailedPrecondition(_) => status_with(
                Code::FailedPrecondition,
                e.to_string(),
                "INVALID_TRANSITION",
                None,
            ),
            Error::ResourceDeleted(_) => status_with(
                Code::FailedPrecondition,
                e.to_string(),
                "RESOURCE_DELETED",
                None,
            ),
            Error::EtagMismatch { .. } => {
                status_with(Code::Aborted, e.to_string(), "ETAG_MISMATCH", None)
            }
            Error::Unavailable(_) => {
                Status::unavailable("the database is unavailable; retry later")
            }
            Error::Busy(_) => Status::unavailable(
                "the server is busy: every database connection is in use; retry later",
            ),
            Error::Aborted { reason, .. } => status_with(
                Code::Aborted,
                format!("{reason}; retry the call"),
                "LOCK_CONTENTION",
                None,
            ),
            Error::Lagged { last_change_id } => Status::with_error_details(
                Code::ResourceExhausted,
                e.to_string(),
                ErrorDetails::with_error_info(
                    "LISTENER_LAGGED",
                    "rsvp",
                    [("last_change_id".to_string(), last_change_id.to_string())],
                ),
            ),
            Error::FeedInterrupted { .. } => Status::unavailable(e.to_string()),
            Error::PermissionDenied(_) => status_with(
                Code::PermissionDenied,
                e.to_string(),
                "PERMISSION_DENIED",
                None,
            ),
            Error::RateLimited { what, retry_after } => {
                let mut details = ErrorDetails::with_retry_info(Some(*retry_after));
                details.set_error_info(
                    "RATE_LIMITED",
                    "rsvp",
                    [("limit".to_string(), (*what).to_string())],
                );
                Status::with_error_details(Code::ResourceExhausted, e.to_string(), details)
            }
            Error::ChangesExpired { oldest_change_id } => Status::with_error_details(
                Code::OutOfRange,
                e.to_string(),
                ErrorDetails::with_error_info(
                    "CHANGES_EXPIRED",
                    "rsvp",
                    [("oldest_change_id".to_string(), oldest_change_id.to_string())],
                ),
            ),
            Error::Internal(_) => Status::internal("internal error"),
        }
    }
}

/// The [`pb::PolicyViolation`] carried in a FAILED_PRECONDITION status'
/// details, if there is one.
pub fn policy_from_status(status: &Status) -> Option<pb::PolicyViolation> {
    if status.code() != Code::FailedPrecondition || status.details().is_empty() {
        return None;
    }
    let rpc = tonic_types::pb::Status::decode(status.details()).ok()?;
    rpc.details
        .iter()
        .find(|any| any.type_url == pb::POLICY_VIOLATION_TYPE_URL)
        .and_then(|any| pb::PolicyViolation::decode(any.value.as_slice()).ok())
}

/// The [`pb::BookingRejection`] carried in a FAILED_PRECONDITION status'
/// details, if there is one.
pub fn booking_rejection_from_status(status: &Status) -> Option<pb::BookingRejection> {
    if status.code() != Code::FailedPrecondition || status.details().is_empty() {
        return None;
    }
    let rpc = tonic_types::pb::Status::decode(status.details()).ok()?;
    rpc.details
        .iter()
        .find(|any| any.type_url == pb::BOOKING_REJECTION_TYPE_URL)
        .and_then(|any| pb::BookingRejection::decode(any.value.as_slice()).ok())
}

/// The `google.rpc.ErrorInfo` reason a status carries (`ETAG_MISMATCH`,
/// `RATE_LIMITED`, ...), if it carries one.
pub fn error_reason(status: &Status) -> Option<String> {
    status.get_details_error_info().map(|info| info.reason)
}

/// How long a status' `google.rpc.RetryInfo` says to wait before trying
/// again, if it says.
pub fn retry_delay(status: &Status) -> Option<std::time::Duration> {
    status.get_details_retry_info()?.retry_delay
}

/// The [`pb::ReservationConflict`] carried in a FAILED_PRECONDITION status'
/// details, if there is one.
pub fn conflict_from_status(status: &Status) -> Option<pb::ReservationConflict> {
    if status.code() != Code::FailedPrecondition || status.details().is_empty() {
        return None;
    }
    let rpc = tonic_types::pb::Status::decode(status.details()).ok()?;
    rpc.details
        .iter()
        .find(|any| any.type_url == pb::RESERVATION_CONFLICT_TYPE_URL)
        .and_then(|any| pb::ReservationConflict::decode(any.value.as_slice()).ok())
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::types::*;

    fn reservation() -> Reservation {
        let at = |s| DateTime::from_timestamp(s, 0).unwrap();
        Reservation {
            id: ReservationId::new(),
            user_id: UserId::parse("alice").unwrap(),
            resource_id: ResourceId::parse("room").unwrap(),
            status: ReservationStatus::Confirmed,
            timespan: Timespan::new(at(0), at(60)).unwrap(),
            note: Note::default(),
            created_at: at(0),
            updated_at: at(0),
            expires_at: None,
            quantity: 1,
            booking_id: None,
            checked_in_at: None,
            checked_out_at: None,
        }
    }

    #[test]
    fn conflicts_travel_in_status_details() {
        let existing = reservation();
        let conflict = Conflict {
            requested: Requested {
                id: None,
                user_id: UserId::parse("bob").unwrap(),
                resource_id: existing.resource_id.clone(),
                status: ReservationStatus::Pending,
                timespan: existing.timespan,
                note: Note::default(),
                quantity: 1,
            },
            existing: vec![existing.clone()],
            omitted: 0,
            capacity: 1,
            full: vec![existing.timespan],
        };
        let status = Status::from(Error::Conflict(Box::new(conflict)));
        assert_eq!(status.code(), Code::FailedPrecondition);
        let decoded = conflict_from_status(&status).expect("conflict details");
        assert_eq!(decoded.existing.len(), 1);
        assert_eq!(decoded.existing[0].id, existing.id.to_string());
        assert_eq!(decoded.requested.unwrap().user_id, "bob");
        assert_eq!(decoded.capacity, 1);
        assert_eq!(decoded.full.len(), 1);
        let info = status.get_details_error_info().expect("error info");
        assert_eq!(info.reason, "RESERVATION_CONFLICT");
    }

    #[test]
    fn policy_refusals_list_every_rule_and_say_so() {
        let status = Status::from(Error::Policy(vec![
            Violation {
                rule: Rule::MinNotice,
                message: "starts at least 1d after now".into(),
            },
            Violation {
                rule: Rule::Granularity,
                message: "starts and ends on a 15m grid".into(),
            },
        ]));
        assert_eq!(status.code(), Code::FailedPrecondition);
        let policy = policy_from_status(&status).expect("policy details");
        assert_eq!(policy.violations.len(), 2);
        assert_eq!(policy.violations[0].rule, pb::PolicyRule::MinNotice as i32);
        assert!(conflict_from_status(&status).is_none());
        let info = status.get_details_error_info().expect("error info");
        assert_eq!(info.reason, "POLICY_VIOLATION");
        assert_eq!(info.domain, "rsvp");
    }

    #[test]
    fn expired_changes_are_out_of_range_naming_the_oldest_kept() {
        let status = Status::from(Error::ChangesExpired {
            oldest_change_id: 42,
        });
        assert_eq!(status.code(), Code::OutOfRange);
        assert!(status.message().contains("42"), "{}", status.message());
        let info = status.get_details_error_info().expect("error info");
        assert_eq!(info.reason, "CHANGES_EXPIRED");
        assert_eq!(info.domain, "rsvp");
        assert_eq!(
            info.metadata.get("oldest_change_id").map(String::as_str),
            Some("42")
        );
    }

    /// Statuses that share a code are told apart by their ErrorInfo
    /// reason, as the design lists them.
    #[test]
    fn each_refusal_names_its_reason() {
        let cases = [
            (
                Error::CapacityInUse("held".into()),
                Code::FailedPrecondition,
                "CAPACITY_IN_USE",
            ),
            (
                Error::FailedPrecondition("an expired hold".into()),
                Code::FailedPrecondition,
                "INVALID_TRANSITION",
            ),
            (
                Error::ResourceDeleted(crate::ResourceId::parse("gone").unwrap()),
                Code::FailedPrecondition,
                "RESOURCE_DELETED",
            ),
            (
                Error::BookingRejected(Vec::new()),
                Code::FailedPrecondition,
                "BOOKING_REJECTED",
            ),
            (
                Error::EtagMismatch {
                    given: "1".into(),
                    current: "2".into(),
                },
                Code::Aborted,
                "ETAG_MISMATCH",
            ),
            (
                Error::Aborted {
                    reason: "the resource kept changing".into(),
                    source: "deadlock detected".into(),
                },
                Code::Aborted,
                "LOCK_CONTENTION",
            ),
            (
                Error::Lagged { last_change_id: 7 },
                Code::ResourceExhausted,
                "LISTENER_LAGGED",
            ),
            (
                Error::RateLimited {
                    what: "writes",
                    retry_after: std::time::Duration::from_millis(5),
                },
                Code::ResourceExhausted,
                "RATE_LIMITED",
            ),
            (
                Error::PermissionDenied("not yours".into()),
                Code::PermissionDenied,
                "PERMISSION_DENIED",
            ),
        ];
        for (error, code, reason) in cases {
            let status = Status::from(error);
            assert_eq!(status.code(), code, "{reason}");
            let info = status.get_details_error_info().expect("error info");
            assert_eq!(
                (info.reason.as_str(), info.domain.as_str()),
                (reason, "rsvp")
            );
        }
    }

    #[test]
    fn internal_errors_leak_nothing() {
        let status = Status::from(Error::internal("relation \"rsvp.x\" does not exist"));
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "internal error");
        let status = Status::from(Error::Unavailable(
            "connection refused (os error 111)".into(),
        ));
        assert_eq!(status.code(), Code::Unavailable);
        assert!(!status.message().contains("111"));
    }

    #[test]
    fn invalid_arguments_name_the_field() {
        let status = Status::from(Error::invalid("reservation.start", "required"));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "reservation.start: required");
        let bad = status
            .get_details_bad_request()
            .expect("bad request details");
        assert_eq!(bad.field_violations[0].field, "reservation.start");
    }
}
