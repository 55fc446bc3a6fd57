//! `rsvp free`: what can be booked, drawn as a timeline per resource, with
//! the slots a reserve would accept as a table.

use std::io::Write;

use abi::{
    AvailabilityRequest,
    pb::{self, AvailabilityResponse},
    time::{to_duration, to_timestamp},
};
use chrono::{TimeDelta, Utc};
use serde::Serialize;

use super::Context;
use crate::{
    cli::{Format, FreeArgs},
    client::{call_as, with_deadline},
    error::CliError,
    exit::Exit,
    output::{self, View, rfc3339, time},
    time::Duration,
    timeline::{Shade, Timeline},
};

/// The longest a resource's name is shown before the timeline.
const LABEL: usize = 24;

/// Asks for the availability of the resources and prints it.
///
/// # Errors
/// Invalid input, or a failed call.
pub async fn run(args: FreeArgs, cx: &Context, out: &mut impl Write) -> Result<(), CliError> {
    let request = request(&args, cx)?;
    let mut client = cx.client().await?;
    // The server's refusals too in the flags' words.
    let answer = call_as(
        &cx.server,
        cx.timeout,
        client.availability(with_deadline(request.clone(), cx.timeout)),
        |status| match status.message().split_once(": ") {
            Some((field, reason)) if status.code() == tonic::Code::InvalidArgument => {
                CliError::new(
                    Exit::InvalidArgument,
                    format!("{}: {reason}", flag_of(field)),
                )
            }
            _ => CliError::from_status(status, &cx.server),
        },
    )
    .await?;
    if cx.view.format == Format::Json {
        output::json_line(out, &AnswerJson::from(&answer))?;
        return Ok(out.flush()?);
    }
    print(&cx.view, out, &request, &answer, args.segments)?;
    Ok(out.flush()?)
}

/// The request the arguments make, checked as the server checks it and
/// refused in the flags' words.
fn request(args: &FreeArgs, cx: &Context) -> Result<pb::AvailabilityRequest, CliError> {
    let zone = &cx.input;
    let resolve = |t: &crate::time::TimeArg, flag: &str| {
        t.resolve(zone)
            .map_err(|e| CliError::new(Exit::Usage, format!("{flag}: {e}")))
    };
    let from = match &args.from {
        Some(t) => resolve(t, "--from")?,
        None => Utc::now(),
    };
    let to = match &args.to {
        Some(t) => resolve(t, "--to")?,
        None => from.checked_add_signed(TimeDelta::days(1)).ok_or_else(|| {
            CliError::new(
                Exit::Usage,
                "--from: too late for a day's window; give --to",
            )
        })?,
    };
    crate::time::check_order(zone, from, to, "--from", "--to")?;
    if args.quantity == Some(0) {
        return Err(CliError::new(Exit::Usage, "--quantity: must be at least 1"));
    }
    let duration = |d: Option<Duration>, flag: &str| {
        d.map(|d| {
            TimeDelta::from_std(d.0)
                .map(to_duration)
                .map_err(|_| CliError::new(Exit::Usage, format!("{flag}: too long")))
        })
        .transpose()
    };
    let request = pb::AvailabilityRequest {
        resource_ids: args.resource.iter().flat_map(|r| split_ids(r)).collect(),
        start: Some(to_timestamp(from)),
        end: Some(to_timestamp(to)),
        quantity: args.quantity.unwrap_or(1),
        slot_duration: duration(args.slot, "--slot")?,
        slot_step: duration(args.step, "--step")?,
    };
    if let Err(abi::Error::InvalidArgument { field, reason }) =
        AvailabilityRequest::try_from(request.clone())
    {
        return Err(CliError::new(
            Exit::InvalidArgument,
            format!("{}: {reason}", flag_of(field)),
        ));
    }
    Ok(request)
}

/// The flag of `rsvp free` that sets an Availability request's `field`.
fn flag_of(field: &str) -> &str {
    match field {
        "resource_ids" => "--resource",
        "start" => "--from",
        "end" => "--to",
        "slot_duration" => "--slot",
        "slot_step" => "--step",
        other => other,
    }
}

/// The timelines, the legend, the segments and slots asked for, and where
/// the answer stands in the change feed.
fn print(
    view: &View,
    out: &mut impl Write,
    request: &pb::AvailabilityRequest,
    answer: &AvailabilityResponse,
    show_segments: bool,
) -> std::io::Result<()> {
    // The request was made here, with both ends.
    let (Some(from), Some(to)) = (time(&request.start), time(&request.end)) else {
        return Ok(());
    };
    let quantity = request.quantity.max(1);
    let zone = view.zone;
    let labels: Vec<String> = answer
        .resources
        .iter()
        .map(|r| {
            let capacity = if r.capacity == 1 {
                String::new()
            } else {
                format!(" ({})", r.capacity)
            };
            let room = LABEL.saturating_sub(capacity.chars().count());
            format!("{}{capacity}", shortened(&r.resource_id, room))
        })
        .collect();
    let label_width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let bar_width = view.width.saturating_sub(label_width + 1).max(10);
    let timeline = Timeline::new(from, to, bar_width, &zone);

    writeln!(
        out,
        "{} – {} ({}), {quantity} unit{}; a cell is {}",
        zone.date_time(from),
        zone.end_after(from, to),
        zone.heading(),
        if quantity == 1 { "" } else { "s" },
        abi::time::short(timeline.cell()),
    )?;
    writeln!(out)?;
    let pad = " ".repeat(label_width + 1);
    for line in timeline.axis(&zone) {
        writeln!(out, "{pad}{line}")?;
    }
    for (r, label) in answer.resources.iter().zip(&labels) {
        let bar = if r.deleted {
            "deleted".to_string()
        } else {
            timeline.bar(r.segments.iter().filter_map(|s| {
                Some((
                    time(&s.start)?,
                    time(&s.end)?,
                    Shade::of(s.free, s.held, s.open, r.capacity, quantity),
                ))
            }))
        };
        writeln!(out, "{label:<label_width$} {bar}")?;
    }
    writeln!(out)?;
    let legend = Shade::legend();
    if pad.len() + legend.chars().count() <= view.width {
        writeln!(out, "{pad}{legend}")?;
    } else {
        writeln!(out, "{legend}")?;
    }

    if show_segments {
        writeln!(out)?;
        segments(view, out, answer)?;
    }
    if request.slot_duration.is_some() {
        writeln!(out)?;
        slots(view, out, request, answer)?;
    }
    writeln!(
        out,
        "\nas of change {0}: rsvp listen --after {0} follows every later change",
        answer.as_of_change_id
    )?;
    Ok(())
}

/// `text` in at most `width` characters: whole, or its start and `…`.
fn shortened(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let head: String = text.chars().take(width.saturating_sub(1)).collect();
    format!("{head}…")
}

/// The stretches of constant state, one row each: the figures behind the
/// timeline.
fn segments(
    view: &View,
    out: &mut impl Write,
    answer: &AvailabilityResponse,
) -> std::io::Result<()> {
    let mut rows = vec![heading(view, &["FREE", "HELD", "OPEN"])];
    for r in answer.resources.iter().filter(|r| !r.deleted) {
        for s in &r.segments {
            let mut row = stretch(view, &r.resource_id, &s.start, &s.end);
            row.extend([
                s.free.to_string(),
                s.held.to_string(),
                if s.open { "open" } else { "closed" }.into(),
            ]);
            rows.push(row);
        }
    }
    table(out, rows)
}

/// The slots, one row each; a resource with none says so.
fn slots(
    view: &View,
    out: &mut impl Write,
    request: &pb::AvailabilityRequest,
    answer: &AvailabilityResponse,
) -> std::io::Result<()> {
    let length = request
        .slot_duration
        .as_ref()
        .and_then(|d| abi::time::from_duration(d).ok())
        .map(abi::time::short)
        .unwrap_or_default();
    let mut rows = vec![heading(view, &["FREE"])];
    let mut none = Vec::new();
    for r in answer.resources.iter().filter(|r| !r.deleted) {
        if r.slots.is_empty() {
            none.push(r.resource_id.as_str());
        }
        for s in &r.slots {
            let mut row = stretch(view, &r.resource_id, &s.start, &s.end);
            row.push(s.free.to_string());
            rows.push(row);
        }
    }
    if rows.len() > 1 {
        table(out, rows)?;
    }
    for id in none {
        writeln!(
            out,
            "{id}: no {length} slot a reservation would get in the window"
        )?;
    }
    Ok(())
}

/// The heading of a table of stretches of time, then `more` columns.
fn heading(view: &View, more: &[&str]) -> Vec<String> {
    let mut row = vec![
        "RESOURCE".to_string(),
        format!("START ({})", view.zone.heading()),
        "END".into(),
    ];
    row.extend(more.iter().map(|m| m.to_string()));
    row
}

/// The first cells of a row of a stretch of a resource's time.
fn stretch(
    view: &View,
    resource: &str,
    start: &Option<prost_types::Timestamp>,
    end: &Option<prost_types::Timestamp>,
) -> Vec<String> {
    let (start, end) = (time(start), time(end));
    vec![
        resource.to_string(),
        start.map_or_else(|| "?".into(), |t| view.zone.date_time(t)),
        match (start, end) {
            (Some(start), Some(end)) => view.zone.end_after(start, end),
            (None, Some(end)) => view.zone.date_time(end),
            (_, None) => "?".into(),
        },
    ]
}

/// Prints rows as a table, each column as wide as its widest cell.
fn table(out: &mut impl Write, rows: Vec<Vec<String>>) -> std::io::Result<()> {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<Option<usize>> = (0..columns)
        .map(|i| {
            rows.iter()
                .map(|row| row.get(i).map_or(0, |c| c.chars().count()))
                .max()
        })
        .collect();
    out.write_all(output::render(rows, &widths).as_bytes())
}

/// An Availability answer in JSON, on one line.
#[derive(Debug, Serialize)]
struct AnswerJson {
    as_of_change_id: i64,
    resources: Vec<ResourceJson>,
}

#[derive(Debug, Serialize)]
struct ResourceJson {
    resource_id: String,
    capacity: u32,
    deleted: bool,
    segments: Vec<SegmentJson>,
    slots: Vec<SlotJson>,
}

#[derive(Debug, Serialize)]
struct SegmentJson {
    start: Option<String>,
    end: Option<String>,
    free: u32,
    held: u32,
    open: bool,
}

#[derive(Debug, Serialize)]
struct SlotJson {
    start: Option<String>,
    end: Option<String>,
    free: u32,
}

impl From<&AvailabilityResponse> for AnswerJson {
    fn from(a: &AvailabilityResponse) -> Self {
        AnswerJson {
            as_of_change_id: a.as_of_change_id,
            resources: a
                .resources
                .iter()
                .map(|r| ResourceJson {
                    resource_id: r.resource_id.clone(),
                    capacity: r.capacity,
                    deleted: r.deleted,
                    segments: r
                        .segments
                        .iter()
                        .map(|s| SegmentJson {
                            start: rfc3339(&s.start),
                            end: rfc3339(&s.end),
                            free: s.free,
                            held: s.held,
                            open: s.open,
                        })
                        .collect(),
                    slots: r
                        .slots
                        .iter()
                        .map(|s| SlotJson {
                            start: rfc3339(&s.start),
                            end: rfc3339(&s.end),
                            free: s.free,
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// Ids separated by commas: `\,` is a comma within an id, `\\` a
/// backslash; any other backslash is itself.
fn split_ids(text: &str) -> Vec<String> {
    let (mut ids, mut id) = (Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('\\', Some(&next @ (',' | '\\'))) => {
                id.push(next);
                chars.next();
            }
            (',', _) => ids.push(std::mem::take(&mut id)),
            (c, _) => id.push(c),
        }
    }
    ids.push(id);
    ids
}

#[cfg(test)]
mod tests {
    use super::split_ids;

    #[test]
    fn ids_split_at_commas_not_written_as_escapes() {
        assert_eq!(split_ids("a,b"), ["a", "b"]);
        assert_eq!(split_ids(r"Room 1\, floor 2,b"), ["Room 1, floor 2", "b"]);
        assert_eq!(split_ids(r"back\\,slash"), [r"back\", "slash"]);
        assert_eq!(split_ids(r"c:\dir"), [r"c:\dir"]);
        assert_eq!(split_ids("a,"), ["a", ""]);
    }
}
