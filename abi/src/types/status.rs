//! Reservation statuses and the transitions between them.
//!
//! ```text
//! reserve ─► PENDING ──confirm──► CONFIRMED ──check in──► CHECKED_IN ──check out──► COMPLETED
//!    │          │ └─expires_at passes─► EXPIRED    │ └─not checked in auto_release_after
//!    │          └──────cancel──────┐               │   its start, or marked─► NO_SHOW
//!    ├─► CONFIRMED ────cancel──────┼─► CANCELLED ◄─┘ cancel
//!    └─► BLOCKED ──────cancel──────┘
//! ```
//!
//! A checked-in reservation is stored as confirmed with its check-in time
//! set; only what this module reports depends on that.

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
    /// The holder has arrived; holds the resource until check-out or its end.
    CheckedIn,
    /// Checked out; history.
    Completed,
    /// Confirmed but never checked in in time (or marked so); holds nothing.
    NoShow,
}

impl ReservationStatus {
    /// Every status, in wire order.
    pub const ALL: [ReservationStatus; 8] = [
        ReservationStatus::Pending,
        ReservationStatus::Confirmed,
        ReservationStatus::Blocked,
        ReservationStatus::Cancelled,
        ReservationStatus::Expired,
        ReservationStatus::CheckedIn,
        ReservationStatus::Completed,
        ReservationStatus::NoShow,
    ];

    /// Whether a reservation in this status holds its resource.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            ReservationStatus::Pending
                | ReservationStatus::Confirmed
                | ReservationStatus::Blocked
                | ReservationStatus::CheckedIn
        )
    }

    /// The status as rsvp reports it at `now`, from the stored status, its
    /// `lapses_at` and whether it was checked in: a pending hold whose time
    /// has passed is expired, a confirmed reservation not checked in by its
    /// release time is a no-show (whether or not anything has rewritten
    /// it yet), and a checked-in one is stored as confirmed.
    pub fn effective(
        self,
        lapses_at: Option<DateTime<Utc>>,
        checked_in: bool,
        now: DateTime<Utc>,
    ) -> ReservationStatus {
        use ReservationStatus::*;
        match (self, lapses_at) {
            (Confirmed, _) if checked_in => CheckedIn,
            (Pending, Some(at)) if at <= now => Expired,
            (Confirmed, Some(at)) if at <= now => NoShow,
            (status, _) => status,
        }
    }

    /// The status a store keeps for this one (a checked-in reservation is
    /// kept as confirmed, with its check-in time).
    pub fn stored(self) -> ReservationStatus {
        match self {
            ReservationStatus::CheckedIn => ReservationStatus::Confirmed,
            other => other,
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
            // What came after a confirm was confirmed: confirming it again
            // (a retry of a confirm that found it released as a no-show, or
            // of one the guest arrived after) changes nothing.
            (Confirmed | CheckedIn | Completed | NoShow, StatusChange::Confirm) => Ok(false),
            (Pending | Confirmed | Blocked, StatusChange::Cancel) => Ok(true),
            (Cancelled, StatusChange::Cancel) => Ok(false),
            (Confirmed, StatusChange::NoShow) => Ok(true),
            (NoShow, StatusChange::NoShow) => Ok(false),
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
            ReservationStatus::CheckedIn => "checked_in",
            ReservationStatus::Completed => "completed",
            ReservationStatus::NoShow => "no_show",
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
            Ok(pb::ReservationStatus::CheckedIn) => Ok(Some(ReservationStatus::CheckedIn)),
            Ok(pb::ReservationStatus::Completed) => Ok(Some(ReservationStatus::Completed)),
            Ok(pb::ReservationStatus::NoShow) => Ok(Some(ReservationStatus::NoShow)),
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
            ReservationStatus::CheckedIn => pb::ReservationStatus::CheckedIn,
            ReservationStatus::Completed => pb::ReservationStatus::Completed,
            ReservationStatus::NoShow => pb::ReservationStatus::NoShow,
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
    /// CONFIRMED, after its start, to NO_SHOW (an admin's mark).
    NoShow,
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
            Some(ReservationStatus::NoShow) => Ok(Some(StatusChange::NoShow)),
            Some(other) => Err(InvalidValue::new(format!(
                "can only change to CONFIRMED, CANCELLED or NO_SHOW, not {}",
                other.as_str().to_uppercase()
            ))),
        }
    }

    /// The status this change leads to.
    pub fn target(self) -> ReservationStatus {
        match self {
            StatusChange::Confirm => ReservationStatus::Confirmed,
            StatusChange::Cancel => ReservationStatus::Cancelled,
            StatusChange::NoShow => ReservationStatus::NoShow,
        }
    }

    fn verb(self) -> &'static str {
        match self {
            StatusChange::Confirm => "confirm",
            StatusChange::Cancel => "cancel",
            StatusChange::NoShow => "mark as a no-show",
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
            (CheckedIn, StatusChange::Cancel, Err(())),
            (CheckedIn, StatusChange::Confirm, Ok(false)),
            (Completed, StatusChange::Confirm, Ok(false)),
            (NoShow, StatusChange::Confirm, Ok(false)),
            (Completed, StatusChange::Cancel, Err(())),
            (Confirmed, StatusChange::NoShow, Ok(true)),
            (NoShow, StatusChange::NoShow, Ok(false)),
            (Pending, StatusChange::NoShow, Err(())),
            (NoShow, StatusChange::Cancel, Err(())),
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
        let later = now + chrono::TimeDelta::seconds(1);
        assert_eq!(Pending.effective(Some(now), false, now), Expired);
        assert_eq!(Pending.effective(Some(later), false, now), Pending);
        assert_eq!(Pending.effective(None, false, now), Pending);
        // Past its release time a confirmed reservation is a no-show,
        // unless checked in.
        assert_eq!(Confirmed.effective(Some(now), false, now), NoShow);
        assert_eq!(Confirmed.effective(Some(later), false, now), Confirmed);
        assert_eq!(Confirmed.effective(None, true, now), CheckedIn);
        assert_eq!(Confirmed.effective(None, false, now), Confirmed);
    }

    #[test]
    fn wire_statuses_outside_the_enum_are_rejected() {
        assert!(ReservationStatus::from_wire(9).is_err());
        assert_eq!(ReservationStatus::from_wire(8), Ok(Some(NoShow)));
        assert!(ReservationStatus::from_wire(-1).is_err());
        assert!(InitialStatus::from_wire(4).is_err());
        assert!(InitialStatus::from_wire(5).is_err());
        assert_eq!(InitialStatus::from_wire(0), Ok(InitialStatus::Pending));
        assert!(StatusChange::from_wire(1).is_err());
        assert_eq!(StatusChange::from_wire(0), Ok(None));
    }
}
