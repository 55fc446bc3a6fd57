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

use abi::{Error, ReservationId, Result, Timespan};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use sqlx::{
    Sqlite, SqliteConnection, SqlitePool, Transaction,
    migrate::Migrator,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};
use tokio::sync::{Mutex, MutexGuard, Notify};

use self::{
    changes::SqliteChanges,
    rows::{SQL, SqliteKeyedRow, SqliteReservationRow, micros, render, reservation_columns},
};
use crate::{
    StoreOptions,
    db_error::db_error,
    dialect::{
        Blockers, Dialect, FeedSource, PlaceOutcome, Placed, Placement, ReviseOutcome, Revised,
        Revision, Sql, WriteTime,
    },
    engine::Engine,
    probe::Probe,
    row::StoredReservation,
    statement::Statement,
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
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::internal(format!("cannot create directory {}: {e}", dir.display()))
            })?;
        }
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
        let path = connect.get_filename();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !in_memory
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::internal(format!("cannot create directory {}: {e}", dir.display()))
            })?;
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
/// (the first ones, and how many), and the overdue holds to settle before
/// writing there.
struct InTheWay {
    blockers: Blockers,
    lapsed: Vec<String>,
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

/// Reads what lies in `span` of `resource` at `now`, other than `except`.
///
/// Live intervals never overlap one another, so reading them backwards from
/// `span`'s end, the first one that ends by `span`'s start is the last that
/// needs looking at.
async fn in_the_way(
    tx: &mut Transaction<'static, Sqlite>,
    resource: &str,
    span: &Timespan,
    except: Option<ReservationId>,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<InTheWay> {
    let except = except.map(|id| id.to_string());
    let mut found = InTheWay {
        blockers: Blockers {
            rows: Vec::new(),
            total: 0,
        },
        lapsed: Vec::new(),
    };
    let mut rows = sqlx::query_as::<_, SqliteReservationRow>(concat!(
        "SELECT ",
        reservation_columns!(),
        " FROM reservations WHERE resource_id = ? \
         AND status IN ('pending', 'confirmed', 'blocked') AND start_us < ? \
         ORDER BY start_us DESC"
    ))
    .bind(resource)
    .bind(micros(span.end()))
    .fetch(&mut **tx);
    let mut live = Vec::new();
    while let Some(row) = rows.try_next().await.map_err(db_error)? {
        if row.end_us <= micros(span.start()) {
            break;
        }
        if except.as_deref() == Some(row.id.as_str()) {
            continue;
        }
        let row = row.stored()?;
        if row.lapsed_at(now) {
            found.lapsed.push(row.id.to_string());
        } else {
            live.push(row);
        }
    }
    found.blockers.total = live.len() as u64;
    live.reverse(); // by start
    live.truncate(limit as usize);
    found.blockers.rows = live;
    Ok(found)
}

/// Marks `ids` (overdue holds) expired.
async fn settle(
    tx: &mut Transaction<'static, Sqlite>,
    ids: &[String],
    now: DateTime<Utc>,
) -> Result<()> {
    for id in ids {
        sqlx::query(
            "UPDATE reservations SET status = 'expired', updated_us = ?, version = version + 1 \
             WHERE id = ? AND status = 'pending'",
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
async fn place_one(
    tx: &mut Transaction<'static, Sqlite>,
    p: &Placement,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Placed> {
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
            return Ok(Placed::Existing {
                fingerprint: first.request_fingerprint,
                stored: first.reservation.stored()?,
            });
        }
    }
    let found = in_the_way(tx, p.resource_id.as_str(), &p.timespan, None, now, limit).await?;
    if found.blockers.total > 0 {
        return Ok(Placed::Blocked(found.blockers));
    }
    settle(tx, &found.lapsed, now).await?;
    let expires_at = match p.status {
        abi::ReservationStatus::Pending => p.hold.and_then(|h| now.checked_add_signed(h)),
        _ => None,
    };
    let row: SqliteReservationRow = sqlx::query_as(concat!(
        "INSERT INTO reservations (id, user_id, resource_id, status, start_us, end_us, note, \
         created_us, updated_us, expires_us, request_id, request_fingerprint) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING ",
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
    .fetch_one(&mut **tx)
    .await
    .map_err(write_error)?;
    Ok(Placed::Created(row.stored()?))
}

/// A write refused by the no-overlap triggers lost a race with a writer
/// outside this store; the retry reads back what won.
fn write_error(e: sqlx::Error) -> Error {
    let overlap =
        matches!(&e, sqlx::Error::Database(db) if db.message().contains("reservations_no_overlap"));
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
        let mut placed = Vec::with_capacity(batch.len());
        for p in batch {
            placed.push(place_one(&mut w.tx, p, at, limit).await?);
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
        let row: Option<SqliteReservationRow> = sqlx::query_as(concat!(
            "SELECT ",
            reservation_columns!(),
            " FROM reservations WHERE id = ?"
        ))
        .bind(revision.id.to_string())
        .fetch_optional(&mut *w.tx)
        .await
        .map_err(db_error)?;
        let Some(row) = row else {
            return Ok(ReviseOutcome {
                at,
                revised: Revised::Missing,
                lock_wait,
            });
        };
        let row = row.stored()?;
        if row.version != revision.version || row.lapsed_at(at) != revision.seen_lapsed {
            return Ok(ReviseOutcome {
                at,
                revised: Revised::Stale(row),
                lock_wait,
            });
        }
        if revision.reschedule {
            let found = in_the_way(
                &mut w.tx,
                &row.resource_id,
                &revision.timespan,
                Some(revision.id),
                at,
                limit,
            )
            .await?;
            if found.blockers.total > 0 {
                return Ok(ReviseOutcome {
                    at,
                    revised: Revised::Blocked(found.blockers),
                    lock_wait,
                });
            }
            settle(&mut w.tx, &found.lapsed, at).await?;
        }
        let row: SqliteReservationRow = sqlx::query_as(concat!(
            "UPDATE reservations SET status = ?, note = ?, start_us = ?, end_us = ?, \
             expires_us = ?, updated_us = ?, version = version + 1 WHERE id = ? RETURNING ",
            reservation_columns!()
        ))
        .bind(revision.status.as_str())
        .bind(revision.note.as_str())
        .bind(micros(revision.timespan.start()))
        .bind(micros(revision.timespan.end()))
        .bind(revision.expires_at.map(micros))
        .bind(micros(at))
        .bind(revision.id.to_string())
        .fetch_one(&mut *w.tx)
        .await
        .map_err(write_error)?;
        w.commit().await?;
        Ok(ReviseOutcome {
            at,
            revised: Revised::Done(row.stored()?),
            lock_wait,
        })
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
            "UPDATE reservations SET status = 'expired', updated_us = ?, version = version + 1 \
             WHERE id IN (SELECT id FROM reservations WHERE status = 'pending' \
             AND expires_us <= ? ORDER BY expires_us LIMIT ?)",
        )
        .bind(micros(now))
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
