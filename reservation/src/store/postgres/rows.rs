//! Row types of the PostgreSQL schema, its enums, and the SQL text it
//! speaks for the engine's shared statements.

use abi::{ChangeOp, ReservationStatus};
use chrono::{DateTime, Utc};
use sqlx::{Postgres, QueryBuilder, postgres::types::PgRange};
use std::ops::Bound;
use uuid::Uuid;

use crate::{
    dialect::Sql,
    row::{StoredChange, StoredReservation},
    statement::{Statement, Value},
};

/// The columns every reservation read selects, in [`PgReservationRow`]'s names.
macro_rules! reservation_columns {
    () => {
        "id, user_id, resource_id, status, lower(timespan) AS start_at, \
         upper(timespan) AS end_at, note, created_at, updated_at, expires_at, version, quantity, \
         booking_id, checked_in_at, checked_out_at"
    };
}
pub(crate) use reservation_columns;

/// The columns every change read selects, in [`PgChangeRow`]'s names. The
/// change's own id is `change_id`; `id` is the reservation's.
macro_rules! change_columns {
    () => {
        "ch.id AS change_id, op, changed_at, reservation_id AS id, user_id, resource_id, \
         status, lower(timespan) AS start_at, upper(timespan) AS end_at, note, created_at, \
         updated_at, expires_at, 0::bigint AS version, quantity, booking_id, checked_in_at, \
         checked_out_at"
    };
}
pub(crate) use change_columns;

/// PostgreSQL's text for the engine's statements.
pub(crate) static SQL: Sql = Sql {
    select_reservations: concat!(
        "SELECT ",
        reservation_columns!(),
        " FROM rsvp.reservations WHERE TRUE"
    ),
    start_id: "(lower(timespan), id)",
    start: "lower(timespan)",
    // The GiST indexes serve `&&`.
    overlaps: [" AND timespan && tstzrange(", ", ", ", '[)')"],
    expires_at: "expires_at",
    checked_in_at: "checked_in_at",
    select_changes: concat!(
        "SELECT ",
        change_columns!(),
        " FROM rsvp.reservation_changes ch WHERE TRUE"
    ),
};

/// A statement in PostgreSQL's types.
pub(crate) fn render(statement: Statement) -> QueryBuilder<Postgres> {
    statement.render(|qb, value| {
        match value {
            Value::Text(v) => qb.push_bind(v),
            Value::Int(v) => qb.push_bind(v),
            Value::Time(v) => qb.push_bind(v),
            Value::MaybeTime(v) => qb.push_bind(v),
            Value::Id(v) => qb.push_bind(v.uuid()),
            Value::Status(v) => qb.push_bind(PgStatus::from(v)),
        };
    })
}

/// `[start, end)` as a PostgreSQL range.
pub(crate) fn range(start: DateTime<Utc>, end: DateTime<Utc>) -> PgRange<DateTime<Utc>> {
    PgRange {
        start: Bound::Included(start),
        end: Bound::Excluded(end),
    }
}

/// `rsvp.reservation_status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "rsvp.reservation_status", rename_all = "lowercase")]
pub(crate) enum PgStatus {
    Pending,
    Confirmed,
    Blocked,
    Cancelled,
    Expired,
    Completed,
    #[sqlx(rename = "no_show")]
    NoShow,
}

impl From<ReservationStatus> for PgStatus {
    fn from(s: ReservationStatus) -> Self {
        match s {
            ReservationStatus::Pending => PgStatus::Pending,
            ReservationStatus::Confirmed => PgStatus::Confirmed,
            ReservationStatus::Blocked => PgStatus::Blocked,
            ReservationStatus::Cancelled => PgStatus::Cancelled,
            ReservationStatus::Expired => PgStatus::Expired,
            // Kept as confirmed, with its check-in time.
            ReservationStatus::CheckedIn => PgStatus::Confirmed,
            ReservationStatus::Completed => PgStatus::Completed,
            ReservationStatus::NoShow => PgStatus::NoShow,
        }
    }
}

impl From<PgStatus> for ReservationStatus {
    fn from(s: PgStatus) -> Self {
        match s {
            PgStatus::Pending => ReservationStatus::Pending,
            PgStatus::Confirmed => ReservationStatus::Confirmed,
            PgStatus::Blocked => ReservationStatus::Blocked,
            PgStatus::Cancelled => ReservationStatus::Cancelled,
            PgStatus::Expired => ReservationStatus::Expired,
            PgStatus::Completed => ReservationStatus::Completed,
            PgStatus::NoShow => ReservationStatus::NoShow,
        }
    }
}

/// `rsvp.change_op`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "rsvp.change_op", rename_all = "lowercase")]
pub(crate) enum PgChangeOp {
    Create,
    Update,
    Delete,
}

impl From<PgChangeOp> for ChangeOp {
    fn from(op: PgChangeOp) -> Self {
        match op {
            PgChangeOp::Create => ChangeOp::Create,
            PgChangeOp::Update => ChangeOp::Update,
            PgChangeOp::Delete => ChangeOp::Delete,
        }
    }
}

/// A reservation row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct PgReservationRow {
    pub id: Uuid,
    pub user_id: String,
    pub resource_id: String,
    pub status: PgStatus,
    pub start_at: DateTime<Utc>,
    pub end_at: DateTime<Utc>,
    pub note: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub version: i64,
    pub quantity: i32,
    pub booking_id: Option<Uuid>,
    pub checked_in_at: Option<DateTime<Utc>>,
    pub checked_out_at: Option<DateTime<Utc>>,
}

impl From<PgReservationRow> for StoredReservation {
    fn from(r: PgReservationRow) -> Self {
        StoredReservation {
            id: r.id,
            user_id: r.user_id,
            resource_id: r.resource_id,
            status: r.status.into(),
            start: r.start_at,
            end: r.end_at,
            note: r.note,
            created_at: r.created_at,
            updated_at: r.updated_at,
            expires_at: r.expires_at,
            version: r.version,
            // The schema keeps it within 0 to 1,000,000.
            quantity: r.quantity.max(0) as u32,
            booking_id: r.booking_id,
            checked_in_at: r.checked_in_at,
            checked_out_at: r.checked_out_at,
        }
    }
}

/// A row of `rsvp.place(...)` or `rsvp.revise_versioned(...)`: which item, what
/// happened, at what time, and a reservation (none for a conflict's
/// header, a stale resource or a dry placement that fits).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct PgWriteRow {
    pub item: i32,
    pub outcome: String,
    pub at: DateTime<Utc>,
    pub total: i64,
    pub request_fingerprint: Option<i64>,
    /// Seconds the write waited for its locks.
    pub waited: f64,
    /// The resource's capacity (outcomes that read it).
    pub capacity: Option<i32>,
    /// Where a refused write found too few units free.
    pub full_starts: Option<Vec<DateTime<Utc>>>,
    pub full_ends: Option<Vec<DateTime<Utc>>>,
    id: Option<Uuid>,
    user_id: Option<String>,
    resource_id: Option<String>,
    status: Option<PgStatus>,
    start_at: Option<DateTime<Utc>>,
    end_at: Option<DateTime<Utc>>,
    note: Option<String>,
    created_at: Option<DateTime<Utc>>,
    updated_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    version: Option<i64>,
    quantity: Option<i32>,
    booking_id: Option<Uuid>,
    checked_in_at: Option<DateTime<Utc>>,
    checked_out_at: Option<DateTime<Utc>>,
}

/// A row of `rsvp.books`: a row of `rsvp.book`, with the (1-based)
/// booking of the call it belongs to.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct PgBookRow {
    pub booking: i32,
    #[sqlx(flatten)]
    pub row: PgWriteRow,
}

impl PgWriteRow {
    /// The reservation the row carries, if it carries one.
    pub fn reservation(&self) -> Option<StoredReservation> {
        Some(StoredReservation {
            id: self.id?,
            user_id: self.user_id.clone()?,
            resource_id: self.resource_id.clone()?,
            status: self.status?.into(),
            start: self.start_at?,
            end: self.end_at?,
            note: self.note.clone()?,
            created_at: self.created_at?,
            updated_at: self.updated_at?,
            expires_at: self.expires_at,
            version: self.version?,
            quantity: self.quantity?.max(0) as u32,
            booking_id: self.booking_id,
            checked_in_at: self.checked_in_at,
            checked_out_at: self.checked_out_at,
        })
    }

    /// The stretches where too few units were free.
    pub fn full(&self) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        match (&self.full_starts, &self.full_ends) {
            (Some(s), Some(e)) => s.iter().copied().zip(e.iter().copied()).collect(),
            _ => Vec::new(),
        }
    }
}

/// A change row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct PgChangeRow {
    pub change_id: i64,
    pub op: PgChangeOp,
    pub changed_at: DateTime<Utc>,
    #[sqlx(flatten)]
    pub reservation: PgReservationRow,
}

impl From<PgChangeRow> for StoredChange {
    fn from(r: PgChangeRow) -> Self {
        StoredChange {
            id: r.change_id,
            op: r.op.into(),
            changed_at: r.changed_at,
            reservation: r.reservation.into(),
        }
    }
}
