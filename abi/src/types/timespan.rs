//! Time intervals: a reservation's timespan, a query's window, a hold's length.

use chrono::{DateTime, TimeDelta, Utc};

use crate::{error::InvalidValue, time::truncate_to_micros};

/// A half-open, non-empty interval `[start, end)` to the microsecond.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Timespan {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

impl Timespan {
    /// The interval `[start, end)`, both truncated to microseconds.
    ///
    /// # Errors
    /// When `start` is not before `end` (after truncation).
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Self, InvalidValue> {
        let (start, end) = (truncate_to_micros(start), truncate_to_micros(end));
        if start >= end {
            return Err(InvalidValue::new(format!(
                "start ({}) must be before end ({})",
                start.to_rfc3339(),
                end.to_rfc3339()
            )));
        }
        Ok(Timespan { start, end })
    }

    /// The interval `[start, end)` of microseconds since the epoch; `None`
    /// when it is empty or outside the times rsvp can represent.
    pub fn from_micros(start: i64, end: i64) -> Option<Self> {
        if start >= end {
            return None;
        }
        Some(Timespan {
            start: DateTime::from_timestamp_micros(start)?,
            end: DateTime::from_timestamp_micros(end)?,
        })
    }

    /// The first instant of the interval.
    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    /// The first instant after the interval.
    pub fn end(&self) -> DateTime<Utc> {
        self.end
    }

    /// Whether the two intervals share an instant.
    pub fn overlaps(&self, other: &Timespan) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// A query window: reservations overlapping `[start, end)`, either side open
/// when unset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Window {
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
}

impl Window {
    /// The window `[start, end)`; `None` leaves that side open.
    ///
    /// # Errors
    /// When both sides are set and `start` is not before `end`.
    pub fn new(
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
    ) -> Result<Self, InvalidValue> {
        let (start, end) = (start.map(truncate_to_micros), end.map(truncate_to_micros));
        if let (Some(s), Some(e)) = (start, end)
            && s >= e
        {
            return Err(InvalidValue::new(format!(
                "start ({}) must be before end ({})",
                s.to_rfc3339(),
                e.to_rfc3339()
            )));
        }
        Ok(Window { start, end })
    }

    /// Everything.
    pub fn all() -> Self {
        Window::default()
    }

    /// The window's start, if bounded.
    pub fn start(&self) -> Option<DateTime<Utc>> {
        self.start
    }

    /// The window's end, if bounded.
    pub fn end(&self) -> Option<DateTime<Utc>> {
        self.end
    }

    /// Whether `span` overlaps the window.
    pub fn overlaps(&self, span: &Timespan) -> bool {
        self.start.is_none_or(|s| span.end() > s) && self.end.is_none_or(|e| span.start() < e)
    }
}

/// How long a pending hold lasts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Hold {
    /// The store's configured default (30 minutes unless changed).
    #[default]
    Default,
    /// The hold never expires.
    Never,
    /// The hold expires this long after it is made.
    For(TimeDelta),
}

impl Hold {
    /// The longest hold, in days: a little under 1,000 years.
    pub const MAX_DAYS: i64 = 365_000;

    /// A hold of `length`, rounded up to the microsecond; exactly zero
    /// means [`Hold::Never`].
    ///
    /// # Errors
    /// When `length` is negative or longer than [`Hold::MAX_DAYS`] days.
    pub fn new(length: TimeDelta) -> Result<Self, InvalidValue> {
        if length < TimeDelta::zero() {
            return Err(InvalidValue::new("must not be negative"));
        }
        // Any longer and its expiry could pass the last instant a
        // timestamp holds (9999-12-31): clients could not read it.
        if length > TimeDelta::days(Hold::MAX_DAYS) {
            return Err(InvalidValue::new(format!(
                "must be at most {} days (0: never expires)",
                Hold::MAX_DAYS
            )));
        }
        if length.is_zero() {
            return Ok(Hold::Never);
        }
        // Kept to the microsecond, rounded up: a positive hold never
        // becomes "never expires".
        let truncated = TimeDelta::microseconds(length.num_microseconds().unwrap_or(i64::MAX)); // ok: bounded above
        Ok(Hold::For(if truncated < length {
            truncated + TimeDelta::microseconds(1)
        } else {
            truncated
        }))
    }

    /// How long the hold lasts, with `default` standing in for
    /// [`Hold::Default`]. `None` means it never expires.
    pub fn length(self, default: Option<TimeDelta>) -> Option<TimeDelta> {
        match self {
            Hold::Default => default,
            Hold::Never => None,
            Hold::For(length) => Some(length),
        }
    }

    /// When a hold made at `now` expires, with `default` standing in for
    /// [`Hold::Default`]. `None` means never.
    pub fn expires_at(
        self,
        now: DateTime<Utc>,
        default: Option<TimeDelta>,
    ) -> Option<DateTime<Utc>> {
        // Within 1,000 years of any valid timestamp: chrono reaches year 262143.
        now.checked_add_signed(self.length(default)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(s, 0).unwrap()
    }

    #[test]
    fn timespans_are_half_open_and_non_empty() {
        assert!(Timespan::new(at(10), at(10)).is_err());
        assert!(Timespan::new(at(11), at(10)).is_err());
        let a = Timespan::new(at(0), at(10)).unwrap();
        let b = Timespan::new(at(10), at(20)).unwrap();
        assert!(!a.overlaps(&b), "back to back intervals do not overlap");
        let c = Timespan::new(at(9), at(20)).unwrap();
        assert!(a.overlaps(&c));
    }

    #[test]
    fn sub_microsecond_timespans_are_empty() {
        let start = at(0);
        let end = start + TimeDelta::nanoseconds(500);
        assert!(Timespan::new(start, end).is_err());
    }

    #[test]
    fn windows_overlap_reservations_that_cross_their_edges() {
        let w = Window::new(Some(at(10)), Some(at(20))).unwrap();
        assert!(w.overlaps(&Timespan::new(at(0), at(11)).unwrap()));
        assert!(w.overlaps(&Timespan::new(at(19), at(30)).unwrap()));
        assert!(w.overlaps(&Timespan::new(at(0), at(30)).unwrap()));
        assert!(!w.overlaps(&Timespan::new(at(0), at(10)).unwrap()));
        assert!(!w.overlaps(&Timespan::new(at(20), at(30)).unwrap()));
        assert!(Window::all().overlaps(&Timespan::new(at(0), at(1)).unwrap()));
        assert!(Window::new(Some(at(5)), Some(at(5))).is_err());
    }

    #[test]
    fn holds_default_never_or_for_a_while() {
        let now = at(0);
        let default = Some(TimeDelta::minutes(30));
        assert_eq!(Hold::Default.expires_at(now, default), Some(at(1800)));
        assert_eq!(Hold::Default.expires_at(now, None), None);
        assert_eq!(Hold::new(TimeDelta::zero()).unwrap(), Hold::Never);
        assert_eq!(Hold::Never.expires_at(now, default), None);
        let ten = Hold::new(TimeDelta::minutes(10)).unwrap();
        assert_eq!(ten.expires_at(now, default), Some(at(600)));
        assert!(Hold::new(TimeDelta::seconds(-1)).is_err());
        assert!(
            Hold::new(TimeDelta::nanoseconds(-500)).is_err(),
            "negative, however small"
        );
        assert_eq!(
            Hold::new(TimeDelta::nanoseconds(1)).unwrap(),
            Hold::For(TimeDelta::microseconds(1)),
            "a positive hold rounds up; it never becomes never"
        );
        assert_eq!(
            Hold::new(TimeDelta::nanoseconds(1500)).unwrap(),
            Hold::For(TimeDelta::microseconds(2))
        );
        // Under a thousand years: its expiry stays a timestamp clients can
        // read (before year 10000) from any time until the end of 8999.
        let longest = TimeDelta::days(Hold::MAX_DAYS);
        let made = Hold::new(longest).unwrap();
        assert!(Hold::new(longest + TimeDelta::microseconds(1)).is_err());
        let now: DateTime<Utc> = "8999-12-31T00:00:00Z".parse().unwrap();
        let last: DateTime<Utc> = "9999-12-31T23:59:59Z".parse().unwrap();
        assert!(made.expires_at(now, None).is_some_and(|t| t <= last));
    }
}
