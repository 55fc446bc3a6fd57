//! The PostgreSQL store: production storage, as `../shared/DESIGN.md`
//! describes it.
//!
//! - A reserve is one round trip: `rsvp.reserve(...)` takes the resource's
//!   transaction lock, answers retries, expires overdue holds in the window,
//!   and returns either the blocking reservations or the new one.
//! - The exclusion constraint is the last line of defence; SQLSTATE 23P01
//!   and deadlocks (40P01) are retried, and the retry reads the blocking
//!   rows back.
//! - Confirm and cancel are one `UPDATE` when the transition is allowed; any
//!   other update runs in a transaction that locks the row (and, for a
//!   reschedule, the resource).
//! - Sessions never run with `synchronous_commit = off`: a commit is only
//!   acknowledged once its WAL is written.

mod changes;
mod rows;
mod select;

use std::{str::FromStr, sync::Arc};

use abi::{
    Error, ListenFilter, NewReservation, Page, Reservation, ReservationFilter, ReservationId,
    ReservationQuery, ReservationStatus, ReservationUpdate, Result, StatusChange,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use sqlx::{
    Connection, PgPool, Postgres, Transaction,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions},
};
use tokio::sync::{Notify, OnceCell};
use tokio_util::sync::{CancellationToken, DropGuard};

use self::{
    changes::PgChanges,
    rows::{PgReservationRow, PgReserveRow, PgStatus, reservation_columns},
    select::range,
};
use crate::{
    StoreOptions,
    db_error::{
        DEADLOCK_DETECTED, EXCLUSION_VIOLATION, UNIQUE_VIOLATION, db_error, pool_error,
        retry_aborted, sqlstate,
    },
    feed::Feed,
    plan::{check_retry, new_conflict, plan_update, reschedule_conflict},
    rsvp::{ChangeStream, ReservationStream, Rsvp, SweepReport},
    stream,
};

/// The PostgreSQL schema's migrations, applied when a store opens.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations/postgres");

/// Rows a sweep updates or deletes per statement.
const SWEEP_BATCH: i64 = 1000;

/// How long a pooled connection may sit idle before it is checked with a
/// round trip on its way out of the pool.
const IDLE_BEFORE_PING: std::time::Duration = std::time::Duration::from_secs(1);

/// A reservation store on PostgreSQL. Cheap to clone; clones share one pool
/// and one change feed.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    options: StoreOptions,
    feed: OnceCell<PgFeed>,
}

struct PgFeed {
    feed: Feed<PgChanges>,
    _listener: DropGuard,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://...`) and, unless
    /// `options.migrate` is off, applies migrations.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] on `database_url` for a malformed URL;
    /// [`Error::Unavailable`] when the server cannot be reached.
    pub async fn connect(url: &str, options: StoreOptions) -> Result<Self> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(Error::invalid(
                "database_url",
                "must start with postgres:// or postgresql://",
            ));
        }
        let mut connect = PgConnectOptions::from_str(url)
            .map_err(|_| Error::invalid("database_url", "not a valid PostgreSQL URL"))?
            .application_name("rsvp");
        if let Some(limit) = options.statement_timeout {
            let ms = limit.as_millis().max(1).to_string();
            connect = connect.options([("statement_timeout", ms.as_str())]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            // The pool already checks a connection when it comes back; a
            // round trip before every call as well would cost each call a
            // second wake-up of the database. Check only connections that sat
            // idle long enough to have been cut off unseen.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= IDLE_BEFORE_PING {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // An acknowledged reservation must survive a crash: never
                    // acknowledge a commit before its WAL is written, even
                    // where the server's default says otherwise.
                    sqlx::query(
                        "SELECT set_config('synchronous_commit', 'on', false) \
                         WHERE current_setting('synchronous_commit') = 'off'",
                    )
                    .execute(conn)
                    .await
                    .map(drop)
                })
            })
            .connect_with(connect)
            .await
            .map_err(|e| match e {
                // Nothing accepted a connection before the deadline.
                sqlx::Error::PoolTimedOut => Error::Unavailable(Box::new(e)),
                e => db_error(e),
            })?;
        Self::with_pool(pool, options).await
    }

    /// A store on an existing pool; applies migrations unless
    /// `options.migrate` is off.
    ///
    /// # Errors
    /// When migrations fail.
    pub async fn with_pool(pool: PgPool, options: StoreOptions) -> Result<Self> {
        if options.migrate {
            migrate(&pool).await?;
        }
        Ok(PgStore {
            inner: Arc::new(Inner {
                pool,
                options,
                feed: OnceCell::new(),
            }),
        })
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    fn now(&self) -> DateTime<Utc> {
        self.inner.options.now()
    }

    async fn feed(&self) -> Result<&Feed<PgChanges>> {
        let pg = self
            .inner
            .feed
            .get_or_try_init(|| async {
                let wake = Arc::new(Notify::new());
                let stop = CancellationToken::new();
                changes::spawn_listener(&self.inner.pool, wake.clone(), stop.clone()).await?;
                let source = Arc::new(PgChanges {
                    pool: self.inner.pool.clone(),
                });
                match Feed::start(source, wake, self.inner.options.listen_buffer).await {
                    Ok(feed) => Ok(PgFeed {
                        feed,
                        _listener: stop.drop_guard(),
                    }),
                    Err(e) => {
                        stop.cancel();
                        Err(e)
                    }
                }
            })
            .await?;
        Ok(&pg.feed)
    }

    async fn try_reserve(
        &self,
        id: ReservationId,
        request: &NewReservation,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Reservation> {
        let status = ReservationStatus::from(request.status);
        let span = &request.timespan;
        let fingerprint = request.fingerprint();
        let rows: Vec<PgReserveRow> =
            sqlx::query_as("SELECT * FROM rsvp.reserve($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
                .bind(id.uuid())
                .bind(request.user_id.as_str())
                .bind(request.resource_id.as_str())
                .bind(range(Some(span.start()), Some(span.end())))
                .bind(PgStatus::from(status))
                .bind(request.note.as_str())
                .bind(expires_at)
                .bind(request.request_id.as_ref().map(|r| r.as_str()))
                .bind(request.request_id.as_ref().map(|_| fingerprint))
                .bind(now)
                .fetch_all(&self.inner.pool)
                .await
                .map_err(|e| match sqlstate(&e).as_deref() {
                    // A writer that bypassed the resource lock, or a concurrent
                    // first use of this request id on another resource: the retry
                    // reads back what won.
                    Some(EXCLUSION_VIOLATION)
                    | Some(UNIQUE_VIOLATION)
                    | Some(DEADLOCK_DETECTED) => Error::Aborted {
                        reason: "lost a race with a concurrent write".into(),
                        source: Box::new(e),
                    },
                    _ => db_error(e),
                })?;

        let Some(first) = rows.first() else {
            return Err(Error::internal("rsvp.reserve returned no row"));
        };
        match first.outcome.as_str() {
            "created" | "existing" => {
                if first.outcome == "existing" {
                    check_retry(request, first.request_fingerprint)?;
                }
                match rows.into_iter().next() {
                    Some(row) => row.reservation.read_at(now),
                    None => Err(Error::internal("rsvp.reserve returned no row")),
                }
            }
            "conflict" => {
                let existing = rows
                    .into_iter()
                    .map(|r| r.reservation.read_at(now))
                    .collect::<Result<Vec<_>>>()?;
                Err(new_conflict(request, existing))
            }
            other => Err(Error::internal(format!(
                "rsvp.reserve returned outcome {other:?}"
            ))),
        }
    }

    /// Confirm or cancel in one statement, when the stored row allows it.
    /// `None` when it does not (or the row is missing): the caller decides
    /// in a transaction.
    async fn change_status(
        &self,
        id: ReservationId,
        change: StatusChange,
        now: DateTime<Utc>,
    ) -> Result<Option<Reservation>> {
        let sql = match change {
            StatusChange::Confirm => concat!(
                "UPDATE rsvp.reservations SET status = 'confirmed', expires_at = NULL, \
                 updated_at = $2 WHERE id = $1 AND status = 'pending' \
                 AND (expires_at IS NULL OR expires_at > $2) RETURNING ",
                reservation_columns!()
            ),
            StatusChange::Cancel => concat!(
                "UPDATE rsvp.reservations SET status = 'cancelled', expires_at = NULL, \
                 updated_at = $2 WHERE id = $1 AND (status IN ('confirmed', 'blocked') \
                 OR (status = 'pending' AND (expires_at IS NULL OR expires_at > $2))) RETURNING ",
                reservation_columns!()
            ),
        };
        let row: Option<PgReservationRow> = sqlx::query_as(sql)
            .bind(id.uuid())
            .bind(now)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(|e| pool_error(&self.inner.pool, e))?;
        row.map(|r| r.read_at(now)).transpose()
    }

    async fn update_in_transaction(
        &self,
        update: &ReservationUpdate,
        now: DateTime<Utc>,
    ) -> Result<Reservation> {
        let mut tx = self
            .inner
            .pool
            .begin()
            .await
            .map_err(|e| pool_error(&self.inner.pool, e))?;
        let id = update.id;
        if update.timespan.is_some() {
            // Writers of one resource queue on its lock, reserves included.
            let resource: Option<String> =
                sqlx::query_scalar("SELECT resource_id FROM rsvp.reservations WHERE id = $1")
                    .bind(id.uuid())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_error)?;
            let resource = resource.ok_or(Error::NotFound(id))?;
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(resource)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        let row: Option<PgReservationRow> = sqlx::query_as(concat!(
            "SELECT ",
            reservation_columns!(),
            " FROM rsvp.reservations WHERE id = $1 FOR UPDATE"
        ))
        .bind(id.uuid())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        let row = row.ok_or(Error::NotFound(id))?;
        let stored_status = ReservationStatus::from(row.status);
        let current = row.read_at(now)?;
        let Some(write) = plan_update(&current, stored_status, update)? else {
            return Ok(current);
        };
        if write.reschedule {
            let existing = live_overlapping(&mut tx, &current, &write.timespan, now).await?;
            if !existing.is_empty() {
                return Err(reschedule_conflict(&current, &write, existing));
            }
        }
        let row: PgReservationRow = sqlx::query_as(concat!(
            "UPDATE rsvp.reservations SET status = $2, note = $3, timespan = $4, \
             expires_at = $5, updated_at = $6 WHERE id = $1 RETURNING ",
            reservation_columns!()
        ))
        .bind(id.uuid())
        .bind(PgStatus::from(write.status))
        .bind(write.note.as_str())
        .bind(range(
            Some(write.timespan.start()),
            Some(write.timespan.end()),
        ))
        .bind(write.expires_at)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| match sqlstate(&e).as_deref() {
            Some(EXCLUSION_VIOLATION) => Error::Aborted {
                reason: "lost a race with a concurrent write".into(),
                source: Box::new(e),
            },
            _ => db_error(e),
        })?;
        tx.commit().await.map_err(db_error)?;
        row.read_at(now)
    }
}

/// Expires overdue holds that overlap `span` on `current`'s resource, then
/// returns the live reservations other than `current` that overlap it.
async fn live_overlapping(
    tx: &mut Transaction<'static, Postgres>,
    current: &Reservation,
    span: &abi::Timespan,
    now: DateTime<Utc>,
) -> Result<Vec<Reservation>> {
    let span = range(Some(span.start()), Some(span.end()));
    sqlx::query(
        "UPDATE rsvp.reservations SET status = 'expired', updated_at = $4 \
         WHERE resource_id = $1 AND timespan && $2 AND id <> $3 \
         AND status = 'pending' AND expires_at <= $4",
    )
    .bind(current.resource_id.as_str())
    .bind(span)
    .bind(current.id.uuid())
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    let rows: Vec<PgReservationRow> = sqlx::query_as(concat!(
        "SELECT ",
        reservation_columns!(),
        " FROM rsvp.reservations WHERE resource_id = $1 AND timespan && $2 AND id <> $3 \
         AND status IN ('pending', 'confirmed', 'blocked') ORDER BY lower(timespan), id"
    ))
    .bind(current.resource_id.as_str())
    .bind(span)
    .bind(current.id.uuid())
    .fetch_all(&mut **tx)
    .await
    .map_err(db_error)?;
    rows.into_iter().map(|r| r.read_at(now)).collect()
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

#[async_trait]
impl Rsvp for PgStore {
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
        if let (Some(change), None, None) = (update.status, &update.note, &update.timespan)
            && let Some(r) = self.change_status(update.id, change, now).await?
        {
            return Ok(r);
        }
        retry_aborted(|| self.update_in_transaction(&update, now)).await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn get(&self, id: ReservationId) -> Result<Reservation> {
        let now = self.now();
        let row: Option<PgReservationRow> = sqlx::query_as(concat!(
            "SELECT ",
            reservation_columns!(),
            " FROM rsvp.reservations WHERE id = $1"
        ))
        .bind(id.uuid())
        .fetch_optional(&self.inner.pool)
        .await
        .map_err(|e| pool_error(&self.inner.pool, e))?;
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
                let mut rows = qb.build_query_as::<PgReservationRow>().fetch(&pool);
                while let Some(row) = rows.try_next().await.map_err(|e| pool_error(&pool, e))? {
                    yield row.read_at(now)?;
                }
            }
            .boxed()
        })
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn filter(&self, filter: ReservationFilter) -> Result<Page> {
        let now = self.now();
        let limit = i64::from(filter.page_size);
        let mut qb = select::page(&filter.query, filter.cursor.as_ref(), limit + 1, now);
        let rows: Vec<PgReservationRow> = qb
            .build_query_as()
            .fetch_all(&self.inner.pool)
            .await
            .map_err(|e| pool_error(&self.inner.pool, e))?;
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
            // Rows locked by a writer are skipped: that writer settles them.
            let done = sqlx::query(
                "UPDATE rsvp.reservations r SET status = 'expired', updated_at = $1 \
                 FROM (SELECT id FROM rsvp.reservations \
                       WHERE status = 'pending' AND expires_at <= $1 \
                       ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED) due \
                 WHERE r.id = due.id",
            )
            .bind(now)
            .bind(SWEEP_BATCH)
            .execute(&self.inner.pool)
            .await
            .map_err(|e| pool_error(&self.inner.pool, e))?
            .rows_affected();
            report.expired += done;
            if done < SWEEP_BATCH as u64 {
                break;
            }
        }
        let cutoff = now - self.inner.options.change_retention;
        loop {
            let done = sqlx::query(
                "DELETE FROM rsvp.reservation_changes WHERE id IN \
                 (SELECT id FROM rsvp.reservation_changes WHERE changed_at < $1 \
                  ORDER BY id LIMIT $2)",
            )
            .bind(cutoff)
            .bind(SWEEP_BATCH * 10)
            .execute(&self.inner.pool)
            .await
            .map_err(|e| pool_error(&self.inner.pool, e))?
            .rows_affected();
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
            .map_err(|e| pool_error(&self.inner.pool, e))?;
        Ok(())
    }
}
