//! Behaviour only the PostgreSQL store has: the exclusion constraint as the
//! last line of defence, writers that bypass the resource lock, change ids
//! that commit out of order, several stores on one database, migrations.

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use abi::{Error, ListenFilter, ReservationStatus};
use chrono::{DateTime, Utc};
use reservation::{PgStore, Rsvp, StoreOptions};
use rsvp_testing::{TestCluster, TestDb};
use sqlx::{PgPool, postgres::types::PgRange};
use support::{Env, at, hold, next, nothing_more};
use uuid::Uuid;

fn span(from: i64, to: i64) -> PgRange<DateTime<Utc>> {
    PgRange::from(at(from)..at(to))
}

/// Inserts a row directly, as a careless script would: no resource lock.
const RAW_INSERT: &str = "INSERT INTO rsvp.reservations \
    (id, user_id, resource_id, status, timespan, created_at, updated_at) \
    VALUES ($1, 'script', $2, $3::rsvp.reservation_status, $4, $5, $5)";

/// The SQLSTATE of a database error.
fn sqlstate(err: &sqlx::Error) -> Option<String> {
    err.as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned())
}

fn pool(env: &Env) -> &PgPool {
    env.pg.as_ref().expect("a PostgreSQL env").pool()
}

#[tokio::test]
async fn exclusion_constraint_refuses_overlapping_live_rows_from_any_writer() {
    let env = Env::postgres().await;
    env.reserve("alice", "room-1", 60, 120).await.unwrap();
    let err = sqlx::query(RAW_INSERT)
        .bind(Uuid::now_v7())
        .bind("room-1")
        .bind("confirmed")
        .bind(span(119, 180))
        .bind(at(0))
        .execute(pool(&env))
        .await
        .unwrap_err();
    let code = sqlstate(&err);
    assert_eq!(code.as_deref(), Some("23P01"), "{err}");
    // History does not block: a cancelled row may overlap.
    sqlx::query(RAW_INSERT)
        .bind(Uuid::now_v7())
        .bind("room-1")
        .bind("cancelled")
        .bind(span(60, 120))
        .bind(at(0))
        .execute(pool(&env))
        .await
        .unwrap();
    // Empty, unbounded and closed intervals are refused by the schema.
    for bad in [
        "[2026-01-01,2026-01-01)",
        "[2026-01-01,)",
        "[2026-01-01,2026-01-02]",
        "(2026-01-01,2026-01-02)",
    ] {
        let err = sqlx::query(
            "INSERT INTO rsvp.reservations (id, user_id, resource_id, status, timespan, created_at, updated_at) \
             VALUES ($1, 'u', 'r9', 'cancelled', $2::tstzrange, now(), now())",
        )
        .bind(Uuid::now_v7())
        .bind(bad)
        .execute(pool(&env))
        .await
        .unwrap_err();
        let code = sqlstate(&err);
        assert_eq!(code.as_deref(), Some("23514"), "{bad}: {err}");
    }
}

/// Registers `id` with `capacity` units.
/// Rows that could not be read back (an id with a control character, a
/// time of 'infinity' or past what a reader represents) are refused from
/// any writer: one of them would stop the change feed of every listener.
/// The feed goes on.
#[tokio::test]
async fn rows_that_could_not_be_read_back_are_refused_from_any_writer() {
    let env = Env::postgres().await;
    let mut feed = env.listen(ListenFilter::default()).await;
    let made = env.reserve("alice", "room-1", 0, 60).await.unwrap();
    assert_eq!(next(&mut feed).await.reservation.id, made.id);
    for set in [
        "UPDATE rsvp.reservations SET user_id = E'al\\tice' WHERE id = $1",
        "UPDATE rsvp.reservations SET resource_id = E'room\\u0085' WHERE id = $1",
        "UPDATE rsvp.reservations SET note = 'x', updated_at = 'infinity' WHERE id = $1",
        "UPDATE rsvp.reservations SET expires_at = '-infinity' WHERE id = $1",
        "UPDATE rsvp.reservations SET checked_in_at = '250000-01-01 00:00:00+00' WHERE id = $1",
        "UPDATE rsvp.reservations SET timespan = tstzrange('2026-01-01', '250000-01-01') \
         WHERE id = $1",
    ] {
        let err = sqlx::query(set)
            .bind(made.id.uuid())
            .execute(pool(&env))
            .await
            .unwrap_err();
        let code = sqlstate(&err);
        assert_eq!(code.as_deref(), Some("23514"), "{set}: {err}");
        assert!(err.to_string().contains("reservations_readable"), "{err}");
    }
    let later = env.reserve("bob", "room-2", 0, 60).await.unwrap();
    assert_eq!(next(&mut feed).await.reservation.id, later.id);
}

async fn register(env: &Env, id: &str, capacity: u32) {
    env.store
        .create_resource(
            abi::ResourceSpec::try_from(abi::pb::Resource {
                id: id.into(),
                capacity,
                ..Default::default()
            })
            .unwrap(),
        )
        .await
        .unwrap();
}

/// Inserts rows of several units directly, as a careless script would.
const RAW_UNITS: &str = "INSERT INTO rsvp.reservations \
    (id, user_id, resource_id, status, timespan, created_at, updated_at, quantity, shared) \
    VALUES ($1, 'script', $2, 'confirmed', $3, $4, $4, $5, $6)";

#[tokio::test]
async fn the_database_refuses_plain_sql_past_the_capacity() {
    let env = Env::postgres().await;
    register(&env, "hall", 3).await;
    let raw = |from: i64, to: i64, quantity: i32, shared: bool| {
        sqlx::query(RAW_UNITS)
            .bind(Uuid::now_v7())
            .bind("hall")
            .bind(span(from, to))
            .bind(at(0))
            .bind(quantity)
            .bind(shared)
            .execute(pool(&env))
    };
    raw(0, 60, 2, true).await.unwrap();
    raw(30, 90, 1, true).await.unwrap();
    let err = raw(45, 50, 1, true).await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("23514"), "{err}");
    assert!(err.to_string().contains("hall"), "{err}");
    // A row that pretends the resource has one unit is refused too, live
    // or not (it could be made live later).
    let err = raw(200, 210, 1, false).await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("23514"), "{err}");
    let err = sqlx::query(
        "INSERT INTO rsvp.reservations (id, user_id, resource_id, status, timespan, \
         created_at, updated_at) VALUES ($1, 'script', 'hall', 'cancelled', $2, $3, $3)",
    )
    .bind(Uuid::now_v7())
    .bind(span(0, 60))
    .bind(at(0))
    .execute(pool(&env))
    .await
    .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("23514"), "{err}");
    // So is a row of one unit moved onto it.
    sqlx::query(RAW_INSERT)
        .bind(Uuid::now_v7())
        .bind("elsewhere")
        .bind("confirmed")
        .bind(span(0, 60))
        .bind(at(0))
        .execute(pool(&env))
        .await
        .unwrap();
    let err = sqlx::query(
        "UPDATE rsvp.reservations SET resource_id = 'hall' WHERE resource_id = 'elsewhere'",
    )
    .execute(pool(&env))
    .await
    .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("23514"), "{err}");
    // Holding more units by an UPDATE is refused.
    let err = sqlx::query("UPDATE rsvp.reservations SET quantity = 3 WHERE quantity = 1")
        .execute(pool(&env))
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("23514"), "{err}");
    // So is a capacity cut below what is held, whoever makes it.
    let err = sqlx::query("UPDATE rsvp.resources SET capacity = 2 WHERE id = 'hall'")
        .execute(pool(&env))
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("23514"), "{err}");
    // A resource of one unit keeps the exclusion constraint, buffers included.
    register(&env, "room", 1).await;
    sqlx::query(
        "INSERT INTO rsvp.reservations (id, user_id, resource_id, status, timespan, created_at, \
         updated_at, buffer_after) VALUES ($1, 'script', 'room', 'confirmed', $2, $3, $3, \
         900000000)",
    )
    .bind(Uuid::now_v7())
    .bind(span(0, 60))
    .bind(at(0))
    .execute(pool(&env))
    .await
    .unwrap();
    let err = sqlx::query(RAW_INSERT)
        .bind(Uuid::now_v7())
        .bind("room")
        .bind("confirmed")
        .bind(span(70, 80))
        .bind(at(0))
        .execute(pool(&env))
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("23P01"), "{err}");
}

#[tokio::test]
async fn registering_a_capacity_moves_existing_rows_to_the_capacity_check() {
    let env = Env::postgres().await;
    env.confirmed("a", "court", 0, 60).await;
    register(&env, "court", 2).await;
    let shared: bool =
        sqlx::query_scalar("SELECT shared FROM rsvp.reservations WHERE resource_id = 'court'")
            .fetch_one(pool(&env))
            .await
            .unwrap();
    assert!(shared);
    env.confirmed("b", "court", 0, 60).await;
    assert!(matches!(
        env.reserve("c", "court", 0, 60).await,
        Err(Error::Conflict(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserve_racing_a_writer_that_bypassed_the_lock_reports_the_conflict() {
    let env = Env::postgres().await;
    let mut script = pool(&env).begin().await.unwrap();
    let raw_id = Uuid::now_v7();
    sqlx::query(RAW_INSERT)
        .bind(raw_id)
        .bind("room-1")
        .bind("confirmed")
        .bind(span(0, 60))
        .bind(at(0))
        .execute(&mut *script)
        .await
        .unwrap();
    // The reserve cannot see the uncommitted row, inserts, and waits on it
    // inside the exclusion check.
    let store = env.store.clone();
    let racing = tokio::spawn(async move { store.reserve(hold("alice", "room-1", 30, 90)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !racing.is_finished(),
        "the reserve waits for the other writer"
    );
    script.commit().await.unwrap();
    let err = racing.await.unwrap().unwrap_err();
    let Error::Conflict(c) = err else {
        panic!("expected a conflict, got {err:?}");
    };
    assert_eq!(c.existing.len(), 1);
    assert_eq!(c.existing[0].id.uuid(), raw_id);
    assert_eq!(c.existing[0].status, ReservationStatus::Confirmed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_committed_out_of_order_are_delivered_in_order() {
    let env = Env::postgres().await;
    let mut feed = env.listen(ListenFilter::default()).await;

    // A transaction draws change id 1 and stays open...
    let mut slow = pool(&env).begin().await.unwrap();
    let slow_id = Uuid::now_v7();
    sqlx::query(RAW_INSERT)
        .bind(slow_id)
        .bind("room-1")
        .bind("confirmed")
        .bind(span(0, 60))
        .bind(at(0))
        .execute(&mut *slow)
        .await
        .unwrap();
    // ...while change id 2 commits.
    let quick = env.reserve("alice", "room-2", 0, 60).await.unwrap();
    nothing_more(&mut feed).await; // 2 waits for 1
    slow.commit().await.unwrap();
    let first = next(&mut feed).await;
    let second = next(&mut feed).await;
    assert_eq!((first.id, first.reservation.id.uuid()), (1, slow_id));
    assert_eq!((second.id, second.reservation.id), (2, quick.id));

    // A change id whose transaction rolls back never arrives; the feed
    // moves past it once that transaction has ended.
    let mut doomed = pool(&env).begin().await.unwrap();
    sqlx::query(RAW_INSERT)
        .bind(Uuid::now_v7())
        .bind("room-3")
        .bind("confirmed")
        .bind(span(0, 60))
        .bind(at(0))
        .execute(&mut *doomed)
        .await
        .unwrap(); // change id 3
    let after = env.reserve("alice", "room-4", 0, 60).await.unwrap(); // change id 4
    nothing_more(&mut feed).await;
    doomed.rollback().await.unwrap();
    let c = next(&mut feed).await;
    assert_eq!((c.id, c.reservation.id), (4, after.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_one_store_reaches_listeners_of_another() {
    let db = TestDb::new().await;
    let one = db.store(StoreOptions::default()).await;
    let two = db.store(StoreOptions::default()).await;
    let mut feed = two.listen(ListenFilter::default()).await.unwrap();
    let r = one
        .reserve(
            abi::NewReservation::builder()
                .user_id("alice")
                .resource_id("room-1")
                .start(Utc::now())
                .end(Utc::now() + chrono::TimeDelta::hours(1))
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    let c = next(&mut feed).await;
    assert_eq!(c.reservation.id, r.id);
    one.cancel(r.id).await.unwrap();
    assert_eq!(
        next(&mut feed).await.reservation.status,
        ReservationStatus::Cancelled
    );
}

#[tokio::test]
async fn opening_a_store_applies_migrations_to_an_empty_database() {
    let db = TestDb::empty().await;
    let unmigrated = PgStore::connect(
        db.url(),
        StoreOptions {
            migrate: false,
            ..StoreOptions::default()
        },
    )
    .await
    .unwrap();
    let err = unmigrated.get(abi::ReservationId::new()).await.unwrap_err();
    assert!(matches!(err, Error::Internal(_)), "{err:?}");
    assert_eq!(err.to_string(), "internal error", "no SQL leaks out");

    let store = PgStore::connect(db.url(), StoreOptions::default())
        .await
        .unwrap();
    store.ping().await.unwrap();
    let again = PgStore::connect(db.url(), StoreOptions::default())
        .await
        .unwrap();
    again.ping().await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(
        applied,
        reservation::postgres::MIGRATOR.iter().count() as i64
    );
}

/// A server of this release restarting after a later release migrated the
/// database further (a rolling upgrade) still opens, and serves.
#[tokio::test]
async fn a_database_a_later_release_migrated_further_still_opens() {
    let db = TestDb::new().await;
    let store = db.store(StoreOptions::default()).await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations \
             (version, description, success, checksum, execution_time) \
         VALUES (99991231000001, 'from a later release', true, '\\x00', 0)",
    )
    .execute(store.pool())
    .await
    .unwrap();
    let older = PgStore::connect(db.url(), StoreOptions::default())
        .await
        .unwrap();
    older.reserve(hold("alice", "room-1", 0, 60)).await.unwrap();
}

#[tokio::test]
async fn an_unreachable_database_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = StoreOptions {
        acquire_timeout: Duration::from_secs(2),
        ..StoreOptions::default()
    };
    let err = PgStore::connect(&format!("postgres://nobody@127.0.0.1:{port}/none"), options)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    assert!(err.is_retryable());

    let err = PgStore::connect("mysql://what", StoreOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidArgument {
                field: "database_url",
                ..
            }
        ),
        "{err:?}"
    );
}

/// Pooled connections are not checked on every call; those that sat idle
/// are, so a database restarted while the service was quiet costs no call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restarted_while_idle_costs_no_call() {
    let cluster = tokio::task::spawn_blocking(|| TestCluster::start().unwrap())
        .await
        .unwrap();
    let options = StoreOptions {
        max_connections: 4,
        ..StoreOptions::default()
    };
    let store = PgStore::connect(&cluster.url("postgres"), options)
        .await
        .unwrap();
    // Open every connection of the pool.
    let warm = futures::future::join_all((0..8).map(|i| {
        let store = store.clone();
        async move { store.reserve(hold("u", &format!("warm-{i}"), 0, 60)).await }
    }))
    .await;
    assert!(warm.iter().all(Result::is_ok), "{warm:?}");

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.crash();
        cluster.restart().map(|()| cluster)
    })
    .await
    .unwrap()
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let calls = futures::future::join_all((0..8).map(|i| {
        let store = store.clone();
        async move { store.reserve(hold("u", &format!("after-{i}"), 0, 60)).await }
    }))
    .await;
    assert!(calls.iter().all(Result::is_ok), "{calls:?}");
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_delivers_every_change_made_by_concurrent_writers() {
    let env = Env::postgres().await;
    let mut feed = env.listen(ListenFilter::default()).await;
    let writers: Vec<_> = (0..16)
        .map(|w| {
            let store = env.store.clone();
            tokio::spawn(async move {
                for i in 0..150 {
                    let r = hold(
                        &format!("u{w}"),
                        &format!("r{w}-{}", i % 5),
                        i * 10,
                        i * 10 + 5,
                    );
                    store.reserve(r).await.unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let all: Vec<i64> = sqlx::query_scalar("SELECT id FROM rsvp.reservation_changes ORDER BY id")
        .fetch_all(pool(&env))
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < all.len() {
        match tokio::time::timeout(Duration::from_secs(15), futures::StreamExt::next(&mut feed))
            .await
        {
            Ok(Some(Ok(c))) => got.push(c.id),
            other => {
                let missing: Vec<_> = all.iter().filter(|id| !got.contains(id)).collect();
                panic!(
                    "after {} of {} changes: {other:?}; missing {missing:?}; last received {:?}",
                    got.len(),
                    all.len(),
                    got.last()
                )
            }
        }
    }
    assert_eq!(got, all);
}

/// However long a transaction keeps a change id open, the feed waits for
/// it: a change committed late is delivered, never skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_id_held_open_for_long_is_delivered_not_skipped() {
    let env = Env::postgres().await;
    let mut feed = env.listen(ListenFilter::default()).await;
    let mut slow = pool(&env).begin().await.unwrap();
    let slow_id = Uuid::now_v7();
    sqlx::query(RAW_INSERT)
        .bind(slow_id)
        .bind("room-1")
        .bind("confirmed")
        .bind(span(0, 60))
        .bind(at(0))
        .execute(&mut *slow)
        .await
        .unwrap(); // change id 1, open
    let quick = env.reserve("alice", "room-2", 0, 60).await.unwrap(); // change id 2
    // Longer than any patience a feed could have had.
    tokio::time::sleep(Duration::from_secs(11)).await;
    nothing_more(&mut feed).await;
    slow.commit().await.unwrap();
    assert_eq!(next(&mut feed).await.reservation.id.uuid(), slow_id);
    assert_eq!(next(&mut feed).await.reservation.id, quick.id);
}

/// At a gap, an id that commits is delivered at once (with every id before
/// it): only the ids still missing wait for their transactions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_that_commits_at_a_gap_is_delivered_while_later_ones_wait() {
    let env = Env::postgres().await;
    let mut feed = env.listen(ListenFilter::default()).await;
    let mut open = Vec::new();
    for resource in ["room-1", "room-2"] {
        let mut tx = pool(&env).begin().await.unwrap();
        let id = Uuid::now_v7();
        sqlx::query(RAW_INSERT)
            .bind(id)
            .bind(resource)
            .bind("confirmed")
            .bind(span(0, 60))
            .bind(at(0))
            .execute(&mut *tx)
            .await
            .unwrap(); // change ids 1 and 2, open
        open.push((tx, id));
    }
    let quick = env.reserve("alice", "room-3", 0, 60).await.unwrap(); // change id 3
    nothing_more(&mut feed).await;
    let (second, second_id) = open.pop().unwrap();
    let (first, first_id) = open.pop().unwrap();
    first.commit().await.unwrap();
    let c = tokio::time::timeout(Duration::from_secs(2), next(&mut feed))
        .await
        .expect("delivered while the transaction of id 2 is still open");
    assert_eq!((c.id, c.reservation.id.uuid()), (1, first_id));
    nothing_more(&mut feed).await; // 3 waits for 2
    second.commit().await.unwrap();
    let c = next(&mut feed).await;
    assert_eq!((c.id, c.reservation.id.uuid()), (2, second_id));
    let c = next(&mut feed).await;
    assert_eq!((c.id, c.reservation.id), (3, quick.id));
}

/// The feed waits at a gap only for transactions that may hold the missing
/// change id, not for unrelated ones that happen to be open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_waits_only_for_transactions_that_write_changes() {
    let env = Env::postgres().await;
    let mut feed = env.listen(ListenFilter::default()).await;
    // An unrelated transaction with a transaction id, open all along.
    let mut unrelated = pool(&env).begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *unrelated)
        .await
        .unwrap();
    sqlx::query("CREATE TEMP TABLE scratch (x int)")
        .execute(&mut *unrelated)
        .await
        .unwrap();

    let mut slow = pool(&env).begin().await.unwrap();
    sqlx::query(RAW_INSERT)
        .bind(Uuid::now_v7())
        .bind("room-1")
        .bind("confirmed")
        .bind(span(0, 60))
        .bind(at(0))
        .execute(&mut *slow)
        .await
        .unwrap(); // change id 1
    let quick = env.reserve("alice", "room-2", 0, 60).await.unwrap(); // change id 2
    nothing_more(&mut feed).await;
    slow.rollback().await.unwrap();
    // Id 1 will never commit; id 2 arrives while `unrelated` is still open.
    let c = tokio::time::timeout(Duration::from_secs(2), next(&mut feed))
        .await
        .expect("delivered without waiting for the unrelated transaction");
    assert_eq!((c.id, c.reservation.id), (2, quick.id));
    unrelated.rollback().await.unwrap();
}

/// A write transaction notifies nobody (a NOTIFY would serialize every
/// commit); servers announce after their commits instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_do_not_notify_inside_their_transaction() {
    let env = Env::postgres().await;
    let mut listener = sqlx::postgres::PgListener::connect_with(pool(&env))
        .await
        .unwrap();
    listener.listen("rsvp_changes").await.unwrap();
    // A write outside rsvp: only the trigger runs.
    sqlx::query(RAW_INSERT)
        .bind(Uuid::now_v7())
        .bind("room-1")
        .bind("confirmed")
        .bind(span(0, 60))
        .bind(at(0))
        .execute(pool(&env))
        .await
        .unwrap();
    let heard = tokio::time::timeout(Duration::from_millis(500), listener.recv()).await;
    assert!(
        heard.is_err(),
        "the write's own transaction notified: {heard:?}"
    );
    // A write through rsvp is announced, after its commit.
    env.reserve("alice", "room-2", 0, 60).await.unwrap();
    let heard = tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .expect("announced")
        .unwrap();
    assert_eq!(heard.channel(), "rsvp_changes");
}

/// Changes written outside rsvp are announced by nobody; listeners still
/// receive them, by polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_written_outside_rsvp_reach_listeners() {
    let env = Env::postgres().await;
    let mut feed = env.listen(ListenFilter::default()).await;
    let id = Uuid::now_v7();
    sqlx::query(RAW_INSERT)
        .bind(id)
        .bind("room-1")
        .bind("confirmed")
        .bind(span(0, 60))
        .bind(at(0))
        .execute(pool(&env))
        .await
        .unwrap();
    assert_eq!(next(&mut feed).await.reservation.id.uuid(), id);
}

/// Reserves that arrive together are combined: fewer transactions than
/// reservations, each reservation still its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserves_arriving_together_share_transactions() {
    let env = Env::postgres().await;
    let calls = futures::future::join_all((0..64).map(|i| {
        let store = env.store.clone();
        async move { store.reserve(hold("u", &format!("r{i}"), 0, 60)).await }
    }))
    .await;
    assert!(calls.iter().all(Result::is_ok), "{calls:?}");
    let transactions: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT xmin::text) FROM rsvp.reservations")
            .fetch_one(pool(&env))
            .await
            .unwrap();
    assert!(
        transactions < 64,
        "64 reserves written in {transactions} transactions"
    );
}

/// A client of the pool that takes a resource's lock in a transaction and
/// goes silent (a partitioned client, a hung process) is cut off by the
/// database: its lock is freed, and writers of that resource go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_left_idle_in_a_transaction_is_cut_off_and_its_lock_freed() {
    let db = TestDb::new().await;
    let store = db
        .store(StoreOptions {
            idle_in_transaction_timeout: Some(Duration::from_millis(500)),
            ..StoreOptions::default()
        })
        .await;
    let mut stuck = store.pool().begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(rsvp.lock_key('room-1'))")
        .execute(&mut *stuck)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    store.reserve(hold("alice", "room-1", 0, 60)).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the lock was freed after {:?}",
        started.elapsed()
    );
    assert!(
        stuck.commit().await.is_err(),
        "the silent session was ended"
    );
}

/// A write that waits for a lock longer than `lock_timeout` gives up with a
/// retryable error instead of queueing for as long as the holder likes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_waits_for_a_lock_no_longer_than_lock_timeout() {
    let db = TestDb::new().await;
    let store = db
        .store(StoreOptions {
            lock_timeout: Some(Duration::from_millis(100)),
            ..StoreOptions::default()
        })
        .await;
    let outsider = db.pool(1).await;
    let mut holder = outsider.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(rsvp.lock_key('room-1'))")
        .execute(&mut *holder)
        .await
        .unwrap();
    let err = store
        .reserve(hold("alice", "room-1", 0, 60))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Aborted { .. }), "{err:?}");
    assert!(err.is_retryable());
    holder.rollback().await.unwrap();
    store.reserve(hold("alice", "room-1", 0, 60)).await.unwrap();
}

/// On the system clock the database reads the time a write runs by, after
/// its locks: a reserve or booking the server judged in time, that then
/// waited for the resource's lock until its notice had passed, is refused
/// by the rules at that time, and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_waited_past_its_notice_is_refused() {
    let db = TestDb::new().await;
    let store = db.store(StoreOptions::default()).await;
    store
        .create_resource(
            abi::ResourceSpec::try_from(abi::pb::Resource {
                id: "dr-kim".into(),
                capacity: 1,
                policy: Some(abi::pb::BookingPolicy {
                    min_notice: Some(prost_types::Duration {
                        seconds: 3600,
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
    let outsider = db.pool(1).await;
    // Half a second of notice to spare when judged; the lock is held for
    // two.
    let start = Utc::now() + chrono::TimeDelta::milliseconds(3_600_500);
    let visit = |user: &str| {
        abi::NewReservation::builder()
            .user_id(user)
            .resource_id("dr-kim")
            .start(start)
            .end(start + chrono::TimeDelta::minutes(15))
            .build()
            .unwrap()
    };
    let stall = support::Stall::lock(&outsider, "dr-kim").await;
    let reserve = tokio::spawn({
        let store = store.clone();
        let visit = visit("ann");
        async move { store.reserve(visit).await }
    });
    let book = tokio::spawn({
        let store = store.clone();
        let booking = abi::NewBooking::new(
            abi::UserId::parse("bob").unwrap(),
            vec![visit("bob")],
            abi::Hold::Default,
            None,
        )
        .unwrap();
        async move { store.book(booking).await }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    stall.release().await;
    match reserve.await.unwrap() {
        Err(Error::Policy(broken)) => {
            assert_eq!(broken.len(), 1, "{broken:?}");
            assert_eq!(broken[0].rule, abi::Rule::MinNotice);
        }
        other => panic!("expected the notice to refuse it, got {other:?}"),
    }
    match book.await.unwrap() {
        Err(Error::BookingRejected(parts)) => {
            assert_eq!(parts.len(), 1, "{parts:?}");
            assert_eq!(parts[0].policy.len(), 1, "{parts:?}");
            assert_eq!(parts[0].policy[0].rule, abi::Rule::MinNotice);
        }
        other => panic!("expected the notice to refuse it, got {other:?}"),
    }
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM rsvp.reservations")
        .fetch_one(&outsider)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

/// A change judged in time but written late (it waited for its resource's
/// lock past its notice, or past the end of a check-in window) is refused
/// by the database's time after the lock, and nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_waited_past_its_time_is_refused() {
    let db = TestDb::new().await;
    let store: std::sync::Arc<dyn Rsvp> =
        std::sync::Arc::new(db.store(StoreOptions::default()).await);
    // A second and a half to spare when judged; the locks are held for
    // three.
    let edge = Utc::now() + chrono::TimeDelta::milliseconds(1_500);
    let late = support::LateChanges::prepare(&store, edge).await;
    let outsider = db.pool(support::LateChanges::RESOURCES.len() as u32).await;
    let mut stalls = Vec::new();
    for resource in support::LateChanges::RESOURCES {
        stalls.push(support::Stall::lock(&outsider, resource).await);
    }
    let changes = late.start(&store);
    tokio::time::sleep(Duration::from_secs(3)).await;
    for stall in stalls {
        stall.release().await;
    }
    let answers = changes.await.unwrap();
    late.assert_refused(&store, answers).await;
}

/// Where commits wait for a synchronous standby, the feed waits for one to
/// have every change it hands out; a role that may not read the standbys'
/// positions (no `pg_monitor`) cannot wait, and delivers anyway (with a
/// warning) instead of waiting forever: PostgreSQL shows such a role every
/// column of `pg_stat_replication` but the pid as NULL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_that_cannot_see_the_standbys_still_gets_every_change() {
    // No standby ever connects; the role's commits do not wait for one
    // (`synchronous_commit = local`), but the feed sees that commits may.
    let cluster = tokio::task::spawn_blocking(|| {
        TestCluster::start_with(&[("synchronous_standby_names", "nobody")]).unwrap()
    })
    .await
    .unwrap();
    let admin = PgPool::connect(&cluster.url("postgres")).await.unwrap();
    for statement in [
        "CREATE ROLE app LOGIN",
        "ALTER ROLE app SET synchronous_commit = local",
        "CREATE DATABASE app OWNER app",
    ] {
        sqlx::query(statement).execute(&admin).await.unwrap();
    }
    let url = format!("postgres://app@127.0.0.1:{}/app", cluster.port());
    let store = PgStore::connect(&url, StoreOptions::default())
        .await
        .unwrap();
    let mut feed = store.listen(ListenFilter::default()).await.unwrap();
    let made = store.reserve(hold("alice", "room-1", 0, 60)).await.unwrap();
    assert_eq!(next(&mut feed).await.reservation.id, made.id);
}

/// A feed that starts on a database whose commits wait for a synchronous
/// standby replays what is already there only once the standby has it, as
/// it delivers what it reads later: a listener is never told of a change a
/// failover may lose. Here no standby ever connects, until commits stop
/// waiting for one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starting_feed_replays_nothing_a_synchronous_standby_lacks() {
    let cluster = tokio::task::spawn_blocking(|| {
        TestCluster::start_with(&[("synchronous_commit", "local")]).unwrap()
    })
    .await
    .unwrap();
    let url = cluster.url("postgres");
    let admin = PgPool::connect(&url).await.unwrap();
    // Sets the standbys commits wait for, once the server has taken it.
    let standby = |set: &'static str, names: &'static str| {
        let admin = admin.clone();
        async move {
            sqlx::query(set).execute(&admin).await.unwrap();
            sqlx::query("SELECT pg_reload_conf()")
                .execute(&admin)
                .await
                .unwrap();
            for _ in 0..100 {
                let now: String =
                    sqlx::query_scalar("SELECT current_setting('synchronous_standby_names')")
                        .fetch_one(&admin)
                        .await
                        .unwrap();
                if now == names {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("the server did not take {set:?}");
        }
    };
    standby(
        "ALTER SYSTEM SET synchronous_standby_names = 'nobody'",
        "nobody",
    )
    .await;
    let writer = PgStore::connect(&url, StoreOptions::default())
        .await
        .unwrap();
    let made = writer
        .reserve(hold("alice", "room-1", 0, 60))
        .await
        .unwrap();
    // Another server, whose feed starts now.
    let reader = PgStore::connect(&url, StoreOptions::default())
        .await
        .unwrap();
    let listen = tokio::spawn(async move {
        let mut feed = reader
            .listen(ListenFilter {
                after_change_id: Some(0),
                ..ListenFilter::default()
            })
            .await
            .unwrap();
        next(&mut feed).await
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !listen.is_finished(),
        "a change the standby lacks was replayed: {:?}",
        listen.await
    );
    standby("ALTER SYSTEM RESET synchronous_standby_names", "").await;
    let change = tokio::time::timeout(Duration::from_secs(10), listen)
        .await
        .expect("delivered once commits stop waiting for a standby")
        .unwrap();
    assert_eq!(change.reservation.id, made.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_pieces_always_match_the_reservations() {
    for seed in 0..4 {
        let env = Env::postgres().await;
        support::churn(&env, "pool", 4, 300, seed).await;
        // At every boundary of a piece or a live reservation, the pieces
        // and the reservations say the same units (a closure: all 4).
        let mismatches: i64 = sqlx::query_scalar(
            "WITH points AS (
                 SELECT lower(span) AS t FROM rsvp.usage_pieces WHERE resource_id = 'pool'
                 UNION SELECT upper(span) FROM rsvp.usage_pieces WHERE resource_id = 'pool'
                 UNION SELECT lower(occupied) FROM rsvp.reservations WHERE resource_id = 'pool'
                 UNION SELECT upper(occupied) FROM rsvp.reservations WHERE resource_id = 'pool')
             SELECT count(*) FROM points p
             WHERE coalesce((SELECT sum(used) FROM rsvp.usage_pieces u
                             WHERE u.resource_id = 'pool' AND u.span @> p.t), 0)
                   <> coalesce((SELECT sum(CASE WHEN quantity = 0 THEN 4 ELSE quantity END)
                                FROM rsvp.reservations r
                                WHERE r.resource_id = 'pool'
                                  AND r.status IN ('pending', 'confirmed', 'blocked')
                                  AND r.occupied @> p.t), 0)",
        )
        .fetch_one(pool(&env))
        .await
        .unwrap();
        assert_eq!(mismatches, 0, "seed {seed}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_reaches_postgresql_over_tls_as_the_url_asks() {
    let certs = rsvp_testing::TestCerts::new("rsvp test authority");
    let server = certs.server_for(&["localhost"]);
    let cluster = tokio::task::spawn_blocking(move || {
        TestCluster::start_with_tls(&server).expect("a cluster with TLS")
    })
    .await
    .unwrap();
    let ca = certs.ca();
    let url = |host: &str, mode: &str| {
        format!(
            "postgres://postgres@{host}:{}/postgres?sslmode={mode}&sslrootcert={}",
            cluster.port(),
            ca.display()
        )
    };

    // verify-full: the authority and the name are checked, and the store
    // works over it (migrations, a reservation).
    let verified = url("localhost", "verify-full");
    let store = reservation::connect(&verified, StoreOptions::default())
        .await
        .expect("connects with verify-full");
    store
        .reserve(hold("ann", "room", 0, 60))
        .await
        .expect("reserves over TLS");
    let pool = PgPool::connect(&verified).await.unwrap();
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(encrypted, "the session is encrypted");

    // The certificate names localhost only: verify-full by address is
    // refused, verify-ca (authority only) is not.
    let by_address =
        reservation::connect(&url("127.0.0.1", "verify-full"), StoreOptions::default()).await;
    assert!(
        by_address.is_err(),
        "a name the certificate does not carry is refused"
    );
    reservation::connect(&url("127.0.0.1", "verify-ca"), StoreOptions::default())
        .await
        .expect("verify-ca checks the authority only");

    // An authority the server's certificate does not come from is refused.
    let strangers = rsvp_testing::TestCerts::new("another authority");
    let untrusted = format!(
        "postgres://postgres@localhost:{}/postgres?sslmode=verify-full&sslrootcert={}",
        cluster.port(),
        strangers.ca().display()
    );
    assert!(
        reservation::connect(&untrusted, StoreOptions::default())
            .await
            .is_err(),
        "an untrusted server is refused"
    );
}

/// Makes a cluster's sessions read-only (`on`) or writable (`off`), new and
/// open ones alike, as a demoted or promoted server's would be.
async fn set_read_only(cluster: &TestCluster, on: bool) {
    let pool = PgPool::connect(&cluster.url("postgres")).await.unwrap();
    let value = if on { "on" } else { "off" };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER SYSTEM SET default_transaction_read_only = {value}"
    )))
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("SELECT pg_reload_conf()")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

async fn holds_reservation(cluster: &TestCluster, id: &abi::ReservationId) -> bool {
    let pool = PgPool::connect(&cluster.url("postgres")).await.unwrap();
    let found: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM rsvp.reservations WHERE id = $1)")
            .bind(id.uuid())
            .fetch_one(&pool)
            .await
            .unwrap();
    pool.close().await;
    found
}

/// A URL naming several hosts (libpq's form): with `read-write` the store
/// uses the first host that takes writes, skipping one that is down and one
/// that is read-only, and moves by itself when that host stops taking
/// writes; meanwhile writes fail as UNAVAILABLE only. With `any` it uses
/// the first host that answers, where writes are UNAVAILABLE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_host_url_uses_the_host_that_takes_writes_and_follows_it() {
    let (a, b) = tokio::task::spawn_blocking(|| {
        (TestCluster::start().unwrap(), TestCluster::start().unwrap())
    })
    .await
    .unwrap();
    // A port held but not listened on: connections to it are refused, and
    // no other test's server can take it meanwhile.
    let held = tokio::net::TcpSocket::new_v4().unwrap();
    held.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let down = held.local_addr().unwrap().port();
    for cluster in [&a, &b] {
        PgStore::connect(&cluster.url("postgres"), StoreOptions::default())
            .await
            .unwrap();
    }
    set_read_only(&a, true).await;
    let hosts = format!(
        "postgres://postgres@127.0.0.1:{down},127.0.0.1:{},127.0.0.1:{}/postgres",
        a.port(),
        b.port()
    );

    let store = PgStore::connect(
        &format!("{hosts}?target_session_attrs=read-write"),
        StoreOptions::default(),
    )
    .await
    .unwrap();
    let first = store.reserve(hold("ann", "room", 0, 60)).await.unwrap();
    assert!(holds_reservation(&b, &first.id).await);
    store.ping().await.unwrap();

    // A switchover: b stops taking writes, a starts.
    set_read_only(&b, true).await;
    set_read_only(&a, false).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let moved = loop {
        match store.reserve(hold("bob", "room", 60, 120)).await {
            Ok(r) => break r,
            Err(Error::Unavailable(_)) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("writes during the switch fail as UNAVAILABLE only: {e:?}"),
        }
    };
    assert!(holds_reservation(&a, &moved.id).await);
    assert!(!holds_reservation(&b, &moved.id).await);
    store.ping().await.unwrap();

    // `any` takes the first host that answers, though it is read-only.
    set_read_only(&a, true).await;
    let options = StoreOptions {
        migrate: false,
        ..StoreOptions::default()
    };
    let any = PgStore::connect(&format!("{hosts}?target_session_attrs=any"), options)
        .await
        .unwrap();
    let refused = any.reserve(hold("cy", "room", 120, 180)).await.unwrap_err();
    assert!(matches!(refused, Error::Unavailable(_)), "{refused:?}");
    // And a store that finds no host that takes writes says so.
    let options = StoreOptions {
        acquire_timeout: Duration::from_secs(1),
        ..StoreOptions::default()
    };
    match PgStore::connect(&format!("{hosts}?target_session_attrs=read-write"), options).await {
        Err(Error::Unavailable(e)) => {
            let text = e.to_string();
            assert!(text.contains("read-only"), "{text}");
        }
        Ok(_) => panic!("no host takes writes"),
        Err(e) => panic!("{e:?}"),
    }
}

/// How many deadlocks PostgreSQL has broken in the env's database, once
/// every other session of it has ended (a session reports its counts when
/// it ends, or only every so often while it lives).
async fn deadlocks_broken(env: &Env) -> i64 {
    pool(env).close().await;
    let url = env.db_url().expect("a PostgreSQL env");
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(url)
        .await
        .unwrap();
    for _ in 0..60 {
        let others: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_one(&mut admin)
        .await
        .unwrap();
        if others == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A session leaves pg_stat_activity just before it reports its counts.
    tokio::time::sleep(Duration::from_millis(300)).await;
    sqlx::query_scalar("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        .fetch_one(&mut admin)
        .await
        .unwrap()
}

/// The sweeper takes the locks of the resources whose holds it expires
/// before it locks their rows, in the one order every writer takes them:
/// sweeping lapsed holds of resources of several units while reserves
/// settle the same holds in their way never deadlocks. (PostgreSQL would
/// break such a deadlock after a second and the reserve be retried: slow,
/// not wrong, and counted in `pg_stat_database`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_and_writers_settling_the_same_lapsed_holds_never_deadlock() {
    const POOLS: usize = 6;
    let env = Env::postgres().await;
    for p in 0..POOLS {
        register(&env, &format!("pool-{p}"), 2).await;
    }
    for round in 0..20i64 {
        let from = 1000 + round * 100;
        for p in 0..POOLS {
            for user in ["ann", "bob"] {
                env.reserve(user, &format!("pool-{p}"), from, from + 60)
                    .await
                    .unwrap();
            }
        }
        env.advance(31);
        let sweeper = {
            let store = env.store.clone();
            tokio::spawn(async move { store.sweep().await })
        };
        let late: Vec<_> = (0..POOLS)
            .map(|p| {
                let store = env.store.clone();
                let request = hold("cy", &format!("pool-{p}"), from, from + 60);
                tokio::spawn(async move { store.reserve(request).await })
            })
            .collect();
        sweeper.await.unwrap().unwrap();
        for reserve in late {
            reserve.await.unwrap().unwrap();
        }
    }
    assert_eq!(deadlocks_broken(&env).await, 0);
}
