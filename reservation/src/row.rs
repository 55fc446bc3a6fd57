//! A reservation row as every store decodes it, before it becomes a domain
//! [`Reservation`]: the one place where stored values are checked.

use abi::{
    Change, ChangeOp, Error, Note, Reservation, ReservationId, ReservationStatus, ResourceId,
    Result, Timespan, UserId,
};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The columns of a reservation row, in Rust types.
#[derive(Clone, Debug)]
pub(crate) struct StoredReservation {
    pub id: Uuid,
    pub user_id: String,
    pub resource_id: String,
    /// As stored: an overdue hold may still say pending.
    pub status: ReservationStatus,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub note: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Changes with every write.
    pub version: i64,
    /// Units held (0: every unit, a block).
    pub quantity: u32,
    /// The booking it is a part of.
    pub booking_id: Option<Uuid>,
    /// When it was checked in (it is stored as confirmed).
    pub checked_in_at: Option<DateTime<Utc>>,
    /// When it was checked out.
    pub checked_out_at: Option<DateTime<Utc>>,
}

impl StoredReservation {
    /// Whether the row holds nothing any more at `now` although its stored
    /// status says it does: an overdue hold, or a confirmed reservation
    /// past its release time that nobody checked in.
    pub fn lapsed_at(&self, now: DateTime<Utc>) -> bool {
        matches!(
            self.effective_at(now),
            ReservationStatus::Expired | ReservationStatus::NoShow
        ) && self.status.is_live()
    }

    /// The status it reads as at `now`.
    pub fn effective_at(&self, now: DateTime<Utc>) -> ReservationStatus {
        self.status
            .effective(self.expires_at, self.checked_in_at.is_some(), now)
    }

    /// The reservation as it reads at `now`: an overdue hold is expired, a
    /// confirmed reservation past its release time a no-show.
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
        let status = self.effective_at(now);
        Ok(Reservation {
            id: ReservationId::from(self.id),
            user_id: UserId::parse(self.user_id).map_err(|e| corrupt("user_id", e))?,
            resource_id: ResourceId::parse(self.resource_id)
                .map_err(|e| corrupt("resource_id", e))?,
            status,
            timespan: Timespan::new(self.start, self.end).map_err(|e| corrupt("timespan", e))?,
            note: Note::parse(self.note).map_err(|e| corrupt("note", e))?,
            created_at: self.created_at,
            updated_at: self.updated_at,
            // Only a pending hold says when it expires (the contract:
            // unset otherwise); a confirmed reservation's release time is
            // its resource's rule.
            expires_at: self
                .expires_at
                .filter(|_| status == ReservationStatus::Pending),
            quantity: self.quantity,
            booking_id: self.booking_id.map(abi::BookingId::from),
            checked_in_at: self.checked_in_at,
            checked_out_at: self.checked_out_at,
        })
    }
}

/// A change-feed row, as every store decodes it.
#[derive(Debug)]
pub(crate) struct StoredChange {
    pub id: i64,
    pub op: ChangeOp,
    pub changed_at: DateTime<Utc>,
    /// The reservation right after the change.
    pub reservation: StoredReservation,
}

impl StoredChange {
    /// The change, with the reservation as it read at the change.
    ///
    /// # Errors
    /// [`Error::Internal`] when the stored values are not valid.
    pub fn into_change(self) -> Result<Change> {
        Ok(Change {
            id: self.id,
            op: self.op,
            reservation: self.reservation.into_reservation(self.changed_at)?,
            changed_at: self.changed_at,
        })
    }
}

/// An API token row, in Rust types.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct StoredToken {
    pub id: Uuid,
    pub principal: String,
    pub role: String,
    pub digest: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl StoredToken {
    /// The token, its stored values checked.
    pub fn into_token(self) -> Result<abi::ApiToken> {
        let bad =
            |what: &str| Error::internal(format!("token {}: stored {what} is not valid", self.id));
        Ok(abi::ApiToken {
            id: abi::TokenId::from(self.id),
            principal: UserId::parse(self.principal.as_str()).map_err(|_| bad("principal"))?,
            role: self.role.parse().map_err(|_| bad("role"))?,
            digest: abi::TokenDigest::from_slice(&self.digest).ok_or_else(|| bad("digest"))?,
            created_at: self.created_at,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
        })
    }
}
