//! What a conflicting reserve or reschedule reports.

use std::fmt;

use super::{Note, Reservation, ReservationId, ReservationStatus, ResourceId, Timespan, UserId};
use crate::{pb, time::to_timestamp};

/// The reservation that could not be made (or the reschedule that could not
/// be applied).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requested {
    /// Set when an existing reservation was being rescheduled.
    pub id: Option<ReservationId>,
    /// Who asked.
    pub user_id: UserId,
    /// The resource asked for.
    pub resource_id: ResourceId,
    /// The status it would have had.
    pub status: ReservationStatus,
    /// The interval asked for.
    pub timespan: Timespan,
    /// Its note.
    pub note: Note,
    /// Units asked for (0: every unit).
    pub quantity: u32,
}

/// A reservation refused because live reservations overlap it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// What was asked for.
    pub requested: Requested,
    /// The live reservations of the resource that overlap it, by start
    /// then id: the first [`Conflict::MAX_LISTED`].
    pub existing: Vec<Reservation>,
    /// How many more overlap it than `existing` lists.
    pub omitted: u64,
    /// The resource's capacity.
    pub capacity: u32,
    /// Where, within the request's occupied span, fewer units are free
    /// than asked: in order, merged, the first [`Conflict::MAX_LISTED`].
    pub full: Vec<Timespan>,
}

impl Conflict {
    /// The most reservations a conflict lists.
    pub const MAX_LISTED: usize = 20;

    /// Cuts what the conflict lists until its status fits in
    /// [`crate::grpc::MAX_STATUS_WIRE_BYTES`] on the wire: the reservations
    /// in the way from the last (each counted in `omitted`), then the
    /// stretches where units are short. Twenty reservations fit unless
    /// their ids are long (an id is up to 64 characters of up to 4 bytes
    /// each).
    pub fn fit(&mut self) {
        use prost::Message;
        let size = |c: &Conflict| {
            crate::grpc::refusal_wire_len(
                &crate::grpc::conflict_message(c),
                pb::ReservationConflict::from(c).encoded_len(),
            )
        };
        while size(self) > crate::grpc::MAX_STATUS_WIRE_BYTES {
            if self.existing.pop().is_some() {
                self.omitted += 1;
            } else if self.full.pop().is_none() {
                return;
            }
        }
    }
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.existing.len() as u64 + self.omitted;
        write!(
            f,
            "{} [{}, {}) conflicts with {n} live reservation{}",
            self.requested.resource_id,
            self.requested.timespan.start().to_rfc3339(),
            self.requested.timespan.end().to_rfc3339(),
            if n == 1 { "" } else { "s" },
        )?;
        // Only the ids the caller may see: redacted reservations have none.
        let shown: Vec<_> = self.existing.iter().filter(|r| !r.is_redacted()).collect();
        for (i, r) in shown.iter().enumerate() {
            write!(f, "{}{}", if i == 0 { ": " } else { ", " }, r.id)?;
        }
        let more = self.omitted + (self.existing.len() - shown.len()) as u64;
        if more > 0 && !shown.is_empty() {
            write!(f, " and {more} more")?;
        }
        Ok(())
    }
}

impl From<&Conflict> for pb::ReservationConflict {
    fn from(c: &Conflict) -> Self {
        let r = &c.requested;
        pb::ReservationConflict {
            requested: Some(pb::Reservation {
                id: r.id.map(|id| id.to_string()).unwrap_or_default(),
                user_id: r.user_id.to_string(),
                status: pb::ReservationStatus::from(r.status).into(),
                resource_id: r.resource_id.to_string(),
                start: Some(to_timestamp(r.timespan.start())),
                end: Some(to_timestamp(r.timespan.end())),
                note: r.note.to_string(),
                quantity: r.quantity,
                ..Default::default()
            }),
            existing: c.existing.iter().cloned().map(Into::into).collect(),
            capacity: c.capacity,
            omitted: u32::try_from(c.omitted).unwrap_or(u32::MAX),
            full: c
                .full
                .iter()
                // Buffers may carry a stretch past the years a Timestamp
                // holds.
                .map(|t| pb::Interval {
                    start: Some(crate::time::to_timestamp_within(t.start())),
                    end: Some(crate::time::to_timestamp_within(t.end())),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeDelta, Utc};

    use super::*;

    /// A stretch that buffers carry past year 9999 is sent as ending at
    /// the last instant a Timestamp holds: every client can read it.
    #[test]
    fn full_stretches_past_the_last_timestamp_stay_readable() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let late = Timespan::new(at("9999-12-31T22:00:00Z"), at("9999-12-31T23:00:00Z")).unwrap();
        let conflict = Conflict {
            requested: Requested {
                id: None,
                user_id: UserId::parse("ann").unwrap(),
                resource_id: ResourceId::parse("vault").unwrap(),
                status: ReservationStatus::Pending,
                timespan: late,
                note: Note::default(),
                quantity: 1,
            },
            existing: Vec::new(),
            omitted: 0,
            capacity: 1,
            full: vec![
                Timespan::new(
                    at("9999-12-31T21:00:00Z"),
                    at("9999-12-31T23:00:00Z") + TimeDelta::days(3660),
                )
                .unwrap(),
            ],
        };
        let wire = pb::ReservationConflict::from(&conflict);
        let full = &wire.full[0];
        for ts in [&full.start, &full.end] {
            let ts = ts.as_ref().unwrap();
            assert!(crate::time::from_timestamp(ts).is_ok(), "{ts:?}");
        }
        let end = crate::time::from_timestamp(full.end.as_ref().unwrap()).unwrap();
        assert_eq!(end.timestamp(), crate::time::MAX_TIMESTAMP_SECONDS);
    }
}
