//! A resource's rules: its booking policy and its open time, and the one
//! pure function that judges a request by them ([`Rules::judge`]). Reserve,
//! Update, Book and Availability all ask it, on every store, so a slot
//! shown as bookable is exactly one that Reserve accepts.

use std::fmt;

use chrono::{
    DateTime, Datelike, Days, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeDelta,
    TimeZone, Utc, Weekday,
};
use chrono_tz::Tz;

use super::{Hold, ReservationStatus, Timespan};
use crate::{pb, time::micros_up};

/// What a policy may demand of a reservation. Unset: no limit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Starts at least this long after it is made.
    pub min_notice: Option<TimeDelta>,
    /// Starts at most this long after it is made.
    pub max_advance: Option<TimeDelta>,
    /// Start and end fall on this grid, counted from local midnight.
    pub granularity: Option<TimeDelta>,
    /// Lasts at least this long.
    pub min_duration: Option<TimeDelta>,
    /// Lasts at most this long.
    pub max_duration: Option<TimeDelta>,
    /// Time kept free before each reservation (counts as occupied).
    pub buffer_before: Option<TimeDelta>,
    /// Time kept free after each reservation (counts as occupied).
    pub buffer_after: Option<TimeDelta>,
    /// A pending hold's length when the request gives none.
    pub default_hold: Option<TimeDelta>,
    /// The longest hold allowed.
    pub max_hold: Option<TimeDelta>,
    /// The most units one reservation may take.
    pub max_quantity: Option<u32>,
    /// Cancelling or rescheduling a confirmed reservation must happen at
    /// least this long before its start.
    pub min_cancel_notice: Option<TimeDelta>,
    /// CheckIn opens this long before the start.
    pub check_in_opens: Option<TimeDelta>,
    /// A confirmed reservation not checked in this long after its start
    /// is a no-show.
    pub auto_release_after: Option<TimeDelta>,
}

/// One weekly opening period in the resource's zone: `day`, from
/// `open_minute` to `close_minute` after local midnight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeeklyHours {
    /// The day of the week.
    pub day: Weekday,
    /// Minutes after local midnight; below `close_minute`.
    pub open_minute: u16,
    /// Minutes after local midnight; at most 1440.
    pub close_minute: u16,
}

/// When a resource is open: weekly hours in its zone, dated periods, or
/// always.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// The zone of the grid and the weekly hours.
    pub zone: Tz,
    /// Weekly opening periods.
    pub hours: Vec<WeeklyHours>,
    /// Dated periods of opening, in order, not overlapping.
    pub periods: Vec<Timespan>,
    /// Open only within `hours` and `periods`, even when both are empty.
    pub closed_by_default: bool,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            zone: Tz::UTC,
            hours: Vec::new(),
            periods: Vec::new(),
            closed_by_default: false,
        }
    }
}

/// Which rule refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// Too soon.
    MinNotice,
    /// Too far ahead.
    MaxAdvance,
    /// Off the grid.
    Granularity,
    /// Too short.
    MinDuration,
    /// Too long.
    MaxDuration,
    /// Outside open time.
    OpeningHours,
    /// Too many units.
    MaxQuantity,
    /// Held too long (or forever).
    MaxHold,
    /// Too late to cancel or move.
    CancelNotice,
    /// Outside the check-in window.
    CheckInWindow,
    /// The resource is deleted.
    ResourceDeleted,
}

impl Rule {
    /// The rule's name on the wire, without its prefix.
    pub fn name(self) -> &'static str {
        match self {
            Rule::MinNotice => "MIN_NOTICE",
            Rule::MaxAdvance => "MAX_ADVANCE",
            Rule::Granularity => "GRANULARITY",
            Rule::MinDuration => "MIN_DURATION",
            Rule::MaxDuration => "MAX_DURATION",
            Rule::OpeningHours => "OPENING_HOURS",
            Rule::MaxQuantity => "MAX_QUANTITY",
            Rule::MaxHold => "MAX_HOLD",
            Rule::CancelNotice => "CANCEL_NOTICE",
            Rule::CheckInWindow => "CHECK_IN_WINDOW",
            Rule::ResourceDeleted => "RESOURCE_DELETED",
        }
    }
}

/// One rule broken, and what it demands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The rule.
    pub rule: Rule,
    /// What the rule demands, with its values.
    pub message: String,
}

impl From<Rule> for pb::PolicyRule {
    fn from(rule: Rule) -> Self {
        match rule {
            Rule::MinNotice => pb::PolicyRule::MinNotice,
            Rule::MaxAdvance => pb::PolicyRule::MaxAdvance,
            Rule::Granularity => pb::PolicyRule::Granularity,
            Rule::MinDuration => pb::PolicyRule::MinDuration,
            Rule::MaxDuration => pb::PolicyRule::MaxDuration,
            Rule::OpeningHours => pb::PolicyRule::OpeningHours,
            Rule::MaxQuantity => pb::PolicyRule::MaxQuantity,
            Rule::MaxHold => pb::PolicyRule::MaxHold,
            Rule::CancelNotice => pb::PolicyRule::CancelNotice,
            Rule::CheckInWindow => pb::PolicyRule::CheckInWindow,
            Rule::ResourceDeleted => pb::PolicyRule::ResourceDeleted,
        }
    }
}

impl From<&[Violation]> for pb::PolicyViolation {
    fn from(violations: &[Violation]) -> Self {
        pb::PolicyViolation {
            violations: violations
                .iter()
                .map(|v| pb::RuleViolation {
                    rule: pb::PolicyRule::from(v.rule).into(),
                    message: v.message.clone(),
                })
                .collect(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Everything a resource's rules need: its capacity, whether it is
/// deleted, its policy and its open time. A resource never registered has
/// [`Rules::default`]: capacity 1, always open, no policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    /// Units live reservations may hold at once.
    pub capacity: u32,
    /// Takes no new reservations.
    pub deleted: bool,
    /// The booking policy.
    pub policy: Policy,
    /// When it is open.
    pub schedule: Schedule,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            capacity: 1,
            deleted: false,
            policy: Policy::default(),
            schedule: Schedule::default(),
        }
    }
}

/// What a request asks of a resource, as the rules judge it.
#[derive(Clone, Debug)]
pub struct Ask {
    /// The interval asked for.
    pub span: Timespan,
    /// Units asked for (0: every unit, for a block).
    pub quantity: u32,
    /// The status it would have.
    pub status: ReservationStatus,
    /// The hold asked for (pending only).
    pub hold: Hold,
    /// What kind of request.
    pub kind: AskKind,
    /// The caller asks to book outside the policy.
    pub override_policy: bool,
}

/// A new reservation, or a change to one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AskKind {
    /// A new reservation.
    New,
    /// A reservation moved, or given more units: `current` is how it is.
    Change {
        /// Its status now.
        status: ReservationStatus,
        /// Its start now.
        start: DateTime<Utc>,
        /// Whether the interval moves (its start and end are judged anew;
        /// a quantity change alone is judged for the quantity only).
        moves: bool,
    },
}

impl Rules {
    /// Every rule `ask` breaks at `now` (none: it may go ahead). A block
    /// is judged only for the resource being deleted; with
    /// `override_policy`, so is anything else.
    pub fn judge(&self, ask: &Ask, now: DateTime<Utc>) -> Vec<Violation> {
        let mut broken = Vec::new();
        self.check(
            ask,
            now,
            |span| self.schedule.covers(span),
            &mut |rule, message| {
                broken.push(Violation {
                    rule,
                    message: message(),
                });
            },
        );
        broken
    }

    /// Whether a new reservation `ask` breaks no rule at `now`, by the
    /// rules of [`Rules::judge`], the resource's open time being `open`
    /// (as [`Schedule::open_between`] gives it, over at least the day
    /// either side of the span): for judging many asks at once without
    /// working out the open time, or the words of a refusal, for each.
    pub fn accepts(
        &self,
        ask: &Ask,
        now: DateTime<Utc>,
        open: &[(DateTime<Utc>, DateTime<Utc>)],
    ) -> bool {
        let mut ok = true;
        self.check(
            ask,
            now,
            |span| {
                let at = open.partition_point(|(_, e)| *e < span.end());
                open.get(at)
                    .is_some_and(|(s, e)| *s <= span.start() && span.end() <= *e)
            },
            &mut |_, _| ok = false,
        );
        ok
    }

    /// The rules themselves: `no` is told each rule broken, with the words
    /// for it (made only when asked); `covers` says whether the resource
    /// is open all through a span.
    fn check(
        &self,
        ask: &Ask,
        now: DateTime<Utc>,
        covers: impl Fn(&Timespan) -> bool,
        no: &mut dyn FnMut(Rule, &dyn Fn() -> String),
    ) {
        if self.deleted {
            no(Rule::ResourceDeleted, &|| {
                "the resource is deleted: it takes no new reservations".into()
            });
        }
        if ask.override_policy || ask.status == ReservationStatus::Blocked {
            return;
        }
        let p = &self.policy;
        let (start, end) = (ask.span.start(), ask.span.end());
        let moves = match ask.kind {
            AskKind::New => true,
            AskKind::Change { moves, .. } => moves,
        };
        if let AskKind::Change {
            status: ReservationStatus::Confirmed,
            start: current,
            ..
        } = ask.kind
            && let Some(notice) = p.min_cancel_notice
            && moves
            && now > current - notice
        {
            no(Rule::CancelNotice, &|| {
                format!(
                    "a confirmed reservation moves at least {} before its start",
                    crate::time::short(notice)
                )
            });
        }
        if moves {
            if let Some(n) = p.min_notice
                && start < now + n
            {
                no(Rule::MinNotice, &|| {
                    format!("starts at least {} after now", crate::time::short(n))
                });
            }
            if let Some(n) = p.max_advance
                && start > now + n
            {
                no(Rule::MaxAdvance, &|| {
                    format!("starts at most {} after now", crate::time::short(n))
                });
            }
            if let Some(g) = p.granularity
                && !(self.schedule.on_grid(start, g) && self.schedule.on_grid(end, g))
            {
                no(Rule::Granularity, &|| {
                    format!(
                        "starts and ends on a {} grid from midnight in {}",
                        crate::time::short(g),
                        self.schedule.zone.name()
                    )
                });
            }
            let length = || end - start;
            if let Some(d) = p.min_duration
                && length() < d
            {
                no(Rule::MinDuration, &|| {
                    format!("lasts at least {}", crate::time::short(d))
                });
            }
            if let Some(d) = p.max_duration
                && length() > d
            {
                no(Rule::MaxDuration, &|| {
                    format!("lasts at most {}", crate::time::short(d))
                });
            }
            if !covers(&ask.span) {
                no(Rule::OpeningHours, &|| {
                    format!(
                        "lies within the resource's open time ({})",
                        self.schedule.zone.name()
                    )
                });
            }
        }
        if let Some(q) = p.max_quantity
            && ask.quantity > q
        {
            no(Rule::MaxQuantity, &|| format!("takes at most {q} units"));
        }
        if ask.status == ReservationStatus::Pending
            && matches!(ask.kind, AskKind::New)
            && let Some(max) = p.max_hold
        {
            match ask.hold {
                Hold::Never => no(Rule::MaxHold, &|| {
                    format!(
                        "a hold expires, at most {} after it is made",
                        crate::time::short(max)
                    )
                }),
                Hold::For(h) if h > max => no(Rule::MaxHold, &|| {
                    format!("a hold lasts at most {}", crate::time::short(max))
                }),
                _ => {}
            }
        }
    }

    /// The last instant at which the rules still give `ask` its notice:
    /// its start less `min_notice` when it is new or moves, and, when it
    /// moves a confirmed reservation, that reservation's current start less
    /// `min_cancel_notice`, whichever comes first; `None` when no rule runs
    /// out with time (no notice, an override, a block, a change that does
    /// not move). Every other rule judges the same later or is easier then:
    /// a write that runs after this instant is refused, whenever it was
    /// judged.
    pub fn accept_until(&self, ask: &Ask) -> Option<DateTime<Utc>> {
        if ask.override_policy || ask.status == ReservationStatus::Blocked {
            return None;
        }
        let p = &self.policy;
        let (moves, cancel) = match ask.kind {
            AskKind::New => (true, None),
            AskKind::Change {
                status,
                start,
                moves,
            } => (
                moves,
                moves.then(|| self.cancel_until(status, start)).flatten(),
            ),
        };
        let notice = p
            .min_notice
            .filter(|_| moves)
            .and_then(|n| ask.span.start().checked_sub_signed(n));
        crate::time::earliest(notice, cancel)
    }

    /// The last instant at which a reservation in `status` starting at
    /// `start` may still be cancelled, or moved, by the cancel notice;
    /// `None`: at any time (not confirmed, or no cancel notice).
    pub fn cancel_until(
        &self,
        status: ReservationStatus,
        start: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let notice = self.policy.min_cancel_notice?;
        (status == ReservationStatus::Confirmed)
            .then(|| start.checked_sub_signed(notice))
            .flatten()
    }

    /// Whether every rule in `broken` is one that only the passing of
    /// time broke (the notice): the same ask was accepted a moment before.
    pub fn only_late(broken: &[Violation]) -> bool {
        !broken.is_empty() && broken.iter().all(|v| v.rule == Rule::MinNotice)
    }

    /// The length of a pending hold asked as `hold`, the server's default
    /// being `server_default`: the request's own; else the resource's
    /// default, else the server's, cut to the resource's longest. `None`:
    /// it never expires.
    pub fn hold_length(&self, hold: Hold, server_default: Option<TimeDelta>) -> Option<TimeDelta> {
        let p = &self.policy;
        match hold {
            Hold::Default => {
                let length = p.default_hold.or(server_default);
                match (length, p.max_hold) {
                    (Some(l), Some(max)) => Some(l.min(max)),
                    (None, Some(max)) => Some(max),
                    (l, None) => l,
                }
            }
            other => other.length(None),
        }
    }

    /// Whether a cancel of a reservation in `status` starting at `start` is
    /// too late at `now` (a confirmed one, within the cancel notice).
    pub fn cancel_too_late(
        &self,
        status: ReservationStatus,
        start: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<Violation> {
        let notice = self.policy.min_cancel_notice?;
        let until = self.cancel_until(status, start)?;
        (now > until).then(|| Violation {
            rule: Rule::CancelNotice,
            message: format!(
                "a confirmed reservation is cancelled at least {} before its start",
                crate::time::short(notice)
            ),
        })
    }

    /// When a confirmed reservation starting at `start` that nobody has
    /// checked in stops holding the resource (a no-show); `None`: never.
    pub fn release_at(&self, start: DateTime<Utc>) -> Option<DateTime<Utc>> {
        start.checked_add_signed(self.policy.auto_release_after?)
    }

    /// When check-in opens for a reservation starting at `start`.
    pub fn check_in_opens(&self, start: DateTime<Utc>) -> DateTime<Utc> {
        start
            .checked_sub_signed(self.policy.check_in_opens.unwrap_or_default())
            .unwrap_or(start)
    }

    /// The occupied span of `span`: with the policy's buffers.
    pub fn buffers(&self) -> (TimeDelta, TimeDelta) {
        (
            self.policy.buffer_before.unwrap_or_default(),
            self.policy.buffer_after.unwrap_or_default(),
        )
    }
}

impl Schedule {
    /// Whether the schedule is open at every instant of `span`, as one
    /// stretch.
    pub fn covers(&self, span: &Timespan) -> bool {
        if self.hours.is_empty() && self.periods.is_empty() {
            return !self.closed_by_default;
        }
        self.open_between(span.start(), span.end())
            .iter()
            .any(|(s, e)| *s <= span.start() && span.end() <= *e)
    }

    /// The open intervals that touch `[from, to)`, merged (adjacent ones
    /// joined), in order.
    pub fn open_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        if self.hours.is_empty() && self.periods.is_empty() {
            return if self.closed_by_default {
                Vec::new()
            } else {
                vec![(from, to)]
            };
        }
        let mut open: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
        // Weekly hours, day by day in the zone, a day either side: a
        // period may run into the window from the day before.
        let first = from.with_timezone(&self.zone).date_naive() - Days::new(1);
        let last = to.with_timezone(&self.zone).date_naive() + Days::new(1);
        let mut day = first;
        while day <= last {
            for h in self.hours.iter().filter(|h| h.day == day.weekday()) {
                open.extend(self.wall_clock(day, h.open_minute, h.close_minute));
            }
            match day.checked_add_days(Days::new(1)) {
                Some(next) => day = next,
                None => break,
            }
        }
        for p in &self.periods {
            if p.end() >= from && p.start() <= to {
                open.push((p.start(), p.end()));
            }
        }
        open.sort();
        let mut merged: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
        for (s, e) in open {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        merged
    }

    /// The instants whose wall-clock time in the zone lies between minutes
    /// `open` and `close` after midnight of local `day`: one stretch; two
    /// where the clocks go back within it (a repeated time is open both
    /// times, and the clock reading past `close` in between is not); none
    /// where every such time is skipped (clocks spring forward).
    fn wall_clock(
        &self,
        day: NaiveDate,
        open: u16,
        close: u16,
    ) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        let midnight = day.and_time(NaiveTime::MIN);
        let (Some(a), Some(b)) = (
            midnight.checked_add_signed(TimeDelta::minutes(i64::from(open))),
            midnight.checked_add_signed(TimeDelta::minutes(i64::from(close))),
        ) else {
            return Vec::new();
        };
        // Every instant whose wall clock reads within [a, b) lies within
        // this window (offsets are within 16 hours of UTC); at most one
        // change of offset falls in it.
        let (Some(lo), Some(hi)) = (
            a.checked_sub_signed(TimeDelta::hours(16)),
            b.checked_add_signed(TimeDelta::hours(16)),
        ) else {
            return Vec::new();
        };
        let offset = |t: NaiveDateTime| {
            TimeDelta::seconds(i64::from(
                self.zone
                    .offset_from_utc_datetime(&t)
                    .fix()
                    .local_minus_utc(),
            ))
        };
        let (before, after) = (offset(lo), offset(hi));
        // Where the offset becomes `after`: a binary search over whole
        // seconds (the zone database changes offsets on whole seconds;
        // `lo` and `hi` are whole minutes).
        let (mut old, mut new) = (lo, hi);
        while before != after && new - old > TimeDelta::seconds(1) {
            let mid = old + TimeDelta::seconds((new - old).num_seconds() / 2);
            if offset(mid) == before {
                old = mid;
            } else {
                new = mid;
            }
        }
        let change = if before == after { hi } else { new };
        // Before the change the wall clock reads UTC + `before`; from it,
        // UTC + `after`.
        let stretches = [
            (a - before, (b - before).min(change)),
            ((a - after).max(change), b - after),
        ];
        stretches
            .into_iter()
            .filter(|(s, e)| s < e)
            .map(|(s, e)| (s.and_utc(), e.and_utc()))
            .collect()
    }

    /// Whether `t` falls on a `grid` counted from local midnight.
    pub fn on_grid(&self, t: DateTime<Utc>, grid: TimeDelta) -> bool {
        let Some(step) = grid.num_microseconds().filter(|&s| s > 0) else {
            return true;
        };
        let local = t.with_timezone(&self.zone).naive_local();
        let since = local - local.date().and_time(NaiveTime::MIN);
        since.num_microseconds().is_some_and(|us| us % step == 0)
    }

    /// The grid points from local midnight of each day that fall in
    /// `[from, to)`, every `step`, in order (local times that do not exist
    /// are skipped; ones that occur twice count twice).
    pub fn grid_points(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        step: TimeDelta,
    ) -> Vec<DateTime<Utc>> {
        self.grid_micros(from, to, step)
            .into_iter()
            .filter_map(DateTime::from_timestamp_micros)
            .collect()
    }

    /// [`Schedule::grid_points`] as microseconds since the epoch. The step
    /// counts in whole microseconds, as [`Schedule::on_grid`] does.
    pub fn grid_micros(&self, from: DateTime<Utc>, to: DateTime<Utc>, step: TimeDelta) -> Vec<i64> {
        let mut points = Vec::new();
        let Some(step) = step.num_microseconds().filter(|s| *s > 0) else {
            return points;
        };
        let mut day = from.with_timezone(&self.zone).date_naive() - Days::new(1);
        let last = to.with_timezone(&self.zone).date_naive();
        while day <= last {
            let midnight = day.and_time(NaiveTime::MIN);
            if !self.day_by_arithmetic(midnight, step, &mut points) {
                let mut offset = TimeDelta::zero();
                let step = TimeDelta::microseconds(step);
                while offset < TimeDelta::days(1) {
                    match self.zone.from_local_datetime(&(midnight + offset)) {
                        LocalResult::Single(t) => points.push(t.timestamp_micros()),
                        LocalResult::Ambiguous(a, b) => {
                            points.push(a.timestamp_micros());
                            points.push(b.timestamp_micros());
                        }
                        LocalResult::None => {}
                    }
                    offset += step;
                }
            }
            match day.checked_add_days(Days::new(1)) {
                Some(next) => day = next,
                None => break,
            }
        }
        // `from` and `to` may hold parts of a microsecond: a point is in
        // the span when it is at or after `from`, and before `to`.
        let (from, to) = (micros_up(from), micros_up(to));
        points.retain(|t| (from..to).contains(t));
        points.sort_unstable();
        points.dedup();
        points
    }

    /// The grid points of the local day starting at `midnight`, by adding
    /// `step` microseconds to the instant of midnight, when the day has one
    /// offset throughout (the same at midnight and 24 hours later: the
    /// clocks change at most once a day in every zone the time zone
    /// database has); `false`, with nothing added, on a day the clocks
    /// change, whose local times must each be looked up.
    fn day_by_arithmetic(&self, midnight: NaiveDateTime, step: i64, points: &mut Vec<i64>) -> bool {
        let LocalResult::Single(start) = self.zone.from_local_datetime(&midnight) else {
            return false;
        };
        let offset = start.offset().fix();
        let start = start.with_timezone(&Utc);
        let same =
            |t: DateTime<Utc>| self.zone.offset_from_utc_datetime(&t.naive_utc()).fix() == offset;
        if !start
            .checked_add_signed(TimeDelta::days(1))
            .is_some_and(same)
        {
            return false;
        }
        let start = start.timestamp_micros();
        // A step longer than `usize` holds (on a 32-bit target) takes one
        // point a day, as any step of a day or more does.
        let step = usize::try_from(step).unwrap_or(usize::MAX);
        points.extend((0..MICROS_PER_DAY).step_by(step).map(|since| start + since));
        true
    }
}

/// Microseconds in a day of 24 hours.
const MICROS_PER_DAY: i64 = 86_400_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn span(a: &str, b: &str) -> Timespan {
        Timespan::new(utc(a), utc(b)).unwrap()
    }

    fn ask(a: &str, b: &str) -> Ask {
        Ask {
            span: span(a, b),
            quantity: 1,
            status: ReservationStatus::Pending,
            hold: Hold::Default,
            kind: AskKind::New,
            override_policy: false,
        }
    }

    fn clinic() -> Rules {
        Rules {
            capacity: 1,
            deleted: false,
            policy: Policy {
                min_notice: Some(TimeDelta::hours(24)),
                granularity: Some(TimeDelta::minutes(15)),
                max_hold: Some(TimeDelta::minutes(30)),
                ..Policy::default()
            },
            schedule: Schedule {
                zone: "Europe/Paris".parse().unwrap(),
                hours: vec![WeeklyHours {
                    day: Weekday::Mon,
                    open_minute: 9 * 60,
                    close_minute: 17 * 60,
                }],
                periods: Vec::new(),
                closed_by_default: false,
            },
        }
    }

    fn rules_broken(r: &Rules, a: &Ask, now: &str) -> Vec<Rule> {
        r.judge(a, utc(now)).into_iter().map(|v| v.rule).collect()
    }

    #[test]
    fn a_request_breaking_several_rules_hears_of_each() {
        // Monday 2026-12-07, 09:00 Paris is 08:00 UTC.
        let ok = ask("2026-12-07T08:00:00Z", "2026-12-07T08:15:00Z");
        assert_eq!(rules_broken(&clinic(), &ok, "2026-12-05T00:00:00Z"), []);
        let bad = ask("2026-12-07T07:50:00Z", "2026-12-07T08:10:00Z");
        assert_eq!(
            rules_broken(&clinic(), &bad, "2026-12-07T00:00:00Z"),
            [Rule::MinNotice, Rule::Granularity, Rule::OpeningHours]
        );
        let mut never = ok.clone();
        never.hold = Hold::Never;
        assert_eq!(
            rules_broken(&clinic(), &never, "2026-12-05T00:00:00Z"),
            [Rule::MaxHold]
        );
        let mut admin = bad.clone();
        admin.override_policy = true;
        assert_eq!(rules_broken(&clinic(), &admin, "2026-12-07T00:00:00Z"), []);
        let mut gone = clinic();
        gone.deleted = true;
        assert_eq!(
            rules_broken(&gone, &admin, "2026-12-07T00:00:00Z"),
            [Rule::ResourceDeleted],
            "override does not lift a deletion"
        );
    }

    #[test]
    fn the_notice_runs_out_exactly_at_accept_until() {
        let visit = ask("2026-12-07T08:00:00Z", "2026-12-07T08:15:00Z");
        let until = clinic().accept_until(&visit).unwrap();
        assert_eq!(until, utc("2026-12-06T08:00:00Z"));
        assert_eq!(clinic().judge(&visit, until), []);
        let late = clinic().judge(&visit, until + TimeDelta::microseconds(1));
        assert_eq!(
            late.iter().map(|v| v.rule).collect::<Vec<_>>(),
            [Rule::MinNotice]
        );
        assert!(Rules::only_late(&late));
        // Nothing runs out for an override, a block, or without a notice.
        let mut admin = visit.clone();
        admin.override_policy = true;
        assert_eq!(clinic().accept_until(&admin), None);
        let mut block = visit.clone();
        block.status = ReservationStatus::Blocked;
        assert_eq!(clinic().accept_until(&block), None);
        assert_eq!(Rules::default().accept_until(&visit), None);
        // Another rule broken as well is not a matter of time alone.
        let bad = ask("2026-12-07T07:50:00Z", "2026-12-07T08:10:00Z");
        assert!(!Rules::only_late(&clinic().judge(&bad, until)));
        assert!(!Rules::only_late(&[]));
    }

    #[test]
    fn a_move_runs_out_at_its_first_notice_and_a_cancel_at_the_cancel_notice() {
        let mut rules = clinic();
        rules.policy.min_cancel_notice = Some(TimeDelta::hours(48));
        // A confirmed visit on Monday 14 December moved to Monday the 7th:
        // the new start's notice runs out on the 6th, the old start's
        // cancel notice on the 12th.
        let mut moved = ask("2026-12-07T08:00:00Z", "2026-12-07T08:15:00Z");
        moved.status = ReservationStatus::Confirmed;
        moved.kind = AskKind::Change {
            status: ReservationStatus::Confirmed,
            start: utc("2026-12-14T08:00:00Z"),
            moves: true,
        };
        let until = rules.accept_until(&moved).unwrap();
        assert_eq!(until, utc("2026-12-06T08:00:00Z"));
        assert_eq!(rules.judge(&moved, until), []);
        let late = rules.judge(&moved, until + TimeDelta::microseconds(1));
        assert_eq!(
            late.iter().map(|v| v.rule).collect::<Vec<_>>(),
            [Rule::MinNotice]
        );
        // Moved later instead: the cancel notice runs out first.
        moved.span = span("2026-12-21T08:00:00Z", "2026-12-21T08:15:00Z");
        let until = rules.accept_until(&moved).unwrap();
        assert_eq!(until, utc("2026-12-12T08:00:00Z"));
        assert_eq!(rules.judge(&moved, until), []);
        let late = rules.judge(&moved, until + TimeDelta::microseconds(1));
        assert_eq!(
            late.iter().map(|v| v.rule).collect::<Vec<_>>(),
            [Rule::CancelNotice]
        );
        // A hold that moves has only the notice; a change in place, none.
        moved.kind = AskKind::Change {
            status: ReservationStatus::Pending,
            start: utc("2026-12-14T08:00:00Z"),
            moves: true,
        };
        assert_eq!(
            rules.accept_until(&moved),
            Some(utc("2026-12-20T08:00:00Z"))
        );
        moved.kind = AskKind::Change {
            status: ReservationStatus::Confirmed,
            start: utc("2026-12-21T08:00:00Z"),
            moves: false,
        };
        assert_eq!(rules.accept_until(&moved), None);
        // A cancel: until the cancel notice of a confirmed one; a hold any time.
        let start = utc("2026-12-14T08:00:00Z");
        let until = rules
            .cancel_until(ReservationStatus::Confirmed, start)
            .unwrap();
        assert_eq!(until, utc("2026-12-12T08:00:00Z"));
        assert!(
            rules
                .cancel_too_late(ReservationStatus::Confirmed, start, until)
                .is_none()
        );
        assert!(
            rules
                .cancel_too_late(
                    ReservationStatus::Confirmed,
                    start,
                    until + TimeDelta::microseconds(1)
                )
                .is_some()
        );
        assert_eq!(rules.cancel_until(ReservationStatus::Pending, start), None);
        assert_eq!(
            clinic().cancel_until(ReservationStatus::Confirmed, start),
            None
        );
    }

    #[test]
    fn adjacent_open_periods_join_and_buffers_may_lie_outside() {
        let mut r = Rules::default();
        r.schedule.hours = vec![
            WeeklyHours {
                day: Weekday::Mon,
                open_minute: 9 * 60,
                close_minute: 17 * 60,
            },
            WeeklyHours {
                day: Weekday::Mon,
                open_minute: 17 * 60,
                close_minute: 20 * 60,
            },
        ];
        let across = ask("2026-12-07T16:00:00Z", "2026-12-07T19:00:00Z");
        assert_eq!(rules_broken(&r, &across, "2026-12-01T00:00:00Z"), []);
        let late = ask("2026-12-07T19:00:00Z", "2026-12-07T20:30:00Z");
        assert_eq!(
            rules_broken(&r, &late, "2026-12-01T00:00:00Z"),
            [Rule::OpeningHours]
        );
    }

    #[test]
    fn closed_by_default_with_nothing_published_is_closed() {
        let mut r = Rules::default();
        let a = ask("2026-12-07T16:00:00Z", "2026-12-07T17:00:00Z");
        assert_eq!(rules_broken(&r, &a, "2026-12-01T00:00:00Z"), []);
        r.schedule.closed_by_default = true;
        assert_eq!(
            rules_broken(&r, &a, "2026-12-01T00:00:00Z"),
            [Rule::OpeningHours]
        );
        r.schedule.periods = vec![span("2026-12-07T15:00:00Z", "2026-12-07T18:00:00Z")];
        assert_eq!(rules_broken(&r, &a, "2026-12-01T00:00:00Z"), []);
    }

    proptest::proptest! {
        /// The grid worked out by adding steps to midnight, on days the
        /// clocks do not change, is the grid of looking up every local
        /// time: in zones with half-hour shifts, changes at midnight and
        /// odd offsets.
        #[test]
        fn the_grid_by_arithmetic_is_the_grid_by_lookup(
            zone in proptest::sample::select(vec![
                "Europe/Paris", "America/Santiago", "Australia/Lord_Howe",
                "Asia/Kathmandu", "America/St_Johns", "Africa/Casablanca",
                "Pacific/Apia", "America/Havana", "UTC",
            ]),
            day in 0i64..(366 * 12),
            hours in 0i64..72,
            step in proptest::sample::select(vec![1i64, 5, 15, 20, 30, 45, 60, 90, 180, 1440]),
            // Bounds off the microsecond, either side of a grid point.
            nudge in proptest::sample::select(vec![-1_001i64, -1, 0, 1, 999, 1_000, 1_001]),
        ) {
            let schedule = Schedule {
                zone: zone.parse().unwrap(),
                ..Schedule::default()
            };
            let from = utc("2024-01-01T00:00:00Z") + TimeDelta::days(day) + TimeDelta::nanoseconds(nudge);
            let to = from + TimeDelta::hours(hours + 1) + TimeDelta::nanoseconds(nudge);
            let step = TimeDelta::minutes(step);
            let mut want = Vec::new();
            let mut day = from.with_timezone(&schedule.zone).date_naive() - Days::new(1);
            while day <= to.with_timezone(&schedule.zone).date_naive() {
                let mut since = TimeDelta::zero();
                while since < TimeDelta::days(1) {
                    let local = day.and_time(NaiveTime::MIN) + since;
                    match schedule.zone.from_local_datetime(&local) {
                        LocalResult::Single(t) => want.push(t.with_timezone(&Utc)),
                        LocalResult::Ambiguous(a, b) => {
                            want.push(a.with_timezone(&Utc));
                            want.push(b.with_timezone(&Utc));
                        }
                        LocalResult::None => {}
                    }
                    since += step;
                }
                day = day + Days::new(1);
            }
            want.retain(|t| *t >= from && *t < to);
            want.sort();
            want.dedup();
            proptest::prop_assert_eq!(schedule.grid_points(from, to, step), want);
        }
    }

    #[test]
    fn the_grid_follows_wall_clock_time_across_daylight_saving() {
        let paris = Schedule {
            zone: "Europe/Paris".parse().unwrap(),
            ..Schedule::default()
        };
        let hour = TimeDelta::hours(1);
        // 2026-03-29: 02:00 does not exist in Paris; 2026-10-25: 02:00 twice.
        let spring = paris.grid_points(
            utc("2026-03-28T23:00:00Z"),
            utc("2026-03-29T02:00:00Z"),
            hour,
        );
        assert_eq!(spring.len(), 3, "00:00, 01:00, 03:00: {spring:?}");
        let autumn = paris.grid_points(
            utc("2026-10-24T22:00:00Z"),
            utc("2026-10-25T03:00:00Z"),
            hour,
        );
        assert_eq!(
            autumn.len(),
            5,
            "00:00, 01:00, 02:00 twice, 03:00: {autumn:?}"
        );
        for t in autumn {
            assert!(paris.on_grid(t, hour));
        }
        assert!(!paris.on_grid(utc("2026-10-25T00:30:00Z"), hour));
    }

    #[test]
    fn default_holds_are_cut_to_the_longest_allowed() {
        let r = clinic();
        let server = Some(TimeDelta::hours(2));
        assert_eq!(
            r.hold_length(Hold::Default, server),
            Some(TimeDelta::minutes(30))
        );
        assert_eq!(
            Rules::default().hold_length(Hold::Default, server),
            Some(TimeDelta::hours(2))
        );
        assert_eq!(r.hold_length(Hold::Never, server), None);
    }
}
