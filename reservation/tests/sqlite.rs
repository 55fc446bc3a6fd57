//! Behaviour only the embedded store has: its triggers as the last line of
//! defence, an index-backed conflict check, durable settings, and several
//! stores on one file.

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use abi::{Error, ListenFilter, ReservationStatus};
use reservation::{Rsvp, SqliteStore, StoreOptions};
use support::{at, hold, next};

async fn open(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(dir.path().join("rsvp.db"), StoreOptions::default())
        .await
        .unwrap()
}

const RAW_INSERT: &str = "INSERT INTO reservations \
    (id, user_id, resource_id, status, start_us, end_us, created_us, updated_us) \
    VALUES (?, 'script', ?, ?, ?, ?, 0, 0)";

/// Rows that could not be read back (an id with a control character, a
/// time past what a reader represents) are refused from any writer: one of
/// them would stop the change feed of every listener. The feed goes on.
#[tokio::test]
async fn rows_that_could_not_be_read_back_are_refused_from_any_writer() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let mut feed = store.listen(ListenFilter::default()).await.unwrap();
    let made = store.reserve(hold("alice", "room-1", 0, 60)).await.unwrap();
    assert_eq!(next(&mut feed).await.reservation.id, made.id);
    for set in [
        "UPDATE reservations SET user_id = 'al' || char(9) || 'ice' WHERE id = ?",
        "UPDATE reservations SET resource_id = 'room' || char(133) WHERE id = ?",
        "UPDATE reservations SET updated_us = 7000000000000000000 WHERE id = ?",
        "UPDATE reservations SET expires_us = -9000000000000000000 WHERE id = ?",
    ] {
        let err = sqlx::query(set)
            .bind(made.id.to_string())
            .execute(store.pool())
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("reservations_readable"),
            "{set}: {err}"
        );
    }
    let later = store.reserve(hold("bob", "room-2", 0, 60)).await.unwrap();
    assert_eq!(next(&mut feed).await.reservation.id, later.id);

    // A row another tool made unreadable before the triggers were there
    // can still be changed (here, mended), as long as the change makes
    // nothing worse.
    for trigger in [
        "DROP TRIGGER reservations_readable_insert",
        "DROP TRIGGER reservations_readable_update",
    ] {
        sqlx::query(trigger).execute(store.pool()).await.unwrap();
    }
    sqlx::query("UPDATE reservations SET expires_us = 7000000000000000000 WHERE id = ?")
        .bind(later.id.to_string())
        .execute(store.pool())
        .await
        .unwrap();
    sqlx::raw_sql(include_str!(
        "../../migrations/sqlite/20261207000001_readable_rows.sql"
    ))
    .execute(store.pool())
    .await
    .unwrap();
    sqlx::query("UPDATE reservations SET status = 'cancelled', note = 'mended' WHERE id = ?")
        .bind(later.id.to_string())
        .execute(store.pool())
        .await
        .unwrap();
    let err = sqlx::query("UPDATE reservations SET expires_us = 8000000000000000000 WHERE id = ?")
        .bind(later.id.to_string())
        .execute(store.pool())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("reservations_readable"), "{err}");
}

#[tokio::test]
async fn triggers_refuse_overlapping_live_rows_from_any_writer() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let r = store
        .reserve(hold("alice", "room-1", 60, 120))
        .await
        .unwrap();
    let raw = |status: &'static str, from: i64, to: i64| {
        sqlx::query(RAW_INSERT)
            .bind(uuid::Uuid::now_v7().to_string())
            .bind("room-1")
            .bind(status)
            .bind(at(from).timestamp_micros())
            .bind(at(to).timestamp_micros())
            .execute(store.pool())
    };
    let err = raw("confirmed", 119, 180).await.unwrap_err();
    assert!(err.to_string().contains("reservations_no_overlap"), "{err}");
    raw("cancelled", 60, 120).await.unwrap(); // history may overlap
    raw("confirmed", 120, 180).await.unwrap(); // back to back is fine

    // Turning a cancelled row live again is refused too.
    store.cancel(r.id).await.unwrap();
    raw("confirmed", 60, 120).await.unwrap();
    let err = sqlx::query("UPDATE reservations SET status = 'pending' WHERE id = ?")
        .bind(r.id.to_string())
        .execute(store.pool())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("reservations_no_overlap"), "{err}");
    // And empty intervals are refused by the schema.
    let err = raw("cancelled", 10, 10).await.unwrap_err();
    assert!(err.to_string().contains("CHECK"), "{err}");
}

#[tokio::test]
async fn triggers_refuse_plain_sql_past_the_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    store
        .create_resource(
            abi::ResourceSpec::try_from(abi::pb::Resource {
                id: "hall".into(),
                capacity: 3,
                ..Default::default()
            })
            .unwrap(),
        )
        .await
        .unwrap();
    let raw = |from: i64, to: i64, quantity: i64| {
        sqlx::query(
            "INSERT INTO reservations (id, user_id, resource_id, status, start_us, end_us, \
             created_us, updated_us, quantity) VALUES (?, 'script', 'hall', 'confirmed', ?, ?, \
             0, 0, ?)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(at(from).timestamp_micros())
        .bind(at(to).timestamp_micros())
        .bind(quantity)
        .execute(store.pool())
    };
    raw(0, 60, 2).await.unwrap();
    raw(30, 90, 1).await.unwrap();
    let err = raw(45, 50, 1).await.unwrap_err();
    assert!(
        err.to_string().contains("reservations_within_capacity"),
        "{err}"
    );
    let err = sqlx::query("UPDATE reservations SET quantity = 3 WHERE quantity = 1")
        .execute(store.pool())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("reservations_within_capacity"),
        "{err}"
    );
    let err = sqlx::query("UPDATE resources SET capacity = 2 WHERE id = 'hall'")
        .execute(store.pool())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("resources_capacity_in_use"),
        "{err}"
    );
    // On a resource of one unit, buffers are occupied time to any writer.
    sqlx::query(
        "INSERT INTO reservations (id, user_id, resource_id, status, start_us, end_us, \
         created_us, updated_us, buffer_after_us) VALUES (?, 'script', 'room', 'confirmed', \
         ?, ?, 0, 0, 900000000)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(at(0).timestamp_micros())
    .bind(at(60).timestamp_micros())
    .execute(store.pool())
    .await
    .unwrap();
    let err = sqlx::query(RAW_INSERT)
        .bind(uuid::Uuid::now_v7().to_string())
        .bind("room")
        .bind("confirmed")
        .bind(at(70).timestamp_micros())
        .bind(at(80).timestamp_micros())
        .execute(store.pool())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("reservations_no_overlap"), "{err}");
}

#[tokio::test]
async fn the_conflict_check_searches_the_live_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(
        "EXPLAIN QUERY PLAN SELECT id FROM reservations WHERE resource_id = ? \
         AND status IN ('pending', 'confirmed', 'blocked') AND occ_start_us < ? \
         ORDER BY occ_start_us DESC",
    )
    .bind("room-1")
    .bind(0i64)
    .fetch_all(store.pool())
    .await
    .unwrap();
    let detail: Vec<_> = plan.iter().map(|p| p.3.as_str()).collect();
    assert!(
        detail
            .iter()
            .any(|d| d.contains("USING INDEX reservations_live (resource_id=? AND occ_start_us<?)")),
        "{detail:?}"
    );
    assert!(
        !detail.iter().any(|d| d.contains("TEMP B-TREE")),
        "no sort: {detail:?}"
    );

    // A resource of several units reads what ends after the new start.
    let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(
        "EXPLAIN QUERY PLAN SELECT id FROM reservations WHERE resource_id = ? \
         AND status IN ('pending', 'confirmed', 'blocked') AND occ_start_us < ? \
         AND occ_end_us > ? ORDER BY occ_end_us",
    )
    .bind("room-1")
    .bind(0i64)
    .bind(0i64)
    .fetch_all(store.pool())
    .await
    .unwrap();
    let detail: Vec<_> = plan.iter().map(|p| p.3.as_str()).collect();
    assert!(
        detail
            .iter()
            .any(|d| d.contains("USING INDEX reservations_live")),
        "{detail:?}"
    );
}

#[tokio::test]
async fn the_file_is_in_wal_mode_with_full_sync() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(sync, 2, "FULL");
}

#[tokio::test]
async fn reopening_keeps_everything_and_migrations_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let store = open(&dir).await;
        store
            .reserve(hold("alice", "room-1", 0, 60))
            .await
            .unwrap()
            .id
    };
    let store = open(&dir).await;
    assert_eq!(store.get(id).await.unwrap().user_id.as_str(), "alice");
    assert!(matches!(
        store.reserve(hold("bob", "room-1", 30, 90)).await,
        Err(Error::Conflict(_))
    ));
}

#[tokio::test]
async fn open_creates_missing_directories_and_urls_work() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b/rsvp.db");
    let store = SqliteStore::open(&nested, StoreOptions::default())
        .await
        .unwrap();
    store.ping().await.unwrap();
    assert!(nested.is_file());

    let url = format!("sqlite:{}", dir.path().join("c/d/other.db").display());
    let store = reservation::connect(&url, StoreOptions::default())
        .await
        .unwrap();
    store.reserve(hold("alice", "room-1", 0, 60)).await.unwrap();

    let err = reservation::connect("ftp://x", StoreOptions::default())
        .await
        .err()
        .unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_one_store_on_a_file_reaches_listeners_of_another() {
    let dir = tempfile::tempdir().unwrap();
    let one = open(&dir).await;
    let two = open(&dir).await;
    let mut feed = two.listen(ListenFilter::default()).await.unwrap();
    let r = one.reserve(hold("alice", "room-1", 0, 60)).await.unwrap();
    let c = tokio::time::timeout(Duration::from_secs(5), next(&mut feed))
        .await
        .unwrap();
    assert_eq!(c.reservation.id, r.id);
    // And the two serialize their writes through the file's lock.
    assert!(matches!(
        two.reserve(hold("bob", "room-1", 30, 90)).await,
        Err(Error::Conflict(_))
    ));
    one.cancel(r.id).await.unwrap();
    assert_eq!(
        next(&mut feed).await.reservation.status,
        ReservationStatus::Cancelled
    );
}

/// `sqlite::memory:` keeps its data for as long as the store lives, and
/// serves readers and writers at once without lock errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_memory_store_keeps_its_data_and_serves_concurrent_calls() {
    let store = reservation::connect("sqlite::memory:", StoreOptions::default())
        .await
        .unwrap();
    let calls = futures::future::join_all((0..32).map(|i| {
        let store = store.clone();
        async move {
            let made = store
                .reserve(hold(
                    "alice",
                    &format!("room-{}", i % 4),
                    i * 60,
                    i * 60 + 30,
                ))
                .await?;
            store.get(made.id).await?;
            let rows: Vec<_> =
                futures::TryStreamExt::try_collect(store.query(abi::ReservationQuery::default()))
                    .await?;
            Ok::<_, Error>(rows.len())
        }
    }))
    .await;
    assert!(calls.iter().all(Result::is_ok), "{calls:?}");
    // Idle for a while: nothing is lost with an idle connection.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all: Vec<_> =
        futures::TryStreamExt::try_collect(store.query(abi::ReservationQuery::default()))
            .await
            .unwrap();
    assert_eq!(all.len(), 32);
    let own = SqliteStore::in_memory(StoreOptions::default())
        .await
        .unwrap();
    assert!(
        own.reserve(hold("bob", "room-0", 0, 30)).await.is_ok(),
        "a store of its own"
    );
}

#[tokio::test]
async fn usage_pieces_always_match_the_reservations() {
    for seed in 0..4 {
        let env = support::Env::sqlite().await;
        support::churn(&env, "pool", 4, 300, seed).await;
        let store = env.store.clone();
        drop(store);
        let pool = sqlx::SqlitePool::connect(&format!(
            "sqlite:{}",
            env.db_path().expect("a file").display()
        ))
        .await
        .unwrap();
        // At every boundary of a piece or a live reservation, the pieces
        // and the reservations say the same units (and closures).
        let mismatches: i64 = sqlx::query_scalar(
            "WITH points AS (
                 SELECT start_us AS t FROM usage_pieces WHERE resource_id = 'pool'
                 UNION SELECT end_us FROM usage_pieces WHERE resource_id = 'pool'
                 UNION SELECT occ_start_us FROM reservations WHERE resource_id = 'pool'
                 UNION SELECT occ_end_us FROM reservations WHERE resource_id = 'pool')
             SELECT count(*) FROM points p
             WHERE coalesce((SELECT used FROM usage_pieces u WHERE u.resource_id = 'pool'
                             AND u.start_us <= p.t AND u.end_us > p.t), 0)
                   <> coalesce((SELECT sum(quantity) FROM reservations r
                             WHERE r.resource_id = 'pool'
                               AND r.status IN ('pending', 'confirmed', 'blocked')
                               AND r.occ_start_us <= p.t AND r.occ_end_us > p.t), 0)
                OR coalesce((SELECT closed FROM usage_pieces u WHERE u.resource_id = 'pool'
                             AND u.start_us <= p.t AND u.end_us > p.t), 0)
                   <> (SELECT count(*) FROM reservations r
                       WHERE r.resource_id = 'pool' AND r.quantity = 0
                         AND r.status IN ('pending', 'confirmed', 'blocked')
                         AND r.occ_start_us <= p.t AND r.occ_end_us > p.t)",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(mismatches, 0, "seed {seed}");
        let pieces: i64 = sqlx::query_scalar("SELECT count(*) FROM usage_pieces")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert!(pieces > 0, "seed {seed}: the churn left something held");
    }
}

#[tokio::test]
async fn a_file_made_before_bookings_keeps_its_rows_when_upgraded() {
    // The schema as the release before bookings left it: every migration
    // before them, applied to a new file, with rows written as it wrote
    // them.
    let dir = tempfile::tempdir().unwrap();
    let earlier = tempfile::tempdir().unwrap();
    let all = concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations/sqlite");
    for entry in std::fs::read_dir(all).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.as_str() < "20261126" {
            std::fs::copy(&path, earlier.path().join(&name)).unwrap();
        }
    }
    let url = format!("sqlite:{}?mode=rwc", dir.path().join("rsvp.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::migrate::Migrator::new(earlier.path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    let (booked, held) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    for (id, status, from, to, expires) in [
        (booked, "confirmed", 0, 60, None),
        (
            held,
            "pending",
            60,
            120,
            Some(at(100_000).timestamp_micros()),
        ),
    ] {
        sqlx::query(
            "INSERT INTO reservations (id, user_id, resource_id, status, start_us, end_us, \
             created_us, updated_us, expires_us, quantity) VALUES (?, 'ann', 'room-1', ?, ?, ?, \
             0, 0, ?, 1)",
        )
        .bind(id.to_string())
        .bind(status)
        .bind(at(from).timestamp_micros())
        .bind(at(to).timestamp_micros())
        .bind(expires)
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;

    // Opened by this release: the table is made again, nothing is lost,
    // and the rows still hold their time.
    let store = open(&dir).await;
    let booked = store.get(booked.into()).await.unwrap();
    assert_eq!(booked.status, ReservationStatus::Confirmed);
    assert_eq!(booked.booking_id, None);
    assert_eq!(
        store.get(held.into()).await.unwrap().status,
        ReservationStatus::Pending
    );
    for (from, to) in [(30, 40), (90, 100)] {
        assert!(matches!(
            store.reserve(hold("bob", "room-1", from, to)).await,
            Err(Error::Conflict(_))
        ));
    }
    let mut changes = store
        .listen(ListenFilter {
            after_change_id: Some(0),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(next(&mut changes).await.reservation.id, booked.id);
    let made = store
        .reserve(hold("bob", "room-1", 120, 180))
        .await
        .unwrap();
    store.confirm(made.id).await.unwrap();
    // The table takes the new statuses (its start, on the system clock,
    // has passed).
    store
        .update(abi::ReservationUpdate::status(
            made.id,
            abi::StatusChange::NoShow,
        ))
        .await
        .unwrap();
    assert_eq!(
        store.get(made.id).await.unwrap().status,
        ReservationStatus::NoShow
    );
}

/// A transaction SQLite rolls back by itself (as on a full disk) leaves the
/// driver counting it open; the connection is then closed, not handed to
/// the next write (which could never begin).
#[tokio::test]
async fn a_connection_whose_transaction_sqlite_ended_is_not_reused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    for _ in 0..4 {
        let mut tx = store.pool().begin().await.unwrap();
        // Ended under the driver, as SQLite ends it on SQLITE_FULL.
        sqlx::raw_sql("ROLLBACK").execute(&mut *tx).await.unwrap();
        drop(tx);
    }
    for i in 0..20 {
        store
            .reserve(hold("alice", &format!("room-{i}"), 0, 60))
            .await
            .unwrap_or_else(|e| panic!("write {i}: {e:?}"));
    }
}

/// A file that cannot be written (here opened read-only) is UNAVAILABLE
/// to writes, as a PostgreSQL server that takes no writes is, not an
/// internal error.
#[tokio::test]
async fn a_file_that_cannot_be_written_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(&dir).await);
    let url = format!("sqlite:{}?mode=ro", dir.path().join("rsvp.db").display());
    let store = SqliteStore::connect(
        &url,
        StoreOptions {
            migrate: false,
            ..StoreOptions::default()
        },
    )
    .await
    .unwrap();
    let refused = store.reserve(hold("alice", "room-1", 0, 60)).await;
    assert!(matches!(refused, Err(Error::Unavailable(_))), "{refused:?}");
}

/// The files the store creates are its owner's alone: they hold every note
/// and the digests of the API tokens.
#[tokio::test]
async fn the_files_it_creates_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = SqliteStore::open(data.join("rsvp.db"), StoreOptions::default())
        .await
        .unwrap();
    store.reserve(hold("alice", "room-1", 0, 60)).await.unwrap();
    for path in [
        data.clone(),
        data.join("rsvp.db"),
        data.join("rsvp.db-wal"),
        data.join("rsvp.db-shm"),
    ] {
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", path.display());
    }
}

/// Stores opened at once on one new file (several processes starting
/// together) each open it: one at a time switches it to WAL and migrates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_opened_at_once_on_a_new_file_all_open() {
    for round in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rsvp.db");
        let (one, two, three) = tokio::join!(
            SqliteStore::open(&path, StoreOptions::default()),
            SqliteStore::open(&path, StoreOptions::default()),
            SqliteStore::open(&path, StoreOptions::default()),
        );
        for (i, store) in [one, two, three].into_iter().enumerate() {
            let store = store.unwrap_or_else(|e| panic!("round {round}, store {i}: {e:?}"));
            store
                .reserve(hold("alice", &format!("room-{i}"), 0, 60))
                .await
                .unwrap();
        }
    }
}

/// A change judged in time but written late (it waited for the write lock
/// past its notice, or past the end of a check-in window) is refused by the
/// time it is written, and nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_waited_past_its_time_is_refused() {
    let env = support::Env::sqlite().await;
    let late = support::LateChanges::prepare(&env.store, at(1)).await;
    let stall = env.stall_writes("dr-kim").await;
    let changes = late.start(&env.store);
    env.writes_waiting(4).await;
    env.advance(2);
    stall.release().await;
    let answers = changes.await.unwrap();
    late.assert_refused(&env.store, answers).await;
}
