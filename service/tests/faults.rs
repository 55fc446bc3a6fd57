//! Faults under load: the database crashing and coming back, the server
//! killed with SIGKILL, a listener whose server restarts, a pool with more
//! slow calls than connections. Every acknowledged write survives, the
//! no-double-booking invariant holds, and no call ever gets INTERNAL.
//!
//! Each test prints what it did (calls, faults, acknowledged writes
//! verified); docs/reliability.md quotes the last run.

mod support;

use std::{
    net::SocketAddr,
    process::{Child, Command},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use abi::pb;
use futures::StreamExt;
use reservation::{PgStore, SqliteStore, StoreOptions};
use rsvp_server::server::{self, ServerSettings};
use rsvp_testing::{TestCluster, TestDb, assert_no_double_booking};
use support::{BIN, Load, all_ids, assert_all_acked_stored, connect, free_addr, reserve_request};
use tonic::Code;
use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient};

/// Polls health every 50 ms, recording each change of status.
fn watch_health(addr: SocketAddr) -> (Arc<Mutex<Vec<ServingStatus>>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let task = tokio::spawn(async move {
        let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy();
        let mut health = HealthClient::new(channel);
        loop {
            let status = support::health_status(&mut health).await;
            {
                let mut seen = record.lock().unwrap();
                if seen.last() != Some(&status) {
                    seen.push(status);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    (seen, task)
}

async fn wait_until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_crashes_and_returns_under_load() {
    let cluster = tokio::task::spawn_blocking(|| TestCluster::start().unwrap())
        .await
        .unwrap();
    let url = cluster.url("postgres");
    let options = StoreOptions {
        acquire_timeout: Duration::from_secs(1),
        ..StoreOptions::default()
    };
    let store = PgStore::connect(&url, options).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let settings = ServerSettings {
        health_interval: Duration::from_millis(100),
        ..ServerSettings::default()
    };
    let served = store.clone();
    let server = tokio::spawn(async move {
        server::run(listener, Arc::new(served), settings, std::future::pending()).await
    });
    let (health, health_task) = watch_health(addr);
    wait_until("SERVING", Duration::from_secs(10), || {
        health.lock().unwrap().last() == Some(&ServingStatus::Serving)
    })
    .await;

    // A listener, as a client should write one: when its stream ends it
    // resumes after the last change it saw.
    let seen = Arc::new(Mutex::new(std::collections::HashSet::new()));
    let endings = Arc::new(Mutex::new(Vec::<String>::new()));
    let last_change = Arc::new(Mutex::new(0i64));
    let (record, ended, last) = (seen.clone(), endings.clone(), last_change.clone());
    let listening = tokio::spawn(async move {
        let mut client = connect(addr).await;
        // From the first change: the database is fresh, and the load may
        // start before the first Listen call reaches the server.
        let mut after = Some(0);
        loop {
            let Ok(stream) = client
                .listen(pb::ListenRequest {
                    after_change_id: after,
                    ..Default::default()
                })
                .await
            else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let mut stream = stream.into_inner();
            loop {
                match stream.next().await {
                    Some(Ok(change)) => {
                        after = Some(change.change_id);
                        *last.lock().unwrap() = change.change_id;
                        record
                            .lock()
                            .unwrap()
                            .insert(change.reservation.unwrap().id);
                    }
                    Some(Err(status)) => {
                        ended.lock().unwrap().push(format!("{:?}", status.code()));
                        break;
                    }
                    None => {
                        ended.lock().unwrap().push("end".into());
                        break;
                    }
                }
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    let load = Load::start(addr, 8, false);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let crashed = Instant::now();
    let c = Arc::new(cluster);
    let crashing = c.clone();
    tokio::task::spawn_blocking(move || crashing.crash())
        .await
        .unwrap();
    wait_until(
        "NOT_SERVING during the outage",
        Duration::from_secs(10),
        || health.lock().unwrap().contains(&ServingStatus::NotServing),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let restarting = c.clone();
    tokio::task::spawn_blocking(move || restarting.restart().unwrap())
        .await
        .unwrap();
    let outage = crashed.elapsed();
    wait_until("SERVING again", Duration::from_secs(20), || {
        health.lock().unwrap().last() == Some(&ServingStatus::Serving)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stats = load.stop().await;

    assert!(
        stats.others.is_empty(),
        "calls failed with other codes: {:?}",
        stats.others
    );
    assert!(stats.unavailable > 0, "the outage was felt as UNAVAILABLE");
    assert_eq!(
        *health.lock().unwrap(),
        [
            ServingStatus::Serving,
            ServingStatus::NotServing,
            ServingStatus::Serving
        ]
    );
    let stored = all_ids(addr).await;
    assert_all_acked_stored(&stats.acked, &stored);
    assert_no_double_booking(&store).await;
    // The listener rode out the outage: it saw every acknowledged write.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let missing: Vec<String> = {
            let seen = seen.lock().unwrap();
            stats
                .acked
                .iter()
                .filter(|id| !seen.contains(*id))
                .cloned()
                .collect()
        };
        if missing.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            let ids: Vec<uuid::Uuid> = missing.iter().map(|m| m.parse().unwrap()).collect();
            let changes: Vec<(i64, uuid::Uuid)> = sqlx::query_as(
                "SELECT id, reservation_id FROM rsvp.reservation_changes WHERE reservation_id = ANY($1) ORDER BY id",
            )
            .bind(&ids)
            .fetch_all(store.pool())
            .await
            .unwrap();
            let max: Option<i64> =
                sqlx::query_scalar("SELECT max(id) FROM rsvp.reservation_changes")
                    .fetch_one(store.pool())
                    .await
                    .unwrap();
            panic!(
                "the listener missed {} acknowledged writes; their changes: {changes:?}; \
                 the listener's last change: {}; the table's last: {max:?}; endings: {:?}",
                missing.len(),
                last_change.lock().unwrap(),
                endings.lock().unwrap()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let endings = endings.lock().unwrap().clone();
    eprintln!(
        "database crash: {} calls, {} acknowledged and verified, {} conflicts, {} UNAVAILABLE \
         during a {:.1}s outage, 0 other errors; the listener saw all {} acknowledged writes \
         (its stream was resumed {} times: {:?})",
        stats.calls,
        stats.acked.len(),
        stats.conflicts,
        stats.unavailable,
        outage.as_secs_f64(),
        stats.acked.len(),
        endings.len(),
        endings
    );
    listening.abort();
    health_task.abort();
    server.abort();
}

/// An `rsvp-server` process.
fn spawn_server(addr: SocketAddr, store_args: &[&str]) -> Child {
    Command::new(BIN)
        .args(store_args)
        .args(["--listen", &addr.to_string(), "--log-level", "error"])
        .env_remove("RUST_LOG")
        .spawn()
        .unwrap()
}

async fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn kill9(child: &mut Child) {
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGKILL);
    }
    let _ = child.wait();
}

/// Load, SIGKILL, restart; then every acknowledged reservation is there.
async fn kill_under_load(store_args: &[&str]) -> support::LoadStats {
    let addr = free_addr();
    let mut first = spawn_server(addr, store_args);
    wait_listening(addr).await;
    let load = Load::start(addr, 8, true);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    kill9(&mut first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = load.stop().await;
    assert!(
        stats.others.is_empty(),
        "unexpected failures: {:?}",
        stats.others
    );
    assert!(!stats.acked.is_empty());

    let mut second = spawn_server(addr, store_args);
    wait_listening(addr).await;
    let stored = all_ids(addr).await;
    assert_all_acked_stored(&stats.acked, &stored);
    kill9(&mut second);
    stats
}

/// Reservations without the change that created them: half-written.
const HALF_WRITTEN: &str = "SELECT count(*) FROM rsvp.reservations r WHERE NOT EXISTS \
    (SELECT 1 FROM rsvp.reservation_changes c WHERE c.reservation_id = r.id AND c.op = 'create')";
/// The same for the embedded store's schema.
const HALF_WRITTEN_EMBEDDED: &str = "SELECT count(*) FROM reservations r WHERE NOT EXISTS \
    (SELECT 1 FROM reservation_changes c WHERE c.reservation_id = r.id AND c.op = 'create')";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_load_loses_no_acknowledged_write_on_postgres() {
    let db = TestDb::new().await;
    let stats = kill_under_load(&["--database-url", db.url()]).await;

    let store = db
        .store(StoreOptions {
            migrate: false,
            ..StoreOptions::default()
        })
        .await;
    let half: i64 = sqlx::query_scalar(HALF_WRITTEN)
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(half, 0, "half-written reservations");
    assert_no_double_booking(&store).await;
    eprintln!(
        "SIGKILL (PostgreSQL): {} calls, {} acknowledged and verified after restart, {} cut off by the kill",
        stats.calls,
        stats.acked.len(),
        stats.cut_off + stats.unavailable
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_load_loses_no_acknowledged_write_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap().to_string();
    let stats = kill_under_load(&["--data-dir", &data_dir]).await;

    let store = SqliteStore::open(dir.path().join("rsvp.db"), StoreOptions::default())
        .await
        .unwrap();
    let half: i64 = sqlx::query_scalar(HALF_WRITTEN_EMBEDDED)
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(half, 0, "half-written reservations");
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(integrity, "ok");
    assert_no_double_booking(&store).await;
    eprintln!(
        "SIGKILL (embedded): {} calls, {} acknowledged and verified after restart, {} cut off by the kill",
        stats.calls,
        stats.acked.len(),
        stats.cut_off + stats.unavailable
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_whose_server_restarts_resumes_without_a_gap() {
    let db = TestDb::new().await;
    let (listen_addr, write_addr) = (free_addr(), free_addr());
    let store_args = ["--database-url", db.url()];
    let mut listen_server = spawn_server(listen_addr, &store_args);
    let mut write_server = spawn_server(write_addr, &store_args);
    wait_listening(listen_addr).await;
    wait_listening(write_addr).await;

    // The listener: reconnects after failures, resuming after the last
    // change it saw.
    let received = Arc::new(Mutex::new(Vec::<i64>::new()));
    let record = received.clone();
    let reconnects = Arc::new(Mutex::new(0u32));
    let counted = reconnects.clone();
    let listener = tokio::spawn(async move {
        let mut after = Some(0i64);
        loop {
            let channel = tonic::transport::Channel::from_shared(format!("http://{listen_addr}"))
                .unwrap()
                .connect_timeout(Duration::from_millis(500))
                .connect()
                .await;
            let Ok(channel) = channel else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let mut client = pb::reservation_service_client::ReservationServiceClient::new(channel);
            let Ok(stream) = client
                .listen(pb::ListenRequest {
                    after_change_id: after,
                    ..Default::default()
                })
                .await
            else {
                continue;
            };
            let mut stream = stream.into_inner();
            while let Some(Ok(change)) = stream.next().await {
                after = Some(change.change_id);
                record.lock().unwrap().push(change.change_id);
            }
            *counted.lock().unwrap() += 1;
        }
    });

    // Writes go through the other server the whole time.
    let load = Load::start(write_addr, 4, false);
    tokio::time::sleep(Duration::from_millis(800)).await;
    kill9(&mut listen_server);
    tokio::time::sleep(Duration::from_millis(500)).await;
    listen_server = spawn_server(listen_addr, &store_args);
    wait_listening(listen_addr).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let stats = load.stop().await;
    assert!(stats.others.is_empty(), "{:?}", stats.others);

    let pool = db.pool(1).await;
    let all: Vec<i64> = sqlx::query_scalar("SELECT id FROM rsvp.reservation_changes ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    wait_until("the listener to catch up", Duration::from_secs(15), || {
        received.lock().unwrap().len() >= all.len()
    })
    .await;
    listener.abort();
    let got = received.lock().unwrap().clone();
    assert_eq!(got, all, "every change, in order, once");
    assert!(
        *reconnects.lock().unwrap() >= 1,
        "the listener did lose its server"
    );
    eprintln!(
        "listener restart: {} changes received in order with no gap across a SIGKILL of its server",
        got.len()
    );
    kill9(&mut listen_server);
    kill9(&mut write_server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_slow_calls_than_connections_wait_then_answer_and_never_hang() {
    let db = TestDb::new().await;
    let options = StoreOptions {
        max_connections: 2,
        acquire_timeout: Duration::from_secs(1),
        ..StoreOptions::default()
    };
    let store = db.store(options).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = store.clone();
    let server = tokio::spawn(async move {
        let quiet = ServerSettings {
            health_interval: Duration::from_secs(3600),
            ..ServerSettings::default()
        };
        server::run(listener, Arc::new(served), quiet, std::future::pending()).await
    });

    // Calls on "busy" wait for its lock, holding a connection each.
    let blocker_pool = db.pool(2).await;
    let mut blocker = blocker_pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(hashtextextended('busy', 0))")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let started = Instant::now();
    // One after the other, so that each finds a writer free (reserves that
    // arrive together would share one connection): the first two each wait
    // on the lock, holding a connection, before the next is sent.
    let mut calls = Vec::new();
    for i in 0..6u32 {
        if (1..=2).contains(&i) {
            support::waiting_on_locks(&blocker_pool, i64::from(i)).await;
        }
        calls.push(tokio::spawn(async move {
            let mut client = connect(addr).await;
            let from = i as i64 * 100;
            let mut request = tonic::Request::new(reserve_request("u", "busy", from, from + 10));
            request.set_timeout(Duration::from_secs(10));
            let result = client.reserve(request).await;
            (
                result
                    .map(|r| r.into_inner())
                    .map_err(|s| (s.code(), s.message().to_string())),
                started.elapsed(),
            )
        }));
    }
    // A call with a short deadline is answered by its deadline.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut client = connect(addr).await;
    let mut hurried = tonic::Request::new(reserve_request("u", "busy", 5000, 5010));
    hurried.set_timeout(Duration::from_millis(300));
    let t = Instant::now();
    let status = client.reserve(hurried).await.unwrap_err();
    assert!(
        matches!(
            status.code(),
            Code::DeadlineExceeded | Code::Cancelled | Code::Unavailable
        ),
        "{status:?}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "the deadline was honoured ({:?})",
        t.elapsed()
    );

    tokio::time::sleep(Duration::from_millis(1500)).await;
    sqlx::query("SELECT pg_advisory_unlock(hashtextextended('busy', 0))")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let (mut ok, mut busy) = (0, 0);
    for call in calls {
        let (result, took) = tokio::time::timeout(Duration::from_secs(15), call)
            .await
            .expect("never hangs")
            .unwrap();
        assert!(took < Duration::from_secs(10), "answered in {took:?}");
        match result {
            Ok(_) => ok += 1,
            Err((Code::Unavailable, message)) => {
                assert!(
                    message.contains("busy") && message.contains("retry"),
                    "{message}"
                );
                busy += 1;
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert!(ok >= 2, "the calls holding connections completed ({ok})");
    assert!(
        busy >= 1,
        "calls that found no connection were told to retry ({busy})"
    );
    // The pool is whole again.
    let mut client = connect(addr).await;
    client
        .reserve(reserve_request("u", "free", 0, 10))
        .await
        .unwrap();
    assert_no_double_booking(&store).await;
    eprintln!(
        "pool exhaustion: 2 connections, 7 slow calls: {ok} completed, {busy} told to retry (UNAVAILABLE), 1 ended by its 300 ms deadline"
    );
    server.abort();
}

/// Readiness means "the database answers", asked on a connection of its
/// own: with every pooled connection busy the server stays SERVING (a load
/// balancer must not drain a busy server). Liveness is apart from both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_pool_is_not_a_database_that_is_down() {
    let db = TestDb::new().await;
    let store = db
        .store(StoreOptions {
            max_connections: 2,
            acquire_timeout: Duration::from_secs(1),
            ..StoreOptions::default()
        })
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let settings = ServerSettings {
        health_interval: Duration::from_millis(100),
        ..ServerSettings::default()
    };
    let served = Arc::new(store.clone());
    let server = tokio::spawn(server::run(
        listener,
        served,
        settings,
        std::future::pending(),
    ));
    let (health, health_task) = watch_health(addr);
    wait_until("SERVING", Duration::from_secs(10), || {
        health.lock().unwrap().last() == Some(&ServingStatus::Serving)
    })
    .await;

    // Every connection of the pool taken, for longer than a call would wait.
    let held = (
        store.pool().acquire().await.unwrap(),
        store.pool().acquire().await.unwrap(),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        *health.lock().unwrap(),
        [ServingStatus::Serving],
        "a busy pool never made the server NOT_SERVING"
    );
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let liveness = HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: "liveness".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(liveness.status(), ServingStatus::Serving);
    drop(held);
    health_task.abort();
    server.abort();
}
