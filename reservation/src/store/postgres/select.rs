//! Selections of reservations: the SQL of Query and Filter, assembled from
//! fixed fragments with every value bound.
//!
//! Each combination of filters yields its own statement text, so each is
//! prepared with a plan that uses the right index.

use abi::{Cursor, ReservationQuery, ReservationStatus};
use chrono::{DateTime, Utc};
use sqlx::{Postgres, QueryBuilder, postgres::types::PgRange};
use std::ops::Bound;

use super::rows::{PgStatus, reservation_columns};

/// `[start, end)` as a PostgreSQL range; `None` leaves a side open.
pub(crate) fn range(
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
) -> PgRange<DateTime<Utc>> {
    PgRange {
        start: start.map_or(Bound::Unbounded, Bound::Included),
        end: end.map_or(Bound::Unbounded, Bound::Excluded),
    }
}

/// The reservations `query` selects after `cursor`, in order, at most `limit`.
pub(crate) fn page(
    query: &ReservationQuery,
    cursor: Option<&Cursor>,
    limit: i64,
    now: DateTime<Utc>,
) -> QueryBuilder<Postgres> {
    let mut qb = QueryBuilder::new(concat!(
        "SELECT ",
        reservation_columns!(),
        " FROM rsvp.reservations WHERE TRUE"
    ));
    if let Some(user) = &query.user_id {
        qb.push(" AND user_id = ")
            .push_bind(user.as_str().to_owned());
    }
    if let Some(resource) = &query.resource_id {
        qb.push(" AND resource_id = ")
            .push_bind(resource.as_str().to_owned());
    }
    match query.status {
        None => {}
        // Statuses as they read now: an overdue hold is expired.
        Some(ReservationStatus::Pending) => {
            qb.push(" AND status = 'pending' AND (expires_at IS NULL OR expires_at > ")
                .push_bind(now)
                .push(")");
        }
        Some(ReservationStatus::Expired) => {
            qb.push(" AND (status = 'expired' OR (status = 'pending' AND expires_at <= ")
                .push_bind(now)
                .push("))");
        }
        Some(status) => {
            qb.push(" AND status = ").push_bind(PgStatus::from(status));
        }
    }
    let (start, end) = (query.window.start(), query.window.end());
    if start.is_some() || end.is_some() {
        qb.push(" AND timespan && ").push_bind(range(start, end));
    }
    let (cmp, order) = if query.desc {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    if let Some(cursor) = cursor {
        qb.push(" AND (lower(timespan), id) ")
            .push(cmp)
            .push(" (")
            .push_bind(cursor.start)
            .push(", ")
            .push_bind(cursor.id.uuid())
            .push(")");
    }
    qb.push(" ORDER BY lower(timespan) ")
        .push(order)
        .push(", id ")
        .push(order)
        .push(" LIMIT ")
        .push_bind(limit);
    qb
}
