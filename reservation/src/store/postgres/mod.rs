//! The PostgreSQL store: production storage. Its dialect is SQL and
//! locking only; every rule is the engine's.
//!
//! - Writes are one round trip each: `rsvp.place(...)` (new reservations,
//!   several per call) and `rsvp.revise_versioned(...)` (an update planned by the
//!   engine). Both take the resources' transaction locks in one global
//!   order, read the time after them, and refuse what is in the way.
//! - The exclusion constraint is the last line of defence; SQLSTATE 23P01
//!   (a writer that bypassed the lock) and deadlocks (40P01) are retried,
//!   and the retry reads the blocking rows back.
//! - Sessions that write never run with `synchronous_commit = off`: a commit is only
//!   acknowledged once its WAL is written.

mod changes;
mod hosts;
mod rows;
mod target;

use std::{
    sync::{Arc, LazyLock},
    time::Duration,
};

use abi::{
    ApiToken, BookingId, Error, RequestId, ReservationId, Resource, ResourceId, ResourceSpec,
    Result, Timespan, TokenId, UserId,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Connection, PgPool, migrate::Migrator, postgres::PgPoolOptions};
use tokio::sync::Notify;
use tokio_util::sync::{CancellationToken, DropGuard};
use uuid::Uuid;

use self::{
    changes::{Announcer, PgChanges},
    rows::{PgBookRow, PgReservationRow, PgWriteRow, SQL, range, render, reservation_columns},
    target::Target,
};
use crate::{
    StoreOptions,
    db_error::{
        CHECK_VIOLATION, DEADLOCK_DETECTED, EXCLUSION_VIOLATION, UNIQUE_VIOLATION, db_error,
        pool_error,
    },
    dialect::{
        Blockers, BookOutcome, Booked, BookingPlacement, Dialect, FeedSource, PlaceOutcome, Placed,
        Placement, ResourceUsage, ReviseOutcome, Revised, Revision, Sql, StoredBooking, WriteTime,
    },
    engine::Engine,
    row::{StoredReservation, StoredToken},
    statement::Statement,
    store::{capacity_in_use, decode_resource, encode_spec, micros},
};

/// The PostgreSQL schema's migrations, applied when a store opens. A
/// database that a later release has migrated further opens too: during a
/// rolling upgrade a server of the previous release may restart after the
/// next one's migrations ran, and they only add (the functions it calls
/// are kept).
pub static MIGRATOR: LazyLock<Migrator> = LazyLock::new(|| {
    let mut migrator = sqlx::migrate!("../migrations/postgres");
    migrator.set_ignore_missing(true);
    migrator
});

/// Transactions of combined reserves that may run at once: enough for
/// PostgreSQL's group commit to share each WAL flush among several, few
/// enough that each carries many reserves.
const WRITE_LANES: usize = 4;

/// How long a pooled connection may sit idle before it is checked with a
/// round trip on its way out of the pool.
const IDLE_BEFORE_PING: std::time::Duration = std::time::Duration::from_secs(1);

/// A reservation store on PostgreSQL. Cheap to clone; clones share one pool
/// and one change feed.
#[derive(Clone)]
pub struct PgStore {
    engine: Arc<Engine<PgDialect>>,
}

super::rsvp_store!(PgStore);

impl PgStore {
    /// Connects to the database at `url` (`postgres://...`) and, unless
    /// `options.migrate` is off, applies migrations.
    ///
    /// The URL may name several hosts as libpq reads them
    /// (`postgres://u@h1:5432,h2:5432/db?target_session_attrs=read-write`):
    /// the store uses the first that accepts the kind of session asked for
    /// (`any`, libpq's default, `read-write` or `primary`), and moves to
    /// another by itself when that one goes away or stops taking writes.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] on `database_url` for a malformed URL;
    /// [`Error::Unavailable`] when no host can be reached.
    pub async fn connect(url: &str, options: StoreOptions) -> Result<Self> {
        options.check()?;
        let settings = session_settings(&options);
        let target = Arc::new(Target::parse(url, |connect| {
            connect
                .application_name("rsvp")
                .options(settings.iter().map(|(k, v)| (*k, v.as_str())))
        })?);
        if target.watched() {
            // Several hosts, or a kind of server to insist on: find one
            // before opening the pool on it.
            target.choose(options.acquire_timeout).await?;
        }
        let on_connect = target.clone();
        let on_acquire = target.clone();
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            // The pool already checks a connection when it comes back; a
            // round trip before every call as well would cost each call a
            // second wake-up of the database. Check only connections that sat
            // idle long enough to have been cut off unseen, and retire those
            // opened before the store last chose a server.
            .test_before_acquire(false)
            .before_acquire(move |conn, meta| {
                let target = on_acquire.clone();
                Box::pin(async move {
                    if !target.current_connection(&meta) {
                        return Ok(false);
                    }
                    if meta.idle_for >= IDLE_BEFORE_PING {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .after_connect(move |conn, _| {
                let target = on_connect.clone();
                Box::pin(async move { target.prepare(conn).await })
            })
            .connect_with(target.options())
            .await
            .map_err(|e| match e {
                // Nothing accepted a connection before the deadline.
                sqlx::Error::PoolTimedOut => Error::Unavailable(Box::new(e)),
                e => db_error(e),
            })?;
        Self::open(pool, target, options).await
    }

    /// A store on an existing pool; applies migrations unless
    /// `options.migrate` is off.
    ///
    /// # Errors
    /// When migrations fail.
    pub async fn with_pool(pool: PgPool, options: StoreOptions) -> Result<Self> {
        let target = Arc::new(Target::single((*pool.connect_options()).clone()));
        Self::open(pool, target, options).await
    }

    async fn open(pool: PgPool, target: Arc<Target>, options: StoreOptions) -> Result<Self> {
        options.check()?;
        if options.migrate {
            migrate(&pool).await?;
        }
        let stop = CancellationToken::new();
        if target.watched() {
            tokio::spawn(target.clone().watch(pool.clone(), stop.clone()));
        }
        let wake = Arc::new(Notify::new());
        let dialect = PgDialect {
            announcer: Announcer::start(&pool, wake.clone(), target.subscribe()),
            target,
            wake,
            pool,
            _watch: stop.drop_guard(),
        };
        Ok(PgStore {
            engine: Arc::new(Engine::new(dialect, options)),
        })
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.engine.dialect().pool
    }
}

/// What every session of the store is set up with: statement and lock
/// timeouts, the end of sessions left idle in a transaction, and TCP
/// keepalives probed by the database (so a vanished client's session ends
/// and releases its locks).
fn session_settings(options: &StoreOptions) -> Vec<(&'static str, String)> {
    let ms = |d: std::time::Duration| d.as_millis().max(1).to_string();
    let mut settings = Vec::new();
    if let Some(limit) = options.statement_timeout {
        settings.push(("statement_timeout", ms(limit)));
    }
    if let Some(limit) = options.lock_timeout {
        settings.push(("lock_timeout", ms(limit)));
    }
    if let Some(limit) = options.idle_in_transaction_timeout {
        settings.push(("idle_in_transaction_session_timeout", ms(limit)));
    }
    if let Some(idle) = options.keepalive {
        let seconds = idle.as_secs().max(1);
        settings.push(("tcp_keepalives_idle", seconds.to_string()));
        settings.push(("tcp_keepalives_interval", (seconds / 6).max(1).to_string()));
        settings.push(("tcp_keepalives_count", "6".to_string()));
    }
    settings
}

/// Applies the PostgreSQL migrations to `pool`'s database.
///
/// # Errors
/// [`Error::Unavailable`] when the database cannot be reached, otherwise
/// [`Error::Internal`].
pub async fn migrate(pool: &PgPool) -> Result<()> {
    MIGRATOR.run(pool).await.map_err(|e| match e {
        sqlx::migrate::MigrateError::Execute(e) => db_error(e),
        e => Error::internal(e),
    })
}

/// PostgreSQL's SQL and locking.
pub(crate) struct PgDialect {
    pool: PgPool,
    /// This process's change feed, woken after every write it commits.
    wake: Arc<Notify>,
    /// Tells the other servers after every write this one commits.
    announcer: Announcer,
    /// The server in use, with health checks' own connection to it.
    target: Arc<Target>,
    /// Stops the task that keeps the pool on a server that will do.
    _watch: DropGuard,
}

impl PgDialect {
    /// A connection from the pool; how long it took is reported.
    async fn conn(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>> {
        let started = std::time::Instant::now();
        let conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| pool_error(&self.pool, e))?;
        metrics::histogram!("rsvp_pool_wait_seconds").record(started.elapsed().as_secs_f64());
        Ok(conn)
    }

    /// Maps a write's failure: a writer that bypassed the resource lock, or
    /// a concurrent first use of a request id, lost a race that a retry
    /// reads back; anything else is what it is.
    fn write_error(&self, e: sqlx::Error) -> Error {
        match crate::db_error::sqlstate(&e).as_deref() {
            Some(EXCLUSION_VIOLATION)
            | Some(UNIQUE_VIOLATION)
            | Some(DEADLOCK_DETECTED)
            | Some(CHECK_VIOLATION) => Error::Aborted {
                reason: "lost a race with a concurrent write".into(),
                source: Box::new(e),
            },
            _ => pool_error(&self.pool, e),
        }
    }
}

/// A reservation row with the digest of the request that made it.
#[derive(Debug, sqlx::FromRow)]
struct PgKeyedRow {
    request_fingerprint: Option<i64>,
    #[sqlx(flatten)]
    reservation: PgReservationRow,
}

const RESOURCE_SELECT: &str = "SELECT id, capacity, spec, created_at, updated_at, deleted_at, \
     version FROM rsvp.resources WHERE id = $1";

/// A resource row.
#[derive(Debug, sqlx::FromRow)]
struct PgResourceRow {
    id: String,
    capacity: i32,
    spec: Vec<u8>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    deleted_at: Option<DateTime<Utc>>,
    version: i64,
}

impl PgResourceRow {
    fn into_resource(self) -> Result<Resource> {
        decode_resource(
            &self.id,
            self.capacity.into(),
            &self.spec,
            (self.created_at, self.updated_at, self.deleted_at),
            self.version,
        )
    }
}

/// A resource asked about by Availability: the resource (null columns:
/// never registered) and the pieces where units are in use.
#[derive(sqlx::FromRow)]
struct PgUsageRow {
    id: String,
    capacity: Option<i32>,
    spec: Option<Vec<u8>>,
    created_at: Option<DateTime<Utc>>,
    updated_at: Option<DateTime<Utc>>,
    deleted_at: Option<DateTime<Utc>>,
    version: Option<i64>,
    starts: Option<Vec<DateTime<Utc>>>,
    ends: Option<Vec<DateTime<Utc>>>,
    used: Option<Vec<i64>>,
    held: Option<Vec<i64>>,
}

impl PgUsageRow {
    fn into_usage(self) -> Result<ResourceUsage> {
        let resource = match (self.capacity, self.spec, self.created_at, self.updated_at) {
            (Some(capacity), Some(spec), Some(created_at), Some(updated_at)) => {
                Some(decode_resource(
                    &self.id,
                    capacity.into(),
                    &spec,
                    (created_at, updated_at, self.deleted_at),
                    self.version.unwrap_or(0),
                )?)
            }
            _ => None,
        };
        let (starts, ends) = (
            self.starts.unwrap_or_default(),
            self.ends.unwrap_or_default(),
        );
        let (used, held) = (self.used.unwrap_or_default(), self.held.unwrap_or_default());
        let usage = starts
            .into_iter()
            .zip(ends)
            .zip(used.into_iter().zip(held))
            .map(|((start, end), (used, held))| abi::Usage {
                start,
                end,
                used: u64::try_from(used).unwrap_or(0),
                held: u64::try_from(held).unwrap_or(0),
            })
            .collect();
        Ok(ResourceUsage { resource, usage })
    }
}

/// Takes a resource's lock and reads it.
async fn lock_resource(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    id: &ResourceId,
) -> Result<Resource> {
    sqlx::query("SELECT pg_advisory_xact_lock(rsvp.lock_key($1))")
        .bind(id.as_str())
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    let row: Option<PgResourceRow> = sqlx::query_as(
        "SELECT id, capacity, spec, created_at, updated_at, deleted_at, version \
         FROM rsvp.resources WHERE id = $1 FOR UPDATE",
    )
    .bind(id.as_str())
    .fetch_optional(&mut **tx)
    .await
    .map_err(db_error)?;
    row.ok_or_else(|| Error::ResourceNotFound(id.clone()))?
        .into_resource()
}

/// Gives the confirmed reservations of a resource that are not checked in,
/// not yet released and not yet ended the release time of its rule
/// `auto_release_after` (`None`: never released), as of a change of the
/// rule at `now`.
async fn apply_release_rule(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    id: &ResourceId,
    after: Option<chrono::TimeDelta>,
    now: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "UPDATE rsvp.reservations r \
         SET expires_at = lower(r.timespan) + $2 * interval '1 microsecond', \
             updated_at = $3, version = r.version + 1 \
         WHERE r.resource_id = $1 AND r.status = 'confirmed' AND r.checked_in_at IS NULL \
           AND upper(r.timespan) > $3 AND (r.expires_at IS NULL OR r.expires_at > $3) \
           AND r.expires_at IS DISTINCT FROM lower(r.timespan) + $2 * interval '1 microsecond'",
    )
    .bind(id.as_str())
    .bind(after.map(|d| d.num_microseconds().unwrap_or(i64::MAX)))
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    Ok(())
}

/// Marks a resource's overdue holds expired.
async fn settle_resource(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    id: &ResourceId,
    now: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "UPDATE rsvp.reservations r SET status = CASE WHEN r.status = 'pending' \
         THEN 'expired' ELSE 'no_show' END::rsvp.reservation_status, updated_at = $2, \
         version = r.version + 1 WHERE r.resource_id = $1 \
         AND r.status IN ('pending', 'confirmed') AND r.expires_at <= $2",
    )
    .bind(id.as_str())
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    Ok(())
}

/// The first stretch where live reservations hold more than `capacity`
/// units, and how many they hold there.
async fn over_capacity(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    id: &ResourceId,
    capacity: u32,
) -> Result<Option<(DateTime<Utc>, DateTime<Utc>, i64)>> {
    // Every live row of the resource, whether it is stored as a row of one
    // unit or of several (a cut to one unit finds rows of several: the
    // rows change kind only once the cut is made).
    sqlx::query_as(
        "WITH live AS ( \
             SELECT r.occupied AS o, \
                    CASE WHEN r.quantity = 0 THEN $2 ELSE r.quantity END AS q \
             FROM rsvp.reservations r \
             WHERE r.resource_id = $1 AND r.status IN ('pending', 'confirmed', 'blocked') \
         ), steps AS ( \
             SELECT t, sum(d) AS d FROM ( \
                 SELECT lower(o) AS t, q AS d FROM live \
                 UNION ALL SELECT upper(o), -q FROM live \
             ) e GROUP BY t \
         ), profile AS ( \
             SELECT t, lead(t) OVER (ORDER BY t) AS next_t, \
                    (sum(d) OVER (ORDER BY t))::bigint AS used \
             FROM steps \
         ) \
         SELECT t, next_t, used FROM profile \
         WHERE next_t IS NOT NULL AND used > $2 ORDER BY t LIMIT 1",
    )
    .bind(id.as_str())
    .bind(i32::try_from(capacity).unwrap_or(i32::MAX))
    .fetch_optional(&mut **tx)
    .await
    .map_err(db_error)
}

/// The rows of one item of a write: what happened to it, and its rows.
fn outcome_of(rows: Vec<PgWriteRow>) -> Result<(String, u64, Vec<PgWriteRow>)> {
    let first = rows
        .first()
        .ok_or_else(|| Error::internal("a write returned no row for an item"))?;
    let (outcome, total) = (
        first.outcome.clone(),
        u64::try_from(first.total).unwrap_or(0),
    );
    Ok((outcome, total, rows))
}

/// A refusal: its header row (the capacity and where it is full), then
/// the reservations in the way. Without a header row (one unit, all of
/// what is in the way listed) each reservation carries the part of the
/// span it fills, and those merged are the full stretches.
fn blockers(rows: Vec<PgWriteRow>, total: u64) -> Blockers {
    let mut out = Blockers {
        total,
        ..Blockers::default()
    };
    let mut header = None;
    let mut parts = Vec::new();
    for row in rows {
        let capacity = row.capacity.map_or(1, |c| c.max(1) as u32);
        match row.reservation() {
            Some(r) => {
                out.total = u64::try_from(row.total).unwrap_or(0);
                out.capacity = capacity;
                parts.extend(row.full());
                out.rows.push(r);
            }
            None => {
                out.capacity = capacity;
                header = Some(row.full());
            }
        }
    }
    out.full = header.unwrap_or_else(|| merged(parts));
    out
}

/// Stretches of time sorted and merged where they meet or overlap.
fn merged(mut parts: Vec<(DateTime<Utc>, DateTime<Utc>)>) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    parts.sort();
    let mut out: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::with_capacity(parts.len());
    for (start, end) in parts {
        match out.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out
}

/// The reservation a row of a write must carry.
fn carried(row: &PgWriteRow) -> Result<StoredReservation> {
    row.reservation()
        .ok_or_else(|| Error::internal("a write returned an incomplete reservation"))
}

/// A duration the database reported in seconds.
fn seconds(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or_default()
}

/// What became of one booking of a combined call, from its rows.
fn booked_of(rows: Vec<PgWriteRow>, booking: &BookingPlacement) -> Result<Booked> {
    if rows.is_empty() {
        return Err(Error::internal("rsvp.book returned no row"));
    }
    if rows.iter().all(|r| r.outcome == "existing") {
        let fingerprint = rows[0].request_fingerprint;
        let parts = rows.iter().map(carried).collect::<Result<Vec<_>>>()?;
        return Ok(Booked::Existing { parts, fingerprint });
    }
    Ok(Booked::of(
        placed_of(rows, booking.parts.len())?,
        booking.dry,
    ))
}

/// The one row of a written item.
fn single(rows: Vec<PgWriteRow>) -> Result<PgWriteRow> {
    rows.into_iter()
        .next()
        .ok_or_else(|| Error::internal("a write returned no row for an item"))
}

#[async_trait]
impl Dialect for PgDialect {
    type Changes = PgChanges;

    fn sql(&self) -> &'static Sql {
        &SQL
    }

    fn write_lanes(&self) -> usize {
        WRITE_LANES
    }

    fn booking_lanes(&self) -> usize {
        // As many as the pool has connections: a booking's own work (three
        // or more checked rows) outweighs its commit, whose WAL flush
        // group commit already shares among concurrent transactions, so
        // bookings combine only once every connection is writing one.
        self.pool.options().get_max_connections() as usize
    }

    fn pool_size(&self) -> (usize, usize, usize) {
        (
            self.pool.size() as usize,
            self.pool.num_idle(),
            self.pool.options().get_max_connections() as usize,
        )
    }

    async fn place(
        &self,
        batch: &[Placement],
        time: &WriteTime,
        limit: u32,
    ) -> Result<PlaceOutcome> {
        let rows: Vec<PgWriteRow> = sqlx::query_as(
            "SELECT * FROM rsvp.place($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
             $14, $15, $16, $17, $18, $19)",
        )
        .bind(batch.iter().map(|p| p.id.uuid()).collect::<Vec<_>>())
        .bind(batch.iter().map(|p| p.user_id.as_str()).collect::<Vec<_>>())
        .bind(
            batch
                .iter()
                .map(|p| p.resource_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            batch
                .iter()
                .map(|p| range(p.timespan.start(), p.timespan.end()))
                .collect::<Vec<_>>(),
        )
        .bind(batch.iter().map(|p| p.status.as_str()).collect::<Vec<_>>())
        .bind(batch.iter().map(|p| p.note.as_str()).collect::<Vec<_>>())
        .bind(batch.iter().map(|p| p.hold).collect::<Vec<_>>())
        .bind(
            batch
                .iter()
                .map(|p| p.request.as_ref().map(|(key, _)| key.as_str()))
                .collect::<Vec<_>>(),
        )
        .bind(
            batch
                .iter()
                .map(|p| p.request.as_ref().map(|(_, digest)| *digest))
                .collect::<Vec<_>>(),
        )
        .bind(
            batch
                .iter()
                .map(|p| i32::try_from(p.quantity).unwrap_or(i32::MAX))
                .collect::<Vec<_>>(),
        )
        .bind(
            batch
                .iter()
                .map(|p| micros(p.buffers.0))
                .collect::<Vec<_>>(),
        )
        .bind(
            batch
                .iter()
                .map(|p| micros(p.buffers.1))
                .collect::<Vec<_>>(),
        )
        .bind(batch.iter().map(|p| p.resource_version).collect::<Vec<_>>())
        .bind(batch.iter().map(|p| p.dry).collect::<Vec<_>>())
        .bind(time.fixed())
        .bind(i32::try_from(limit).unwrap_or(i32::MAX))
        .bind(None::<Uuid>)
        .bind(batch.iter().map(|p| p.release_at).collect::<Vec<_>>())
        .bind(batch.iter().map(|p| p.accept_until).collect::<Vec<_>>())
        .fetch_all(&mut *self.conn().await?)
        .await
        .map_err(|e| self.write_error(e))?;

        let (at, lock_wait) = match rows.first() {
            Some(row) => (row.at, seconds(row.waited)),
            None if batch.is_empty() => (time.now(), Duration::ZERO),
            None => return Err(Error::internal("rsvp.place returned no row")),
        };
        let placed = placed_of(rows, batch.len())?;
        if placed.iter().any(|p| matches!(p, Placed::Created(_))) {
            self.announcer.committed();
        }
        Ok(PlaceOutcome {
            at,
            placed,
            lock_wait,
        })
    }

    async fn revise(
        &self,
        revision: &Revision,
        time: &WriteTime,
        limit: u32,
    ) -> Result<ReviseOutcome> {
        let rows = revise_on(&mut *self.conn().await?, revision, time, limit)
            .await
            .map_err(|e| self.write_error(e))?;
        let Some(first) = rows.first() else {
            return Ok(ReviseOutcome {
                at: time.now(),
                revised: Revised::Missing,
                lock_wait: Duration::ZERO,
            });
        };
        let (at, lock_wait) = (first.at, seconds(first.waited));
        let revised = revised_of(rows)?;
        if matches!(revised, Revised::Done(_)) {
            self.announcer.committed();
        }
        Ok(ReviseOutcome {
            at,
            revised,
            lock_wait,
        })
    }

    async fn book(
        &self,
        batch: &[BookingPlacement],
        time: &WriteTime,
        limit: u32,
    ) -> Result<BookOutcome> {
        let parts = || batch.iter().flat_map(|b| &b.parts);
        let rows: Vec<PgBookRow> = sqlx::query_as(
            "SELECT b.booking, (b.r).* FROM rsvp.books($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
             $11, $12, $13, $14, $15, $16, $17, $18, $19, $20) b",
        )
        .bind(batch.iter().map(|b| b.id.uuid()).collect::<Vec<_>>())
        .bind(batch.iter().map(|b| b.user_id.as_str()).collect::<Vec<_>>())
        .bind(
            batch
                .iter()
                .map(|b| b.request.as_ref().map(|(key, _)| key.as_str()))
                .collect::<Vec<_>>(),
        )
        .bind(
            batch
                .iter()
                .map(|b| b.request.as_ref().map(|(_, digest)| *digest))
                .collect::<Vec<_>>(),
        )
        .bind(batch.iter().map(|b| b.dry).collect::<Vec<_>>())
        .bind(
            batch
                .iter()
                .map(|b| i32::try_from(b.parts.len()).unwrap_or(i32::MAX))
                .collect::<Vec<_>>(),
        )
        .bind(parts().map(|p| p.id.uuid()).collect::<Vec<_>>())
        .bind(parts().map(|p| p.resource_id.as_str()).collect::<Vec<_>>())
        .bind(
            parts()
                .map(|p| range(p.timespan.start(), p.timespan.end()))
                .collect::<Vec<_>>(),
        )
        .bind(parts().map(|p| p.status.as_str()).collect::<Vec<_>>())
        .bind(parts().map(|p| p.note.as_str()).collect::<Vec<_>>())
        .bind(parts().map(|p| p.hold).collect::<Vec<_>>())
        .bind(
            parts()
                .map(|p| i32::try_from(p.quantity).unwrap_or(i32::MAX))
                .collect::<Vec<_>>(),
        )
        .bind(parts().map(|p| micros(p.buffers.0)).collect::<Vec<_>>())
        .bind(parts().map(|p| micros(p.buffers.1)).collect::<Vec<_>>())
        .bind(parts().map(|p| p.resource_version).collect::<Vec<_>>())
        .bind(parts().map(|p| p.release_at).collect::<Vec<_>>())
        .bind(time.fixed())
        .bind(i32::try_from(limit).unwrap_or(i32::MAX))
        .bind(parts().map(|p| p.accept_until).collect::<Vec<_>>())
        .fetch_all(&mut *self.conn().await?)
        .await
        .map_err(|e| self.write_error(e))?;
        let (at, lock_wait) = rows
            .first()
            .map(|r| (r.row.at, seconds(r.row.waited)))
            .ok_or_else(|| Error::internal("rsvp.books returned no row"))?;
        let mut of_booking: Vec<Vec<PgWriteRow>> = batch.iter().map(|_| Vec::new()).collect();
        for r in rows {
            let rows = usize::try_from(r.booking)
                .ok()
                .and_then(|b| b.checked_sub(1))
                .and_then(|b| of_booking.get_mut(b))
                .ok_or_else(|| Error::internal("rsvp.books answered for an unknown booking"))?;
            rows.push(r.row);
        }
        let booked = of_booking
            .into_iter()
            .zip(batch)
            .map(|(rows, booking)| booked_of(rows, booking))
            .collect::<Result<Vec<_>>>()?;
        if booked.iter().any(Booked::wrote) {
            self.announcer.committed();
        }
        Ok(BookOutcome {
            at,
            booked,
            lock_wait,
        })
    }

    async fn booking(&self, id: BookingId) -> Result<Option<StoredBooking>> {
        let mut conn = self.conn().await?;
        let head: Option<(Uuid, String, DateTime<Utc>)> =
            sqlx::query_as("SELECT id, user_id, created_at FROM rsvp.bookings WHERE id = $1")
                .bind(id.uuid())
                .fetch_optional(&mut *conn)
                .await
                .map_err(|e| pool_error(&self.pool, e))?;
        let Some((id, user_id, created_at)) = head else {
            return Ok(None);
        };
        let parts: Vec<PgReservationRow> = sqlx::query_as(concat!(
            "SELECT ",
            reservation_columns!(),
            " FROM rsvp.reservations WHERE booking_id = $1 ORDER BY booking_part"
        ))
        .bind(id)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| pool_error(&self.pool, e))?;
        Ok(Some(StoredBooking {
            id,
            user_id,
            created_at,
            parts: parts.into_iter().map(Into::into).collect(),
        }))
    }

    async fn booking_by_request(
        &self,
        user: &UserId,
        key: &RequestId,
    ) -> Result<Option<(StoredBooking, Option<i64>)>> {
        let head: Option<(Uuid, Option<i64>)> = sqlx::query_as(
            "SELECT id, request_fingerprint FROM rsvp.bookings \
             WHERE user_id = $1 AND request_id = $2",
        )
        .bind(user.as_str())
        .bind(key.as_str())
        .fetch_optional(&mut *self.conn().await?)
        .await
        .map_err(|e| pool_error(&self.pool, e))?;
        let Some((id, fingerprint)) = head else {
            return Ok(None);
        };
        Ok(self
            .booking(BookingId::from(id))
            .await?
            .map(|booking| (booking, fingerprint)))
    }

    async fn revise_all(
        &self,
        revisions: &[Revision],
        time: &WriteTime,
    ) -> Result<(DateTime<Utc>, Vec<Revised>)> {
        let mut tx = self.pool.begin().await.map_err(|e| self.write_error(e))?;
        sqlx::query("SELECT rsvp.lock_resources_of($1)")
            .bind(revisions.iter().map(|r| r.id.uuid()).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.write_error(e))?;
        let mut revised = Vec::with_capacity(revisions.len());
        let mut at = time.now();
        // Row locks in one order, whatever order the parts are in.
        let mut order: Vec<usize> = (0..revisions.len()).collect();
        order.sort_by_key(|&i| revisions[i].id);
        let mut outcomes: Vec<Option<Revised>> = (0..revisions.len()).map(|_| None).collect();
        for i in order {
            let rows = revise_on(&mut tx, &revisions[i], time, 0)
                .await
                .map_err(|e| self.write_error(e))?;
            if let Some(first) = rows.first() {
                at = first.at;
            }
            outcomes[i] = Some(revised_of(rows)?);
        }
        revised.extend(outcomes.into_iter().map(|o| o.unwrap_or(Revised::Missing)));
        if revised.iter().all(|r| matches!(r, Revised::Done(_))) {
            tx.commit().await.map_err(|e| self.write_error(e))?;
            self.announcer.committed();
        } else {
            tx.rollback().await.map_err(|e| self.write_error(e))?;
        }
        Ok((at, revised))
    }

    async fn read(&self, id: ReservationId) -> Result<Option<StoredReservation>> {
        let row: Option<PgReservationRow> = sqlx::query_as(concat!(
            "SELECT ",
            reservation_columns!(),
            " FROM rsvp.reservations WHERE id = $1"
        ))
        .bind(id.uuid())
        .fetch_optional(&mut *self.conn().await?)
        .await
        .map_err(|e| pool_error(&self.pool, e))?;
        Ok(row.map(Into::into))
    }

    async fn by_request(
        &self,
        user: &UserId,
        key: &RequestId,
    ) -> Result<Option<(StoredReservation, Option<i64>)>> {
        let row: Option<PgKeyedRow> = sqlx::query_as(concat!(
            "SELECT ",
            reservation_columns!(),
            ", request_fingerprint FROM rsvp.reservations WHERE user_id = $1 AND request_id = $2"
        ))
        .bind(user.as_str())
        .bind(key.as_str())
        .fetch_optional(&mut *self.conn().await?)
        .await
        .map_err(|e| pool_error(&self.pool, e))?;
        Ok(row.map(|r| (r.reservation.into(), r.request_fingerprint)))
    }

    async fn resource(&self, id: &ResourceId) -> Result<Option<Resource>> {
        let row: Option<PgResourceRow> = sqlx::query_as(RESOURCE_SELECT)
            .bind(id.as_str())
            .fetch_optional(&mut *self.conn().await?)
            .await
            .map_err(|e| pool_error(&self.pool, e))?;
        row.map(PgResourceRow::into_resource).transpose()
    }

    async fn create_resource(&self, spec: &ResourceSpec, now: DateTime<Utc>) -> Result<Resource> {
        let insert = sqlx::query_as(
            "INSERT INTO rsvp.resources \
                 (id, capacity, spec, created_at, updated_at, deleted_at, version) \
             VALUES ($1, $2, $3, $4, $4, NULL, 1) ON CONFLICT (id) DO NOTHING \
             RETURNING id, capacity, spec, created_at, updated_at, deleted_at, version",
        )
        .bind(spec.id.as_str())
        .bind(i32::try_from(spec.capacity).unwrap_or(i32::MAX))
        .bind(encode_spec(spec))
        .bind(now);
        let Some(release) = spec.policy.auto_release_after else {
            let row: Option<PgResourceRow> = insert
                .fetch_optional(&mut *self.conn().await?)
                .await
                .map_err(|e| self.write_error(e))?;
            return row
                .ok_or_else(|| Error::ResourceExists(spec.id.clone()))?
                .into_resource();
        };
        // Reservations confirmed before it was registered are released by
        // its rule too, under its lock.
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await.map_err(|e| pool_error(&self.pool, e))?;
        sqlx::query("SELECT pg_advisory_xact_lock(rsvp.lock_key($1))")
            .bind(spec.id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.write_error(e))?;
        let row: Option<PgResourceRow> = insert
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| self.write_error(e))?;
        let row = row.ok_or_else(|| Error::ResourceExists(spec.id.clone()))?;
        apply_release_rule(&mut tx, &spec.id, Some(release), now).await?;
        tx.commit().await.map_err(|e| self.write_error(e))?;
        self.announcer.committed();
        row.into_resource()
    }

    async fn update_resource(
        &self,
        id: &ResourceId,
        change: &(dyn for<'r> Fn(&'r Resource) -> Result<ResourceSpec> + Send + Sync),
        now: DateTime<Utc>,
    ) -> Result<Resource> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await.map_err(|e| pool_error(&self.pool, e))?;
        let current = lock_resource(&mut tx, id).await?;
        let next = change(&current)?;
        if next.capacity < current.spec.capacity {
            settle_resource(&mut tx, id, now).await?;
            if let Some(when) = over_capacity(&mut tx, id, next.capacity).await? {
                return Err(capacity_in_use(id, next.capacity, when));
            }
        }
        let release = next.policy.auto_release_after;
        if release != current.spec.policy.auto_release_after {
            apply_release_rule(&mut tx, id, release, now).await?;
        }
        let row: PgResourceRow = sqlx::query_as(
            "UPDATE rsvp.resources SET capacity = $2, spec = $3, updated_at = $4, \
             version = version + 1 WHERE id = $1 \
             RETURNING id, capacity, spec, created_at, updated_at, deleted_at, version",
        )
        .bind(id.as_str())
        .bind(i32::try_from(next.capacity).unwrap_or(i32::MAX))
        .bind(encode_spec(&next))
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| self.write_error(e))?;
        tx.commit().await.map_err(|e| pool_error(&self.pool, e))?;
        self.announcer.committed();
        row.into_resource()
    }

    async fn delete_resource(
        &self,
        id: &ResourceId,
        force: bool,
        now: DateTime<Utc>,
    ) -> Result<Resource> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await.map_err(|e| pool_error(&self.pool, e))?;
        let current = lock_resource(&mut tx, id).await?;
        if current.deleted_at.is_some() {
            return Ok(current);
        }
        settle_resource(&mut tx, id, now).await?;
        let live: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM rsvp.reservations WHERE resource_id = $1 \
             AND status IN ('pending', 'confirmed', 'blocked') AND upper(timespan) > $2",
        )
        .bind(id.as_str())
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| pool_error(&self.pool, e))?;
        if live > 0 && !force {
            return Err(Error::CapacityInUse(
                format!(
                    "resource {id} has {live} live reservation(s) that have not ended; cancel \
                     them or delete with force"
                )
                .into(),
            ));
        }
        sqlx::query(
            "UPDATE rsvp.reservations r SET status = 'cancelled', expires_at = NULL, \
             updated_at = $2, version = r.version + 1 WHERE r.resource_id = $1 \
             AND r.status IN ('pending', 'confirmed', 'blocked') AND upper(r.timespan) > $2",
        )
        .bind(id.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.write_error(e))?;
        let row: PgResourceRow = sqlx::query_as(
            "UPDATE rsvp.resources SET deleted_at = $2, updated_at = $2, version = version + 1 \
             WHERE id = $1 \
             RETURNING id, capacity, spec, created_at, updated_at, deleted_at, version",
        )
        .bind(id.as_str())
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| self.write_error(e))?;
        tx.commit().await.map_err(|e| pool_error(&self.pool, e))?;
        self.announcer.committed();
        row.into_resource()
    }

    async fn usage(
        &self,
        asks: &[(ResourceId, Timespan)],
        now: DateTime<Utc>,
    ) -> Result<Vec<ResourceUsage>> {
        let rows: Vec<PgUsageRow> = sqlx::query_as(
            "SELECT resource_id AS id, capacity, spec, created_at, updated_at, deleted_at, \
             version, starts, ends, used, held FROM rsvp.availability($1, $2, $3)",
        )
        .bind(asks.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>())
        .bind(
            asks.iter()
                .map(|(_, span)| range(span.start(), span.end()))
                .collect::<Vec<_>>(),
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.into_iter().map(PgUsageRow::into_usage).collect()
    }

    async fn list_resources(
        &self,
        after: Option<&ResourceId>,
        limit: i64,
        show_deleted: bool,
    ) -> Result<Vec<Resource>> {
        let rows: Vec<PgResourceRow> = sqlx::query_as(
            "SELECT id, capacity, spec, created_at, updated_at, deleted_at, version \
             FROM rsvp.resources WHERE ($1::text IS NULL OR id > $1) \
             AND ($2 OR deleted_at IS NULL) ORDER BY id LIMIT $3",
        )
        .bind(after.map(ResourceId::as_str))
        .bind(show_deleted)
        .bind(limit)
        .fetch_all(&mut *self.conn().await?)
        .await
        .map_err(|e| pool_error(&self.pool, e))?;
        rows.into_iter().map(PgResourceRow::into_resource).collect()
    }

    async fn select(&self, statement: Statement) -> Result<Vec<StoredReservation>> {
        let rows: Vec<PgReservationRow> = render(statement)
            .build_query_as()
            .fetch_all(&mut *self.conn().await?)
            .await
            .map_err(|e| pool_error(&self.pool, e))?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn expire_overdue(&self, now: DateTime<Utc>, limit: i64) -> Result<u64> {
        // The resources' locks first, then the rows, as every writer takes
        // them (`rsvp.expire_overdue`); rows locked by a writer are skipped:
        // that writer settles them.
        let done: i64 = sqlx::query_scalar("SELECT rsvp.expire_overdue($1, $2)")
            .bind(now)
            .bind(i32::try_from(limit).unwrap_or(i32::MAX))
            .fetch_one(&self.pool)
            .await
            .map_err(|e| pool_error(&self.pool, e))?;
        if done > 0 {
            self.announcer.committed();
        }
        Ok(u64::try_from(done).unwrap_or(0))
    }

    async fn purge_changes(&self, before: DateTime<Utc>, limit: i64) -> Result<u64> {
        // What retention removes, it records: a listener resuming below it
        // is told that it missed changes.
        let done: i64 = sqlx::query_scalar(
            "WITH gone AS (DELETE FROM rsvp.reservation_changes WHERE id IN \
                 (SELECT id FROM rsvp.reservation_changes WHERE changed_at < $1 \
                  ORDER BY id LIMIT $2) RETURNING id), \
             marked AS (UPDATE rsvp.feed_state \
                 SET purged_through = greatest(purged_through, (SELECT max(id) FROM gone)) \
                 WHERE EXISTS (SELECT 1 FROM gone)) \
             SELECT count(*) FROM gone",
        )
        .bind(before)
        .bind(limit)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| pool_error(&self.pool, e))?;
        Ok(u64::try_from(done).unwrap_or(0))
    }

    async fn ping(&self) -> Result<()> {
        self.target.check().await
    }

    async fn insert_token(&self, token: &ApiToken) -> Result<()> {
        sqlx::query(
            "INSERT INTO rsvp.api_tokens \
                 (id, principal, role, digest, created_at, expires_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL)",
        )
        .bind(token.id.uuid())
        .bind(token.principal.as_str())
        .bind(token.role.as_str())
        .bind(token.digest.as_bytes().as_slice())
        .bind(token.created_at)
        .bind(token.expires_at)
        .execute(&mut *self.conn().await?)
        .await
        .map_err(|e| self.write_error(e))?;
        Ok(())
    }

    async fn tokens(&self) -> Result<Vec<ApiToken>> {
        let rows: Vec<StoredToken> = sqlx::query_as(
            "SELECT id, principal, role, digest, created_at, expires_at, revoked_at \
             FROM rsvp.api_tokens ORDER BY created_at, id",
        )
        .fetch_all(&mut *self.conn().await?)
        .await
        .map_err(|e| pool_error(&self.pool, e))?;
        rows.into_iter().map(StoredToken::into_token).collect()
    }

    async fn revoke_token(&self, id: TokenId, now: DateTime<Utc>) -> Result<Option<ApiToken>> {
        let row: Option<StoredToken> = sqlx::query_as(
            "UPDATE rsvp.api_tokens SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1 \
             RETURNING id, principal, role, digest, created_at, expires_at, revoked_at",
        )
        .bind(id.uuid())
        .bind(now)
        .fetch_optional(&mut *self.conn().await?)
        .await
        .map_err(|e| self.write_error(e))?;
        row.map(StoredToken::into_token).transpose()
    }

    async fn feed_source(&self) -> Result<FeedSource<PgChanges>> {
        let stop = CancellationToken::new();
        changes::spawn_listener(
            &self.pool,
            self.wake.clone(),
            self.target.subscribe(),
            stop.clone(),
        )
        .await?;
        Ok(FeedSource {
            changes: Arc::new(PgChanges {
                pool: self.pool.clone(),
            }),
            wake: self.wake.clone(),
            guard: Some(stop.drop_guard()),
        })
    }
}

/// Runs rsvp.revise_versioned for `revision` on `conn`.
async fn revise_on(
    conn: &mut sqlx::PgConnection,
    revision: &Revision,
    time: &WriteTime,
    limit: u32,
) -> std::result::Result<Vec<PgWriteRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM rsvp.revise_versioned($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
         $13, $14, $15)",
    )
    .bind(revision.id.uuid())
    .bind(revision.version)
    .bind(revision.seen_lapsed)
    .bind(revision.check)
    .bind(revision.status.stored().as_str())
    .bind(revision.note.as_str())
    .bind(range(revision.timespan.start(), revision.timespan.end()))
    .bind(revision.expires_at)
    .bind(i32::try_from(revision.quantity).unwrap_or(i32::MAX))
    .bind(revision.resource_version)
    .bind(time.fixed())
    .bind(i32::try_from(limit).unwrap_or(i32::MAX))
    .bind(revision.checked_in_at)
    .bind(revision.checked_out_at)
    .bind(revision.accept_until)
    .fetch_all(conn)
    .await
}

/// What rows of rsvp.revise_versioned say became of a revision (none: no such row).
fn revised_of(rows: Vec<PgWriteRow>) -> Result<Revised> {
    if rows.is_empty() {
        return Ok(Revised::Missing);
    }
    let (outcome, total, rows) = outcome_of(rows)?;
    Ok(match outcome.as_str() {
        "revised" => Revised::Done(carried(&single(rows)?)?),
        "stale" => Revised::Stale(carried(&single(rows)?)?),
        "conflict" => Revised::Blocked(blockers(rows, total)),
        other => {
            return Err(Error::internal(format!(
                "rsvp.revise_versioned returned outcome {other:?}"
            )));
        }
    })
}

/// The outcomes of `n` items from the rows of rsvp.place or rsvp.book.
fn placed_of(rows: Vec<PgWriteRow>, n: usize) -> Result<Vec<Placed>> {
    let mut items: Vec<Vec<PgWriteRow>> = (0..n).map(|_| Vec::new()).collect();
    for row in rows {
        let item = usize::try_from(row.item - 1)
            .ok()
            .and_then(|i| items.get_mut(i))
            .ok_or_else(|| Error::internal(format!("rsvp.place returned item {}", row.item)))?;
        item.push(row);
    }
    items
        .into_iter()
        .map(|rows| {
            let (outcome, total, rows) = outcome_of(rows)?;
            match outcome.as_str() {
                "created" => Ok(Placed::Created(carried(&single(rows)?)?)),
                "existing" => {
                    let row = single(rows)?;
                    Ok(Placed::Existing {
                        fingerprint: row.request_fingerprint,
                        stored: carried(&row)?,
                    })
                }
                "conflict" => Ok(Placed::Blocked(blockers(rows, total))),
                "stale" => Ok(Placed::Stale),
                "late" => Ok(Placed::Late),
                "fits" => Ok(Placed::Fits),
                other => Err(Error::internal(format!(
                    "rsvp.place returned outcome {other:?}"
                ))),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeZone, Utc};

    use super::merged;

    fn at(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 1, h, 0, 0)
            .single()
            .unwrap_or_default()
    }

    #[test]
    fn parts_in_any_order_merge_where_they_meet_or_overlap() {
        let parts = vec![
            (at(9), at(10)),
            (at(1), at(2)),
            (at(2), at(4)),
            (at(3), at(5)),
        ];
        assert_eq!(merged(parts), vec![(at(1), at(5)), (at(9), at(10))]);
        assert!(merged(Vec::new()).is_empty());
    }
}
