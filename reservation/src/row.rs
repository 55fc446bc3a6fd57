//! A reservation row as stores read it, before it is checked into a domain
//! [`Reservation`].

use abi::{
    Error, Note, Reservation, ReservationId, ReservationStatus, ResourceId, Result, Timespan,
    UserId,
};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The columns of a reservation row, in Rust types.
#[derive(Debug)]
pub(crate) struct StoredReservation {
    pub id: Uuid,
    pub user_id: String,
    pub resource_id: String,
    pub status: ReservationStatus,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub note: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl StoredReservation {
    /// The reservation as it reads at `now`: an overdue hold is expired.
    ///
    /// # Errors
    /// [`Error::Internal`] when the stored values are not valid, which the
    /// schema's checks should make impossible.
    pub fn into_reservation(self, now: DateTime<Utc>) -> Result<Reservation> {
        let id = self.id;
        let corrupt = |what: &str, e: abi::InvalidValue| {
            Error::internal(format!(
                "stored reservation {id} has an invalid {what}: {e}"
            ))
        };
        Ok(Reservation {
            id: ReservationId::from(self.id),
            user_id: UserId::parse(self.user_id).map_err(|e| corrupt("user_id", e))?,
            resource_id: ResourceId::parse(self.resource_id)
                .map_err(|e| corrupt("resource_id", e))?,
            status: self.status.effective(self.expires_at, now),
            timespan: Timespan::new(self.start, self.end).map_err(|e| corrupt("timespan", e))?,
            note: Note::parse(self.note).map_err(|e| corrupt("note", e))?,
            created_at: self.created_at,
            updated_at: self.updated_at,
            expires_at: self.expires_at,
        })
    }
}
