//! Listen: every change, in change-id order, resumable.

use abi::{ChangeOp, ListenFilter, ReservationStatus, ReservationUpdate};

use crate::support::{Env, at, next, nothing_more, statuses};

conformance!(
    listener_sees_every_kind_of_change_in_order,
    listener_resumes_after_a_change_id_with_exactly_the_later_changes,
    listener_filters_by_user_and_resource,
    listener_sees_only_changes_after_it_started,
    sweep_expires_overdue_holds_with_change_events,
    sweep_purges_changes_past_retention,
    resuming_below_what_retention_deleted_is_out_of_range,
    retention_overtaking_a_replay_ends_it_out_of_range,
    resuming_past_the_latest_change_is_refused,
);

async fn listener_sees_every_kind_of_change_in_order(env: Env) {
    let mut feed = env.listen(ListenFilter::default()).await;
    let r = env.reserve("alice", "room-1", 60, 120).await.unwrap();
    env.store.confirm(r.id).await.unwrap();
    let note = ReservationUpdate::builder()
        .id(r.id.to_string())
        .note("bring cake")
        .build()
        .unwrap();
    env.store.update(note).await.unwrap();
    let moved = ReservationUpdate::builder()
        .id(r.id.to_string())
        .start(at(180))
        .end(at(240))
        .build()
        .unwrap();
    env.store.update(moved).await.unwrap();
    env.store.cancel(r.id).await.unwrap();

    let mut changes = Vec::new();
    for _ in 0..5 {
        changes.push(next(&mut feed).await);
    }
    nothing_more(&mut feed).await;
    assert!(
        changes.windows(2).all(|w| w[0].id < w[1].id),
        "in change-id order"
    );
    assert!(changes.iter().all(|c| c.reservation.id == r.id));
    let ops: Vec<_> = changes.iter().map(|c| c.op).collect();
    assert_eq!(
        ops,
        [
            ChangeOp::Create,
            ChangeOp::Update,
            ChangeOp::Update,
            ChangeOp::Update,
            ChangeOp::Update
        ]
    );
    assert_eq!(
        statuses(&changes),
        [
            ReservationStatus::Pending,
            ReservationStatus::Confirmed,
            ReservationStatus::Confirmed,
            ReservationStatus::Confirmed,
            ReservationStatus::Cancelled
        ]
    );
    assert_eq!(changes[2].reservation.note.as_str(), "bring cake");
    assert_eq!(changes[3].reservation.timespan.start(), at(180));
    assert_eq!(
        changes[1].reservation.note.as_str(),
        "",
        "each change shows the reservation as it stood then"
    );
}

async fn listener_resumes_after_a_change_id_with_exactly_the_later_changes(env: Env) {
    let mut feed = env.listen(ListenFilter::default()).await;
    let mut made = Vec::new();
    for i in 0..6 {
        made.push(
            env.reserve("alice", "room-1", i * 60, i * 60 + 30)
                .await
                .unwrap(),
        );
    }
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(next(&mut feed).await);
    }
    drop(feed); // disconnect after the third... and resume from it
    let resume_from = seen[2].id;
    env.store.cancel(made[0].id).await.unwrap(); // a change while away
    let mut resumed = env
        .listen(ListenFilter {
            after_change_id: Some(resume_from),
            ..Default::default()
        })
        .await;
    let mut replay = Vec::new();
    for _ in 0..4 {
        replay.push(next(&mut resumed).await);
    }
    assert_eq!(
        replay[..3].iter().map(|c| c.id).collect::<Vec<_>>(),
        seen[3..].iter().map(|c| c.id).collect::<Vec<_>>()
    );
    assert_eq!(replay[3].reservation.status, ReservationStatus::Cancelled);
    // ...and then live, with no gap.
    env.store.confirm(made[1].id).await.unwrap();
    let live = next(&mut resumed).await;
    assert_eq!(live.id, replay[3].id + 1);
    assert_eq!(live.reservation.status, ReservationStatus::Confirmed);
    nothing_more(&mut resumed).await;

    // From zero: everything retained.
    let mut all = env
        .listen(ListenFilter {
            after_change_id: Some(0),
            ..Default::default()
        })
        .await;
    for expected in 1..=8 {
        let c = next(&mut all).await;
        assert_eq!(c.id, expected);
    }
    nothing_more(&mut all).await;
}

async fn listener_filters_by_user_and_resource(env: Env) {
    let mut alices = env
        .listen(ListenFilter {
            user_id: Some("alice".parse().unwrap()),
            ..Default::default()
        })
        .await;
    let mut room2 = env
        .listen(ListenFilter {
            resource_id: Some("room-2".parse().unwrap()),
            ..Default::default()
        })
        .await;
    env.reserve("bob", "room-1", 0, 60).await.unwrap();
    let a = env.reserve("alice", "room-1", 60, 120).await.unwrap();
    let b = env.reserve("bob", "room-2", 0, 60).await.unwrap();
    assert_eq!(next(&mut alices).await.reservation.id, a.id);
    nothing_more(&mut alices).await;
    assert_eq!(next(&mut room2).await.reservation.id, b.id);
    nothing_more(&mut room2).await;
    // Resuming applies the filter to the replay too.
    let mut replay = env
        .listen(ListenFilter {
            user_id: Some("bob".parse().unwrap()),
            after_change_id: Some(0),
            ..Default::default()
        })
        .await;
    assert_eq!(
        next(&mut replay).await.reservation.resource_id.as_str(),
        "room-1"
    );
    assert_eq!(next(&mut replay).await.reservation.id, b.id);
    nothing_more(&mut replay).await;
}

async fn listener_sees_only_changes_after_it_started(env: Env) {
    env.reserve("alice", "room-1", 0, 60).await.unwrap();
    let mut feed = env.listen(ListenFilter::default()).await;
    nothing_more(&mut feed).await;
    let r = env.reserve("alice", "room-1", 60, 120).await.unwrap();
    assert_eq!(next(&mut feed).await.reservation.id, r.id);
}

async fn sweep_expires_overdue_holds_with_change_events(env: Env) {
    let stale = env.reserve("alice", "room-1", 0, 60).await.unwrap();
    let kept = env.confirmed("alice", "room-2", 0, 60).await;
    let mut feed = env.listen(ListenFilter::default()).await;
    assert_eq!(env.store.sweep().await.unwrap().expired, 0);
    env.advance(30);
    let report = env.store.sweep().await.unwrap();
    assert_eq!(report.expired, 1);
    let change = next(&mut feed).await;
    assert_eq!(change.op, ChangeOp::Update);
    assert_eq!(change.reservation.id, stale.id);
    assert_eq!(change.reservation.status, ReservationStatus::Expired);
    assert_eq!(change.changed_at, at(30));
    assert_eq!(
        env.store.sweep().await.unwrap().expired,
        0,
        "once is enough"
    );
    assert_eq!(env.get(kept.id).await.status, ReservationStatus::Confirmed);
    nothing_more(&mut feed).await;
}

async fn sweep_purges_changes_past_retention(env: Env) {
    let r = env.confirmed("alice", "room-1", 0, 60).await; // changes 1 and 2
    env.advance(60 * 24 * 7 + 1);
    env.store.cancel(r.id).await.unwrap(); // change 3, inside the retention
    let report = env.store.sweep().await.unwrap();
    assert_eq!(report.purged_changes, 2);
    let mut replay = env
        .listen(ListenFilter {
            after_change_id: Some(0),
            ..Default::default()
        })
        .await;
    let only = next(&mut replay).await;
    assert_eq!(only.id, 3);
    nothing_more(&mut replay).await;
}

/// A listener that asks to resume after a change whose successors were
/// deleted would silently miss them: it is told, with the oldest id kept.
async fn resuming_below_what_retention_deleted_is_out_of_range(env: Env) {
    let r = env.confirmed("alice", "room-1", 0, 60).await; // changes 1 and 2
    env.advance(60 * 24 * 7 + 1);
    env.store.cancel(r.id).await.unwrap(); // change 3
    env.store.sweep().await.unwrap(); // deletes 1 and 2
    let err = env
        .store
        .listen(ListenFilter {
            after_change_id: Some(1),
            ..Default::default()
        })
        .await
        .err()
        .expect("out of range");
    assert!(
        matches!(
            err,
            abi::Error::ChangesExpired {
                oldest_change_id: 3
            }
        ),
        "{err:?}"
    );
    // Resuming at the last deleted id misses nothing; 0 means the oldest.
    for after in [2, 0] {
        let mut replay = env
            .listen(ListenFilter {
                after_change_id: Some(after),
                ..Default::default()
            })
            .await;
        assert_eq!(next(&mut replay).await.id, 3, "after {after}");
    }
}

/// A replay is read in batches as its client reads; retention that deletes
/// changes it has not read yet ends it out of range (naming the oldest id
/// kept), never with a silent skip to what is left.
async fn retention_overtaking_a_replay_ends_it_out_of_range(env: Env) {
    use futures::StreamExt;
    for i in 0..600 {
        env.reserve("alice", "room-1", i * 2, i * 2 + 1)
            .await
            .unwrap(); // changes 1..=600
    }
    let mut replay = env
        .listen(ListenFilter {
            after_change_id: Some(1),
            ..Default::default()
        })
        .await;
    assert_eq!(next(&mut replay).await.id, 2);
    // From the oldest (0), what is kept is the whole ask.
    let mut oldest = env
        .listen(ListenFilter {
            after_change_id: Some(0),
            ..Default::default()
        })
        .await;
    assert_eq!(next(&mut oldest).await.id, 1);
    env.advance(60 * 24 * 7 + 1);
    env.reserve("bob", "room-2", 0, 1).await.unwrap(); // change 601
    assert_eq!(env.store.sweep().await.unwrap().purged_changes, 600);
    let mut ids = vec![2];
    let ended = loop {
        match tokio::time::timeout(std::time::Duration::from_secs(10), replay.next()).await {
            Ok(Some(Ok(change))) => ids.push(change.id),
            Ok(Some(Err(e))) => break e,
            Ok(None) => panic!("the replay ended without an error after {ids:?}"),
            Err(_) => panic!("the replay went on past {:?} without an error", ids.last()),
        }
    };
    assert!(
        matches!(
            ended,
            abi::Error::ChangesExpired {
                oldest_change_id: 601
            }
        ),
        "{ended:?}"
    );
    // What came before the end came in order, with nothing skipped.
    let expected: Vec<i64> = (2..=*ids.last().unwrap()).collect();
    assert_eq!(ids, expected);

    // The replay from the oldest goes on from what retention kept: the
    // first batch as read, then 601 (bob's) and the holds' expiries.
    let mut ids = vec![1];
    while ids.len() < 1201 - 100 {
        match tokio::time::timeout(std::time::Duration::from_secs(10), oldest.next()).await {
            Ok(Some(Ok(change))) => ids.push(change.id),
            other => panic!("after {:?}: {other:?}", ids.last()),
        }
    }
    let cut = ids.iter().position(|id| *id == 601).expect("bob's change");
    assert_eq!(ids[..cut], (1..=cut as i64).collect::<Vec<_>>());
    assert_eq!(ids[cut..], (601..=1201).collect::<Vec<_>>());
}

/// A resume point past every change made (a mistyped id) would skip every
/// change up to it: refused, naming the latest. The latest itself, and a
/// change another server made that this one's feed has not read yet, are
/// fine.
async fn resuming_past_the_latest_change_is_refused(env: Env) {
    let resume = |after| ListenFilter {
        after_change_id: Some(after),
        ..Default::default()
    };
    env.confirmed("alice", "room-1", 0, 60).await; // changes 1 and 2
    match env.store.listen(resume(20)).await.err() {
        Some(abi::Error::InvalidArgument { field, reason }) => {
            assert_eq!(field, "after_change_id");
            assert!(reason.contains("latest change, 2"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let mut live = env.listen(resume(2)).await;
    let twin = env.twin().await;
    let mut from_twin = twin.listen(resume(2)).await.unwrap();
    env.reserve("bob", "room-2", 0, 60).await.unwrap(); // change 3
    assert_eq!(next(&mut live).await.id, 3);
    assert_eq!(next(&mut from_twin).await.id, 3);
    let mut after_it = twin.listen(resume(3)).await.unwrap();
    env.reserve("bob", "room-3", 0, 60).await.unwrap(); // change 4
    assert_eq!(next(&mut after_it).await.id, 4);
}
