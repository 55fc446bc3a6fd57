//! Rendering: tables for people (fitted to the terminal, rows printed as
//! they arrive) and JSON lines for programs (full values, stable names).
//! Everything writes to an `impl Write`, so it is testable.

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

use crate::{cli::Format, time::Zone};

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

/// One column of a table: its heading, and how narrow and wide it may be.
struct Column {
    heading: &'static str,
    min: usize,
    max: usize,
}

const fn col(heading: &'static str, min: usize, max: usize) -> Column {
    Column { heading, min, max }
}

/// The reservation table: id, user, resource, status, start, end, expires, note.
const RESERVATION_COLUMNS: [Column; 8] = [
    col("ID", 9, 36),
    col("USER", 6, 16),
    col("RESOURCE", 8, 20),
    col("STATUS", 9, 9),
    col("START", 16, 19),
    col("END", 11, 19),
    col("EXPIRES", 8, 8),
    col("NOTE", 4, 200),
];

/// The change table.
const CHANGE_COLUMNS: [Column; 8] = [
    col("CHANGE", 6, 12),
    col("OP", 6, 6),
    col("ID", 9, 36),
    col("USER", 6, 16),
    col("RESOURCE", 8, 20),
    col("STATUS", 9, 9),
    col("START", 16, 19),
    col("END", 11, 19),
];

/// In which order columns grow past their minimum, as far as their maximum.
const GROWTH: [&str; 5] = ["NOTE", "USER", "RESOURCE", "ID", "END"];

/// Column widths that fit `width` (one space between columns): every column
/// at its minimum, then the room left shared out in `GROWTH` order.
fn layout(columns: &[Column], width: usize) -> Vec<usize> {
    let mut widths: Vec<usize> = columns.iter().map(|c| c.min).collect();
    let used = widths.iter().sum::<usize>() + columns.len() - 1;
    let mut room = width.saturating_sub(used);
    // The note takes a fair share before the id grows to full length.
    let caps = |name: &str, c: &Column| match name {
        "NOTE" => c.min + 16,
        _ => c.max,
    };
    for pass in 0..2 {
        for name in GROWTH {
            if let Some(i) = columns.iter().position(|c| c.heading == name) {
                let cap = if pass == 0 {
                    caps(name, &columns[i])
                } else {
                    columns[i].max
                };
                let grow = cap.saturating_sub(widths[i]).min(room);
                widths[i] += grow;
                room -= grow;
            }
        }
    }
    widths
}

/// Ids are UUIDv7: their first digits are a timestamp, alike for
/// reservations made close together, so a shortened id keeps its tail.
/// `id` in `width` columns: whole, or `…` and its last digits.
fn short_id(id: &str, width: usize) -> String {
    if id.chars().count() <= width || width < 2 {
        return id.to_string();
    }
    let tail: String = id.chars().skip(id.chars().count() - (width - 1)).collect();
    format!("…{tail}")
}

/// Renders rows as table lines with fixed column widths, so rows printed
/// one batch at a time line up with the heading printed first.
fn render(rows: Vec<Vec<String>>, widths: &[usize]) -> String {
    let mut builder = Builder::default();
    for row in rows {
        builder.push_record(row);
    }
    let mut table: Table = builder.build();
    table.with(Style::empty()).with(Padding::new(0, 1, 0, 0));
    let last = widths.len() - 1;
    for (i, &w) in widths.iter().enumerate() {
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

fn time(ts: &Option<prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    ts.as_ref().and_then(|t| from_timestamp(t).ok())
}

fn status_name(status: i32) -> &'static str {
    match ReservationStatus::try_from(status) {
        Ok(ReservationStatus::Pending) => "pending",
        Ok(ReservationStatus::Confirmed) => "confirmed",
        Ok(ReservationStatus::Blocked) => "blocked",
        Ok(ReservationStatus::Cancelled) => "cancelled",
        Ok(ReservationStatus::Expired) => "expired",
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

/// Notes on one line: line breaks and tabs shown as spaces.
fn one_line(note: &str) -> String {
    note.split(['\n', '\r', '\t']).collect::<Vec<_>>().join(" ")
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
}

fn rfc3339(ts: &Option<prost_types::Timestamp>) -> Option<String> {
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

fn json_line(out: &mut impl Write, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer(&mut *out, value).map_err(io::Error::other)?;
    out.write_all(b"\n")
}

impl View {
    fn start_heading(&self) -> String {
        format!("START ({})", self.zone.label(self.now))
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
            one_line(&r.note),
        ]
    }
}

/// Prints reservations: a heading once, then rows as they come.
pub struct Rows<'w, W: Write> {
    view: View,
    out: &'w mut W,
    widths: Vec<usize>,
    headed: bool,
}

impl<'w, W: Write> Rows<'w, W> {
    /// Rows of reservations, or of changes when `changes` is set.
    pub fn new(view: View, out: &'w mut W, changes: bool) -> Self {
        let columns: &[Column] = if changes {
            &CHANGE_COLUMNS
        } else {
            &RESERVATION_COLUMNS
        };
        Rows {
            widths: layout(columns, view.width),
            view,
            out,
            headed: false,
        }
    }

    fn heading(&mut self, columns: &[Column]) -> io::Result<()> {
        if self.headed || self.view.format == Format::Json {
            return Ok(());
        }
        self.headed = true;
        let row = columns
            .iter()
            .map(|c| match c.heading {
                "START" => self.view.start_heading(),
                h => h.to_string(),
            })
            .collect();
        self.out
            .write_all(render(vec![row], &self.widths).as_bytes())
    }

    /// One reservation.
    pub fn reservation(&mut self, r: &pb::Reservation) -> io::Result<()> {
        if self.view.format == Format::Json {
            return json_line(self.out, &ReservationJson::from(r));
        }
        self.heading(&RESERVATION_COLUMNS)?;
        let mut row = self.view.reservation_cells(r);
        row[0] = short_id(&row[0], self.widths[0]);
        self.out
            .write_all(render(vec![row], &self.widths).as_bytes())?;
        self.out.flush()
    }

    /// One change.
    pub fn change(&mut self, c: &pb::ReservationChange) -> io::Result<()> {
        if self.view.format == Format::Json {
            json_line(self.out, &ChangeJson::from(c))?;
            return self.out.flush();
        }
        self.heading(&CHANGE_COLUMNS)?;
        let default = pb::Reservation::default();
        let r = c.reservation.as_ref().unwrap_or(&default);
        let mut cells = self.view.reservation_cells(r);
        cells[0] = short_id(&cells[0], self.widths[2]);
        let mut row = vec![c.change_id.to_string(), op_name(c.op).into()];
        row.extend(cells.into_iter().take(6));
        self.out
            .write_all(render(vec![row], &self.widths).as_bytes())?;
        self.out.flush()
    }

    /// Ends the table; says so when there was nothing to show.
    pub fn finish(self, nothing: &str) -> io::Result<()> {
        if !self.headed && self.view.format == Format::Table {
            writeln!(self.out, "{nothing}")?;
        }
        self.out.flush()
    }
}

/// Prints one reservation: every field on its own line, the id in full.
pub fn reservation(view: &View, out: &mut impl Write, r: &pb::Reservation) -> io::Result<()> {
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
    let rows = vec![
        vec!["id".into(), r.id.clone()],
        vec!["user".into(), r.user_id.clone()],
        vec!["resource".into(), r.resource_id.clone()],
        vec!["status".into(), status_name(r.status).into()],
        vec!["start".into(), full(&r.start)],
        vec!["end".into(), full(&r.end)],
        vec!["expires".into(), expires],
        vec!["note".into(), one_line(&r.note)],
        vec!["created".into(), full(&r.created_at)],
        vec!["updated".into(), full(&r.updated_at)],
    ];
    let value_width = view.width.saturating_sub(10).max(20);
    out.write_all(render(rows, &[9, value_width]).as_bytes())?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_fit_eighty_columns() {
        for columns in [&RESERVATION_COLUMNS[..], &CHANGE_COLUMNS[..]] {
            let widths = layout(columns, 80);
            let total = widths.iter().sum::<usize>() + widths.len() - 1;
            assert!(total <= 80, "{widths:?} = {total}");
        }
        let wide = layout(&RESERVATION_COLUMNS, 160);
        assert_eq!(wide[0], 36, "a wide terminal shows whole ids");
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
            &[8, 10],
        );
        assert_eq!(text, "ID       NOTE\n0123456… a very lo…\n");
    }
}
