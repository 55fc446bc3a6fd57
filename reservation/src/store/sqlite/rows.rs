//! Row types of the SQLite schema: text ids and statuses, microsecond times.

use abi::{Change, ChangeOp, Error, ReservationStatus, Result};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::row::StoredReservation;

/// The columns every reservation read selects, in [`SqliteReservationRow`]'s names.
macro_rules! reservation_columns {
    () => {
        "id, user_id, resource_id, status, start_us, end_us, note, created_us, updated_us, \
         expires_us"
    };
}
pub(crate) use reservation_columns;

/// The columns every change read selects, in [`SqliteChangeRow`]'s names.
macro_rules! change_columns {
    () => {
        "id AS change_id, op, changed_us, reservation_id AS id, user_id, resource_id, status, \
         start_us, end_us, note, created_us, updated_us, expires_us"
    };
}
pub(crate) use change_columns;

/// Microseconds since the epoch, as stored.
pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn time(us: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us)
        .ok_or_else(|| Error::internal(format!("stored time {us} is out of range")))
}

/// A reservation row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SqliteReservationRow {
    pub id: String,
    pub user_id: String,
    pub resource_id: String,
    pub status: String,
    pub start_us: i64,
    pub end_us: i64,
    pub note: String,
    pub created_us: i64,
    pub updated_us: i64,
    pub expires_us: Option<i64>,
}

impl SqliteReservationRow {
    /// The row in Rust types.
    pub fn stored(self) -> Result<StoredReservation> {
        let id = Uuid::parse_str(&self.id)
            .map_err(|_| Error::internal(format!("stored id {:?} is not a UUID", self.id)))?;
        let status = ReservationStatus::parse(&self.status).map_err(Error::internal)?;
        Ok(StoredReservation {
            id,
            user_id: self.user_id,
            resource_id: self.resource_id,
            status,
            start: time(self.start_us)?,
            end: time(self.end_us)?,
            note: self.note,
            created_at: time(self.created_us)?,
            updated_at: time(self.updated_us)?,
            expires_at: self.expires_us.map(time).transpose()?,
        })
    }

    /// The reservation as it reads at `now`.
    pub fn read_at(self, now: DateTime<Utc>) -> Result<abi::Reservation> {
        self.stored()?.into_reservation(now)
    }
}

/// A reservation row with the digest of the request that made it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SqliteKeyedRow {
    pub request_fingerprint: Option<i64>,
    #[sqlx(flatten)]
    pub reservation: SqliteReservationRow,
}

/// A change row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SqliteChangeRow {
    pub change_id: i64,
    pub op: String,
    pub changed_us: i64,
    #[sqlx(flatten)]
    pub reservation: SqliteReservationRow,
}

impl SqliteChangeRow {
    /// The change, with the reservation as it stood at the change.
    pub fn into_change(self) -> Result<Change> {
        let op = match self.op.as_str() {
            "create" => ChangeOp::Create,
            "update" => ChangeOp::Update,
            "delete" => ChangeOp::Delete,
            other => return Err(Error::internal(format!("stored change op {other:?}"))),
        };
        let at = time(self.changed_us)?;
        Ok(Change {
            id: self.change_id,
            op,
            reservation: self.reservation.read_at(at)?,
            changed_at: at,
        })
    }
}
