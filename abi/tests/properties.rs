//! Property tests of the edge: any request a client can send — any strings,
//! timestamps, durations, enum values, page sizes and tokens — becomes a
//! valid domain value or an INVALID_ARGUMENT naming a field, never a panic
//! or any other error; and valid values survive the round trip.

use abi::{
    Error, ListenFilter, NewReservation, ReservationFilter, ReservationId, ReservationQuery,
    ReservationUpdate, ResourceId, UserId,
    pb::{self, ReservationStatus},
    time::{
        MAX_TIMESTAMP_SECONDS, MIN_TIMESTAMP_SECONDS, from_duration, from_timestamp, to_timestamp,
    },
};
use proptest::prelude::*;
use prost_types::{Duration, Timestamp};

/// Strings of every kind: empty, long, control characters, wide
/// characters, SQL and format specifiers.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z0-9-]{1,70}",
        ".{0,80}",
        "\\PC{60,70}",
        Just("x' OR '1'='1".to_string()),
        Just("%s%n{}\u{0}".to_string()),
        prop::collection::vec(any::<char>(), 0..80).prop_map(|c| c.into_iter().collect()),
    ]
}

fn any_timestamp() -> impl Strategy<Value = Option<Timestamp>> {
    prop_oneof![
        Just(None),
        (any::<i64>(), any::<i32>())
            .prop_map(|(seconds, nanos)| Some(Timestamp { seconds, nanos })),
        (
            MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS,
            0..1_000_000_000i32
        )
            .prop_map(|(seconds, nanos)| Some(Timestamp { seconds, nanos })),
        (1_700_000_000i64..1_800_000_000, 0..1_000_000_000i32)
            .prop_map(|(seconds, nanos)| Some(Timestamp { seconds, nanos })),
    ]
}

fn any_duration() -> impl Strategy<Value = Option<Duration>> {
    prop_oneof![
        Just(None),
        (any::<i64>(), any::<i32>()).prop_map(|(seconds, nanos)| Some(Duration { seconds, nanos })),
        (0..100_000i64, 0..1_000_000_000i32)
            .prop_map(|(seconds, nanos)| Some(Duration { seconds, nanos })),
    ]
}

fn any_status() -> impl Strategy<Value = i32> {
    prop_oneof![0..=5i32, any::<i32>()]
}

fn any_id() -> impl Strategy<Value = String> {
    prop_oneof![
        any_text(),
        Just(ReservationId::new().to_string()),
        "[0-9a-f-]{36}"
    ]
}

/// Valid, or invalid with a named field: nothing else.
fn valid_or_named<T>(result: Result<T, Error>) -> Result<Option<T>, TestCaseError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(Error::InvalidArgument { field, reason }) => {
            prop_assert!(!field.is_empty() && !reason.is_empty());
            Ok(None)
        }
        Err(other) => Err(TestCaseError::fail(format!(
            "not INVALID_ARGUMENT: {other:?}"
        ))),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn reserve_requests_are_valid_or_name_a_field(
        id in prop_oneof![Just(String::new()), any_id()],
        user in any_text(),
        resource in any_text(),
        status in any_status(),
        start in any_timestamp(),
        end in any_timestamp(),
        note in prop_oneof![any_text(), "a{4090,4100}"],
        hold in any_duration(),
        request_id in any_text(),
    ) {
        let request = pb::ReserveRequest {
            reservation: Some(pb::Reservation {
                id, user_id: user.clone(), resource_id: resource.clone(), status,
                start, end, note: note.clone(), ..Default::default()
            }),
            hold,
            request_id: request_id.clone(),
            ..Default::default()
        };
        if let Some(r) = valid_or_named(NewReservation::try_from(request))? {
            // What was accepted is what was sent, to the microsecond.
            prop_assert_eq!(r.user_id.as_str(), user.as_str());
            prop_assert_eq!(r.resource_id.as_str(), resource.as_str());
            prop_assert_eq!(r.note.as_str(), note.as_str());
            prop_assert_eq!(r.request_id.map(|k| k.into_string()).unwrap_or_default(), request_id);
            let (s, e) = (start.unwrap(), end.unwrap());
            prop_assert_eq!(to_timestamp(r.timespan.start()), Timestamp { seconds: s.seconds, nanos: s.nanos / 1000 * 1000 });
            prop_assert_eq!(to_timestamp(r.timespan.end()), Timestamp { seconds: e.seconds, nanos: e.nanos / 1000 * 1000 });
            prop_assert!(r.timespan.start() < r.timespan.end());
        }
    }

    #[test]
    fn update_requests_are_valid_or_name_a_field(
        id in any_id(),
        status in any_status(),
        note in prop::option::of(any_text()),
        start in any_timestamp(),
        end in any_timestamp(),
    ) {
        let request = pb::UpdateRequest {
            id,
            status,
            note,
            start,
            end,
            ..Default::default()
        };
        if let Some(u) = valid_or_named(ReservationUpdate::try_from(request.clone()))? {
            prop_assert_eq!(u.id.to_string().len(), 36);
            prop_assert_eq!(u.timespan.is_some(), request.start.is_some());
        }
    }

    #[test]
    fn queries_filters_and_listens_are_valid_or_name_a_field(
        user in any_text(),
        resource in any_text(),
        status in any_status(),
        start in any_timestamp(),
        end in any_timestamp(),
        desc in any::<bool>(),
        page_size in prop_oneof![0..=1000i32, any::<i32>()],
        page_token in prop_oneof![any_text(), "[A-Za-z0-9_-]{44}"],
        after in prop::option::of(any::<i64>()),
    ) {
        let query = pb::QueryRequest {
            user_id: user.clone(), resource_id: resource.clone(), status, start, end, desc,
        };
        valid_or_named(ReservationQuery::try_from(query))?;
        let filter = pb::FilterRequest {
            user_id: user.clone(), resource_id: resource.clone(), status, start, end, desc,
            page_size, page_token,
        };
        valid_or_named(ReservationFilter::try_from(filter))?;
        let listen = pb::ListenRequest { user_id: user, resource_id: resource, after_change_id: after };
        valid_or_named(ListenFilter::try_from(listen))?;
    }

    #[test]
    fn page_tokens_round_trip_and_refuse_tampering(
        resource in "[a-z]{1,10}",
        seconds in MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS,
        micros in 0..1_000_000i32,
        flip in 0..44usize,
    ) {
        let query = ReservationQuery::builder().resource_id(resource.clone()).build().unwrap();
        let filter = ReservationFilter::first_page(query.clone(), 10).unwrap();
        let last = abi::Reservation {
            id: ReservationId::new(),
            user_id: UserId::parse("u").unwrap(),
            resource_id: ResourceId::parse(resource).unwrap(),
            status: abi::ReservationStatus::Confirmed,
            timespan: abi::Timespan::new(
                from_timestamp(&Timestamp { seconds, nanos: micros * 1000 }).unwrap(),
                from_timestamp(&Timestamp { seconds, nanos: micros * 1000 }).unwrap() + chrono::TimeDelta::microseconds(1),
            ).unwrap_or_else(|_| abi::Timespan::new(
                from_timestamp(&Timestamp { seconds: seconds - 1, nanos: 0 }).unwrap(),
                from_timestamp(&Timestamp { seconds, nanos: 0 }).unwrap(),
            ).unwrap()),
            note: abi::Note::default(),
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
            expires_at: None, quantity: 1,
            booking_id: None, checked_in_at: None, checked_out_at: None,
        };
        let token = filter.next_page_token(&last);
        let next = filter.clone().with_page_token(&token).unwrap();
        let cursor = next.cursor.unwrap();
        prop_assert_eq!(cursor.id, last.id);
        prop_assert_eq!(cursor.start, last.timespan.start());
        // Any change to the token is refused or, at most, moves the cursor.
        let mut bytes = token.into_bytes();
        bytes[flip] = if bytes[flip] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        valid_or_named(filter.with_page_token(&tampered))?;
    }

    #[test]
    fn timestamps_read_exactly_the_valid_range(seconds in any::<i64>(), nanos in any::<i32>()) {
        let ts = Timestamp { seconds, nanos };
        let valid = (MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&seconds)
            && (0..1_000_000_000).contains(&nanos);
        match from_timestamp(&ts) {
            Ok(t) => {
                prop_assert!(valid);
                prop_assert_eq!(to_timestamp(t), Timestamp { seconds, nanos: nanos / 1000 * 1000 });
            }
            Err(_) => prop_assert!(!valid),
        }
    }

    #[test]
    fn durations_never_panic_and_round_trip(seconds in any::<i64>(), nanos in any::<i32>()) {
        if let Ok(d) = from_duration(&Duration { seconds, nanos }) {
            let back = abi::time::to_duration(d);
            prop_assert_eq!(back.seconds, seconds);
            prop_assert_eq!(back.nanos, nanos);
        }
    }

    #[test]
    fn ids_accept_exactly_what_the_contract_allows(text in any_text()) {
        let chars = text.chars().count();
        let valid = (1..=64).contains(&chars) && !text.chars().any(char::is_control);
        match UserId::parse(text.clone()) {
            Ok(id) => {
                prop_assert!(valid);
                prop_assert_eq!(id.as_str(), text.as_str());
            }
            Err(_) => prop_assert!(!valid),
        }
    }

    #[test]
    fn wire_statuses_outside_the_enum_are_refused(value in any::<i32>()) {
        let known = ReservationStatus::try_from(value).is_ok();
        prop_assert_eq!(abi::ReservationStatus::from_wire(value).is_ok(), known);
    }
}
