//! The PostgreSQL change feed: `rsvp.reservation_changes` read in id order,
//! woken by `pg_notify` on the `rsvp_changes` channel.

use std::sync::Arc;

use abi::Result;
use async_trait::async_trait;
use sqlx::{PgPool, postgres::PgListener};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::rows::{PgChangeRow, SQL, change_columns, render};
use crate::{
    db_error::db_error,
    dialect::Sql,
    feed::{ChangeBatch, ChangeSource, InProgress},
    row::StoredChange,
    statement::Statement,
};

/// The channel the change trigger notifies.
pub(crate) const CHANNEL: &str = "rsvp_changes";

/// Reads changes from `rsvp.reservation_changes`.
pub(crate) struct PgChanges {
    pub pool: PgPool,
}

#[derive(sqlx::FromRow)]
struct BatchRow {
    xip: Vec<i64>,
    xmax: i64,
    epoch: i64,
    #[sqlx(flatten)]
    change: PgChangeRow,
}

/// The transactions in progress, and the server's start time, of the
/// statement's snapshot.
macro_rules! snapshot_columns {
    () => {
        "array(SELECT x::text::bigint FROM pg_snapshot_xip(pg_current_snapshot()) x) AS xip, \
         pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xmax, \
         (extract(epoch FROM pg_postmaster_start_time()) * 1000000)::bigint AS epoch"
    };
}

#[async_trait]
impl ChangeSource for PgChanges {
    async fn read_after(&self, after: i64, limit: i64) -> Result<ChangeBatch> {
        // One statement, one snapshot: the changes and the transactions in
        // progress when they were read.
        let rows: Vec<BatchRow> = sqlx::query_as(concat!(
            "SELECT c.*, s.* FROM (SELECT ",
            change_columns!(),
            " FROM rsvp.reservation_changes ch WHERE ch.id > $1 ORDER BY ch.id LIMIT $2) c \
             CROSS JOIN (SELECT ",
            snapshot_columns!(),
            ") s ORDER BY c.change_id"
        ))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let in_progress = rows
            .first()
            .map(|r| InProgress {
                xids: r.xip.clone(),
                xmax: r.xmax,
                epoch: r.epoch,
            })
            .unwrap_or_default();
        let changes = rows
            .into_iter()
            .map(|r| StoredChange::from(r.change).into_change())
            .collect::<Result<Vec<_>>>()?;
        Ok(ChangeBatch {
            changes,
            in_progress: Some(in_progress),
        })
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

    async fn head(&self) -> Result<(i64, Option<InProgress>)> {
        let (head, xids, xmax, epoch): (i64, Vec<i64>, i64, i64) = sqlx::query_as(concat!(
            "SELECT coalesce(max(id), 0), ",
            snapshot_columns!(),
            " FROM rsvp.reservation_changes"
        ))
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)?;
        Ok((head, Some(InProgress { xids, xmax, epoch })))
    }

    async fn fence(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)
    }
}

/// Listens on [`CHANNEL`] and wakes the feed for every notification, and
/// after a lost connection (notifications sent meanwhile are lost, so the
/// feed must read the table to catch up).
///
/// # Errors
/// When the listening connection cannot be opened.
pub(crate) async fn spawn_listener(
    pool: &PgPool,
    wake: Arc<Notify>,
    stop: CancellationToken,
) -> Result<()> {
    let mut listener = PgListener::connect_with(pool).await.map_err(db_error)?;
    listener.listen(CHANNEL).await.map_err(db_error)?;
    tokio::spawn(async move {
        let mut failures = 0u32;
        loop {
            let received = tokio::select! {
                _ = stop.cancelled() => return,
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
                    let pause = std::time::Duration::from_millis(100 * u64::from(failures.min(10)));
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
