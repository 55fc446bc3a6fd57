//! The one function that judges a request by a resource's rules, tested on
//! its own with arbitrary policies, zones and times: it never panics, each
//! rule it reports is broken (and each rule broken is reported), overrides
//! and blocks are judged only for deletion, and wall-clock rules follow the
//! zone across daylight-saving changes.

use abi::{
    Ask, AskKind, Hold, Policy, ReservationStatus, Rule, Rules, Schedule, Timespan, WeeklyHours,
};
use chrono::{
    DateTime, Datelike, LocalResult, NaiveTime, Offset, TimeDelta, TimeZone, Utc, Weekday,
};
use chrono_tz::Tz;
use proptest::{prelude::*, test_runner::TestCaseError};

const ZONES: &[&str] = &[
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "America/St_Johns",
    "Pacific/Chatham",
];

fn any_zone() -> impl Strategy<Value = Tz> {
    prop::sample::select(ZONES).prop_map(|z| z.parse().unwrap())
}

/// Times around the daylight-saving changes of 2026 and 2027.
fn any_time() -> impl Strategy<Value = DateTime<Utc>> {
    (1_767_225_600i64..1_830_297_600, 0..4i64)
        .prop_map(|(s, q)| DateTime::from_timestamp(s - s % 60 + q * 15 * 60, 0).unwrap())
}

fn minutes(range: std::ops::Range<i64>) -> impl Strategy<Value = Option<TimeDelta>> {
    prop::option::of(range.prop_map(TimeDelta::minutes))
}

fn any_policy() -> impl Strategy<Value = Policy> {
    (
        (
            minutes(0..3000),
            minutes(0..100_000),
            prop::option::of(prop::sample::select(vec![5i64, 10, 15, 30, 60, 120])),
            minutes(0..300),
            minutes(1..3000),
        ),
        (
            minutes(0..60),
            minutes(0..60),
            minutes(1..120),
            prop::option::of(1u32..5),
            minutes(0..3000),
        ),
    )
        .prop_map(
            |(
                (min_notice, max_advance, grid, min_duration, max_duration),
                (buffer_before, buffer_after, max_hold, max_quantity, min_cancel_notice),
            )| Policy {
                min_notice,
                max_advance,
                granularity: grid.map(TimeDelta::minutes),
                min_duration,
                max_duration,
                buffer_before,
                buffer_after,
                max_hold,
                max_quantity,
                min_cancel_notice,
                ..Policy::default()
            },
        )
}

fn any_hours() -> impl Strategy<Value = Vec<WeeklyHours>> {
    prop::collection::vec(
        (0..7u8, 0u16..1440, 1u16..600).prop_map(|(d, open, len)| WeeklyHours {
            day: Weekday::try_from(d).unwrap(),
            open_minute: open,
            close_minute: (open + len).min(1440),
        }),
        0..4,
    )
}

fn any_ask() -> impl Strategy<Value = (Ask, DateTime<Utc>)> {
    (
        any_time(),
        1i64..600,
        0u32..6,
        any::<bool>(),
        any::<bool>(),
        -3000i64..100_000,
    )
        .prop_map(|(start, length, quantity, block, over, ahead)| {
            let span = Timespan::new(start, start + TimeDelta::minutes(length)).unwrap();
            let ask = Ask {
                span,
                quantity,
                status: if block {
                    ReservationStatus::Blocked
                } else {
                    ReservationStatus::Pending
                },
                hold: Hold::Default,
                kind: AskKind::New,
                override_policy: over,
            };
            (ask, start - TimeDelta::minutes(ahead))
        })
}

/// Whether `t` falls on `grid` from local midnight in `zone`, computed
/// apart from the code under test.
fn on_grid(zone: Tz, t: DateTime<Utc>, grid: TimeDelta) -> bool {
    let local = t.with_timezone(&zone).naive_local();
    let since = local.time() - NaiveTime::MIN;
    since.num_seconds() % grid.num_seconds() == 0 && since.subsec_nanos() == 0
}

/// Hours that lie wholly where the clocks spring forward open nothing that
/// day: 02:00–02:15 in St. John's on 14 March 2027, when 02:00 becomes
/// 03:00 (both ends are the first minute that exists, 03:00).
#[test]
fn hours_inside_the_spring_forward_gap_open_nothing_that_day() {
    let zone: Tz = "America/St_Johns".parse().unwrap();
    let schedule = Schedule {
        zone,
        hours: vec![WeeklyHours {
            day: Weekday::Sun,
            open_minute: 120,
            close_minute: 135,
        }],
        periods: Vec::new(),
        closed_by_default: false,
    };
    let day: DateTime<Utc> = "2027-03-14T12:00:00Z".parse().unwrap();
    let openings = schedule.open_between(day - TimeDelta::days(2), day + TimeDelta::days(2));
    assert!(openings.is_empty(), "{openings:?}");
    // A week later the hours open as usual.
    let later = day + TimeDelta::days(7);
    assert_eq!(
        schedule
            .open_between(later - TimeDelta::days(2), later + TimeDelta::days(2))
            .len(),
        1
    );
}

/// Hours are wall-clock times when the clocks go back too: in Paris on 25
/// October 2026 (03:00 CEST becomes 02:00 CET at 01:00 UTC), hours to 02:30
/// are open through both passes of 02:00–02:30 but not while the clock
/// first reads 02:30–03:00; hours from 02:30 are open from the first 02:30
/// on, but not while the clock reads 02:00–02:30 again.
#[test]
fn hours_follow_the_wall_clock_when_the_clocks_go_back() {
    let span =
        |from: &str, to: &str| Timespan::new(from.parse().unwrap(), to.parse().unwrap()).unwrap();
    let hours = |open_minute, close_minute| Schedule {
        zone: "Europe/Paris".parse().unwrap(),
        hours: vec![WeeklyHours {
            day: Weekday::Sun,
            open_minute,
            close_minute,
        }],
        periods: Vec::new(),
        closed_by_default: false,
    };
    let night = hours(0, 150);
    assert!(night.covers(&span("2026-10-24T22:00:00Z", "2026-10-25T00:30:00Z")));
    assert!(!night.covers(&span("2026-10-25T00:30:00Z", "2026-10-25T01:00:00Z")));
    assert!(night.covers(&span("2026-10-25T01:00:00Z", "2026-10-25T01:30:00Z")));
    assert!(!night.covers(&span("2026-10-25T01:30:00Z", "2026-10-25T01:31:00Z")));
    let early = hours(150, 360);
    assert!(early.covers(&span("2026-10-25T00:30:00Z", "2026-10-25T01:00:00Z")));
    assert!(!early.covers(&span("2026-10-25T01:00:00Z", "2026-10-25T01:30:00Z")));
    assert!(early.covers(&span("2026-10-25T01:30:00Z", "2026-10-25T05:00:00Z")));
    assert!(!early.covers(&span("2026-10-25T05:00:00Z", "2026-10-25T05:01:00Z")));
}

/// A day on which the zone's clocks change, in 2026 or 2027, at noon UTC.
fn a_clock_change() -> impl Strategy<Value = (Tz, DateTime<Utc>)> {
    (any_zone(), 0..8usize).prop_filter_map("the zone keeps one offset", |(zone, n)| {
        let offset = |t: DateTime<Utc>| t.with_timezone(&zone).offset().fix();
        let start = DateTime::from_timestamp(1_767_225_600, 0).unwrap();
        let changes: Vec<DateTime<Utc>> = (0..730)
            .map(|d| start + TimeDelta::days(d))
            .filter(|&t| offset(t) != offset(t + TimeDelta::days(1)))
            .collect();
        (!changes.is_empty()).then(|| (zone, changes[n % changes.len()] + TimeDelta::hours(12)))
    })
}

/// Weekly hours of `open` to `close` minutes on the local day of `day`
/// open exactly at the instants whose wall clock reads within them that
/// day (checked minute by minute over four days): a time the clocks repeat
/// is open both times, one they skip never, and the clock reading past the
/// closing in between two passes is not.
fn hours_follow_the_wall_clock(
    zone: Tz,
    day: DateTime<Utc>,
    open: u16,
    close: u16,
) -> Result<(), TestCaseError> {
    let local_day = day.with_timezone(&zone).date_naive();
    let schedule = Schedule {
        zone,
        hours: vec![WeeklyHours {
            day: local_day.weekday(),
            open_minute: open,
            close_minute: close,
        }],
        periods: Vec::new(),
        closed_by_default: false,
    };
    let from = day - TimeDelta::days(2);
    let to = day + TimeDelta::days(2);
    let openings = schedule.open_between(from, to);
    // Open that day unless every minute of the hours falls where the
    // clocks spring forward.
    let exists = |m: u16| {
        let local = local_day.and_time(NaiveTime::MIN) + TimeDelta::minutes(i64::from(m));
        zone.from_local_datetime(&local) != LocalResult::None
    };
    prop_assert_eq!(!openings.is_empty(), (open..close).any(exists));
    for &(s, e) in &openings {
        prop_assert!(s < e);
        prop_assert!(schedule.covers(&Timespan::new(s, e).unwrap()));
    }
    let mut t = from;
    while t < to {
        let local = t.with_timezone(&zone).naive_local();
        let second = (local.time() - NaiveTime::MIN).num_seconds();
        let want = local.date() == local_day
            && (i64::from(open) * 60..i64::from(close) * 60).contains(&second);
        let open_now = openings.iter().any(|&(s, e)| s <= t && t < e);
        prop_assert_eq!(open_now, want, "at {} ({} local)", t, local);
        t += TimeDelta::minutes(1);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn each_rule_reported_is_broken_and_each_broken_is_reported(
        policy in any_policy(),
        zone in any_zone(),
        (ask, now) in any_ask(),
        deleted in any::<bool>(),
    ) {
        let rules = Rules {
            capacity: 5,
            deleted,
            policy: policy.clone(),
            schedule: Schedule { zone, ..Schedule::default() },
        };
        let broken: Vec<Rule> = rules.judge(&ask, now).into_iter().map(|v| v.rule).collect();
        prop_assert_eq!(broken.contains(&Rule::ResourceDeleted), deleted);
        if ask.override_policy || ask.status == ReservationStatus::Blocked {
            prop_assert!(broken.iter().all(|r| *r == Rule::ResourceDeleted), "{:?}", broken);
            return Ok(());
        }
        let (start, end) = (ask.span.start(), ask.span.end());
        let expect = |rule: Rule, is_broken: bool| -> Result<(), TestCaseError> {
            prop_assert_eq!(broken.contains(&rule), is_broken, "{:?}: {:?}", rule, broken);
            Ok(())
        };
        expect(Rule::MinNotice, policy.min_notice.is_some_and(|n| start < now + n))?;
        expect(Rule::MaxAdvance, policy.max_advance.is_some_and(|n| start > now + n))?;
        expect(Rule::MinDuration, policy.min_duration.is_some_and(|d| end - start < d))?;
        expect(Rule::MaxDuration, policy.max_duration.is_some_and(|d| end - start > d))?;
        expect(Rule::MaxQuantity, policy.max_quantity.is_some_and(|q| ask.quantity > q))?;
        expect(
            Rule::Granularity,
            policy
                .granularity
                .is_some_and(|g| !(on_grid(zone, start, g) && on_grid(zone, end, g))),
        )?;
        // Always open: no hours, no periods, not closed by default.
        expect(Rule::OpeningHours, false)?;
    }

    #[test]
    fn a_reservation_inside_an_open_period_is_in_open_time(
        zone in any_zone(),
        hours in any_hours(),
        (ask, now) in any_ask(),
        margin in 0i64..120,
    ) {
        let period = Timespan::new(
            ask.span.start() - TimeDelta::minutes(margin),
            ask.span.end() + TimeDelta::minutes(margin),
        ).unwrap();
        let rules = Rules {
            schedule: Schedule {
                zone,
                hours,
                periods: vec![period],
                closed_by_default: true,
            },
            ..Rules::default()
        };
        let mut ask = ask;
        ask.status = ReservationStatus::Pending;
        ask.override_policy = false;
        let broken: Vec<Rule> = rules.judge(&ask, now).into_iter().map(|v| v.rule).collect();
        prop_assert!(!broken.contains(&Rule::OpeningHours), "{:?}", broken);
        // One minute past the period is outside, unless weekly hours
        // reach it.
        let schedule = &rules.schedule;
        let past = Timespan::new(ask.span.start(), period.end() + TimeDelta::minutes(1)).unwrap();
        let weekly = Schedule { periods: Vec::new(), ..schedule.clone() };
        if !weekly.hours.is_empty() {
            return Ok(());
        }
        prop_assert!(!schedule.covers(&past));
    }

    #[test]
    fn weekly_hours_open_at_their_wall_clock_times(
        zone in any_zone(),
        day in any_time(),
        open in 0u16..1300,
        len in 15u16..140,
    ) {
        hours_follow_the_wall_clock(zone, day, open, (open + len).min(1440))?;
    }

    #[test]
    fn weekly_hours_follow_the_wall_clock_on_clock_change_days(
        (zone, day) in a_clock_change(),
        shift in -1i64..=1,
        open in 0u16..360,
        len in 15u16..300,
    ) {
        hours_follow_the_wall_clock(zone, day + TimeDelta::days(shift), open, (open + len).min(1440))?;
    }

    #[test]
    fn grid_points_are_on_the_grid_in_order(
        zone in any_zone(),
        from in any_time(),
        step in prop::sample::select(vec![15i64, 30, 60, 90, 120]),
    ) {
        let step = TimeDelta::minutes(step);
        let schedule = Schedule { zone, ..Schedule::default() };
        let points = schedule.grid_points(from, from + TimeDelta::days(2), step);
        prop_assert!(!points.is_empty());
        for pair in points.windows(2) {
            prop_assert!(pair[0] < pair[1]);
        }
        for p in points {
            prop_assert!(schedule.on_grid(p, step), "{p} not on the grid in {zone}");
            prop_assert!(on_grid(zone, p, step));
        }
    }
}
