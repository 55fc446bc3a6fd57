//! The invariant rsvp exists for: no two live reservations of one resource
//! overlap.

use std::collections::BTreeMap;

use abi::{Reservation, ReservationQuery, Result};
use futures::TryStreamExt;

use reservation::Rsvp;

/// Two live reservations of one resource that overlap.
#[derive(Clone, Debug)]
pub struct DoubleBooking {
    /// The one that starts first.
    pub first: Reservation,
    /// The one that starts while `first` still holds the resource.
    pub second: Reservation,
}

/// Scans every reservation of `store` and returns each live reservation that
/// starts while an earlier live reservation of its resource still holds it.
///
/// # Errors
/// When the store cannot be read.
pub async fn find_double_bookings(store: &dyn Rsvp) -> Result<Vec<DoubleBooking>> {
    let mut by_resource: BTreeMap<String, Vec<Reservation>> = BTreeMap::new();
    let mut all = store.query(ReservationQuery::default());
    while let Some(r) = all.try_next().await? {
        if r.status.is_live() {
            by_resource
                .entry(r.resource_id.to_string())
                .or_default()
                .push(r);
        }
    }
    let mut found = Vec::new();
    for (_, mut live) in by_resource {
        live.sort_by_key(|r| (r.timespan.start(), r.id));
        // The live reservation that reaches furthest so far.
        let mut reach: Option<&Reservation> = None;
        for r in &live {
            if let Some(holder) = reach
                && holder.timespan.end() > r.timespan.start()
            {
                found.push(DoubleBooking {
                    first: holder.clone(),
                    second: r.clone(),
                });
            }
            if reach.is_none_or(|h| r.timespan.end() > h.timespan.end()) {
                reach = Some(r);
            }
        }
    }
    Ok(found)
}

/// Panics, listing them, if any two live reservations of one resource
/// overlap.
///
/// # Panics
/// On a double booking, or when the store cannot be read.
pub async fn assert_no_double_booking(store: &dyn Rsvp) {
    let found = match find_double_bookings(store).await {
        Ok(found) => found,
        Err(e) => panic!("cannot scan the store for double bookings: {e}"),
    };
    assert!(
        found.is_empty(),
        "{} double booking(s), first: {:#?}",
        found.len(),
        found.first()
    );
}
