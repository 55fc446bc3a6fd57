//! The SQLite store: the embedded default. One file of state, nothing to
//! install (SQLite is compiled in), the same behaviour as PostgreSQL.
//!
//! - Writes are serialized: an in-process queue, then `BEGIN IMMEDIATE`
//!   (which also serializes writers in other processes). The conflict check
//!   and the write happen in that one transaction.
//! - Live intervals of a resource never overlap, so the check reads the live
//!   index backwards from the new end and stops at the first interval that
//!   ends before the new start. Triggers refuse any write that would break
//!   the rule, whoever makes it.
//! - WAL mode, `synchronous = FULL`: an acknowledged write survives a crash.
//! - Changes go to `reservation_changes` (by trigger); each commit wakes the
//!   change feed in this process.

mod changes;
mod rows;
mod select;

use std::{path::Path, str::FromStr, sync::Arc};

use abi::{
    Error, ListenFilter, NewReservation, Page, Reservation, ReservationFilter, ReservationId,
    ReservationQuery, ReservationStatus, ReservationUpdate, Result, Timespan,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use sqlx::{
    Sqlite, SqlitePool, Transaction,
    migrate::Migrator,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};
use tokio::sync::{Mutex, MutexGuard, Notify, OnceCell};

use self::{
    changes::SqliteChanges,
    rows::{SqliteKeyedRow, SqliteReservationRow, micros, reservation_columns},
};
use crate::{
    StoreOptions,
    db_error::{db_error, retry_aborted},
    feed::Feed,
    plan::{check_retry, new_conflict, plan_update, reschedule_conflict},
    rsvp::{ChangeStream, ReservationStream, Rsvp, SweepReport},
    stream,
};

/// The SQLite schema's migrations, applied when a store opens.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations/sqlite");

/// Rows a sweep updates or deletes per statement.
const SWEEP_BATCH: i64 = 1000;

/// A reservation store in one SQLite file. Cheap to clone; clones share one
/// pool, one write queue and one change feed.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: SqlitePool,
    options: StoreOptions,
    /// Writers queue here, in order, instead of spinning on SQLite's lock.
    writer: Mutex<()>,
    /// Notified after every committed write.
    wake: Arc<Notify>,
    feed: OnceCell<Feed<SqliteChanges>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

/// A write transaction, holding this process's write turn.
struct Write<'a> {
    tx: Transaction<'static, Sqlite>,
    store: &'a Inner,
    _turn: MutexGuard<'a, ()>,
}

impl Write<'_> {
    async fn commit(self) -> Result<()> {
        self.tx.commit().await.map_err(db_error)?;
        self.store.wake.notify_one();
        Ok(())
    }
}

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
        Self::with_connect_options(SqliteConnectOptions::new().filename(path), options).await
    }

    /// Opens the database a `sqlite:` URL names (`sqlite:path/to/rsvp.db`,
    /// `sqlite::memory:`).
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
        let path = connect.get_filename();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !url.contains(":memory:")
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::internal(format!("cannot create directory {}: {e}", dir.display()))
            })?;
        }
        Self::with_connect_options(connect, options).await
    }

    async fn with_connect_options(
        connect: SqliteConnectOptions,
        options: StoreOptions,
    ) -> Result<Self> {
        let connect = connect
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(options.acquire_timeout)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections)
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
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                pool,
                options,
                writer: Mutex::new(()),
                wake: Arc::new(Notify::new()),
                feed: OnceCell::new(),
            }),
        })
    }

    /// The connection pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.inner.pool
    }

    fn now(&self) -> DateTime<Utc> {
        self.inner.options.now()
    }

    async fn begin_write(&self) -> Result<Write<'_>> {
        let turn = self.inner.writer.lock().await;
        let tx = self
            .inner
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error)?;
        Ok(Write {
            tx,
            store: &self.inner,
            _turn: turn,
        })
    }

    async fn try_reserve(
        &self,
        id: ReservationId,
        request: &NewReservation,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Reservation> {
        let mut w = self.begin_write().await?;
        if let Some(key) = &request.request_id {
            let first: Option<SqliteKeyedRow> = sqlx::query_as(concat!(
                "SELECT ",
                reservation_columns!(),
                ", request_fingerprint FROM reservations WHERE user_id = ? AND request_id = ?"
            ))
            .bind(request.user_id.as_str())
            .bind(key.as_str())
            .fetch_optional(&mut *w.tx)
            .await
            .map_err(db_error)?;
            if let Some(first) = first {
                check_retry(request, first.request_fingerprint)?;
                return first.reservation.read_at(now);
            }
        }
        let existing = live_overlapping(
            &mut w.tx,
            request.resource_id.as_str(),
            &request.timespan,
            None,
            now,
        )
        .await?;
        if !existing.is_empty() {
            w.commit().await?; // keeps the holds that expired on the way
            return Err(new_conflict(request, existing));
        }
        let status = ReservationStatus::from(request.status);
        let row: SqliteReservationRow = sqlx::query_as(concat!(
            "INSERT INTO reservations (id, user_id, resource_id, status, start_us, end_us, note, \
             created_us, updated_us, expires_us, request_id, request_fingerprint) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING ",
            reservation_columns!()
        ))
        .bind(id.to_string())
        .bind(request.user_id.as_str())
        .bind(request.resource_id.as_str())
        .bind(status.as_str())
        .bind(micros(request.timespan.start()))
        .bind(micros(request.timespan.end()))
        .bind(request.note.as_str())
        .bind(micros(now))
        .bind(micros(now))
        .bind(expires_at.map(micros))
        .bind(request.request_id.as_ref().map(|k| k.as_str()))
        .bind(request.request_id.as_ref().map(|_| request.fingerprint()))
        .fetch_one(&mut *w.tx)
        .await
        .map_err(write_error)?;
        w.commit().await?;
        row.read_at(now)
    }

    async fn try_update(
        &self,
        update: &ReservationUpdate,
        now: DateTime<Utc>,
    ) -> Result<Reservation> {
        let mut w = self.begin_write().await?;
        let row: Option<SqliteReservationRow> = sqlx::query_as(concat!(
            "SELECT ",
            reservation_columns!(),
            " FROM reservations WHERE id = ?"
        ))
        .bind(update.id.to_string())
        .fetch_optional(&mut *w.tx)
        .await
        .map_err(db_error)?;
        let stored = row.ok_or(Error::NotFound(update.id))?.stored()?;
        let stored_status = stored.status;
        let current = stored.into_reservation(now)?;
        let Some(write) = plan_update(&current, stored_status, update)? else {
            return Ok(current);
        };
        if write.reschedule {
            let existing = live_overlapping(
                &mut w.tx,
                current.resource_id.as_str(),
                &write.timespan,
                Some(current.id),
                now,
            )
            .await?;
            if !existing.is_empty() {
                w.commit().await?;
                return Err(reschedule_conflict(&current, &write, existing));
            }
        }
        let row: SqliteReservationRow = sqlx::query_as(concat!(
            "UPDATE reservations SET status = ?, note = ?, start_us = ?, end_us = ?, \
             expires_us = ?, updated_us = ? WHERE id = ? RETURNING ",
            reservation_columns!()
        ))
        .bind(write.status.as_str())
        .bind(write.note.as_str())
        .bind(micros(write.timespan.start()))
        .bind(micros(write.timespan.end()))
        .bind(write.expires_at.map(micros))
        .bind(micros(now))
        .bind(update.id.to_string())
        .fetch_one(&mut *w.tx)
        .await
        .map_err(write_error)?;
        w.commit().await?;
        row.read_at(now)
    }

    async fn feed(&self) -> Result<&Feed<SqliteChanges>> {
        self.inner
            .feed
            .get_or_try_init(|| async {
                let source = Arc::new(SqliteChanges {
                    pool: self.inner.pool.clone(),
                });
                Feed::start(
                    source,
                    self.inner.wake.clone(),
                    self.inner.options.listen_buffer,
                )
                .await
            })
            .await
    }
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

/// Expires the overdue holds of `resource` that overlap `span`, and returns
/// the live reservations (other than `except`) that overlap it, by start.
///
/// Live intervals never overlap one another, so reading them backwards from
/// `span`'s end, the first one that ends by `span`'s start is the last that
/// needs looking at.
async fn live_overlapping(
    tx: &mut Transaction<'static, Sqlite>,
    resource: &str,
    span: &Timespan,
    except: Option<ReservationId>,
    now: DateTime<Utc>,
) -> Result<Vec<Reservation>> {
    let (mut stale, mut live) = (Vec::new(), Vec::new());
    {
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
        while let Some(row) = rows.try_next().await.map_err(db_error)? {
            if row.end_us <= micros(span.start()) {
                break;
            }
            let r = row.read_at(now)?;
            if Some(r.id) == except {
                continue;
            }
            if r.status.is_live() {
                live.push(r);
            } else {
                stale.push(r.id);
            }
        }
    }
    for id in stale {
        sqlx::query(
            "UPDATE reservations SET status = 'expired', updated_us = ? \
             WHERE id = ? AND status = 'pending'",
        )
        .bind(micros(now))
        .bind(id.to_string())
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    }
    live.reverse();
    Ok(live)
}

#[async_trait]
impl Rsvp for SqliteStore {
    #[tracing::instrument(level = "debug", skip_all, fields(resource = %request.resource_id))]
    async fn reserve(&self, request: NewReservation) -> Result<Reservation> {
        let id = ReservationId::new();
        let now = self.now();
        let expires_at = request.expires_at(now, self.inner.options.default_hold);
        retry_aborted(|| self.try_reserve(id, &request, expires_at, now)).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(id = %update.id))]
    async fn update(&self, update: ReservationUpdate) -> Result<Reservation> {
        let now = self.now();
        retry_aborted(|| self.try_update(&update, now)).await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn get(&self, id: ReservationId) -> Result<Reservation> {
        let now = self.now();
        let row: Option<SqliteReservationRow> = sqlx::query_as(concat!(
            "SELECT ",
            reservation_columns!(),
            " FROM reservations WHERE id = ?"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.inner.pool)
        .await
        .map_err(db_error)?;
        row.ok_or(Error::NotFound(id))?.read_at(now)
    }

    fn query(&self, query: ReservationQuery) -> ReservationStream {
        let pool = self.inner.pool.clone();
        let now = self.now();
        stream::keyset(move |cursor, limit| {
            let pool = pool.clone();
            let query = query.clone();
            async_stream::try_stream! {
                let mut qb = select::page(&query, cursor.as_ref(), limit, now);
                let mut rows = qb.build_query_as::<SqliteReservationRow>().fetch(&pool);
                while let Some(row) = rows.try_next().await.map_err(db_error)? {
                    yield row.read_at(now)?;
                }
            }
            .boxed()
        })
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn filter(&self, filter: ReservationFilter) -> Result<Page> {
        let now = self.now();
        let limit = i64::from(filter.page_size) + 1;
        let mut qb = select::page(&filter.query, filter.cursor.as_ref(), limit, now);
        let rows: Vec<SqliteReservationRow> = qb
            .build_query_as()
            .fetch_all(&self.inner.pool)
            .await
            .map_err(db_error)?;
        let rows = rows
            .into_iter()
            .map(|r| r.read_at(now))
            .collect::<Result<Vec<_>>>()?;
        Ok(stream::into_page(&filter, rows))
    }

    async fn listen(&self, filter: ListenFilter) -> Result<ChangeStream> {
        Ok(self.feed().await?.listen(filter))
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn sweep(&self) -> Result<SweepReport> {
        let now = self.now();
        let mut report = SweepReport::default();
        loop {
            let w = self.begin_write().await?;
            let mut w = w;
            let done = sqlx::query(
                "UPDATE reservations SET status = 'expired', updated_us = ? WHERE id IN \
                 (SELECT id FROM reservations WHERE status = 'pending' AND expires_us <= ? \
                  ORDER BY expires_us LIMIT ?)",
            )
            .bind(micros(now))
            .bind(micros(now))
            .bind(SWEEP_BATCH)
            .execute(&mut *w.tx)
            .await
            .map_err(db_error)?
            .rows_affected();
            w.commit().await?;
            report.expired += done;
            if done < SWEEP_BATCH as u64 {
                break;
            }
        }
        let cutoff = now - self.inner.options.change_retention;
        loop {
            let mut w = self.begin_write().await?;
            let done = sqlx::query(
                "DELETE FROM reservation_changes WHERE id IN \
                 (SELECT id FROM reservation_changes WHERE changed_us < ? ORDER BY id LIMIT ?)",
            )
            .bind(micros(cutoff))
            .bind(SWEEP_BATCH * 10)
            .execute(&mut *w.tx)
            .await
            .map_err(db_error)?
            .rows_affected();
            w.commit().await?;
            report.purged_changes += done;
            if done < SWEEP_BATCH as u64 * 10 {
                break;
            }
        }
        Ok(report)
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.inner.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }
}
