//! Times and durations as users type them, and as tables show them.

use std::{fmt, str::FromStr};

use chrono::{DateTime, FixedOffset, Local, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// A time as typed: RFC 3339 with its own offset, a local date and time
/// read in the display zone, or `now`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimeArg {
    /// `now`.
    Now,
    /// `2026-12-01T10:00:00Z`, `2026-12-01T10:00:00+01:00`.
    Absolute(DateTime<FixedOffset>),
    /// `2026-12-01 10:00`, `2026-12-01T10:00:30`, `2026-12-01` (midnight).
    Local(NaiveDateTime),
}

const LOCAL_FORMATS: [&str; 4] = [
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
];

impl FromStr for TimeArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("now") {
            return Ok(TimeArg::Now);
        }
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            return Ok(TimeArg::Absolute(t));
        }
        for format in LOCAL_FORMATS {
            if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
                return Ok(TimeArg::Local(t));
            }
        }
        if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            return Ok(TimeArg::Local(d.and_time(chrono::NaiveTime::MIN)));
        }
        Err(
            "not a time; use RFC 3339 (2026-12-01T10:00:00Z), a local time \
             (2026-12-01 10:00, 2026-12-01T10:00), a date (2026-12-01) or now"
                .to_string(),
        )
    }
}

impl TimeArg {
    /// The instant this names, reading local times in `zone`.
    ///
    /// # Errors
    /// When a local time does not exist in the zone (skipped by a clock
    /// change).
    pub fn resolve(&self, zone: &Zone) -> Result<DateTime<Utc>, String> {
        match self {
            TimeArg::Now => Ok(Utc::now()),
            TimeArg::Absolute(t) => Ok(t.with_timezone(&Utc)),
            TimeArg::Local(naive) => {
                match zone.instants(naive) {
                    LocalResult::Single(t) => Ok(t),
                    // A time that occurs twice (clocks going back): the first.
                    LocalResult::Ambiguous(first, _) => Ok(first),
                    LocalResult::None => Err(format!(
                        "{naive} does not exist in {} (the clocks skip it)",
                        zone.name()
                    )),
                }
            }
        }
    }
}

/// Where local times are read and shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Zone {
    /// UTC (`--utc`).
    Utc,
    /// An IANA zone (`--tz Europe/Paris`).
    Named(Tz),
    /// The system's zone.
    Local,
}

impl Zone {
    /// The system's zone, by its IANA name where the system says it (so
    /// headings can name it), else as the system reports offsets.
    pub fn system() -> Zone {
        match std::env::var("TZ") {
            Ok(tz) if !tz.is_empty() => {
                // `Europe/Paris`, `:Europe/Paris`, or a path into the zone
                // files; anything else (a POSIX rule such as `JST-9`) is
                // the system's to read.
                let tz = tz.trim_start_matches(':');
                let name = tz.rsplit_once("zoneinfo/").map_or(tz, |(_, name)| name);
                name.parse::<Tz>().map_or(Zone::Local, Zone::Named)
            }
            _ => iana_time_zone::get_timezone()
                .ok()
                .and_then(|name| name.parse::<Tz>().ok())
                .map_or(Zone::Local, Zone::Named),
        }
    }

    /// What a table heading calls the zone: `UTC`, `Europe/Paris`, `local`.
    /// (Each row's time has its own offset: a heading names the zone, not
    /// an offset that summer rows would contradict.)
    pub fn heading(&self) -> String {
        match self {
            Zone::Utc => "UTC".into(),
            Zone::Named(tz) => tz.name().into(),
            Zone::Local => "local".into(),
        }
    }

    /// The zone's name, for messages.
    pub fn name(&self) -> String {
        match self {
            Zone::Utc => "UTC".into(),
            Zone::Named(tz) => tz.name().into(),
            Zone::Local => "the local zone".into(),
        }
    }

    /// The instants a local date and time names here: one, two (clocks
    /// going back) or none (clocks skipping it).
    pub fn instants(&self, naive: &NaiveDateTime) -> LocalResult<DateTime<Utc>> {
        match self {
            Zone::Utc => Utc.from_local_datetime(naive),
            Zone::Named(tz) => tz.from_local_datetime(naive).map(|t| t.with_timezone(&Utc)),
            Zone::Local => Local
                .from_local_datetime(naive)
                .map(|t| t.with_timezone(&Utc)),
        }
    }

    /// `t` as a local date and time here.
    pub fn local(&self, t: DateTime<Utc>) -> NaiveDateTime {
        match self {
            Zone::Utc => t.naive_utc(),
            Zone::Named(tz) => t.with_timezone(tz).naive_local(),
            Zone::Local => t.with_timezone(&Local).naive_local(),
        }
    }

    /// `t` in this zone, as `strftime` `format` says.
    pub fn format(&self, t: DateTime<Utc>, format: &str) -> String {
        match self {
            Zone::Utc => t.format(format).to_string(),
            Zone::Named(tz) => t.with_timezone(tz).format(format).to_string(),
            Zone::Local => t.with_timezone(&Local).format(format).to_string(),
        }
    }

    /// A short label of the zone's offset at `t`: `UTC`, `CET`, `+01:00`.
    pub fn label(&self, t: DateTime<Utc>) -> String {
        match self {
            Zone::Utc => "UTC".into(),
            Zone::Named(_) => self.format(t, "%Z"),
            Zone::Local => self.format(t, "%:z"),
        }
    }

    /// `2026-12-01 10:00`, with `:ss` when the seconds are not zero.
    pub fn date_time(&self, t: DateTime<Utc>) -> String {
        if self.format(t, "%S%.f") == "00" {
            self.format(t, "%Y-%m-%d %H:%M")
        } else {
            self.format(t, "%Y-%m-%d %H:%M:%S")
        }
    }

    /// `end` as short as it reads unambiguously after `start`: `11:00` on
    /// the same day, else `12-02 09:00`, else the full date and time.
    pub fn end_after(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> String {
        let seconds = if self.format(end, "%S%.f") == "00" {
            ""
        } else {
            ":%S"
        };
        if self.format(start, "%Y-%m-%d") == self.format(end, "%Y-%m-%d") {
            self.format(end, &format!("%H:%M{seconds}"))
        } else if self.format(start, "%Y") == self.format(end, "%Y") {
            self.format(end, &format!("%m-%d %H:%M{seconds}"))
        } else {
            self.date_time(end)
        }
    }
}

/// Checks that `end` comes after `start`, saying so in the flags and the
/// zone the user typed them in.
///
/// # Errors
/// A usage error when it does not.
pub fn check_order(
    zone: &Zone,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    start_flag: &str,
    end_flag: &str,
) -> Result<(), crate::error::CliError> {
    if end > start {
        return Ok(());
    }
    let shown = |t: DateTime<Utc>| format!("{} {}", zone.date_time(t), zone.label(t));
    let why = if end != start {
        "before it"
    } else if start_flag == "--from" {
        "the same time: a window must last"
    } else {
        "the same time: a reservation must last"
    };
    Err(crate::error::CliError::new(
        crate::exit::Exit::Usage,
        format!(
            "{end_flag} ({}) must be after {start_flag} ({}), not {why}",
            shown(end),
            shown(start)
        ),
    ))
}

/// `text` with every RFC 3339 time in it (as the server writes times in
/// its messages) said as tables say times: in `zone`, with its label.
pub fn localized(text: &str, zone: &Zone) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(|c: char| c.is_ascii_digit()) {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '+' | '-')))
            .unwrap_or(rest.len());
        // A sentence's full stop or a list's colon is not the time's.
        let token = rest[..len].trim_end_matches(['.', ':']);
        match DateTime::parse_from_rfc3339(token) {
            Ok(t) => {
                let t = t.with_timezone(&Utc);
                out.push_str(&format!("{} {}", zone.date_time(t), zone.label(t)));
                rest = &rest[token.len()..];
            }
            Err(_) => {
                out.push_str(&rest[..len]);
                rest = &rest[len..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// How long until `t`, in a few characters: `in 29m`, `in 2h05m`, `in 3d`,
/// or `past` once it has come.
pub fn until(now: DateTime<Utc>, t: DateTime<Utc>) -> String {
    let secs = (t - now).num_seconds();
    if secs <= 0 {
        return "past".into();
    }
    let minutes = (secs + 59) / 60;
    match minutes {
        m if m < 60 => format!("in {m}m"),
        m if m < 24 * 60 => match m % 60 {
            0 => format!("in {}h", m / 60),
            r => format!("in {}h{r:02}m", m / 60),
        },
        m => format!("in {}d", m / (24 * 60)),
    }
}

/// A duration as typed: `90s`, `30m`, `2h`, `1d`, `1h30m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Duration(pub std::time::Duration);

impl FromStr for Duration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(s.trim())
            .map(Duration)
            .map_err(|e| format!("{e}; durations look like 90s, 30m, 2h, 1d, 1h30m"))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        humantime::format_duration(self.0).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    #[test]
    fn times_in_messages_are_said_as_tables_say_them() {
        let paris = Zone::Named("Europe/Paris".parse().unwrap());
        assert_eq!(
            localized("check-in opens at 2027-05-01T10:00:00+00:00.", &paris),
            "check-in opens at 2027-05-01 12:00 CEST."
        );
        assert_eq!(
            localized(
                "hold 3 units from 2027-01-04T15:00:00Z to 2027-01-04T16:30:10Z",
                &Zone::Utc
            ),
            "hold 3 units from 2027-01-04 15:00 UTC to 2027-01-04 16:30:10 UTC"
        );
        let plain = "room-42 is taken: 2 live reservations, id 01a1fee2-20e9-74d9";
        assert_eq!(localized(plain, &paris), plain);
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn times_parse_in_every_documented_form() {
        let paris = Zone::Named(chrono_tz::Europe::Paris);
        let cases = [
            ("2026-12-01T10:00:00Z", Zone::Utc, "2026-12-01T10:00:00Z"),
            (
                "2026-12-01T10:00:00+01:00",
                Zone::Utc,
                "2026-12-01T09:00:00Z",
            ),
            ("2026-12-01 10:00", Zone::Utc, "2026-12-01T10:00:00Z"),
            ("2026-12-01T10:00", paris, "2026-12-01T09:00:00Z"),
            ("2026-12-01 10:00:30", Zone::Utc, "2026-12-01T10:00:30Z"),
            ("2026-12-01", paris, "2026-11-30T23:00:00Z"),
            ("2026-07-01 10:00", paris, "2026-07-01T08:00:00Z"),
        ];
        for (text, zone, want) in cases {
            let t: TimeArg = text.parse().unwrap();
            assert_eq!(t.resolve(&zone).unwrap(), utc(want), "{text}");
        }
    }

    #[test]
    fn bad_and_missing_times_are_refused() {
        for bad in ["tomorrow", "2026-13-01", "10:00", "2026-12-01 25:00", ""] {
            assert!(bad.parse::<TimeArg>().is_err(), "{bad:?}");
        }
        // Paris skips 02:00-03:00 on 2026-03-29.
        let skipped: TimeArg = "2026-03-29 02:30".parse().unwrap();
        let err = skipped
            .resolve(&Zone::Named(chrono_tz::Europe::Paris))
            .unwrap_err();
        assert!(err.contains("does not exist in Europe/Paris"), "{err}");
    }

    #[test]
    fn durations_read_like_people_write_them() {
        for (text, secs) in [
            ("90m", 5400),
            ("2h", 7200),
            ("1d", 86400),
            ("1h30m", 5400),
            ("45s", 45),
        ] {
            assert_eq!(
                text.parse::<Duration>().unwrap().0.as_secs(),
                secs,
                "{text}"
            );
        }
        assert!("soon".parse::<Duration>().is_err());
    }

    #[test]
    fn times_show_compactly() {
        let z = Zone::Utc;
        let start = utc("2026-12-01T10:00:00Z");
        assert_eq!(z.date_time(start), "2026-12-01 10:00");
        assert_eq!(
            z.date_time(utc("2026-12-01T10:00:05Z")),
            "2026-12-01 10:00:05"
        );
        assert_eq!(z.end_after(start, utc("2026-12-01T11:30:00Z")), "11:30");
        assert_eq!(
            z.end_after(start, utc("2026-12-02T09:00:00Z")),
            "12-02 09:00"
        );
        assert_eq!(
            z.end_after(start, utc("2027-01-02T09:00:00Z")),
            "2027-01-02 09:00"
        );
        assert_eq!(until(start, start + TimeDelta::minutes(29)), "in 29m");
        assert_eq!(until(start, start + TimeDelta::minutes(125)), "in 2h05m");
        assert_eq!(until(start, start + TimeDelta::days(3)), "in 3d");
        assert_eq!(until(start, start), "past");
    }
}
