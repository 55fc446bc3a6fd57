//! Bookings: several parts made, confirmed and cancelled together, all or
//! nothing; and arrival: check-in, check-out, no-shows.

use std::{sync::Arc, time::Duration};

use abi::{
    BookingId, Error, Hold, ListenFilter, NewBooking, NewReservation, RequestId, ReservationQuery,
    ReservationStatus, ReservationUpdate, ResourceSpec, StatusChange, UserId, pb,
};
use chrono::TimeDelta;
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::support::{Env, at, hold, next, t0};

conformance!(
    a_booking_is_made_whole_or_not_at_all,
    parts_count_against_one_another,
    a_refusal_names_every_failing_part,
    a_retried_booking_returns_what_the_first_made,
    a_first_booking_and_its_retry_across_the_notice_get_one_answer,
    validate_only_checks_every_part_and_makes_nothing,
    confirming_and_cancelling_a_booking_is_all_or_nothing,
    checking_in_and_out_follows_the_window,
    arrival_asks_only_the_status_and_the_window,
    a_confirmed_reservation_nobody_checks_in_is_a_no_show,
    bookings_and_reserves_at_once_never_overbook,
    the_parts_share_the_shortest_hold_their_resources_allow,
    a_cancel_within_the_notice_refuses_the_whole_booking,
    bookings_and_arrivals_are_judged_by_the_rules_as_they_are_whichever_server_judges_them,
    a_deleted_resource_refuses_its_part_and_override_lifts_other_rules,
    bookings_written_together_each_keep_their_own_outcome,
    what_is_in_the_way_is_listed_whole,
);

fn spec(id: &str, capacity: u32, policy: pb::BookingPolicy) -> ResourceSpec {
    ResourceSpec::try_from(pb::Resource {
        id: id.into(),
        capacity,
        policy: Some(policy),
        ..Default::default()
    })
    .unwrap()
}

fn minutes(m: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: m * 60,
        nanos: 0,
    })
}

fn part(resource: &str, from: i64, to: i64) -> NewReservation {
    NewReservation::builder()
        .user_id("ann")
        .resource_id(resource)
        .start(at(from))
        .end(at(to))
        .build()
        .unwrap()
}

fn booking(parts: Vec<NewReservation>) -> NewBooking {
    NewBooking::new(UserId::parse("ann").unwrap(), parts, Hold::Default, None).unwrap()
}

fn rejected(result: abi::Result<abi::Booking>) -> Vec<abi::PartRejection> {
    match result {
        Err(Error::BookingRejected(parts)) => parts,
        other => panic!("expected a refused booking, got {other:?}"),
    }
}

async fn a_booking_is_made_whole_or_not_at_all(env: Env) {
    let store = &env.store;
    store
        .create_resource(spec("hotel", 2, pb::BookingPolicy::default()))
        .await
        .unwrap();
    let seat = env.confirmed("bob", "flight", 0, 60).await;

    // The flight is taken: neither part is made.
    let parts = rejected(
        store
            .book(booking(vec![part("hotel", 0, 600), part("flight", 30, 90)]))
            .await,
    );
    assert_eq!(parts.len(), 1, "{parts:?}");
    assert_eq!(
        (parts[0].index, parts[0].resource_id.as_str()),
        (1, "flight")
    );
    let conflict = parts[0].conflict.as_ref().expect("a conflict");
    assert_eq!(conflict.existing[0].id, seat.id);
    assert_eq!(env.all().await.len(), 1, "nothing was left behind");

    // Free: both made, as parts of one booking, in order, with one expiry.
    let made = store
        .book(booking(vec![
            part("hotel", 60, 600),
            part("flight", 60, 120),
        ]))
        .await
        .unwrap();
    assert_eq!(made.parts.len(), 2);
    assert_eq!(made.parts[0].resource_id.as_str(), "hotel");
    assert_eq!(made.parts[1].resource_id.as_str(), "flight");
    for p in &made.parts {
        assert_eq!(p.booking_id, Some(made.id));
        assert_eq!(p.status, ReservationStatus::Pending);
        assert_eq!(p.user_id.as_str(), "ann");
    }
    assert!(made.parts[0].expires_at.is_some());
    assert_eq!(made.parts[0].expires_at, made.parts[1].expires_at);
    assert_eq!(store.get_booking(made.id).await.unwrap(), made);
    assert_eq!(env.get(made.parts[1].id).await.booking_id, Some(made.id));
    let unknown = BookingId::new();
    assert!(matches!(
        store.get_booking(unknown).await,
        Err(Error::BookingNotFound(id)) if id == unknown
    ));

    // Listen shows each part's change.
    let mut changes = env
        .listen(ListenFilter {
            after_change_id: Some(0),
            ..Default::default()
        })
        .await;
    let mut parts_seen = Vec::new();
    // The seat's reserve and confirm, then the two parts.
    for _ in 0..4 {
        let change = next(&mut changes).await;
        if change.reservation.booking_id == Some(made.id) {
            parts_seen.push(change.reservation.id);
        }
    }
    assert_eq!(parts_seen, [made.parts[0].id, made.parts[1].id]);
}

async fn parts_count_against_one_another(env: Env) {
    let store = &env.store;
    store
        .create_resource(spec("hall", 2, pb::BookingPolicy::default()))
        .await
        .unwrap();
    // One room, twice at once: the second part is refused.
    let parts = rejected(
        store
            .book(booking(vec![part("room", 0, 60), part("room", 30, 90)]))
            .await,
    );
    assert_eq!(parts.iter().map(|p| p.index).collect::<Vec<_>>(), [1]);
    // A hall of two units holds two parts at once, not three.
    store
        .book(booking(vec![part("hall", 0, 60), part("hall", 0, 60)]))
        .await
        .unwrap();
    let parts = rejected(store.book(booking(vec![part("hall", 30, 40)])).await);
    assert_eq!(parts[0].index, 0);
    assert_eq!(parts[0].conflict.as_ref().unwrap().capacity, 2);
    assert_eq!(env.all().await.len(), 2);
}

async fn a_refusal_names_every_failing_part(env: Env) {
    let store = &env.store;
    store
        .create_resource(spec(
            "dr-lee",
            1,
            pb::BookingPolicy {
                min_notice: minutes(24 * 60),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    env.confirmed("bob", "flight", 0, 60).await;
    for i in 0..8 {
        env.confirmed("bob", "busy", i * 10, i * 10 + 10).await;
    }
    let parts = rejected(
        store
            .book(booking(vec![
                part("dr-lee", 60, 90),
                part("hotel", 0, 60),
                part("flight", 0, 60),
                part("busy", 0, 80),
            ]))
            .await,
    );
    let indexes: Vec<u32> = parts.iter().map(|p| p.index).collect();
    assert_eq!(indexes, [0, 2, 3], "{parts:?}");
    assert_eq!(parts[0].policy[0].rule, abi::Rule::MinNotice);
    assert!(parts[0].conflict.is_none());
    assert!(parts[1].conflict.is_some() && parts[1].policy.is_empty());
    // A part's conflict lists at most five, and counts the rest.
    let busy = parts[2].conflict.as_ref().unwrap();
    assert_eq!((busy.existing.len(), busy.omitted), (5, 3));
    assert_eq!(env.all().await.len(), 9, "nothing was made");
}

async fn a_retried_booking_returns_what_the_first_made(env: Env) {
    let store = &env.store;
    let keyed = |parts| {
        NewBooking::new(
            UserId::parse("ann").unwrap(),
            parts,
            Hold::Default,
            Some(RequestId::parse("order-7").unwrap()),
        )
        .unwrap()
    };
    let first = store
        .book(keyed(vec![part("a", 0, 60), part("b", 0, 60)]))
        .await
        .unwrap();
    env.advance(1);
    let again = store
        .book(keyed(vec![part("a", 0, 60), part("b", 0, 60)]))
        .await
        .unwrap();
    assert_eq!(again.id, first.id);
    assert_eq!(
        again.parts.iter().map(|p| p.id).collect::<Vec<_>>(),
        first.parts.iter().map(|p| p.id).collect::<Vec<_>>()
    );
    assert!(matches!(
        store.book(keyed(vec![part("a", 60, 120)])).await,
        Err(Error::InvalidArgument {
            field: "request_id",
            ..
        })
    ));
    assert_eq!(env.all().await.len(), 2);

    // A retry once the rules would refuse it (the notice passed) still
    // returns what the first call made.
    store
        .create_resource(spec(
            "dr-lee",
            1,
            pb::BookingPolicy {
                min_notice: minutes(60),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let later = || {
        NewBooking::new(
            UserId::parse("ann").unwrap(),
            vec![part("dr-lee", 100, 130)],
            Hold::Default,
            Some(RequestId::parse("visit-1").unwrap()),
        )
        .unwrap()
    };
    let visit = store.book(later()).await.unwrap();
    env.advance(60);
    assert_eq!(store.book(later()).await.unwrap().id, visit.id);

    // The same request sent four times at once: one booking.
    let same = || {
        NewBooking::new(
            UserId::parse("ann").unwrap(),
            vec![part("e", 600, 660), part("f", 600, 660)],
            Hold::Default,
            Some(RequestId::parse("order-8").unwrap()),
        )
        .unwrap()
    };
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let store = Arc::clone(&env.store);
            let booking = same();
            tokio::spawn(async move { store.book(booking).await })
        })
        .collect();
    let mut ids = Vec::new();
    for call in calls {
        ids.push(call.await.unwrap().unwrap().id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let parts = env
        .query(ReservationQuery {
            resource_id: Some(abi::ResourceId::parse("e").unwrap()),
            ..Default::default()
        })
        .await;
    assert_eq!(parts.len(), 1);
}

/// A first booking judged just before a part's notice runs out, still
/// waiting to be written when its retry is judged just after: the two get
/// one answer, whichever it is, and a refusal leaves nothing behind.
async fn a_first_booking_and_its_retry_across_the_notice_get_one_answer(env: Env) {
    let request = NewBooking::new(
        UserId::parse("ann").unwrap(),
        vec![part("room", 61, 76), part("dr-kim", 61, 76)],
        Hold::Default,
        Some(RequestId::parse("visit-9").unwrap()),
    )
    .unwrap();
    let answers = env
        .across_the_notice("dr-kim", || {
            let (store, request) = (Arc::clone(&env.store), request.clone());
            async move { store.book(request).await }
        })
        .await;
    match answers {
        (Ok(first), Ok(retry)) => {
            assert_eq!(first.id, retry.id);
            assert!(first.created_at <= at(1), "written past its notice");
            assert_eq!(env.all().await.len(), 2);
        }
        (first @ Err(_), retry @ Err(_)) => {
            for refused in [rejected(first), rejected(retry)] {
                assert_eq!(refused.len(), 1, "{refused:?}");
                assert_eq!(refused[0].index, 1);
                let rules: Vec<_> = refused[0].policy.iter().map(|v| v.rule).collect();
                assert_eq!(rules, [abi::Rule::MinNotice]);
            }
            assert!(env.all().await.is_empty(), "a refusal left a part");
        }
        other => panic!("the first call and its retry disagree: {other:?}"),
    }
}

async fn validate_only_checks_every_part_and_makes_nothing(env: Env) {
    let store = &env.store;
    let mut dry = booking(vec![part("room", 0, 60), part("room", 30, 90)]);
    dry.validate_only = true;
    let parts = rejected(store.book(dry).await);
    assert_eq!(parts[0].index, 1);
    let mut dry = booking(vec![part("room", 0, 60), part("room", 60, 90)]);
    dry.validate_only = true;
    let answer = store.book(dry).await.unwrap();
    assert!(answer.id.uuid().is_nil());
    assert_eq!(answer.parts.len(), 2);
    assert!(env.all().await.is_empty());
    // Nothing was made, so the real booking goes ahead.
    let keyed = || {
        let mut b = booking(vec![part("room", 0, 60), part("room", 60, 90)]);
        b.request_id = Some(abi::RequestId::parse("stay-1").unwrap());
        b
    };
    let made = store.book(keyed()).await.unwrap();
    // A dry run of its key answers as its retry would: what the key made,
    // without ids; a different request with the key is refused.
    let mut again = keyed();
    again.validate_only = true;
    let answer = store.book(again.clone()).await.unwrap();
    assert!(answer.id.uuid().is_nil());
    assert!(answer.parts.iter().all(|p| p.id.uuid().is_nil()));
    let spans = |b: &abi::Booking| b.parts.iter().map(|p| p.timespan).collect::<Vec<_>>();
    assert_eq!(spans(&answer), spans(&made));
    again.parts[1].timespan = abi::Timespan::new(at(90), at(120)).unwrap();
    assert!(matches!(
        store.book(again).await,
        Err(Error::InvalidArgument {
            field: "request_id",
            ..
        })
    ));
    assert_eq!(env.all().await.len(), 2);
}

async fn confirming_and_cancelling_a_booking_is_all_or_nothing(env: Env) {
    let store = &env.store;
    let made = store
        .book(booking(vec![
            part("a", 0, 60),
            part("b", 0, 60),
            part("c", 0, 60),
        ]))
        .await
        .unwrap();
    // A part cancelled on its own stays cancelled.
    store.cancel(made.parts[2].id).await.unwrap();
    let confirmed = store.confirm_booking(made.id).await.unwrap();
    let statuses: Vec<_> = confirmed.parts.iter().map(|p| p.status).collect();
    use ReservationStatus::*;
    assert_eq!(statuses, [Confirmed, Confirmed, Cancelled]);
    // Again: unchanged.
    assert_eq!(store.confirm_booking(made.id).await.unwrap(), confirmed);
    let cancelled = store.cancel_booking(made.id).await.unwrap();
    assert!(cancelled.parts.iter().all(|p| p.status == Cancelled));

    // An expired part makes a confirm fail, and confirms none.
    let mut short = booking(vec![part("a", 100, 160), part("b", 100, 160)]);
    for p in &mut short.parts {
        p.hold = Hold::For(TimeDelta::minutes(10));
    }
    short.hold = Hold::For(TimeDelta::minutes(10));
    let held = store.book(short).await.unwrap();
    env.advance(11);
    assert!(matches!(
        store.confirm_booking(held.id).await,
        Err(Error::FailedPrecondition(_))
    ));
    let after = store.get_booking(held.id).await.unwrap();
    assert!(after.parts.iter().all(|p| p.status == Expired));
}

async fn checking_in_and_out_follows_the_window(env: Env) {
    let store = &env.store;
    store
        .create_resource(spec(
            "suite",
            1,
            pb::BookingPolicy {
                granularity: minutes(15),
                check_in_opens: minutes(60),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let stay = env.confirmed("ann", "suite", 120, 240).await;
    let pending = env.reserve("ann", "room", 120, 240).await.unwrap();
    assert!(matches!(
        store.check_in(pending.id).await,
        Err(Error::FailedPrecondition(_))
    ));
    // Opens an hour before the start: a refusal by the policy's window.
    env.advance(30);
    assert!(matches!(
        store.check_in(stay.id).await,
        Err(Error::Policy(v)) if v.iter().map(|v| v.rule).eq([abi::Rule::CheckInWindow])
    ));
    env.advance(40);
    let mut changes = env
        .listen(ListenFilter {
            after_change_id: Some(0),
            ..Default::default()
        })
        .await;
    let arrived = store.check_in(stay.id).await.unwrap();
    // A check-in is a change a listener sees.
    loop {
        let change = next(&mut changes).await;
        if change.reservation.status == ReservationStatus::CheckedIn {
            assert_eq!(change.reservation.id, stay.id);
            break;
        }
    }
    assert_eq!(arrived.status, ReservationStatus::CheckedIn);
    assert_eq!(arrived.checked_in_at, Some(at(70)));
    assert_eq!(store.check_in(stay.id).await.unwrap(), arrived, "twice");
    assert_eq!(env.get(stay.id).await.status, ReservationStatus::CheckedIn);
    let checked_in = env
        .query(ReservationQuery {
            status: Some(ReservationStatus::CheckedIn),
            ..Default::default()
        })
        .await;
    assert_eq!(checked_in.len(), 1);
    // A checked-in reservation still holds its resource.
    assert!(matches!(
        env.reserve("bob", "suite", 195, 210).await,
        Err(Error::Conflict(_))
    ));
    // Not out before the start; early, the end comes up to the grid.
    assert!(matches!(
        store.check_out(stay.id).await,
        Err(Error::FailedPrecondition(_))
    ));
    env.advance(67);
    let left = store.check_out(stay.id).await.unwrap();
    assert_eq!(left.status, ReservationStatus::Completed);
    assert_eq!(left.checked_out_at, Some(at(137)));
    assert_eq!(left.timespan.end(), at(150));
    assert_eq!(store.check_out(stay.id).await.unwrap(), left, "twice");
    assert!(matches!(
        store.check_in(stay.id).await,
        Err(Error::FailedPrecondition(_))
    ));
    // After its end, a confirmed reservation is not checked in.
    let missed = env.confirmed("ann", "suite", 240, 255).await;
    env.advance(120);
    assert!(matches!(
        store.check_in(missed.id).await,
        Err(Error::Policy(v)) if v.iter().map(|v| v.rule).eq([abi::Rule::CheckInWindow])
    ));
    env.advance(-120);
    // The rest of the stay is free.
    env.reserve("bob", "suite", 150, 240).await.unwrap();
}

async fn arrival_asks_only_the_status_and_the_window(env: Env) {
    let store = &env.store;
    // Open Tuesdays from 10:00 (t0 is Tuesday 2026-12-01, 00:00 UTC);
    // nothing shorter than an hour.
    store
        .create_resource(
            ResourceSpec::try_from(pb::Resource {
                id: "pod".into(),
                capacity: 1,
                time_zone: "UTC".into(),
                opening_hours: vec![pb::OpeningHours {
                    day: 2,
                    open_minute: 600,
                    close_minute: 1080,
                }],
                policy: Some(pb::BookingPolicy {
                    granularity: minutes(15),
                    min_duration: minutes(60),
                    check_in_opens: minutes(60),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .unwrap(),
        )
        .await
        .unwrap();
    let stay = env.confirmed("ann", "pod", 600, 720).await;
    // In before the pod opens: the window is the only rule.
    env.advance(560);
    let arrived = store.check_in(stay.id).await.unwrap();
    assert_eq!(arrived.status, ReservationStatus::CheckedIn);
    // Out a quarter of an hour after the start: shorter than the hour the
    // policy asks of a reservation, and allowed.
    env.advance(53);
    let left = store.check_out(stay.id).await.unwrap();
    assert_eq!(left.status, ReservationStatus::Completed);
    assert_eq!(left.timespan.end(), at(615));
}

async fn a_confirmed_reservation_nobody_checks_in_is_a_no_show(env: Env) {
    let store = &env.store;
    store
        .create_resource(spec(
            "slot",
            1,
            pb::BookingPolicy {
                auto_release_after: minutes(30),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let booked = env.confirmed("ann", "slot", 60, 120).await;
    assert_eq!(booked.expires_at, None, "a release time is not a hold's");
    env.advance(89);
    assert_eq!(
        env.get(booked.id).await.status,
        ReservationStatus::Confirmed
    );
    env.advance(1);
    // Thirty minutes after the start: a no-show, and the slot is free at
    // once, before any sweep.
    assert_eq!(env.get(booked.id).await.status, ReservationStatus::NoShow);
    let no_shows = env
        .query(ReservationQuery {
            status: Some(ReservationStatus::NoShow),
            ..Default::default()
        })
        .await;
    assert_eq!(no_shows.len(), 1);
    // Availability sees it free too.
    let request = abi::AvailabilityRequest::new(
        vec![abi::ResourceId::parse("slot").unwrap()],
        abi::Timespan::new(at(90), at(120)).unwrap(),
        1,
        None,
    )
    .unwrap();
    let answer = store.availability(request).await.unwrap();
    let segments = &answer.resources[0].availability.segments;
    assert!(segments.iter().all(|s| s.free == 1), "{segments:?}");
    let next_one = env.reserve("bob", "slot", 90, 120).await.unwrap();
    assert_eq!(env.get(booked.id).await.status, ReservationStatus::NoShow);
    assert!(matches!(
        store.check_in(booked.id).await,
        Err(Error::FailedPrecondition(_))
    ));
    store.sweep().await.unwrap();
    assert_eq!(
        env.get(next_one.id).await.status,
        ReservationStatus::Pending
    );

    // On a resource of several units, a no-show gives its units back.
    store
        .create_resource(spec(
            "hall",
            2,
            pb::BookingPolicy {
                auto_release_after: minutes(10),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let mut two = hold("ann", "hall", 200, 260);
    two.quantity = 2;
    two.status = abi::InitialStatus::Confirmed;
    let both = store.reserve(two.clone()).await.unwrap();
    // Released ten minutes after its start, at minute 210.
    env.advance(119);
    assert!(matches!(
        store.reserve(two.clone()).await,
        Err(Error::Conflict(_))
    ));
    env.advance(1);
    assert_eq!(env.get(both.id).await.status, ReservationStatus::NoShow);
    two.user_id = UserId::parse("bob").unwrap();
    store.reserve(two).await.unwrap();
    env.advance(-120);

    // An admin marks a no-show, only after the start.
    let later = env.confirmed("cy", "room", 200, 260).await;
    let mark = ReservationUpdate::status(later.id, StatusChange::NoShow);
    assert!(matches!(
        store.update(mark.clone()).await,
        Err(Error::FailedPrecondition(_))
    ));
    env.advance(120);
    let marked = store.update(mark).await.unwrap();
    assert_eq!(marked.status, ReservationStatus::NoShow);
    env.reserve("dee", "room", 200, 260).await.unwrap();

    // A hold confirmed later than its start plus auto_release_after is a
    // no-show at once, and says so; confirming it again (a retry) answers
    // the same, writing nothing.
    let now = {
        use reservation::Clock;
        (env.clock.now() - t0()).num_minutes()
    };
    let late = env.reserve("eve", "hall", now + 5, now + 65).await.unwrap();
    env.advance(20);
    let confirmed = store.confirm(late.id).await.unwrap();
    assert_eq!(confirmed.status, ReservationStatus::NoShow);
    env.advance(1);
    assert_eq!(store.confirm(late.id).await.unwrap(), confirmed);
    assert_eq!(env.get(late.id).await, confirmed, "nothing was written");
}

async fn bookings_and_reserves_at_once_never_overbook(env: Env) {
    let store = env.store.clone();
    for (i, capacity) in [1, 1, 2, 3, 1].into_iter().enumerate() {
        store
            .create_resource(spec(
                &format!("r{i}"),
                capacity,
                pb::BookingPolicy::default(),
            ))
            .await
            .unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut tasks = Vec::new();
    for task in 0..32u64 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(task);
            let (mut made, mut refused) = (0u64, 0u64);
            while tokio::time::Instant::now() < deadline {
                let user = format!("user-{task}");
                let one = |rng: &mut StdRng| {
                    let start = rng.random_range(0..2000);
                    NewReservation::builder()
                        .user_id(user.clone())
                        .resource_id(format!("r{}", rng.random_range(0..5)))
                        .start(at(start))
                        .end(at(start + rng.random_range(1..120)))
                        .build()
                        .unwrap()
                };
                let outcome = if task % 4 == 0 {
                    store.reserve(one(&mut rng)).await.map(|_| ())
                } else {
                    let n = rng.random_range(2..=3);
                    let parts = (0..n).map(|_| one(&mut rng)).collect();
                    let b = NewBooking::new(
                        UserId::parse(user.clone()).unwrap(),
                        parts,
                        Hold::Default,
                        None,
                    )
                    .unwrap();
                    match store.book(b).await {
                        // Confirmed or cancelled together, beside the
                        // bookings and reserves of the others.
                        Ok(made) if rng.random_bool(0.5) => {
                            store.confirm_booking(made.id).await.map(|_| ())
                        }
                        Ok(made) => store.cancel_booking(made.id).await.map(|_| ()),
                        Err(e) => Err(e),
                    }
                };
                match outcome {
                    Ok(()) => made += 1,
                    Err(Error::Conflict(_) | Error::BookingRejected(_)) => refused += 1,
                    Err(e) => panic!("task {task}: an outcome other than ok or conflict: {e:?}"),
                }
            }
            (made, refused)
        }));
    }
    let (mut made, mut refused) = (0, 0);
    for t in tasks {
        let (m, r) = t.await.unwrap();
        made += m;
        refused += r;
    }
    assert!(made > 0 && refused > 0, "made {made}, refused {refused}");
    // No resource holds more units than it has, anywhere.
    let live: Vec<_> = env
        .all()
        .await
        .into_iter()
        .filter(|r| r.status.is_live())
        .collect();
    for (i, capacity) in [1u32, 1, 2, 3, 1].into_iter().enumerate() {
        let resource = format!("r{i}");
        let mut steps: Vec<(chrono::DateTime<chrono::Utc>, i64)> = live
            .iter()
            .filter(|r| r.resource_id.as_str() == resource)
            .flat_map(|r| {
                let q = i64::from(r.quantity);
                [(r.timespan.start(), q), (r.timespan.end(), -q)]
            })
            .collect();
        steps.sort_by_key(|(t, d)| (*t, *d));
        let mut used = 0;
        for (t, d) in steps {
            used += d;
            assert!(
                used <= i64::from(capacity),
                "{resource} holds {used} of {capacity} units at {t}"
            );
        }
    }
}

async fn the_parts_share_the_shortest_hold_their_resources_allow(env: Env) {
    let store = &env.store;
    for (id, default_hold, max_hold) in [("a", 20, 60), ("b", 10, 30)] {
        store
            .create_resource(spec(
                id,
                1,
                pb::BookingPolicy {
                    default_hold: minutes(default_hold),
                    max_hold: minutes(max_hold),
                    ..Default::default()
                },
            ))
            .await
            .unwrap();
    }
    let made = store
        .book(booking(vec![
            part("a", 0, 60),
            part("b", 0, 60),
            part("c", 0, 60),
        ]))
        .await
        .unwrap();
    for p in &made.parts {
        assert_eq!(p.expires_at, Some(at(10)), "{p:?}");
    }
    // An explicit hold longer than one part's resource allows refuses it.
    let mut long = booking(vec![part("a", 60, 120), part("b", 60, 120)]);
    long.hold = Hold::For(TimeDelta::minutes(45));
    for p in &mut long.parts {
        p.hold = long.hold;
    }
    let parts = rejected(store.book(long).await);
    assert_eq!(parts.len(), 1);
    assert_eq!(
        (parts[0].index, parts[0].policy[0].rule),
        (1, abi::Rule::MaxHold)
    );
}

async fn a_cancel_within_the_notice_refuses_the_whole_booking(env: Env) {
    let store = &env.store;
    store
        .create_resource(spec(
            "clinic",
            1,
            pb::BookingPolicy {
                min_cancel_notice: minutes(60),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let mut parts = booking(vec![part("room", 30, 90), part("clinic", 30, 90)]);
    for p in &mut parts.parts {
        p.status = abi::InitialStatus::Confirmed;
    }
    let made = store.book(parts).await.unwrap();
    let refused = match store.cancel_booking(made.id).await {
        Err(Error::BookingRejected(parts)) => parts,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(refused.len(), 1);
    assert_eq!(
        (refused[0].index, refused[0].policy[0].rule),
        (1, abi::Rule::CancelNotice)
    );
    let after = store.get_booking(made.id).await.unwrap();
    assert!(
        after
            .parts
            .iter()
            .all(|p| p.status == ReservationStatus::Confirmed),
        "nothing was cancelled"
    );
    // A checked-in part stays as it is; the others are cancelled.
    env.advance(30);
    store.check_in(made.parts[1].id).await.unwrap();
    let cancelled = store.cancel_booking(made.id).await.unwrap();
    let statuses: Vec<_> = cancelled.parts.iter().map(|p| p.status).collect();
    assert_eq!(
        statuses,
        [ReservationStatus::Cancelled, ReservationStatus::CheckedIn]
    );
}

async fn bookings_and_arrivals_are_judged_by_the_rules_as_they_are_whichever_server_judges_them(
    env: Env,
) {
    let store = &env.store;
    store
        .create_resource(spec(
            "suite",
            1,
            pb::BookingPolicy {
                granularity: minutes(15),
                min_cancel_notice: minutes(180),
                check_in_opens: minutes(60),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    store
        .create_resource(spec(
            "desk",
            1,
            pb::BookingPolicy {
                auto_release_after: minutes(30),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let stay = store
        .book(booking(vec![
            part("suite", 120, 240),
            part("desk", 120, 240),
        ]))
        .await
        .unwrap();
    // Each step by a server that has not seen the resources yet (another
    // one, or this one after a restart).
    let confirmed = env.twin().await.confirm_booking(stay.id).await.unwrap();
    let refused = rejected(env.twin().await.cancel_booking(stay.id).await);
    assert_eq!(
        (refused.len(), refused[0].index, refused[0].policy[0].rule),
        (1, 0, abi::Rule::CancelNotice)
    );
    // Check-in opens an hour before the start.
    env.advance(70);
    let (suite, desk) = (confirmed.parts[0].id, confirmed.parts[1].id);
    let arrived = env.twin().await.check_in(suite).await.unwrap();
    assert_eq!(arrived.status, ReservationStatus::CheckedIn);
    // Out early: the end comes up to the suite's grid.
    env.advance(67);
    let left = env.twin().await.check_out(suite).await.unwrap();
    assert_eq!(left.timespan.end(), at(150));
    // The desk, confirmed by a server that had not seen it, is released
    // thirty minutes after its start.
    env.advance(13);
    assert_eq!(env.get(desk).await.status, ReservationStatus::NoShow);
}

async fn a_deleted_resource_refuses_its_part_and_override_lifts_other_rules(env: Env) {
    let store = &env.store;
    store
        .create_resource(spec(
            "dr-lee",
            1,
            pb::BookingPolicy {
                min_notice: minutes(24 * 60),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    store
        .create_resource(spec("old", 1, pb::BookingPolicy::default()))
        .await
        .unwrap();
    store
        .delete_resource(abi::ResourceId::parse("old").unwrap(), false)
        .await
        .unwrap();
    let mut both = booking(vec![part("dr-lee", 60, 90), part("old", 60, 90)]);
    both.override_policy = true;
    for p in &mut both.parts {
        p.override_policy = true;
    }
    let parts = rejected(store.book(both).await);
    assert_eq!(parts.len(), 1, "{parts:?}");
    assert_eq!(
        (parts[0].index, parts[0].policy[0].rule),
        (1, abi::Rule::ResourceDeleted)
    );
    // Without the deleted part, the override books inside the notice.
    let mut one = booking(vec![part("dr-lee", 60, 90)]);
    one.override_policy = true;
    store.book(one).await.unwrap();
}

/// Bookings that arrive together may share a transaction; each is still
/// all or nothing on its own: a refused one leaves nothing behind and does
/// not refuse its neighbours, a dry one makes nothing, and a retry keeps
/// its first result.
async fn bookings_written_together_each_keep_their_own_outcome(env: Env) {
    let tasks: Vec<_> = (0..48i64)
        .map(|task| {
            let store = Arc::clone(&env.store);
            tokio::spawn(async move {
                let user = format!("user-{task}");
                let own = format!("own-{task}");
                // A third want the same hour of one room (and a room of
                // their own); a sixth only check; the rest two rooms each.
                let parts = match task % 6 {
                    0 | 3 => vec![("shared", 0, 60), (own.as_str(), 0, 60)],
                    _ => vec![(own.as_str(), 0, 60), (own.as_str(), 60, 120)],
                };
                let parts = parts
                    .into_iter()
                    .map(|(resource, from, to)| {
                        NewReservation::builder()
                            .user_id(user.as_str())
                            .resource_id(resource)
                            .start(at(from))
                            .end(at(to))
                            .build()
                            .unwrap()
                    })
                    .collect();
                let mut booking = NewBooking::new(
                    UserId::parse(&user).unwrap(),
                    parts,
                    Hold::Default,
                    Some(RequestId::parse(format!("key-{task}")).unwrap()),
                )
                .unwrap();
                booking.validate_only = task % 6 == 1;
                let first = store.book(booking.clone()).await;
                let again = store.book(booking).await;
                (task, first, again)
            })
        })
        .collect();
    let (mut shared_wins, mut made_parts) = (0, 0);
    for t in tasks {
        let (task, first, again) = t.await.unwrap();
        match (task % 6, &first, &again) {
            (1, Ok(a), Ok(b)) => {
                assert!(a.id.uuid().is_nil() && b.id.uuid().is_nil(), "task {task}");
            }
            (_, Ok(a), Ok(b)) => {
                assert_eq!(a.id, b.id, "task {task}: the retry returns the first");
                assert_eq!(
                    a.parts.iter().map(|p| p.id).collect::<Vec<_>>(),
                    b.parts.iter().map(|p| p.id).collect::<Vec<_>>()
                );
                assert_eq!(a.parts.len(), 2);
                made_parts += 2;
                if task % 3 == 0 {
                    shared_wins += 1;
                }
            }
            (0 | 3, Err(Error::BookingRejected(parts)), _) => {
                assert_eq!(parts.len(), 1, "task {task}: {parts:?}");
                assert_eq!(
                    (parts[0].index, parts[0].resource_id.as_str()),
                    (0, "shared")
                );
            }
            other => panic!("task {task}: {other:?}"),
        }
    }
    assert_eq!(shared_wins, 1);
    // 1 of the 16 sharing, and the 24 that book two rooms of their own.
    assert_eq!(made_parts, 2 * (1 + 24));
    let all = env.all().await;
    assert_eq!(
        all.len(),
        made_parts,
        "a refused booking left nothing behind"
    );
    assert!(all.iter().all(|r| r.booking_id.is_some()));
}

/// A refusal lists what is in the way as it reads anywhere else: a
/// checked-in reservation as checked in, a booking's part with its
/// booking; on a resource of one unit and of several, for a reserve, a
/// move and a booking.
async fn what_is_in_the_way_is_listed_whole(env: Env) {
    let store = &env.store;
    store
        .create_resource(spec("twin", 2, pb::BookingPolicy::default()))
        .await
        .unwrap();
    let made = store
        .book(booking(vec![part("single", 0, 60), part("twin", 0, 60)]))
        .await
        .unwrap();
    let mut arrived = Vec::new();
    for p in &made.parts {
        store.confirm(p.id).await.unwrap();
        arrived.push(store.check_in(p.id).await.unwrap());
    }
    let in_the_way = |e: Error| match e {
        Error::Conflict(c) => c.existing,
        Error::BookingRejected(parts) => parts
            .into_iter()
            .flat_map(|p| p.conflict.map(|c| c.existing).unwrap_or_default())
            .collect(),
        other => panic!("expected a conflict, got {other:?}"),
    };
    let whole = |listed: Vec<abi::Reservation>| {
        assert!(!listed.is_empty());
        for r in listed {
            assert_eq!(r.status, ReservationStatus::CheckedIn, "{r:?}");
            assert!(r.checked_in_at.is_some(), "{r:?}");
            assert_eq!(r.booking_id, Some(made.id), "{r:?}");
        }
    };
    let two = |user: &str, resource: &str, from, to| {
        NewReservation::builder()
            .user_id(user)
            .resource_id(resource)
            .start(at(from))
            .end(at(to))
            .quantity(2)
            .build()
            .unwrap()
    };
    whole(in_the_way(
        env.reserve("bob", "single", 30, 90).await.unwrap_err(),
    ));
    whole(in_the_way(
        store.reserve(two("bob", "twin", 30, 90)).await.unwrap_err(),
    ));
    whole(in_the_way(
        store
            .book(
                NewBooking::new(
                    UserId::parse("bob").unwrap(),
                    vec![two("bob", "twin", 30, 90)],
                    Hold::Default,
                    None,
                )
                .unwrap(),
            )
            .await
            .unwrap_err(),
    ));
    let later = env.reserve("bob", "single", 120, 180).await.unwrap();
    let moved = ReservationUpdate::builder()
        .id(later.id.to_string())
        .start(at(30))
        .end(at(90))
        .build()
        .unwrap();
    whole(in_the_way(store.update(moved).await.unwrap_err()));
}
