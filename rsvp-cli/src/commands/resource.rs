//! `rsvp resource`: register resources, with their capacity, booking
//! policy and opening hours, and look after them.

use std::io::Write;

use abi::{
    pb::{self, resource_service_client::ResourceServiceClient},
    time::{to_duration, to_timestamp},
};
use chrono::TimeDelta;
use serde::Serialize;

use super::Context;
use crate::{
    cli::{
        Format, ResourceCommand, ResourceDeleteArgs, ResourceListArgs, ResourceSpecArgs,
        ResourceUpdateArgs,
    },
    client::{Transport, call, channel, with_deadline},
    error::CliError,
    exit::Exit,
    output::{self, View, rfc3339},
    time::{Duration, Zone},
};

/// Runs a `resource` subcommand.
///
/// # Errors
/// Invalid input, or a failed call.
pub async fn run(
    command: ResourceCommand,
    cx: &Context,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let mut client = ResourceServiceClient::new(channel(&cx.target()).await?);
    match command {
        ResourceCommand::Create(args) => {
            let (resource, _) = wire(&args, &cx.input)?;
            let request = pb::CreateResourceRequest {
                resource: Some(resource),
            };
            let made = call(
                &cx.server,
                cx.timeout,
                client.create_resource(with_deadline(request, cx.timeout)),
            )
            .await?;
            show(&cx.view, out, &made.resource.unwrap_or_default())
        }
        ResourceCommand::Get(args) => {
            let request = pb::GetResourceRequest { id: args.id };
            let found = call(
                &cx.server,
                cx.timeout,
                client.get_resource(with_deadline(request, cx.timeout)),
            )
            .await?;
            show(&cx.view, out, &found.resource.unwrap_or_default())
        }
        ResourceCommand::Update(args) => update(args, cx, &mut client, out).await,
        ResourceCommand::Delete(args) => delete(args, cx, &mut client, out).await,
        ResourceCommand::List(args) => list(args, cx, &mut client, out).await,
    }
}

async fn update(
    args: ResourceUpdateArgs,
    cx: &Context,
    client: &mut ResourceServiceClient<Transport>,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let (mut resource, mut paths) = wire(&args.spec, &cx.input)?;
    for field in &args.clear {
        paths.push(clear_path(field)?.to_string());
    }
    if paths.is_empty() {
        return Err(CliError::new(
            Exit::Usage,
            "nothing to change: give the flags of the fields to change, or --clear FIELD",
        ));
    }
    resource.etag = args.etag.unwrap_or_default();
    let request = pb::UpdateResourceRequest {
        resource: Some(resource),
        update_mask: Some(prost_types::FieldMask { paths }),
    };
    let done = call(
        &cx.server,
        cx.timeout,
        client.update_resource(with_deadline(request, cx.timeout)),
    )
    .await?;
    show(&cx.view, out, &done.resource.unwrap_or_default())
}

async fn delete(
    args: ResourceDeleteArgs,
    cx: &Context,
    client: &mut ResourceServiceClient<Transport>,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let request = pb::DeleteResourceRequest {
        id: args.id,
        force: args.force,
    };
    let done = call(
        &cx.server,
        cx.timeout,
        client.delete_resource(with_deadline(request, cx.timeout)),
    )
    .await
    .map_err(|mut e| {
        if e.exit == Exit::NotAllowed && !args.force {
            e.message
                .push_str("; --force cancels them and deletes the resource");
        }
        e
    })?;
    show(&cx.view, out, &done.resource.unwrap_or_default())
}

async fn list(
    args: ResourceListArgs,
    cx: &Context,
    client: &mut ResourceServiceClient<Transport>,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let labels = args
        .label
        .iter()
        .map(|l| label(l))
        .collect::<Result<_, _>>()?;
    let mut request = pb::ListResourcesRequest {
        page_size: args.page_size.map_or(0, |n| n as i32),
        page_token: args.page_token.unwrap_or_default(),
        labels,
        show_deleted: args.deleted,
    };
    let mut rows = Vec::new();
    loop {
        let page = call(
            &cx.server,
            cx.timeout,
            client.list_resources(with_deadline(request.clone(), cx.timeout)),
        )
        .await?;
        if cx.view.format == Format::Json {
            for r in &page.resources {
                output::json_line(out, &ResourceJson::from(r))?;
            }
        } else {
            rows.extend(page.resources.iter().map(list_row));
        }
        if page.next_page_token.is_empty() || !args.all {
            if cx.view.format == Format::Json {
                // Only a page with more after it ends with its token, as
                // `rsvp list` does.
                if !page.next_page_token.is_empty() {
                    output::json_line(
                        out,
                        &serde_json::json!({ "next_page_token": page.next_page_token }),
                    )?;
                }
            } else {
                print_list(&cx.view, out, rows, &page.next_page_token)?;
            }
            break;
        }
        request.page_token = page.next_page_token;
    }
    Ok(out.flush()?)
}

fn list_row(r: &pb::Resource) -> Vec<String> {
    vec![
        r.id.clone(),
        r.capacity.to_string(),
        if r.time_zone.is_empty() {
            "UTC".into()
        } else {
            r.time_zone.clone()
        },
        if r.deleted_at.is_some() {
            "deleted".into()
        } else {
            String::new()
        },
        labels_text(r),
        r.display_name.clone(),
    ]
}

fn print_list(
    view: &View,
    out: &mut impl Write,
    rows: Vec<Vec<String>>,
    next: &str,
) -> Result<(), CliError> {
    if rows.is_empty() {
        writeln!(out, "no resources")?;
    } else {
        let heading = ["ID", "CAPACITY", "ZONE", "STATE", "LABELS", "NAME"];
        let mut widths: Vec<usize> = heading.iter().map(|h| h.len()).collect();
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        // The name gives way first, then the labels.
        let fixed: usize = widths[..4].iter().sum::<usize>() + 5;
        let room = view.width.saturating_sub(fixed);
        widths[4] = widths[4].min(room.saturating_sub(8).max(6));
        widths[5] = widths[5].min(room.saturating_sub(widths[4] + 1).max(4));
        let mut all = vec![heading.iter().map(ToString::to_string).collect()];
        all.extend(rows);
        let widths: Vec<Option<usize>> = widths.into_iter().map(Some).collect();
        out.write_all(output::render(all, &widths).as_bytes())?;
    }
    if !next.is_empty() {
        writeln!(out, "next page: --page-token {next}")?;
    }
    Ok(())
}

/// The resource the flags describe, and the fields they set (an update's
/// mask).
fn wire(args: &ResourceSpecArgs, zone: &Zone) -> Result<(pb::Resource, Vec<String>), CliError> {
    let mut paths = Vec::new();
    let mut set = |path: &str, given: bool| {
        if given {
            paths.push(path.to_string());
        }
    };
    set("capacity", args.capacity.is_some());
    set("display_name", args.name.is_some());
    set("time_zone", args.zone.is_some());
    set("opening_hours", !args.open.is_empty());
    set("open_periods", !args.period.is_empty());
    set("closed_by_default", args.closed_by_default);
    set("labels", !args.label.is_empty());
    set("admins", !args.admin.is_empty());
    let given: [Option<Duration>; RULES.len()] = [
        args.min_notice,
        args.max_advance,
        args.grid,
        args.min_duration,
        args.max_duration,
        args.buffer_before,
        args.buffer_after,
        args.default_hold,
        args.max_hold,
        args.cancel_notice,
        args.check_in_opens,
        args.auto_release_after,
    ];
    let mut policy = pb::BookingPolicy::default();
    for ((rule, value), slot) in RULES.iter().zip(given).zip(durations_mut(&mut policy)) {
        let Some(d) = value else { continue };
        let d = TimeDelta::from_std(d.0)
            .map(to_duration)
            .map_err(|_| CliError::new(Exit::Usage, format!("--{}: too long", rule.flag)))?;
        *slot = Some(d);
        set(&format!("policy.{}", rule.field), true);
    }
    if let Some(n) = args.max_quantity {
        policy.max_quantity = n;
        set("policy.max_quantity", true);
    }
    let resource = pb::Resource {
        id: args.id.clone(),
        display_name: args.name.clone().unwrap_or_default(),
        capacity: args.capacity.unwrap_or(0),
        time_zone: args.zone.map(|z| z.name().to_string()).unwrap_or_default(),
        policy: (policy != pb::BookingPolicy::default()).then_some(policy),
        opening_hours: args
            .open
            .iter()
            .map(|o| opening(o))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect(),
        admins: args.admin.clone(),
        labels: args
            .label
            .iter()
            .map(|l| label(l))
            .collect::<Result<_, _>>()?,
        open_periods: args
            .period
            .iter()
            .map(|p| period(p, zone))
            .collect::<Result<_, _>>()?,
        closed_by_default: args.closed_by_default,
        ..Default::default()
    };
    Ok((resource, paths))
}

/// A duration of the booking policy: its flag (without and with its
/// dashes), its field, the mask path that sets it, and what `resource get`
/// calls it.
pub(crate) struct Rule {
    flag: &'static str,
    pub(crate) option: &'static str,
    pub(crate) field: &'static str,
    path: &'static str,
    label: &'static str,
}

macro_rules! rules {
    ($(($flag:literal, $field:ident, $label:literal)),* $(,)?) => {
        /// Every duration of the booking policy, in one order.
        pub(crate) const RULES: [Rule; [$($label),*].len()] = [$(Rule {
            flag: $flag,
            option: concat!("--", $flag),
            field: stringify!($field),
            path: concat!("policy.", stringify!($field)),
            label: $label,
        }),*];

        /// The policy's durations, in the order of [`RULES`].
        fn durations(p: &pb::BookingPolicy) -> [&Option<prost_types::Duration>; RULES.len()] {
            [$(&p.$field),*]
        }

        /// The policy's durations to set, in the order of [`RULES`].
        fn durations_mut(
            p: &mut pb::BookingPolicy,
        ) -> [&mut Option<prost_types::Duration>; RULES.len()] {
            [$(&mut p.$field),*]
        }
    };
}

rules![
    ("min-notice", min_notice, "min notice"),
    ("max-advance", max_advance, "max advance"),
    ("grid", granularity, "grid"),
    ("min-duration", min_duration, "min length"),
    ("max-duration", max_duration, "max length"),
    ("buffer-before", buffer_before, "buffer before"),
    ("buffer-after", buffer_after, "buffer after"),
    ("default-hold", default_hold, "default hold"),
    ("max-hold", max_hold, "max hold"),
    ("cancel-notice", min_cancel_notice, "cancel notice"),
    ("check-in-opens", check_in_opens, "check-in opens"),
    ("auto-release-after", auto_release_after, "no-show after"),
];

/// The mask path of a field named as its flag.
fn clear_path(field: &str) -> Result<&'static str, CliError> {
    let field = field.trim_start_matches("--");
    if let Some(rule) = RULES.iter().find(|r| r.flag == field) {
        return Ok(rule.path);
    }
    Ok(match field {
        "capacity" => "capacity",
        "name" => "display_name",
        "zone" => "time_zone",
        "open" => "opening_hours",
        "period" => "open_periods",
        "closed-by-default" => "closed_by_default",
        "label" => "labels",
        "admin" => "admins",
        "policy" => "policy",
        "max-quantity" => "policy.max_quantity",
        other => {
            return Err(CliError::new(
                Exit::Usage,
                format!(
                    "--clear: {other:?} is not a field; use a flag's name (capacity, open, \
                     grid, min-notice, ...) or 'policy'"
                ),
            ));
        }
    })
}

fn label(text: &str) -> Result<(String, String), CliError> {
    text.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .ok_or_else(|| CliError::new(Exit::Usage, format!("--label: {text:?} is not KEY=VALUE")))
}

const DAYS: [(&str, pb::DayOfWeek); 7] = [
    ("mon", pb::DayOfWeek::Monday),
    ("tue", pb::DayOfWeek::Tuesday),
    ("wed", pb::DayOfWeek::Wednesday),
    ("thu", pb::DayOfWeek::Thursday),
    ("fri", pb::DayOfWeek::Friday),
    ("sat", pb::DayOfWeek::Saturday),
    ("sun", pb::DayOfWeek::Sunday),
];

fn day_index(name: &str) -> Option<usize> {
    let name = name.trim().to_lowercase();
    DAYS.iter()
        .position(|(d, _)| name.len() >= 3 && d.starts_with(&name[..3]))
}

fn minute_of(text: &str) -> Option<u32> {
    let (h, m) = text.trim().split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
}

/// `'mon-fri 09:00-17:00'` (days: one, a range, or a comma list).
fn opening(text: &str) -> Result<Vec<pb::OpeningHours>, CliError> {
    let bad = || {
        CliError::new(
            Exit::Usage,
            format!(
                "--open: {text:?} is not 'DAYS HH:MM-HH:MM' (e.g. 'mon-fri 09:00-17:00', \
                 'sat,sun 10:00-14:00')"
            ),
        )
    };
    let (days, hours) = text.trim().split_once(' ').ok_or_else(bad)?;
    let (open, close) = hours.trim().split_once('-').ok_or_else(bad)?;
    let (open, close) = (
        minute_of(open).ok_or_else(bad)?,
        minute_of(close).ok_or_else(bad)?,
    );
    if open >= close {
        return Err(CliError::new(
            Exit::Usage,
            format!("--open: {text:?} closes before it opens"),
        ));
    }
    let mut picked = Vec::new();
    for part in days.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day_index(a).ok_or_else(bad)?, day_index(b).ok_or_else(bad)?);
                if a > b {
                    return Err(bad());
                }
                picked.extend(a..=b);
            }
            None => picked.push(day_index(part).ok_or_else(bad)?),
        }
    }
    Ok(picked
        .into_iter()
        .map(|d| pb::OpeningHours {
            day: DAYS[d].1.into(),
            open_minute: open,
            close_minute: close,
        })
        .collect())
}

/// `'START/END'` in the input zone.
fn period(text: &str, zone: &Zone) -> Result<pb::Interval, CliError> {
    let (start, end) = text.split_once('/').ok_or_else(|| {
        CliError::new(Exit::Usage, format!("--period: {text:?} is not START/END"))
    })?;
    let when = |t: &str| -> Result<_, CliError> {
        let arg: crate::time::TimeArg = t
            .trim()
            .parse()
            .map_err(|e| CliError::new(Exit::Usage, format!("--period: {e}")))?;
        arg.resolve(zone)
            .map_err(|e| CliError::new(Exit::Usage, format!("--period: {e}")))
    };
    Ok(pb::Interval {
        start: Some(to_timestamp(when(start)?)),
        end: Some(to_timestamp(when(end)?)),
    })
}

fn labels_text(r: &pb::Resource) -> String {
    let mut labels: Vec<String> = r.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    labels.sort();
    labels.join(",")
}

fn duration_text(d: &Option<prost_types::Duration>) -> Option<String> {
    let d = d.as_ref()?;
    let std = std::time::Duration::new(d.seconds.max(0) as u64, d.nanos.max(0) as u32);
    Some(humantime::format_duration(std).to_string())
}

fn day_name(day: i32) -> &'static str {
    DAYS.iter()
        .find(|(_, d)| *d as i32 == day)
        .map_or("?", |(name, _)| name)
}

fn hhmm(minute: u32) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

/// Prints one resource, every field on its own line.
fn show(view: &View, out: &mut impl Write, r: &pb::Resource) -> Result<(), CliError> {
    if view.format == Format::Json {
        output::json_line(out, &ResourceJson::from(r))?;
        return Ok(out.flush()?);
    }
    let zone = view.zone;
    let at = |ts: &Option<prost_types::Timestamp>| {
        output::time(ts)
            .map(|t| format!("{} {}", zone.date_time(t), zone.label(t)))
            .unwrap_or_else(|| "-".into())
    };
    let mut rows = vec![
        vec!["id".into(), r.id.clone()],
        vec!["name".into(), r.display_name.clone()],
        vec!["capacity".into(), r.capacity.to_string()],
        vec![
            "zone".into(),
            if r.time_zone.is_empty() {
                "UTC".into()
            } else {
                r.time_zone.clone()
            },
        ],
    ];
    let open: Vec<String> = r
        .opening_hours
        .iter()
        .map(|h| {
            format!(
                "{} {}-{}",
                day_name(h.day),
                hhmm(h.open_minute),
                hhmm(h.close_minute)
            )
        })
        .collect();
    let always = r.opening_hours.is_empty() && r.open_periods.is_empty();
    rows.push(vec![
        "open".into(),
        match (always, r.closed_by_default) {
            (true, false) => "always".into(),
            (true, true) => "never (closed by default, nothing published)".into(),
            _ => {
                let mut text = open.join(", ");
                if !r.open_periods.is_empty() {
                    if !text.is_empty() {
                        text.push_str("; ");
                    }
                    text.push_str(&format!("{} dated period(s)", r.open_periods.len()));
                }
                text
            }
        },
    ]);
    if let Some(p) = &r.policy {
        for (rule, value) in RULES.iter().zip(durations(p)) {
            if let Some(value) = duration_text(value) {
                rows.push(vec![rule.label.into(), value]);
            }
        }
        if p.max_quantity > 0 {
            rows.push(vec!["max units".into(), p.max_quantity.to_string()]);
        }
    }
    rows.push(vec!["labels".into(), labels_text(r)]);
    rows.push(vec!["admins".into(), r.admins.join(", ")]);
    rows.push(vec!["created".into(), at(&r.created_at)]);
    rows.push(vec!["updated".into(), at(&r.updated_at)]);
    if r.deleted_at.is_some() {
        rows.push(vec!["deleted".into(), at(&r.deleted_at)]);
    }
    rows.push(vec!["etag".into(), r.etag.clone()]);
    let value_width = view.width.saturating_sub(15).max(20);
    out.write_all(output::render(rows, &[Some(14), Some(value_width)]).as_bytes())?;
    Ok(out.flush()?)
}

/// A resource in JSON: the wire fields, times in RFC 3339.
#[derive(Serialize)]
struct ResourceJson<'a> {
    id: &'a str,
    display_name: &'a str,
    capacity: u32,
    time_zone: &'a str,
    opening_hours: Vec<String>,
    open_periods: Vec<(Option<String>, Option<String>)>,
    closed_by_default: bool,
    policy: serde_json::Map<String, serde_json::Value>,
    labels: std::collections::BTreeMap<&'a str, &'a str>,
    admins: &'a [String],
    created_at: Option<String>,
    updated_at: Option<String>,
    deleted_at: Option<String>,
    etag: &'a str,
}

impl<'a> From<&'a pb::Resource> for ResourceJson<'a> {
    fn from(r: &'a pb::Resource) -> Self {
        let mut policy = serde_json::Map::new();
        if let Some(p) = &r.policy {
            for (rule, value) in RULES.iter().zip(durations(p)) {
                if let Some(d) = value {
                    policy.insert(rule.field.into(), serde_json::json!(d.seconds));
                }
            }
            if p.max_quantity > 0 {
                policy.insert("max_quantity".into(), serde_json::json!(p.max_quantity));
            }
        }
        ResourceJson {
            id: &r.id,
            display_name: &r.display_name,
            capacity: r.capacity,
            time_zone: if r.time_zone.is_empty() {
                "UTC"
            } else {
                &r.time_zone
            },
            opening_hours: r
                .opening_hours
                .iter()
                .map(|h| {
                    format!(
                        "{} {}-{}",
                        day_name(h.day),
                        hhmm(h.open_minute),
                        hhmm(h.close_minute)
                    )
                })
                .collect(),
            open_periods: r
                .open_periods
                .iter()
                .map(|p| (rfc3339(&p.start), rfc3339(&p.end)))
                .collect(),
            closed_by_default: r.closed_by_default,
            policy,
            labels: r
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            admins: &r.admins,
            created_at: rfc3339(&r.created_at),
            updated_at: rfc3339(&r.updated_at),
            deleted_at: rfc3339(&r.deleted_at),
            etag: &r.etag,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_hours_read_as_people_write_them() {
        let week = opening("mon-fri 09:00-17:00").unwrap();
        assert_eq!(week.len(), 5);
        assert_eq!((week[0].open_minute, week[0].close_minute), (540, 1020));
        let weekend = opening("Sat,sun 10:00-24:00").unwrap();
        assert_eq!(weekend.len(), 2);
        assert_eq!(weekend[1].day, pb::DayOfWeek::Sunday as i32);
        assert_eq!(weekend[1].close_minute, 1440);
        for bad in [
            "mon 17:00-09:00",
            "fri-mon 09:00-10:00",
            "someday 9-5",
            "mon",
        ] {
            assert!(opening(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn clearing_names_fields_by_their_flags() {
        assert_eq!(clear_path("grid").unwrap(), "policy.granularity");
        assert_eq!(
            clear_path("auto-release-after").unwrap(),
            "policy.auto_release_after"
        );
        assert_eq!(clear_path("--open").unwrap(), "opening_hours");
        assert!(clear_path("colour").is_err());
    }
}
