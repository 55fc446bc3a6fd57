//! The SQLite store: the embedded default. One file of state, nothing to
//! install (SQLite is compiled in), the same behaviour as PostgreSQL: its
//! dialect is SQL and locking only; every rule is the engine's.
//!
//! - Writes are serialized: an in-process queue, then `BEGIN IMMEDIATE`
//!   (which also serializes writers in other processes). The time is read
//!   once the write holds the lock; what is in the way and the write happen
//!   in that one transaction.
//! - Live intervals of a resource never overlap, so what is in the way is
//!   found by reading the live index backwards from the new end, stopping
//!   at the first interval that ends before the new start. Triggers refuse
//!   any write that would break the rule, whoever makes it.
//! - WAL mode, `synchronous = FULL`: an acknowledged write survives a crash.
//! - Changes go to `reservation_changes` (by trigger); each commit wakes the
//!   change feed in this process.

mod changes;
mod rows;

use std::{
    path::Path,
    str::FromStr,
    sync::Arc,
    time::{Duration, Instant},
};

use abi::{
    ApiToken, BookingId, Error, RequestId, ReservationId, Resource, ResourceId, ResourceSpec,
    Result, Timespan, TokenId, UserId,
};
use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use futures::TryStreamExt;
use sqlx::{
    Sqlite, SqliteConnection, SqlitePool, Transaction,
    migrate::Migrator,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};
use tokio::sync::{Mutex, MutexGuard, Notify};
use uuid::Uuid;

use self::{
    changes::SqliteChanges,
    rows::{
        SQL, SqliteKeyedRow, SqliteReservationRow, SqliteTokenRow, micros, render,
        reservation_columns,
    },
};
use crate::{
    StoreOptions,
    db_error::db_error,
    dialect::{
        Blockers, BookOutcome, Booked, BookingPlacement, Dialect, FeedSource, PlaceOutcome, Placed,
        Placement, ResourceUsage, ReviseOutcome, Revised, Revision, Sql, StoredBooking, WriteTime,
    },
    engine::Engine,
    probe::Probe,
    row::StoredReservation,
    statement::Statement,
    store::{capacity_in_use, decode_resource, encode_spec},
};

/// The SQLite schema's migrations, applied when a store opens.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations/sqlite");

/// A reservation store in one SQLite file. Cheap to clone; clones share one
/// pool, one write queue and one change feed.
#[derive(Clone)]
pub struct SqliteStore {
    engine: Arc<Engine<SqliteDialect>>,
}

super::rsvp_store!(SqliteStore);

impl SqliteStore {
    /// Opens (creating if needed, with its directory) the database file at
    /// `path` and, unless `options.migrate` is off, applies migrations.
    ///
    /// # Errors
    /// When the file cannot be created or opened, or migrations fail.
    pub async fn open(path: impl AsRef<Path>, options: StoreOptions) -> Result<Self> {
        let path = path.as_ref();
        create_private(path)?;
        Self::with_connect_options(SqliteConnectOptions::new().filename(path), options, false).await
    }

    /// Opens the database a `sqlite:` URL names (`sqlite:path/to/rsvp.db`,
    /// or `sqlite::memory:`, as [`SqliteStore::in_memory`]).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] on `database_url` for a malformed URL;
    /// otherwise as [`SqliteStore::open`].
    pub async fn connect(url: &str, options: StoreOptions) -> Result<Self> {
        if !url.starts_with("sqlite:") {
            return Err(Error::invalid("database_url", "must start with sqlite:"));
        }
        let connect = SqliteConnectOptions::from_str(url)
            .map_err(|_| Error::invalid("database_url", "not a valid SQLite URL"))?;
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        if !in_memory && !url.contains("mode=ro") {
            create_private(connect.get_filename())?;
        }
        Self::with_connect_options(connect, options, in_memory).await
    }

    /// A store in memory, gone when the store is dropped: for tests and
    /// programs that need no file. One connection serves it, kept open for
    /// as long as the store lives (an in-memory database lives and dies
    /// with its connection).
    ///
    /// # Errors
    /// When SQLite cannot open it.
    pub async fn in_memory(options: StoreOptions) -> Result<Self> {
        Self::connect("sqlite::memory:", options).await
    }

    async fn with_connect_options(
        connect: SqliteConnectOptions,
        options: StoreOptions,
        in_memory: bool,
    ) -> Result<Self> {
        options.check()?;
        let connect = connect
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(options.acquire_timeout)
            .foreign_keys(true);
        let probe = Probe::new(connect.clone());
        // Processes opening one new file at once would race to switch it to
        // WAL and to apply the migrations (sqlx's SQLite migrator takes no
        // lock): one at a time, by a lock file beside it.
        let _opening = match options.migrate && !in_memory {
            true => Some(open_lock(connect.get_filename()).await?),
            false => None,
        };
        let pool = if in_memory {
            // One connection is the database: never more, never closed.
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            SqlitePoolOptions::new().max_connections(options.max_connections)
        };
        let pool = pool
            .acquire_timeout(options.acquire_timeout)
            // A ping before every call would be one more hand-off to the
            // connection's thread and back; a file is not cut off unseen as
            // a network connection is, and a call on a broken connection
            // fails with its own error.
            .test_before_acquire(false)
            // A transaction SQLite rolled back by itself (a full disk, an
            // I/O error) leaves the driver counting one still open, and
            // every later BEGIN on that connection would be refused: such a
            // connection is closed, not reused. (A rollback still on its way
            // to the connection's thread is let through first.)
            .after_release(|connection, _| {
                Box::pin(async move {
                    use sqlx::Connection;
                    if connection.is_in_transaction() {
                        connection.ping().await?;
                    }
                    Ok(!connection.is_in_transaction())
                })
            })
            .connect_with(connect)
            .await
            .map_err(db_error)?;
        if options.migrate {
            MIGRATOR.run(&pool).await.map_err(|e| match e {
                sqlx::migrate::MigrateError::Execute(e) => db_error(e),
                e => Error::internal(e),
            })?;
        }
        let dialect = SqliteDialect {
            probe,
            pool,
            writer: Mutex::new(()),
            wake: Arc::new(Notify::new()),
        };
        Ok(SqliteStore {
            engine: Arc::new(Engine::new(dialect, options)),
        })
    }

    /// The connection pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.engine.dialect().pool
    }
}

/// Creates the database file at `path` (and its directory) if missing,
/// readable by its owner only: it holds every note and the digests of the
/// API tokens. SQLite gives its `-wal` and `-shm` files the database
/// file's mode. Existing files and directories keep theirs.
fn create_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| {
                Error::internal(format!("cannot create directory {}: {e}", dir.display()))
            })?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::internal(format!(
            "cannot create {}: {e}",
            path.display()
        ))),
    }
}

/// An exclusive lock on `<database>.lock`, held until dropped. (Not a lock
/// on the database file itself: closing another descriptor of that file
/// would drop SQLite's own locks on it.)
async fn open_lock(database: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut path = database.as_os_str().to_owned();
    path.push(".lock");
    let path = std::path::PathBuf::from(path);
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)?;
        file.lock()?;
        Ok::<_, std::io::Error>(file)
    })
    .await
    .map_err(Error::internal)?
    .map_err(|e| Error::internal(format!("cannot lock {}.lock: {e}", database.display())))
}

/// SQLite's SQL and locking.
pub(crate) struct SqliteDialect {
    pool: SqlitePool,
    /// Writers queue here, in order, instead of spinning on SQLite's lock.
    writer: Mutex<()>,
    /// Notified after every committed write.
    wake: Arc<Notify>,
    /// Health checks' own connection.
    probe: Probe<SqliteConnection>,
}

/// A write transaction, holding this process's write turn.
struct Write<'a> {
    tx: Transaction<'static, Sqlite>,
    /// How long it waited for its turn and the file's lock.
    waited: Duration,
    wake: &'a Notify,
    _turn: MutexGuard<'a, ()>,
}

impl Write<'_> {
    async fn commit(self) -> Result<()> {
        self.tx.commit().await.map_err(db_error)?;
        self.wake.notify_one();
        Ok(())
    }
}

/// What lies in a span of a resource: the live reservations in the way
/// (the first ones, and how many) when the write does not fit, and the
/// overdue holds to settle before writing there.
struct InTheWay {
    blockers: Blockers,
    lapsed: Vec<String>,
}

impl InTheWay {
    fn refused(&self) -> bool {
        self.blockers.total > 0 || !self.blockers.full.is_empty()
    }
}

/// What a conflict check reads of a live reservation.
#[derive(Debug, sqlx::FromRow)]
struct SqliteSpan {
    id: String,
    start_us: i64,
    occ_start_us: i64,
    occ_end_us: i64,
    quantity: i64,
    status: String,
    expires_us: Option<i64>,
}

/// The occupied span of `span` with `buffers`.
fn occupied(
    span: &Timespan,
    (before, after): (TimeDelta, TimeDelta),
) -> (DateTime<Utc>, DateTime<Utc>) {
    (span.start() - before, span.end() + after)
}

impl SqliteDialect {
    /// Runs one statement in a write transaction of its own; returns the
    /// rows it changed.
    async fn write_statement(
        &self,
        statement: sqlx::query::Query<'_, Sqlite, sqlx::sqlite::SqliteArguments>,
    ) -> Result<u64> {
        let mut w = self.begin_write().await?;
        let done = statement
            .execute(&mut *w.tx)
            .await
            .map_err(db_error)?
            .rows_affected();
        w.commit().await?;
        Ok(done)
    }

    async fn begin_write(&self) -> Result<Write<'_>> {
        let started = Instant::now();
        let turn = self.writer.lock().await;
        let tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error)?;
        Ok(Write {
            tx,
            waited: started.elapsed(),
            wake: &self.wake,
            _turn: turn,
        })
    }
}

/// Makes one booking of a combined call, all or nothing: in a savepoint
/// that is released if every part was placed, and rolled back if any was
/// refused or the call only checks.
async fn book_one(
    tx: &mut Transaction<'static, Sqlite>,
    booking: &BookingPlacement,
    at: DateTime<Utc>,
    limit: u32,
    capacities: &Capacities,
) -> Result<Booked> {
    if let Some((key, _)) = &booking.request
        && let Some(existing) = booking_by_request(tx, &booking.user_id, key).await?
    {
        return Ok(Booked::Existing {
            fingerprint: existing.1,
            parts: existing.0.parts,
        });
    }
    sqlx::query("SAVEPOINT booking")
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    if !booking.dry {
        sqlx::query(
            "INSERT INTO bookings (id, user_id, created_us, request_id, request_fingerprint) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(booking.id.to_string())
        .bind(booking.user_id.as_str())
        .bind(micros(at))
        .bind(booking.request.as_ref().map(|(key, _)| key.as_str()))
        .bind(booking.request.as_ref().map(|(_, digest)| *digest))
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    }
    // Every part is placed, so that each counts against the next; a
    // refusal, or a dry run, undoes them all.
    let mut placed = Vec::with_capacity(booking.parts.len());
    for (i, p) in booking.parts.iter().enumerate() {
        let p = Placement {
            request: None,
            dry: false,
            ..p.clone()
        };
        let known = capacities.of(p.resource_id.as_str());
        placed.push(place_one(tx, &p, at, limit, Some((booking.id, i)), known).await?);
    }
    let booked = Booked::of(placed, booking.dry);
    let end = if booked.wrote() {
        "RELEASE booking"
    } else {
        "ROLLBACK TO booking; RELEASE booking"
    };
    sqlx::raw_sql(end)
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    Ok(booked)
}

/// The capacity and version of each resource named, as the store has them
/// (1 and 0 when not registered), in one statement: a write reads them once
/// for every placement of its transaction, which changes no resource.
async fn capacities_of(
    tx: &mut Transaction<'static, Sqlite>,
    mut names: Vec<&str>,
) -> Result<Capacities> {
    names.sort_unstable();
    names.dedup();
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT id, capacity, version FROM resources \
         WHERE id IN (SELECT value FROM json_each(?))",
    )
    .bind(serde_json::Value::from(names).to_string())
    .fetch_all(&mut **tx)
    .await
    .map_err(db_error)?;
    Ok(Capacities(
        rows.into_iter()
            .map(|(id, capacity, version)| {
                (id, (u32::try_from(capacity).unwrap_or(1).max(1), version))
            })
            .collect(),
    ))
}

/// Capacities and versions of the resources a write places on.
struct Capacities(std::collections::HashMap<String, (u32, i64)>);

impl Capacities {
    /// A resource's capacity and version (1 and 0 when not registered).
    fn of(&self, resource: &str) -> (u32, i64) {
        self.0.get(resource).copied().unwrap_or((1, 0))
    }
}

/// A resource's capacity and version as the store has it (1 and 0 when
/// not registered).
async fn capacity_of(tx: &mut Transaction<'static, Sqlite>, resource: &str) -> Result<(u32, i64)> {
    Ok(capacities_of(tx, vec![resource]).await?.of(resource))
}

/// Reads what lies in the occupied span `[start, end)` of `resource` at
/// `now`, other than `except`, and whether `quantity` more units fit
/// there (of `capacity`).
///
/// On a resource of one unit, live occupied spans never overlap one
/// another, so reading them backwards from the span's end, the first one
/// that ends by its start is the last that needs looking at. On a larger
/// one, every live span that ends after the start is read.
#[allow(clippy::too_many_arguments)]
async fn in_the_way(
    tx: &mut Transaction<'static, Sqlite>,
    resource: &str,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
    except: Option<ReservationId>,
    now: DateTime<Utc>,
    limit: u32,
    capacity: u32,
    quantity: u32,
) -> Result<InTheWay> {
    let except = except.map(|id| id.to_string());
    let mut found = InTheWay {
        blockers: Blockers {
            capacity,
            ..Blockers::default()
        },
        lapsed: Vec::new(),
    };
    let exclusive = capacity == 1;
    if !exclusive
        && except.is_none()
        && fits_by_pieces(tx, resource, (start, end), now, capacity, quantity).await?
    {
        return Ok(found);
    }
    let sql = if exclusive {
        "SELECT id, start_us, occ_start_us, occ_end_us, quantity, status, expires_us \
         FROM reservations WHERE resource_id = ? \
         AND status IN ('pending', 'confirmed', 'blocked') AND occ_start_us < ? \
         ORDER BY occ_start_us DESC"
    } else {
        "SELECT id, start_us, occ_start_us, occ_end_us, quantity, status, expires_us \
         FROM reservations WHERE resource_id = ? \
         AND status IN ('pending', 'confirmed', 'blocked') AND occ_start_us < ? \
         AND occ_end_us > ? ORDER BY occ_end_us"
    };
    let query = sqlx::query_as::<_, SqliteSpan>(sql)
        .bind(resource)
        .bind(micros(end));
    let query = if exclusive {
        query
    } else {
        query.bind(micros(start))
    };
    let mut rows = query.fetch(&mut **tx);
    // Live reservations in the way: their occupied spans and units; only
    // a refusal reads them whole.
    let now_us = micros(now);
    let mut live: Vec<(i64, i64, SqliteSpan)> = Vec::new();
    while let Some(row) = rows.try_next().await.map_err(db_error)? {
        if row.occ_end_us <= micros(start) {
            if exclusive {
                break;
            }
            continue;
        }
        if except.as_deref() == Some(row.id.as_str()) {
            continue;
        }
        // An overdue hold, or a no-show.
        if (row.status == "pending" || row.status == "confirmed")
            && row.expires_us.is_some_and(|at| at <= now_us)
        {
            found.lapsed.push(row.id);
        } else {
            live.push((
                row.occ_start_us.max(micros(start)),
                row.occ_end_us.min(micros(end)),
                row,
            ));
        }
    }
    drop(rows);
    let units = |q: u32| if q == 0 { capacity } else { q };
    let wanted = units(quantity);
    let pieces = usage(
        live.iter()
            .map(|(s, e, r)| (*s, *e, units(u32::try_from(r.quantity).unwrap_or(u32::MAX)))),
        (micros(start), micros(end)),
    );
    let fits = wanted <= capacity
        && pieces
            .iter()
            .all(|(_, _, used)| used + u64::from(wanted) <= u64::from(capacity));
    if fits {
        return Ok(found);
    }
    let mut full: Vec<(i64, i64)> = Vec::new();
    for (s, e, used) in pieces {
        if used + u64::from(wanted) <= u64::from(capacity) {
            continue;
        }
        match full.last_mut() {
            Some(last) if last.1 == s => last.1 = e,
            _ => full.push((s, e)),
        }
    }
    found.blockers.full = full
        .into_iter()
        .take(abi::Conflict::MAX_LISTED)
        .filter_map(|(s, e)| {
            Some((
                DateTime::from_timestamp_micros(s)?,
                DateTime::from_timestamp_micros(e)?,
            ))
        })
        .collect();
    found.blockers.total = live.len() as u64;
    let mut first: Vec<(i64, String)> = live
        .into_iter()
        .map(|(_, _, r)| (r.start_us, r.id))
        .collect();
    first.sort();
    first.truncate(limit as usize);
    found.blockers.rows = if first.is_empty() {
        Vec::new()
    } else {
        let mut select = sqlx::QueryBuilder::<Sqlite>::new(concat!(
            "SELECT ",
            reservation_columns!(),
            " FROM reservations WHERE id IN ("
        ));
        let mut ids = select.separated(", ");
        for (_, id) in &first {
            ids.push_bind(id.as_str());
        }
        select.push(") ORDER BY start_us, id");
        select
            .build_query_as::<SqliteReservationRow>()
            .fetch_all(&mut **tx)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(SqliteReservationRow::stored)
            .collect::<Result<Vec<_>>>()?
    };
    // Refused, even with nothing in the way: more units than there are.
    if found.blockers.total == 0 && found.blockers.full.is_empty() {
        found.blockers.full = vec![(start, end)];
    }
    Ok(found)
}

/// Whether `quantity` units (0: every unit) fit over `[start, end)` of a
/// resource of several units, read from its usage pieces — exact when no
/// overdue hold lies there (they count until settled). `false` when they
/// do not fit, or an overdue hold makes the pieces inexact: the caller then
/// reads the reservations themselves.
async fn fits_by_pieces(
    tx: &mut Transaction<'static, Sqlite>,
    resource: &str,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
    now: DateTime<Utc>,
    capacity: u32,
    quantity: u32,
) -> Result<bool> {
    // Overdue holds, then no-shows, each through its own index.
    let overdue: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM reservations INDEXED BY reservations_pending_expiry \
         WHERE status = 'pending' AND expires_us <= ? AND resource_id = ? \
         AND occ_start_us < ? AND occ_end_us > ? \
         UNION ALL \
         SELECT 1 FROM reservations INDEXED BY reservations_release \
         WHERE status = 'confirmed' AND expires_us IS NOT NULL AND expires_us <= ? \
         AND resource_id = ? AND occ_start_us < ? AND occ_end_us > ? LIMIT 1",
    )
    .bind(micros(now))
    .bind(resource)
    .bind(micros(end))
    .bind(micros(start))
    .bind(micros(now))
    .bind(resource)
    .bind(micros(end))
    .bind(micros(start))
    .fetch_optional(&mut **tx)
    .await
    .map_err(db_error)?;
    if overdue.is_some() {
        return Ok(false);
    }
    let (used, closed): (i64, i64) = sqlx::query_as(
        "SELECT coalesce(max(used), 0), coalesce(max(closed), 0) FROM usage_pieces \
         WHERE resource_id = ? AND end_us > ? AND start_us < ?",
    )
    .bind(resource)
    .bind(micros(start))
    .bind(micros(end))
    .fetch_one(&mut **tx)
    .await
    .map_err(db_error)?;
    Ok(closed == 0
        && if quantity == 0 {
            used == 0
        } else {
            used + i64::from(quantity) <= i64::from(capacity)
        })
}

/// `[from, to)` cut into pieces of constant usage by `spans` (start, end,
/// units), each with the units held there.
fn usage(
    spans: impl Iterator<Item = (i64, i64, u32)>,
    (from, to): (i64, i64),
) -> Vec<(i64, i64, u64)> {
    let mut steps: std::collections::BTreeMap<i64, i64> =
        [(from, 0), (to, 0)].into_iter().collect();
    for (s, e, q) in spans {
        *steps.entry(s).or_default() += i64::from(q);
        *steps.entry(e).or_default() -= i64::from(q);
    }
    let mut pieces = Vec::new();
    let mut used = 0i64;
    let mut points = steps.into_iter().peekable();
    while let Some((t, d)) = points.next() {
        used += d;
        if let Some((next, _)) = points.peek()
            && t >= from
            && *next <= to
        {
            pieces.push((t, *next, used.max(0) as u64));
        }
    }
    pieces
}

/// The columns of a resource row, in [`SqliteResourceRow`]'s names.
macro_rules! resource_columns {
    () => {
        "id, capacity, spec, created_us, updated_us, deleted_us, version"
    };
}

/// A resource row.
#[derive(Debug, sqlx::FromRow)]
struct SqliteResourceRow {
    id: String,
    capacity: i64,
    spec: Vec<u8>,
    created_us: i64,
    updated_us: i64,
    deleted_us: Option<i64>,
    version: i64,
}

impl SqliteResourceRow {
    fn into_resource(self) -> Result<Resource> {
        let time = |us: i64| {
            DateTime::from_timestamp_micros(us)
                .ok_or_else(|| Error::internal(format!("stored time {us} is out of range")))
        };
        decode_resource(
            &self.id,
            self.capacity,
            &self.spec,
            (
                time(self.created_us)?,
                time(self.updated_us)?,
                self.deleted_us.map(time).transpose()?,
            ),
            self.version,
        )
    }
}

/// A row of the availability read, about the `n`th resource asked: either
/// its row (it is registered) or one of its live reservations over the span
/// asked.
#[derive(Debug, sqlx::FromRow)]
struct SqliteUsageRow {
    n: i64,
    id: Option<String>,
    capacity: Option<i64>,
    spec: Option<Vec<u8>>,
    created_us: Option<i64>,
    updated_us: Option<i64>,
    deleted_us: Option<i64>,
    version: Option<i64>,
    occ_start_us: Option<i64>,
    occ_end_us: Option<i64>,
    quantity: Option<i64>,
    status: Option<String>,
    expires_us: Option<i64>,
}

impl SqliteUsageRow {
    /// The resource's row, when it is registered.
    fn resource(&self) -> Result<Option<Resource>> {
        let (
            Some(id),
            Some(capacity),
            Some(spec),
            Some(created_us),
            Some(updated_us),
            Some(version),
        ) = (
            &self.id,
            self.capacity,
            &self.spec,
            self.created_us,
            self.updated_us,
            self.version,
        )
        else {
            return Ok(None);
        };
        SqliteResourceRow {
            id: id.clone(),
            capacity,
            spec: spec.clone(),
            created_us,
            updated_us,
            deleted_us: self.deleted_us,
            version,
        }
        .into_resource()
        .map(Some)
    }
}

/// Reads a resource inside a write (which holds the only write lock).
async fn read_resource(tx: &mut Transaction<'static, Sqlite>, id: &ResourceId) -> Result<Resource> {
    let row: Option<SqliteResourceRow> = sqlx::query_as(concat!(
        "SELECT ",
        resource_columns!(),
        " FROM resources WHERE id = ?"
    ))
    .bind(id.as_str())
    .fetch_optional(&mut **tx)
    .await
    .map_err(db_error)?;
    row.ok_or_else(|| Error::ResourceNotFound(id.clone()))?
        .into_resource()
}

/// Marks a resource's overdue holds expired, and its no-shows so.
async fn settle_resource(
    tx: &mut Transaction<'static, Sqlite>,
    id: &ResourceId,
    now: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "UPDATE reservations SET status = CASE WHEN status = 'pending' THEN 'expired' \
         ELSE 'no_show' END, updated_us = ?, version = version + 1 \
         WHERE resource_id = ? AND status IN ('pending', 'confirmed') AND expires_us <= ?",
    )
    .bind(micros(now))
    .bind(id.as_str())
    .bind(micros(now))
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    Ok(())
}

/// Gives the confirmed reservations of a resource that are not checked in,
/// not yet released and not yet ended the release time of its rule
/// `auto_release_after` (`None`: never released), as of a change of the
/// rule at `now`.
async fn apply_release_rule(
    tx: &mut Transaction<'static, Sqlite>,
    id: &ResourceId,
    after: Option<TimeDelta>,
    now: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "UPDATE reservations SET expires_us = start_us + ?, updated_us = ?, \
         version = version + 1 \
         WHERE resource_id = ? AND status = 'confirmed' AND checked_in_us IS NULL \
           AND end_us > ? AND (expires_us IS NULL OR expires_us > ?) \
           AND expires_us IS NOT start_us + ?",
    )
    .bind(after.map(|d| d.num_microseconds().unwrap_or(i64::MAX)))
    .bind(micros(now))
    .bind(id.as_str())
    .bind(micros(now))
    .bind(micros(now))
    .bind(after.map(|d| d.num_microseconds().unwrap_or(i64::MAX)))
    .execute(&mut **tx)
    .await
    .map_err(write_error)?;
    Ok(())
}

/// The first stretch where live reservations hold more than `capacity`
/// units, and how many they hold there.
async fn over_capacity(
    tx: &mut Transaction<'static, Sqlite>,
    id: &ResourceId,
    capacity: u32,
) -> Result<Option<(DateTime<Utc>, DateTime<Utc>, i64)>> {
    let rows: Vec<(i64, i64, i64)> = sqlx::query_as(
        "SELECT occ_start_us, occ_end_us, quantity FROM reservations WHERE resource_id = ? \
         AND status IN ('pending', 'confirmed', 'blocked')",
    )
    .bind(id.as_str())
    .fetch_all(&mut **tx)
    .await
    .map_err(db_error)?;
    let units = |q: i64| {
        if q == 0 {
            capacity
        } else {
            u32::try_from(q).unwrap_or(u32::MAX)
        }
    };
    let (Some(from), Some(to)) = (
        rows.iter().map(|r| r.0).min(),
        rows.iter().map(|r| r.1).max(),
    ) else {
        return Ok(None);
    };
    let over = usage(rows.iter().map(|r| (r.0, r.1, units(r.2))), (from, to))
        .into_iter()
        .find(|(_, _, used)| *used > u64::from(capacity));
    Ok(over.and_then(|(s, e, used)| {
        Some((
            DateTime::from_timestamp_micros(s)?,
            DateTime::from_timestamp_micros(e)?,
            used as i64,
        ))
    }))
}

/// Marks `ids` (overdue holds, no-shows) expired or no-show.
async fn settle(
    tx: &mut Transaction<'static, Sqlite>,
    ids: &[String],
    now: DateTime<Utc>,
) -> Result<()> {
    for id in ids {
        sqlx::query(
            "UPDATE reservations SET status = CASE WHEN status = 'pending' THEN 'expired' \
             ELSE 'no_show' END, updated_us = ?, version = version + 1 \
             WHERE id = ? AND status IN ('pending', 'confirmed')",
        )
        .bind(micros(now))
        .bind(id)
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    }
    Ok(())
}

/// Places one reservation inside a write transaction.
/// What a placement asks of its resource: two placements that ask the same,
/// with nothing written between them, get the same refusal.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Ask<'a> {
    resource: &'a str,
    span: (DateTime<Utc>, DateTime<Utc>),
    quantity: u32,
    version: i64,
}

impl<'a> Ask<'a> {
    fn of(p: &'a Placement) -> Self {
        Ask {
            resource: p.resource_id.as_str(),
            span: occupied(&p.timespan, p.buffers),
            quantity: p.quantity,
            version: p.resource_version,
        }
    }
}

/// What the first call made with a retried `(user, request id)`, if any.
async fn retried(tx: &mut Transaction<'static, Sqlite>, p: &Placement) -> Result<Option<Placed>> {
    if let Some((key, _)) = &p.request {
        let first: Option<SqliteKeyedRow> = sqlx::query_as(concat!(
            "SELECT ",
            reservation_columns!(),
            ", request_fingerprint FROM reservations WHERE user_id = ? AND request_id = ?"
        ))
        .bind(p.user_id.as_str())
        .bind(key.as_str())
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_error)?;
        if let Some(first) = first {
            return Ok(Some(Placed::Existing {
                fingerprint: first.request_fingerprint,
                stored: first.reservation.stored()?,
            }));
        }
    }
    Ok(None)
}

/// Whether a write at `now` is past the placement's notice.
fn late(p: &Placement, now: DateTime<Utc>) -> bool {
    p.accept_until.is_some_and(|until| now > until)
}

/// Places one new reservation inside a write transaction (not a retry).
async fn place_one(
    tx: &mut Transaction<'static, Sqlite>,
    p: &Placement,
    now: DateTime<Utc>,
    limit: u32,
    booking: Option<(BookingId, usize)>,
    (capacity, version): (u32, i64),
) -> Result<Placed> {
    if version != p.resource_version {
        return Ok(Placed::Stale);
    }
    if late(p, now) {
        return Ok(Placed::Late);
    }
    let found = in_the_way(
        tx,
        p.resource_id.as_str(),
        occupied(&p.timespan, p.buffers),
        None,
        now,
        limit,
        capacity,
        p.quantity,
    )
    .await?;
    if found.refused() {
        return Ok(Placed::Blocked(found.blockers));
    }
    if p.dry {
        return Ok(Placed::Fits);
    }
    settle(tx, &found.lapsed, now).await?;
    let expires_at = match p.status {
        abi::ReservationStatus::Pending => p.hold.and_then(|h| now.checked_add_signed(h)),
        abi::ReservationStatus::Confirmed => p.release_at,
        _ => None,
    };
    let row: SqliteReservationRow = sqlx::query_as(concat!(
        "INSERT INTO reservations (id, user_id, resource_id, status, start_us, end_us, note, \
         created_us, updated_us, expires_us, request_id, request_fingerprint, quantity, \
         buffer_before_us, buffer_after_us, booking_id, booking_part) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING ",
        reservation_columns!()
    ))
    .bind(p.id.to_string())
    .bind(p.user_id.as_str())
    .bind(p.resource_id.as_str())
    .bind(p.status.as_str())
    .bind(micros(p.timespan.start()))
    .bind(micros(p.timespan.end()))
    .bind(p.note.as_str())
    .bind(micros(now))
    .bind(micros(now))
    .bind(expires_at.map(micros))
    .bind(p.request.as_ref().map(|(key, _)| key.as_str()))
    .bind(p.request.as_ref().map(|(_, digest)| *digest))
    .bind(i64::from(p.quantity))
    .bind(crate::store::micros(p.buffers.0))
    .bind(crate::store::micros(p.buffers.1))
    .bind(booking.map(|(b, _)| b.to_string()))
    .bind(booking.map(|(_, part)| i64::try_from(part).unwrap_or(i64::MAX)))
    .fetch_one(&mut **tx)
    .await
    .map_err(write_error)?;
    Ok(Placed::Created(row.stored()?))
}

/// Applies `revision` inside a write transaction, at `at`, if the row is
/// still as it was planned from; nothing is written otherwise.
async fn revise_in(
    tx: &mut Transaction<'static, Sqlite>,
    revision: &Revision,
    at: DateTime<Utc>,
    limit: u32,
) -> Result<Revised> {
    let row: Option<SqliteReservationRow> = sqlx::query_as(concat!(
        "SELECT ",
        reservation_columns!(),
        " FROM reservations WHERE id = ?"
    ))
    .bind(revision.id.to_string())
    .fetch_optional(&mut **tx)
    .await
    .map_err(db_error)?;
    let Some(row) = row else {
        return Ok(Revised::Missing);
    };
    let buffers: (i64, i64) =
        sqlx::query_as("SELECT buffer_before_us, buffer_after_us FROM reservations WHERE id = ?")
            .bind(revision.id.to_string())
            .fetch_one(&mut **tx)
            .await
            .map_err(db_error)?;
    let row = row.stored()?;
    let (capacity, resource_version) = capacity_of(tx, &row.resource_id).await?;
    if row.version != revision.version
        || row.lapsed_at(at) != revision.seen_lapsed
        || revision
            .resource_version
            .is_some_and(|judged| judged != resource_version)
        || revision.accept_until.is_some_and(|until| at > until)
    {
        return Ok(Revised::Stale(row));
    }
    if revision.check {
        let found = in_the_way(
            tx,
            &row.resource_id,
            occupied(
                &revision.timespan,
                (
                    TimeDelta::microseconds(buffers.0),
                    TimeDelta::microseconds(buffers.1),
                ),
            ),
            Some(revision.id),
            at,
            limit,
            capacity,
            revision.quantity,
        )
        .await?;
        if found.refused() {
            return Ok(Revised::Blocked(found.blockers));
        }
        settle(tx, &found.lapsed, at).await?;
    }
    let row: SqliteReservationRow = sqlx::query_as(concat!(
        "UPDATE reservations SET status = ?, note = ?, start_us = ?, end_us = ?, \
             expires_us = ?, quantity = ?, updated_us = ?, checked_in_us = ?, \
             checked_out_us = ?, version = version + 1 WHERE id = ? RETURNING ",
        reservation_columns!()
    ))
    .bind(revision.status.stored().as_str())
    .bind(revision.note.as_str())
    .bind(micros(revision.timespan.start()))
    .bind(micros(revision.timespan.end()))
    .bind(revision.expires_at.map(micros))
    .bind(i64::from(revision.quantity))
    .bind(micros(at))
    .bind(revision.checked_in_at.map(micros))
    .bind(revision.checked_out_at.map(micros))
    .bind(revision.id.to_string())
    .fetch_one(&mut **tx)
    .await
    .map_err(write_error)?;
    Ok(Revised::Done(row.stored()?))
}

/// A booking and its parts, found by its id or by a user's key, with the
/// digest of the request that made it.
async fn read_booking(
    conn: &mut SqliteConnection,
    by: BookingKey<'_>,
) -> Result<Option<(StoredBooking, Option<i64>)>> {
    let head: Option<(String, String, i64, Option<i64>)> = match by {
        BookingKey::Id(id) => sqlx::query_as(
            "SELECT id, user_id, created_us, request_fingerprint FROM bookings WHERE id = ?",
        )
        .bind(id.to_string()),
        BookingKey::Request(user, key) => sqlx::query_as(
            "SELECT id, user_id, created_us, request_fingerprint FROM bookings \
             WHERE user_id = ? AND request_id = ?",
        )
        .bind(user.as_str())
        .bind(key.as_str()),
    }
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_error)?;
    let Some((id, user_id, created_us, fingerprint)) = head else {
        return Ok(None);
    };
    let parts: Vec<SqliteReservationRow> = sqlx::query_as(concat!(
        "SELECT ",
        reservation_columns!(),
        " FROM reservations WHERE booking_id = ? ORDER BY booking_part"
    ))
    .bind(&id)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(Some((
        StoredBooking {
            id: Uuid::parse_str(&id)
                .map_err(|_| Error::internal(format!("stored booking id {id:?} is not a UUID")))?,
            user_id,
            created_at: DateTime::from_timestamp_micros(created_us)
                .ok_or_else(|| Error::internal("stored booking time is out of range"))?,
            parts: parts
                .into_iter()
                .map(SqliteReservationRow::stored)
                .collect::<Result<_>>()?,
        },
        fingerprint,
    )))
}

/// The booking a user made under an idempotency key, if any.
async fn booking_by_request(
    tx: &mut Transaction<'static, Sqlite>,
    user: &UserId,
    key: &RequestId,
) -> Result<Option<(StoredBooking, Option<i64>)>> {
    read_booking(tx, BookingKey::Request(user, key)).await
}

/// How a booking is looked up.
enum BookingKey<'a> {
    Id(BookingId),
    Request(&'a UserId, &'a RequestId),
}

/// A write refused by the no-overlap triggers lost a race with a writer
/// outside this store; the retry reads back what won.
fn write_error(e: sqlx::Error) -> Error {
    let overlap = matches!(&e, sqlx::Error::Database(db)
        if db.message().contains("reservations_no_overlap")
            || db.message().contains("reservations_within_capacity"));
    if overlap {
        Error::Aborted {
            reason: "lost a race with a concurrent write".into(),
            source: Box::new(e),
        }
    } else {
        db_error(e)
    }
}

#[async_trait]
impl Dialect for SqliteDialect {
    type Changes = SqliteChanges;

    fn sql(&self) -> &'static Sql {
        &SQL
    }

    fn write_lanes(&self) -> usize {
        // Writes are serialized anyway: one lane carries every queued
        // reserve in each transaction.
        1
    }

    fn booking_lanes(&self) -> usize {
        1
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
        let mut w = self.begin_write().await?;
        let at = time.now();
        let lock_wait = w.waited;
        let names = batch.iter().map(|p| p.resource_id.as_str()).collect();
        let capacities = capacities_of(&mut w.tx, names).await?;
        let mut placed = Vec::with_capacity(batch.len());
        // A rush on one show: the placements that ask what the last refused
        // one asked, with nothing written since, get its refusal.
        let mut refused: Option<(Ask<'_>, Blockers)> = None;
        for p in batch {
            if let Some(first) = retried(&mut w.tx, p).await? {
                placed.push(first);
                continue;
            }
            let ask = Ask::of(p);
            let known = capacities.of(p.resource_id.as_str());
            // Only what place_one would refuse for what is in the way (not
            // stale, not late: the rules come before the capacity).
            if let Some((asked, blockers)) = &refused
                && *asked == ask
                && !late(p, at)
            {
                placed.push(Placed::Blocked(blockers.clone()));
                continue;
            }
            let outcome = place_one(&mut w.tx, p, at, limit, None, known).await?;
            refused = match &outcome {
                Placed::Blocked(blockers) => Some((ask, blockers.clone())),
                Placed::Created(_) => None,
                _ => refused,
            };
            placed.push(outcome);
        }
        w.commit().await?;
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
        let mut w = self.begin_write().await?;
        let at = time.now();
        let lock_wait = w.waited;
        let revised = revise_in(&mut w.tx, revision, at, limit).await?;
        if matches!(revised, Revised::Done(_)) {
            w.commit().await?;
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
        let mut w = self.begin_write().await?;
        let at = time.now();
        let lock_wait = w.waited;
        let mut booked = Vec::with_capacity(batch.len());
        let names = batch
            .iter()
            .flat_map(|b| &b.parts)
            .map(|p| p.resource_id.as_str())
            .collect();
        let capacities = capacities_of(&mut w.tx, names).await?;
        for booking in batch {
            booked.push(book_one(&mut w.tx, booking, at, limit, &capacities).await?);
        }
        if booked.iter().any(Booked::wrote) {
            w.commit().await?;
        }
        Ok(BookOutcome {
            at,
            booked,
            lock_wait,
        })
    }

    async fn booking(&self, id: BookingId) -> Result<Option<StoredBooking>> {
        let mut conn = self.pool.acquire().await.map_err(db_error)?;
        read_booking(&mut conn, BookingKey::Id(id))
            .await
            .map(|b| b.map(|(b, _)| b))
    }

    async fn booking_by_request(
        &self,
        user: &UserId,
        key: &RequestId,
    ) -> Result<Option<(StoredBooking, Option<i64>)>> {
        let mut conn = self.pool.acquire().await.map_err(db_error)?;
        read_booking(&mut conn, BookingKey::Request(user, key)).await
    }

    async fn revise_all(
        &self,
        revisions: &[Revision],
        time: &WriteTime,
    ) -> Result<(DateTime<Utc>, Vec<Revised>)> {
        let mut w = self.begin_write().await?;
        let at = time.now();
        let mut revised = Vec::with_capacity(revisions.len());
        for revision in revisions {
            revised.push(revise_in(&mut w.tx, revision, at, 0).await?);
        }
        if revised.iter().all(|r| matches!(r, Revised::Done(_))) {
            w.commit().await?;
        }
        Ok((at, revised))
    }

    async fn read(&self, id: ReservationId) -> Result<Option<StoredReservation>> {
        let row: Option<SqliteReservationRow> = sqlx::query_as(concat!(
            "SELECT ",
            reservation_columns!(),
            " FROM reservations WHERE id = ?"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.map(SqliteReservationRow::stored).transpose()
    }

    async fn by_request(
        &self,
        user: &UserId,
        key: &RequestId,
    ) -> Result<Option<(StoredReservation, Option<i64>)>> {
        let row: Option<SqliteKeyedRow> = sqlx::query_as(concat!(
            "SELECT ",
            reservation_columns!(),
            ", request_fingerprint FROM reservations WHERE user_id = ? AND request_id = ?"
        ))
        .bind(user.as_str())
        .bind(key.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.map(|r| Ok((r.reservation.stored()?, r.request_fingerprint)))
            .transpose()
    }

    async fn resource(&self, id: &ResourceId) -> Result<Option<Resource>> {
        let row: Option<SqliteResourceRow> = sqlx::query_as(concat!(
            "SELECT ",
            resource_columns!(),
            " FROM resources WHERE id = ?"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.map(SqliteResourceRow::into_resource).transpose()
    }

    async fn create_resource(&self, spec: &ResourceSpec, now: DateTime<Utc>) -> Result<Resource> {
        let mut w = self.begin_write().await?;
        let row: Option<SqliteResourceRow> = sqlx::query_as(concat!(
            "INSERT INTO resources (id, capacity, spec, created_us, updated_us, deleted_us, \
             version) VALUES (?, ?, ?, ?, ?, NULL, 1) ON CONFLICT (id) DO NOTHING RETURNING ",
            resource_columns!()
        ))
        .bind(spec.id.as_str())
        .bind(i64::from(spec.capacity))
        .bind(encode_spec(spec))
        .bind(micros(now))
        .bind(micros(now))
        .fetch_optional(&mut *w.tx)
        .await
        .map_err(db_error)?;
        let Some(row) = row else {
            return Err(Error::ResourceExists(spec.id.clone()));
        };
        // Reservations confirmed before it was registered are released by
        // its rule too.
        if spec.policy.auto_release_after.is_some() {
            apply_release_rule(&mut w.tx, &spec.id, spec.policy.auto_release_after, now).await?;
        }
        w.commit().await?;
        row.into_resource()
    }

    async fn update_resource(
        &self,
        id: &ResourceId,
        change: &(dyn for<'r> Fn(&'r Resource) -> Result<ResourceSpec> + Send + Sync),
        now: DateTime<Utc>,
    ) -> Result<Resource> {
        let mut w = self.begin_write().await?;
        let current = read_resource(&mut w.tx, id).await?;
        let next = change(&current)?;
        if next.capacity < current.spec.capacity {
            settle_resource(&mut w.tx, id, now).await?;
            if let Some(when) = over_capacity(&mut w.tx, id, next.capacity).await? {
                return Err(capacity_in_use(id, next.capacity, when));
            }
        }
        let release = next.policy.auto_release_after;
        if release != current.spec.policy.auto_release_after {
            apply_release_rule(&mut w.tx, id, release, now).await?;
        }
        let row: SqliteResourceRow = sqlx::query_as(concat!(
            "UPDATE resources SET capacity = ?, spec = ?, updated_us = ?, version = version + 1 \
             WHERE id = ? RETURNING ",
            resource_columns!()
        ))
        .bind(i64::from(next.capacity))
        .bind(encode_spec(&next))
        .bind(micros(now))
        .bind(id.as_str())
        .fetch_one(&mut *w.tx)
        .await
        .map_err(write_error)?;
        w.commit().await?;
        row.into_resource()
    }

    async fn delete_resource(
        &self,
        id: &ResourceId,
        force: bool,
        now: DateTime<Utc>,
    ) -> Result<Resource> {
        let mut w = self.begin_write().await?;
        let current = read_resource(&mut w.tx, id).await?;
        if current.deleted_at.is_some() {
            return Ok(current);
        }
        settle_resource(&mut w.tx, id, now).await?;
        let live: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM reservations WHERE resource_id = ? \
             AND status IN ('pending', 'confirmed', 'blocked') AND end_us > ?",
        )
        .bind(id.as_str())
        .bind(micros(now))
        .fetch_one(&mut *w.tx)
        .await
        .map_err(db_error)?;
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
            "UPDATE reservations SET status = 'cancelled', expires_us = NULL, updated_us = ?, \
             version = version + 1 WHERE resource_id = ? \
             AND status IN ('pending', 'confirmed', 'blocked') AND end_us > ?",
        )
        .bind(micros(now))
        .bind(id.as_str())
        .bind(micros(now))
        .execute(&mut *w.tx)
        .await
        .map_err(write_error)?;
        let row: SqliteResourceRow = sqlx::query_as(concat!(
            "UPDATE resources SET deleted_us = ?, updated_us = ?, version = version + 1 \
             WHERE id = ? RETURNING ",
            resource_columns!()
        ))
        .bind(micros(now))
        .bind(micros(now))
        .bind(id.as_str())
        .fetch_one(&mut *w.tx)
        .await
        .map_err(write_error)?;
        w.commit().await?;
        row.into_resource()
    }

    async fn usage(
        &self,
        asks: &[(ResourceId, Timespan)],
        now: DateTime<Utc>,
    ) -> Result<Vec<ResourceUsage>> {
        // One statement, so one snapshot of every resource asked and one
        // hand-off to the connection's thread: the row of each resource
        // asked that is registered, then each live reservation over its span,
        // each kind of row once (a resource's row, with its policy, is not
        // repeated beside each of its reservations). The asks go as one JSON
        // array, so that one prepared statement serves any number of them.
        let asks_json = serde_json::Value::Array(
            asks.iter()
                .map(|(id, span)| {
                    serde_json::json!([id.as_str(), micros(span.start()), micros(span.end())])
                })
                .collect(),
        )
        .to_string();
        let rows: Vec<SqliteUsageRow> = sqlx::query_as(
            "WITH asks(n, id, from_us, to_us) AS \
             (SELECT key, value ->> 0, value ->> 1, value ->> 2 FROM json_each(?)) \
             SELECT a.n, res.id, res.capacity, res.spec, res.created_us, res.updated_us, \
             res.deleted_us, res.version, NULL AS occ_start_us, NULL AS occ_end_us, \
             NULL AS quantity, NULL AS status, NULL AS expires_us \
             FROM asks a JOIN resources res ON res.id = a.id \
             UNION ALL \
             SELECT a.n, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
             r.occ_start_us, r.occ_end_us, r.quantity, r.status, r.expires_us \
             FROM asks a JOIN reservations r ON r.resource_id = a.id \
             AND r.status IN ('pending', 'confirmed', 'blocked') \
             AND r.occ_start_us < a.to_us AND r.occ_end_us > a.from_us",
        )
        .bind(asks_json)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let now_us = micros(now);
        let mut resources: Vec<Option<Resource>> = vec![None; asks.len()];
        let mut held: Vec<Vec<(i64, i64, i64, bool)>> = vec![Vec::new(); asks.len()];
        for row in rows {
            let n = usize::try_from(row.n)
                .ok()
                .filter(|&n| n < asks.len())
                .ok_or_else(|| Error::internal("availability read returned an unknown row"))?;
            if let Some(resource) = row.resource()? {
                resources[n] = Some(resource);
            }
            if let (Some(start), Some(end), Some(quantity), Some(status)) =
                (row.occ_start_us, row.occ_end_us, row.quantity, row.status)
            {
                // An overdue hold, or a no-show, holds nothing.
                if row.expires_us.is_some_and(|at| at <= now_us) {
                    continue;
                }
                held[n].push((start, end, quantity, status == "pending"));
            }
        }
        asks.iter()
            .zip(resources.into_iter().zip(held))
            .map(|((_, span), (resource, held))| {
                let capacity = resource.as_ref().map_or(1, |r| u64::from(r.spec.capacity));
                let (from, to) = (micros(span.start()), micros(span.end()));
                let usage = abi::Usage::sweep(held.into_iter().filter_map(
                    |(start, end, quantity, pending)| {
                        let units = match u64::try_from(quantity).unwrap_or(0) {
                            0 => capacity,
                            q => q,
                        };
                        Some((
                            DateTime::from_timestamp_micros(start.max(from))?,
                            DateTime::from_timestamp_micros(end.min(to))?,
                            units,
                            pending,
                        ))
                    },
                ));
                Ok(ResourceUsage { resource, usage })
            })
            .collect()
    }

    async fn list_resources(
        &self,
        after: Option<&ResourceId>,
        limit: i64,
        show_deleted: bool,
    ) -> Result<Vec<Resource>> {
        let rows: Vec<SqliteResourceRow> = sqlx::query_as(concat!(
            "SELECT ",
            resource_columns!(),
            " FROM resources WHERE (? IS NULL OR id > ?) AND (? OR deleted_us IS NULL) \
             ORDER BY id LIMIT ?"
        ))
        .bind(after.map(ResourceId::as_str))
        .bind(after.map(ResourceId::as_str))
        .bind(show_deleted)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.into_iter()
            .map(SqliteResourceRow::into_resource)
            .collect()
    }

    async fn select(&self, statement: Statement) -> Result<Vec<StoredReservation>> {
        let rows: Vec<SqliteReservationRow> = render(statement)
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.into_iter().map(SqliteReservationRow::stored).collect()
    }

    async fn expire_overdue(&self, now: DateTime<Utc>, limit: i64) -> Result<u64> {
        let statement = sqlx::query(
            "UPDATE reservations SET status = CASE WHEN status = 'pending' THEN 'expired' \
             ELSE 'no_show' END, updated_us = ?, version = version + 1 \
             WHERE id IN (SELECT id FROM reservations WHERE status = 'pending' \
             AND expires_us <= ? ORDER BY expires_us LIMIT ?) \
             OR id IN (SELECT id FROM reservations WHERE status = 'confirmed' \
             AND expires_us <= ? ORDER BY expires_us LIMIT ?)",
        )
        .bind(micros(now))
        .bind(micros(now))
        .bind(limit)
        .bind(micros(now))
        .bind(limit);
        self.write_statement(statement).await
    }

    async fn purge_changes(&self, before: DateTime<Utc>, limit: i64) -> Result<u64> {
        let mut w = self.begin_write().await?;
        let gone: Vec<i64> = sqlx::query_scalar(
            "DELETE FROM reservation_changes WHERE id IN \
             (SELECT id FROM reservation_changes WHERE changed_us < ? ORDER BY id LIMIT ?) \
             RETURNING id",
        )
        .bind(micros(before))
        .bind(limit)
        .fetch_all(&mut *w.tx)
        .await
        .map_err(db_error)?;
        // What retention removes, it records: a listener resuming below it
        // is told that it missed changes.
        if let Some(last) = gone.iter().max() {
            sqlx::query("UPDATE feed_state SET purged_through = max(purged_through, ?)")
                .bind(last)
                .execute(&mut *w.tx)
                .await
                .map_err(db_error)?;
        }
        w.commit().await?;
        Ok(gone.len() as u64)
    }

    async fn ping(&self) -> Result<()> {
        self.probe.check().await
    }

    async fn insert_token(&self, token: &ApiToken) -> Result<()> {
        let mut w = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO api_tokens \
                 (id, principal, role, digest, created_us, expires_us, revoked_us) \
             VALUES (?, ?, ?, ?, ?, ?, NULL)",
        )
        .bind(token.id.to_string())
        .bind(token.principal.as_str())
        .bind(token.role.as_str())
        .bind(token.digest.as_bytes().as_slice())
        .bind(micros(token.created_at))
        .bind(token.expires_at.map(micros))
        .execute(&mut *w.tx)
        .await
        .map_err(db_error)?;
        w.commit().await
    }

    async fn tokens(&self) -> Result<Vec<ApiToken>> {
        let rows: Vec<SqliteTokenRow> = sqlx::query_as(
            "SELECT id, principal, role, digest, created_us, expires_us, revoked_us \
             FROM api_tokens ORDER BY created_us, id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.into_iter().map(SqliteTokenRow::into_token).collect()
    }

    async fn revoke_token(&self, id: TokenId, now: DateTime<Utc>) -> Result<Option<ApiToken>> {
        let mut w = self.begin_write().await?;
        let row: Option<SqliteTokenRow> = sqlx::query_as(
            "UPDATE api_tokens SET revoked_us = coalesce(revoked_us, ?) WHERE id = ? \
             RETURNING id, principal, role, digest, created_us, expires_us, revoked_us",
        )
        .bind(micros(now))
        .bind(id.to_string())
        .fetch_optional(&mut *w.tx)
        .await
        .map_err(db_error)?;
        w.commit().await?;
        row.map(SqliteTokenRow::into_token).transpose()
    }

    async fn feed_source(&self) -> Result<FeedSource<SqliteChanges>> {
        Ok(FeedSource {
            changes: Arc::new(SqliteChanges {
                pool: self.pool.clone(),
            }),
            wake: self.wake.clone(),
            guard: None,
        })
    }
}
