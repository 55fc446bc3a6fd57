//! What a reserve and an update do, for every store.
//!
//! A reserve becomes a [`Placement`]: everything decided but the time,
//! which the store reads once it holds the resource's lock. An update is
//! planned from the row as read and applied only if the row is still as
//! read ([`Revision`]); otherwise it is planned again from the row the store
//! reports. Either way the store refuses a write that live reservations are
//! in the way of, and changes nothing when it refuses.

use abi::{
    Ask, AskKind, Error, Hold, NewReservation, Reservation, ReservationId, ReservationStatus,
    ReservationUpdate, Result, Rules,
};
use chrono::{DateTime, TimeDelta, Utc};

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
        let status: ReservationStatus = request.status.into();
        // A dry run of a key already used answers as its retry would: what
        // the key made (without its id, as every dry answer), or the key's
        // misuse.
        if request.validate_only
            && let Some(key) = &request.request_id
            && let Some((stored, fingerprint)) =
                self.dialect.by_request(&request.user_id, key).await?
        {
            check_retry(&request, fingerprint)?;
            return Ok(Reservation {
                id: ReservationId::from(uuid::Uuid::nil()),
                ..stored.into_reservation(self.now())?
            });
        }
        for _ in 0..PLAN_ATTEMPTS {
            let known = self.rules.get(&request.resource_id);
            let ask = Ask {
                span: request.timespan,
                quantity: request.quantity,
                status,
                hold: request.hold,
                kind: AskKind::New,
                override_policy: request.override_policy,
            };
            let now = self.now();
            let broken = known.rules.judge(&ask, now);
            // A keyed reserve refused only because its notice has just
            // passed may be the retry of one still on its way to the store:
            // the store answers what the key made, under the resource's
            // lock, or refuses it by the time it writes (as it would the
            // first call, were that one to write now).
            let keyed = request.request_id.is_some() && !request.validate_only;
            let to_store = broken.is_empty() || keyed && Rules::only_late(&broken);
            if !to_store {
                // A retry of a reserve that went ahead returns what it made,
                // though the rules would refuse it now (its notice passed).
                if let Some(key) = request
                    .request_id
                    .as_ref()
                    .filter(|_| !request.validate_only)
                    && let Some((stored, fingerprint)) =
                        self.dialect.by_request(&request.user_id, key).await?
                {
                    return answer(
                        &request,
                        Placed::Existing {
                            stored,
                            fingerprint,
                        },
                        now,
                    );
                }
                if self
                    .rules_changed(&request.resource_id, &known)
                    .await?
                    .is_some()
                {
                    continue;
                }
                metrics::counter!("rsvp_policy_refusals_total", "write" => "reserve").increment(1);
                return Err(Error::Policy(broken));
            }
            let hold = match status {
                ReservationStatus::Pending => known
                    .rules
                    .hold_length(request.hold, self.options.default_hold),
                _ => None,
            };
            let placement = Placement {
                id: ReservationId::new(),
                user_id: request.user_id.clone(),
                resource_id: request.resource_id.clone(),
                timespan: request.timespan,
                status,
                note: request.note.clone(),
                hold,
                request: request
                    .request_id
                    .clone()
                    .filter(|_| !request.validate_only)
                    .map(|key| (key, request.fingerprint())),
                quantity: request.quantity,
                // Blocks have no buffers.
                buffers: if status == ReservationStatus::Blocked {
                    (TimeDelta::zero(), TimeDelta::zero())
                } else {
                    known.rules.buffers()
                },
                resource_version: known.version,
                dry: request.validate_only,
                release_at: match status {
                    ReservationStatus::Confirmed => {
                        known.rules.release_at(request.timespan.start())
                    }
                    _ => None,
                },
                accept_until: known.rules.accept_until(&ask),
            };
            let (at, placed) = self.placer.write(placement).await?;
            match placed {
                Placed::Stale => {
                    self.refresh_rules(&request.resource_id).await?;
                }
                Placed::Late => {
                    // Judged again by the time it would have been written.
                    let broken = known.rules.judge(&ask, at);
                    if !broken.is_empty() {
                        metrics::counter!("rsvp_policy_refusals_total", "write" => "reserve")
                            .increment(1);
                        return Err(Error::Policy(broken));
                    }
                }
                Placed::Fits => return Ok(preview(&request, at, hold)),
                placed => return answer(&request, placed, at),
            }
        }
        Err(Error::Aborted {
            reason: "the resource kept changing; try again".into(),
            source: format!(
                "{PLAN_ATTEMPTS} placements on {} went stale",
                request.resource_id
            )
            .into(),
        })
    }

    pub(super) async fn update_one(&self, update: ReservationUpdate) -> Result<Reservation> {
        let mut now = self.now();
        let mut row = self
            .dialect
            .read(update.id)
            .await?
            .ok_or(Error::NotFound(update.id))?;
        let resource = abi::ResourceId::parse(row.resource_id.clone())
            .map_err(|e| Error::internal(format!("stored resource id: {e}")))?;
        let mut known = self.rules.get(&resource);
        for _ in 0..PLAN_ATTEMPTS {
            let seen_lapsed = row.lapsed_at(now);
            let current = row.clone().into_reservation(now)?;
            let Some(write) = plan::plan_update(&current, &row, &update)? else {
                return Ok(current);
            };
            if write.status == ReservationStatus::NoShow
                && current.status != ReservationStatus::NoShow
                && now < current.timespan.start()
            {
                return Err(Error::FailedPrecondition(
                    "a reservation is marked a no-show only after its start".into(),
                ));
            }
            // A confirmed reservation not checked in is released at its
            // resource's time after its start: set when it is confirmed or
            // moved, kept otherwise.
            let expires_at = match write.status {
                ReservationStatus::Confirmed
                    if current.status == ReservationStatus::Pending || write.reschedule =>
                {
                    known.rules.release_at(write.timespan.start())
                }
                ReservationStatus::Confirmed => row.expires_at,
                _ => write.expires_at,
            };
            let accept_until = match judge_update(&known.rules, &current, &write, &update, now) {
                Ok(until) => until,
                Err(refused) => {
                    if let Some(fresh) = self.rules_changed(&resource, &known).await? {
                        known = fresh;
                        continue;
                    }
                    metrics::counter!("rsvp_policy_refusals_total", "write" => "update")
                        .increment(1);
                    return Err(refused);
                }
            };
            let revision = Revision {
                id: update.id,
                version: row.version,
                seen_lapsed,
                check: write.check,
                status: write.status,
                note: write.note.clone(),
                timespan: write.timespan,
                expires_at,
                quantity: write.quantity,
                // A change of the note alone asks no rule.
                resource_version: (write.check || write.status != current.status)
                    .then_some(known.version),
                checked_in_at: row.checked_in_at,
                checked_out_at: row.checked_out_at,
                accept_until,
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
                    metrics::counter!("rsvp_conflicts_total", "write" => "revise").increment(1);
                    return Err(conflict::reschedule(
                        &current, &write, blockers, outcome.at,
                    )?);
                }
                Revised::Missing => return Err(Error::NotFound(update.id)),
                // Plan again from the row as it is, judged by the time the
                // store judged it by (past the plan's notice, say), and by
                // the resource as it is.
                Revised::Stale(latest) => {
                    (row, now) = (latest, outcome.at);
                    known = self.refresh_rules(&resource).await?;
                }
            }
        }
        Err(Error::Aborted {
            reason: "the reservation kept changing; try again".into(),
            source: format!("{PLAN_ATTEMPTS} plans of {} went stale", update.id).into(),
        })
    }
}

/// Judges an update by the resource's rules: a reschedule or more units
/// as a new reservation would be (with the cancel notice of a confirmed
/// one), a cancel of a confirmed reservation by the cancel notice. The
/// last write time at which the judgment still holds (`None`: any time).
///
/// # Errors
/// [`Error::Policy`] listing every rule broken.
fn judge_update(
    rules: &Rules,
    current: &Reservation,
    write: &plan::Write,
    update: &ReservationUpdate,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>> {
    let mut broken = Vec::new();
    let mut until = None;
    if write.check {
        let ask = Ask {
            span: write.timespan,
            quantity: write.quantity,
            status: write.status,
            hold: Hold::Default,
            kind: AskKind::Change {
                status: current.status,
                start: current.timespan.start(),
                moves: write.reschedule,
            },
            override_policy: update.override_policy,
        };
        broken = rules.judge(&ask, now);
        until = rules.accept_until(&ask);
    }
    if write.status == ReservationStatus::Cancelled
        && current.status != ReservationStatus::Cancelled
        && !update.override_policy
    {
        let start = current.timespan.start();
        if let Some(v) = rules.cancel_too_late(current.status, start, now) {
            broken.push(v);
        }
        until = abi::time::earliest(until, rules.cancel_until(current.status, start));
    }
    if broken.is_empty() {
        Ok(until)
    } else {
        Err(Error::Policy(broken))
    }
}

/// What a reserve with `validate_only` answers: the reservation it would
/// have made, without an id.
fn preview(request: &NewReservation, at: DateTime<Utc>, hold: Option<TimeDelta>) -> Reservation {
    let status: ReservationStatus = request.status.into();
    Reservation {
        id: ReservationId::from(uuid::Uuid::nil()),
        user_id: request.user_id.clone(),
        resource_id: request.resource_id.clone(),
        status,
        timespan: request.timespan,
        note: request.note.clone(),
        created_at: at,
        updated_at: at,
        expires_at: match status {
            ReservationStatus::Pending => hold.and_then(|h| at.checked_add_signed(h)),
            _ => None,
        },
        quantity: request.quantity,
        booking_id: None,
        checked_in_at: None,
        checked_out_at: None,
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
        Placed::Stale | Placed::Late | Placed::Fits => Err(Error::internal(
            "a placement's stale, late or dry outcome reached its answer",
        )),
    }
}

/// Checks that a reservation found under the request's `(user, request_id)`
/// was made by the same request (a retry), not a different one reusing the
/// key.
///
/// # Errors
/// [`Error::InvalidArgument`] on `request_id` when the requests differ.
fn check_retry(request: &NewReservation, stored_fingerprint: Option<i64>) -> Result<()> {
    same_request(request.fingerprint(), stored_fingerprint)
}

/// Checks that what an idempotency key made was made by a request with the
/// digest `asked` (a retry), not a different one reusing the key.
///
/// # Errors
/// [`Error::InvalidArgument`] on `request_id` when the requests differ.
pub(super) fn same_request(asked: i64, stored: Option<i64>) -> Result<()> {
    if stored == Some(asked) {
        Ok(())
    } else {
        Err(Error::invalid(
            "request_id",
            "already used by this user for a different request",
        ))
    }
}
