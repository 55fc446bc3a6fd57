//! What a reserve and an update do, for every store.
//!
//! A reserve becomes a [`Placement`]: everything decided but the time,
//! which the store reads once it holds the resource's lock. An update is
//! planned from the row as read and applied only if the row is still as
//! read ([`Revision`]); otherwise it is planned again from the row the store
//! reports. Either way the store refuses a write that live reservations are
//! in the way of, and changes nothing when it refuses.

use abi::{Error, NewReservation, Reservation, ReservationId, ReservationUpdate, Result};
use chrono::{DateTime, Utc};

use super::{Engine, conflict, plan};
use crate::{
    db_error::retry_aborted,
    dialect::{Dialect, Placed, Placement, Revised, Revision},
};

/// How many times an update is planned again when its row keeps changing
/// under it before the call gives up (retryable).
const PLAN_ATTEMPTS: u32 = 8;

impl<D: Dialect> Engine<D> {
    pub(super) async fn reserve_one(&self, request: NewReservation) -> Result<Reservation> {
        let placement = Placement {
            id: ReservationId::new(),
            user_id: request.user_id.clone(),
            resource_id: request.resource_id.clone(),
            timespan: request.timespan,
            status: request.status.into(),
            note: request.note.clone(),
            hold: request.hold_length(self.options.default_hold),
            request: request
                .request_id
                .clone()
                .map(|key| (key, request.fingerprint())),
        };
        let (at, placed) = self.placer.place(placement).await?;
        answer(&request, placed, at)
    }

    pub(super) async fn update_one(&self, update: ReservationUpdate) -> Result<Reservation> {
        let mut now = self.now();
        let mut row = self
            .dialect
            .read(update.id)
            .await?
            .ok_or(Error::NotFound(update.id))?;
        for _ in 0..PLAN_ATTEMPTS {
            let seen_lapsed = row.lapsed_at(now);
            let stored_status = row.status;
            let current = row.clone().into_reservation(now)?;
            let Some(write) = plan::plan_update(&current, stored_status, &update)? else {
                return Ok(current);
            };
            let revision = Revision {
                id: update.id,
                version: row.version,
                seen_lapsed,
                reschedule: write.reschedule,
                status: write.status,
                note: write.note.clone(),
                timespan: write.timespan,
                expires_at: write.expires_at,
            };
            let outcome = retry_aborted(|| {
                self.dialect
                    .revise(&revision, &self.time, conflict::MAX_LISTED as u32)
            })
            .await?;
            metrics::histogram!("rsvp_lock_wait_seconds", "write" => "revise")
                .record(outcome.lock_wait.as_secs_f64());
            match outcome.revised {
                Revised::Done(done) => return done.into_reservation(outcome.at),
                Revised::Blocked(blockers) => {
                    return Err(conflict::reschedule(
                        &current, &write, blockers, outcome.at,
                    )?);
                }
                Revised::Missing => return Err(Error::NotFound(update.id)),
                // Plan again from the row as it is, judged by the time the
                // store judged it by.
                Revised::Stale(latest) => (row, now) = (latest, outcome.at),
            }
        }
        Err(Error::Aborted {
            reason: "the reservation kept changing; try again".into(),
            source: format!("{PLAN_ATTEMPTS} plans of {} went stale", update.id).into(),
        })
    }
}

/// The answer to a reserve, from what the store did with its placement.
fn answer(request: &NewReservation, placed: Placed, at: DateTime<Utc>) -> Result<Reservation> {
    match placed {
        Placed::Created(row) => row.into_reservation(at),
        Placed::Existing {
            stored,
            fingerprint,
        } => {
            check_retry(request, fingerprint)?;
            stored.into_reservation(at)
        }
        Placed::Blocked(blockers) => {
            metrics::counter!("rsvp_conflicts_total", "write" => "reserve").increment(1);
            Err(conflict::new_reservation(request, blockers, at)?)
        }
    }
}

/// Checks that a reservation found under the request's `(user, request_id)`
/// was made by the same request (a retry), not a different one reusing the
/// key.
///
/// # Errors
/// [`Error::InvalidArgument`] on `request_id` when the requests differ.
fn check_retry(request: &NewReservation, stored_fingerprint: Option<i64>) -> Result<()> {
    if stored_fingerprint == Some(request.fingerprint()) {
        Ok(())
    } else {
        Err(Error::invalid(
            "request_id",
            "already used by this user for a different request",
        ))
    }
}
