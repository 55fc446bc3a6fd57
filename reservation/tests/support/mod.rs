//! The harness of the store tests: a store on a fresh database with a
//! manual clock, and one helper per call so tests read like the story.

#![allow(dead_code)]

use std::{sync::Arc, time::Duration};

use abi::{
    Change, ListenFilter, NewReservation, Reservation, ReservationId, ReservationQuery,
    ReservationStatus, Result,
};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use futures::{Stream, StreamExt, TryStreamExt};
use reservation::{ChangeStream, ManualClock, PgStore, Rsvp, SqliteStore, StoreOptions};
use rsvp_testing::TestDb;

/// Minute 0 of every test's timeline.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap()
}

/// `minutes` after [`t0`].
pub fn at(minutes: i64) -> DateTime<Utc> {
    t0() + TimeDelta::minutes(minutes)
}

/// A pending hold request for `[from, to)` minutes.
pub fn hold(user: &str, resource: &str, from: i64, to: i64) -> NewReservation {
    NewReservation::builder()
        .user_id(user)
        .resource_id(resource)
        .start(at(from))
        .end(at(to))
        .build()
        .unwrap()
}

/// A store under test, its clock, and what keeps its database alive.
pub struct Env {
    pub store: Arc<dyn Rsvp>,
    pub clock: ManualClock,
    pub pg: Option<PgStore>,
    _db: Option<TestDb>,
    _dir: Option<tempfile::TempDir>,
}

impl Env {
    pub fn options(clock: &ManualClock) -> StoreOptions {
        StoreOptions {
            clock: Arc::new(clock.clone()),
            max_connections: 20,
            ..StoreOptions::default()
        }
    }

    /// A PostgreSQL store on a database of its own; the clock at [`t0`].
    pub async fn postgres() -> Env {
        let db = TestDb::new().await;
        let clock = ManualClock::new(t0());
        let store = db.store(Env::options(&clock)).await;
        Env {
            store: Arc::new(store.clone()),
            clock,
            pg: Some(store),
            _db: Some(db),
            _dir: None,
        }
    }

    /// An embedded store in a file of its own; the clock at [`t0`].
    pub async fn sqlite() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(t0());
        let store = SqliteStore::open(dir.path().join("rsvp.db"), Env::options(&clock))
            .await
            .unwrap();
        Env {
            store: Arc::new(store),
            clock,
            pg: None,
            _db: None,
            _dir: Some(dir),
        }
    }

    /// The PostgreSQL database's URL.
    pub fn db_url(&self) -> Option<&str> {
        self._db.as_ref().map(TestDb::url)
    }

    /// The embedded store's file.
    pub fn db_path(&self) -> Option<std::path::PathBuf> {
        self._dir.as_ref().map(|d| d.path().join("rsvp.db"))
    }

    /// A second store on the same database, with a cache and feed of its
    /// own (another server, say), on the same clock.
    pub async fn twin(&self) -> Arc<dyn Rsvp> {
        if let Some(db) = &self._db {
            return Arc::new(db.store(Env::options(&self.clock)).await);
        }
        let dir = self._dir.as_ref().expect("a store has a database");
        Arc::new(
            SqliteStore::open(dir.path().join("rsvp.db"), Env::options(&self.clock))
                .await
                .unwrap(),
        )
    }

    pub async fn reserve(
        &self,
        user: &str,
        resource: &str,
        from: i64,
        to: i64,
    ) -> Result<Reservation> {
        self.store.reserve(hold(user, resource, from, to)).await
    }

    pub async fn confirmed(&self, user: &str, resource: &str, from: i64, to: i64) -> Reservation {
        let r = self.reserve(user, resource, from, to).await.unwrap();
        self.store.confirm(r.id).await.unwrap()
    }

    pub async fn get(&self, id: ReservationId) -> Reservation {
        self.store.get(id).await.unwrap()
    }

    pub async fn query(&self, query: ReservationQuery) -> Vec<Reservation> {
        self.store.query(query).try_collect().await.unwrap()
    }

    pub async fn all(&self) -> Vec<Reservation> {
        self.query(ReservationQuery::default()).await
    }

    pub async fn listen(&self, filter: ListenFilter) -> ChangeStream {
        self.store.listen(filter).await.unwrap()
    }

    pub fn advance(&self, minutes: i64) {
        self.clock.advance(TimeDelta::minutes(minutes));
    }

    /// Holds back every write on `resource` until [`Stall::release`]:
    /// on PostgreSQL its lock is taken by another session, on the
    /// embedded store the database's write lock by another connection.
    pub async fn stall_writes(&self, resource: &str) -> Stall {
        if let Some(pg) = &self.pg {
            return Stall::lock(pg.pool(), resource).await;
        }
        use sqlx::Connection;
        let path = self.db_path().expect("a store has a database");
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        sqlx::raw_sql("BEGIN IMMEDIATE")
            .execute(&mut conn)
            .await
            .unwrap();
        Stall::Sqlite(conn)
    }
}

impl Env {
    /// Two calls of `call` across a notice that runs out at minute 1 for
    /// a start at minute 61: `resource` is registered with an hour's
    /// notice; the first call is judged at minute 0 and held back (by
    /// [`Env::stall_writes`] on `resource`) until the second, judged at
    /// minute 2, waits too; then both are let go. Their answers, first and
    /// second.
    pub async fn across_the_notice<T, F>(&self, resource: &str, call: impl Fn() -> F) -> (T, T)
    where
        T: Send + 'static,
        F: std::future::Future<Output = T> + Send + 'static,
    {
        let notice = abi::ResourceSpec::try_from(abi::pb::Resource {
            id: resource.into(),
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
        .unwrap();
        self.store.create_resource(notice).await.unwrap();
        let stall = self.stall_writes(resource).await;
        let first = tokio::spawn(call());
        self.writes_waiting(1).await;
        self.advance(2);
        let second = tokio::spawn(call());
        self.writes_waiting(2).await;
        stall.release().await;
        (first.await.unwrap(), second.await.unwrap())
    }

    /// Returns once `n` writes wait behind a [`Stall`]: on PostgreSQL, once
    /// that many sessions wait for a resource's lock; the embedded store's
    /// writers wait inside SQLite, unseen, so there a while is given.
    pub async fn writes_waiting(&self, n: i64) {
        let Some(pg) = &self.pg else {
            tokio::time::sleep(Duration::from_millis(300)).await;
            return;
        };
        for _ in 0..500 {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            )
            .fetch_one(pg.pool())
            .await
            .unwrap();
            if waiting >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{n} writes never waited for a lock");
    }
}

/// Writes held back by [`Env::stall_writes`].
pub enum Stall {
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    Sqlite(sqlx::SqliteConnection),
}

impl Stall {
    /// Holds `resource`'s lock on a connection of `pool` until released.
    pub async fn lock(pool: &sqlx::PgPool, resource: &str) -> Stall {
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("SELECT pg_advisory_xact_lock(rsvp.lock_key($1))")
            .bind(resource)
            .execute(&mut *tx)
            .await
            .unwrap();
        Stall::Postgres(tx)
    }

    /// Lets the writes go on.
    pub async fn release(self) {
        match self {
            Stall::Postgres(tx) => tx.rollback().await.unwrap(),
            Stall::Sqlite(mut conn) => {
                sqlx::raw_sql("ROLLBACK").execute(&mut conn).await.unwrap();
            }
        }
    }
}

/// The next item of a stream, failing the test after 10 seconds.
pub async fn next<S, T>(stream: &mut S) -> T
where
    S: Stream<Item = Result<T>> + Unpin,
{
    match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
        Ok(Some(Ok(item))) => item,
        Ok(Some(Err(e))) => panic!("stream failed: {e:?}"),
        Ok(None) => panic!("stream ended"),
        Err(_) => panic!("nothing arrived within 10 seconds"),
    }
}

/// Asserts that nothing arrives on the stream for a short while.
pub async fn nothing_more(stream: &mut ChangeStream) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(300), stream.next()).await {
        panic!("unexpected item: {item:?}");
    }
}

/// The statuses of `changes`, for compact assertions.
pub fn statuses(changes: &[Change]) -> Vec<ReservationStatus> {
    changes.iter().map(|c| c.reservation.status).collect()
}

/// Registers `resource` with `capacity` units and a 5-minute buffer
/// before each reservation, then makes `ops` random writes on it: holds,
/// bookings and closures of random units, moves, unit changes, cancels,
/// and the clock moving on (holds lapse; the sweeper marks some expired).
pub async fn churn(env: &Env, resource: &str, capacity: u32, ops: usize, seed: u64) {
    use abi::{InitialStatus, ReservationUpdate, ResourceSpec, pb};
    use rand::{Rng, SeedableRng, rngs::StdRng};

    let store = &env.store;
    store
        .create_resource(
            ResourceSpec::try_from(pb::Resource {
                id: resource.into(),
                capacity,
                policy: Some(pb::BookingPolicy {
                    buffer_before: Some(prost_types::Duration {
                        seconds: 300,
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
    let mut rng = StdRng::seed_from_u64(seed);
    let mut mine: Vec<ReservationId> = Vec::new();
    for _ in 0..ops {
        match rng.random_range(0..10) {
            0..=3 => {
                let start = rng.random_range(0..600);
                let status = match rng.random_range(0..10) {
                    0 => InitialStatus::Blocked,
                    1..=4 => InitialStatus::Confirmed,
                    _ => InitialStatus::Pending,
                };
                let request = NewReservation::builder()
                    .user_id("churn")
                    .resource_id(resource)
                    .start(at(start))
                    .end(at(start + rng.random_range(5..120)))
                    .status(status)
                    .quantity(
                        if status == InitialStatus::Blocked && rng.random_bool(0.5) {
                            0
                        } else {
                            rng.random_range(1..=capacity)
                        },
                    )
                    .build()
                    .unwrap();
                if let Ok(r) = store.reserve(request).await {
                    mine.push(r.id);
                }
            }
            4..=5 if !mine.is_empty() => {
                let id = mine[rng.random_range(0..mine.len())];
                let start = rng.random_range(0..600);
                let mut update = ReservationUpdate::builder().id(id.to_string());
                if rng.random_bool(0.5) {
                    update = update
                        .start(at(start))
                        .end(at(start + rng.random_range(5..120)));
                }
                if rng.random_bool(0.5) {
                    update = update.quantity(rng.random_range(1..=capacity));
                }
                let _ = store.update(update.build().unwrap()).await;
            }
            6 if !mine.is_empty() => {
                let id = mine.swap_remove(rng.random_range(0..mine.len()));
                let _ = store.cancel(id).await;
            }
            7 => env.advance(rng.random_range(1..20)),
            8 => {
                store.sweep().await.unwrap();
            }
            _ => {}
        }
    }
}

/// Five changes each judged just before the clock passes `edge` and
/// written just after: a cancel of a confirmed reservation whose cancel
/// notice runs out at `edge`, a move of a hold to a start whose notice runs
/// out then, a cancel of a booking's confirmed part by its cancel notice,
/// a check-in of a reservation that ends at `edge`, and a move (later) of a
/// confirmed reservation whose cancel notice runs out at `edge`. Each is on
/// a resource of its own ([`LateChanges::RESOURCES`]).
pub struct LateChanges {
    cancel: ReservationId,
    mv: ReservationId,
    booking: abi::BookingId,
    check_in: ReservationId,
    postpone: ReservationId,
    moved_to: (DateTime<Utc>, DateTime<Utc>),
}

impl LateChanges {
    pub const RESOURCES: [&'static str; 5] = ["dr-kim", "dr-lee", "dr-max", "dr-roe", "room-9"];

    /// Registers the resources (an hour's notice and cancel notice) and
    /// makes what the changes change, all in time before `edge`.
    pub async fn prepare(store: &Arc<dyn Rsvp>, edge: DateTime<Utc>) -> LateChanges {
        use abi::{InitialStatus, ResourceSpec, pb};
        let hour = Some(prost_types::Duration {
            seconds: 3600,
            nanos: 0,
        });
        for id in &Self::RESOURCES[..4] {
            let spec = ResourceSpec::try_from(pb::Resource {
                id: (*id).into(),
                capacity: 1,
                policy: Some(pb::BookingPolicy {
                    min_notice: hour,
                    min_cancel_notice: hour,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .unwrap();
            store.create_resource(spec).await.unwrap();
        }
        let one = |resource: &str, start: DateTime<Utc>, status| {
            NewReservation::builder()
                .user_id("ann")
                .resource_id(resource)
                .start(start)
                .end(start + TimeDelta::minutes(15))
                .status(status)
                .build()
                .unwrap()
        };
        let in_an_hour = edge + TimeDelta::hours(1);
        let cancel = store
            .reserve(one("dr-kim", in_an_hour, InitialStatus::Confirmed))
            .await
            .unwrap();
        let mv = store
            .reserve(one(
                "dr-lee",
                in_an_hour + TimeDelta::hours(2),
                InitialStatus::Pending,
            ))
            .await
            .unwrap();
        let booking = store
            .book(
                abi::NewBooking::new(
                    abi::UserId::parse("ann").unwrap(),
                    vec![one("dr-max", in_an_hour, InitialStatus::Confirmed)],
                    abi::Hold::Default,
                    None,
                )
                .unwrap(),
            )
            .await
            .unwrap();
        let stay = NewReservation::builder()
            .user_id("ann")
            .resource_id("room-9")
            .start(edge - TimeDelta::hours(1))
            .end(edge)
            .status(InitialStatus::Confirmed)
            .build()
            .unwrap();
        let check_in = store.reserve(stay).await.unwrap();
        let postpone = store
            .reserve(one("dr-roe", in_an_hour, InitialStatus::Confirmed))
            .await
            .unwrap();
        LateChanges {
            cancel: cancel.id,
            mv: mv.id,
            booking: booking.id,
            check_in: check_in.id,
            postpone: postpone.id,
            moved_to: (in_an_hour, in_an_hour + TimeDelta::minutes(15)),
        }
    }

    /// Starts the five changes.
    pub fn start(&self, store: &Arc<dyn Rsvp>) -> tokio::task::JoinHandle<[Result<()>; 5]> {
        let store = store.clone();
        let (cancel, mv, booking, check_in, postpone, to) = (
            self.cancel,
            self.mv,
            self.booking,
            self.check_in,
            self.postpone,
            self.moved_to,
        );
        tokio::spawn(async move {
            let move_to = |id: ReservationId, start: DateTime<Utc>| {
                abi::ReservationUpdate::builder()
                    .id(id.to_string())
                    .start(start)
                    .end(start + TimeDelta::minutes(15))
                    .build()
                    .unwrap()
            };
            let (a, b, c, d, e) = tokio::join!(
                store.cancel(cancel),
                store.update(move_to(mv, to.0)),
                store.cancel_booking(booking),
                store.check_in(check_in),
                store.update(move_to(postpone, to.0 + TimeDelta::hours(4))),
            );
            [
                a.map(drop),
                b.map(drop),
                c.map(drop),
                d.map(drop),
                e.map(drop),
            ]
        })
    }

    /// Asserts that each change was refused by the rule whose time ran
    /// out, and that nothing changed.
    pub async fn assert_refused(self, store: &Arc<dyn Rsvp>, answers: [Result<()>; 5]) {
        use abi::{Error, Rule};
        let [cancel, mv, booking, check_in, postpone] = answers;
        let rules = |answer: Result<()>| match answer {
            Err(Error::Policy(broken)) => broken.iter().map(|v| v.rule).collect::<Vec<_>>(),
            Err(Error::BookingRejected(parts)) => parts
                .iter()
                .flat_map(|p| &p.policy)
                .map(|v| v.rule)
                .collect(),
            other => panic!("expected a refusal by the rules, got {other:?}"),
        };
        assert_eq!(rules(cancel), [Rule::CancelNotice], "the cancel");
        assert_eq!(rules(mv), [Rule::MinNotice], "the move");
        assert_eq!(rules(booking), [Rule::CancelNotice], "the booking's cancel");
        assert_eq!(rules(check_in), [Rule::CheckInWindow], "the check-in");
        assert_eq!(
            rules(postpone),
            [Rule::CancelNotice],
            "the confirmed one's move"
        );
        let cancel = store.get(self.cancel).await.unwrap();
        assert_eq!(cancel.status, ReservationStatus::Confirmed);
        // As stored: to the microsecond.
        let asked = abi::time::truncate_to_micros(self.moved_to.0);
        let mv = store.get(self.mv).await.unwrap();
        assert_eq!(
            mv.timespan.start(),
            asked + TimeDelta::hours(2),
            "not moved"
        );
        let booking = store.get_booking(self.booking).await.unwrap();
        assert_eq!(booking.parts[0].status, ReservationStatus::Confirmed);
        let stay = store.get(self.check_in).await.unwrap();
        assert_eq!(stay.checked_in_at, None);
        let postponed = store.get(self.postpone).await.unwrap();
        assert_eq!(postponed.timespan.start(), asked, "not moved");
    }
}
