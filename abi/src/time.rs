//! Conversions between protobuf `Timestamp`/`Duration` and chrono.
//!
//! rsvp keeps time to the microsecond (PostgreSQL's precision): finer parts
//! of a timestamp are truncated toward the past when it is read.

use chrono::{DateTime, TimeDelta, Utc};
use prost_types::{Duration, Timestamp};

use crate::error::InvalidValue;

/// `0001-01-01T00:00:00Z`, the earliest valid protobuf `Timestamp`.
pub const MIN_TIMESTAMP_SECONDS: i64 = -62_135_596_800;
/// `9999-12-31T23:59:59Z`, the latest second of a valid protobuf `Timestamp`.
pub const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799;
/// The largest valid protobuf `Duration`, about 10,000 years.
pub const MAX_DURATION_SECONDS: i64 = 315_576_000_000;

/// Reads a protobuf `Timestamp`, truncated to whole microseconds.
///
/// # Errors
/// When `nanos` is outside `0..1_000_000_000` or the time is outside the
/// years 1 to 9999 that protobuf allows.
pub fn from_timestamp(ts: &Timestamp) -> Result<DateTime<Utc>, InvalidValue> {
    if !(0..1_000_000_000).contains(&ts.nanos) {
        return Err(InvalidValue::new(format!(
            "nanos must be in 0..=999999999, got {}",
            ts.nanos
        )));
    }
    if !(MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&ts.seconds) {
        return Err(InvalidValue::new(format!(
            "seconds must be within years 0001 to 9999, got {}",
            ts.seconds
        )));
    }
    let micros_in_second = ts.nanos / 1_000;
    DateTime::from_timestamp(ts.seconds, (micros_in_second * 1_000) as u32)
        .ok_or_else(|| InvalidValue::new("not a representable time"))
}

/// Writes a protobuf `Timestamp`.
pub fn to_timestamp(time: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

/// Writes a protobuf `Timestamp`, brought within the years 1 to 9999 a
/// valid one holds: for a stretch that buffers carry past them (a stretch
/// that is full "until the end of time" says so as the last instant
/// there is).
pub fn to_timestamp_within(time: DateTime<Utc>) -> Timestamp {
    let mut ts = to_timestamp(time);
    if ts.seconds > MAX_TIMESTAMP_SECONDS {
        ts = Timestamp {
            seconds: MAX_TIMESTAMP_SECONDS,
            nanos: 999_999_000,
        };
    } else if ts.seconds < MIN_TIMESTAMP_SECONDS {
        ts = Timestamp {
            seconds: MIN_TIMESTAMP_SECONDS,
            nanos: 0,
        };
    }
    ts
}

/// The earlier of two optional limits, `None` being no limit.
pub fn earliest(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Truncates `time` to whole microseconds, the precision rsvp stores.
pub fn truncate_to_micros(time: DateTime<Utc>) -> DateTime<Utc> {
    if time.timestamp_subsec_nanos().is_multiple_of(1000) {
        return time;
    }
    DateTime::from_timestamp_micros(time.timestamp_micros()).unwrap_or(time) // ok: same instant, coarser
}

/// `t` in microseconds since the epoch, a part of a microsecond rounding
/// up: the first whole microsecond at or after `t`.
pub fn micros_up(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros() + i64::from(!t.timestamp_subsec_nanos().is_multiple_of(1000))
}

/// Reads a protobuf `Duration`, to the nanosecond (what a duration is used
/// for decides how it rounds: a hold of 1 ns lasts 1 µs, not forever).
///
/// # Errors
/// When the duration is not valid protobuf (`nanos` out of range or of the
/// other sign than `seconds`, or longer than 10,000 years).
pub fn from_duration(d: &Duration) -> Result<TimeDelta, InvalidValue> {
    if !(-999_999_999..=999_999_999).contains(&d.nanos) {
        return Err(InvalidValue::new(format!(
            "nanos must be in -999999999..=999999999, got {}",
            d.nanos
        )));
    }
    if (d.seconds > 0 && d.nanos < 0) || (d.seconds < 0 && d.nanos > 0) {
        return Err(InvalidValue::new(
            "seconds and nanos must have the same sign",
        ));
    }
    if d.seconds.unsigned_abs() > MAX_DURATION_SECONDS as u64 {
        return Err(InvalidValue::new(format!(
            "must be at most {MAX_DURATION_SECONDS} seconds"
        )));
    }
    Ok(TimeDelta::seconds(d.seconds) + TimeDelta::nanoseconds(i64::from(d.nanos)))
}

/// Writes a protobuf `Duration`.
pub fn to_duration(d: TimeDelta) -> Duration {
    let seconds = d.num_seconds();
    let nanos = d.subsec_nanos();
    Duration { seconds, nanos }
}

/// `d` as people write it: `30m`, `1d`, `2h30m`, `45s`; under a second,
/// in microseconds.
pub fn short(d: TimeDelta) -> String {
    let secs = d.num_seconds();
    let (days, hours, minutes, seconds) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    let mut out = String::new();
    for (n, unit) in [(days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")] {
        if n != 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if out.is_empty() {
        format!("{}µs", d.num_microseconds().unwrap_or(0))
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_said_as_people_write_them() {
        for (secs, text) in [(1800, "30m"), (86_400, "1d"), (9000, "2h30m"), (45, "45s")] {
            assert_eq!(short(TimeDelta::seconds(secs)), text);
        }
    }

    #[test]
    fn a_time_past_the_years_a_timestamp_holds_is_written_as_the_last_one() {
        let last = from_timestamp(&to_timestamp_within(
            DateTime::from_timestamp(MAX_TIMESTAMP_SECONDS + 86_400 * 400, 0).unwrap(),
        ))
        .unwrap();
        assert_eq!(last.timestamp(), MAX_TIMESTAMP_SECONDS);
        let first = DateTime::from_timestamp(MIN_TIMESTAMP_SECONDS - 1, 0).unwrap();
        assert!(from_timestamp(&to_timestamp_within(first)).is_ok());
        let now = DateTime::from_timestamp(1_800_000_000, 5_000).unwrap();
        assert_eq!(to_timestamp_within(now), to_timestamp(now));
    }

    #[test]
    fn timestamp_truncates_to_microseconds() {
        let t = from_timestamp(&Timestamp {
            seconds: 1_700_000_000,
            nanos: 123_456_789,
        })
        .unwrap();
        assert_eq!(t.timestamp_subsec_nanos(), 123_456_000);
    }

    #[test]
    fn timestamp_rejects_bad_nanos_and_seconds() {
        for (seconds, nanos) in [
            (0, -1),
            (0, 1_000_000_000),
            (MIN_TIMESTAMP_SECONDS - 1, 0),
            (MAX_TIMESTAMP_SECONDS + 1, 0),
            (i64::MAX, 0),
            (i64::MIN, 0),
        ] {
            assert!(
                from_timestamp(&Timestamp { seconds, nanos }).is_err(),
                "{seconds}s {nanos}ns"
            );
        }
    }

    #[test]
    fn timestamp_bounds_round_trip() {
        for seconds in [MIN_TIMESTAMP_SECONDS, 0, MAX_TIMESTAMP_SECONDS] {
            let ts = Timestamp {
                seconds,
                nanos: 999_999_000,
            };
            assert_eq!(to_timestamp(from_timestamp(&ts).unwrap()), ts);
        }
    }

    #[test]
    fn duration_round_trips_and_rejects_mixed_signs() {
        let d = Duration {
            seconds: -90,
            nanos: -500_000_000,
        };
        assert_eq!(to_duration(from_duration(&d).unwrap()), d);
        assert!(
            from_duration(&Duration {
                seconds: 1,
                nanos: -1
            })
            .is_err()
        );
        assert!(
            from_duration(&Duration {
                seconds: i64::MAX,
                nanos: 0
            })
            .is_err()
        );
    }
}
