//! Confirm, cancel and update: the status machine, notes, reschedules.

use abi::{Error, ReservationId, ReservationStatus, ReservationUpdate, StatusChange};

use crate::support::{Env, at};

conformance!(
    confirm_turns_a_hold_into_a_booking,
    confirm_is_idempotent,
    confirm_an_expired_hold_fails,
    confirm_a_cancelled_or_blocked_reservation_fails,
    confirm_unknown_id_is_not_found,
    cancel_is_soft_and_idempotent,
    cancel_an_expired_hold_fails,
    cancel_unknown_id_is_not_found,
    update_changes_the_note,
    update_changes_the_note_of_a_cancelled_reservation,
    update_confirms_and_cancels,
    update_with_nothing_to_change_returns_the_reservation,
    reschedule_moves_into_free_time,
    reschedule_may_overlap_its_own_old_interval,
    reschedule_into_a_taken_slot_conflicts,
    reschedule_replaces_an_overdue_hold,
    reschedule_a_cancelled_reservation_fails,
    update_unknown_id_is_not_found,
);

async fn confirm_turns_a_hold_into_a_booking(env: Env) {
    let r = env.reserve("alice", "room-1", 60, 120).await.unwrap();
    env.advance(5);
    let c = env.store.confirm(r.id).await.unwrap();
    assert_eq!(c.status, ReservationStatus::Confirmed);
    assert_eq!(c.expires_at, None);
    assert_eq!(c.updated_at, at(5));
    assert_eq!(c.created_at, at(0));
    env.advance(60);
    assert_eq!(env.get(r.id).await.status, ReservationStatus::Confirmed);
}

async fn confirm_is_idempotent(env: Env) {
    let r = env.reserve("alice", "room-1", 60, 120).await.unwrap();
    let first = env.store.confirm(r.id).await.unwrap();
    env.advance(1);
    let second = env.store.confirm(r.id).await.unwrap();
    assert_eq!(first, second, "the second confirm changes nothing");
}

async fn confirm_an_expired_hold_fails(env: Env) {
    let r = env.reserve("alice", "room-1", 60, 120).await.unwrap();
    env.advance(30);
    let err = env.store.confirm(r.id).await.unwrap_err();
    assert!(matches!(err, Error::FailedPrecondition(_)), "{err:?}");
    assert!(err.to_string().contains("expired"), "{err}");
    // ...also once the sweeper has rewritten it.
    env.store.sweep().await.unwrap();
    let err = env.store.confirm(r.id).await.unwrap_err();
    assert!(matches!(err, Error::FailedPrecondition(_)), "{err:?}");
}

async fn confirm_a_cancelled_or_blocked_reservation_fails(env: Env) {
    let r = env.reserve("alice", "room-1", 60, 120).await.unwrap();
    env.store.cancel(r.id).await.unwrap();
    let err = env.store.confirm(r.id).await.unwrap_err();
    assert!(matches!(err, Error::FailedPrecondition(_)), "{err:?}");

    let block = abi::NewReservation::builder()
        .user_id("ops")
        .resource_id("room-2")
        .start(at(0))
        .end(at(60))
        .status(abi::InitialStatus::Blocked)
        .build()
        .unwrap();
    let block = env.store.reserve(block).await.unwrap();
    let err = env.store.confirm(block.id).await.unwrap_err();
    assert!(matches!(err, Error::FailedPrecondition(_)), "{err:?}");
}

async fn confirm_unknown_id_is_not_found(env: Env) {
    let err = env.store.confirm(ReservationId::new()).await.unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
}

async fn cancel_is_soft_and_idempotent(env: Env) {
    let hold = env.reserve("alice", "room-1", 60, 120).await.unwrap();
    let booked = env.confirmed("alice", "room-2", 60, 120).await;
    for r in [hold, booked] {
        env.advance(1);
        let cancelled = env.store.cancel(r.id).await.unwrap();
        assert_eq!(cancelled.status, ReservationStatus::Cancelled);
        assert_eq!(cancelled.expires_at, None);
        env.advance(1);
        let again = env.store.cancel(r.id).await.unwrap();
        assert_eq!(again, cancelled);
        assert_eq!(env.get(r.id).await, cancelled, "the row is kept");
    }
}

async fn cancel_an_expired_hold_fails(env: Env) {
    let r = env.reserve("alice", "room-1", 60, 120).await.unwrap();
    env.advance(31);
    let err = env.store.cancel(r.id).await.unwrap_err();
    assert!(matches!(err, Error::FailedPrecondition(_)), "{err:?}");
    assert_eq!(env.get(r.id).await.status, ReservationStatus::Expired);
}

async fn cancel_unknown_id_is_not_found(env: Env) {
    let err = env.store.cancel(ReservationId::new()).await.unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
}

fn note(id: ReservationId, text: &str) -> ReservationUpdate {
    ReservationUpdate::builder()
        .id(id.to_string())
        .note(text)
        .build()
        .unwrap()
}

async fn update_changes_the_note(env: Env) {
    let r = env.reserve("alice", "room-1", 60, 120).await.unwrap();
    env.advance(1);
    let u = env
        .store
        .update(note(r.id, "projector please"))
        .await
        .unwrap();
    assert_eq!(u.note.as_str(), "projector please");
    assert_eq!(u.status, ReservationStatus::Pending);
    assert_eq!(u.expires_at, r.expires_at, "a note keeps the hold's expiry");
    assert_eq!(u.updated_at, at(1));
    assert_eq!(env.get(r.id).await, u);
}

async fn update_changes_the_note_of_a_cancelled_reservation(env: Env) {
    let r = env.reserve("alice", "room-1", 60, 120).await.unwrap();
    env.store.cancel(r.id).await.unwrap();
    let u = env
        .store
        .update(note(r.id, "cancelled: flu"))
        .await
        .unwrap();
    assert_eq!(u.status, ReservationStatus::Cancelled);
    assert_eq!(u.note.as_str(), "cancelled: flu");
}

async fn update_confirms_and_cancels(env: Env) {
    let r = env.reserve("alice", "room-1", 60, 120).await.unwrap();
    let u = ReservationUpdate::builder()
        .id(r.id.to_string())
        .status(StatusChange::Confirm)
        .note("confirmed by phone")
        .build()
        .unwrap();
    let u = env.store.update(u).await.unwrap();
    assert_eq!(u.status, ReservationStatus::Confirmed);
    assert_eq!(u.note.as_str(), "confirmed by phone");
    let c = env
        .store
        .update(ReservationUpdate::status(r.id, StatusChange::Cancel))
        .await
        .unwrap();
    assert_eq!(c.status, ReservationStatus::Cancelled);
}

async fn update_with_nothing_to_change_returns_the_reservation(env: Env) {
    let r = env.reserve("alice", "room-1", 60, 120).await.unwrap();
    env.advance(1);
    let same = ReservationUpdate::builder()
        .id(r.id.to_string())
        .build()
        .unwrap();
    assert_eq!(env.store.update(same).await.unwrap(), r);
}

fn reschedule(id: ReservationId, from: i64, to: i64) -> ReservationUpdate {
    ReservationUpdate::builder()
        .id(id.to_string())
        .start(at(from))
        .end(at(to))
        .build()
        .unwrap()
}

async fn reschedule_moves_into_free_time(env: Env) {
    let r = env.confirmed("alice", "room-1", 60, 120).await;
    env.reserve("bob", "room-1", 120, 180).await.unwrap();
    let moved = env.store.update(reschedule(r.id, 0, 60)).await.unwrap();
    assert_eq!(
        (moved.timespan.start(), moved.timespan.end()),
        (at(0), at(60))
    );
    assert_eq!(moved.status, ReservationStatus::Confirmed);
    // The old interval is free now.
    env.reserve("carol", "room-1", 60, 120).await.unwrap();
}

async fn reschedule_may_overlap_its_own_old_interval(env: Env) {
    let r = env.reserve("alice", "room-1", 60, 120).await.unwrap();
    let moved = env.store.update(reschedule(r.id, 90, 150)).await.unwrap();
    assert_eq!(moved.timespan.start(), at(90));
}

async fn reschedule_into_a_taken_slot_conflicts(env: Env) {
    let r = env.reserve("alice", "room-1", 60, 120).await.unwrap();
    let other = env.reserve("bob", "room-1", 120, 180).await.unwrap();
    let err = env
        .store
        .update(reschedule(r.id, 100, 140))
        .await
        .unwrap_err();
    let Error::Conflict(c) = err else {
        panic!("expected a conflict, got {err:?}");
    };
    assert_eq!(c.requested.id, Some(r.id));
    assert_eq!(c.requested.timespan.start(), at(100));
    assert_eq!(c.existing.len(), 1);
    assert_eq!(c.existing[0].id, other.id);
    assert_eq!(env.get(r.id).await, r, "nothing changed");
}

async fn reschedule_replaces_an_overdue_hold(env: Env) {
    let r = env.confirmed("alice", "room-1", 60, 120).await;
    let stale = env.reserve("bob", "room-1", 120, 180).await.unwrap();
    env.advance(30);
    let moved = env.store.update(reschedule(r.id, 100, 140)).await.unwrap();
    assert_eq!(moved.timespan.end(), at(140));
    assert_eq!(env.get(stale.id).await.status, ReservationStatus::Expired);
}

async fn reschedule_a_cancelled_reservation_fails(env: Env) {
    let r = env.reserve("alice", "room-1", 60, 120).await.unwrap();
    env.store.cancel(r.id).await.unwrap();
    let err = env.store.update(reschedule(r.id, 0, 60)).await.unwrap_err();
    assert!(matches!(err, Error::FailedPrecondition(_)), "{err:?}");
}

async fn update_unknown_id_is_not_found(env: Env) {
    for update in [
        note(ReservationId::new(), "x"),
        reschedule(ReservationId::new(), 0, 1),
    ] {
        let err = env.store.update(update).await.unwrap_err();
        assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    }
}
