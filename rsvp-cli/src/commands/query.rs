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
    cli::{ListArgs, QueryArgs, Selection, Status},
    client::{call, with_deadline},
    error::CliError,
    exit::Exit,
    output::Rows,
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
    let zone = &cx.view.zone;
    let resolve = |t: Option<crate::time::TimeArg>, flag: &str| {
        t.map(|t| t.resolve(zone).map(to_timestamp))
            .transpose()
            .map_err(|e| CliError::new(Exit::Usage, format!("{flag}: {e}")))
    };
    let status = match s.status {
        None => ReservationStatus::Unknown,
        Some(Status::Pending) => ReservationStatus::Pending,
        Some(Status::Confirmed) => ReservationStatus::Confirmed,
        Some(Status::Blocked) => ReservationStatus::Blocked,
        Some(Status::Cancelled) => ReservationStatus::Cancelled,
        Some(Status::Expired) => ReservationStatus::Expired,
    };
    Ok(Wire {
        user_id: s.user,
        resource_id: s.resource,
        status: status.into(),
        start: resolve(s.from, "--from")?,
        end: resolve(s.to, "--to")?,
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
    let mut rows = Rows::new(cx.view, out, false);
    while let Some(row) = stream.next().await {
        let row = row.map_err(|status| CliError::from_status(status, &cx.server))?;
        rows.reservation(&row)?;
    }
    rows.finish("no reservations")?;
    Ok(())
}

/// Prints one page, or every page with `--all`.
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
        page_size: args.page_size,
        page_token: args.page_token,
    };
    ReservationFilter::try_from(request.clone())?;
    let mut client = cx.client().await?;
    let mut rows = Rows::new(cx.view, out, false);
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
            rows.finish("no reservations")?;
            eprintln!("more: add --page-token {}", page.next_page_token);
            return Ok(());
        }
        request.page_token = page.next_page_token;
    }
    rows.finish("no reservations")?;
    Ok(())
}
