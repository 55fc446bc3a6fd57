//! Bookings (several reservations made, confirmed and cancelled together,
//! all or nothing) and arrival (check-in, check-out).

use abi::{
    Ask, AskKind, Booking, BookingId, Error, NewBooking, PartRejection, Reservation, ReservationId,
    ReservationStatus, ReservationUpdate, Result, Rule, Rules, StatusChange, Timespan, UserId,
    Violation,
};
use chrono::{DateTime, TimeDelta, Utc};

use super::{Engine, conflict, plan, write};
use crate::{
    dialect::{
        Booked, BookingPlacement, Dialect, Placed, Placement, Revised, Revision, StoredBooking,
    },
    row::StoredReservation,
};

/// How many times a booking is placed again when a resource's rules
/// changed under it before the call gives up (retryable).
const BOOK_ATTEMPTS: u32 = 8;

impl<D: Dialect> Engine<D> {
    pub(super) async fn book_all(&self, booking: NewBooking) -> Result<Booking> {
        // A dry run of a key already used answers as its retry would: what
        // the key made (without ids, as every dry answer), or the key's
        // misuse.
        if booking.validate_only
            && let Some(key) = &booking.request_id
            && let Some((stored, fingerprint)) = self
                .dialect
                .booking_by_request(&booking.user_id, key)
                .await?
        {
            write::same_request(booking.fingerprint(), fingerprint)?;
            let made = stored_booking(stored, self.now())?;
            return Ok(Booking {
                id: BookingId::from(uuid::Uuid::nil()),
                parts: made
                    .parts
                    .into_iter()
                    .map(|p| Reservation {
                        id: ReservationId::from(uuid::Uuid::nil()),
                        booking_id: None,
                        ..p
                    })
                    .collect(),
                ..made
            });
        }
        let booking_id = BookingId::new();
        for _ in 0..BOOK_ATTEMPTS {
            let now = self.now();
            let mut judged = Vec::new();
            let mut asks = Vec::with_capacity(booking.parts.len());
            let mut parts = Vec::with_capacity(booking.parts.len());
            let mut holds = Vec::new();
            for (i, part) in booking.parts.iter().enumerate() {
                let known = self.rules.get(&part.resource_id);
                let status: ReservationStatus = part.status.into();
                let ask = Ask {
                    span: part.timespan,
                    quantity: part.quantity,
                    status,
                    hold: booking.hold,
                    kind: AskKind::New,
                    override_policy: booking.override_policy,
                };
                let broken = known.rules.judge(&ask, now);
                if !broken.is_empty() {
                    judged.push((i, broken));
                }
                if status == ReservationStatus::Pending {
                    holds.push(
                        known
                            .rules
                            .hold_length(booking.hold, self.options.default_hold),
                    );
                }
                parts.push(Placement {
                    id: ReservationId::new(),
                    user_id: booking.user_id.clone(),
                    resource_id: part.resource_id.clone(),
                    timespan: part.timespan,
                    status,
                    note: part.note.clone(),
                    hold: None,
                    request: None,
                    quantity: part.quantity,
                    buffers: if status == ReservationStatus::Blocked {
                        (TimeDelta::zero(), TimeDelta::zero())
                    } else {
                        known.rules.buffers()
                    },
                    resource_version: known.version,
                    dry: booking.validate_only,
                    release_at: match status {
                        ReservationStatus::Confirmed => {
                            known.rules.release_at(part.timespan.start())
                        }
                        _ => None,
                    },
                    accept_until: known.rules.accept_until(&ask),
                });
                asks.push((ask, known));
            }
            // A keyed booking refused only because a notice has just passed
            // may be the retry of one still on its way to the store: the
            // store answers what the key made, under the locks, or refuses
            // it by the time it writes (as it would the first call).
            let keyed = booking.request_id.is_some() && !booking.validate_only;
            let mut refused = Vec::new();
            if !(keyed && judged.iter().all(|(_, broken)| Rules::only_late(broken))) {
                for (i, broken) in judged {
                    refused.push(PartRejection::not_allowed(
                        i,
                        booking.parts[i].resource_id.clone(),
                        broken,
                    ));
                }
            }
            // One expiry for every pending part: the shortest any part's
            // resource allows (never, only when none sets a limit).
            let hold = holds.into_iter().flatten().min();
            for p in &mut parts {
                if p.status == ReservationStatus::Pending {
                    p.hold = hold;
                }
            }
            // Refused by a policy: the other parts' conflicts are still
            // worth naming, so they are placed (and undone) too.
            let placement = BookingPlacement {
                id: booking_id,
                user_id: booking.user_id.clone(),
                // Looked up even when a rule refuses a part now: a retry of
                // a booking that went ahead returns it (its notice passed).
                request: booking
                    .request_id
                    .clone()
                    .filter(|_| !booking.validate_only)
                    .map(|key| (key, booking.fingerprint())),
                dry: booking.validate_only || !refused.is_empty(),
                parts,
            };
            let (at, booked) = self.booker.write(placement.clone()).await?;
            match booked {
                Booked::Existing { parts, fingerprint } => {
                    write::same_request(booking.fingerprint(), fingerprint)?;
                    return booking_of(parts, at);
                }
                Booked::Made(placed) if refused.is_empty() => {
                    let made = placed
                        .into_iter()
                        .zip(&placement.parts)
                        .map(|(placed, p)| match placed {
                            Placed::Created(row) => row.into_reservation(at),
                            _ => Ok(preview(p, at)),
                        })
                        .collect::<Result<Vec<_>>>()?;
                    return Ok(Booking {
                        id: if booking.validate_only {
                            BookingId::from(uuid::Uuid::nil())
                        } else {
                            booking_id
                        },
                        user_id: booking.user_id.clone(),
                        parts: made,
                        created_at: at,
                    });
                }
                Booked::Made(_) => {}
                Booked::Refused(placed) => {
                    if placed.iter().any(|p| matches!(p, Placed::Stale)) {
                        for p in &placement.parts {
                            self.refresh_rules(&p.resource_id).await?;
                        }
                        continue;
                    }
                    for (i, (placed, part)) in placed.into_iter().zip(&booking.parts).enumerate() {
                        if refused.iter().any(|r| r.index as usize == i) {
                            continue;
                        }
                        match placed {
                            Placed::Blocked(blockers) => {
                                if let Error::Conflict(c) =
                                    conflict::new_reservation(part, blockers, at)?
                                {
                                    refused.push(PartRejection::taken(i, *c));
                                }
                            }
                            // Judged again by the time it would have been
                            // written.
                            Placed::Late => {
                                let (ask, known) = &asks[i];
                                refused.push(PartRejection::not_allowed(
                                    i,
                                    part.resource_id.clone(),
                                    known.rules.judge(ask, at),
                                ));
                            }
                            _ => {}
                        }
                    }
                }
            }
            refused.sort_by_key(|r| r.index);
            abi::PartRejection::fit(&mut refused);
            metrics::counter!("rsvp_booking_refusals_total").increment(1);
            return Err(Error::BookingRejected(refused));
        }
        Err(Error::Aborted {
            reason: "the resources kept changing; try again".into(),
            source: format!("{BOOK_ATTEMPTS} bookings went stale").into(),
        })
    }

    pub(super) async fn read_booking(&self, id: BookingId) -> Result<Booking> {
        let stored = self
            .dialect
            .booking(id)
            .await?
            .ok_or(Error::BookingNotFound(id))?;
        let now = self.now();
        stored_booking(stored, now)
    }

    /// Changes every part of a booking that `change` applies to, all or
    /// nothing.
    pub(super) async fn change_booking(
        &self,
        id: BookingId,
        change: StatusChange,
    ) -> Result<Booking> {
        // After a stale answer, the time the store judged by.
        let mut now = self.now();
        for _ in 0..BOOK_ATTEMPTS {
            let stored = self
                .dialect
                .booking(id)
                .await?
                .ok_or(Error::BookingNotFound(id))?;
            let mut revisions = Vec::new();
            let mut broken = Vec::new();
            // The resource of each revision, and the rules each refusal
            // was judged by.
            let mut revised_resources = Vec::new();
            let mut refused_by = Vec::new();
            for (i, row) in stored.parts.iter().enumerate() {
                let current = row.clone().into_reservation(now)?;
                let applies = match change {
                    // Holds, and holds that expired (which fail the call);
                    // parts cancelled on purpose, or past confirmed, stay.
                    StatusChange::Confirm => matches!(
                        current.status,
                        ReservationStatus::Pending | ReservationStatus::Expired
                    ),
                    // Checked-in parts, and parts that ended, stay.
                    _ => matches!(
                        current.status,
                        ReservationStatus::Pending
                            | ReservationStatus::Confirmed
                            | ReservationStatus::Blocked
                    ),
                };
                if !applies {
                    continue;
                }
                let update = ReservationUpdate::status(current.id, change);
                let Some(write) =
                    plan::plan_update(&current, row, &update).map_err(|e| match e {
                        Error::FailedPrecondition(why) => Error::FailedPrecondition(
                            format!("part {i} ({}): {why}", current.resource_id).into(),
                        ),
                        other => other,
                    })?
                else {
                    continue;
                };
                let known = self.rules.get(&current.resource_id);
                if change == StatusChange::Cancel
                    && let Some(v) =
                        known
                            .rules
                            .cancel_too_late(current.status, current.timespan.start(), now)
                {
                    broken.push(PartRejection::not_allowed(
                        i,
                        current.resource_id.clone(),
                        vec![v],
                    ));
                    refused_by.push((current.resource_id.clone(), known));
                    continue;
                }
                let expires_at = match write.status {
                    ReservationStatus::Confirmed => known.rules.release_at(write.timespan.start()),
                    _ => write.expires_at,
                };
                revised_resources.push(current.resource_id.clone());
                revisions.push(Revision {
                    id: current.id,
                    version: row.version,
                    seen_lapsed: row.lapsed_at(now),
                    check: false,
                    status: write.status,
                    note: write.note,
                    timespan: write.timespan,
                    expires_at,
                    quantity: write.quantity,
                    resource_version: Some(known.version),
                    checked_in_at: row.checked_in_at,
                    checked_out_at: row.checked_out_at,
                    // A cancel is written within its cancel notice or not
                    // at all.
                    accept_until: match change {
                        StatusChange::Cancel => known
                            .rules
                            .cancel_until(current.status, current.timespan.start()),
                        _ => None,
                    },
                });
            }
            if !broken.is_empty() {
                if self.any_rules_changed(&refused_by).await? {
                    continue;
                }
                abi::PartRejection::fit(&mut broken);
                return Err(Error::BookingRejected(broken));
            }
            if revisions.is_empty() {
                return stored_booking(stored, now);
            }
            let (at, revised) = self.dialect.revise_all(&revisions, &self.time).await?;
            if revised.iter().all(|r| matches!(r, Revised::Done(_))) {
                let fresh = self
                    .dialect
                    .booking(id)
                    .await?
                    .ok_or(Error::BookingNotFound(id))?;
                return stored_booking(fresh, at);
            }
            if revised.iter().any(|r| matches!(r, Revised::Missing)) {
                return Err(Error::BookingNotFound(id));
            }
            // A part or its resource's rules changed under the call (or a
            // hold lapsed): plan again from the parts and the rules as they
            // are.
            now = at;
            for (resource, revised) in revised_resources.iter().zip(&revised) {
                if matches!(revised, Revised::Stale(_)) {
                    self.refresh_rules(resource).await?;
                }
            }
        }
        Err(Error::Aborted {
            reason: "the booking kept changing; try again".into(),
            source: format!("{BOOK_ATTEMPTS} plans of booking {id} went stale").into(),
        })
    }

    /// Checks a confirmed reservation in, or a checked-in one out.
    pub(super) async fn arrive(&self, id: ReservationId, arriving: bool) -> Result<Reservation> {
        // After a stale answer, the time the store judged by.
        let mut now = self.now();
        for _ in 0..BOOK_ATTEMPTS {
            let row = self.dialect.read(id).await?.ok_or(Error::NotFound(id))?;
            let current = row.clone().into_reservation(now)?;
            let resource = current.resource_id.clone();
            let known = self.rules.get(&resource);
            let (start, end) = (current.timespan.start(), current.timespan.end());
            let revision = |status, timespan: Timespan, checked_in_at, checked_out_at| Revision {
                // A check-in is written before the end or not at all.
                accept_until: arriving.then(|| end - TimeDelta::microseconds(1)),
                id,
                version: row.version,
                seen_lapsed: row.lapsed_at(now),
                check: false,
                status,
                note: current.note.clone(),
                timespan,
                expires_at: None,
                quantity: current.quantity,
                resource_version: Some(known.version),
                checked_in_at,
                checked_out_at,
            };
            let revision = if arriving {
                match current.status {
                    ReservationStatus::CheckedIn => return Ok(current),
                    ReservationStatus::Confirmed => {}
                    other => {
                        return Err(Error::FailedPrecondition(
                            format!("cannot check in a reservation that is {other}").into(),
                        ));
                    }
                }
                let opens = known.rules.check_in_opens(start);
                if now < opens || now >= end {
                    if now < opens && self.rules_changed(&resource, &known).await?.is_some() {
                        continue;
                    }
                    metrics::counter!("rsvp_policy_refusals_total", "write" => "check_in")
                        .increment(1);
                    return Err(Error::Policy(vec![Violation {
                        rule: Rule::CheckInWindow,
                        message: if now < opens {
                            format!("check-in opens at {}", opens.to_rfc3339())
                        } else {
                            format!("the reservation ended at {}", end.to_rfc3339())
                        },
                    }]));
                }
                revision(
                    ReservationStatus::CheckedIn,
                    current.timespan,
                    Some(now),
                    None,
                )
            } else {
                match current.status {
                    ReservationStatus::Completed => return Ok(current),
                    ReservationStatus::CheckedIn => {}
                    other => {
                        return Err(Error::FailedPrecondition(
                            format!("cannot check out a reservation that is {other}").into(),
                        ));
                    }
                }
                if now < start {
                    return Err(Error::FailedPrecondition(
                        format!("the reservation starts at {}", start.to_rfc3339()).into(),
                    ));
                }
                let end = if now < end {
                    early_end(start, end, now, &known.rules)
                } else {
                    end
                };
                let span = Timespan::new(start, end)
                    .map_err(|e| Error::internal(format!("an early check-out's span: {e}")))?;
                revision(
                    ReservationStatus::Completed,
                    span,
                    row.checked_in_at,
                    Some(now),
                )
            };
            let outcome = self.dialect.revise(&revision, &self.time, 0).await?;
            match outcome.revised {
                Revised::Done(done) => return done.into_reservation(outcome.at),
                Revised::Missing => return Err(Error::NotFound(id)),
                Revised::Stale(_) | Revised::Blocked(_) => {
                    now = outcome.at;
                    self.refresh_rules(&resource).await?;
                }
            }
        }
        Err(Error::Aborted {
            reason: "the reservation kept changing; try again".into(),
            source: format!("{BOOK_ATTEMPTS} plans of {id} went stale").into(),
        })
    }
}

/// The end of a stay checked out early at `now`: `now` rounded up to the
/// resource's grid (counted from local midnight, as the grid of starts and
/// ends is), never past the planned end and never at the start (then the
/// next grid point, or one microsecond, after it).
fn early_end(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    now: DateTime<Utc>,
    rules: &abi::Rules,
) -> DateTime<Utc> {
    let from = now.max(start + TimeDelta::microseconds(1));
    match rules.policy.granularity.filter(|g| *g > TimeDelta::zero()) {
        Some(grid) => rules
            .schedule
            .grid_points(from, end, grid)
            .first()
            .copied()
            .unwrap_or(end),
        None => from.min(end),
    }
}

/// A booking as the store has it, read at `now`.
fn stored_booking(stored: StoredBooking, now: DateTime<Utc>) -> Result<Booking> {
    Ok(Booking {
        id: BookingId::from(stored.id),
        user_id: UserId::parse(stored.user_id)
            .map_err(|e| Error::internal(format!("stored booking user: {e}")))?,
        parts: stored
            .parts
            .into_iter()
            .map(|p| p.into_reservation(now))
            .collect::<Result<_>>()?,
        created_at: stored.created_at,
    })
}

/// A booking made before under the same key, from its parts.
fn booking_of(parts: Vec<StoredReservation>, at: DateTime<Utc>) -> Result<Booking> {
    let first = parts
        .first()
        .ok_or_else(|| Error::internal("a stored booking has no parts"))?;
    let id = first
        .booking_id
        .ok_or_else(|| Error::internal("a booking's part names no booking"))?;
    let (user_id, created_at) = (first.user_id.clone(), first.created_at);
    stored_booking(
        StoredBooking {
            id,
            user_id,
            created_at,
            parts,
        },
        at,
    )
}

/// What a dry booking answers for a part: the reservation it would make,
/// without an id.
fn preview(p: &Placement, at: DateTime<Utc>) -> Reservation {
    Reservation {
        id: ReservationId::from(uuid::Uuid::nil()),
        user_id: p.user_id.clone(),
        resource_id: p.resource_id.clone(),
        status: p.status,
        timespan: p.timespan,
        note: p.note.clone(),
        created_at: at,
        updated_at: at,
        expires_at: match p.status {
            ReservationStatus::Pending => p.hold.and_then(|h| at.checked_add_signed(h)),
            _ => None,
        },
        quantity: p.quantity,
        booking_id: None,
        checked_in_at: None,
        checked_out_at: None,
    }
}
