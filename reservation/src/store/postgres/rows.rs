//! Row types of the PostgreSQL schema and their database enums.

use abi::{Change, ChangeOp, ReservationStatus, Result};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::row::StoredReservation;

/// The columns every reservation read selects, in [`PgReservationRow`]'s names.
macro_rules! reservation_columns {
    () => {
        "id, user_id, resource_id, status, lower(timespan) AS start_at, \
         upper(timespan) AS end_at, note, created_at, updated_at, expires_at"
    };
}
pub(crate) use reservation_columns;

/// The columns every change read selects, in [`PgChangeRow`]'s names. The
/// change's own id is `change_id`; `id` is the reservation's, so queries
/// must qualify the change id (`ch.id`) outside the select list.
macro_rules! change_columns {
    () => {
        "id AS change_id, op, changed_at, reservation_id AS id, user_id, resource_id, status, \
         lower(timespan) AS start_at, upper(timespan) AS end_at, note, created_at, updated_at, \
         expires_at"
    };
}
pub(crate) use change_columns;

/// `rsvp.reservation_status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "rsvp.reservation_status", rename_all = "lowercase")]
pub(crate) enum PgStatus {
    Pending,
    Confirmed,
    Blocked,
    Cancelled,
    Expired,
}

impl From<ReservationStatus> for PgStatus {
    fn from(s: ReservationStatus) -> Self {
        match s {
            ReservationStatus::Pending => PgStatus::Pending,
            ReservationStatus::Confirmed => PgStatus::Confirmed,
            ReservationStatus::Blocked => PgStatus::Blocked,
            ReservationStatus::Cancelled => PgStatus::Cancelled,
            ReservationStatus::Expired => PgStatus::Expired,
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
        }
    }
}

impl PgReservationRow {
    /// The reservation as it reads at `now`.
    pub fn read_at(self, now: DateTime<Utc>) -> Result<abi::Reservation> {
        StoredReservation::from(self).into_reservation(now)
    }
}

/// A row of `rsvp.reserve(...)`: what happened, and a reservation.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct PgReserveRow {
    pub outcome: String,
    pub request_fingerprint: Option<i64>,
    #[sqlx(flatten)]
    pub reservation: PgReservationRow,
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

impl PgChangeRow {
    /// The change, with the reservation as it stood at the change.
    pub fn into_change(self) -> Result<Change> {
        let at = self.changed_at;
        Ok(Change {
            id: self.change_id,
            op: self.op.into(),
            reservation: self.reservation.read_at(at)?,
            changed_at: at,
        })
    }
}
