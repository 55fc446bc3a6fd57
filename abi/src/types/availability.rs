//! Availability: a resource's window cut into segments of constant state,
//! and the slots a Reserve would accept, from the units in use that a
//! store reads in one snapshot. The slots are judged by [`Rules::judge`],
//! the function Reserve asks, and by the same capacity arithmetic, so a
//! slot listed is a slot Reserve accepts at that moment.

use chrono::{DateTime, TimeDelta, Utc};

use super::{
    Ask, AskKind, Hold, ReservationStatus, ResourceId, Rules, Timespan, reservation::required_time,
};
use crate::{
    Error,
    error::FieldContext,
    pb,
    time::{from_duration, micros_up, to_timestamp},
};

/// The most resources one Availability request asks about.
pub const MAX_AVAILABILITY_RESOURCES: usize = 100;
/// The longest window of one Availability request, in days.
pub const MAX_AVAILABILITY_DAYS: i64 = 92;
/// The largest Availability answer, encoded.
pub const MAX_AVAILABILITY_BYTES: usize = 4 << 20;

/// What an Availability request asks, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvailabilityRequest {
    /// 1 to [`MAX_AVAILABILITY_RESOURCES`] resources, each once, in the
    /// order asked.
    pub resource_ids: Vec<ResourceId>,
    /// At most [`MAX_AVAILABILITY_DAYS`] long.
    pub window: Timespan,
    /// Units wanted (at least 1).
    pub quantity: u32,
    /// The slots to list, if any: their length, and the spacing of their
    /// starts (unset: the resource's granularity, else the length).
    pub slot: Option<(TimeDelta, Option<TimeDelta>)>,
}

impl AvailabilityRequest {
    /// Checks an Availability request.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the field: no resources or more
    /// than 100, a window longer than 92 days, a slot length or step that
    /// is not positive.
    pub fn new(
        resource_ids: Vec<ResourceId>,
        window: Timespan,
        quantity: u32,
        slot: Option<(TimeDelta, Option<TimeDelta>)>,
    ) -> Result<Self, Error> {
        if resource_ids.is_empty() || resource_ids.len() > MAX_AVAILABILITY_RESOURCES {
            return Err(Error::invalid(
                "resource_ids",
                format!("must name 1 to {MAX_AVAILABILITY_RESOURCES} resources"),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(twice) = resource_ids.iter().find(|id| !seen.insert(*id)) {
            return Err(Error::invalid(
                "resource_ids",
                format!("names {twice} twice"),
            ));
        }
        if window.end() - window.start() > TimeDelta::days(MAX_AVAILABILITY_DAYS) {
            return Err(Error::invalid(
                "end",
                format!("the window must be at most {MAX_AVAILABILITY_DAYS} days long"),
            ));
        }
        if let Some((duration, step)) = slot {
            if duration <= TimeDelta::zero() || duration > TimeDelta::days(MAX_AVAILABILITY_DAYS) {
                return Err(Error::invalid(
                    "slot_duration",
                    "must be positive and at most the longest window",
                ));
            }
            if step.is_some_and(|s| s < TimeDelta::minutes(1)) {
                return Err(Error::invalid("slot_step", "must be at least a minute"));
            }
        }
        Ok(AvailabilityRequest {
            resource_ids,
            window,
            quantity: quantity.max(1),
            slot,
        })
    }
}

impl TryFrom<pb::AvailabilityRequest> for AvailabilityRequest {
    type Error = Error;

    fn try_from(r: pb::AvailabilityRequest) -> Result<Self, Error> {
        let ids = r
            .resource_ids
            .into_iter()
            .map(|id| ResourceId::parse(id).field("resource_ids"))
            .collect::<Result<Vec<_>, _>>()?;
        let start = required_time(r.start.as_ref(), "start")?;
        let end = required_time(r.end.as_ref(), "end")?;
        let window = Timespan::new(start, end).field("end")?;
        let duration = r
            .slot_duration
            .as_ref()
            .map(from_duration)
            .transpose()
            .field("slot_duration")?;
        let step = r
            .slot_step
            .as_ref()
            .map(from_duration)
            .transpose()
            .field("slot_step")?;
        if step.is_some() && duration.is_none() {
            return Err(Error::invalid("slot_step", "needs slot_duration"));
        }
        AvailabilityRequest::new(ids, window, r.quantity, duration.map(|d| (d, step)))
    }
}

impl From<AvailabilityAnswer> for pb::AvailabilityResponse {
    fn from(a: AvailabilityAnswer) -> Self {
        pb::AvailabilityResponse {
            resources: a
                .resources
                .into_iter()
                .map(|r| pb::ResourceAvailability {
                    resource_id: r.resource_id.to_string(),
                    capacity: r.capacity,
                    segments: r
                        .availability
                        .segments
                        .iter()
                        .map(|s| pb::AvailabilitySegment {
                            start: Some(to_timestamp(s.start)),
                            end: Some(to_timestamp(s.end)),
                            free: s.free,
                            held: s.held,
                            open: s.open,
                        })
                        .collect(),
                    slots: r
                        .availability
                        .slots
                        .iter()
                        .map(|s| pb::Slot {
                            start: Some(to_timestamp(s.span.start())),
                            end: Some(to_timestamp(s.span.end())),
                            free: s.free,
                        })
                        .collect(),
                    deleted: r.deleted,
                })
                .collect(),
            as_of_change_id: a.as_of_change_id,
        }
    }
}

/// One resource's part of an Availability answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceAvailability {
    /// The resource.
    pub resource_id: ResourceId,
    /// Its capacity (1 if never registered).
    pub capacity: u32,
    /// Deleted: no segments, no slots.
    pub deleted: bool,
    /// Its segments and slots.
    pub availability: Availability,
}

/// An Availability answer: one snapshot of every resource asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvailabilityAnswer {
    /// In the order asked.
    pub resources: Vec<ResourceAvailability>,
    /// The change-feed position the answer reflects: every change up to it
    /// (later ones may be reflected too).
    pub as_of_change_id: i64,
}

impl Rules {
    /// The spacing of slot starts when a request gives none: the
    /// resource's granularity, else the slot's length.
    pub fn slot_step(&self, duration: TimeDelta) -> TimeDelta {
        self.policy
            .granularity
            .filter(|g| *g > TimeDelta::zero())
            .unwrap_or(duration)
    }
}

/// Units in use over a stretch of time, as a store reads them: pieces in
/// order, not overlapping; time outside every piece has nothing in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// Where the piece starts.
    pub start: DateTime<Utc>,
    /// Where it ends.
    pub end: DateTime<Utc>,
    /// Units held by live reservations there, buffers included (an overdue
    /// hold holds nothing; a block of quantity 0 holds every unit).
    pub used: u64,
    /// Of those, the units held by pending holds.
    pub held: u64,
}

impl Usage {
    /// The pieces of use that reservations make: each given as its span
    /// (already cut to what is read), its units and whether it is a
    /// pending hold; pieces in order, where something is in use only.
    pub fn sweep(
        reservations: impl IntoIterator<Item = (DateTime<Utc>, DateTime<Utc>, u64, bool)>,
    ) -> Vec<Usage> {
        let mut steps: Vec<(DateTime<Utc>, i128, i128)> = Vec::new();
        for (start, end, units, pending) in reservations {
            if start < end && units > 0 {
                let held = if pending { i128::from(units) } else { 0 };
                steps.push((start, i128::from(units), held));
                steps.push((end, -i128::from(units), -held));
            }
        }
        steps.sort_by_key(|s| s.0);
        // The level of use from each instant where it changes on.
        let mut levels: Vec<(DateTime<Utc>, u64, u64)> = Vec::new();
        let (mut used, mut held) = (0i128, 0i128);
        for (at, du, dh) in steps {
            used += du;
            held += dh;
            let level = (
                u64::try_from(used).unwrap_or(0),
                u64::try_from(held).unwrap_or(0),
            );
            match levels.last_mut() {
                Some(last) if last.0 == at => (last.1, last.2) = level,
                _ => levels.push((at, level.0, level.1)),
            }
        }
        let mut out: Vec<Usage> = Vec::new();
        for pair in levels.windows(2) {
            let ((start, used, held), (end, _, _)) = (pair[0], pair[1]);
            if used == 0 {
                continue;
            }
            match out.last_mut() {
                Some(last) if last.end == start && (last.used, last.held) == (used, held) => {
                    last.end = end;
                }
                _ => out.push(Usage {
                    start,
                    end,
                    used,
                    held,
                }),
            }
        }
        out
    }
}

/// A piece of the window over which nothing changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Where it starts.
    pub start: DateTime<Utc>,
    /// Where it ends.
    pub end: DateTime<Utc>,
    /// Units no live reservation holds; 0 while closed.
    pub free: u32,
    /// Of the units held, those held by pending holds.
    pub held: u32,
    /// Within opening hours.
    pub open: bool,
}

/// A slot a Reserve would accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// The interval.
    pub span: Timespan,
    /// The fewest units free at any instant of it, buffers included.
    pub free: u32,
}

/// What slots to list: every start on the grid counted from local
/// midnight every `step`, `duration` long, of `quantity` units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotAsk {
    /// How long each slot is.
    pub duration: TimeDelta,
    /// Spacing of the starts.
    pub step: TimeDelta,
    /// Units wanted (0 means 1).
    pub quantity: u32,
}

/// One resource's availability over a window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Availability {
    /// Consecutive, covering the window, in order (none when deleted).
    pub segments: Vec<Segment>,
    /// The slots a Reserve would accept, in order of start.
    pub slots: Vec<Slot>,
}

impl Rules {
    /// The window of the resource these rules belong to, given the units
    /// in use over the window widened by the resource's buffers (so that a
    /// slot's buffers are seen), at `now`.
    pub fn availability(
        &self,
        window: Timespan,
        usage: &[Usage],
        slots: Option<SlotAsk>,
        now: DateTime<Utc>,
    ) -> Availability {
        if self.deleted {
            return Availability::default();
        }
        let segments = self.segments(window, usage);
        let slots = slots.map_or_else(Vec::new, |ask| self.slots(window, usage, ask, now));
        Availability { segments, slots }
    }

    fn segments(&self, window: Timespan, usage: &[Usage]) -> Vec<Segment> {
        let (from, to) = (window.start(), window.end());
        let open = self.schedule.open_between(from, to);
        let mut cuts = vec![from, to];
        cuts.extend(
            usage
                .iter()
                .flat_map(|u| [u.start, u.end])
                .chain(open.iter().flat_map(|(s, e)| [*s, *e]))
                .filter(|t| from < *t && *t < to),
        );
        cuts.sort();
        cuts.dedup();
        let mut segments: Vec<Segment> = Vec::with_capacity(cuts.len());
        for pair in cuts.windows(2) {
            let (start, end) = (pair[0], pair[1]);
            let is_open = open.iter().any(|(s, e)| *s <= start && end <= *e);
            let (used, held) = usage
                .iter()
                .find(|u| u.start <= start && end <= u.end)
                .map_or((0, 0), |u| (u.used, u.held));
            let segment = Segment {
                start,
                end,
                free: if is_open { self.free(used) } else { 0 },
                held: u32::try_from(held.min(u64::from(self.capacity))).unwrap_or(u32::MAX),
                open: is_open,
            };
            match segments.last_mut() {
                Some(last)
                    if (last.free, last.held, last.open)
                        == (segment.free, segment.held, segment.open) =>
                {
                    last.end = end;
                }
                _ => segments.push(segment),
            }
        }
        segments
    }

    fn slots(
        &self,
        window: Timespan,
        usage: &[Usage],
        ask: SlotAsk,
        now: DateTime<Utc>,
    ) -> Vec<Slot> {
        let units = ask.quantity.max(1);
        if ask.duration <= TimeDelta::zero() || units > self.capacity {
            return Vec::new();
        }
        let (before, after) = self.buffers();
        // The open time once, a day either side, for every slot.
        let margin = TimeDelta::days(2);
        let open = self.schedule.open_between(
            window
                .start()
                .checked_sub_signed(margin)
                .unwrap_or(window.start()),
            window
                .end()
                .checked_add_signed(margin)
                .unwrap_or(window.end()),
        );
        // In microseconds since the epoch from here on. A slot's end is its
        // start and its length, truncated to the microsecond, as a
        // reservation's is; what its buffers reach is counted from the
        // instants themselves, and rounded outwards.
        let window_end = window.end().timestamp_micros();
        let Some(length) = ask.duration.num_microseconds() else {
            return Vec::new();
        };
        let length_over = ask.duration.subsec_nanos() % 1000 != 0;
        let (Some(reach_before), Some(reach_after)) = (
            nanos_up_to_micros(before),
            ask.duration
                .checked_add(&after)
                .and_then(nanos_up_to_micros),
        ) else {
            return Vec::new();
        };
        let pieces: Vec<(i64, i64, u64)> = usage
            .iter()
            .map(|u| (micros_up(u.start), micros_up(u.end), u.used))
            .collect();
        let mut out = Vec::new();
        // The first piece of use that may reach a slot (slots come in
        // order of start, and so do the pieces).
        let mut first = 0;
        for start in self
            .schedule
            .grid_micros(window.start(), window.end(), ask.step)
        {
            let Some(end) = start.checked_add(length) else {
                continue;
            };
            if end > window_end || (end == window_end && length_over) {
                continue;
            }
            let Some(span) = Timespan::from_micros(start, end) else {
                continue;
            };
            let reserve = Ask {
                span,
                quantity: units,
                status: ReservationStatus::Pending,
                hold: Hold::Default,
                kind: AskKind::New,
                override_policy: false,
            };
            if !self.accepts(&reserve, now, &open) {
                continue;
            }
            let (Some(from), Some(to)) = (
                start.checked_sub(reach_before),
                start.checked_add(reach_after),
            ) else {
                continue;
            };
            while pieces.get(first).is_some_and(|u| u.1 <= from) {
                first += 1;
            }
            let peak = pieces[first..]
                .iter()
                .take_while(|u| u.0 < to)
                .map(|u| u.2)
                .max()
                .unwrap_or(0);
            let free = self.free(peak);
            if free >= units {
                out.push(Slot { span, free });
            }
        }
        out
    }

    /// Units free where `used` are held.
    fn free(&self, used: u64) -> u32 {
        u32::try_from(u64::from(self.capacity).saturating_sub(used)).unwrap_or(0)
    }
}

/// `d` in whole microseconds, a part of one rounding up; `None` past
/// what microseconds hold.
fn nanos_up_to_micros(d: TimeDelta) -> Option<i64> {
    let whole = d.num_microseconds()?;
    whole.checked_add(i64::from(
        d > TimeDelta::zero() && d.subsec_nanos() % 1000 != 0,
    ))
}

#[cfg(test)]
mod tests {
    use chrono::Weekday;
    use chrono_tz::Tz;
    use proptest::prelude::*;

    use super::*;
    use crate::{Policy, Schedule, WeeklyHours};

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn span(a: &str, b: &str) -> Timespan {
        Timespan::new(utc(a), utc(b)).unwrap()
    }

    fn clinic() -> Rules {
        Rules {
            capacity: 2,
            deleted: false,
            policy: Policy {
                granularity: Some(TimeDelta::minutes(15)),
                buffer_after: Some(TimeDelta::minutes(15)),
                ..Policy::default()
            },
            schedule: Schedule {
                zone: "Europe/Paris".parse::<Tz>().unwrap(),
                hours: vec![WeeklyHours {
                    day: Weekday::Tue,
                    open_minute: 9 * 60,
                    close_minute: 12 * 60,
                }],
                periods: Vec::new(),
                closed_by_default: false,
            },
        }
    }

    #[test]
    fn segments_follow_usage_and_opening_hours() {
        // Tuesday 2030-01-08, Paris is UTC+1: open 08:00-11:00 UTC.
        let rules = clinic();
        let usage = [Usage {
            start: utc("2030-01-08T09:00:00Z"),
            end: utc("2030-01-08T09:45:00Z"),
            used: 1,
            held: 1,
        }];
        let a = rules.availability(
            span("2030-01-08T07:00:00Z", "2030-01-08T12:00:00Z"),
            &usage,
            None,
            utc("2030-01-01T00:00:00Z"),
        );
        let got: Vec<_> = a
            .segments
            .iter()
            .map(|s| (s.start.format("%H:%M").to_string(), s.free, s.held, s.open))
            .collect();
        assert_eq!(
            got,
            vec![
                ("07:00".into(), 0, 0, false),
                ("08:00".into(), 2, 0, true),
                ("09:00".into(), 1, 1, true),
                ("09:45".into(), 2, 0, true),
                ("11:00".into(), 0, 0, false),
            ]
        );
        assert_eq!(
            a.segments.last().map(|s| s.end),
            Some(utc("2030-01-08T12:00:00Z"))
        );
    }

    #[test]
    fn slots_see_buffers_grid_hours_and_capacity() {
        let mut rules = clinic();
        rules.capacity = 1;
        // One reservation 09:00-09:30 UTC, occupied until 09:45 by its
        // cleaning.
        let usage = [Usage {
            start: utc("2030-01-08T09:00:00Z"),
            end: utc("2030-01-08T09:45:00Z"),
            used: 1,
            held: 0,
        }];
        let a = rules.availability(
            span("2030-01-08T08:00:00Z", "2030-01-08T11:00:00Z"),
            &usage,
            Some(SlotAsk {
                duration: TimeDelta::minutes(30),
                step: TimeDelta::minutes(30),
                quantity: 1,
            }),
            utc("2030-01-01T00:00:00Z"),
        );
        let starts: Vec<_> = a
            .slots
            .iter()
            .map(|s| s.span.start().format("%H:%M").to_string())
            .collect();
        // 08:30 would end at 09:00 but its cleaning runs into the booking;
        // 09:30 starts inside the cleaning; 10:30 ends at closing.
        assert_eq!(starts, vec!["08:00", "10:00", "10:30"]);
        assert!(a.slots.iter().all(|s| s.free == 1));
    }

    #[test]
    fn parts_of_a_microsecond_in_lengths_and_buffers_count() {
        let mut rules = Rules {
            capacity: 1,
            ..Rules::default()
        };
        let slots = |rules: &Rules, usage: &[Usage], length: TimeDelta| {
            rules
                .availability(
                    span("2030-01-08T09:00:00Z", "2030-01-08T10:00:00Z"),
                    usage,
                    Some(SlotAsk {
                        duration: length,
                        step: TimeDelta::minutes(30),
                        quantity: 1,
                    }),
                    utc("2030-01-01T00:00:00Z"),
                )
                .slots
                .iter()
                .map(|s| (s.span.start(), s.span.end()))
                .collect::<Vec<_>>()
        };
        // 09:30 plus 30 minutes and a nanosecond ends past the window.
        let length = TimeDelta::minutes(30) + TimeDelta::nanoseconds(1);
        assert_eq!(
            slots(&rules, &[], length),
            [(utc("2030-01-08T09:00:00Z"), utc("2030-01-08T09:30:00Z"))]
        );
        // A buffer of a nanosecond before reaches a piece of use ending
        // at the slot's start; one after, a piece starting at its end.
        let touching = [
            Usage {
                start: utc("2030-01-08T08:00:00Z"),
                end: utc("2030-01-08T09:00:00Z"),
                used: 1,
                held: 0,
            },
            Usage {
                start: utc("2030-01-08T10:00:00Z"),
                end: utc("2030-01-08T11:00:00Z"),
                used: 1,
                held: 0,
            },
        ];
        assert_eq!(slots(&rules, &touching, TimeDelta::minutes(30)).len(), 2);
        rules.policy.buffer_before = Some(TimeDelta::nanoseconds(1));
        assert_eq!(
            slots(&rules, &touching, TimeDelta::minutes(30)),
            [(utc("2030-01-08T09:30:00Z"), utc("2030-01-08T10:00:00Z"))]
        );
        rules.policy.buffer_before = None;
        rules.policy.buffer_after = Some(TimeDelta::nanoseconds(1));
        assert_eq!(
            slots(&rules, &touching, TimeDelta::minutes(30)),
            [(utc("2030-01-08T09:00:00Z"), utc("2030-01-08T09:30:00Z"))]
        );
    }

    #[test]
    fn a_sweep_sums_overlapping_reservations_into_pieces() {
        let h = |x: u32| utc("2030-01-08T00:00:00Z") + TimeDelta::hours(i64::from(x));
        let pieces = Usage::sweep([
            (h(1), h(3), 2, false),
            (h(2), h(4), 1, true),
            (h(4), h(5), 3, false),
            (h(6), h(6), 9, false),
            (h(7), h(8), 1, false),
            (h(8), h(9), 1, false),
        ]);
        let got: Vec<_> = pieces
            .iter()
            .map(|u| (u.start, u.end, u.used, u.held))
            .collect();
        assert_eq!(
            got,
            vec![
                (h(1), h(2), 2, 0),
                (h(2), h(3), 3, 1),
                (h(3), h(4), 1, 1),
                (h(4), h(5), 3, 0),
                (h(7), h(9), 1, 0),
            ]
        );
    }

    #[test]
    fn a_deleted_resource_has_nothing() {
        let rules = Rules {
            deleted: true,
            ..Rules::default()
        };
        let a = rules.availability(
            span("2030-01-08T08:00:00Z", "2030-01-08T11:00:00Z"),
            &[],
            Some(SlotAsk {
                duration: TimeDelta::hours(1),
                step: TimeDelta::hours(1),
                quantity: 1,
            }),
            utc("2030-01-01T00:00:00Z"),
        );
        assert_eq!(a, Availability::default());
    }

    proptest! {
        /// Segments cover the window, in order, with no two neighbours
        /// alike; every listed slot has room for the units asked at every
        /// instant of its occupied span and passes the policy.
        #[test]
        fn segments_cover_the_window_and_slots_have_room(
            capacity in 1u32..5,
            pieces in proptest::collection::vec((0i64..48, 1i64..8, 0u64..6), 0..8),
            quantity in 0u32..4,
            step in prop_oneof![Just(15i64), Just(30), Just(60)],
            duration in prop_oneof![Just(15i64), Just(45), Just(90)],
        ) {
            let rules = Rules { capacity, ..clinic() };
            let base = utc("2030-03-26T00:00:00Z");
            let at = |q: i64| base + TimeDelta::minutes(15 * q);
            // Non-overlapping pieces, in order.
            let mut usage: Vec<Usage> = Vec::new();
            let mut next = 0;
            for (gap, len, used) in pieces {
                let start = next + gap % 6;
                usage.push(Usage { start: at(start), end: at(start + len), used, held: used / 2 });
                next = start + len;
            }
            let window = Timespan::new(at(0), at(96)).unwrap();
            let a = rules.availability(
                window,
                &usage,
                Some(SlotAsk {
                    duration: TimeDelta::minutes(duration),
                    step: TimeDelta::minutes(step),
                    quantity,
                }),
                utc("2030-01-01T00:00:00Z"),
            );
            prop_assert_eq!(a.segments.first().map(|s| s.start), Some(window.start()));
            prop_assert_eq!(a.segments.last().map(|s| s.end), Some(window.end()));
            for w in a.segments.windows(2) {
                prop_assert_eq!(w[0].end, w[1].start);
                prop_assert!((w[0].free, w[0].held, w[0].open) != (w[1].free, w[1].held, w[1].open));
            }
            let (before, after) = rules.buffers();
            for slot in &a.slots {
                prop_assert!(window.start() <= slot.span.start() && slot.span.end() <= window.end());
                let ask = Ask {
                    span: slot.span,
                    quantity: quantity.max(1),
                    status: ReservationStatus::Pending,
                    hold: Hold::Default,
                    kind: AskKind::New,
                    override_policy: false,
                };
                prop_assert!(rules.judge(&ask, utc("2030-01-01T00:00:00Z")).is_empty());
                let (from, to) = (slot.span.start() - before, slot.span.end() + after);
                for u in usage.iter().filter(|u| u.start < to && from < u.end) {
                    prop_assert!(u.used + u64::from(quantity.max(1)) <= u64::from(capacity));
                }
            }
        }
    }
}
