//! rsvp embedded in a program: one SQLite file of state, no server.
//!
//! ```sh
//! cargo run --example embedded -p reservation              # in a temporary directory
//! cargo run --example embedded -p reservation -- rsvp.db   # in a file of your choice
//! ```

use std::{io::Write, path::Path, time::Duration};

use chrono::{TimeZone, Utc};
use futures::{StreamExt, TryStreamExt};
use reservation::{
    Rsvp, SqliteStore, StoreOptions,
    abi::{Error, ListenFilter, NewReservation, ReservationQuery},
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let temp = tempfile::tempdir()?;
    let path = match std::env::args_os().nth(1) {
        Some(path) => path.into(),
        None => temp.path().join("rsvp.db"),
    };
    run(&path, &mut std::io::stdout()).await
}

/// Reserves, runs into a conflict, confirms, queries and listens, telling
/// `out` what happens.
async fn run(path: &Path, out: &mut impl Write) -> Result<(), Box<dyn std::error::Error>> {
    // Opening creates the file and applies migrations.
    let store = SqliteStore::open(path, StoreOptions::default()).await?;
    writeln!(out, "store: {}", path.display())?;

    // Changes from now on, as they happen.
    let mut changes = store.listen(ListenFilter::default()).await?;

    let at = |hour, minute| Utc.with_ymd_and_hms(2026, 12, 1, hour, minute, 0).unwrap();
    let hold = store
        .reserve(
            NewReservation::builder()
                .user_id("alice")
                .resource_id("room-42")
                .start(at(10, 0))
                .end(at(11, 0))
                .note("design review")
                .build()?,
        )
        .await?;
    writeln!(
        out,
        "alice holds room-42 10:00-11:00 ({}, until {})",
        hold.status,
        hold.expires_at.map(|t| t.to_rfc3339()).unwrap_or_default()
    )?;

    let clash = NewReservation::builder()
        .user_id("bob")
        .resource_id("room-42")
        .start(at(10, 30))
        .end(at(11, 30))
        .build()?;
    match store.reserve(clash).await {
        Err(Error::Conflict(conflict)) => {
            writeln!(out, "bob cannot have it: {conflict}")?;
        }
        other => writeln!(out, "unexpected: {other:?}")?,
    }

    let booked = store.confirm(hold.id).await?;
    writeln!(out, "alice's booking is {}", booked.status)?;

    let day = ReservationQuery::builder()
        .resource_id("room-42")
        .start(at(0, 0))
        .end(at(23, 59))
        .build()?;
    let rows: Vec<_> = store.query(day).try_collect().await?;
    for r in &rows {
        writeln!(
            out,
            "room-42: {} {}-{} {} {:?}",
            r.user_id,
            r.timespan.start().format("%H:%M"),
            r.timespan.end().format("%H:%M"),
            r.status,
            r.note.as_str()
        )?;
    }

    for _ in 0..2 {
        let change = tokio::time::timeout(Duration::from_secs(5), changes.next())
            .await?
            .ok_or("the change feed ended")??;
        writeln!(
            out,
            "change {}: {:?} {} is {}",
            change.id, change.op, change.reservation.user_id, change.reservation.status
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_example_tells_the_whole_story() {
        let dir = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        super::run(&dir.path().join("rsvp.db"), &mut out)
            .await
            .unwrap();
        let out = String::from_utf8(out).unwrap();
        for line in [
            "alice holds room-42 10:00-11:00 (pending, until",
            "bob cannot have it: room-42 [2026-12-01T10:30:00+00:00, 2026-12-01T11:30:00+00:00) conflicts with 1 live reservation",
            "alice's booking is confirmed",
            "room-42: alice 10:00-11:00 confirmed \"design review\"",
            "change 1: Create alice is pending",
            "change 2: Update alice is confirmed",
        ] {
            assert!(out.contains(line), "missing {line:?} in:\n{out}");
        }
    }
}
