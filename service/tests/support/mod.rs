//! The service test harness: a real server on a loopback port over a store
//! on a database of its own, and a gRPC client talking to it over TCP.

#![allow(dead_code)]

use std::{
    net::{SocketAddr, TcpListener as StdTcpListener},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use abi::pb::{self, reservation_service_client::ReservationServiceClient as Client};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use futures::StreamExt;
use reservation::{ManualClock, PgStore, Rsvp, StoreOptions};
use rsvp_server::server::{self, ServerSettings};
use rsvp_testing::TestDb;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::{Code, Status, transport::Channel};

pub type RsvpClient = Client<Channel>;

/// Minute 0 of every test's timeline.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap()
}

/// `minutes` after [`t0`], on the wire.
pub fn ts(minutes: i64) -> prost_types::Timestamp {
    abi::time::to_timestamp(t0() + TimeDelta::minutes(minutes))
}

/// A reserve request for `[from, to)` minutes.
pub fn reserve_request(user: &str, resource: &str, from: i64, to: i64) -> pb::ReserveRequest {
    pb::ReserveRequest {
        reservation: Some(pb::Reservation {
            user_id: user.into(),
            resource_id: resource.into(),
            start: Some(ts(from)),
            end: Some(ts(to)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A running server and what it serves.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: RsvpClient,
    pub clock: ManualClock,
    pub store: PgStore,
    pub db: Arc<TestDb>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// A server with default settings, its store's clock at [`t0`].
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(|_| {}, ServerSettings::default()).await
    }

    /// A server whose store options `tweak` adjusts.
    pub async fn spawn_with(
        tweak: impl FnOnce(&mut StoreOptions),
        settings: ServerSettings,
    ) -> TestApp {
        let db = Arc::new(TestDb::new().await);
        let clock = ManualClock::new(t0());
        let mut options = StoreOptions {
            clock: Arc::new(clock.clone()),
            ..StoreOptions::default()
        };
        tweak(&mut options);
        let store = db.store(options).await;
        TestApp::serve(db, store, clock, settings).await
    }

    async fn serve(
        db: Arc<TestDb>,
        store: PgStore,
        clock: ManualClock,
        settings: ServerSettings,
    ) -> TestApp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let shared: Arc<dyn Rsvp> = Arc::new(store.clone());
        let server = tokio::spawn(server::run(listener, shared, settings, async {
            let _ = rx.await;
        }));
        let client = connect(addr).await;
        TestApp {
            addr,
            client,
            clock,
            store,
            db,
            shutdown: Some(tx),
            server: Some(server),
        }
    }

    /// A server checking API tokens, reloaded every 100 ms.
    pub async fn spawn_with_tokens() -> TestApp {
        TestApp::spawn_with(
            |_| {},
            ServerSettings {
                auth: Arc::new(rsvp_server::auth::Authenticator::tokens(Arc::new(
                    rsvp_server::auth::TokenCache::new(),
                ))),
                token_refresh: Duration::from_millis(100),
                ..ServerSettings::default()
            },
        )
        .await
    }

    /// A new API token for `principal` in `role`, made in the store.
    pub async fn token(&self, principal: &str, role: abi::Role) -> abi::TokenSecret {
        let (_, secret) = self
            .store
            .create_token(abi::NewToken {
                principal: abi::UserId::parse(principal).unwrap(),
                role,
                expires_at: None,
            })
            .await
            .unwrap();
        secret
    }

    /// A new client of this server.
    pub async fn client(&self) -> RsvpClient {
        connect(self.addr).await
    }

    /// Moves the store's clock forward.
    pub fn advance(&self, minutes: i64) {
        self.clock.advance(TimeDelta::minutes(minutes));
    }

    pub async fn reserve(
        &self,
        user: &str,
        resource: &str,
        from: i64,
        to: i64,
    ) -> Result<pb::Reservation, Status> {
        self.client
            .clone()
            .reserve(reserve_request(user, resource, from, to))
            .await
            .map(|r| r.into_inner().reservation.expect("a reservation"))
    }

    /// Stops the server and waits for it; returns how `run` ended.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.server.take() {
            Some(server) => tokio::time::timeout(Duration::from_secs(30), server)
                .await
                .expect("the server stops within 30 seconds")
                .expect("the server task does not panic"),
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A client connected to `addr` over TCP.
pub async fn connect(addr: SocketAddr) -> RsvpClient {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
    Client::new(channel)
}

/// The next message of a server stream, failing after 10 seconds.
pub async fn next<T>(stream: &mut tonic::Streaming<T>) -> T {
    match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
        Ok(Some(Ok(item))) => item,
        Ok(Some(Err(status))) => panic!("stream failed: {status:?}"),
        Ok(None) => panic!("stream ended"),
        Err(_) => panic!("nothing arrived within 10 seconds"),
    }
}

/// Asserts the stream sends nothing for a short while.
pub async fn quiet<T: std::fmt::Debug>(stream: &mut tonic::Streaming<T>) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(300), stream.next()).await {
        panic!("unexpected: {item:?}");
    }
}

/// Asserts `result` failed with `code`, and returns the status.
pub fn expect_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code) -> Status {
    match result {
        Err(status) if status.code() == code => status,
        other => panic!("expected {code:?}, got {other:?}"),
    }
}

pub const BIN: &str = env!("CARGO_BIN_EXE_rsvp-server");

pub fn free_addr() -> SocketAddr {
    StdTcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// An `rsvp-server` process, killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Server {
    pub async fn start(database_url: &str, extra: &[&str]) -> Server {
        let addr = free_addr();
        let child = Command::new(BIN)
            .args([
                "--database-url",
                database_url,
                "--listen",
                &addr.to_string(),
            ])
            .args(["--log-level", "warn"])
            .args(extra)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("rsvp-server starts");
        let server = Server { child, addr };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "rsvp-server did not listen on {addr}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server
    }

    pub async fn client(&self) -> RsvpClient {
        connect(self.addr).await
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: sending a signal to our own child.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    pub async fn wait(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "rsvp-server did not exit within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// The server's resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }
}

/// Writes `n` confirmed reservations on `n` new resources in one statement
/// (so `n` changes at once), straight into the table.
pub async fn seed(pool: &sqlx::PgPool, n: i64) {
    sqlx::query(
        "INSERT INTO rsvp.reservations \
             (id, user_id, resource_id, status, timespan, created_at, updated_at) \
         SELECT gen_random_uuid(), 'bulk', 'bulk-' || gen_random_uuid(), 'confirmed', \
                tstzrange(now(), now() + interval '1 hour'), now(), now() \
         FROM generate_series(1, $1) g",
    )
    .bind(n)
    .execute(pool)
    .await
    .unwrap();
}

/// A TCP proxy in front of the database that can cut every connection and
/// refuse new ones, to simulate an outage.
pub struct Proxy {
    pub addr: SocketAddr,
    down: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Forwards a loopback port to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (down, _) = tokio::sync::watch::channel(false);
        let watch = down.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if *watch.borrow() {
                    continue; // refused: dropped at once
                }
                let mut cut = watch.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.wait_for(|down| *down) => {}
                    }
                });
            }
        });
        Proxy { addr, down, task }
    }

    /// `url` with its host and port replaced by the proxy's.
    pub fn url(&self, url: &str) -> String {
        let (scheme_user, rest) = url.split_once('@').unwrap();
        let (_, path) = rest.split_once('/').unwrap();
        format!("{scheme_user}@{}/{path}", self.addr)
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        self.down.send_replace(true);
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.down.send_replace(false);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The host:port of a `postgres://user@host:port/db` URL.
pub fn url_addr(url: &str) -> SocketAddr {
    let rest = url.split_once('@').unwrap().1;
    rest.split_once('/').unwrap().0.parse().unwrap()
}

/// What a load run saw.
#[derive(Debug, Default)]
pub struct LoadStats {
    /// Calls made.
    pub calls: u64,
    /// Reservations the server acknowledged, by id.
    pub acked: Vec<String>,
    /// Refused as conflicts.
    pub conflicts: u64,
    /// Failed with UNAVAILABLE (server or database away).
    pub unavailable: u64,
    /// Failed in transit while the server process was being killed.
    pub cut_off: u64,
    /// Anything else: the tests require none.
    pub others: Vec<String>,
}

/// Clients reserving confirmed, random, mostly non-overlapping intervals on
/// a few resources, as fast as they can, until stopped.
pub struct Load {
    stop: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<JoinHandle<LoadStats>>,
}

impl Load {
    /// Starts `clients` clients against `addr`. `server_may_die` counts
    /// failures of a connection cut mid-call apart instead of as errors.
    pub fn start(addr: SocketAddr, clients: u64, server_may_die: bool) -> Load {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..clients)
            .map(|task| {
                let stop = stop.clone();
                tokio::spawn(async move {
                    let channel = Channel::from_shared(format!("http://{addr}"))
                        .unwrap()
                        .connect_timeout(Duration::from_secs(1))
                        .connect_lazy();
                    let mut client = Client::new(channel);
                    let mut stats = LoadStats::default();
                    let mut n: i64 = 0;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        // A pseudo-random spread over 20 resources and a year.
                        let mix = (task as i64 * 7919 + n * 104_729) % 1_000_003;
                        let resource = format!("room-{}", mix % 20);
                        let start = (mix * 37) % 525_600;
                        let mut request =
                            reserve_request("load", &resource, start, start + 30 + mix % 90);
                        request.reservation.as_mut().unwrap().status =
                            pb::ReservationStatus::Confirmed.into();
                        let mut call = tonic::Request::new(request);
                        call.set_timeout(Duration::from_secs(5));
                        stats.calls += 1;
                        match client.reserve(call).await {
                            Ok(r) => stats.acked.push(r.into_inner().reservation.unwrap().id),
                            Err(s) if s.code() == Code::FailedPrecondition => stats.conflicts += 1,
                            Err(s) if s.code() == Code::Unavailable => {
                                stats.unavailable += 1;
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                            Err(s)
                                if server_may_die
                                    && matches!(s.code(), Code::Unknown | Code::Cancelled) =>
                            {
                                stats.cut_off += 1;
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                            Err(s) => {
                                stats
                                    .others
                                    .push(format!("{:?}: {}", s.code(), s.message()));
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    }
                    stats
                })
            })
            .collect();
        Load { stop, tasks }
    }

    /// Stops every client and adds up what they saw.
    pub async fn stop(self) -> LoadStats {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut total = LoadStats::default();
        for task in self.tasks {
            let s = task.await.unwrap();
            total.calls += s.calls;
            total.acked.extend(s.acked);
            total.conflicts += s.conflicts;
            total.unavailable += s.unavailable;
            total.cut_off += s.cut_off;
            total.others.extend(s.others);
        }
        total
    }
}

/// Every reservation id the server at `addr` knows.
pub async fn all_ids(addr: SocketAddr) -> std::collections::HashSet<String> {
    let mut client = connect(addr).await;
    let mut rows = client
        .query(pb::QueryRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut ids = std::collections::HashSet::new();
    while let Some(row) = rows.next().await {
        ids.insert(row.expect("every stored reservation reads back").id);
    }
    ids
}

/// Asserts every acknowledged reservation is among `stored`.
pub fn assert_all_acked_stored(acked: &[String], stored: &std::collections::HashSet<String>) {
    let lost: Vec<_> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged reservations lost: {lost:?}",
        lost.len()
    );
}

/// The server's overall health status (service name ""), `Unknown` when it
/// does not answer.
pub async fn health_status(
    health: &mut tonic_health::pb::health_client::HealthClient<Channel>,
) -> tonic_health::pb::health_check_response::ServingStatus {
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|r| r.into_inner().status())
        .unwrap_or(tonic_health::pb::health_check_response::ServingStatus::Unknown)
}

/// Waits until `calls` calls have reached the database and wait there on
/// a resource's lock (so the server is surely running them).
pub async fn waiting_on_locks(pool: &sqlx::PgPool, calls: i64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() \
               AND wait_event_type = 'Lock' AND wait_event = 'advisory'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting >= calls {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{waiting} calls wait on a lock, not {calls}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the server at `addr` has loaded the API token `secret` (it
/// reloads its tokens every 100 ms), asking `/v1/whoami` with it.
pub async fn until_token_works(addr: SocketAddr, secret: &str) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = client
            .get(format!("http://{addr}/v1/whoami"))
            .bearer_auth(secret)
            .send()
            .await
            .map(|r| r.status());
        if status.as_ref().is_ok_and(|s| s.is_success()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the token never worked: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
