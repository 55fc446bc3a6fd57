//! The SQLite change feed: `reservation_changes` read in id order, woken by
//! the store after each write it commits (and polled, for writers in other
//! processes). Writers are serialized, so ids commit in order.

use abi::{Change, Result};
use async_trait::async_trait;
use sqlx::SqlitePool;

use super::rows::{SQL, SqliteChangeRow, change_columns, render};
use crate::{
    db_error::db_error,
    dialect::Sql,
    feed::{ChangeSource, Writers},
    row::StoredChange,
    statement::Statement,
};

/// Reads changes from `reservation_changes`.
pub(crate) struct SqliteChanges {
    pub pool: SqlitePool,
}

#[async_trait]
impl ChangeSource for SqliteChanges {
    async fn read_after(&self, after: i64, limit: i64) -> Result<Vec<Change>> {
        let rows: Vec<SqliteChangeRow> = sqlx::query_as(concat!(
            "SELECT ",
            change_columns!(),
            " FROM reservation_changes ch WHERE ch.id > ? ORDER BY ch.id LIMIT ?"
        ))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.into_iter()
            .map(|r| r.stored()?.into_change())
            .collect()
    }

    async fn head(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM reservation_changes")
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)
    }

    async fn writers(&self) -> Result<Option<Writers>> {
        // Writers are serialized: a visible id has no uncommitted ids below it.
        Ok(None)
    }

    async fn running(&self, _: &Writers) -> Result<bool> {
        Ok(false)
    }

    async fn purged_through(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT purged_through FROM feed_state")
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)
    }

    async fn select(&self, statement: Statement) -> Result<(Vec<StoredChange>, i64)> {
        // One read transaction, one snapshot for both reads: what retention
        // had deleted when the rows were read.
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let rows: Vec<SqliteChangeRow> = render(statement)
            .build_query_as()
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?;
        let purged = sqlx::query_scalar("SELECT purged_through FROM feed_state")
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        let rows = rows
            .into_iter()
            .map(SqliteChangeRow::stored)
            .collect::<Result<_>>()?;
        Ok((rows, purged))
    }

    fn sql(&self) -> &'static Sql {
        &SQL
    }
}
