//! A timeline for the terminal: one line per resource, each character a
//! cell of the window shaded by what a reservation would find there, under
//! an axis of local times.
//!
//! A cell is as long as the first of a few round lengths (1m, 15m, 1h, 3h,
//! 1d, ...) whose cells fit the window in the width given, and cells follow
//! the local clock: a 3-hour cell starts at 00:00, 03:00, ... local time
//! (after a daylight-saving change too), a day cell at local midnight. The
//! first and last cells may be cut short by the window.
//!
//! A cell is free or taken only when all its open time is; a cell with
//! both is partly free, and a cell is closed only when all of it is.

use chrono::{DateTime, Datelike, LocalResult, NaiveDateTime, NaiveTime, TimeDelta, Timelike, Utc};

use crate::time::Zone;

/// What a stretch of time looks like to someone who wants some units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shade {
    /// Every unit free.
    Free,
    /// Enough units free, some taken; or, for a cell, some of its open
    /// time free and some not.
    Partly,
    /// Not enough free while pending holds stand (they may expire or be
    /// released).
    Held,
    /// Not enough free.
    Taken,
    /// Outside opening hours.
    Closed,
}

impl Shade {
    /// In the order the legend lists them.
    pub const ALL: [Shade; 5] = [
        Shade::Free,
        Shade::Partly,
        Shade::Held,
        Shade::Taken,
        Shade::Closed,
    ];

    /// How a cell shows it.
    pub fn glyph(self) -> char {
        match self {
            Shade::Free => '░',
            Shade::Partly => '▒',
            Shade::Held => '▓',
            Shade::Taken => '█',
            Shade::Closed => '·',
        }
    }

    /// What the legend calls it.
    pub fn name(self) -> &'static str {
        match self {
            Shade::Free => "free",
            Shade::Partly => "partly free",
            Shade::Held => "held (pending)",
            Shade::Taken => "taken",
            Shade::Closed => "closed",
        }
    }

    /// The shade of a stretch where `free` of `capacity` units are free and
    /// `held` are held by pending holds, to someone who wants `quantity`.
    pub fn of(free: u32, held: u32, open: bool, capacity: u32, quantity: u32) -> Shade {
        let quantity = quantity.max(1);
        if !open {
            Shade::Closed
        } else if free < quantity {
            if free.saturating_add(held) >= quantity {
                Shade::Held
            } else {
                Shade::Taken
            }
        } else if free >= capacity {
            Shade::Free
        } else {
            Shade::Partly
        }
    }

    /// The shade of a cell whose stretches have `seen` shades: closed only
    /// if closed throughout; free, held or taken if all its open time is;
    /// partly free if some of its open time is free and some is not.
    fn of_cell(seen: Seen) -> Option<Shade> {
        let bookable = seen.has(Shade::Free) || seen.has(Shade::Partly);
        let blocked = seen.has(Shade::Held) || seen.has(Shade::Taken);
        Some(match (bookable, blocked) {
            (true, true) => Shade::Partly,
            (true, false) if seen.has(Shade::Partly) => Shade::Partly,
            (true, false) => Shade::Free,
            (false, true) if seen.has(Shade::Held) => Shade::Held,
            (false, true) => Shade::Taken,
            (false, false) if seen.has(Shade::Closed) => Shade::Closed,
            (false, false) => return None,
        })
    }

    /// The legend: every shade with its glyph.
    pub fn legend() -> String {
        Shade::ALL
            .iter()
            .map(|s| format!("{} {}", s.glyph(), s.name()))
            .collect::<Vec<_>>()
            .join("  ")
    }
}

/// The shades found in one cell.
#[derive(Clone, Copy, Debug, Default)]
struct Seen(u8);

impl Seen {
    fn add(&mut self, shade: Shade) {
        self.0 |= 1 << shade as u8;
    }

    fn has(self, shade: Shade) -> bool {
        self.0 & (1 << shade as u8) != 0
    }
}

/// Round lengths a cell may have, in seconds; those under a day divide a
/// day, those of a day or more are whole days.
const CELLS: [i64; 25] = [
    1,
    2,
    5,
    10,
    15,
    30,
    60,
    2 * 60,
    5 * 60,
    10 * 60,
    15 * 60,
    20 * 60,
    30 * 60,
    3600,
    2 * 3600,
    3 * 3600,
    4 * 3600,
    6 * 3600,
    12 * 3600,
    DAY,
    2 * DAY,
    4 * DAY,
    7 * DAY,
    14 * DAY,
    28 * DAY,
];

const DAY: i64 = 86_400;

/// Spacings of the hour marks on the axis, in seconds.
const MARKS: [i64; 9] = [
    60,
    5 * 60,
    15 * 60,
    30 * 60,
    3600,
    2 * 3600,
    3 * 3600,
    4 * 3600,
    6 * 3600,
];

/// A window cut into cells that follow the local clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeline {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    /// The nominal length of a cell, in seconds.
    cell: i64,
    /// Where each cell starts (the first at or before `from`), then where
    /// the last ends (at or after `to`).
    bounds: Vec<DateTime<Utc>>,
}

impl Timeline {
    /// The window `from`..`to` in at most `width` cells of local time in
    /// `zone` (more only when even four-week cells do not fit).
    pub fn new(from: DateTime<Utc>, to: DateTime<Utc>, width: usize, zone: &Zone) -> Timeline {
        let to = to.max(from + TimeDelta::seconds(1));
        let span = (to - from).num_seconds().max(1);
        let width = width.max(1);
        let fits = |cell: i64| {
            // At least span / cell cells; count exactly only when that fits.
            usize::try_from(span / cell)
                .ok()
                .filter(|&least| least <= width)
                .and_then(|_| {
                    let bounds = bounds(from, to, cell, zone, width + 1);
                    (bounds.len() - 1 <= width).then_some((cell, bounds))
                })
        };
        let (cell, bounds) = CELLS
            .iter()
            .find_map(|&cell| fits(cell))
            .unwrap_or_else(|| {
                let cell = CELLS[CELLS.len() - 1];
                (cell, bounds(from, to, cell, zone, usize::MAX))
            });
        Timeline {
            from,
            to,
            cell,
            bounds,
        }
    }

    /// How long one cell is (nominally: a day may have 23 or 25 hours).
    pub fn cell(&self) -> TimeDelta {
        TimeDelta::seconds(self.cell)
    }

    /// How many cells the window takes.
    pub fn width(&self) -> usize {
        self.bounds.len() - 1
    }

    /// Where cell `i` starts within the window.
    fn start(&self, i: usize) -> DateTime<Utc> {
        self.bounds[i].max(self.from)
    }

    /// The cell `t` falls in, if it is in the window.
    fn column(&self, t: DateTime<Utc>) -> Option<usize> {
        if t < self.from || t >= self.to {
            return None;
        }
        let after = self.bounds.partition_point(|b| *b <= t);
        Some(after.saturating_sub(1).min(self.width() - 1))
    }

    /// One line of cells, each shaded by the stretches in it (see the
    /// module's words); a cell no stretch reaches is blank.
    pub fn bar(
        &self,
        stretches: impl IntoIterator<Item = (DateTime<Utc>, DateTime<Utc>, Shade)>,
    ) -> String {
        let mut cells = vec![Seen::default(); self.width()];
        for (start, end, shade) in stretches {
            let (start, end) = (start.max(self.from), end.min(self.to));
            if start >= end {
                continue;
            }
            let (Some(first), Some(last)) = (
                self.column(start),
                self.column(end - TimeDelta::microseconds(1)),
            ) else {
                continue;
            };
            for cell in &mut cells[first..=last] {
                cell.add(shade);
            }
        }
        cells
            .into_iter()
            .map(|seen| Shade::of_cell(seen).map_or(' ', Shade::glyph))
            .collect()
    }

    /// The axis in `zone`: a line of dates over a line of hours when hour
    /// marks fit, else one line of dates. Each mark stands over the cell
    /// that starts at its local time; marks that would touch the one
    /// before are left out.
    pub fn axis(&self, zone: &Zone) -> Vec<String> {
        let cell = self.cell;
        let per_day = usize::try_from(DAY / cell).unwrap_or(0).max(1);
        let starts: Vec<NaiveDateTime> = (0..self.width())
            .map(|i| zone.local(self.start(i)))
            .collect();
        // Cells that start a local day (after a day that skips midnight,
        // the first cell of the day), and the window's first cell.
        let days: Vec<(usize, NaiveDateTime)> = starts
            .iter()
            .enumerate()
            .filter(|(i, t)| *i == 0 || starts[i - 1].date() != t.date())
            .map(|(i, t)| (i, *t))
            .collect();
        let mark = MARKS
            .iter()
            .copied()
            .find(|&m| m >= cell && m % cell == 0 && m / cell > shown_len(hour_format(m)));
        let Some(mark) = mark else {
            let format = day_format(per_day);
            return vec![self.marks(&days, format, cell < DAY)];
        };
        let hours: Vec<(usize, NaiveDateTime)> = starts
            .iter()
            .enumerate()
            .filter(|(_, t)| i64::from(t.num_seconds_from_midnight()) % mark == 0)
            .map(|(i, t)| (i, *t))
            .collect();
        let hours = self.marks(&hours, hour_format(mark), false);
        if days.len() == 1 {
            return vec![hours];
        }
        vec![self.marks(&days, day_format(per_day), true), hours]
    }

    /// A line with `marks` (cells and their local times) written with
    /// `format`; with `first_yields`, a mark on the first cell that would
    /// crowd out the next is left out instead of it.
    fn marks(&self, marks: &[(usize, NaiveDateTime)], format: &str, first_yields: bool) -> String {
        let mut line: Vec<char> = vec![' '; self.width()];
        let mut free_from = 0usize;
        for (n, (column, local)) in marks.iter().enumerate() {
            let text = local.format(format).to_string();
            let len = text.chars().count();
            if *column < free_from || column + len > line.len() {
                continue;
            }
            let crowds_next = marks
                .get(n + 1)
                .is_some_and(|(next, _)| column + len >= *next);
            if n == 0 && first_yields && crowds_next {
                continue;
            }
            for (i, ch) in text.chars().enumerate() {
                line[column + i] = ch;
            }
            free_from = column + len + 1;
        }
        line.into_iter().collect::<String>().trim_end().to_string()
    }
}

/// Where the cells of `cell` seconds of local time in `zone` start, from
/// the last at or before `from`, then where the last ends (at or after
/// `to`); at most `most` + 1 of them.
fn bounds(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    cell: i64,
    zone: &Zone,
    most: usize,
) -> Vec<DateTime<Utc>> {
    let local = zone.local(from);
    let midnight = local.date().and_time(NaiveTime::MIN);
    // A step back first: the local time of `from` may be the second of
    // two (clocks going back), so the grid point before it comes first.
    let first = if cell < DAY {
        let second = i64::from(local.num_seconds_from_midnight());
        midnight + TimeDelta::seconds(second / cell * cell - cell)
    } else {
        let back = if cell % (7 * DAY) == 0 {
            i64::from(local.weekday().num_days_from_monday())
        } else {
            0
        };
        midnight - TimeDelta::days(back)
    };
    let step = TimeDelta::seconds(cell);
    let mut bounds: Vec<DateTime<Utc>> = Vec::new();
    let mut naive = first;
    loop {
        let at = instant(zone, naive);
        if bounds.last().is_none_or(|last| at > *last) {
            if at <= from {
                bounds.clear();
            }
            bounds.push(at);
        }
        if at >= to || bounds.len() > most {
            break;
        }
        let Some(next) = naive.checked_add_signed(step) else {
            bounds.push(to);
            break;
        };
        naive = next;
    }
    bounds
}

/// The instant a local time names in `zone`: the first of two, and for a
/// time the clocks skip, the end of the skip.
fn instant(zone: &Zone, naive: NaiveDateTime) -> DateTime<Utc> {
    match zone.instants(&naive) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t,
        LocalResult::None => {
            // The offset before the skip, carried across it.
            let before = naive - TimeDelta::hours(3);
            match zone.instants(&before) {
                LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t + TimeDelta::hours(3),
                LocalResult::None => naive.and_utc(),
            }
        }
    }
}

/// How many characters a date written with `format` takes.
fn shown_len(format: &str) -> i64 {
    let sample = chrono::NaiveDate::from_ymd_opt(2026, 12, 1)
        .unwrap_or_default()
        .and_time(NaiveTime::MIN);
    i64::try_from(sample.format(format).to_string().chars().count()).unwrap_or(i64::MAX)
}

/// How an hour mark `mark` seconds apart is written.
fn hour_format(mark: i64) -> &'static str {
    if mark % 3600 == 0 { "%H" } else { "%H:%M" }
}

/// How a day mark is written when a day takes `columns` cells.
fn day_format(columns: usize) -> &'static str {
    match columns {
        c if c >= 10 => "%a %m-%d",
        c if c >= 7 => "%a %d",
        _ => "%b %d",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn paris() -> Zone {
        Zone::Named(chrono_tz::Europe::Paris)
    }

    fn line(from: &str, to: &str, width: usize, zone: &Zone) -> Timeline {
        Timeline::new(utc(from), utc(to), width, zone)
    }

    #[test]
    fn a_cell_is_the_first_round_length_that_fits() {
        let day = line(
            "2026-12-01T00:00:00Z",
            "2026-12-02T00:00:00Z",
            60,
            &Zone::Utc,
        );
        assert_eq!((day.cell(), day.width()), (TimeDelta::minutes(30), 48));
        let week = line(
            "2026-12-01T00:00:00Z",
            "2026-12-08T00:00:00Z",
            60,
            &Zone::Utc,
        );
        assert_eq!((week.cell(), week.width()), (TimeDelta::hours(3), 56));
        let odd = line(
            "2026-12-01T00:00:00Z",
            "2026-12-01T01:10:00Z",
            60,
            &Zone::Utc,
        );
        assert_eq!((odd.cell(), odd.width()), (TimeDelta::minutes(2), 35));
        // Off the clock's grid, a day takes one cell more: 49 half hours.
        let now = line(
            "2026-12-01T10:07:00Z",
            "2026-12-02T10:07:00Z",
            49,
            &Zone::Utc,
        );
        assert_eq!((now.cell(), now.width()), (TimeDelta::minutes(30), 49));
        let narrow = line(
            "2026-12-01T10:07:00Z",
            "2026-12-02T10:07:00Z",
            48,
            &Zone::Utc,
        );
        assert_eq!((narrow.cell(), narrow.width()), (TimeDelta::hours(1), 25));
    }

    #[test]
    fn cells_start_on_the_local_clock() {
        // From 10:07 Paris time: the first cell is 10:07 to 10:30, the
        // next 10:30 to 11:00.
        let t = line("2026-12-01T09:07:00Z", "2026-12-01T13:00:00Z", 60, &paris());
        assert_eq!(t.cell(), TimeDelta::minutes(5));
        let t = line("2026-12-01T09:07:00Z", "2026-12-02T09:07:00Z", 60, &paris());
        assert_eq!((t.cell(), t.width()), (TimeDelta::minutes(30), 49));
        let bar = t.bar([
            (
                utc("2026-12-01T09:07:00Z"),
                utc("2026-12-01T09:30:00Z"),
                Shade::Free,
            ),
            (
                utc("2026-12-01T09:30:00Z"),
                utc("2026-12-01T10:00:00Z"),
                Shade::Taken,
            ),
        ]);
        assert_eq!(bar.trim_end(), "░█");
        assert_eq!(
            t.axis(&paris()),
            [
                "Tue 12-01                   Wed 12-02",
                "    12  14  16  18  20  22  00  02  04  06  08"
            ]
        );
    }

    #[test]
    fn a_cell_is_closed_only_if_all_of_it_is_and_free_only_if_all_its_open_time_is() {
        // Day cells over open 09:00-17:00 on three days.
        let t = line(
            "2026-12-01T00:00:00Z",
            "2026-12-31T00:00:00Z",
            40,
            &Zone::Utc,
        );
        assert_eq!(t.cell(), TimeDelta::days(1));
        let mut stretches = Vec::new();
        for (day, inside) in [
            (1, &[Shade::Free][..]),
            (2, &[Shade::Free, Shade::Taken]),
            (3, &[Shade::Taken]),
            (4, &[Shade::Held, Shade::Taken]),
            (5, &[Shade::Partly]),
        ] {
            let midnight = utc("2026-12-01T00:00:00Z") + TimeDelta::days(day - 1);
            stretches.push((midnight, midnight + TimeDelta::hours(9), Shade::Closed));
            let mut at = midnight + TimeDelta::hours(9);
            for shade in inside {
                let end = at + TimeDelta::hours(8) / i32::try_from(inside.len()).unwrap();
                stretches.push((at, end, *shade));
                at = end;
            }
            stretches.push((at, midnight + TimeDelta::days(1), Shade::Closed));
        }
        stretches.push((
            utc("2026-12-06T00:00:00Z"),
            utc("2026-12-31T00:00:00Z"),
            Shade::Closed,
        ));
        assert_eq!(t.bar(stretches), format!("░▒█▓▒{}", "·".repeat(25)));
    }

    #[test]
    fn shades_follow_the_units_wanted() {
        // Capacity 10: 6 free, 2 held, 2 confirmed.
        assert_eq!(Shade::of(6, 2, true, 10, 1), Shade::Partly);
        assert_eq!(Shade::of(6, 2, true, 10, 8), Shade::Held);
        assert_eq!(Shade::of(6, 2, true, 10, 9), Shade::Taken);
        assert_eq!(Shade::of(10, 0, true, 10, 3), Shade::Free);
        assert_eq!(Shade::of(0, 0, false, 10, 1), Shade::Closed);
        assert_eq!(Shade::of(0, 1, true, 1, 0), Shade::Held);
        // More units wanted than the resource has: never bookable.
        assert_eq!(Shade::of(3, 0, true, 3, 5), Shade::Taken);
    }

    #[test]
    fn the_axis_marks_local_hours_and_days() {
        // One Paris day, 48 half-hour cells: a mark every 2 hours.
        let day = line("2026-11-30T23:00:00Z", "2026-12-01T23:00:00Z", 60, &paris());
        assert_eq!(
            day.axis(&paris()),
            ["00  02  04  06  08  10  12  14  16  18  20  22"]
        );
        // The same window read in UTC starts at 23:00 on the day before.
        let day = line(
            "2026-11-30T23:00:00Z",
            "2026-12-01T23:00:00Z",
            60,
            &Zone::Utc,
        );
        assert_eq!(
            day.axis(&Zone::Utc),
            [
                "  Tue 12-01",
                "  00  02  04  06  08  10  12  14  16  18  20  22"
            ]
        );
        // A week: days only, three-hour cells.
        let week = line(
            "2026-12-01T00:00:00Z",
            "2026-12-08T00:00:00Z",
            60,
            &Zone::Utc,
        );
        assert_eq!(
            week.axis(&Zone::Utc),
            ["Tue 01  Wed 02  Thu 03  Fri 04  Sat 05  Sun 06  Mon 07"]
        );
        // Two months in 20 columns: four-day cells, a date every 7 cells.
        let months = line(
            "2026-12-01T00:00:00Z",
            "2027-01-30T00:00:00Z",
            20,
            &Zone::Utc,
        );
        assert_eq!((months.cell(), months.width()), (TimeDelta::days(4), 15));
        assert_eq!(months.axis(&Zone::Utc), ["Dec 01 Dec 29"]);
        // A month of day cells.
        let month = line(
            "2026-12-01T00:00:00Z",
            "2026-12-31T00:00:00Z",
            40,
            &Zone::Utc,
        );
        assert_eq!(month.axis(&Zone::Utc), ["Dec 01 Dec 08 Dec 15 Dec 22"]);
    }

    #[test]
    fn cells_and_marks_follow_the_clock_across_daylight_saving_changes() {
        // Paris, 2026-03-29: 02:00 does not exist; the day has 23 hours.
        let t = line("2026-03-28T23:00:00Z", "2026-03-29T22:00:00Z", 50, &paris());
        assert_eq!((t.cell(), t.width()), (TimeDelta::minutes(30), 46));
        // 00:00 at cell 0, 03:00 (the end of the skip) at cell 4, 04:00
        // at cell 6; 02:00 never happens.
        assert_eq!(
            t.axis(&paris()),
            ["00    04  06  08  10  12  14  16  18  20  22"]
        );

        // Paris, 2026-10-25: 02:00-03:00 twice, a day of 25 hours. Three-hour
        // cells still start at local 00:00, 03:00, ...: the first is 4 hours.
        let t = line("2026-10-24T22:00:00Z", "2026-10-31T23:00:00Z", 60, &paris());
        assert_eq!((t.cell(), t.width()), (TimeDelta::hours(3), 56));
        assert_eq!(t.bounds[1], utc("2026-10-25T02:00:00Z"));
        assert_eq!(t.bounds[8], utc("2026-10-25T23:00:00Z"));
        assert_eq!(
            t.axis(&paris()),
            ["Sun 25  Mon 26  Tue 27  Wed 28  Thu 29  Fri 30  Sat 31"]
        );

        // Santiago, 2026-09-06: the clocks skip midnight (00:00 to 01:00);
        // the day starts, and is marked, at 01:00.
        let santiago = Zone::Named(chrono_tz::America::Santiago);
        let t = line(
            "2026-09-05T16:00:00Z",
            "2026-09-06T15:00:00Z",
            30,
            &santiago,
        );
        assert_eq!(t.cell(), TimeDelta::hours(1));
        assert_eq!(
            t.axis(&santiago),
            ["Sat 09-05   Sun 09-06", "12 15 18 21   03 06 09"]
        );
    }

    #[test]
    fn the_legend_names_every_shade() {
        assert_eq!(
            Shade::legend(),
            "░ free  ▒ partly free  ▓ held (pending)  █ taken  · closed"
        );
    }
}
