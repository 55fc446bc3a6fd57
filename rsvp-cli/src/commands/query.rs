//! `rsvp query` (streamed) and `rsvp list` (paged).

use std::io::Write;

use abi::{
    ReservationFilter, ReservationQuery,
    pb::{self, ReservationStatus},
    time::to_timestamp,
};
use futures::StreamExt;

use super::Context;
use crate::{
    cli::{Format, ListArgs, QueryArgs, Selection, Status},
    client::{call, with_deadline},
    error::CliError,
    exit::Exit,
    output::{Kind, Rows, json_line},
};

/// The selection on the wire: (user, resource, status, start, end, desc).
struct Wire {
    user_id: String,
    resource_id: String,
    status: i32,
    start: Option<prost_types::Timestamp>,
    end: Option<prost_types::Timestamp>,
    desc: bool,
}

fn wire(s: Selection, cx: &Context) -> Result<Wire, CliError> {
    let zone = &cx.input;
    let resolve = |t: Option<crate::time::TimeArg>, flag: &str| {
        t.map(|t| t.resolve(zone))
            .transpose()
            .map_err(|e| CliError::new(Exit::Usage, format!("{flag}: {e}")))
    };
    let (from, to) = (resolve(s.from, "--from")?, resolve(s.to, "--to")?);
    if let (Some(from), Some(to)) = (from, to) {
        crate::time::check_order(zone, from, to, "--from", "--to")?;
    }
    let status = match s.status {
        None => ReservationStatus::Unknown,
        Some(Status::Pending) => ReservationStatus::Pending,
        Some(Status::Confirmed) => ReservationStatus::Confirmed,
        Some(Status::Blocked) => ReservationStatus::Blocked,
        Some(Status::Cancelled) => ReservationStatus::Cancelled,
        Some(Status::Expired) => ReservationStatus::Expired,
        Some(Status::CheckedIn) => ReservationStatus::CheckedIn,
        Some(Status::Completed) => ReservationStatus::Completed,
        Some(Status::NoShow) => ReservationStatus::NoShow,
    };
    Ok(Wire {
        user_id: s.user.unwrap_or_default(),
        resource_id: s.resource.unwrap_or_default(),
        status: status.into(),
        start: from.map(to_timestamp),
        end: to.map(to_timestamp),
        desc: s.desc,
    })
}

/// Streams the selection, printing rows as they arrive.
///
/// # Errors
/// Invalid input, or a failed call (also one that fails midway).
pub async fn query(args: QueryArgs, cx: &Context, out: &mut impl Write) -> Result<(), CliError> {
    let w = wire(args.selection, cx)?;
    let request = pb::QueryRequest {
        user_id: w.user_id,
        resource_id: w.resource_id,
        status: w.status,
        start: w.start,
        end: w.end,
        desc: w.desc,
    };
    ReservationQuery::try_from(request.clone())?;
    let mut client = cx.client().await?;
    let mut stream = call(
        &cx.server,
        cx.timeout,
        client.query(with_deadline(request, cx.timeout)),
    )
    .await?;
    let mut rows = Rows::new(cx.view, out, Kind::Reservations, true);
    while let Some(row) = stream.next().await {
        let row = row.map_err(|status| CliError::from_status(status, &cx.server))?;
        rows.reservation(&row)?;
    }
    rows.finish("no reservations")?;
    Ok(())
}

/// Prints one page, or every page with `--all`. After a page that has a
/// next one, says how to ask for it: on stderr under a table, as a last
/// JSON line (`{"next_page_token": …}`) with `-o json`.
///
/// # Errors
/// Invalid input, or a failed call.
pub async fn list(args: ListArgs, cx: &Context, out: &mut impl Write) -> Result<(), CliError> {
    let w = wire(args.selection, cx)?;
    let mut request = pb::FilterRequest {
        user_id: w.user_id,
        resource_id: w.resource_id,
        status: w.status,
        start: w.start,
        end: w.end,
        desc: w.desc,
        page_size: args.page_size.map_or(0, |n| n as i32),
        page_token: args.page_token.unwrap_or_default(),
    };
    ReservationFilter::try_from(request.clone())?;
    let mut client = cx.client().await?;
    let mut token = String::new();
    {
        let mut rows = Rows::new(cx.view, &mut *out, Kind::Reservations, true);
        loop {
            let page = call(
                &cx.server,
                cx.timeout,
                client.filter(with_deadline(request.clone(), cx.timeout)),
            )
            .await?;
            for r in &page.reservations {
                rows.reservation(r)?;
            }
            if page.next_page_token.is_empty() {
                break;
            }
            if !args.all {
                token = page.next_page_token;
                break;
            }
            request.page_token = page.next_page_token;
        }
        rows.finish("no reservations")?;
    }
    if !token.is_empty() {
        if cx.view.format == Format::Json {
            json_line(
                out,
                &NextPage {
                    next_page_token: &token,
                },
            )?;
        } else {
            eprintln!("more: add --page-token {token}");
        }
    }
    Ok(())
}

/// The last JSON line of a page that has a next one.
#[derive(serde::Serialize)]
struct NextPage<'a> {
    next_page_token: &'a str,
}
