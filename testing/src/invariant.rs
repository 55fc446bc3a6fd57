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

/// A moment when live reservations of a resource hold more units than it
/// has.
#[derive(Clone, Debug)]
pub struct Overbooking {
    /// The resource.
    pub resource_id: String,
    /// When it starts.
    pub at: chrono::DateTime<chrono::Utc>,
    /// Units held then (buffers included).
    pub used: u64,
    /// Units the resource has.
    pub capacity: u32,
}

/// Scans every reservation of `store` and returns, per resource, the
/// first moment when its live reservations, over their occupied spans (the
/// interval with the resource's buffers; blocks have none), hold more
/// units than its capacity (1 for a resource never registered; a block of
/// quantity 0 holds every unit). The buffers are the resource's current
/// ones: reservations made under other buffers are judged by these.
///
/// # Errors
/// When the store cannot be read.
pub async fn find_overbookings(store: &dyn Rsvp) -> Result<Vec<Overbooking>> {
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
    for (id, live) in by_resource {
        let resource = abi::ResourceId::parse(id.clone()).map_err(abi::Error::internal)?;
        let (capacity, rules) = match store.get_resource(resource).await {
            Ok(r) => (r.spec.capacity, r.rules()),
            Err(abi::Error::ResourceNotFound(_)) => (1, abi::Rules::default()),
            Err(e) => return Err(e),
        };
        let (before, after) = rules.buffers();
        let mut steps: BTreeMap<chrono::DateTime<chrono::Utc>, i64> = BTreeMap::new();
        for r in &live {
            let units = i64::from(if r.quantity == 0 {
                capacity
            } else {
                r.quantity
            });
            let (start, end) = if r.status == abi::ReservationStatus::Blocked {
                (r.timespan.start(), r.timespan.end())
            } else {
                (r.timespan.start() - before, r.timespan.end() + after)
            };
            *steps.entry(start).or_default() += units;
            *steps.entry(end).or_default() -= units;
        }
        let mut used = 0i64;
        for (at, delta) in steps {
            used += delta;
            if used > i64::from(capacity) {
                found.push(Overbooking {
                    resource_id: id.clone(),
                    at,
                    used: used as u64,
                    capacity,
                });
                break;
            }
        }
    }
    Ok(found)
}

/// Panics, listing them, if live reservations of any resource ever hold
/// more units than it has.
///
/// # Panics
/// On an overbooking, or when the store cannot be read.
pub async fn assert_within_capacity(store: &dyn Rsvp) {
    let found = match find_overbookings(store).await {
        Ok(found) => found,
        Err(e) => panic!("cannot scan the store for overbookings: {e}"),
    };
    assert!(
        found.is_empty(),
        "{} overbooked resource(s): {found:#?}",
        found.len()
    );
}
