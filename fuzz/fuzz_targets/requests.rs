//! Decodes arbitrary bytes as every request message and checks it: each
//! must become a valid domain value or INVALID_ARGUMENT naming a field —
//! never a panic, never another error.

#![no_main]

use abi::{
    Error, ListenFilter, NewReservation, ReservationFilter, ReservationQuery, ReservationUpdate,
    parse_id, pb,
};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fn check<T>(result: Result<T, Error>) {
    match result {
        Ok(_) => {}
        Err(Error::InvalidArgument { field, reason }) => {
            assert!(!field.is_empty() && !reason.is_empty());
            // The status a client would see, details and all.
            let status = tonic::Status::from(Error::InvalidArgument { field, reason });
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
            assert!(status.message().starts_with(field));
            let bad = tonic_types::StatusExt::get_details_bad_request(&status);
            assert_eq!(bad.map(|b| b.field_violations[0].field.clone()).as_deref(), Some(field));
        }
        Err(other) => panic!("not INVALID_ARGUMENT: {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    match kind % 8 {
        0 => {
            if let Ok(m) = pb::ReserveRequest::decode(bytes) {
                check(NewReservation::try_from(m));
            }
        }
        1 => {
            if let Ok(m) = pb::UpdateRequest::decode(bytes) {
                check(ReservationUpdate::try_from(m));
            }
        }
        2 => {
            if let Ok(m) = pb::QueryRequest::decode(bytes) {
                check(ReservationQuery::try_from(m));
            }
        }
        3 => {
            if let Ok(m) = pb::FilterRequest::decode(bytes) {
                check(ReservationFilter::try_from(m));
            }
        }
        4 => {
            if let Ok(m) = pb::ListenRequest::decode(bytes) {
                check(ListenFilter::try_from(m));
            }
        }
        5 => {
            if let Ok(m) = pb::ConfirmRequest::decode(bytes) {
                check(parse_id(&m.id));
            }
        }
        6 => {
            if let Ok(m) = pb::CancelRequest::decode(bytes) {
                check(parse_id(&m.id));
            }
        }
        _ => {
            if let Ok(m) = pb::GetRequest::decode(bytes) {
                check(parse_id(&m.id));
            }
        }
    }
});
