//! `rsvp book` and `rsvp booking get|confirm|cancel`: several parts booked,
//! confirmed and cancelled together.

use std::{io::Write, str::FromStr};

use abi::{
    NewBooking,
    pb::{self, ReservationStatus},
    time::{to_duration, to_timestamp},
};
use chrono::TimeDelta;
use serde::Serialize;

use super::Context;
use crate::{
    cli::{BookArgs, BookingCommand, Format},
    client::{call, call_as, with_deadline},
    error::CliError,
    exit::Exit,
    output::{self, Kind, ReservationJson, Rows, rfc3339},
    time::{TimeArg, check_order},
};

/// A booking in JSON: its id, user and time, its parts, and the request id
/// it was made with (when this command made it).
#[derive(Serialize)]
struct BookingJson<'a> {
    id: &'a str,
    user_id: &'a str,
    created_at: Option<String>,
    parts: Vec<ReservationJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
}

/// Books the parts, all or nothing, and prints them.
///
/// # Errors
/// Invalid input, a refusal (naming every failing part), or a failed call.
pub async fn book(args: BookArgs, cx: &Context, out: &mut impl Write) -> Result<(), CliError> {
    let status = if args.confirm {
        ReservationStatus::Confirmed
    } else {
        ReservationStatus::Pending
    };
    let parts = args
        .part
        .iter()
        .enumerate()
        .map(|(i, text)| part(text, i, status, args.note.as_deref().unwrap_or(""), cx))
        .collect::<Result<Vec<_>, _>>()?;
    let hold = args
        .hold
        .map(|h| TimeDelta::from_std(h.0).map(to_duration))
        .transpose()
        .map_err(|_| CliError::new(Exit::Usage, "--hold: too long"))?;
    let no_user = args.user.is_none();
    let request_id = args
        .request_id
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let request = pb::BookRequest {
        user_id: args.user.clone().unwrap_or_default(),
        reservations: parts,
        hold,
        request_id: request_id.clone(),
        validate_only: args.dry_run,
        override_policy: args.override_policy,
    };
    // The server checks too; checking here answers without a round trip.
    // An empty user is the caller, whom only the server knows.
    let mut checked = request.clone();
    if checked.user_id.is_empty() {
        checked.user_id = "caller".into();
    }
    NewBooking::try_from(checked)?;
    let mut client = cx.client().await?;
    let made = call(
        &cx.server,
        cx.timeout,
        client.book(with_deadline(request, cx.timeout)),
    )
    .await
    .map_err(|mut e| {
        if e.outcome_unknown() {
            // Times to type again exactly as they are written here.
            e.server_words = false;
            e.message.push_str(&format!(
                "; the booking may have been made: repeat the command with \
                 --request-id {request_id}, and the same times (not `now`: it would be later), \
                 to find out without booking twice"
            ));
        }
        if no_user && e.exit == Exit::InvalidArgument && e.message.starts_with("--user") {
            e.message.push_str(crate::error::NO_USER_HINT);
        }
        e
    })?;
    let booking = made.booking.unwrap_or_default();
    print(cx, out, &booking, Some(&request_id))?;
    if cx.view.format == Format::Json {
        return Ok(out.flush()?);
    }
    if args.dry_run {
        writeln!(out, "\nWould be made: nothing was stored (--dry-run).")?;
    } else if booking
        .reservations
        .iter()
        .any(|r| r.status() == ReservationStatus::Pending)
    {
        writeln!(
            out,
            "\nHeld: confirm every part with  rsvp booking confirm {}",
            booking.id
        )?;
    }
    Ok(out.flush()?)
}

/// `rsvp booking get|confirm|cancel`.
///
/// # Errors
/// A malformed id, or a failed call.
pub async fn run(
    command: BookingCommand,
    cx: &Context,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let mut client = cx.client().await?;
    let booking = match command {
        BookingCommand::Get(arg) => {
            let id = abi::parse_booking_id(&arg.id)?.to_string();
            let request = pb::GetBookingRequest { id };
            call(
                &cx.server,
                cx.timeout,
                client.get_booking(with_deadline(request, cx.timeout)),
            )
            .await?
            .booking
        }
        BookingCommand::Confirm(arg) => {
            let id = abi::parse_booking_id(&arg.id)?.to_string();
            let request = pb::ConfirmBookingRequest { id };
            call_as(
                &cx.server,
                cx.timeout,
                client.confirm_booking(with_deadline(request, cx.timeout)),
                |status| CliError::booking_change(status, &cx.server, "confirmed"),
            )
            .await?
            .booking
        }
        BookingCommand::Cancel(arg) => {
            let id = abi::parse_booking_id(&arg.id)?.to_string();
            let request = pb::CancelBookingRequest { id };
            call_as(
                &cx.server,
                cx.timeout,
                client.cancel_booking(with_deadline(request, cx.timeout)),
                |status| CliError::booking_change(status, &cx.server, "cancelled"),
            )
            .await?
            .booking
        }
    };
    print(cx, out, &booking.unwrap_or_default(), None)?;
    Ok(out.flush()?)
}

/// A booking: its id and user over a table of its parts, or one JSON line.
fn print(
    cx: &Context,
    out: &mut impl Write,
    booking: &pb::Booking,
    request_id: Option<&str>,
) -> std::io::Result<()> {
    if cx.view.format == Format::Json {
        return output::json_line(
            out,
            &BookingJson {
                id: &booking.id,
                user_id: &booking.user_id,
                created_at: rfc3339(&booking.created_at),
                parts: booking.reservations.iter().map(Into::into).collect(),
                request_id,
            },
        );
    }
    let id = if booking.id.is_empty() {
        "(none: not made)"
    } else {
        &booking.id
    };
    writeln!(out, "booking   {id}")?;
    writeln!(out, "user      {}", booking.user_id)?;
    if let Some(key) = request_id {
        writeln!(out, "request   {key}")?;
    }
    writeln!(out)?;
    let mut rows = Rows::new(cx.view, &mut *out, Kind::Reservations, true);
    for r in &booking.reservations {
        rows.reservation(r)?;
    }
    rows.finish("no parts")
}

/// The `index`th `--part`, RESOURCE,START,END[,QUANTITY], as a reservation.
fn part(
    text: &str,
    index: usize,
    status: ReservationStatus,
    note: &str,
    cx: &Context,
) -> Result<pb::Reservation, CliError> {
    let bad = |why: String| {
        CliError::new(
            Exit::Usage,
            format!("--part #{} ({text:?}): {why}", index + 1),
        )
    };
    // Read from the right: times hold no commas, a resource id may.
    // With a quantity when the last field is no time but the one before it
    // is, and a resource is left before them.
    let fields: Vec<&str> = text.split(',').collect();
    let is_time = |i: usize| TimeArg::from_str(fields[i]).is_ok();
    let n = fields.len();
    let with_quantity = n >= 4 && !is_time(n - 1) && is_time(n - 2);
    let times_at = n.saturating_sub(if with_quantity { 3 } else { 2 });
    let (resource, start, end, quantity) = match (times_at, &fields[times_at..]) {
        (1.., [s, e]) => (fields[..times_at].join(","), *s, *e, None),
        (1.., [s, e, q]) => (fields[..times_at].join(","), *s, *e, Some(q.trim())),
        _ => {
            return Err(bad(
                "give RESOURCE,START,END or RESOURCE,START,END,QUANTITY".into(),
            ));
        }
    };
    let resource = resource.trim();
    let when = |t: &str, what: &str| {
        TimeArg::from_str(t)
            .and_then(|t| t.resolve(&cx.input))
            .map_err(|e| bad(format!("{what}: {e}")))
    };
    let (start, end) = (when(start, "start")?, when(end, "end")?);
    check_order(&cx.input, start, end, "start", "end").map_err(|e| bad(e.message))?;
    let quantity = quantity
        .map(|q| {
            q.parse::<u32>()
                .ok()
                .filter(|q| *q > 0)
                .ok_or_else(|| bad(format!("quantity: {q:?} is not a number of units")))
        })
        .transpose()?;
    Ok(pb::Reservation {
        resource_id: resource.to_string(),
        status: status.into(),
        start: Some(to_timestamp(start)),
        end: Some(to_timestamp(end)),
        note: note.to_string(),
        quantity: quantity.unwrap_or(0),
        ..Default::default()
    })
}
