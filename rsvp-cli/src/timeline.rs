//! A timeline for the terminal: one line per resource, each character a
//! stretch of the window shaded by what a reservation would find there,
//! under an axis of local times.
//!
//! A cell is as long as the first of a few round lengths (1m, 15m, 1h, 3h,
//! 1d, ...) that fits the window in the width given; each cell shows the
//! worst of what happens in it (a cell that is free for 20 of its 30
//! minutes is not free), so free time shown is free for the whole cell.

use chrono::{DateTime, LocalResult, NaiveDateTime, NaiveTime, TimeDelta, Utc};

use crate::time::Zone;

/// What a stretch of time looks like to someone who wants some units,
/// from best to worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Shade {
    /// Every unit free.
    Free,
    /// Enough units free, some taken.
    Partly,
    /// Outside opening hours.
    Closed,
    /// Not enough free while pending holds stand (they may expire or be
    /// released).
    Held,
    /// Not enough free.
    Taken,
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
            Shade::Partly => "some units taken",
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

    /// The legend: every shade with its glyph.
    pub fn legend() -> String {
        Shade::ALL
            .iter()
            .map(|s| format!("{} {}", s.glyph(), s.name()))
            .collect::<Vec<_>>()
            .join("  ")
    }
}

/// Round lengths a cell may have, in seconds.
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
    86_400,
    2 * 86_400,
    4 * 86_400,
    7 * 86_400,
    14 * 86_400,
    28 * 86_400,
];

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

/// A window cut into cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeline {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    cell: TimeDelta,
    cells: usize,
}

impl Timeline {
    /// The window `from`..`to` in at most `width` cells (the last may be
    /// cut short by the window's end).
    pub fn new(from: DateTime<Utc>, to: DateTime<Utc>, width: usize) -> Timeline {
        let span = (to - from).num_milliseconds().max(1);
        let width = i64::try_from(width.max(1)).unwrap_or(i64::MAX);
        let seconds = CELLS
            .iter()
            .copied()
            .find(|&c| (span + c * 1000 - 1) / (c * 1000) <= width)
            .unwrap_or(CELLS[CELLS.len() - 1]);
        let cell = TimeDelta::seconds(seconds);
        let cells = (span + seconds * 1000 - 1) / (seconds * 1000);
        Timeline {
            from,
            to,
            cell,
            cells: usize::try_from(cells).unwrap_or(1),
        }
    }

    /// How long one cell is.
    pub fn cell(&self) -> TimeDelta {
        self.cell
    }

    /// How many cells the window takes.
    #[cfg(test)]
    pub fn width(&self) -> usize {
        self.cells
    }

    /// The cell `t` falls in, if it is in the window.
    fn column(&self, t: DateTime<Utc>) -> Option<usize> {
        if t < self.from || t >= self.to {
            return None;
        }
        let offset = (t - self.from).num_milliseconds() / self.cell.num_milliseconds().max(1);
        usize::try_from(offset).ok().map(|c| c.min(self.cells - 1))
    }

    /// One line of cells: each shows the worst shade of the stretches in
    /// it (consecutive stretches, in order); a cell no stretch reaches is
    /// blank.
    pub fn bar(
        &self,
        stretches: impl IntoIterator<Item = (DateTime<Utc>, DateTime<Utc>, Shade)>,
    ) -> String {
        let mut cells: Vec<Option<Shade>> = vec![None; self.cells];
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
                *cell = Some(cell.map_or(shade, |c| c.max(shade)));
            }
        }
        cells
            .into_iter()
            .map(|c| c.map_or(' ', Shade::glyph))
            .collect()
    }

    /// The axis in `zone`: a line of dates over a line of hours when the
    /// cells are shorter than a few hours, else one line of days. Each mark
    /// starts at the cell its local time falls in; marks that would touch
    /// the one before are left out.
    pub fn axis(&self, zone: &Zone) -> Vec<String> {
        let cell = self.cell.num_seconds().max(1);
        let mark = MARKS
            .iter()
            .copied()
            .find(|&m| m >= cell && m / cell > shown_len(hour_format(m)));
        let day_columns = 86_400 / cell;
        match mark {
            Some(mark) => {
                let hours = self.marks(zone, TimeDelta::seconds(mark), hour_format(mark), false);
                let first_day = zone.local(self.from).date();
                let last_day = zone.local(self.to - TimeDelta::microseconds(1)).date();
                if first_day == last_day {
                    return vec![hours];
                }
                let format = day_format(day_columns, true);
                vec![self.marks(zone, TimeDelta::days(1), format, true), hours]
            }
            None => {
                // A mark every few days when a day is too narrow for one.
                let width = shown_len(day_format(day_columns, false)) + 1;
                let every = (1..=28).find(|d| d * day_columns >= width).unwrap_or(28);
                let format = day_format(every * day_columns, false);
                vec![self.marks(zone, TimeDelta::days(every), format, false)]
            }
        }
    }

    /// A line of marks every `step` of local time from the local midnight
    /// before the window, written with `format`; with `first`, the window's
    /// start is marked too when no mark is near it.
    fn marks(&self, zone: &Zone, step: TimeDelta, format: &str, first: bool) -> String {
        let mut line: Vec<char> = vec![' '; self.cells];
        let mut free_from = 0usize;
        let mut put = |line: &mut Vec<char>, column: usize, text: &str| {
            let len = text.chars().count();
            if column < free_from || column + len > self.cells {
                return false;
            }
            for (i, ch) in text.chars().enumerate() {
                line[column + i] = ch;
            }
            free_from = column + len + 1;
            true
        };
        let midnight = zone.local(self.from).date().and_time(NaiveTime::MIN);
        let end = zone.local(self.to);
        let marks: Vec<(usize, NaiveDateTime)> = std::iter::successors(Some(midnight), |t| {
            t.checked_add_signed(step).filter(|next| *next <= end)
        })
        .filter_map(|local| {
            let at = match zone.instants(&local) {
                LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t,
                LocalResult::None => return None,
            };
            self.column(at).map(|c| (c, local))
        })
        .collect();
        if first {
            let label = zone.local(self.from).format(format).to_string();
            let room = label.chars().count() + 1;
            if marks.first().is_none_or(|(c, _)| *c >= room) {
                put(&mut line, 0, &label);
            }
        }
        for (column, local) in marks {
            put(&mut line, column, &local.format(format).to_string());
        }
        line.into_iter().collect::<String>().trim_end().to_string()
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

/// How a day mark with `columns` of room is written.
fn day_format(columns: i64, over_hours: bool) -> &'static str {
    match columns {
        c if c >= 10 => "%a %m-%d",
        c if c >= 7 => "%a %d",
        c if c >= 6 || over_hours => "%m-%d",
        _ => "%d",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_cell_is_the_first_round_length_that_fits() {
        let day = Timeline::new(utc("2026-12-01T00:00:00Z"), utc("2026-12-02T00:00:00Z"), 60);
        assert_eq!((day.cell(), day.width()), (TimeDelta::minutes(30), 48));
        let week = Timeline::new(utc("2026-12-01T00:00:00Z"), utc("2026-12-08T00:00:00Z"), 60);
        assert_eq!((week.cell(), week.width()), (TimeDelta::hours(3), 56));
        let odd = Timeline::new(utc("2026-12-01T00:00:00Z"), utc("2026-12-01T01:10:00Z"), 60);
        assert_eq!((odd.cell(), odd.width()), (TimeDelta::minutes(2), 35));
    }

    #[test]
    fn a_cell_shows_the_worst_of_its_stretches() {
        let t = Timeline::new(utc("2026-12-01T00:00:00Z"), utc("2026-12-01T04:00:00Z"), 4);
        assert_eq!(t.cell(), TimeDelta::hours(1));
        let bar = t.bar([
            (
                utc("2026-12-01T00:00:00Z"),
                utc("2026-12-01T01:20:00Z"),
                Shade::Free,
            ),
            (
                utc("2026-12-01T01:20:00Z"),
                utc("2026-12-01T01:40:00Z"),
                Shade::Taken,
            ),
            (
                utc("2026-12-01T01:40:00Z"),
                utc("2026-12-01T03:00:00Z"),
                Shade::Held,
            ),
            (
                utc("2026-12-01T03:00:00Z"),
                utc("2026-12-01T04:00:00Z"),
                Shade::Closed,
            ),
        ]);
        assert_eq!(bar, "░█▓·");
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
        let paris = Zone::Named(chrono_tz::Europe::Paris);
        // One Paris day, 48 half-hour cells: a mark every 2 hours.
        let day = Timeline::new(utc("2026-11-30T23:00:00Z"), utc("2026-12-01T23:00:00Z"), 60);
        let axis = day.axis(&paris);
        assert_eq!(axis.len(), 1, "{axis:?}");
        assert!(axis[0].starts_with("00  02  04  06"), "{axis:?}");
        // The same window read in UTC starts at 23:00 on the day before.
        let utc_axis = day.axis(&Zone::Utc);
        assert_eq!(utc_axis[0], "  Tue 12-01", "{utc_axis:?}");
        assert!(utc_axis[1].starts_with("  00  02"), "{utc_axis:?}");

        // Two days: a line of dates over the hours.
        let two = Timeline::new(utc("2026-12-01T00:00:00Z"), utc("2026-12-03T00:00:00Z"), 60);
        let axis = two.axis(&Zone::Utc);
        assert_eq!(axis.len(), 2, "{axis:?}");
        assert!(axis[0].starts_with("Tue 12-01"), "{axis:?}");
        assert_eq!(axis[0].find("Wed 12-02"), Some(24), "{axis:?}");

        // A week: days only.
        let week = Timeline::new(utc("2026-12-01T00:00:00Z"), utc("2026-12-08T00:00:00Z"), 60);
        let axis = week.axis(&Zone::Utc);
        assert_eq!(axis.len(), 1, "{axis:?}");
        assert!(axis[0].starts_with("Tue 01  Wed 02"), "{axis:?}");
    }

    #[test]
    fn marks_follow_the_clock_across_a_daylight_saving_change() {
        // Paris, 2026-03-29: 02:00 does not exist; the day has 23 hours.
        let paris = Zone::Named(chrono_tz::Europe::Paris);
        let t = Timeline::new(utc("2026-03-28T23:00:00Z"), utc("2026-03-29T22:00:00Z"), 50);
        assert_eq!(t.cell(), TimeDelta::minutes(30));
        let axis = t.axis(&paris);
        // 00 at cell 0, 04 at cell 6 (three hours later), 06 at cell 10.
        assert_eq!(axis[0].find("00"), Some(0), "{axis:?}");
        assert_eq!(axis[0].find("04"), Some(6), "{axis:?}");
        assert_eq!(axis[0].find("06"), Some(10), "{axis:?}");
        assert!(!axis[0].contains("02"), "02:00 never happens: {axis:?}");
    }
}
