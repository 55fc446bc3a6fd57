//! Selections of reservations in SQLite: the SQL of Query and Filter,
//! assembled from fixed fragments with every value bound.

use abi::{Cursor, ReservationQuery, ReservationStatus};
use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Sqlite};

use super::rows::{micros, reservation_columns};

/// The reservations `query` selects after `cursor`, in order, at most `limit`.
pub(crate) fn page(
    query: &ReservationQuery,
    cursor: Option<&Cursor>,
    limit: i64,
    now: DateTime<Utc>,
) -> QueryBuilder<Sqlite> {
    let mut qb = QueryBuilder::new(concat!(
        "SELECT ",
        reservation_columns!(),
        " FROM reservations WHERE 1 = 1"
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
            qb.push(" AND status = 'pending' AND (expires_us IS NULL OR expires_us > ")
                .push_bind(micros(now))
                .push(")");
        }
        Some(ReservationStatus::Expired) => {
            qb.push(" AND (status = 'expired' OR (status = 'pending' AND expires_us <= ")
                .push_bind(micros(now))
                .push("))");
        }
        Some(status) => {
            qb.push(" AND status = ").push_bind(status.as_str());
        }
    }
    if let Some(start) = query.window.start() {
        qb.push(" AND end_us > ").push_bind(micros(start));
    }
    if let Some(end) = query.window.end() {
        qb.push(" AND start_us < ").push_bind(micros(end));
    }
    let (cmp, order) = if query.desc {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    if let Some(cursor) = cursor {
        qb.push(" AND (start_us, id) ")
            .push(cmp)
            .push(" (")
            .push_bind(micros(cursor.start))
            .push(", ")
            .push_bind(cursor.id.to_string())
            .push(")");
    }
    qb.push(" ORDER BY start_us ")
        .push(order)
        .push(", id ")
        .push(order)
        .push(" LIMIT ")
        .push_bind(limit);
    qb
}
