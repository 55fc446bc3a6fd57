//! `rsvp reserve`.

use std::io::Write;

use abi::{
    NewReservation,
    pb::{self, ReservationStatus},
    time::{to_duration, to_timestamp},
};
use chrono::TimeDelta;

use super::Context;
use crate::{
    cli::ReserveArgs,
    client::{call, with_deadline},
    error::CliError,
    exit::Exit,
    output,
};

/// Makes the reservation and prints it.
///
/// # Errors
/// Invalid input, a conflict (with the reservations in the way), or a
/// failed call.
pub async fn run(args: ReserveArgs, cx: &Context, out: &mut impl Write) -> Result<(), CliError> {
    let zone = &cx.view.zone;
    let start = args
        .start
        .resolve(zone)
        .map_err(|e| CliError::new(Exit::Usage, format!("--start: {e}")))?;
    let end = match (&args.end, args.duration) {
        (Some(end), _) => end
            .resolve(zone)
            .map_err(|e| CliError::new(Exit::Usage, format!("--end: {e}")))?,
        (None, Some(d)) => TimeDelta::from_std(d.0)
            .ok()
            .and_then(|d| start.checked_add_signed(d))
            .ok_or_else(|| CliError::new(Exit::Usage, "--duration: too long"))?,
        (None, None) => return Err(CliError::new(Exit::Usage, "give --end or --duration")),
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
    let request = pb::ReserveRequest {
        reservation: Some(pb::Reservation {
            user_id: args.user,
            resource_id: args.resource,
            status: status.into(),
            start: Some(to_timestamp(start)),
            end: Some(to_timestamp(end)),
            note: args.note,
            ..Default::default()
        }),
        hold,
        request_id: args.request_id,
    };
    // The server checks too; checking here answers without a round trip.
    NewReservation::try_from(request.clone())?;
    let mut client = cx.client().await?;
    let made = call(
        &cx.server,
        cx.timeout,
        client.reserve(with_deadline(request, cx.timeout)),
    )
    .await?;
    let made = made.reservation.unwrap_or_default();
    output::reservation(&cx.view, out, &made)?;
    Ok(())
}
