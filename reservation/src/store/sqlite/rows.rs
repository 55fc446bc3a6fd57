//! Row types of the SQLite schema (text ids and statuses, microsecond
//! times), and the SQL text it speaks for the engine's shared statements.

use abi::{ChangeOp, Error, ReservationStatus, Result};
use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Sqlite};
use uuid::Uuid;

use crate::{
    dialect::Sql,
    row::{StoredChange, StoredReservation},
    statement::{Statement, Value},
};

/// The columns every reservation read selects, in [`SqliteReservationRow`]'s names.
macro_rules! reservation_columns {
    () => {
        "id, user_id, resource_id, status, start_us, end_us, note, created_us, updated_us, \
         expires_us, version, quantity, booking_id, checked_in_us, checked_out_us"
    };
}
pub(crate) use reservation_columns;

/// The columns every change read selects, in [`SqliteChangeRow`]'s names.
macro_rules! change_columns {
    () => {
        "ch.id AS change_id, op, changed_us, reservation_id AS id, user_id, resource_id, \
         status, start_us, end_us, note, created_us, updated_us, expires_us, 0 AS version, quantity, \
         booking_id, checked_in_us, checked_out_us"
    };
}
pub(crate) use change_columns;

/// SQLite's text for the engine's statements.
pub(crate) static SQL: Sql = Sql {
    select_reservations: concat!(
        "SELECT ",
        reservation_columns!(),
        " FROM reservations WHERE TRUE"
    ),
    start_id: "(start_us, id)",
    start: "start_us",
    // An open side (null) leaves the window open on that side; the bounds
    // stay constants, so the (…, start_us) indexes serve them.
    overlaps: [
        " AND end_us > coalesce(",
        ", -9223372036854775807) AND start_us < coalesce(",
        ", 9223372036854775807)",
    ],
    expires_at: "expires_us",
    checked_in_at: "checked_in_us",
    select_changes: concat!(
        "SELECT ",
        change_columns!(),
        " FROM reservation_changes ch WHERE TRUE"
    ),
};

/// A statement in SQLite's types.
pub(crate) fn render(statement: Statement) -> QueryBuilder<Sqlite> {
    statement.render(|qb, value| {
        match value {
            Value::Text(v) => qb.push_bind(v),
            Value::Int(v) => qb.push_bind(v),
            Value::Time(v) => qb.push_bind(micros(v)),
            Value::MaybeTime(v) => qb.push_bind(v.map(micros)),
            Value::Id(v) => qb.push_bind(v.to_string()),
            Value::Status(v) => qb.push_bind(v.as_str()),
        };
    })
}

/// Microseconds since the epoch, as stored.
pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn time(us: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us)
        .ok_or_else(|| Error::internal(format!("stored time {us} is out of range")))
}

/// An API token row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SqliteTokenRow {
    pub id: String,
    pub principal: String,
    pub role: String,
    pub digest: Vec<u8>,
    pub created_us: i64,
    pub expires_us: Option<i64>,
    pub revoked_us: Option<i64>,
}

impl SqliteTokenRow {
    /// The token, its stored values checked.
    pub fn into_token(self) -> Result<abi::ApiToken> {
        crate::row::StoredToken {
            id: Uuid::parse_str(&self.id)
                .map_err(|_| Error::internal(format!("stored token id {:?}", self.id)))?,
            principal: self.principal,
            role: self.role,
            digest: self.digest,
            created_at: time(self.created_us)?,
            expires_at: self.expires_us.map(time).transpose()?,
            revoked_at: self.revoked_us.map(time).transpose()?,
        }
        .into_token()
    }
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
    pub version: i64,
    pub quantity: i64,
    pub booking_id: Option<String>,
    pub checked_in_us: Option<i64>,
    pub checked_out_us: Option<i64>,
}

impl SqliteReservationRow {
    /// The row in Rust types.
    ///
    /// # Errors
    /// [`Error::Internal`] for values the schema should make impossible.
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
            version: self.version,
            quantity: u32::try_from(self.quantity).map_err(|_| {
                Error::internal(format!("stored quantity {} is out of range", self.quantity))
            })?,
            booking_id: self
                .booking_id
                .map(|b| {
                    Uuid::parse_str(&b).map_err(|_| {
                        Error::internal(format!("stored booking id {b:?} is not a UUID"))
                    })
                })
                .transpose()?,
            checked_in_at: self.checked_in_us.map(time).transpose()?,
            checked_out_at: self.checked_out_us.map(time).transpose()?,
        })
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
    /// The row in Rust types.
    ///
    /// # Errors
    /// [`Error::Internal`] for values the schema should make impossible.
    pub fn stored(self) -> Result<StoredChange> {
        let op = match self.op.as_str() {
            "create" => ChangeOp::Create,
            "update" => ChangeOp::Update,
            "delete" => ChangeOp::Delete,
            other => return Err(Error::internal(format!("stored change op {other:?}"))),
        };
        Ok(StoredChange {
            id: self.change_id,
            op,
            changed_at: time(self.changed_us)?,
            reservation: self.reservation.stored()?,
        })
    }
}
