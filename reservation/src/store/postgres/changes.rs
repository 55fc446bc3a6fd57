//! The PostgreSQL change feed: `rsvp.reservation_changes` read in id order.
//!
//! No write transaction notifies anyone: a NOTIFY takes a database-wide lock
//! at commit, which would queue every write's commit behind every other's.
//! Instead each server announces after its own commits, coalesced, on a
//! connection of its own ([`Announcer`]), every server listens for the
//! announcements, and every feed also polls, so that changes written
//! outside rsvp are delivered too.

use std::{sync::Arc, time::Duration};

use abi::{Change, Result};
use async_trait::async_trait;
use sqlx::{
    Connection, Executor, PgConnection, PgPool,
    postgres::{PgListener, PgPoolOptions},
};
use tokio::sync::{Notify, watch};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::rows::{PgChangeRow, SQL, change_columns, render};
use crate::{
    db_error::db_error,
    dialect::Sql,
    feed::{ChangeSource, Writers},
    row::StoredChange,
    statement::Statement,
};

/// At most one announcement per this long: a busy server commits far more
/// often than listeners need telling.
const ANNOUNCE_EVERY: Duration = Duration::from_millis(2);

/// The channel servers announce new changes on.
pub(crate) const CHANNEL: &str = "rsvp_changes";

/// Reads changes from `rsvp.reservation_changes`.
pub(crate) struct PgChanges {
    pub pool: PgPool,
}

/// The columns of a [`WalPosition`], read in the statement it describes.
macro_rules! wal_position {
    () => {
        "pg_current_wal_flush_lsn()::text AS flushed, \
         current_setting('synchronous_standby_names') <> '' AS synchronous, \
         pg_postmaster_start_time()::text AS server"
    };
}

/// How far a server had flushed its WAL when a statement ran (past every
/// commit it saw), whether its commits wait for a synchronous standby, and
/// which server it was (its start time).
#[derive(sqlx::FromRow)]
struct WalPosition {
    flushed: String,
    synchronous: bool,
    server: String,
}

/// A change as the feed reads it, with the position it was read at.
#[derive(sqlx::FromRow)]
struct PgFeedRow {
    #[sqlx(flatten)]
    read_at: WalPosition,
    #[sqlx(flatten)]
    change: PgChangeRow,
}

/// How often the feed looks again while a synchronous standby catches up:
/// at first, and at most.
const STANDBY_POLL: Duration = Duration::from_millis(1);
const STANDBY_POLL_MAX: Duration = Duration::from_millis(50);

#[async_trait]
impl ChangeSource for PgChanges {
    /// Reads, then, where commits wait for a synchronous standby, waits
    /// until one has flushed everything read: a commit whose wait for the
    /// standby was cancelled (a statement timeout, a backend ended, a
    /// primary dying) is visible on the primary though the standby never
    /// got it, and a failover loses it. No listener is told of a change the
    /// next primary may not have, and the next primary never hands out
    /// again an id a listener has seen.
    async fn read_after(&self, after: i64, limit: i64) -> Result<Vec<Change>> {
        let rows: Vec<PgFeedRow> = sqlx::query_as(concat!(
            "SELECT ",
            wal_position!(),
            ", ",
            change_columns!(),
            " FROM rsvp.reservation_changes ch WHERE ch.id > $1 ORDER BY ch.id LIMIT $2"
        ))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        if let Some(last) = rows.last() {
            self.replicated(&last.read_at).await?;
        }
        rows.into_iter()
            .map(|r| StoredChange::from(r.change).into_change())
            .collect()
    }

    async fn head(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM rsvp.reservation_changes")
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)
    }

    /// A transaction that draws a change id holds `ROW EXCLUSIVE` on the
    /// changes table from before it draws the id until it ends: the holders
    /// now are every transaction that may still commit an id drawn before.
    /// Named with the server they run on (its start time), so that after a
    /// failover or a restart none of them is waited for.
    async fn writers(&self) -> Result<Option<Writers>> {
        let (server, standby, transactions): (String, bool, Vec<String>) = sqlx::query_as(
            "SELECT pg_postmaster_start_time()::text, pg_is_in_recovery(), \
                    coalesce((SELECT array_agg(DISTINCT virtualtransaction) FROM pg_locks \
                      WHERE locktype = 'relation' \
                        AND database = (SELECT oid FROM pg_database \
                                        WHERE datname = current_database()) \
                        AND relation = 'rsvp.reservation_changes'::regclass \
                        AND mode = 'RowExclusiveLock' AND granted \
                        AND pid IS DISTINCT FROM pg_backend_pid()), '{}')",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)?;
        if standby {
            return Err(on_standby());
        }
        Ok(Some(Writers {
            server,
            transactions,
        }))
    }

    async fn running(&self, writers: &Writers) -> Result<bool> {
        if writers.transactions.is_empty() {
            return Ok(false);
        }
        // A running (or prepared) transaction holds locks under its virtual
        // transaction id; virtual ids are not reused while it lives.
        let (standby, running): (bool, bool) = sqlx::query_as(
            "SELECT pg_is_in_recovery(), \
                    pg_postmaster_start_time()::text = $2 \
                    AND EXISTS (SELECT 1 FROM pg_locks WHERE virtualtransaction = ANY($1))",
        )
        .bind(&writers.transactions)
        .bind(&writers.server)
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)?;
        if standby {
            return Err(on_standby());
        }
        Ok(running)
    }

    async fn durable(&self) -> Result<()> {
        let now: WalPosition = sqlx::query_as(concat!("SELECT ", wal_position!()))
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)?;
        self.replicated(&now).await
    }

    async fn purged_through(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT purged_through FROM rsvp.feed_state")
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)
    }

    async fn select(&self, statement: Statement) -> Result<(Vec<StoredChange>, i64)> {
        // One snapshot for both reads: what retention had deleted when the
        // rows were read.
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await
            .map_err(db_error)?;
        let rows: Vec<PgChangeRow> = render(statement)
            .build_query_as()
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?;
        let purged = sqlx::query_scalar("SELECT purged_through FROM rsvp.feed_state")
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok((rows.into_iter().map(Into::into).collect(), purged))
    }

    fn sql(&self) -> &'static Sql {
        &SQL
    }
}

impl PgChanges {
    /// Where commits wait for a synchronous standby, waits until one of
    /// the server of `at` has flushed WAL up to its position, or commits
    /// stop waiting for one (a primary left without its standby). Should
    /// the pool move to another server meanwhile (a failover), the wait
    /// fails: that server's standbys say nothing of what the first wrote,
    /// and the changes are read again from it.
    /// A role that may not read the standbys' positions (it needs
    /// `pg_monitor` or `pg_read_all_stats`; PostgreSQL shows any other role
    /// every column but the pid as NULL) cannot wait: it is warned once.
    async fn replicated(&self, at: &WalPosition) -> Result<()> {
        if !at.synchronous {
            return Ok(());
        }
        let mut pause = STANDBY_POLL;
        loop {
            let (same, reached, unknown): (bool, bool, bool) = sqlx::query_as(
                "SELECT pg_postmaster_start_time()::text = $2, \
                        current_setting('synchronous_standby_names') = '' \
                        OR EXISTS (SELECT 1 FROM pg_stat_replication \
                                   WHERE sync_state IN ('sync', 'quorum') \
                                     AND flush_lsn >= $1::pg_lsn), \
                        NOT pg_has_role('pg_read_all_stats', 'USAGE')",
            )
            .bind(&at.flushed)
            .bind(&at.server)
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)?;
            if !same {
                return Err(abi::Error::Unavailable(
                    "the database changed while the change feed waited for its standby".into(),
                ));
            }
            if reached {
                return Ok(());
            }
            if unknown {
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| {
                    tracing::warn!(
                        "the database role cannot read its synchronous standbys' positions \
                         (grant it pg_monitor): listeners may be told of a change that a \
                         failover then loses"
                    );
                });
                return Ok(());
            }
            tokio::time::sleep(pause).await;
            // A standby that is down holds every commit too; look less often.
            pause = (pause * 2).min(STANDBY_POLL_MAX);
        }
    }
}

/// A standby cannot tell which change ids its primary may still commit:
/// the feed waits at a gap until it reads a primary again.
fn on_standby() -> abi::Error {
    abi::Error::Unavailable(
        "the change feed reads a standby; waiting for a connection to the primary".into(),
    )
}

/// Announces this server's commits to every server listening on the
/// database: `NOTIFY` on a connection of its own, outside any write
/// transaction, once per burst of commits however many there were.
pub(crate) struct Announcer {
    /// This process's feed, woken at once.
    local: Arc<Notify>,
    /// The announcing task's signal; permits coalesce.
    signal: Arc<Notify>,
    _task: DropGuard,
}

impl Announcer {
    /// Starts announcing on a connection opened with `pool`'s settings,
    /// opened again whenever `moved` says the store chose another server;
    /// `local` is this process's feed.
    pub fn start(pool: &PgPool, local: Arc<Notify>, moved: watch::Receiver<u64>) -> Self {
        let signal = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        tokio::spawn(announce(pool.clone(), signal.clone(), moved, stop.clone()));
        Announcer {
            local,
            signal,
            _task: stop.drop_guard(),
        }
    }

    /// Says that a write of this process committed changes.
    pub fn committed(&self) {
        self.local.notify_one();
        self.signal.notify_one();
    }
}

/// The longest an announcement may take before its connection is given up
/// (a server that vanished without closing it).
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(5);

async fn announce(
    pool: PgPool,
    signal: Arc<Notify>,
    mut moved: watch::Receiver<u64>,
    stop: CancellationToken,
) {
    let mut conn: Option<PgConnection> = None;
    let mut failures = 0u32;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = signal.notified() => {}
        }
        loop {
            if moved.has_changed().unwrap_or(false) {
                moved.mark_unchanged();
                conn = None;
            }
            if conn.is_none() {
                // An announcement is a hint (feeds also poll): it need not
                // wait for its commit to reach the disk, as writes do.
                let options = pool
                    .connect_options()
                    .as_ref()
                    .clone()
                    .options([("synchronous_commit", "off")]);
                match PgConnection::connect_with(&options).await {
                    Ok(c) => conn = Some(c),
                    Err(e) => {
                        failures += 1;
                        if failures == 1 || failures.is_multiple_of(60) {
                            tracing::warn!(
                                error = %e,
                                "cannot open the connection that announces changes; listeners \
                                 on other servers will find them by polling"
                            );
                        }
                    }
                }
            }
            if let Some(c) = conn.as_mut() {
                let sent = tokio::time::timeout(ANNOUNCE_TIMEOUT, c.execute("NOTIFY rsvp_changes"))
                    .await
                    .unwrap_or_else(|_| Err(sqlx::Error::PoolTimedOut));
                match sent {
                    Ok(_) => {
                        failures = 0;
                        // Commits meanwhile are told in the next one.
                        tokio::time::sleep(ANNOUNCE_EVERY).await;
                        break;
                    }
                    Err(e) => {
                        failures += 1;
                        if failures == 1 || failures.is_multiple_of(60) {
                            tracing::warn!(error = %e, "announcing changes failed; reconnecting");
                        }
                        conn = None;
                    }
                }
            }
            let pause = Duration::from_millis(100 * u64::from(failures.min(10)));
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }
}

/// Listens on [`CHANNEL`] and wakes the feed for every announcement, and
/// after a lost connection (announcements sent meanwhile are lost, so the
/// feed must read the table to catch up). Listens anew, on the server the
/// pool connects to now, whenever `moved` says the store chose another.
///
/// The listening connection comes from a pool of its own, never the
/// store's: a connection that listened (or whose `UNLISTEN` was cut short by
/// a failover) can still have notifications in flight, which would break
/// the next query of whoever took it from a shared pool.
///
/// # Errors
/// When the listening connection cannot be opened.
pub(crate) async fn spawn_listener(
    pool: &PgPool,
    wake: Arc<Notify>,
    mut moved: watch::Receiver<u64>,
    stop: CancellationToken,
) -> Result<()> {
    let mut listener = listen(pool).await?;
    let pool = pool.clone();
    moved.mark_unchanged();
    tokio::spawn(async move {
        let mut failures = 0u32;
        loop {
            let received = tokio::select! {
                _ = stop.cancelled() => return,
                Ok(()) = moved.changed() => {
                    match listen(&pool).await {
                        Ok(fresh) => {
                            let (old, stale) = std::mem::replace(&mut listener, fresh);
                            drop(stale);
                            // Its connection closes once its UNLISTEN is done
                            // (or given up: the old server may be gone).
                            tokio::spawn(async move {
                                let _ = tokio::time::timeout(ANNOUNCE_TIMEOUT, old.close()).await;
                            });
                        }
                        Err(e) => tracing::warn!(
                            error = %e.chain(),
                            "change listener cannot listen on the new database host; retrying"
                        ),
                    }
                    Ok(None)
                }
                received = listener.1.try_recv() => received,
            };
            match received {
                Ok(Some(_)) => failures = 0,
                Ok(None) => tracing::info!("change listener reconnecting"),
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(60) {
                        tracing::warn!(error = %e, "change listener lost its connection; retrying");
                    }
                    let pause = Duration::from_millis(100 * u64::from(failures.min(10)));
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            }
            wake.notify_one();
        }
    });
    Ok(())
}

/// A listener on [`CHANNEL`], on a one-connection pool opened with the
/// settings `pool` connects with now.
async fn listen(pool: &PgPool) -> Result<(PgPool, PgListener)> {
    let own = PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with(pool.connect_options().as_ref().clone());
    let mut listener = PgListener::connect_with(&own).await.map_err(db_error)?;
    listener.listen(CHANNEL).await.map_err(db_error)?;
    Ok((own, listener))
}
