//! What an update does to a reservation, decided the same way by every store.

use abi::{Error, Note, Reservation, ReservationStatus, ReservationUpdate, Result, Timespan};
use chrono::{DateTime, Utc};

use crate::row::StoredReservation;

/// The values to write.
#[derive(Debug)]
pub(crate) struct Write {
    pub status: ReservationStatus,
    pub note: Note,
    pub timespan: Timespan,
    pub expires_at: Option<DateTime<Utc>>,
    pub quantity: u32,
    /// The interval moves.
    pub reschedule: bool,
    /// The interval moves or more units are held: check the capacity
    /// first.
    pub check: bool,
}

/// Decides an update of `current` (read with its effective status) whose
/// stored row is `stored`. `None` means nothing changes.
///
/// # Errors
/// [`Error::FailedPrecondition`] for a transition the contract does not
/// allow, or a reschedule of a reservation that holds nothing.
pub(crate) fn plan_update(
    current: &Reservation,
    stored: &StoredReservation,
    update: &ReservationUpdate,
) -> Result<Option<Write>> {
    // A change to the status it already has (a confirm of what was
    // confirmed) changes nothing, whatever the row says until a write or
    // the sweeper settles it.
    let (status, new_status) = match update.status {
        Some(change) => match current.status.transition(change) {
            Ok(true) => (change.target(), true),
            Ok(false) => (current.status, false),
            Err(why) => return Err(Error::FailedPrecondition(why.into())),
        },
        None => (current.status, false),
    };
    let reschedule = update.timespan.filter(|t| *t != current.timespan);
    if reschedule.is_some() && !status.is_live() {
        return Err(Error::FailedPrecondition(
            format!("cannot reschedule a reservation that is {status}").into(),
        ));
    }
    let quantity = update.quantity.unwrap_or(current.quantity);
    if quantity != current.quantity && !status.is_live() {
        return Err(Error::FailedPrecondition(
            format!("cannot change the units of a reservation that is {status}").into(),
        ));
    }
    // More units are checked against the capacity; so is a block of every
    // unit (0) given a number, which may be more than the capacity (the
    // check does not count the block itself).
    let more_units = if current.quantity == 0 {
        quantity != 0
    } else {
        quantity > current.quantity
    };
    let note = update.note.clone().unwrap_or_else(|| current.note.clone());
    // A hold keeps its expiry (also once expired, though it no longer
    // reads); anything else has none.
    let expires_at = match status {
        ReservationStatus::Pending | ReservationStatus::Expired => stored.expires_at,
        _ => None,
    };
    // Anything written also settles the status the row reads as.
    let unchanged =
        !new_status && note == current.note && reschedule.is_none() && quantity == current.quantity;
    Ok((!unchanged).then(|| Write {
        status,
        note,
        timespan: reschedule.unwrap_or(current.timespan),
        expires_at,
        quantity,
        reschedule: reschedule.is_some(),
        check: reschedule.is_some() || more_units,
    }))
}
