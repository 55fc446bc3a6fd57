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
use sqlx::{Connection, Executor, PgConnection, PgPool, postgres::PgListener};
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

#[async_trait]
impl ChangeSource for PgChanges {
    async fn read_after(&self, after: i64, limit: i64) -> Result<Vec<Change>> {
        let rows: Vec<PgChangeRow> = sqlx::query_as(concat!(
            "SELECT ",
            change_columns!(),
            " FROM rsvp.reservation_changes ch WHERE ch.id > $1 ORDER BY ch.id LIMIT $2"
        ))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.into_iter()
            .map(|r| StoredChange::from(r).into_change())
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

    async fn purged_through(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT purged_through FROM rsvp.feed_state")
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)
    }

    async fn select(&self, statement: Statement) -> Result<Vec<StoredChange>> {
        let rows: Vec<PgChangeRow> = render(statement)
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    fn sql(&self) -> &'static Sql {
        &SQL
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
                        Ok(fresh) => listener = fresh,
                        Err(e) => tracing::warn!(
                            error = %e.chain(),
                            "change listener cannot listen on the new database host; retrying"
                        ),
                    }
                    Ok(None)
                }
                received = listener.try_recv() => received,
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

async fn listen(pool: &PgPool) -> Result<PgListener> {
    let mut listener = PgListener::connect_with(pool).await.map_err(db_error)?;
    listener.listen(CHANNEL).await.map_err(db_error)?;
    Ok(listener)
}
