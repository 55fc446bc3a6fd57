//! What a refused write reports: the request, and what is in the way —
//! the first [`MAX_LISTED`] live reservations by start, and how many more.
//! Notes are left out (of the request too), and fewer are listed when
//! their ids are long: a refusal stays a few KiB however long the notes
//! and ids in the way, so every client can read it.

use abi::{Conflict, Error, NewReservation, Note, Requested, Reservation, Result, Timespan};
use chrono::{DateTime, Utc};

use super::plan::Write;
use crate::dialect::Blockers;

/// The most reservations a conflict lists; the store reads no more.
pub(crate) const MAX_LISTED: usize = Conflict::MAX_LISTED;

/// The conflict of a new reservation with what is in its way.
pub(super) fn new_reservation(
    request: &NewReservation,
    blockers: Blockers,
    at: DateTime<Utc>,
) -> Result<Error> {
    let requested = Requested {
        id: None,
        user_id: request.user_id.clone(),
        resource_id: request.resource_id.clone(),
        status: request.status.into(),
        timespan: request.timespan,
        note: Note::default(),
        quantity: request.quantity,
    };
    conflict(requested, blockers, at)
}

/// The conflict of a reschedule of `current` (as `write` would leave it)
/// with what is in its way.
pub(super) fn reschedule(
    current: &Reservation,
    write: &Write,
    blockers: Blockers,
    at: DateTime<Utc>,
) -> Result<Error> {
    let requested = Requested {
        id: Some(current.id),
        user_id: current.user_id.clone(),
        resource_id: current.resource_id.clone(),
        status: write.status,
        timespan: write.timespan,
        note: Note::default(),
        quantity: write.quantity,
    };
    conflict(requested, blockers, at)
}

fn conflict(requested: Requested, blockers: Blockers, at: DateTime<Utc>) -> Result<Error> {
    let existing = blockers
        .rows
        .into_iter()
        .take(MAX_LISTED)
        .map(|mut r| {
            r.note = String::new();
            r.into_reservation(at)
        })
        .collect::<Result<Vec<_>>>()?;
    let omitted = blockers.total.saturating_sub(existing.len() as u64);
    let full = blockers
        .full
        .into_iter()
        .take(MAX_LISTED)
        .filter_map(|(start, end)| Timespan::new(start, end).ok())
        .collect();
    let mut conflict = Conflict {
        requested,
        existing,
        omitted,
        capacity: blockers.capacity.max(1),
        full,
    };
    conflict.fit();
    Ok(Error::Conflict(Box::new(conflict)))
}
