//! `rsvp reserve`.

use std::io::Write;

use abi::{
    NewReservation,
    pb::{self, ReservationStatus},
    time::{to_duration, to_timestamp},
};
use chrono::TimeDelta;
use serde::Serialize;

use super::Context;
use crate::{
    cli::ReserveArgs,
    client::{call, with_deadline},
    error::CliError,
    exit::Exit,
    output::{self, ReservationJson, SHORT_ID, short_id},
    time::check_order,
};

/// A reservation made, in JSON: the reservation and the request id it was
/// made with (to repeat the command safely).
#[derive(Serialize)]
struct Reserved<'a> {
    #[serde(flatten)]
    reservation: ReservationJson<'a>,
    request_id: &'a str,
}

/// Makes the reservation and prints it, with how to confirm it and the
/// request id that makes repeating the command safe.
///
/// # Errors
/// Invalid input, a conflict (with the reservations in the way), or a
/// failed call.
pub async fn run(args: ReserveArgs, cx: &Context, out: &mut impl Write) -> Result<(), CliError> {
    let zone = &cx.input;
    let start = args
        .start
        .resolve(zone)
        .map_err(|e| CliError::new(Exit::Usage, format!("--start: {e}")))?;
    let end = match (&args.end, args.duration) {
        (Some(end), _) => end
            .resolve(zone)
            .map_err(|e| CliError::new(Exit::Usage, format!("--end: {e}")))?,
        (None, Some(d)) if d.0.is_zero() => {
            return Err(CliError::new(
                Exit::Usage,
                "--duration: must be longer than 0: a reservation must last",
            ));
        }
        (None, Some(d)) => TimeDelta::from_std(d.0)
            .ok()
            .and_then(|d| start.checked_add_signed(d))
            .ok_or_else(|| CliError::new(Exit::Usage, "--duration: too long"))?,
        (None, None) => {
            return Err(CliError::new(
                Exit::Usage,
                "say when it ends: --end TIME or --duration DURATION (either works)",
            ));
        }
    };
    check_order(zone, start, end, "--start", "--end")?;
    // A refused end that --duration gave is said as --duration.
    let from_duration = args.end.is_none();
    let said = move |mut e: CliError| {
        if from_duration && let Some(reason) = e.message.strip_prefix("--end: ") {
            e.message = format!(
                "--duration: the end it gives ({}): {reason}",
                end.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            );
        }
        e
    };
    let status = if args.confirm {
        ReservationStatus::Confirmed
    } else if args.block {
        ReservationStatus::Blocked
    } else {
        ReservationStatus::Pending
    };
    let hold = args
        .hold
        .map(|h| TimeDelta::from_std(h.0).map(to_duration))
        .transpose()
        .map_err(|_| CliError::new(Exit::Usage, "--hold: too long"))?;
    // A key of its own unless given one: the same command repeated with it
    // (after a time-out, say) returns the first result instead of booking
    // twice.
    let no_user = args.user.is_none();
    let request_id = args
        .request_id
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let request = pb::ReserveRequest {
        reservation: Some(pb::Reservation {
            user_id: args.user.clone().unwrap_or_default(),
            resource_id: args.resource,
            status: status.into(),
            start: Some(to_timestamp(start)),
            end: Some(to_timestamp(end)),
            note: args.note.unwrap_or_default(),
            quantity: args.quantity.unwrap_or(0),
            ..Default::default()
        }),
        hold,
        request_id: request_id.clone(),
        validate_only: args.dry_run,
        override_policy: args.override_policy,
    };
    // The server checks too; checking here answers without a round trip.
    // An empty user is the caller, whom only the server knows.
    let mut checked = request.clone();
    if let Some(asked) = checked
        .reservation
        .as_mut()
        .filter(|r| r.user_id.is_empty())
    {
        asked.user_id = "caller".into();
    }
    NewReservation::try_from(checked).map_err(|e| said(e.into()))?;
    let mut client = cx.client().await?;
    let made = call(
        &cx.server,
        cx.timeout,
        client.reserve(with_deadline(request, cx.timeout)),
    )
    .await
    .map_err(|mut e| {
        if e.outcome_unknown() {
            // Times to type again exactly as they are written here.
            e.server_words = false;
            // The times as sent: `now` or `+1h` would resolve anew, and a
            // retry must ask for the same thing.
            e.message.push_str(&format!(
                "; the reservation may have been made: repeat the command with \
                 --request-id {request_id} --start {} --end {} to find out without booking \
                 twice",
                start.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                end.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            ));
        }
        if no_user && e.exit == Exit::InvalidArgument && e.message.starts_with("--user") {
            e.message.push_str(crate::error::NO_USER_HINT);
        }
        said(e)
    })?;
    let made = made.reservation.unwrap_or_default();
    if cx.view.format == crate::cli::Format::Json {
        if !made.id.is_empty() {
            crate::ids::remember([made.id.as_str()]);
        }
        output::json_line(
            out,
            &Reserved {
                reservation: ReservationJson::from(&made),
                request_id: &request_id,
            },
        )?;
        return Ok(out.flush()?);
    }
    output::reservation(&cx.view, out, &made)?;
    if args.dry_run {
        writeln!(out, "\nWould be made: nothing was stored (--dry-run).")?;
        return Ok(out.flush()?);
    }
    writeln!(out, "request   {request_id}")?;
    if made.status() == ReservationStatus::Pending {
        writeln!(
            out,
            "\nA hold: confirm it with  rsvp confirm {}",
            short_id(&made.id, SHORT_ID)
        )?;
    }
    out.flush()?;
    Ok(())
}
