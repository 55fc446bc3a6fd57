//! The service test harness: a real server on a loopback port over a store
//! on a database of its own, and a gRPC client talking to it over TCP.

#![allow(dead_code)]

use std::{net::SocketAddr, sync::Arc, time::Duration};

use abi::pb::{self, reservation_service_client::ReservationServiceClient as Client};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use futures::StreamExt;
use reservation::{ManualClock, PgStore, Rsvp, StoreOptions, testing::TestDb};
use reservation_service::server::{self, ServerSettings};
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
