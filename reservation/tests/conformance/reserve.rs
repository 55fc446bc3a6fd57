//! Reserve and get: holds, statuses, boundaries, idempotency.

use abi::{
    Error, InitialStatus, NewReservation, ReservationId, ReservationQuery, ReservationStatus,
};
use chrono::TimeDelta;

use crate::support::{Env, at};

conformance!(
    reserve_makes_a_pending_hold_that_expires_after_the_default,
    reserve_confirmed_or_blocked_has_no_expiry,
    reserve_with_a_zero_hold_never_expires,
    reserve_with_its_own_hold_expires_then,
    reserve_rejects_overlap_on_same_resource,
    back_to_back_reservations_both_succeed,
    one_microsecond_of_overlap_conflicts,
    other_resources_do_not_conflict,
    blocked_reservations_block,
    cancelled_reservations_block_nothing,
    overdue_hold_is_replaced_and_then_reads_expired,
    retried_reserve_returns_the_first_reservation,
    request_ids_are_per_user,
    request_id_reused_for_another_request_is_invalid,
    retry_after_a_conflict_tries_again,
    get_returns_the_reservation,
    get_unknown_id_is_not_found,
    ids_are_stored_and_matched_literally,
);

async fn reserve_makes_a_pending_hold_that_expires_after_the_default(env: Env) {
    let r = env.reserve("alice", "room-1", 60, 120).await.unwrap();
    assert_eq!(r.status, ReservationStatus::Pending);
    assert_eq!(r.user_id.as_str(), "alice");
    assert_eq!(r.resource_id.as_str(), "room-1");
    assert_eq!((r.timespan.start(), r.timespan.end()), (at(60), at(120)));
    assert_eq!(r.created_at, at(0));
    assert_eq!(r.updated_at, at(0));
    assert_eq!(r.expires_at, Some(at(30)), "the default hold is 30 minutes");
}

async fn reserve_confirmed_or_blocked_has_no_expiry(env: Env) {
    for (status, resource) in [
        (InitialStatus::Confirmed, "room-1"),
        (InitialStatus::Blocked, "room-2"),
    ] {
        let request = NewReservation::builder()
            .user_id("ops")
            .resource_id(resource)
            .start(at(0))
            .end(at(60))
            .status(status)
            .build()
            .unwrap();
        let r = env.store.reserve(request).await.unwrap();
        assert_eq!(r.status, ReservationStatus::from(status));
        assert_eq!(r.expires_at, None);
    }
}

async fn reserve_with_a_zero_hold_never_expires(env: Env) {
    let request = NewReservation::builder()
        .user_id("alice")
        .resource_id("room-1")
        .start(at(0))
        .end(at(60))
        .hold(TimeDelta::zero())
        .build()
        .unwrap();
    let r = env.store.reserve(request).await.unwrap();
    assert_eq!(r.expires_at, None);
    env.advance(60 * 24 * 365);
    assert_eq!(env.get(r.id).await.status, ReservationStatus::Pending);
}

async fn reserve_with_its_own_hold_expires_then(env: Env) {
    let request = NewReservation::builder()
        .user_id("alice")
        .resource_id("room-1")
        .start(at(0))
        .end(at(60))
        .hold(TimeDelta::minutes(5))
        .build()
        .unwrap();
    let r = env.store.reserve(request).await.unwrap();
    assert_eq!(r.expires_at, Some(at(5)));
    env.advance(4);
    assert_eq!(env.get(r.id).await.status, ReservationStatus::Pending);
    env.advance(1);
    assert_eq!(env.get(r.id).await.status, ReservationStatus::Expired);
}

async fn reserve_rejects_overlap_on_same_resource(env: Env) {
    let first = env.reserve("alice", "room-1", 60, 120).await.unwrap();
    let err = env.reserve("bob", "room-1", 90, 150).await.unwrap_err();
    let Error::Conflict(conflict) = err else {
        panic!("expected a conflict, got {err:?}");
    };
    assert_eq!(conflict.requested.user_id.as_str(), "bob");
    assert_eq!(conflict.requested.id, None);
    assert_eq!(conflict.requested.timespan.start(), at(90));
    assert_eq!(conflict.existing.len(), 1);
    assert_eq!(conflict.existing[0].id, first.id);
    assert_eq!(env.all().await.len(), 1, "the conflict stored nothing");
}

async fn back_to_back_reservations_both_succeed(env: Env) {
    env.reserve("alice", "room-1", 60, 120).await.unwrap();
    env.reserve("bob", "room-1", 120, 180).await.unwrap();
    env.reserve("carol", "room-1", 0, 60).await.unwrap();
    assert_eq!(env.all().await.len(), 3);
}

async fn one_microsecond_of_overlap_conflicts(env: Env) {
    env.reserve("alice", "room-1", 60, 120).await.unwrap();
    let micro = TimeDelta::microseconds(1);
    let request = NewReservation::builder()
        .user_id("bob")
        .resource_id("room-1")
        .start(at(120) - micro)
        .end(at(180))
        .build()
        .unwrap();
    let err = env.store.reserve(request).await.unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    let request = NewReservation::builder()
        .user_id("bob")
        .resource_id("room-1")
        .start(at(0))
        .end(at(60) + micro)
        .build()
        .unwrap();
    let err = env.store.reserve(request).await.unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
}

async fn other_resources_do_not_conflict(env: Env) {
    env.reserve("alice", "room-1", 60, 120).await.unwrap();
    env.reserve("alice", "room-2", 60, 120).await.unwrap();
}

async fn blocked_reservations_block(env: Env) {
    let block = NewReservation::builder()
        .user_id("ops")
        .resource_id("room-1")
        .start(at(0))
        .end(at(600))
        .status(InitialStatus::Blocked)
        .build()
        .unwrap();
    let block = env.store.reserve(block).await.unwrap();
    let Error::Conflict(c) = env.reserve("alice", "room-1", 60, 120).await.unwrap_err() else {
        panic!("expected a conflict");
    };
    assert_eq!(c.existing[0].id, block.id);
    assert_eq!(c.existing[0].status, ReservationStatus::Blocked);
}

async fn cancelled_reservations_block_nothing(env: Env) {
    let first = env.reserve("alice", "room-1", 60, 120).await.unwrap();
    let confirmed = env.confirmed("bob", "room-2", 60, 120).await;
    env.store.cancel(first.id).await.unwrap();
    env.store.cancel(confirmed.id).await.unwrap();
    env.reserve("carol", "room-1", 60, 120).await.unwrap();
    env.reserve("carol", "room-2", 60, 120).await.unwrap();
    assert_eq!(env.get(first.id).await.status, ReservationStatus::Cancelled);
}

async fn overdue_hold_is_replaced_and_then_reads_expired(env: Env) {
    let stale = env.reserve("alice", "room-1", 60, 120).await.unwrap();
    assert_eq!(stale.expires_at, Some(at(30)));
    env.advance(29);
    assert!(matches!(
        env.reserve("bob", "room-1", 60, 120).await,
        Err(Error::Conflict(_))
    ));
    env.advance(1);
    // Nothing has rewritten the hold, yet it reads expired and blocks nothing.
    assert_eq!(env.get(stale.id).await.status, ReservationStatus::Expired);
    let fresh = env.reserve("bob", "room-1", 90, 150).await.unwrap();
    let stale = env.get(stale.id).await;
    assert_eq!(stale.status, ReservationStatus::Expired);
    // Only a pending hold has an expiry (the contract: unset otherwise).
    assert_eq!(stale.expires_at, None);
    assert_eq!(env.get(fresh.id).await.status, ReservationStatus::Pending);
}

fn keyed(user: &str, resource: &str, key: &str) -> NewReservation {
    NewReservation::builder()
        .user_id(user)
        .resource_id(resource)
        .start(at(60))
        .end(at(120))
        .request_id(key)
        .build()
        .unwrap()
}

async fn retried_reserve_returns_the_first_reservation(env: Env) {
    let first = env
        .store
        .reserve(keyed("alice", "room-1", "k-1"))
        .await
        .unwrap();
    let retry = env
        .store
        .reserve(keyed("alice", "room-1", "k-1"))
        .await
        .unwrap();
    assert_eq!(retry.id, first.id);
    assert_eq!(retry, first);
    assert_eq!(env.all().await.len(), 1, "the retry made no row");
    // Still the first result once the hold has been confirmed.
    env.store.confirm(first.id).await.unwrap();
    let later = env
        .store
        .reserve(keyed("alice", "room-1", "k-1"))
        .await
        .unwrap();
    assert_eq!(later.id, first.id);
    assert_eq!(later.status, ReservationStatus::Confirmed);
}

async fn request_ids_are_per_user(env: Env) {
    let alice = env
        .store
        .reserve(keyed("alice", "room-1", "k-1"))
        .await
        .unwrap();
    let bob = env
        .store
        .reserve(keyed("bob", "room-2", "k-1"))
        .await
        .unwrap();
    assert_ne!(alice.id, bob.id);
    // Bob's key is independent of Alice's, and still conflicts on her room.
    let err = env
        .store
        .reserve(keyed("bob", "room-1", "k-2"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
}

async fn request_id_reused_for_another_request_is_invalid(env: Env) {
    env.store
        .reserve(keyed("alice", "room-1", "k-1"))
        .await
        .unwrap();
    let err = env
        .store
        .reserve(keyed("alice", "room-2", "k-1"))
        .await
        .unwrap_err();
    let Error::InvalidArgument { field, .. } = err else {
        panic!("expected invalid argument, got {err:?}");
    };
    assert_eq!(field, "request_id");
    assert_eq!(env.all().await.len(), 1);
}

async fn retry_after_a_conflict_tries_again(env: Env) {
    let blocker = env.reserve("bob", "room-1", 60, 120).await.unwrap();
    let err = env
        .store
        .reserve(keyed("alice", "room-1", "k-1"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)));
    env.store.cancel(blocker.id).await.unwrap();
    let r = env
        .store
        .reserve(keyed("alice", "room-1", "k-1"))
        .await
        .unwrap();
    assert_eq!(r.user_id.as_str(), "alice");
}

async fn get_returns_the_reservation(env: Env) {
    let r = env.reserve("alice", "room-1", 60, 120).await.unwrap();
    assert_eq!(env.get(r.id).await, r);
}

async fn get_unknown_id_is_not_found(env: Env) {
    let id = ReservationId::new();
    let err = env.store.get(id).await.unwrap_err();
    assert!(
        matches!(err, Error::NotFound(missing) if missing == id),
        "{err:?}"
    );
}

async fn ids_are_stored_and_matched_literally(env: Env) {
    let sly = "x' OR '1'='1";
    let r = env.reserve(sly, sly, 0, 60).await.unwrap();
    env.reserve("alice", "room-1", 0, 60).await.unwrap();
    env.reserve("bob", "x", 0, 60).await.unwrap();
    assert_eq!(env.get(r.id).await.resource_id.as_str(), sly);
    let by_user = env
        .query(ReservationQuery::builder().user_id(sly).build().unwrap())
        .await;
    assert_eq!(by_user.len(), 1);
    assert_eq!(by_user[0].id, r.id);
    let by_resource = env
        .query(
            ReservationQuery::builder()
                .resource_id(sly)
                .build()
                .unwrap(),
        )
        .await;
    assert_eq!(by_resource.len(), 1);
    let semi = "room'; DROP TABLE rsvp.reservations; --";
    env.reserve(semi, semi, 0, 60).await.unwrap();
    assert_eq!(env.all().await.len(), 4);
    assert!(matches!(
        env.reserve("eve", semi, 30, 90).await,
        Err(Error::Conflict(_))
    ));
}
