//! Statements the engine builds once for every store: fixed SQL fragments
//! (each store's text from its [`Sql`]) and bound values, never a value
//! pasted into the text. A store renders one into its driver's query
//! builder, binding each value in its own column types.
//!
//! Each combination of filters yields its own statement text, so each is
//! prepared with a plan that uses the right index.

use abi::{Cursor, ReservationId, ReservationQuery, ReservationStatus};
use chrono::{DateTime, Utc};
use sqlx::{Database, QueryBuilder};

use crate::dialect::Sql;

/// A value bound to a statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    Text(String),
    Int(i64),
    Time(DateTime<Utc>),
    /// A nullable time.
    MaybeTime(Option<DateTime<Utc>>),
    Id(ReservationId),
    Status(ReservationStatus),
}

/// A piece of a statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    Sql(&'static str),
    Bind(Value),
}

/// SQL text and bound values, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Statement {
    pub parts: Vec<Part>,
}

impl Statement {
    /// The statement in a driver's query builder, each value bound by
    /// `bind` in the store's own column types.
    pub fn render<DB>(self, bind: fn(&mut QueryBuilder<DB>, Value)) -> QueryBuilder<DB>
    where
        DB: Database,
        DB::Arguments: Default,
    {
        let mut qb = QueryBuilder::new("");
        for part in self.parts {
            match part {
                Part::Sql(sql) => {
                    qb.push(sql);
                }
                Part::Bind(value) => bind(&mut qb, value),
            }
        }
        qb
    }

    fn new(sql: &'static str) -> Self {
        Statement {
            parts: vec![Part::Sql(sql)],
        }
    }

    fn sql(&mut self, sql: &'static str) -> &mut Self {
        self.parts.push(Part::Sql(sql));
        self
    }

    fn bind(&mut self, value: Value) -> &mut Self {
        self.parts.push(Part::Bind(value));
        self
    }

    /// The reservations `query` selects after `cursor`, in order, at most
    /// `limit`, with statuses as they read at `now`.
    pub fn page(
        sql: &Sql,
        query: &ReservationQuery,
        cursor: Option<&Cursor>,
        limit: i64,
        now: DateTime<Utc>,
    ) -> Statement {
        let mut s = Statement::new(sql.select_reservations);
        if let Some(user) = &query.user_id {
            s.sql(" AND user_id = ").bind(Value::Text(user.to_string()));
        }
        if let Some(resource) = &query.resource_id {
            s.sql(" AND resource_id = ")
                .bind(Value::Text(resource.to_string()));
        }
        match query.status {
            None => {}
            // Statuses as they read now: an overdue hold is expired.
            // A confirmed reservation past its release time, not checked
            // in, is a no-show; a checked-in one is stored as confirmed.
            Some(ReservationStatus::Pending) => {
                s.sql(" AND status = 'pending' AND (")
                    .sql(sql.expires_at)
                    .sql(" IS NULL OR ")
                    .sql(sql.expires_at)
                    .sql(" > ")
                    .bind(Value::Time(now))
                    .sql(")");
            }
            Some(ReservationStatus::Confirmed) => {
                s.sql(" AND status = 'confirmed' AND ")
                    .sql(sql.checked_in_at)
                    .sql(" IS NULL AND (")
                    .sql(sql.expires_at)
                    .sql(" IS NULL OR ")
                    .sql(sql.expires_at)
                    .sql(" > ")
                    .bind(Value::Time(now))
                    .sql(")");
            }
            Some(ReservationStatus::CheckedIn) => {
                s.sql(" AND status = 'confirmed' AND ")
                    .sql(sql.checked_in_at)
                    .sql(" IS NOT NULL");
            }
            Some(ReservationStatus::Expired) => {
                s.sql(" AND (status = 'expired' OR (status = 'pending' AND ")
                    .sql(sql.expires_at)
                    .sql(" <= ")
                    .bind(Value::Time(now))
                    .sql("))");
            }
            Some(ReservationStatus::NoShow) => {
                s.sql(" AND (status = 'no_show' OR (status = 'confirmed' AND ")
                    .sql(sql.expires_at)
                    .sql(" <= ")
                    .bind(Value::Time(now))
                    .sql("))");
            }
            Some(status) => {
                s.sql(" AND status = ").bind(Value::Status(status));
            }
        }
        let (start, end) = (query.window.start(), query.window.end());
        if start.is_some() || end.is_some() {
            let [before, between, after] = sql.overlaps;
            s.sql(before)
                .bind(Value::MaybeTime(start))
                .sql(between)
                .bind(Value::MaybeTime(end))
                .sql(after);
        }
        let (cmp, order) = if query.desc {
            (" < (", " DESC")
        } else {
            (" > (", " ASC")
        };
        if let Some(cursor) = cursor {
            s.sql(" AND ")
                .sql(sql.start_id)
                .sql(cmp)
                .bind(Value::Time(cursor.start))
                .sql(", ")
                .bind(Value::Id(cursor.id))
                .sql(")");
        }
        s.sql(" ORDER BY ")
            .sql(sql.start)
            .sql(order)
            .sql(", id")
            .sql(order)
            .sql(" LIMIT ")
            .bind(Value::Int(limit));
        s
    }

    /// The changes with ids in `(after, upto]` that concern `user` and
    /// `resource` (when given), in id order, at most `limit`.
    pub fn replay(
        sql: &Sql,
        after: i64,
        upto: i64,
        filter: &abi::ListenFilter,
        limit: i64,
    ) -> Statement {
        let mut s = Statement::new(sql.select_changes);
        s.sql(" AND ch.id > ")
            .bind(Value::Int(after))
            .sql(" AND ch.id <= ")
            .bind(Value::Int(upto));
        if let Some(user) = &filter.user_id {
            s.sql(" AND ch.user_id = ")
                .bind(Value::Text(user.to_string()));
        }
        if let Some(resource) = &filter.resource_id {
            s.sql(" AND ch.resource_id = ")
                .bind(Value::Text(resource.to_string()));
        }
        s.sql(" ORDER BY ch.id LIMIT ").bind(Value::Int(limit));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SQL: Sql = Sql {
        select_reservations: "SELECT * FROM r WHERE TRUE",
        start_id: "(s, id)",
        start: "s",
        overlaps: [" AND o(", ", ", ")"],
        expires_at: "x",
        checked_in_at: "c",
        select_changes: "SELECT * FROM c ch WHERE TRUE",
    };

    fn text(s: &Statement) -> String {
        s.parts
            .iter()
            .map(|p| match p {
                Part::Sql(sql) => *sql,
                Part::Bind(_) => "?",
            })
            .collect()
    }

    #[test]
    fn a_page_binds_every_value_and_orders_by_the_keyset() {
        let now = DateTime::from_timestamp(1_000, 0).unwrap();
        let query = ReservationQuery::builder()
            .resource_id("room-1")
            .status(ReservationStatus::Pending)
            .end(now)
            .desc(true)
            .build()
            .unwrap();
        let cursor = Cursor {
            start: now,
            id: ReservationId::new(),
        };
        let s = Statement::page(&SQL, &query, Some(&cursor), 10, now);
        assert_eq!(
            text(&s),
            "SELECT * FROM r WHERE TRUE AND resource_id = ? AND status = 'pending' AND \
             (x IS NULL OR x > ?) AND o(?, ?) AND (s, id) < (?, ?) ORDER BY s DESC, id DESC \
             LIMIT ?"
        );
        let binds = s
            .parts
            .iter()
            .filter(|p| matches!(p, Part::Bind(_)))
            .count();
        assert_eq!(binds, 7);
    }
}
