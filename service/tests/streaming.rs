//! Query streams rows as the database yields them: the server's memory stays
//! flat however many rows match, and a client that goes away stops the
//! database work.

mod support;

use std::time::Duration;

use abi::pb;
use futures::StreamExt;
use rsvp_server::server::ServerSettings;
use rsvp_testing::TestDb;
use support::{Server, TestApp, next, seed};

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
async fn a_client_that_disconnects_stops_the_database_work() {
    let quiet = ServerSettings {
        health_interval: Duration::from_secs(3600),
        sweep_interval: Duration::from_secs(3600),
        ..Default::default()
    };
    let app = TestApp::spawn_with(|_| {}, quiet).await;
    seed(app.store.pool(), 60_000).await;
    let pool = app.store.pool().clone();

    let mut client = app.client().await;
    let mut rows = client
        .query(pb::QueryRequest::default())
        .await
        .unwrap()
        .into_inner();
    for _ in 0..10 {
        next(&mut rows).await;
    }
    assert!(
        pool.size() > pool.num_idle() as u32,
        "a connection is busy streaming"
    );
    drop(rows);
    drop(client);

    // Every connection goes back to the pool, and stays there.
    let all_idle = || pool.num_idle() as u32 == pool.size();
    let mut waited = Duration::ZERO;
    while !all_idle() {
        assert!(
            waited < Duration::from_secs(5),
            "a connection is still busy after the client left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += Duration::from_millis(20);
    }
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
