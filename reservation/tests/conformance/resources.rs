//! Registered resources: their records, capacity, buffers and booking
//! policy, the same on every store.

use std::{sync::Arc, time::Duration};

use abi::{
    Error, NewReservation, ReservationStatus, ReservationUpdate, ResourceId, ResourceListing,
    ResourcePatch, ResourceSpec, Rule, StatusChange, pb,
};
use chrono::TimeDelta;
use rand::{Rng, SeedableRng, rngs::StdRng};
use rsvp_testing::assert_within_capacity;

use crate::support::{Env, at, hold, t0};

conformance!(
    resources_are_created_read_listed_and_updated,
    a_stale_etag_is_refused_and_deleted_resources_do_not_change,
    capacity_counts_the_units_of_overlapping_reservations,
    a_block_of_quantity_zero_takes_every_unit,
    buffers_are_occupied_time_and_stay_with_the_reservation,
    a_refusal_by_policy_lists_every_rule_broken,
    override_books_outside_the_policy_but_never_beyond_capacity,
    validate_only_answers_like_reserve_and_stores_nothing,
    more_units_are_checked_against_the_capacity,
    confirmed_reservations_keep_their_cancel_notice,
    a_capacity_cut_below_what_is_held_is_refused_naming_when,
    deleting_a_resource_with_live_reservations_needs_force,
    rules_changed_by_another_writer_apply_at_once,
    every_write_is_judged_by_the_rules_as_they_are_whichever_server_judges_it,
    a_retry_returns_what_the_first_call_made_though_the_rules_now_refuse,
    a_first_call_and_its_retry_across_the_notice_get_one_answer,
    sixty_four_buyers_of_ten_units_make_ten_winners,
    updates_and_changes_of_the_rules_at_once_never_deadlock,
    random_writes_never_exceed_the_capacity,
    a_page_of_resources_ends_before_it_outgrows_a_message,
    a_change_of_the_release_rule_applies_to_what_it_has_not_released,
);

fn minutes(m: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: m * 60,
        nanos: 0,
    })
}

fn spec(id: &str, capacity: u32, policy: pb::BookingPolicy) -> ResourceSpec {
    ResourceSpec::try_from(pb::Resource {
        id: id.into(),
        capacity,
        policy: Some(policy),
        ..Default::default()
    })
    .unwrap()
}

fn units(user: &str, resource: &str, from: i64, to: i64, quantity: u32) -> NewReservation {
    NewReservation::builder()
        .user_id(user)
        .resource_id(resource)
        .start(at(from))
        .end(at(to))
        .quantity(quantity)
        .build()
        .unwrap()
}

fn patch(id: &str, etag: &str, paths: &[&str], values: pb::Resource) -> ResourcePatch {
    ResourcePatch::from_request(pb::UpdateResourceRequest {
        resource: Some(pb::Resource {
            id: id.into(),
            etag: etag.into(),
            ..values
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: paths.iter().map(ToString::to_string).collect(),
        }),
    })
    .unwrap()
}

fn rules_of(e: Error) -> Vec<Rule> {
    match e {
        Error::Policy(v) => v.into_iter().map(|v| v.rule).collect(),
        other => panic!("expected a policy refusal, got {other:?}"),
    }
}

async fn resources_are_created_read_listed_and_updated(env: Env) {
    let store = &env.store;
    let id = ResourceId::parse("hotel-double").unwrap();
    assert!(matches!(
        store.get_resource(id.clone()).await,
        Err(Error::ResourceNotFound(_))
    ));
    let mut hotel = spec("hotel-double", 12, pb::BookingPolicy::default());
    hotel.labels.insert("kind".into(), "room".into());
    let made = store.create_resource(hotel.clone()).await.unwrap();
    assert_eq!(made.spec, hotel);
    assert_eq!(made.created_at, t0());
    assert!(matches!(
        store.create_resource(hotel.clone()).await,
        Err(Error::ResourceExists(_))
    ));
    for i in 0..5 {
        let mut s = spec(&format!("seat-{i}"), 1, pb::BookingPolicy::default());
        s.labels.insert("kind".into(), "seat".into());
        store.create_resource(s).await.unwrap();
    }

    // Pages by id, with a label filter.
    let mut listing = ResourceListing {
        labels: [("kind".to_string(), "seat".to_string())].into(),
        page_size: 2,
        ..ResourceListing::default()
    };
    let mut seen = Vec::new();
    loop {
        let page = store.list_resources(listing.clone()).await.unwrap();
        seen.extend(page.resources.iter().map(|r| r.spec.id.to_string()));
        match page.next_after {
            Some(after) => listing.after = Some(after),
            None => break,
        }
    }
    assert_eq!(seen, ["seat-0", "seat-1", "seat-2", "seat-3", "seat-4"]);

    // An update changes only what its mask names, and the etag.
    env.advance(1);
    let updated = store
        .update_resource(patch(
            "hotel-double",
            &made.etag(),
            &["capacity", "display_name"],
            pb::Resource {
                capacity: 10,
                display_name: "Double rooms".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    assert_eq!(updated.spec.capacity, 10);
    assert_eq!(updated.spec.display_name, "Double rooms");
    assert_eq!(updated.spec.labels, hotel.labels);
    assert_ne!(updated.etag(), made.etag());
    assert_eq!(updated.updated_at, at(1));
    assert_eq!(store.get_resource(id).await.unwrap(), updated);

    // Deleted ones are listed only on request.
    store
        .delete_resource(ResourceId::parse("seat-0").unwrap(), false)
        .await
        .unwrap();
    let page = store
        .list_resources(ResourceListing {
            page_size: 100,
            ..ResourceListing::default()
        })
        .await
        .unwrap();
    assert_eq!(page.resources.len(), 5);
    let page = store
        .list_resources(ResourceListing {
            page_size: 100,
            show_deleted: true,
            ..ResourceListing::default()
        })
        .await
        .unwrap();
    assert_eq!(page.resources.len(), 6);
}

async fn a_stale_etag_is_refused_and_deleted_resources_do_not_change(env: Env) {
    let store = &env.store;
    let made = store
        .create_resource(spec("room", 1, pb::BookingPolicy::default()))
        .await
        .unwrap();
    let cap = |n| pb::Resource {
        capacity: n,
        ..Default::default()
    };
    let next = store
        .update_resource(patch("room", &made.etag(), &["capacity"], cap(2)))
        .await
        .unwrap();
    let stale = store
        .update_resource(patch("room", &made.etag(), &["capacity"], cap(3)))
        .await;
    assert!(
        matches!(stale, Err(Error::EtagMismatch { .. })),
        "{stale:?}"
    );
    // An empty etag skips the check.
    store
        .update_resource(patch("room", "", &["capacity"], cap(3)))
        .await
        .unwrap();
    let gone = store
        .delete_resource(next.spec.id.clone(), false)
        .await
        .unwrap();
    assert!(gone.deleted_at.is_some());
    let again = store
        .delete_resource(next.spec.id.clone(), false)
        .await
        .unwrap();
    assert_eq!(again, gone, "deleting twice changes nothing");
    // Deleted, whatever the etag: the one read before the delete too.
    for etag in ["", next.etag().as_str()] {
        assert!(matches!(
            store
                .update_resource(patch("room", etag, &["capacity"], cap(4)))
                .await,
            Err(Error::ResourceDeleted(_))
        ));
    }
    assert!(matches!(
        store
            .update_resource(patch("nowhere", "", &["capacity"], cap(4)))
            .await,
        Err(Error::ResourceNotFound(_))
    ));
}

async fn capacity_counts_the_units_of_overlapping_reservations(env: Env) {
    let store = &env.store;
    store
        .create_resource(spec("hall", 3, pb::BookingPolicy::default()))
        .await
        .unwrap();
    let two = store.reserve(units("a", "hall", 60, 120, 2)).await.unwrap();
    assert_eq!(two.quantity, 2);
    let Err(Error::Conflict(c)) = store.reserve(units("b", "hall", 90, 150, 2)).await else {
        panic!("two more units do not fit over [90, 120)");
    };
    assert_eq!(c.capacity, 3);
    assert_eq!(c.requested.quantity, 2);
    assert_eq!(c.existing.len(), 1);
    assert_eq!(c.existing[0].id, two.id);
    assert_eq!(c.full.len(), 1);
    assert_eq!((c.full[0].start(), c.full[0].end()), (at(90), at(120)));
    // One more fits; then nothing over that hour.
    store.reserve(units("b", "hall", 90, 150, 1)).await.unwrap();
    let Err(Error::Conflict(c)) = store.reserve(units("c", "hall", 0, 200, 1)).await else {
        panic!("the hall is full over [90, 120)");
    };
    assert_eq!(c.existing.len(), 2);
    assert_eq!((c.full[0].start(), c.full[0].end()), (at(90), at(120)));
    // More units than there are never fit.
    let Err(Error::Conflict(c)) = store.reserve(units("d", "hall", 300, 360, 4)).await else {
        panic!("4 units of 3");
    };
    assert!(c.existing.is_empty());
    assert_eq!((c.full[0].start(), c.full[0].end()), (at(300), at(360)));
    // A cancel frees its units.
    store.cancel(two.id).await.unwrap();
    store.reserve(units("c", "hall", 0, 200, 2)).await.unwrap();
    assert_within_capacity(store.as_ref()).await;
}

async fn a_block_of_quantity_zero_takes_every_unit(env: Env) {
    let store = &env.store;
    store
        .create_resource(spec("hall", 5, pb::BookingPolicy::default()))
        .await
        .unwrap();
    let closure = NewReservation::builder()
        .user_id("admin")
        .resource_id("hall")
        .start(at(0))
        .end(at(60))
        .status(abi::InitialStatus::Blocked)
        .build()
        .unwrap();
    let block = store.reserve(closure.clone()).await.unwrap();
    assert_eq!(block.quantity, 0);
    assert_eq!(block.status, ReservationStatus::Blocked);
    assert!(matches!(
        store.reserve(units("a", "hall", 30, 90, 1)).await,
        Err(Error::Conflict(_))
    ));
    store.reserve(units("a", "hall", 60, 90, 5)).await.unwrap();
    let Err(Error::Conflict(c)) = store
        .reserve(NewReservation {
            timespan: abi::Timespan::new(at(70), at(80)).unwrap(),
            ..closure.clone()
        })
        .await
    else {
        panic!("a closure needs every unit free");
    };
    assert_eq!(c.requested.quantity, 0);
    // Given a number, the block holds that many units, never more than
    // the capacity.
    let units_of = |n| {
        ReservationUpdate::builder()
            .id(block.id.to_string())
            .quantity(n)
            .build()
            .unwrap()
    };
    let Err(Error::Conflict(c)) = store.update(units_of(6)).await else {
        panic!("6 units of 5");
    };
    assert_eq!(c.capacity, 5);
    assert_eq!(store.get(block.id).await.unwrap().quantity, 0, "unchanged");
    assert_eq!(store.update(units_of(3)).await.unwrap().quantity, 3);
    store.reserve(units("b", "hall", 30, 40, 2)).await.unwrap();
    assert_within_capacity(store.as_ref()).await;
    // The same on a resource never registered (one unit).
    let closure = store
        .reserve(NewReservation {
            resource_id: abi::ResourceId::parse("shed").unwrap(),
            ..closure
        })
        .await
        .unwrap();
    let two = ReservationUpdate::builder()
        .id(closure.id.to_string())
        .quantity(2)
        .build()
        .unwrap();
    assert!(matches!(store.update(two).await, Err(Error::Conflict(_))));
}

async fn buffers_are_occupied_time_and_stay_with_the_reservation(env: Env) {
    let store = &env.store;
    let made = store
        .create_resource(spec(
            "room",
            1,
            pb::BookingPolicy {
                buffer_after: minutes(15),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    store.reserve(hold("a", "room", 60, 120)).await.unwrap();
    let Err(Error::Conflict(c)) = store.reserve(hold("b", "room", 120, 180)).await else {
        panic!("the cleaning after the first takes [120, 135)");
    };
    assert_eq!((c.full[0].start(), c.full[0].end()), (at(120), at(135)));
    // Its own cleaning would run into the next one: a clash of buffers
    // alone, named where it is, past the interval asked for.
    store.reserve(hold("z", "room", 200, 260)).await.unwrap();
    let Err(Error::Conflict(c)) = store.reserve(hold("b", "room", 140, 190)).await else {
        panic!("[190, 205) is the cleaning of one and the booking of the other");
    };
    assert_eq!(c.existing.len(), 1);
    assert_eq!((c.full[0].start(), c.full[0].end()), (at(200), at(205)));
    store.cancel(c.existing[0].id).await.unwrap();
    store.reserve(hold("b", "room", 135, 180)).await.unwrap();
    // A new policy applies to new reservations only.
    store
        .update_resource(patch(
            "room",
            &made.etag(),
            &["policy"],
            pb::Resource::default(),
        ))
        .await
        .unwrap();
    assert!(
        matches!(
            store.reserve(hold("c", "room", 190, 200)).await,
            Err(Error::Conflict(_))
        ),
        "the second keeps its cleaning until 195"
    );
    store.reserve(hold("c", "room", 195, 210)).await.unwrap();
    store.reserve(hold("d", "room", 210, 220)).await.unwrap();
    // Stretches taken by several reservations that meet are one.
    let Err(Error::Conflict(c)) = store.reserve(hold("e", "room", 190, 230)).await else {
        panic!("b's cleaning, c and d are in the way");
    };
    assert_eq!(c.existing.len(), 3);
    assert_eq!(c.full.len(), 1);
    assert_eq!((c.full[0].start(), c.full[0].end()), (at(190), at(220)));
}

fn clinic() -> ResourceSpec {
    // Tuesdays 09:00 to 17:00 in Paris, 15-minute grid, a day's notice.
    ResourceSpec::try_from(pb::Resource {
        id: "dr-lee".into(),
        time_zone: "Europe/Paris".into(),
        opening_hours: vec![pb::OpeningHours {
            day: pb::DayOfWeek::Tuesday.into(),
            open_minute: 9 * 60,
            close_minute: 17 * 60,
        }],
        policy: Some(pb::BookingPolicy {
            min_notice: minutes(24 * 60),
            granularity: minutes(15),
            max_hold: minutes(30),
            max_quantity: 1,
            ..Default::default()
        }),
        ..Default::default()
    })
    .unwrap()
}

/// Minutes after t0 of `hh:mm` Paris time (UTC+1 in December) on the
/// Tuesday a week after t0 (t0 is Tuesday 2026-12-01, 00:00 UTC).
fn next_tuesday(hh: i64, mm: i64) -> i64 {
    7 * 24 * 60 + (hh - 1) * 60 + mm
}

async fn a_refusal_by_policy_lists_every_rule_broken(env: Env) {
    let store = &env.store;
    store.create_resource(clinic()).await.unwrap();
    let ok = hold(
        "client",
        "dr-lee",
        next_tuesday(10, 0),
        next_tuesday(10, 30),
    );
    store.reserve(ok).await.unwrap();
    // Today, off the grid, before opening, two units.
    let bad = units("client", "dr-lee", 8 * 60 - 10, 8 * 60 + 20, 2);
    let broken = rules_of(store.reserve(bad).await.unwrap_err());
    assert_eq!(
        broken,
        [
            Rule::MinNotice,
            Rule::Granularity,
            Rule::OpeningHours,
            Rule::MaxQuantity
        ]
    );
    // A hold longer than allowed, or one that never expires.
    let long = NewReservation::builder()
        .user_id("client")
        .resource_id("dr-lee")
        .start(at(next_tuesday(11, 0)))
        .end(at(next_tuesday(11, 15)))
        .hold(TimeDelta::hours(2))
        .build()
        .unwrap();
    assert_eq!(
        rules_of(store.reserve(long).await.unwrap_err()),
        [Rule::MaxHold]
    );
    // Policy first: a request breaking a rule is refused for it even when
    // the time is taken.
    let taken = hold("other", "dr-lee", next_tuesday(10, 0), next_tuesday(10, 7));
    assert_eq!(
        rules_of(store.reserve(taken).await.unwrap_err()),
        [Rule::Granularity]
    );
    // The default hold is cut to the longest allowed.
    let held = store
        .reserve(hold(
            "client",
            "dr-lee",
            next_tuesday(12, 0),
            next_tuesday(12, 15),
        ))
        .await
        .unwrap();
    assert_eq!(held.expires_at, Some(t0() + TimeDelta::minutes(30)));
}

async fn override_books_outside_the_policy_but_never_beyond_capacity(env: Env) {
    let store = &env.store;
    store.create_resource(clinic()).await.unwrap();
    let mut soon = hold("admin", "dr-lee", 60, 67);
    soon.override_policy = true;
    let made = store.reserve(soon.clone()).await.unwrap();
    assert_eq!(made.timespan.start(), at(60));
    let mut again = soon.clone();
    again.user_id = abi::UserId::parse("admin-2").unwrap();
    assert!(matches!(
        store.reserve(again).await,
        Err(Error::Conflict(_))
    ));
    // Blocks are exempt from the policy.
    let closure = NewReservation::builder()
        .user_id("admin")
        .resource_id("dr-lee")
        .start(at(120))
        .end(at(127))
        .status(abi::InitialStatus::Blocked)
        .build()
        .unwrap();
    store.reserve(closure).await.unwrap();
    // A deleted resource takes nothing, override or not.
    store
        .delete_resource(ResourceId::parse("dr-lee").unwrap(), true)
        .await
        .unwrap();
    assert_eq!(
        rules_of(store.reserve(soon).await.unwrap_err()),
        [Rule::ResourceDeleted]
    );
}

async fn validate_only_answers_like_reserve_and_stores_nothing(env: Env) {
    let store = &env.store;
    store.create_resource(clinic()).await.unwrap();
    let mut dry = hold(
        "client",
        "dr-lee",
        next_tuesday(10, 0),
        next_tuesday(10, 30),
    );
    dry.validate_only = true;
    dry.request_id = Some(abi::RequestId::parse("key-1").unwrap());
    let answer = store.reserve(dry.clone()).await.unwrap();
    assert!(answer.id.uuid().is_nil(), "no id: nothing was made");
    assert_eq!(answer.status, ReservationStatus::Pending);
    assert_eq!(answer.expires_at, Some(t0() + TimeDelta::minutes(30)));
    assert!(env.all().await.is_empty());
    // Refusals are the same as Reserve's.
    let mut early = dry.clone();
    early.timespan = abi::Timespan::new(at(60), at(75)).unwrap();
    assert_eq!(
        rules_of(store.reserve(early).await.unwrap_err()),
        [Rule::MinNotice, Rule::OpeningHours]
    );
    let mut real = dry.clone();
    real.validate_only = false;
    let made = store.reserve(real).await.unwrap();
    // Its key's dry run answers as its retry would: what the key made,
    // without its id; a different request with the key is refused; another
    // key finds the time taken.
    let retry = store.reserve(dry.clone()).await.unwrap();
    assert!(retry.id.uuid().is_nil());
    assert_eq!(
        (retry.timespan, retry.created_at, retry.expires_at),
        (made.timespan, made.created_at, made.expires_at)
    );
    let mut other = dry.clone();
    other.note = abi::Note::parse("another").unwrap();
    assert!(matches!(
        store.reserve(other).await,
        Err(Error::InvalidArgument {
            field: "request_id",
            ..
        })
    ));
    dry.request_id = Some(abi::RequestId::parse("key-2").unwrap());
    assert!(matches!(store.reserve(dry).await, Err(Error::Conflict(_))));
    assert_eq!(env.all().await.len(), 1);
}

async fn more_units_are_checked_against_the_capacity(env: Env) {
    let store = &env.store;
    store
        .create_resource(spec("bus", 4, pb::BookingPolicy::default()))
        .await
        .unwrap();
    let a = store.reserve(units("a", "bus", 0, 60, 2)).await.unwrap();
    store.reserve(units("b", "bus", 30, 90, 1)).await.unwrap();
    let more = |n| ReservationUpdate {
        quantity: Some(n),
        ..ReservationUpdate::status(a.id, StatusChange::Confirm)
    };
    let Err(Error::Conflict(c)) = store.update(more(4)).await else {
        panic!("4 + 1 units over [30, 60)");
    };
    assert_eq!((c.full[0].start(), c.full[0].end()), (at(30), at(60)));
    assert_eq!(
        store.get(a.id).await.unwrap().quantity,
        2,
        "nothing changed"
    );
    let done = store.update(more(3)).await.unwrap();
    assert_eq!(
        (done.quantity, done.status),
        (3, ReservationStatus::Confirmed)
    );
    let fewer = store
        .update(ReservationUpdate {
            quantity: Some(1),
            ..ReservationUpdate::status(a.id, StatusChange::Confirm)
        })
        .await
        .unwrap();
    assert_eq!(fewer.quantity, 1);
    assert!(matches!(
        ReservationUpdate::builder()
            .id(a.id.to_string())
            .quantity(0)
            .build(),
        Err(Error::InvalidArgument {
            field: "quantity",
            ..
        })
    ));
    assert_within_capacity(store.as_ref()).await;
}

async fn confirmed_reservations_keep_their_cancel_notice(env: Env) {
    let store = &env.store;
    store
        .create_resource(spec(
            "table",
            1,
            pb::BookingPolicy {
                min_cancel_notice: minutes(120),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let held = store.reserve(hold("a", "table", 60, 120)).await.unwrap();
    // A hold can always be released.
    store.cancel(held.id).await.unwrap();
    let booked = env.confirmed("a", "table", 60, 120).await;
    assert_eq!(
        rules_of(store.cancel(booked.id).await.unwrap_err()),
        [Rule::CancelNotice]
    );
    let moved = ReservationUpdate::builder()
        .id(booked.id.to_string())
        .start(at(300))
        .end(at(360))
        .build()
        .unwrap();
    assert_eq!(
        rules_of(store.update(moved.clone()).await.unwrap_err()),
        [Rule::CancelNotice]
    );
    let forced = store
        .update(ReservationUpdate {
            override_policy: true,
            ..moved
        })
        .await
        .unwrap();
    assert_eq!(forced.timespan.start(), at(300));
    store.cancel(forced.id).await.unwrap();
}

async fn a_capacity_cut_below_what_is_held_is_refused_naming_when(env: Env) {
    let store = &env.store;
    // Reservations made before the resource was registered count too.
    store.reserve(hold("a", "court", 60, 120)).await.unwrap();
    let made = store
        .create_resource(spec("court", 3, pb::BookingPolicy::default()))
        .await
        .unwrap();
    let b = store
        .reserve(units("b", "court", 90, 150, 2))
        .await
        .unwrap();
    store.confirm(b.id).await.unwrap();
    let cut = |n| {
        patch(
            "court",
            "",
            &["capacity"],
            pb::Resource {
                capacity: n,
                ..Default::default()
            },
        )
    };
    let err = store.update_resource(cut(2)).await.unwrap_err();
    let Error::CapacityInUse(why) = &err else {
        panic!("{err:?}");
    };
    assert!(why.contains(&at(90).to_rfc3339()), "{why}");
    assert_eq!(
        store
            .get_resource(made.spec.id.clone())
            .await
            .unwrap()
            .spec
            .capacity,
        3
    );
    // An overdue hold holds nothing.
    env.advance(31);
    store.update_resource(cut(2)).await.unwrap();
    store.reserve(units("c", "court", 0, 30, 2)).await.unwrap();
    assert!(matches!(
        store.reserve(units("c", "court", 100, 110, 1)).await,
        Err(Error::Conflict(_))
    ));
    assert_within_capacity(store.as_ref()).await;
    // A cut to one unit counts the rows of several units too.
    let err = store.update_resource(cut(1)).await.unwrap_err();
    let Error::CapacityInUse(why) = &err else {
        panic!("{err:?}");
    };
    assert!(why.contains(&at(0).to_rfc3339()), "{why}");
    // Reservations of several units that are cancelled hold nothing: one
    // unit is enough once they are.
    for r in env.all().await.iter().filter(|r| r.status.is_live()) {
        store.cancel(r.id).await.unwrap();
    }
    store.update_resource(cut(1)).await.unwrap();
    store.reserve(hold("d", "court", 90, 150)).await.unwrap();
    assert_within_capacity(store.as_ref()).await;
}

async fn deleting_a_resource_with_live_reservations_needs_force(env: Env) {
    let store = &env.store;
    let id = ResourceId::parse("studio").unwrap();
    store
        .create_resource(spec("studio", 2, pb::BookingPolicy::default()))
        .await
        .unwrap();
    let past = env.confirmed("a", "studio", 0, 10).await;
    let future = env.confirmed("b", "studio", 100, 200).await;
    env.advance(20);
    assert!(matches!(
        store.delete_resource(id.clone(), false).await,
        Err(Error::CapacityInUse(_))
    ));
    let mut feed = env
        .listen(abi::ListenFilter {
            after_change_id: None,
            ..abi::ListenFilter::default()
        })
        .await;
    let gone = store.delete_resource(id.clone(), true).await.unwrap();
    assert!(gone.deleted_at.is_some());
    assert_eq!(
        env.get(future.id).await.status,
        ReservationStatus::Cancelled
    );
    assert_eq!(env.get(past.id).await.status, ReservationStatus::Confirmed);
    let change = crate::support::next(&mut feed).await;
    assert_eq!(change.reservation.id, future.id);
    assert_eq!(change.reservation.status, ReservationStatus::Cancelled);
    // Gone for reservations, but still readable.
    assert_eq!(
        rules_of(
            store
                .reserve(hold("c", "studio", 300, 310))
                .await
                .unwrap_err()
        ),
        [Rule::ResourceDeleted]
    );
    assert!(
        store
            .get_resource(id.clone())
            .await
            .unwrap()
            .deleted_at
            .is_some()
    );
    // What it had is not moved or grown either, override or not.
    let moved = ReservationUpdate::builder()
        .id(past.id.to_string())
        .start(at(300))
        .end(at(310))
        .build()
        .unwrap();
    let grown = ReservationUpdate {
        quantity: Some(2),
        ..ReservationUpdate::status(past.id, StatusChange::Confirm)
    };
    for update in [moved, grown] {
        for override_policy in [false, true] {
            let update = ReservationUpdate {
                override_policy,
                ..update.clone()
            };
            assert_eq!(
                rules_of(store.update(update).await.unwrap_err()),
                [Rule::ResourceDeleted]
            );
        }
    }
    // A deleted id stays taken; one never registered is not found.
    assert!(matches!(
        store
            .create_resource(spec("studio", 2, pb::BookingPolicy::default()))
            .await,
        Err(Error::ResourceExists(_))
    ));
    assert!(store.get_resource(id).await.unwrap().deleted_at.is_some());
    assert!(matches!(
        store
            .delete_resource(ResourceId::parse("nowhere").unwrap(), true)
            .await,
        Err(Error::ResourceNotFound(_))
    ));
}

async fn rules_changed_by_another_writer_apply_at_once(env: Env) {
    // A second store on the same database: its rules cache knows nothing
    // of what the first does.
    let other = env.twin().await;
    let store = &env.store;
    store.reserve(hold("a", "room", 0, 10)).await.unwrap();
    other.reserve(hold("a", "room", 10, 20)).await.unwrap();
    store
        .create_resource(spec(
            "room",
            2,
            pb::BookingPolicy {
                min_notice: minutes(60),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    // `other` last saw the room unregistered: its next write is judged by
    // the rules as they are now.
    assert_eq!(
        rules_of(other.reserve(hold("b", "room", 30, 40)).await.unwrap_err()),
        [Rule::MinNotice]
    );
    other
        .reserve(hold("b", "room", 0, 90).tap_start(60))
        .await
        .unwrap();
    other.reserve(hold("c", "room", 60, 90)).await.unwrap();
    assert!(matches!(
        other.reserve(hold("d", "room", 60, 90)).await,
        Err(Error::Conflict(_))
    ));
}

async fn every_write_is_judged_by_the_rules_as_they_are_whichever_server_judges_it(env: Env) {
    let store = &env.store;
    let made = store
        .create_resource(spec(
            "table",
            1,
            pb::BookingPolicy {
                min_notice: minutes(60),
                min_cancel_notice: minutes(120),
                auto_release_after: minutes(15),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let booked = env.confirmed("a", "table", 90, 150).await;
    let held = store.reserve(hold("b", "table", 300, 360)).await.unwrap();
    // A server that has not seen the table yet (another one, or this one
    // after a restart) judges by its rules all the same: it keeps the
    // cancel notice, and a confirm sets the release of a no-show.
    let other = env.twin().await;
    assert_eq!(
        rules_of(other.cancel(booked.id).await.unwrap_err()),
        [Rule::CancelNotice]
    );
    let other = env.twin().await;
    let confirmed = other.confirm(held.id).await.unwrap();
    assert_eq!(
        rules_of(other.reserve(hold("c", "table", 30, 60)).await.unwrap_err()),
        [Rule::MinNotice]
    );
    // Another server lifts both notices: what `other` saw before refuses
    // nothing now.
    store
        .update_resource(patch(
            "table",
            &made.etag(),
            &["policy.min_notice", "policy.min_cancel_notice"],
            pb::Resource::default(),
        ))
        .await
        .unwrap();
    other.reserve(hold("c", "table", 30, 60)).await.unwrap();
    other.cancel(booked.id).await.unwrap();
    env.advance(316);
    assert_eq!(
        env.get(confirmed.id).await.status,
        ReservationStatus::NoShow
    );
}

trait TapStart {
    fn tap_start(self, minute: i64) -> Self;
}

impl TapStart for NewReservation {
    fn tap_start(mut self, minute: i64) -> Self {
        self.timespan = abi::Timespan::new(at(minute), self.timespan.end()).unwrap();
        self
    }
}

/// Confirms and note changes of a resource's reservations while its
/// capacity goes from one unit to two and back (its rows change from
/// unshared to shared each time): every call succeeds, none waits on
/// another in a cycle.
async fn updates_and_changes_of_the_rules_at_once_never_deadlock(env: Env) {
    let store = env.store.clone();
    store
        .create_resource(spec("hall", 1, pb::BookingPolicy::default()))
        .await
        .unwrap();
    let mut held = Vec::new();
    for i in 0..24 {
        held.push(
            store
                .reserve(hold("a", "hall", i * 10, i * 10 + 5))
                .await
                .unwrap(),
        );
    }
    let mut tasks = Vec::new();
    for mine in held.chunks(6) {
        let (store, mine) = (Arc::clone(&store), mine.to_vec());
        tasks.push(tokio::spawn(async move {
            for round in 0..8 {
                for r in &mine {
                    let update = if round == 0 {
                        ReservationUpdate::status(r.id, StatusChange::Confirm)
                    } else {
                        ReservationUpdate {
                            id: r.id,
                            status: None,
                            note: Some(abi::Note::parse(format!("round {round}")).unwrap()),
                            timespan: None,
                            quantity: None,
                            override_policy: false,
                        }
                    };
                    store.update(update).await.map(drop)?;
                }
            }
            Ok::<_, Error>(())
        }));
    }
    let changer = Arc::clone(&store);
    tasks.push(tokio::spawn(async move {
        for round in 0..16 {
            // Rules change now and then, not in a tight loop (each change
            // sends the confirms it overtakes back to plan again).
            tokio::time::sleep(Duration::from_millis(10)).await;
            changer
                .update_resource(patch(
                    "hall",
                    "",
                    &["capacity"],
                    pb::Resource {
                        capacity: 1 + round % 2,
                        ..Default::default()
                    },
                ))
                .await?;
        }
        Ok(())
    }));
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("no call waits forever")
            .unwrap()
            .unwrap();
    }
    let all = env.all().await;
    assert!(all.iter().all(|r| r.status == ReservationStatus::Confirmed));
    assert!(all.iter().all(|r| r.note.as_str() == "round 7"));
}

async fn sixty_four_buyers_of_ten_units_make_ten_winners(env: Env) {
    let store = env.store.clone();
    store
        .create_resource(spec("concert", 10, pb::BookingPolicy::default()))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for buyer in 0..64 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            store
                .reserve(units(&format!("buyer-{buyer}"), "concert", 600, 720, 1))
                .await
        }));
    }
    let (mut won, mut lost) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(Error::Conflict(c)) => {
                assert_eq!(c.capacity, 10);
                lost += 1;
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((won, lost), (10, 54));
    assert_within_capacity(store.as_ref()).await;
}

async fn random_writes_never_exceed_the_capacity(env: Env) {
    let store = env.store.clone();
    for (id, capacity) in [("pool-a", 3), ("pool-b", 5)] {
        store
            .create_resource(spec(
                id,
                capacity,
                pb::BookingPolicy {
                    buffer_before: minutes(5),
                    ..Default::default()
                },
            ))
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for task in 0..16u64 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(task);
            let mut mine = Vec::new();
            for _ in 0..24 {
                let resource = if rng.random_bool(0.5) {
                    "pool-a"
                } else {
                    "pool-b"
                };
                match rng.random_range(0..4) {
                    0 | 1 => {
                        let start = rng.random_range(0..300);
                        let request = units(
                            &format!("user-{task}"),
                            resource,
                            start,
                            start + rng.random_range(5..60),
                            rng.random_range(1..4),
                        );
                        match store.reserve(request).await {
                            Ok(r) => mine.push(r.id),
                            Err(Error::Conflict(_)) => {}
                            Err(e) => panic!("reserve: {e:?}"),
                        }
                    }
                    2 if !mine.is_empty() => {
                        let id = mine[rng.random_range(0..mine.len())];
                        let start = rng.random_range(0..300);
                        let update = ReservationUpdate::builder()
                            .id(id.to_string())
                            .start(at(start))
                            .end(at(start + rng.random_range(5..60)))
                            .quantity(rng.random_range(1..4))
                            .build()
                            .unwrap();
                        match store.update(update).await {
                            Ok(_) | Err(Error::Conflict(_)) | Err(Error::FailedPrecondition(_)) => {
                            }
                            Err(e) => panic!("update: {e:?}"),
                        }
                    }
                    _ if !mine.is_empty() => {
                        let id = mine.swap_remove(rng.random_range(0..mine.len()));
                        store.cancel(id).await.unwrap();
                    }
                    _ => {}
                }
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(120), t)
            .await
            .expect("writers finish")
            .unwrap();
    }
    assert_within_capacity(store.as_ref()).await;
}

async fn a_retry_returns_what_the_first_call_made_though_the_rules_now_refuse(env: Env) {
    let store = &env.store;
    store.create_resource(clinic()).await.unwrap();
    let mut first = hold(
        "client",
        "dr-lee",
        next_tuesday(10, 0),
        next_tuesday(10, 30),
    );
    first.status = abi::InitialStatus::Confirmed;
    first.request_id = Some(abi::RequestId::parse("booking-1").unwrap());
    let made = store.reserve(first.clone()).await.unwrap();
    // The retry comes when a day's notice no longer holds.
    env.advance(7 * 24 * 60);
    let again = store.reserve(first.clone()).await.unwrap();
    assert_eq!(again.id, made.id);
    // A new request is judged by the rules.
    first.request_id = Some(abi::RequestId::parse("booking-2").unwrap());
    first.timespan = abi::Timespan::new(at(next_tuesday(11, 0)), at(next_tuesday(11, 30))).unwrap();
    assert_eq!(
        rules_of(store.reserve(first).await.unwrap_err()),
        [Rule::MinNotice]
    );
}

/// A first call judged just before its notice runs out, still waiting to
/// be written when its retry is judged just after: the two get one answer,
/// whichever it is (the store judges both by the time it writes, under the
/// resource's lock), and a refusal leaves nothing behind.
async fn a_first_call_and_its_retry_across_the_notice_get_one_answer(env: Env) {
    let mut request = hold("client", "dr-kim", 61, 76);
    request.request_id = Some(abi::RequestId::parse("visit-9").unwrap());
    let answers = env
        .across_the_notice("dr-kim", || {
            let (store, request) = (Arc::clone(&env.store), request.clone());
            async move { store.reserve(request).await }
        })
        .await;
    match answers {
        (Ok(first), Ok(retry)) => {
            assert_eq!(first.id, retry.id);
            assert!(first.created_at <= at(1), "written past its notice");
            assert_eq!(env.all().await.len(), 1);
        }
        (Err(first), Err(retry)) => {
            assert_eq!(rules_of(first), [Rule::MinNotice]);
            assert_eq!(rules_of(retry), [Rule::MinNotice]);
            assert!(env.all().await.is_empty(), "a refusal left a reservation");
        }
        other => panic!("the first call and its retry disagree: {other:?}"),
    }
}

async fn a_page_of_resources_ends_before_it_outgrows_a_message(env: Env) {
    let store = &env.store;
    // Sixty-four resources of a thousand open periods each: about 22 KB
    // apiece, 1.4 MB in all.
    let periods: Vec<pb::Interval> = (0..1000)
        .map(|day| pb::Interval {
            start: Some(abi::time::to_timestamp(at(day * 24 * 60))),
            end: Some(abi::time::to_timestamp(at(day * 24 * 60 + 60))),
        })
        .collect();
    for i in 0..64 {
        let spec = ResourceSpec::try_from(pb::Resource {
            id: format!("court-{i:02}"),
            capacity: 1,
            open_periods: periods.clone(),
            ..Default::default()
        })
        .unwrap();
        store.create_resource(spec).await.unwrap();
    }
    let mut listing = ResourceListing {
        page_size: 1000,
        ..ResourceListing::default()
    };
    let (mut seen, mut pages) = (Vec::new(), 0);
    loop {
        let page = store.list_resources(listing.clone()).await.unwrap();
        let bytes: usize = page.resources.iter().map(|r| r.wire_size_bound()).sum();
        assert!(!page.resources.is_empty());
        assert!(bytes <= abi::MAX_PAGE_BYTES, "a page of {bytes} bytes");
        seen.extend(page.resources.iter().map(|r| r.spec.id.to_string()));
        pages += 1;
        match page.next_after {
            Some(after) => listing.after = Some(after),
            None => break,
        }
    }
    let all: Vec<String> = (0..64).map(|i| format!("court-{i:02}")).collect();
    assert_eq!(seen, all, "every resource once, in order");
    assert!(
        pages > 1,
        "sixty-four such resources take more than one page"
    );
}

/// `auto_release_after` is the resource's rule as it is: cleared, a
/// confirmed reservation nobody checked in is no longer released; set, one
/// made before is released by it (at once, when its time is past), one that
/// ended before is left as it was; registered, it applies to reservations
/// made before.
async fn a_change_of_the_release_rule_applies_to_what_it_has_not_released(env: Env) {
    let store = &env.store;
    let release = |after| pb::BookingPolicy {
        auto_release_after: after,
        ..Default::default()
    };
    store
        .create_resource(spec("desk", 1, release(minutes(30))))
        .await
        .unwrap();
    store
        .create_resource(spec("lamp", 1, release(None)))
        .await
        .unwrap();
    let desk = env.confirmed("ann", "desk", 60, 120).await;
    let lamp = env.confirmed("ann", "lamp", 60, 120).await;
    let ended = env.confirmed("ann", "lamp", -60, -30).await;
    let early = env.confirmed("ann", "cart", 60, 120).await;
    let rule = |id: &str, after| {
        patch(
            id,
            "",
            &["policy.auto_release_after"],
            pb::Resource {
                policy: Some(release(after)),
                ..Default::default()
            },
        )
    };
    store.update_resource(rule("desk", None)).await.unwrap();
    env.advance(100);
    store
        .update_resource(rule("lamp", minutes(10)))
        .await
        .unwrap();
    store
        .create_resource(spec("cart", 1, release(minutes(10))))
        .await
        .unwrap();
    assert_eq!(env.get(desk.id).await.status, ReservationStatus::Confirmed);
    assert_eq!(env.get(lamp.id).await.status, ReservationStatus::NoShow);
    assert_eq!(env.get(early.id).await.status, ReservationStatus::NoShow);
    assert_eq!(env.get(ended.id).await.status, ReservationStatus::Confirmed);
    // What is released holds nothing; what is not, still does.
    env.reserve("bob", "lamp", 100, 110).await.unwrap();
    env.reserve("bob", "cart", 100, 110).await.unwrap();
    assert!(matches!(
        env.reserve("bob", "desk", 100, 110).await,
        Err(Error::Conflict(_))
    ));
}
