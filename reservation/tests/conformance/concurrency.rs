//! Many writers at once: the no-double-booking invariant holds, conflicts
//! name reservations that really block, and nothing but conflicts surfaces.

use std::sync::Arc;

use abi::{Error, NewReservation};
use rand::{Rng, SeedableRng, rngs::StdRng};
use rsvp_testing::assert_no_double_booking;

use crate::support::{Env, at};

conformance!(
    concurrent_reserves_never_double_book,
    hammering_one_resource_yields_only_conflicts,
    reserves_written_together_each_keep_their_own_outcome,
);

async fn concurrent_reserves_never_double_book(env: Env) {
    let store = env.store.clone();
    let mut tasks = Vec::new();
    for task in 0..64u64 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(task);
            let (mut made, mut conflicts) = (0, 0);
            for _ in 0..8 {
                let resource = format!("room-{}", rng.random_range(0..3));
                let start = rng.random_range(0..600);
                let length = rng.random_range(1..90);
                let request = NewReservation::builder()
                    .user_id(format!("user-{task}"))
                    .resource_id(resource)
                    .start(at(start))
                    .end(at(start + length))
                    .build()
                    .unwrap();
                match store.reserve(request).await {
                    Ok(_) => made += 1,
                    Err(Error::Conflict(c)) => {
                        conflicts += 1;
                        assert!(!c.existing.is_empty(), "a conflict names its blockers");
                        for blocker in &c.existing {
                            assert!(blocker.status.is_live(), "{blocker:?} is not live");
                            assert_eq!(blocker.resource_id, c.requested.resource_id);
                            assert!(
                                blocker.timespan.overlaps(&c.requested.timespan),
                                "{blocker:?} does not overlap {:?}",
                                c.requested.timespan
                            );
                        }
                    }
                    Err(e) => panic!("task {task}: unexpected error {e:?}"),
                }
            }
            (made, conflicts)
        }));
    }
    let (mut made, mut conflicts) = (0, 0);
    for t in tasks {
        let (m, c) = t.await.unwrap();
        made += m;
        conflicts += c;
    }
    assert_eq!(made + conflicts, 64 * 8);
    assert!(
        made > 0 && conflicts > 0,
        "made {made}, conflicts {conflicts}"
    );
    assert_eq!(env.all().await.len(), made);
    assert_no_double_booking(env.store.as_ref()).await;
}

async fn hammering_one_resource_yields_only_conflicts(env: Env) {
    let store = env.store.clone();
    let mut tasks = Vec::new();
    for task in 0..32i64 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut made = 0;
            for round in 0..10 {
                // Every interval overlaps every other one.
                let request = NewReservation::builder()
                    .user_id(format!("user-{task}"))
                    .resource_id("hot")
                    .start(at(task + round))
                    .end(at(1000 + task))
                    .build()
                    .unwrap();
                match store.reserve(request).await {
                    Ok(_) => made += 1,
                    Err(Error::Conflict(_)) => {}
                    Err(e) => panic!("task {task}: {e:?}"),
                }
            }
            made
        }));
    }
    let mut made = 0;
    for t in tasks {
        made += t.await.unwrap();
    }
    assert_eq!(made, 1, "exactly one reservation wins");
    assert_no_double_booking(env.store.as_ref()).await;
}

/// Reserves that arrive together may share a transaction; each still gets
/// its own answer: refusals do not refuse their neighbours, and a retry
/// keeps its first result.
async fn reserves_written_together_each_keep_their_own_outcome(env: Env) {
    let store = env.store.clone();
    let tasks: Vec<_> = (0..48i64)
        .map(|task| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                // A third want the same hour of one room; the rest a room each.
                let resource = if task % 3 == 0 {
                    "shared".to_string()
                } else {
                    format!("own-{task}")
                };
                let request = NewReservation::builder()
                    .user_id(format!("user-{task}"))
                    .resource_id(resource)
                    .start(at(0))
                    .end(at(60))
                    .request_id(format!("key-{task}"))
                    .build()
                    .unwrap();
                let first = store.reserve(request.clone()).await;
                let again = store.reserve(request).await;
                (task, first, again)
            })
        })
        .collect();
    let (mut shared_wins, mut own) = (0, 0);
    for t in tasks {
        let (task, first, again) = t.await.unwrap();
        match (&first, &again) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.id, b.id, "task {task}: the retry returns the first");
                if task % 3 == 0 {
                    shared_wins += 1;
                } else {
                    own += 1;
                }
            }
            (Err(Error::Conflict(_)), _) => assert_eq!(task % 3, 0, "task {task}: {first:?}"),
            other => panic!("task {task}: {other:?}"),
        }
    }
    assert_eq!((shared_wins, own), (1, 32));
    assert_eq!(env.all().await.len(), 33);
    assert_no_double_booking(env.store.as_ref()).await;
}
