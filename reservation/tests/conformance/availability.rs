//! Availability: segments of constant state and the slots Reserve would
//! accept, from one snapshot, the same on every store.

use abi::{
    AvailabilityAnswer, AvailabilityRequest, ListenFilter, NewReservation, ResourceAvailability,
    ResourceId, ResourceSpec, Timespan, pb,
};
use chrono::{DateTime, TimeDelta, Utc};
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::support::{Env, at, next};

conformance!(
    segments_show_what_is_free_held_and_closed,
    every_listed_slot_is_accepted_and_every_other_grid_slot_refused,
    listen_from_as_of_change_id_follows_with_no_gap,
    each_resource_is_answered_in_the_order_asked_whatever_its_name,
    each_resource_is_read_over_its_own_span,
    slots_are_counted_against_the_limit_only_where_they_are_judged,
);

fn minutes(m: i64) -> Option<prost_types::Duration> {
    (m > 0).then_some(prost_types::Duration {
        seconds: m * 60,
        nanos: 0,
    })
}

fn ids(names: &[&str]) -> Vec<ResourceId> {
    names
        .iter()
        .map(|n| ResourceId::parse(*n).unwrap())
        .collect()
}

async fn availability(
    env: &Env,
    names: &[&str],
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    quantity: u32,
    slot: Option<TimeDelta>,
) -> AvailabilityAnswer {
    let request = AvailabilityRequest::new(
        ids(names),
        Timespan::new(from, to).unwrap(),
        quantity,
        slot.map(|d| (d, None)),
    )
    .unwrap();
    env.store.availability(request).await.unwrap()
}

/// The limit on slot starts counts the starts each resource's grid has;
/// a deleted resource lists no slots, and counts none.
async fn slots_are_counted_against_the_limit_only_where_they_are_judged(env: Env) {
    let store = &env.store;
    for (id, granularity) in [("clinic", Some(15)), ("gone", None)] {
        store
            .create_resource(
                ResourceSpec::try_from(pb::Resource {
                    id: id.into(),
                    capacity: 1,
                    policy: Some(pb::BookingPolicy {
                        granularity: granularity.map(|m: i64| prost_types::Duration {
                            seconds: m * 60,
                            nanos: 0,
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .unwrap(),
            )
            .await
            .unwrap();
    }
    // Slots of a second over five days: 480 starts on the clinic's grid,
    // 432,000 on a resource without one (more than any answer holds).
    let ask = |names: &[&str]| {
        AvailabilityRequest::new(
            ids(names),
            Timespan::new(at(0), at(5 * 24 * 60)).unwrap(),
            1,
            Some((TimeDelta::seconds(1), None)),
        )
        .unwrap()
    };
    assert!(matches!(
        store.availability(ask(&["clinic", "gone"])).await,
        Err(abi::Error::InvalidArgument {
            field: "slot_step",
            ..
        })
    ));
    store
        .delete_resource(ResourceId::parse("gone").unwrap(), false)
        .await
        .unwrap();
    let answer = store.availability(ask(&["clinic", "gone"])).await.unwrap();
    assert!(answer.resources[1].deleted);
}

fn reserve(
    user: &str,
    resource: &str,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    quantity: u32,
) -> NewReservation {
    NewReservation::builder()
        .user_id(user)
        .resource_id(resource)
        .start(from)
        .end(to)
        .quantity(quantity)
        .build()
        .unwrap()
}

/// The segments as (minutes after t0 of the start, free, held, open).
fn shape(r: &ResourceAvailability) -> Vec<(i64, u32, u32, bool)> {
    r.availability
        .segments
        .iter()
        .map(|s| ((s.start - at(0)).num_minutes(), s.free, s.held, s.open))
        .collect()
}

async fn segments_show_what_is_free_held_and_closed(env: Env) {
    let store = &env.store;
    // Tuesdays 09:00 to 17:00 in Paris (UTC+1 in December): 08:00 to
    // 16:00 UTC on 2026-12-08, a week after t0.
    let day = 7 * 24 * 60;
    store
        .create_resource(
            ResourceSpec::try_from(pb::Resource {
                id: "room".into(),
                capacity: 2,
                time_zone: "Europe/Paris".into(),
                opening_hours: vec![pb::OpeningHours {
                    day: pb::DayOfWeek::Tuesday.into(),
                    open_minute: 9 * 60,
                    close_minute: 17 * 60,
                }],
                ..Default::default()
            })
            .unwrap(),
        )
        .await
        .unwrap();
    store
        .create_resource(
            ResourceSpec::try_from(pb::Resource {
                id: "gone".into(),
                capacity: 1,
                ..Default::default()
            })
            .unwrap(),
        )
        .await
        .unwrap();
    store
        .delete_resource(ResourceId::parse("gone").unwrap(), false)
        .await
        .unwrap();
    let booked = store
        .reserve(reserve(
            "a",
            "room",
            (at(day + 9 * 60), at(day + 9 * 60 + 30)),
            1,
        ))
        .await
        .unwrap();
    store.confirm(booked.id).await.unwrap();
    // A hold (30 minutes unless confirmed) from 09:00 to 10:00 UTC.
    store
        .reserve(reserve(
            "b",
            "room",
            (at(day + 9 * 60), at(day + 10 * 60)),
            1,
        ))
        .await
        .unwrap();
    let window = (at(day + 7 * 60), at(day + 17 * 60));
    let answer = availability(&env, &["room", "never", "gone"], window, 1, None).await;
    let [room, never, gone] = &answer.resources[..] else {
        panic!("one answer per resource, in order: {answer:?}");
    };
    assert_eq!(room.capacity, 2);
    assert_eq!(
        shape(room),
        vec![
            (day + 7 * 60, 0, 0, false),
            (day + 8 * 60, 2, 0, true),
            (day + 9 * 60, 0, 1, true),
            (day + 9 * 60 + 30, 1, 1, true),
            (day + 10 * 60, 2, 0, true),
            (day + 16 * 60, 0, 0, false),
        ]
    );
    assert_eq!(
        room.availability.segments.last().map(|s| s.end),
        Some(window.1)
    );
    assert_eq!((never.capacity, never.deleted), (1, false));
    assert_eq!(shape(never), vec![(day + 7 * 60, 1, 0, true)]);
    assert!(gone.deleted);
    assert!(gone.availability.segments.is_empty() && gone.availability.slots.is_empty());
    // An overdue hold holds nothing.
    env.advance(31);
    let answer = availability(&env, &["room"], window, 1, None).await;
    assert_eq!(
        shape(&answer.resources[0])[2..4],
        [(day + 9 * 60, 1, 0, true), (day + 9 * 60 + 30, 2, 0, true)]
    );
    // A hold that never expires is held however long ago it was made.
    let mut forever = reserve("c", "room", (at(day + 10 * 60), at(day + 11 * 60)), 1);
    forever.hold = abi::Hold::Never;
    store.reserve(forever).await.unwrap();
    env.advance(24 * 60);
    let answer = availability(&env, &["room"], window, 1, None).await;
    assert_eq!(
        shape(&answer.resources[0])[4..6],
        [(day + 10 * 60, 1, 1, true), (day + 11 * 60, 2, 0, true)]
    );
}

/// One answer per resource asked, in the order asked, whatever characters
/// its name holds.
async fn each_resource_is_answered_in_the_order_asked_whatever_its_name(env: Env) {
    let store = &env.store;
    let (quoted, slashed, wide, sql) = (
        "quote \" room",
        "back\\slash",
        "zimmer-ü-😀",
        "x' OR '1'='1",
    );
    store
        .create_resource(
            ResourceSpec::try_from(pb::Resource {
                id: quoted.into(),
                capacity: 3,
                ..Default::default()
            })
            .unwrap(),
        )
        .await
        .unwrap();
    for (resource, (from, to)) in [(quoted, (60, 120)), (slashed, (0, 30)), (sql, (300, 360))] {
        store
            .reserve(reserve("a", resource, (at(from), at(to)), 1))
            .await
            .unwrap();
    }
    let asked = [sql, quoted, slashed, wide];
    let answer = availability(&env, &asked, (at(0), at(600)), 1, None).await;
    let names: Vec<&str> = answer
        .resources
        .iter()
        .map(|r| r.resource_id.as_str())
        .collect();
    assert_eq!(names, asked);
    let capacities: Vec<u32> = answer.resources.iter().map(|r| r.capacity).collect();
    assert_eq!(capacities, [1, 3, 1, 1]);
    let shapes: Vec<_> = answer.resources.iter().map(shape).collect();
    assert_eq!(
        shapes,
        [
            vec![(0, 1, 0, true), (300, 0, 1, true), (360, 1, 0, true)],
            vec![(0, 3, 0, true), (60, 2, 1, true), (120, 3, 0, true)],
            vec![(0, 0, 1, true), (30, 1, 0, true)],
            vec![(0, 1, 0, true)],
        ]
    );
}

/// Each resource is read over its own span, the window widened by its own
/// buffers, whatever is asked beside it.
async fn each_resource_is_read_over_its_own_span(env: Env) {
    let store = &env.store;
    store
        .create_resource(
            ResourceSpec::try_from(pb::Resource {
                id: "buffered".into(),
                capacity: 1,
                policy: Some(pb::BookingPolicy {
                    buffer_before: minutes(60),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .unwrap(),
        )
        .await
        .unwrap();
    // Before the window, within the hour a slot's buffer reaches back.
    store
        .reserve(reserve("a", "buffered", (at(60), at(90)), 1))
        .await
        .unwrap();
    let window = (at(120), at(600));
    let slot = Some(TimeDelta::minutes(30));
    let alone = availability(&env, &["buffered"], window, 1, slot).await;
    let both = availability(&env, &["plain", "buffered"], window, 1, slot).await;
    assert_eq!(both.resources[1], alone.resources[0]);
    let first = |r: &ResourceAvailability| r.availability.slots.first().map(|s| s.span.start());
    // A slot at 120 would need 60..150 clear; the first that fits is at 150.
    assert_eq!(first(&both.resources[1]), Some(at(150)));
    assert_eq!(first(&both.resources[0]), Some(at(120)));
}

/// Random resources (capacity, grid, buffers, durations, notice, opening
/// hours in several zones, windows on daylight-saving days) and random
/// reservations: at the moment of the answer, every slot listed is
/// accepted by Reserve, and every slot on the grid that is not listed is
/// refused.
async fn every_listed_slot_is_accepted_and_every_other_grid_slot_refused(env: Env) {
    let store = &env.store;
    let mut rng = StdRng::seed_from_u64(15);
    let zones = [
        "Europe/Paris",
        "America/New_York",
        "UTC",
        "Australia/Lord_Howe",
    ];
    // Days on which clocks change in one of the zones, and a plain one.
    let days: [DateTime<Utc>; 4] = [
        "2027-03-28T00:00:00Z".parse().unwrap(),
        "2027-03-14T00:00:00Z".parse().unwrap(),
        "2027-04-04T00:00:00Z".parse().unwrap(),
        "2027-01-12T00:00:00Z".parse().unwrap(),
    ];
    let (mut listed_in_all, mut checked_in_all) = (0, 0);
    for case in 0..8 {
        let id = format!("r{case}");
        let capacity = rng.random_range(1..=3);
        let grid = [0, 15, 30][rng.random_range(0..3)];
        let open_hours = rng.random_bool(0.6);
        let resource = pb::Resource {
            id: id.clone(),
            capacity,
            time_zone: zones[rng.random_range(0..zones.len())].into(),
            opening_hours: if open_hours {
                (0..7)
                    .map(|d| pb::OpeningHours {
                        day: d + 1,
                        open_minute: [0, 60, 8 * 60][rng.random_range(0..3)],
                        close_minute: [12 * 60, 17 * 60, 24 * 60][rng.random_range(0..3)],
                    })
                    .collect()
            } else {
                Vec::new()
            },
            policy: Some(pb::BookingPolicy {
                granularity: minutes(grid),
                buffer_before: minutes([0, 15][rng.random_range(0..2)]),
                buffer_after: minutes([0, 30][rng.random_range(0..2)]),
                min_duration: minutes([0, 30][rng.random_range(0..2)]),
                max_duration: minutes([0, 120][rng.random_range(0..2)]),
                min_notice: minutes([0, 24 * 60][rng.random_range(0..2)]),
                max_advance: minutes([0, 120 * 24 * 60][rng.random_range(0..2)]),
                ..Default::default()
            }),
            ..Default::default()
        };
        store
            .create_resource(ResourceSpec::try_from(resource).unwrap())
            .await
            .unwrap();
        let day = days[rng.random_range(0..days.len())];
        for n in 0..rng.random_range(0..6) {
            let start = day + TimeDelta::minutes(rng.random_range(0..96) * 15);
            let length = TimeDelta::minutes(rng.random_range(1..8) * 15);
            let mut r = reserve(&format!("u{n}"), &id, (start, start + length), 1);
            r.override_policy = true;
            r.quantity = rng.random_range(1..=capacity);
            // Some are refused (the capacity binds everyone): that is fine.
            let _ = store.reserve(r).await;
        }
        let quantity = rng.random_range(1..=capacity);
        let duration = TimeDelta::minutes([30, 45, 60][rng.random_range(0..3)]);
        let window = (day, day + TimeDelta::days(1));
        let answer = availability(&env, &[id.as_str()], window, quantity, Some(duration)).await;
        let listed: Vec<DateTime<Utc>> = answer.resources[0]
            .availability
            .slots
            .iter()
            .map(|s| s.span.start())
            .collect();
        let step = if grid > 0 {
            TimeDelta::minutes(grid)
        } else {
            duration
        };
        let made = store
            .get_resource(ResourceId::parse(&id).unwrap())
            .await
            .unwrap();
        let schedule = made.rules().schedule;
        let mut start = window.0;
        let mut checked = 0;
        while start + duration <= window.1 {
            if schedule.on_grid(start, step) {
                let mut ask = reserve("probe", &id, (start, start + duration), quantity);
                ask.validate_only = true;
                let accepted = store.reserve(ask).await.is_ok();
                assert_eq!(
                    accepted,
                    listed.contains(&start),
                    "case {case}: the slot at {start} is {} by Reserve",
                    if accepted { "accepted" } else { "refused" }
                );
                checked += 1;
            }
            start += TimeDelta::minutes(15);
        }
        assert!(checked > 0, "case {case} checked no slot");
        (listed_in_all, checked_in_all) = (listed_in_all + listed.len(), checked_in_all + checked);
    }
    assert!(
        0 < listed_in_all && listed_in_all < checked_in_all,
        "the cases list some slots and refuse others: {listed_in_all} of {checked_in_all}"
    );
}

async fn listen_from_as_of_change_id_follows_with_no_gap(env: Env) {
    let store = &env.store;
    store
        .reserve(reserve("a", "room", (at(60), at(120)), 1))
        .await
        .unwrap();
    let answer = availability(&env, &["room"], (at(0), at(600)), 1, None).await;
    // What was made before the answer is in it.
    assert_eq!(shape(&answer.resources[0])[1], (60, 0, 1, true));
    let later = store
        .reserve(reserve("b", "room", (at(200), at(260)), 1))
        .await
        .unwrap();
    let mut feed = store
        .listen(ListenFilter {
            after_change_id: Some(answer.as_of_change_id),
            ..ListenFilter::default()
        })
        .await
        .unwrap();
    let first = next(&mut feed).await;
    assert_eq!(
        first.reservation.id, later.id,
        "from as_of_change_id the first change is the one made after the answer"
    );
}
