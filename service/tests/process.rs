//! The real `rsvp-server` binary: several processes on one database,
//! graceful shutdown on SIGTERM, `migrate`, and configuration errors.

mod support;

use std::{
    process::{Command, Output},
    time::Duration,
};

use abi::pb;
use futures::StreamExt;
use rsvp_testing::TestDb;
use support::{BIN, Server, next, reserve_request};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_through_one_server_reaches_a_listener_on_another() {
    let db = TestDb::new().await;
    let one = Server::start(db.url(), &[]).await;
    let two = Server::start(db.url(), &[]).await;
    let mut feed = two
        .client()
        .await
        .listen(pb::ListenRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut writer = one.client().await;
    let made = writer
        .reserve(reserve_request("alice", "room-1", 0, 60))
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    let change = next(&mut feed).await;
    assert_eq!(change.reservation.unwrap().id, made.id);
    writer
        .cancel(pb::CancelRequest {
            id: made.id.clone(),
        })
        .await
        .unwrap();
    let change = next(&mut feed).await;
    assert_eq!(
        change.reservation.unwrap().status(),
        pb::ReservationStatus::Cancelled
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_streams_cleanly_finishes_calls_and_exits_zero() {
    let db = TestDb::new().await;
    let pool = db.pool(2).await;
    let mut server = Server::start(db.url(), &["--shutdown-grace", "20s"]).await;
    let mut client = server.client().await;
    // More rows than fit in flow-control windows and buffers.
    const ROWS: usize = 60_000;
    support::seed(&pool, ROWS as i64).await;

    // An open Query stream that has only been read a little...
    let mut query = client
        .query(pb::QueryRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut rows = 0;
    for _ in 0..10 {
        next(&mut query).await;
        rows += 1;
    }
    // ...an open Listen stream...
    let mut feed = server
        .client()
        .await
        .listen(pb::ListenRequest::default())
        .await
        .unwrap()
        .into_inner();
    // ...and a Reserve in flight, held up on the resource's lock.
    let mut blocker = pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(hashtextextended('busy-room', 0))")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let mut slow_client = server.client().await;
    let in_flight = tokio::spawn(async move {
        slow_client
            .reserve(reserve_request("bob", "busy-room", 0, 60))
            .await
    });
    support::waiting_on_locks(&pool, 1).await;
    assert!(!in_flight.is_finished());

    server.signal(libc::SIGTERM);
    tokio::time::sleep(Duration::from_millis(300)).await;
    sqlx::query("SELECT pg_advisory_unlock(hashtextextended('busy-room', 0))")
        .execute(&mut *blocker)
        .await
        .unwrap();

    let finished = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .unwrap()
        .unwrap();
    let made = finished
        .expect("the in-flight reserve completes")
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(made.resource_id, "busy-room");

    let end = loop {
        match tokio::time::timeout(Duration::from_secs(10), query.next())
            .await
            .unwrap()
        {
            Some(Ok(_)) => rows += 1, // rows already on their way
            other => break other,
        }
    };
    assert!(rows < ROWS, "the query was cut short ({rows} rows)");
    match end {
        Some(Err(status)) => {
            assert_eq!(status.code(), Code::Unavailable, "{status:?}");
            assert!(
                status.message().contains("shutting down"),
                "{}",
                status.message()
            );
        }
        other => panic!("the query should end with UNAVAILABLE, got {other:?}"),
    }
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match feed.next().await {
                Some(Ok(_)) => continue,
                other => break other,
            }
        }
    })
    .await
    .unwrap();
    assert!(
        matches!(end, Some(Err(ref s)) if s.code() == Code::Unavailable),
        "{end:?}"
    );

    let status = server.wait(Duration::from_secs(15)).await;
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(
        std::net::TcpStream::connect(server.addr).is_err(),
        "nothing listens any more"
    );
}

/// A Reserve that waits for a resource's lock, held by a session of the
/// test's (returned: the lock lasts as long as it).
async fn a_stuck_call(
    db: &TestDb,
    server: &Server,
) -> (
    tokio::task::JoinHandle<Result<tonic::Response<pb::ReserveResponse>, tonic::Status>>,
    sqlx::pool::PoolConnection<sqlx::Postgres>,
) {
    let pool = db.pool(2).await;
    let mut blocker = pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(hashtextextended('stuck-room', 0))")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let mut client = server.client().await;
    let in_flight = tokio::spawn(async move {
        client
            .reserve(reserve_request("bob", "stuck-room", 0, 60))
            .await
    });
    support::waiting_on_locks(&pool, 1).await;
    (in_flight, blocker)
}

/// A call still running when `shutdown_grace` runs out: the server stops
/// anyway, and says so with a non-zero exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_non_zero_when_calls_outlast_the_grace_period() {
    let db = TestDb::new().await;
    let mut server = Server::start(db.url(), &["--shutdown-grace", "1s"]).await;
    let (in_flight, _blocker) = a_stuck_call(&db, &server).await;
    assert!(!in_flight.is_finished());

    server.signal(libc::SIGTERM);
    let status = server.wait(Duration::from_secs(15)).await;
    assert_eq!(status.code(), Some(1), "{status:?}");
    let cut = in_flight.await.unwrap();
    assert!(cut.is_err(), "the stuck call never answered: {cut:?}");
}

/// Connections that made no call (half a request header, an HTTP/2
/// preface and nothing more) do not make a shutdown a failure: when the
/// grace period runs out with no call under way, the server exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_made_no_call_do_not_fail_a_shutdown() {
    use tokio::io::AsyncWriteExt;
    let db = TestDb::new().await;
    let mut server = Server::start(db.url(), &["--shutdown-grace", "1s"]).await;
    let mut half = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    half.write_all(b"GET /v1/reservations HTTP/1.1\r\nHost: local")
        .await
        .unwrap();
    let mut preface = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    preface
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.signal(libc::SIGTERM);
    let status = server.wait(Duration::from_secs(15)).await;
    assert_eq!(status.code(), Some(0), "{status:?}");
    drop((half, preface));
}

/// A second SIGTERM (or Ctrl-C) while calls outlast the first stops the
/// server at once, with exit 130.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_stops_at_once() {
    let db = TestDb::new().await;
    let mut server = Server::start(db.url(), &["--shutdown-grace", "30s"]).await;
    let _stuck = a_stuck_call(&db, &server).await;
    server.signal(libc::SIGTERM);
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.signal(libc::SIGTERM);
    let status = server.wait(Duration::from_secs(5)).await;
    assert_eq!(status.code(), Some(130), "{status:?}");
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("RUST_LOG");
    for key in rsvp_server::config::KEYS {
        cmd.env_remove(format!("RSVP_{}", key.to_uppercase()));
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("rsvp-server runs")
}

#[tokio::test]
async fn migrate_applies_migrations_and_exits() {
    let db = TestDb::empty().await;
    let out = run(&["migrate", "--database-url", db.url()], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pool = db.pool(1).await;
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'rsvp'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        tables, 7,
        "reservations, reservation_changes, feed_state, resources, usage_pieces, bookings, \
         api_tokens"
    );
}

#[test]
fn settings_layer_defaults_file_environment_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rsvp.toml");
    std::fs::write(
        &file,
        "pool_size = 3\nlisten_buffer = 100\nsweep_interval = \"10s\"\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let out = run(
        &["--config", file, "--listen-buffer", "200", "config"],
        &[("RSVP_POOL_SIZE", "5"), ("RSVP_LISTEN_BUFFER", "150")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("pool_size = 5\n"),
        "environment beats file:\n{text}"
    );
    assert!(
        text.contains("listen_buffer = 200\n"),
        "flag beats environment:\n{text}"
    );
    assert!(
        text.contains("sweep_interval = \"10s\"\n"),
        "file beats defaults:\n{text}"
    );
    assert!(
        text.contains("listen = \"127.0.0.1:50051\"\n"),
        "defaults fill the rest:\n{text}"
    );
    assert!(
        text.contains("change_retention = \"7d\"\n") && text.contains("default_hold = \"30m\"\n"),
        "durations as people write them:\n{text}"
    );
}

#[test]
fn invalid_settings_fail_at_start_naming_the_setting() {
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 11] = [
        (&[], &[("RSVP_LISTEN", "nowhere")], "RSVP_LISTEN"),
        (&[], &[("RSVP_POOL_SIZE", "0")], "pool_size"),
        (&[], &[("RSVP_DEFAULT_HOLD", "soon")], "default_hold"),
        (&["--database-url", "mysql://x/y"], &[], "database_url"),
        (&["--sweep-interval", "often"], &[], "--sweep-interval"),
        // Settings that would overflow time arithmetic or buffers.
        (
            &["--change-retention", "100000000y"],
            &[],
            "change_retention",
        ),
        (&["--default-hold", "5000y"], &[], "default_hold"),
        (
            &["--listen-buffer", "18446744073709551615"],
            &[],
            "listen_buffer",
        ),
        (
            &[],
            &[("RSVP_STREAM_IDLE_TIMEOUT", "1ms")],
            "stream_idle_timeout",
        ),
        // Origins a browser would never send.
        (
            &[],
            &[("RSVP_CORS_ORIGINS", "[\"shop.example\"]")],
            "is not an origin",
        ),
        (
            &[],
            &[("RSVP_CORS_ORIGINS", "[\"https://shop.example/app\"]")],
            "is not an origin",
        ),
    ];
    for (args, env, named) in cases {
        let mut all = args.to_vec();
        all.push("config");
        let out = run(&all, env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} {env:?} was accepted");
        assert!(stderr.contains(named), "{args:?} {env:?}: {stderr}");
    }
}

#[tokio::test]
async fn a_password_never_reaches_the_logs_or_the_printed_configuration() {
    let out = run(
        &[
            "--database-url",
            "postgres://rsvp:hunter2@127.0.0.1:1/rsvp",
            "config",
        ],
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("postgres://rsvp:****@127.0.0.1:1/rsvp"),
        "{stdout}"
    );
    assert!(!stdout.contains("hunter2"));
    let out = run(
        &[
            "--database-url",
            "postgres://rsvp:hunter2@127.0.0.1:1/rsvp",
            "--acquire-timeout",
            "1s",
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("cannot open the database"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

/// Runs a server with `flags`, makes a good call and a bad one, stops it,
/// and returns its JSON log lines about calls.
async fn call_log(flags: &[&str]) -> Vec<serde_json::Value> {
    let db = TestDb::new().await;
    let addr = support::free_addr();
    let child = Command::new(BIN)
        .args(["--database-url", db.url(), "--listen", &addr.to_string()])
        .args(["--log-format", "json", "--log-level", "info"])
        .args(flags)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut client = support::connect(addr).await;
    client
        .reserve(reserve_request("alice", "room-1", 0, 60))
        .await
        .unwrap();
    let _ = client.get(pb::GetRequest { id: "nope".into() }).await;
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["method"].is_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_access_log_each_call_is_logged_with_method_code_and_latency() {
    let calls = call_log(&["--access-log"]).await;
    let find = |method: &str| {
        calls
            .iter()
            .find(|v| v["fields"]["method"] == method)
            .unwrap_or_else(|| panic!("no log of {method} in {calls:#?}"))
    };
    let reserve = find("/reservation.ReservationService/Reserve");
    assert_eq!(reserve["level"], "INFO");
    assert_eq!(reserve["fields"]["code"], "Ok");
    assert!(
        reserve["fields"]["latency_ms"].as_f64().is_some(),
        "{reserve}"
    );
    let get = find("/reservation.ReservationService/Get");
    assert_eq!(get["fields"]["code"], "InvalidArgument");
}

/// One INFO line per call fills disks under load: by default calls that
/// went well, or failed for the client's reasons, are logged at DEBUG.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_calls_are_not_logged_at_info() {
    let calls = call_log(&[]).await;
    assert!(calls.is_empty(), "{calls:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_database_configured_the_embedded_store_serves_every_rpc() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("fresh/data");
    let addr = support::free_addr();
    let mut child = Command::new(BIN)
        .args([
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--listen",
            &addr.to_string(),
        ])
        .args(["--log-level", "warn"])
        .env_remove("RUST_LOG")
        .env_remove("RSVP_DATABASE_URL")
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        data_dir.join("rsvp.db").is_file(),
        "the data directory was created"
    );

    let mut client = support::connect(addr).await;
    let mut feed = client
        .listen(pb::ListenRequest::default())
        .await
        .unwrap()
        .into_inner();
    let r = client
        .reserve(reserve_request("alice", "room-1", 0, 60))
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    let status = client
        .reserve(reserve_request("bob", "room-1", 30, 90))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(
        abi::conflict_from_status(&status).unwrap().existing[0].id,
        r.id
    );
    client
        .confirm(pb::ConfirmRequest { id: r.id.clone() })
        .await
        .unwrap();
    let noted = pb::UpdateRequest {
        id: r.id.clone(),
        note: Some("hi".into()),
        ..Default::default()
    };
    client.update(noted).await.unwrap();
    let got = client
        .get(pb::GetRequest { id: r.id.clone() })
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(
        (got.status(), got.note.as_str()),
        (pb::ReservationStatus::Confirmed, "hi")
    );
    let rows: Vec<pb::Reservation> = futures::TryStreamExt::try_collect(
        client
            .query(pb::QueryRequest::default())
            .await
            .unwrap()
            .into_inner(),
    )
    .await
    .unwrap();
    assert_eq!(rows.len(), 1);
    let page = client
        .filter(pb::FilterRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.reservations.len(), 1);
    client
        .cancel(pb::CancelRequest { id: r.id.clone() })
        .await
        .unwrap();
    let statuses: Vec<_> = [
        next(&mut feed).await,
        next(&mut feed).await,
        next(&mut feed).await,
        next(&mut feed).await,
    ]
    .iter()
    .map(|c| c.reservation.as_ref().unwrap().status())
    .collect();
    use pb::ReservationStatus::*;
    assert_eq!(statuses, [Pending, Confirmed, Confirmed, Cancelled]);

    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    assert!(child.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_are_refused_without_exhausting_memory() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &format!("sqlite:{}", dir.path().join("rsvp.db").display()),
        &[],
    )
    .await;
    let mut client = server.client().await;
    client
        .reserve(reserve_request("alice", "room-1", 0, 60))
        .await
        .unwrap();
    let baseline = server.rss_kib();

    let calls: Vec<_> = (0..8)
        .map(|i| {
            let mut client = client.clone();
            tokio::spawn(async move {
                let mut request = reserve_request("mallory", "room-2", i * 100, i * 100 + 10);
                request.reservation.as_mut().unwrap().note = "x".repeat(10 * 1024 * 1024);
                client.reserve(request).await
            })
        })
        .collect();
    for call in calls {
        let status = call.await.unwrap().unwrap_err();
        assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
        assert!(
            status.message().contains("too large"),
            "{}",
            status.message()
        );
    }
    let growth_mib = server.rss_kib().saturating_sub(baseline) / 1024;
    assert!(
        growth_mib < 32,
        "80 MiB of requests grew the server by {growth_mib} MiB"
    );
    // Nothing was stored, and the server still answers.
    let rows: Vec<pb::Reservation> = futures::TryStreamExt::try_collect(
        client
            .query(pb::QueryRequest::default())
            .await
            .unwrap()
            .into_inner(),
    )
    .await
    .unwrap();
    assert_eq!(rows.len(), 1);
}
