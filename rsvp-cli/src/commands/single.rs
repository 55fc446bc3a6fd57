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

/// The id `typed` names: whole, or as a table showed it.
fn resolve(typed: &str) -> Result<String, CliError> {
    let id = crate::ids::resolve(typed)?;
    abi::parse_id(&id)?;
    Ok(id)
}

/// Confirms a hold and prints it.
///
/// # Errors
/// A malformed id, or a failed call.
pub async fn confirm(args: IdArg, cx: &Context, out: &mut impl Write) -> Result<(), CliError> {
    let id = resolve(&args.id)?;
    let mut client = cx.client().await?;
    let request = pb::ConfirmRequest { id };
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
    let id = resolve(&args.id)?;
    let mut client = cx.client().await?;
    let request = pb::CancelRequest { id };
    let done = call(
        &cx.server,
        cx.timeout,
        client.cancel(with_deadline(request, cx.timeout)),
    )
    .await?;
    output::reservation(&cx.view, out, &done.reservation.unwrap_or_default())?;
    Ok(())
}

/// Checks a reservation in (`arriving`) or out, and prints it.
///
/// # Errors
/// A malformed id, or a failed call.
pub async fn arrive(
    args: IdArg,
    arriving: bool,
    cx: &Context,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let id = resolve(&args.id)?;
    let mut client = cx.client().await?;
    let done = if arriving {
        call(
            &cx.server,
            cx.timeout,
            client.check_in(with_deadline(pb::CheckInRequest { id }, cx.timeout)),
        )
        .await?
        .reservation
    } else {
        call(
            &cx.server,
            cx.timeout,
            client.check_out(with_deadline(pb::CheckOutRequest { id }, cx.timeout)),
        )
        .await?
        .reservation
    };
    output::reservation(&cx.view, out, &done.unwrap_or_default())?;
    Ok(())
}

/// Prints a reservation.
///
/// # Errors
/// A malformed id, or a failed call.
pub async fn get(args: IdArg, cx: &Context, out: &mut impl Write) -> Result<(), CliError> {
    let id = resolve(&args.id)?;
    let mut client = cx.client().await?;
    let request = pb::GetRequest { id };
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
    if args.note.is_none()
        && args.start.is_none()
        && args.status.is_none()
        && args.quantity.is_none()
    {
        return Err(CliError::new(
            Exit::Usage,
            "nothing to change: give --note, --start and --end, --quantity, or --status",
        ));
    }
    let zone = &cx.input;
    let when = |t: &Option<crate::time::TimeArg>, flag: &str| {
        t.as_ref()
            .map(|t| t.resolve(zone))
            .transpose()
            .map_err(|e| CliError::new(Exit::Usage, format!("{flag}: {e}")))
    };
    let (start, end) = (when(&args.start, "--start")?, when(&args.end, "--end")?);
    if let (Some(start), Some(end)) = (start, end) {
        crate::time::check_order(zone, start, end, "--start", "--end")?;
    }
    let request = pb::UpdateRequest {
        id: resolve(&args.id)?,
        status: match args.status {
            None => ReservationStatus::Unknown,
            Some(NewStatus::Confirmed) => ReservationStatus::Confirmed,
            Some(NewStatus::Cancelled) => ReservationStatus::Cancelled,
            Some(NewStatus::NoShow) => ReservationStatus::NoShow,
        }
        .into(),
        note: args.note,
        start: start.map(to_timestamp),
        end: end.map(to_timestamp),
        quantity: args.quantity,
        override_policy: args.override_policy,
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

/// Prints who the server takes the caller to be.
///
/// # Errors
/// A failed call (bad credentials among them).
pub async fn whoami(cx: &Context, out: &mut impl Write) -> Result<(), CliError> {
    let mut client = cx.client().await?;
    let me = call(
        &cx.server,
        cx.timeout,
        client.who_am_i(with_deadline(pb::WhoAmIRequest {}, cx.timeout)),
    )
    .await?;
    let role = match pb::Role::try_from(me.role) {
        Ok(pb::Role::Admin) => "admin",
        Ok(pb::Role::Service) => "service",
        Ok(pb::Role::User) => "user",
        _ => "unknown",
    };
    let principal = if me.principal.is_empty() {
        "(anyone: the server does not authenticate)"
    } else {
        me.principal.as_str()
    };
    match cx.view.format {
        crate::cli::Format::Json => writeln!(
            out,
            "{}",
            serde_json::json!({"principal": me.principal, "role": role, "auth": me.auth})
        ),
        crate::cli::Format::Table => {
            writeln!(
                out,
                "principal  {principal}\nrole       {role}\nauth       {}",
                me.auth
            )
        }
    }?;
    Ok(())
}
