//! `rsvp confirm`, `cancel`, `get` and `update`: one reservation by id.

use std::io::Write;

use abi::{
    ReservationUpdate,
    pb::{self, ReservationStatus},
    time::to_timestamp,
};

use super::Context;
use crate::{
    cli::{IdArg, NewStatus, UpdateArgs},
    client::{call, with_deadline},
    error::CliError,
    exit::Exit,
    output,
};

fn check_id(id: &str) -> Result<(), CliError> {
    abi::parse_id(id)?;
    Ok(())
}

/// Confirms a hold and prints it.
///
/// # Errors
/// A malformed id, or a failed call.
pub async fn confirm(args: IdArg, cx: &Context, out: &mut impl Write) -> Result<(), CliError> {
    check_id(&args.id)?;
    let mut client = cx.client().await?;
    let request = pb::ConfirmRequest { id: args.id };
    let done = call(
        &cx.server,
        cx.timeout,
        client.confirm(with_deadline(request, cx.timeout)),
    )
    .await?;
    output::reservation(&cx.view, out, &done.reservation.unwrap_or_default())?;
    Ok(())
}

/// Cancels a reservation and prints it.
///
/// # Errors
/// A malformed id, or a failed call.
pub async fn cancel(args: IdArg, cx: &Context, out: &mut impl Write) -> Result<(), CliError> {
    check_id(&args.id)?;
    let mut client = cx.client().await?;
    let request = pb::CancelRequest { id: args.id };
    let done = call(
        &cx.server,
        cx.timeout,
        client.cancel(with_deadline(request, cx.timeout)),
    )
    .await?;
    output::reservation(&cx.view, out, &done.reservation.unwrap_or_default())?;
    Ok(())
}

/// Prints a reservation.
///
/// # Errors
/// A malformed id, or a failed call.
pub async fn get(args: IdArg, cx: &Context, out: &mut impl Write) -> Result<(), CliError> {
    check_id(&args.id)?;
    let mut client = cx.client().await?;
    let request = pb::GetRequest { id: args.id };
    let found = call(
        &cx.server,
        cx.timeout,
        client.get(with_deadline(request, cx.timeout)),
    )
    .await?;
    output::reservation(&cx.view, out, &found.reservation.unwrap_or_default())?;
    Ok(())
}

/// Updates a reservation and prints it.
///
/// # Errors
/// Invalid input, nothing to change, a conflict, or a failed call.
pub async fn update(args: UpdateArgs, cx: &Context, out: &mut impl Write) -> Result<(), CliError> {
    if args.note.is_none() && args.start.is_none() && args.status.is_none() {
        return Err(CliError::new(
            Exit::Usage,
            "nothing to change: give --note, --start and --end, or --status",
        ));
    }
    let zone = &cx.view.zone;
    let resolve = |t: &Option<crate::time::TimeArg>, flag: &str| {
        t.as_ref()
            .map(|t| t.resolve(zone).map(to_timestamp))
            .transpose()
            .map_err(|e| CliError::new(Exit::Usage, format!("{flag}: {e}")))
    };
    let request = pb::UpdateRequest {
        id: args.id,
        status: match args.status {
            None => ReservationStatus::Unknown,
            Some(NewStatus::Confirmed) => ReservationStatus::Confirmed,
            Some(NewStatus::Cancelled) => ReservationStatus::Cancelled,
        }
        .into(),
        note: args.note,
        start: resolve(&args.start, "--start")?,
        end: resolve(&args.end, "--end")?,
    };
    ReservationUpdate::try_from(request.clone())?;
    let mut client = cx.client().await?;
    let done = call(
        &cx.server,
        cx.timeout,
        client.update(with_deadline(request, cx.timeout)),
    )
    .await?;
    output::reservation(&cx.view, out, &done.reservation.unwrap_or_default())?;
    Ok(())
}
