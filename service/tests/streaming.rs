//! Query streams rows as the database yields them: the server's memory stays
//! flat however many rows match, a slow client holds no database connection,
//! a client that goes away stops the work, and streams are bounded in number
//! and in how long they may go unread.

mod support;

use std::time::Duration;

use std::sync::Arc;

use abi::{NewReservation, pb};
use chrono::TimeDelta;
use futures::StreamExt;
use reservation::{Rsvp, SqliteStore, StoreOptions};
use rsvp_server::server::{self, ServerSettings};
use rsvp_testing::TestDb;
use support::{Server, TestApp, next, seed, t0};
use tonic::Code;
use tonic_types::StatusExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_many_rows_keeps_server_memory_flat() {
    const ROWS: i64 = 250_000;
    let db = TestDb::new().await;
    seed(&db.pool(1).await, ROWS).await;
    let server = Server::start(db.url(), &[]).await;
    let mut client = server.client().await;

    // Warm up: the first rows, the pools, the allocator.
    let mut warm = client
        .query(pb::QueryRequest::default())
        .await
        .unwrap()
        .into_inner();
    for _ in 0..2000 {
        next(&mut warm).await;
    }
    drop(warm);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let baseline = server.rss_kib();

    let mut rows = client
        .query(pb::QueryRequest::default())
        .await
        .unwrap()
        .into_inner();
    let (mut n, mut peak) = (0i64, baseline);
    while let Some(row) = rows.next().await {
        row.unwrap();
        n += 1;
        if n % 5000 == 0 {
            peak = peak.max(server.rss_kib());
        }
    }
    assert_eq!(n, ROWS);
    let growth_mib = (peak.saturating_sub(baseline)) / 1024;
    // Buffering the result would take several hundred MiB.
    assert!(
        growth_mib < 48,
        "server memory grew by {growth_mib} MiB (baseline {baseline} KiB, peak {peak} KiB)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_or_vanished_client_holds_no_database_connection() {
    let quiet = ServerSettings {
        health_interval: Duration::from_secs(3600),
        sweep_interval: Duration::from_secs(3600),
        ..Default::default()
    };
    let app = TestApp::spawn_with(|_| {}, quiet).await;
    seed(app.store.pool(), 60_000).await;
    let pool = app.store.pool().clone();
    let all_idle = || pool.num_idle() as u32 == pool.size();
    let settle = || async {
        let mut waited = Duration::ZERO;
        while !all_idle() {
            assert!(
                waited < Duration::from_secs(5),
                "a connection is still busy while the client takes its time"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
            waited += Duration::from_millis(20);
        }
    };

    let mut client = app.client().await;
    let mut rows = client
        .query(pb::QueryRequest::default())
        .await
        .unwrap()
        .into_inner();
    for _ in 0..10 {
        next(&mut rows).await;
    }
    // The client reads no more: every connection is back in the pool.
    settle().await;
    drop(rows);
    drop(client);

    // And stays there: nothing goes on querying for a client that left.
    for _ in 0..25 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            all_idle(),
            "the server went on querying for a client that left"
        );
    }
    let active: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND state = 'active' AND pid <> pg_backend_pid()",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(active, 0, "no query still runs");
}

/// Forty clients open a Query over thousands of rows and read nothing;
/// other calls still answer at once, on both stores (the embedded store's
/// pool serves its writers too).
async fn forty_unread_streams_leave_the_database_to_others(store: Arc<dyn Rsvp>) {
    // Thousands of rows on one resource, through the store.
    for day in 0..2500 {
        store
            .reserve(
                NewReservation::builder()
                    .user_id("bulk")
                    .resource_id("crowded")
                    .start(t0() + TimeDelta::hours(day))
                    .end(t0() + TimeDelta::hours(day) + TimeDelta::minutes(30))
                    .note("x".repeat(200))
                    .build()
                    .unwrap(),
            )
            .await
            .unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let settings = ServerSettings {
        health_interval: Duration::from_secs(3600),
        ..Default::default()
    };
    let server = tokio::spawn(server::run(
        listener,
        store,
        settings,
        std::future::pending(),
    ));
    let mut unread = Vec::new();
    for _ in 0..40 {
        let mut client = support::connect(addr).await;
        let mut rows = client
            .query(pb::QueryRequest {
                resource_id: "crowded".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        next(&mut rows).await; // started, then left unread
        unread.push((client, rows));
    }
    let mut client = support::connect(addr).await;
    for i in 0..5 {
        let started = std::time::Instant::now();
        let made = client
            .reserve(support::reserve_request(
                "alice",
                &format!("quiet-{i}"),
                0,
                60,
            ))
            .await
            .unwrap()
            .into_inner()
            .reservation
            .unwrap();
        client.get(pb::GetRequest { id: made.id }).await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "answered in {:?} beside 40 unread streams",
            started.elapsed()
        );
    }
    drop(unread);
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_unread_streams_leave_postgres_to_others() {
    let db = TestDb::new().await;
    let store = db
        .store(StoreOptions {
            max_connections: 10,
            ..StoreOptions::default()
        })
        .await;
    forty_unread_streams_leave_the_database_to_others(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_unread_streams_leave_the_embedded_store_to_others() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("rsvp.db"), StoreOptions::default())
        .await
        .unwrap();
    forty_unread_streams_leave_the_database_to_others(Arc::new(store)).await;
}

/// A client that reads nothing for the idle time loses its stream, with a
/// status that says so; its place among the open streams is freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_its_client_does_not_read_ends_and_frees_its_place() {
    let settings = ServerSettings {
        max_streams: 1,
        stream_idle_timeout: Duration::from_millis(500),
        ..Default::default()
    };
    let app = TestApp::spawn_with(|_| {}, settings).await;
    seed(app.store.pool(), 20_000).await;
    let mut idle = app
        .client()
        .await
        .query(pb::QueryRequest::default())
        .await
        .unwrap()
        .into_inner();
    next(&mut idle).await;

    // The one place is taken: another stream is refused, saying why.
    let mut other = app.client().await;
    let refused = match other.query(pb::QueryRequest::default()).await {
        Err(status) => status,
        Ok(stream) => stream
            .into_inner()
            .next()
            .await
            .expect("an answer")
            .unwrap_err(),
    };
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert_eq!(reason(&refused), "STREAM_LIMIT");

    tokio::time::sleep(Duration::from_secs(2)).await;
    // The idle stream ended: what it still yields ends in STREAM_IDLE.
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(10), idle.next())
            .await
            .expect("the idle stream ends")
        {
            Some(Ok(_)) => continue, // rows already on their way
            other => break other,
        }
    };
    let status = end.expect("an error").unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(reason(&status), "STREAM_IDLE");
    // And its place is free again.
    let mut fresh = other
        .query(pb::QueryRequest::default())
        .await
        .unwrap()
        .into_inner();
    next(&mut fresh).await;
}

fn reason(status: &tonic::Status) -> String {
    status
        .get_details_error_info()
        .map(|i| i.reason)
        .unwrap_or_default()
}
