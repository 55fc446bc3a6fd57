//! The mapping from [`Error`] to `tonic::Status` (the only one), and the
//! client-side reading of a conflict back out of a status.

use prost::{Message, bytes::Bytes};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::{Error, pb};

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match &e {
            Error::InvalidArgument { field, reason } => Status::with_error_details(
                Code::InvalidArgument,
                e.to_string(),
                ErrorDetails::with_bad_request_violation(*field, reason.to_string()),
            ),
            Error::NotFound(_) => Status::not_found(e.to_string()),
            Error::Conflict(conflict) => {
                let message = format!("reservation conflict: {conflict}");
                let any = prost_types::Any {
                    type_url: pb::RESERVATION_CONFLICT_TYPE_URL.to_string(),
                    value: pb::ReservationConflict::from(conflict.as_ref()).encode_to_vec(),
                };
                let details = tonic_types::pb::Status {
                    code: Code::FailedPrecondition as i32,
                    message: message.clone(),
                    details: vec![any],
                };
                Status::with_details(
                    Code::FailedPrecondition,
                    message,
                    Bytes::from(details.encode_to_vec()),
                )
            }
            Error::FailedPrecondition(reason) => Status::failed_precondition(reason.to_string()),
            Error::Unavailable(_) => {
                Status::unavailable("the database is unavailable; retry later")
            }
            Error::Busy(_) => Status::unavailable(
                "the server is busy: every database connection is in use; retry later",
            ),
            Error::Aborted { reason, .. } => Status::aborted(format!("{reason}; retry the call")),
            Error::Lagged { .. } => Status::resource_exhausted(e.to_string()),
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
            },
            existing: vec![existing.clone()],
            omitted: 0,
        };
        let status = Status::from(Error::Conflict(Box::new(conflict)));
        assert_eq!(status.code(), Code::FailedPrecondition);
        let decoded = conflict_from_status(&status).expect("conflict details");
        assert_eq!(decoded.existing.len(), 1);
        assert_eq!(decoded.existing[0].id, existing.id.to_string());
        assert_eq!(decoded.requested.unwrap().user_id, "bob");
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
