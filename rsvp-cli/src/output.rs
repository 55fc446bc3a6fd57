//! Rendering: tables for people (fitted to the terminal) and JSON lines for
//! programs (full values, stable names). Everything writes to an
//! `impl Write`, so it is testable.
//!
//! A table's columns are sized from its first rows (up to [`SAMPLE`]), as
//! `ls` does; what does not fit gives way in a fixed order: notes first,
//! then the id's leading digits (ids stay usable by their last digits, as
//! shown), then the expiry column, and only then users and resources.

use std::io::{self, Write};

use abi::{
    pb::{self, ReservationStatus, ReservationUpdateType},
    time::from_timestamp,
};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use tabled::{
    Table,
    builder::Builder,
    settings::{Modify, Padding, Style, Width, object::Columns},
};

use crate::{cli::Format, ids, time::Zone};

/// The width tables fit in: the terminal's, `$COLUMNS`, or 80.
pub fn terminal_width() -> usize {
    if let Some((terminal_size::Width(w), _)) = terminal_size::terminal_size() {
        return usize::from(w);
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .filter(|&c| c >= 20)
        .unwrap_or(80)
}

/// How results look.
#[derive(Clone, Copy, Debug)]
pub struct View {
    /// Table or JSON.
    pub format: Format,
    /// The zone times are shown in.
    pub zone: Zone,
    /// The width tables fit in.
    pub width: usize,
    /// The time "in 29m" is counted from.
    pub now: DateTime<Utc>,
}

/// Rows a table is sized from before it prints.
const SAMPLE: usize = 64;

/// The shortest an id is shown: `…` and its last 12 digits, as many as
/// `rsvp` needs to find it again.
pub const SHORT_ID: usize = 13;

/// One column of a table.
#[derive(Clone, Copy, Debug)]
struct Column {
    heading: &'static str,
    /// The narrowest it is shown.
    min: usize,
    /// The widest it grows.
    max: usize,
    /// Its width before any row is seen (a stream that cannot wait).
    default: usize,
}

const fn col(heading: &'static str, min: usize, max: usize, default: usize) -> Column {
    Column {
        heading,
        min,
        max,
        default,
    }
}

/// The reservation table.
const RESERVATION_COLUMNS: [Column; 9] = [
    col("ID", 9, 36, SHORT_ID),
    col("USER", 6, 64, 12),
    col("RESOURCE", 8, 64, 16),
    col("STATUS", 7, 10, 10),
    col("START", 16, 28, 16),
    col("END", 5, 19, 11),
    col("EXPIRES", 7, 9, 7),
    col("UNITS", 5, 7, 5),
    col("NOTE", 4, 200, 24),
];

/// Where the units are in a reservation row (shown only when a row holds
/// other than one unit).
const UNITS_COLUMN: usize = 7;

/// The change table.
const CHANGE_COLUMNS: [Column; 9] = [
    col("CHANGE", 6, 12, 6),
    col("OP", 6, 6, 6),
    col("ID", 9, 36, SHORT_ID),
    col("USER", 6, 64, 12),
    col("RESOURCE", 8, 64, 16),
    col("STATUS", 7, 10, 10),
    col("START", 16, 28, 16),
    col("END", 5, 19, 11),
    col("NOTE", 4, 200, 24),
];

/// One step of giving way: the column, and the width it may shrink to
/// (`None`: it may be left out).
/// Users, resources, statuses and times never give way (a row that still
/// does not fit is wider than the terminal).
const GIVE_WAY: [(&str, Option<usize>); 8] = [
    ("NOTE", Some(20)),
    ("ID", Some(SHORT_ID)),
    ("NOTE", Some(10)),
    ("NOTE", None),
    ("END", Some(11)),
    ("ID", Some(9)),
    ("EXPIRES", None),
    ("UNITS", None),
];

/// Columns shown whole, however long a cell: a row whose cell is longer
/// than the column's width is wider than the rows around it.
const WHOLE: [&str; 5] = ["USER", "RESOURCE", "STATUS", "START", "END"];

/// Column widths for `want` (each column's wish) in `width` columns, one
/// space between columns; `None` for a column left out.
fn layout(columns: &[Column], want: &[usize], width: usize) -> Vec<Option<usize>> {
    let mut widths: Vec<Option<usize>> = columns
        .iter()
        .zip(want)
        // A want of 0: the column is left out.
        .map(|(c, &w)| (w > 0).then(|| w.clamp(c.min, c.max)))
        .collect();
    let total = |widths: &[Option<usize>]| {
        let shown: Vec<usize> = widths.iter().flatten().copied().collect();
        shown.iter().sum::<usize>() + shown.len().saturating_sub(1)
    };
    for (name, to) in GIVE_WAY {
        let over = total(&widths).saturating_sub(width);
        if over == 0 {
            break;
        }
        let Some(i) = columns.iter().position(|c| c.heading == name) else {
            continue;
        };
        let Some(w) = widths[i] else { continue };
        widths[i] = match to {
            // An id is whole, or shown by its last digits: never half.
            Some(floor) if name == "ID" => Some(floor.min(w)),
            Some(floor) => Some(w.saturating_sub(over).max(floor.min(w))),
            None => None,
        };
    }
    // Room an id left by giving way goes to the note.
    if let Some(i) = columns.iter().position(|c| c.heading == "NOTE")
        && let Some(w) = widths[i]
    {
        let room = width.saturating_sub(total(&widths));
        let wanted = want[i].clamp(columns[i].min, columns[i].max);
        widths[i] = Some(w + room.min(wanted.saturating_sub(w)));
    }
    widths
}

/// Ids are UUIDv7: their first digits are a timestamp, alike for
/// reservations made close together, so a shortened id keeps its tail.
/// `id` in `width` columns: whole, or `…` and its last digits.
pub fn short_id(id: &str, width: usize) -> String {
    if id.chars().count() <= width || width < 2 {
        return id.to_string();
    }
    let tail: String = id.chars().skip(id.chars().count() - (width - 1)).collect();
    format!("…{tail}")
}

/// Renders rows as table lines with fixed column widths (columns left out
/// are skipped), so rows printed one batch at a time line up with the
/// heading printed first.
pub(crate) fn render(rows: Vec<Vec<String>>, widths: &[Option<usize>]) -> String {
    let shown: Vec<usize> = widths.iter().flatten().copied().collect();
    let mut builder = Builder::default();
    for row in rows {
        builder.push_record(
            row.into_iter()
                .zip(widths)
                .filter(|(_, w)| w.is_some())
                .map(|(cell, _)| cell),
        );
    }
    let mut table: Table = builder.build();
    table.with(Style::empty()).with(Padding::new(0, 1, 0, 0));
    let last = shown.len().saturating_sub(1);
    for (i, &w) in shown.iter().enumerate() {
        table.with(
            Modify::new(Columns::one(i))
                .with(Width::truncate(w).suffix("…"))
                .with(Width::increase(w)),
        );
        if i == last {
            table.with(Modify::new(Columns::one(i)).with(Padding::zero()));
        }
    }
    let mut text = table.to_string();
    // The last column is padded to its width: trailing blanks help nobody.
    text = text
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n");
    text.push('\n');
    text
}

pub(crate) fn time(ts: &Option<prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    ts.as_ref().and_then(|t| from_timestamp(t).ok())
}

/// A status's name, as tables and JSON show it.
pub fn status_name(status: i32) -> &'static str {
    match ReservationStatus::try_from(status) {
        Ok(ReservationStatus::Pending) => "pending",
        Ok(ReservationStatus::Confirmed) => "confirmed",
        Ok(ReservationStatus::Blocked) => "blocked",
        Ok(ReservationStatus::Cancelled) => "cancelled",
        Ok(ReservationStatus::Expired) => "expired",
        Ok(ReservationStatus::CheckedIn) => "checked_in",
        Ok(ReservationStatus::Completed) => "completed",
        Ok(ReservationStatus::NoShow) => "no_show",
        _ => "unknown",
    }
}

fn op_name(op: i32) -> &'static str {
    match ReservationUpdateType::try_from(op) {
        Ok(ReservationUpdateType::Create) => "create",
        Ok(ReservationUpdateType::Update) => "update",
        Ok(ReservationUpdateType::Delete) => "delete",
        _ => "unknown",
    }
}

/// Notes on one line: line breaks and tabs shown as spaces, other control
/// characters written out (`\u{1b}`).
fn one_line(note: &str) -> String {
    let mut line = String::with_capacity(note.len());
    for c in note.chars() {
        match c {
            '\n' | '\r' | '\t' => line.push(' '),
            // Written out, not sent: a note must not drive the reader's
            // terminal (escape sequences that retitle or clear it).
            c if c.is_control() => line.extend(c.escape_unicode()),
            c => line.push(c),
        }
    }
    line
}

/// A reservation in JSON, every value in full.
#[derive(Debug, Serialize)]
pub struct ReservationJson<'a> {
    id: &'a str,
    user_id: &'a str,
    resource_id: &'a str,
    status: &'static str,
    start: Option<String>,
    end: Option<String>,
    note: &'a str,
    created_at: Option<String>,
    updated_at: Option<String>,
    expires_at: Option<String>,
    quantity: u32,
    #[serde(skip_serializing_if = "str::is_empty")]
    booking_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    checked_in_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    checked_out_at: Option<String>,
}

/// A time in RFC 3339, UTC.
pub fn rfc3339(ts: &Option<prost_types::Timestamp>) -> Option<String> {
    time(ts).map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

impl<'a> From<&'a pb::Reservation> for ReservationJson<'a> {
    fn from(r: &'a pb::Reservation) -> Self {
        ReservationJson {
            id: &r.id,
            user_id: &r.user_id,
            resource_id: &r.resource_id,
            status: status_name(r.status),
            start: rfc3339(&r.start),
            end: rfc3339(&r.end),
            note: &r.note,
            created_at: rfc3339(&r.created_at),
            updated_at: rfc3339(&r.updated_at),
            expires_at: rfc3339(&r.expires_at),
            quantity: r.quantity,
            booking_id: &r.booking_id,
            checked_in_at: rfc3339(&r.checked_in_at),
            checked_out_at: rfc3339(&r.checked_out_at),
        }
    }
}

/// A change in JSON.
#[derive(Debug, Serialize)]
pub struct ChangeJson<'a> {
    change_id: i64,
    op: &'static str,
    changed_at: Option<String>,
    reservation: Option<ReservationJson<'a>>,
}

impl<'a> From<&'a pb::ReservationChange> for ChangeJson<'a> {
    fn from(c: &'a pb::ReservationChange) -> Self {
        ChangeJson {
            change_id: c.change_id,
            op: op_name(c.op),
            changed_at: rfc3339(&c.changed_at),
            reservation: c.reservation.as_ref().map(Into::into),
        }
    }
}

/// One JSON value on a line of its own.
///
/// # Errors
/// When the output cannot be written.
pub fn json_line(out: &mut impl Write, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer(&mut *out, value).map_err(io::Error::other)?;
    out.write_all(b"\n")
}

impl View {
    fn start_heading(&self) -> String {
        format!("START ({})", self.zone.heading())
    }

    fn reservation_cells(&self, r: &pb::Reservation) -> Vec<String> {
        let (start, end) = (time(&r.start), time(&r.end));
        let expires = match (r.status(), time(&r.expires_at)) {
            (ReservationStatus::Pending, Some(at)) => crate::time::until(self.now, at),
            _ => "-".into(),
        };
        vec![
            r.id.clone(),
            r.user_id.clone(),
            r.resource_id.clone(),
            status_name(r.status).into(),
            start.map(|t| self.zone.date_time(t)).unwrap_or_default(),
            match (start, end) {
                (Some(s), Some(e)) => self.zone.end_after(s, e),
                _ => String::new(),
            },
            expires,
            match r.quantity {
                0 => "all".into(),
                q => q.to_string(),
            },
            one_line(&r.note),
        ]
    }

    fn change_cells(&self, c: &pb::ReservationChange) -> Vec<String> {
        let default = pb::Reservation::default();
        let r = c.reservation.as_ref().unwrap_or(&default);
        let mut cells = self.reservation_cells(r);
        let note = cells.pop().unwrap_or_default();
        cells.pop(); // the units
        cells.pop(); // the expiry: a change shows the reservation as it was then
        let mut row = vec![c.change_id.to_string(), op_name(c.op).into()];
        row.extend(cells);
        row.push(note);
        row
    }
}

/// What a table lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Reservations.
    Reservations,
    /// Changes.
    Changes,
}

/// Prints rows: in a table sized from the first rows (or at once, with
/// default widths, for a stream that cannot wait), or as JSON lines.
pub struct Rows<'w, W: Write> {
    view: View,
    out: &'w mut W,
    columns: &'static [Column],
    /// Cells waiting for the table to be sized.
    pending: Vec<Vec<String>>,
    /// Widths, once sized.
    widths: Option<Vec<Option<usize>>>,
    /// Where the id is.
    id_column: usize,
    /// Where the units are, in a table that has them.
    units_column: Option<usize>,
    /// Size from the first rows (else print each row at once).
    wait: bool,
}

impl<'w, W: Write> Rows<'w, W> {
    /// A table of `kind`, sized from its first rows; for a live stream
    /// (`wait` false) sized at once.
    pub fn new(view: View, out: &'w mut W, kind: Kind, wait: bool) -> Self {
        let (columns, id_column, units_column): (&'static [Column], usize, _) = match kind {
            Kind::Reservations => (&RESERVATION_COLUMNS, 0, Some(UNITS_COLUMN)),
            Kind::Changes => (&CHANGE_COLUMNS, 2, None),
        };
        Rows {
            view,
            out,
            columns,
            pending: Vec::new(),
            widths: None,
            id_column,
            units_column,
            wait,
        }
    }

    /// One reservation.
    pub fn reservation(&mut self, r: &pb::Reservation) -> io::Result<()> {
        ids::remember([r.id.as_str()]);
        if self.view.format == Format::Json {
            return json_line(self.out, &ReservationJson::from(r));
        }
        let cells = self.view.reservation_cells(r);
        self.push(cells)
    }

    /// One change.
    pub fn change(&mut self, c: &pb::ReservationChange) -> io::Result<()> {
        if let Some(r) = &c.reservation {
            ids::remember([r.id.as_str()]);
        }
        if self.view.format == Format::Json {
            json_line(self.out, &ChangeJson::from(c))?;
            return self.out.flush();
        }
        let cells = self.view.change_cells(c);
        self.push(cells)
    }

    fn push(&mut self, cells: Vec<String>) -> io::Result<()> {
        self.pending.push(cells);
        if self.widths.is_some() || !self.wait || self.pending.len() >= SAMPLE {
            self.flush_rows()?;
        }
        Ok(())
    }

    /// Sizes the table (if not yet) and prints what waits.
    fn flush_rows(&mut self) -> io::Result<()> {
        if self.widths.is_none() {
            let heading: Vec<String> = self
                .columns
                .iter()
                .map(|c| match c.heading {
                    "START" => self.view.start_heading(),
                    h => h.to_string(),
                })
                .collect();
            let want: Vec<usize> = if self.wait {
                self.columns
                    .iter()
                    .enumerate()
                    .map(|(i, _)| {
                        std::iter::once(&heading)
                            .chain(&self.pending)
                            .map(|row| row.get(i).map_or(0, |c| c.chars().count()))
                            .max()
                            .unwrap_or(0)
                    })
                    .collect()
            } else {
                self.columns.iter().map(|c| c.default).collect()
            };
            // Units are shown when some row holds other than one.
            let mut want = want;
            if let Some(column) = self.units_column {
                let units = self.wait && self.pending.iter().any(|row| row[column] != "1");
                if !units {
                    want[column] = 0;
                }
            }
            let mut widths = layout(self.columns, &want, self.view.width);
            // A note column with no note in it is left out.
            let note = self.columns.len() - 1;
            if self.wait && self.pending.iter().all(|row| row[note].is_empty()) {
                widths[note] = None;
            }
            self.out
                .write_all(render(vec![heading], &widths).as_bytes())?;
            self.widths = Some(widths);
        }
        let Some(widths) = &self.widths else {
            return Ok(());
        };
        let id_width = widths[self.id_column].unwrap_or(SHORT_ID);
        let rows: Vec<Vec<String>> = self
            .pending
            .drain(..)
            .map(|mut row| {
                row[self.id_column] = short_id(&row[self.id_column], id_width);
                row
            })
            .collect();
        if !rows.is_empty() {
            // What is shown whole widens its column for these rows.
            let mut widths = widths.clone();
            for (i, column) in self.columns.iter().enumerate() {
                if let Some(w) = widths[i].as_mut()
                    && WHOLE.contains(&column.heading)
                {
                    let longest = rows.iter().map(|r| r[i].chars().count()).max();
                    *w = (*w).max(longest.unwrap_or(0));
                }
            }
            self.out.write_all(render(rows, &widths).as_bytes())?;
        }
        self.out.flush()
    }

    /// Ends the table; says so when there was nothing to show.
    pub fn finish(mut self, nothing: &str) -> io::Result<()> {
        if self.view.format == Format::Json {
            return self.out.flush();
        }
        if self.widths.is_none() && self.pending.is_empty() {
            writeln!(self.out, "{nothing}")?;
            return self.out.flush();
        }
        self.flush_rows()
    }
}

/// Prints one reservation: every field on its own line, the id in full,
/// each time labelled with its own zone offset.
pub fn reservation(view: &View, out: &mut impl Write, r: &pb::Reservation) -> io::Result<()> {
    ids::remember([r.id.as_str()]);
    if view.format == Format::Json {
        return json_line(out, &ReservationJson::from(r));
    }
    let zone = view.zone;
    let full = |ts: &Option<prost_types::Timestamp>| {
        time(ts)
            .map(|t| format!("{} {}", zone.date_time(t), zone.label(t)))
            .unwrap_or_else(|| "-".into())
    };
    let expires = match (r.status(), time(&r.expires_at)) {
        (ReservationStatus::Pending, Some(at)) => {
            format!(
                "{} ({})",
                full(&r.expires_at),
                crate::time::until(view.now, at)
            )
        }
        (_, Some(_)) => full(&r.expires_at),
        _ => "-".into(),
    };
    let mut rows = vec![
        vec!["id".into(), r.id.clone()],
        vec!["user".into(), r.user_id.clone()],
        vec!["resource".into(), r.resource_id.clone()],
        vec!["status".into(), status_name(r.status).into()],
        vec!["start".into(), full(&r.start)],
        vec!["end".into(), full(&r.end)],
        vec!["expires".into(), expires],
    ];
    // Units, when other than the one a resource without capacity has.
    if r.quantity != 1 {
        rows.push(vec![
            "units".into(),
            match r.quantity {
                0 => "all (a closure)".into(),
                q => q.to_string(),
            },
        ]);
    }
    if !r.booking_id.is_empty() {
        rows.push(vec!["booking".into(), r.booking_id.clone()]);
    }
    for (label, at) in [("arrived", &r.checked_in_at), ("left", &r.checked_out_at)] {
        if at.is_some() {
            rows.push(vec![label.into(), full(at)]);
        }
    }
    rows.extend([
        vec!["note".into(), one_line(&r.note)],
        vec!["created".into(), full(&r.created_at)],
        vec!["updated".into(), full(&r.updated_at)],
    ]);
    let value_width = view.width.saturating_sub(10).max(20);
    out.write_all(render(rows, &[Some(9), Some(value_width)]).as_bytes())?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(widths: &[Option<usize>]) -> usize {
        let w: Vec<usize> = widths.iter().flatten().copied().collect();
        w.iter().sum::<usize>() + w.len() - 1
    }

    #[test]
    fn tables_fit_eighty_columns_keeping_users_and_resources_whole() {
        // A 36-digit id, a 19-character user, an 18-character resource,
        // a pending hold, a long note.
        let want = [36, 19, 18, 7, 16, 5, 7, 5, 70];
        let widths = layout(&RESERVATION_COLUMNS, &want, 80);
        assert!(shown(&widths) <= 80, "{widths:?}");
        assert_eq!(widths[1], Some(19), "the user whole: {widths:?}");
        assert_eq!(widths[2], Some(18), "the resource whole: {widths:?}");
        assert_eq!(widths[8], None, "the note gives way first");
        let roomy = layout(&RESERVATION_COLUMNS, &[36, 12, 10, 9, 16, 5, 7, 5, 70], 100);
        assert!(
            roomy[0].is_some_and(|w| (SHORT_ID..36).contains(&w)),
            "the id by its last digits: {roomy:?}"
        );
        assert!(
            roomy[8].is_some(),
            "the note while there is room: {roomy:?}"
        );

        let changes = layout(&CHANGE_COLUMNS, &[6, 6, 36, 12, 10, 9, 16, 5, 30], 80);
        assert!(shown(&changes) <= 80, "{changes:?}");
        // Users and resources stay whole, though the row is then wider.
        let long = layout(&CHANGE_COLUMNS, &[6, 6, 36, 20, 20, 9, 16, 5, 30], 80);
        assert_eq!((long[3], long[4], long[8]), (Some(20), Some(20), None));
    }

    #[test]
    fn a_wide_terminal_shows_everything_whole() {
        let want = [36, 20, 25, 9, 16, 5, 7, 5, 70];
        let widths = layout(&RESERVATION_COLUMNS, &want, 210);
        assert_eq!(
            widths,
            want.iter()
                .zip(&RESERVATION_COLUMNS)
                .map(|(&w, c)| Some(w.clamp(c.min, c.max)))
                .collect::<Vec<_>>()
        );
        let id = "01a1feea-d86a-70b7-97d7-9ceeefb550cf";
        assert_eq!(short_id(id, 9), "…efb550cf");
        assert_eq!(short_id(id, 36), id);
    }

    #[test]
    fn long_values_are_shortened_and_rows_line_up() {
        let text = render(
            vec![
                vec!["ID".into(), "NOTE".into()],
                vec!["0123456789".into(), "a very long note indeed".into()],
            ],
            &[Some(8), Some(10)],
        );
        assert_eq!(text, "ID       NOTE\n0123456… a very lo…\n");
    }
}
