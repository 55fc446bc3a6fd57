//! The SQLite change feed: `reservation_changes` read in id order, woken by
//! the store after each write it commits (and polled, for writers in other
//! processes).

use abi::{Change, ListenFilter, Result};
use async_trait::async_trait;
use sqlx::{QueryBuilder, SqlitePool};

use super::rows::{SqliteChangeRow, change_columns};
use crate::{
    db_error::db_error,
    feed::{ChangeBatch, ChangeSource, InProgress},
};

/// Reads changes from `reservation_changes`.
pub(crate) struct SqliteChanges {
    pub pool: SqlitePool,
}

#[async_trait]
impl ChangeSource for SqliteChanges {
    async fn read_after(&self, after: i64, limit: i64) -> Result<ChangeBatch> {
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
        // Writers are serialized: a visible id has no uncommitted ids below it.
        Ok(ChangeBatch {
            changes: rows
                .into_iter()
                .map(SqliteChangeRow::into_change)
                .collect::<Result<_>>()?,
            in_progress: None,
        })
    }

    async fn replay(
        &self,
        after: i64,
        upto: i64,
        filter: &ListenFilter,
        limit: i64,
    ) -> Result<Vec<Change>> {
        let mut qb = QueryBuilder::new(concat!(
            "SELECT ",
            change_columns!(),
            " FROM reservation_changes ch WHERE ch.id > "
        ));
        qb.push_bind(after).push(" AND ch.id <= ").push_bind(upto);
        if let Some(user) = &filter.user_id {
            qb.push(" AND ch.user_id = ")
                .push_bind(user.as_str().to_owned());
        }
        if let Some(resource) = &filter.resource_id {
            qb.push(" AND ch.resource_id = ")
                .push_bind(resource.as_str().to_owned());
        }
        qb.push(" ORDER BY ch.id LIMIT ").push_bind(limit);
        let rows: Vec<SqliteChangeRow> = qb
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.into_iter().map(SqliteChangeRow::into_change).collect()
    }

    async fn head(&self) -> Result<(i64, Option<InProgress>)> {
        let head: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM reservation_changes")
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)?;
        Ok((head, None))
    }

    async fn fence(&self) -> Result<i64> {
        // Writers are serialized: there is never a gap to fence.
        Ok(0)
    }
}
