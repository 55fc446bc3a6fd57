//! The CPU cost of the edge on every call: validating requests, converting
//! replies, building a conflict's status details, page tokens; and the
//! server's part of an Availability call (working out the slots, writing
//! the answer).
//!
//! `cargo bench -p abi --bench edge` (part of `make bench`).

use std::hint::black_box;

use abi::{
    AvailabilityAnswer, Conflict, Error, NewReservation, Note, Requested, Reservation,
    ReservationFilter, ReservationId, ReservationStatus, ResourceAvailability, ResourceId, Rules,
    SlotAsk, Timespan, UserId, pb,
    time::{from_timestamp, to_timestamp},
};
use chrono::{TimeDelta, TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};

fn reserve_request() -> pb::ReserveRequest {
    let start = Utc.with_ymd_and_hms(2027, 3, 1, 10, 0, 0).unwrap();
    pb::ReserveRequest {
        reservation: Some(pb::Reservation {
            user_id: "alice@example.com".into(),
            resource_id: "building-7/room-42".into(),
            start: Some(to_timestamp(start)),
            end: Some(to_timestamp(start + TimeDelta::hours(1))),
            note: "quarterly planning, bring the projector".into(),
            ..Default::default()
        }),
        hold: Some(prost_types::Duration {
            seconds: 600,
            nanos: 0,
        }),
        request_id: "8f14e45f-ceea-467f-a0a2-bd6b1c3b2c1e".into(),
        ..Default::default()
    }
}

fn reservation(i: i64) -> Reservation {
    let start = Utc.with_ymd_and_hms(2027, 3, 1, 10, 0, 0).unwrap() + TimeDelta::hours(i);
    Reservation {
        id: ReservationId::new(),
        user_id: UserId::parse("alice@example.com").unwrap(),
        resource_id: ResourceId::parse("building-7/room-42").unwrap(),
        status: ReservationStatus::Confirmed,
        timespan: Timespan::new(start, start + TimeDelta::hours(1)).unwrap(),
        note: Note::parse("quarterly planning").unwrap(),
        created_at: start,
        updated_at: start,
        expires_at: None,
        quantity: 1,
        booking_id: None,
        checked_in_at: None,
        checked_out_at: None,
    }
}

fn edge(c: &mut Criterion) {
    let request = reserve_request();
    c.bench_function("validate ReserveRequest", |b| {
        b.iter(|| NewReservation::try_from(black_box(request.clone())).unwrap())
    });

    let r = reservation(0);
    c.bench_function("Reservation to wire", |b| {
        b.iter(|| pb::Reservation::from(black_box(r.clone())))
    });

    let ts = to_timestamp(r.timespan.start());
    c.bench_function("read Timestamp", |b| {
        b.iter(|| from_timestamp(black_box(&ts)).unwrap())
    });

    let conflict = Conflict {
        requested: Requested {
            id: None,
            user_id: UserId::parse("bob").unwrap(),
            resource_id: r.resource_id.clone(),
            status: ReservationStatus::Pending,
            timespan: r.timespan,
            note: Note::default(),
            quantity: 1,
        },
        existing: (0..3).map(reservation).collect(),
        omitted: 0,
        capacity: 1,
        full: Vec::new(),
    };
    c.bench_function("conflict to status with details", |b| {
        b.iter(|| tonic::Status::from(Error::Conflict(Box::new(black_box(conflict.clone())))))
    });

    let filter = ReservationFilter::try_from(pb::FilterRequest {
        resource_id: "building-7/room-42".into(),
        page_size: 100,
        ..Default::default()
    })
    .unwrap();
    let token = filter.next_page_token(&r);
    c.bench_function("page token encode", |b| {
        b.iter(|| filter.next_page_token(black_box(&r)))
    });
    c.bench_function("page token decode", |b| {
        b.iter(|| filter.clone().with_page_token(black_box(&token)).unwrap())
    });
}

/// The server's part of the bench's availability workload: 10 resources
/// (capacity 1, no policy, nothing booked) over a week, 30-minute slots.
fn availability(c: &mut Criterion) {
    let start = Utc.with_ymd_and_hms(2027, 3, 1, 0, 0, 0).unwrap();
    let window = Timespan::new(start, start + TimeDelta::days(7)).unwrap();
    let now = start - TimeDelta::days(30);
    let rules = Rules::default();
    let ask = SlotAsk {
        duration: TimeDelta::minutes(30),
        step: TimeDelta::minutes(30),
        quantity: 1,
    };
    c.bench_function(
        "availability of one resource, a week of 30-minute slots",
        |b| b.iter(|| rules.availability(black_box(window), &[], Some(ask), now)),
    );
    let answer = AvailabilityAnswer {
        resources: (0..10)
            .map(|i| ResourceAvailability {
                resource_id: ResourceId::parse(format!("room-{i}")).unwrap(),
                capacity: 1,
                deleted: false,
                availability: rules.availability(window, &[], Some(ask), now),
            })
            .collect(),
        as_of_change_id: 1_000_000,
    };
    let wire = pb::AvailabilityResponse::from(answer.clone());
    c.bench_function("availability answer to wire, 10 resources", |b| {
        b.iter(|| pb::AvailabilityResponse::from(black_box(answer.clone())))
    });
    c.bench_function("availability answer encoded_len", |b| {
        b.iter(|| prost::Message::encoded_len(black_box(&wire)))
    });
    c.bench_function("availability answer encode_to_vec", |b| {
        b.iter(|| prost::Message::encode_to_vec(black_box(&wire)))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = edge, availability
}
criterion_main!(benches);
