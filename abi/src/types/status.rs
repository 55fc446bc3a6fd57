//! Reservation statuses and the transitions between them.
//!
//! ```text
//! reserve ─► PENDING ──confirm──► CONFIRMED
//!    │          │ └─expires_at passes─► EXPIRED
//!    │          └──────cancel──────┐
//!    ├─► CONFIRMED ────cancel──────┼─► CANCELLED
//!    └─► BLOCKED ──────cancel──────┘
//! ```

use std::fmt;

use chrono::{DateTime, Utc};

use crate::{error::InvalidValue, pb};

/// Where a reservation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReservationStatus {
    /// A hold: blocks the resource until confirmed, cancelled or expired.
    Pending,
    /// Booked.
    Confirmed,
    /// The resource is out of service for the interval.
    Blocked,
    /// Cancelled by a client; holds nothing.
    Cancelled,
    /// A hold that was not confirmed before it expired; holds nothing.
    Expired,
}

impl ReservationStatus {
    /// Every status, in wire order.
    pub const ALL: [ReservationStatus; 5] = [
        ReservationStatus::Pending,
        ReservationStatus::Confirmed,
        ReservationStatus::Blocked,
        ReservationStatus::Cancelled,
        ReservationStatus::Expired,
    ];

    /// Whether a reservation in this status holds its resource.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            ReservationStatus::Pending | ReservationStatus::Confirmed | ReservationStatus::Blocked
        )
    }

    /// The status as rsvp reports it at `now`: a pending hold whose
    /// `expires_at` has passed is expired, whether or not anything has
    /// rewritten it yet.
    pub fn effective(
        self,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> ReservationStatus {
        match (self, expires_at) {
            (ReservationStatus::Pending, Some(at)) if at <= now => ReservationStatus::Expired,
            (status, _) => status,
        }
    }

    /// Checks that a reservation in this (effective) status may undergo
    /// `change`. Returns `Ok(false)` when it already is in the target status,
    /// which makes confirm and cancel idempotent.
    ///
    /// # Errors
    /// A sentence for a FAILED_PRECONDITION when the contract does not allow
    /// the transition.
    pub fn transition(self, change: StatusChange) -> Result<bool, String> {
        use ReservationStatus::*;
        match (self, change) {
            (Pending, StatusChange::Confirm) => Ok(true),
            (Confirmed, StatusChange::Confirm) => Ok(false),
            (Pending | Confirmed | Blocked, StatusChange::Cancel) => Ok(true),
            (Cancelled, StatusChange::Cancel) => Ok(false),
            (from, change) => Err(format!(
                "cannot {} a reservation that is {}",
                change.verb(),
                from.as_str()
            )),
        }
    }

    /// Lower-case name, as stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationStatus::Pending => "pending",
            ReservationStatus::Confirmed => "confirmed",
            ReservationStatus::Blocked => "blocked",
            ReservationStatus::Cancelled => "cancelled",
            ReservationStatus::Expired => "expired",
        }
    }

    /// Parses the lower-case name.
    ///
    /// # Errors
    /// When the text names no status.
    pub fn parse(name: &str) -> Result<Self, InvalidValue> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(name))
            .ok_or_else(|| InvalidValue::new(format!("unknown status {name:?}")))
    }

    /// Reads a wire status that must name a status (not UNKNOWN).
    ///
    /// # Errors
    /// When `value` is UNKNOWN or outside the enum.
    pub fn from_wire(value: i32) -> Result<Option<Self>, InvalidValue> {
        match pb::ReservationStatus::try_from(value) {
            Ok(pb::ReservationStatus::Unknown) => Ok(None),
            Ok(pb::ReservationStatus::Pending) => Ok(Some(ReservationStatus::Pending)),
            Ok(pb::ReservationStatus::Confirmed) => Ok(Some(ReservationStatus::Confirmed)),
            Ok(pb::ReservationStatus::Blocked) => Ok(Some(ReservationStatus::Blocked)),
            Ok(pb::ReservationStatus::Cancelled) => Ok(Some(ReservationStatus::Cancelled)),
            Ok(pb::ReservationStatus::Expired) => Ok(Some(ReservationStatus::Expired)),
            Err(_) => Err(InvalidValue::new(format!("unknown status value {value}"))),
        }
    }
}

impl fmt::Display for ReservationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<ReservationStatus> for pb::ReservationStatus {
    fn from(s: ReservationStatus) -> Self {
        match s {
            ReservationStatus::Pending => pb::ReservationStatus::Pending,
            ReservationStatus::Confirmed => pb::ReservationStatus::Confirmed,
            ReservationStatus::Blocked => pb::ReservationStatus::Blocked,
            ReservationStatus::Cancelled => pb::ReservationStatus::Cancelled,
            ReservationStatus::Expired => pb::ReservationStatus::Expired,
        }
    }
}

/// The status a new reservation starts in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum InitialStatus {
    /// A hold that expires unless confirmed.
    #[default]
    Pending,
    /// Booked at once.
    Confirmed,
    /// Out of service.
    Blocked,
}

impl InitialStatus {
    /// Reads a wire status: UNKNOWN or PENDING make a hold.
    ///
    /// # Errors
    /// For CANCELLED, EXPIRED and values outside the enum.
    pub fn from_wire(value: i32) -> Result<Self, InvalidValue> {
        match ReservationStatus::from_wire(value)? {
            None | Some(ReservationStatus::Pending) => Ok(InitialStatus::Pending),
            Some(ReservationStatus::Confirmed) => Ok(InitialStatus::Confirmed),
            Some(ReservationStatus::Blocked) => Ok(InitialStatus::Blocked),
            Some(other) => Err(InvalidValue::new(format!(
                "a new reservation must be PENDING, CONFIRMED or BLOCKED, not {}",
                other.as_str().to_uppercase()
            ))),
        }
    }
}

impl From<InitialStatus> for ReservationStatus {
    fn from(s: InitialStatus) -> Self {
        match s {
            InitialStatus::Pending => ReservationStatus::Pending,
            InitialStatus::Confirmed => ReservationStatus::Confirmed,
            InitialStatus::Blocked => ReservationStatus::Blocked,
        }
    }
}

/// A status change a client may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusChange {
    /// PENDING to CONFIRMED.
    Confirm,
    /// PENDING, CONFIRMED or BLOCKED to CANCELLED.
    Cancel,
}

impl StatusChange {
    /// Reads the wire status of an update: UNKNOWN means no change.
    ///
    /// # Errors
    /// For targets other than CONFIRMED and CANCELLED.
    pub fn from_wire(value: i32) -> Result<Option<Self>, InvalidValue> {
        match ReservationStatus::from_wire(value)? {
            None => Ok(None),
            Some(ReservationStatus::Confirmed) => Ok(Some(StatusChange::Confirm)),
            Some(ReservationStatus::Cancelled) => Ok(Some(StatusChange::Cancel)),
            Some(other) => Err(InvalidValue::new(format!(
                "can only change to CONFIRMED or CANCELLED, not {}",
                other.as_str().to_uppercase()
            ))),
        }
    }

    /// The status this change leads to.
    pub fn target(self) -> ReservationStatus {
        match self {
            StatusChange::Confirm => ReservationStatus::Confirmed,
            StatusChange::Cancel => ReservationStatus::Cancelled,
        }
    }

    fn verb(self) -> &'static str {
        match self {
            StatusChange::Confirm => "confirm",
            StatusChange::Cancel => "cancel",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReservationStatus::*;

    #[test]
    fn transitions_follow_the_contract() {
        let cases = [
            (Pending, StatusChange::Confirm, Ok(true)),
            (Confirmed, StatusChange::Confirm, Ok(false)),
            (Blocked, StatusChange::Confirm, Err(())),
            (Cancelled, StatusChange::Confirm, Err(())),
            (Expired, StatusChange::Confirm, Err(())),
            (Pending, StatusChange::Cancel, Ok(true)),
            (Confirmed, StatusChange::Cancel, Ok(true)),
            (Blocked, StatusChange::Cancel, Ok(true)),
            (Cancelled, StatusChange::Cancel, Ok(false)),
            (Expired, StatusChange::Cancel, Err(())),
        ];
        for (from, change, want) in cases {
            assert_eq!(
                from.transition(change).map_err(|_| ()),
                want,
                "{from:?} {change:?}"
            );
        }
    }

    #[test]
    fn an_overdue_hold_is_expired() {
        let now = Utc::now();
        assert_eq!(Pending.effective(Some(now), now), Expired);
        assert_eq!(
            Pending.effective(Some(now + chrono::TimeDelta::seconds(1)), now),
            Pending
        );
        assert_eq!(Pending.effective(None, now), Pending);
        assert_eq!(Confirmed.effective(Some(now), now), Confirmed);
    }

    #[test]
    fn wire_statuses_outside_the_enum_are_rejected() {
        assert!(ReservationStatus::from_wire(6).is_err());
        assert!(ReservationStatus::from_wire(-1).is_err());
        assert!(InitialStatus::from_wire(4).is_err());
        assert!(InitialStatus::from_wire(5).is_err());
        assert_eq!(InitialStatus::from_wire(0), Ok(InitialStatus::Pending));
        assert!(StatusChange::from_wire(1).is_err());
        assert_eq!(StatusChange::from_wire(0), Ok(None));
    }
}
