//! The change events each call produces: the same on every store, for the
//! same calls. A refused write changes nothing; a write that goes ahead
//! first expires the overdue holds in its way, each an event of its own.

use abi::{
    Change, Error, ListenFilter, NewReservation, ReservationId, ReservationStatus,
    ReservationUpdate,
};
use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt;

use crate::support::{Env, at, hold, t0};

conformance!(
    a_refused_reschedule_changes_nothing,
    a_refused_reserve_changes_nothing,
    a_write_that_goes_ahead_expires_the_overdue_holds_in_its_way,
);

/// Every retained change, from the start of the feed: read until a mark
/// written after everything else arrives (changes arrive in id order, so
/// every earlier one has by then), the marks left out.
async fn history(env: &Env) -> Vec<Change> {
    static MARKS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    const MARK: &str = "history-mark-";
    let mark = format!(
        "{MARK}{}",
        MARKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let mut feed = env
        .store
        .listen(ListenFilter {
            after_change_id: Some(0),
            ..ListenFilter::default()
        })
        .await
        .unwrap();
    env.reserve("history", &mark, 100_000, 100_060)
        .await
        .unwrap();
    let mut changes = Vec::new();
    loop {
        let change = tokio::time::timeout(std::time::Duration::from_secs(10), feed.next())
            .await
            .expect("the mark arrives")
            .expect("the feed goes on")
            .unwrap();
        let resource = change.reservation.resource_id.to_string();
        if resource == mark {
            return changes;
        }
        if !resource.starts_with(MARK) {
            changes.push(change);
        }
    }
}

fn reschedule(id: ReservationId, from: i64, to: i64) -> ReservationUpdate {
    ReservationUpdate::builder()
        .id(id.to_string())
        .start(at(from))
        .end(at(to))
        .build()
        .unwrap()
}

fn short_hold(user: &str, resource: &str, from: i64, to: i64, minutes: i64) -> NewReservation {
    NewReservation::builder()
        .user_id(user)
        .resource_id(resource)
        .start(at(from))
        .end(at(to))
        .hold(TimeDelta::minutes(minutes))
        .build()
        .unwrap()
}

async fn a_refused_reschedule_changes_nothing(env: Env) {
    // An overdue hold and a booking both lie where the reschedule wants to go.
    env.store
        .reserve(short_hold("alice", "room-1", 0, 60, 10))
        .await
        .unwrap();
    env.confirmed("bob", "room-1", 60, 120).await;
    let carol = env.confirmed("carol", "room-1", 200, 260).await;
    env.advance(20);
    let before = history(&env).await;

    let err = env
        .store
        .update(reschedule(carol.id, 30, 90))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    assert_eq!(
        history(&env).await.len(),
        before.len(),
        "no event: the overdue hold stays as it was stored"
    );
}

async fn a_refused_reserve_changes_nothing(env: Env) {
    env.store
        .reserve(short_hold("alice", "room-1", 0, 60, 10))
        .await
        .unwrap();
    env.confirmed("bob", "room-1", 60, 120).await;
    env.advance(20);
    let before = history(&env).await;
    let err = env.reserve("dave", "room-1", 30, 90).await.unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    assert_eq!(history(&env).await.len(), before.len());
}

async fn a_write_that_goes_ahead_expires_the_overdue_holds_in_its_way(env: Env) {
    let alice = env
        .store
        .reserve(short_hold("alice", "room-1", 0, 60, 10))
        .await
        .unwrap();
    let carol = env.confirmed("carol", "room-1", 200, 260).await;
    env.advance(20);
    let before = history(&env).await.len();
    env.store
        .update(reschedule(carol.id, 30, 90))
        .await
        .unwrap();
    let after = history(&env).await;
    let new: Vec<_> = after[before..]
        .iter()
        .map(|c| (c.reservation.id, c.reservation.status))
        .collect();
    assert_eq!(
        new,
        [
            (alice.id, ReservationStatus::Expired),
            (carol.id, ReservationStatus::Confirmed)
        ]
    );
}

/// A change with what differs between stores taken out: the reservation
/// is known by its user (one reservation per user in the script), and
/// changes made by one call (one time: the clock moves between calls) are
/// put in the order of their users, since a call that changes several rows
/// (a sweep) may draw their change ids in any order.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Event {
    changed_at: DateTime<Utc>,
    user: String,
    op: &'static str,
    resource: String,
    status: ReservationStatus,
    span: (DateTime<Utc>, DateTime<Utc>),
    note: String,
    expires_at: Option<DateTime<Utc>>,
}

fn events(changes: &[Change]) -> Vec<Event> {
    let mut events: Vec<Event> = changes
        .iter()
        .map(|c| {
            let r = &c.reservation;
            Event {
                changed_at: c.changed_at,
                user: r.user_id.to_string(),
                op: c.op.as_str(),
                resource: r.resource_id.to_string(),
                status: r.status,
                span: (r.timespan.start(), r.timespan.end()),
                note: r.note.to_string(),
                expires_at: r.expires_at,
            }
        })
        .collect();
    assert!(
        events
            .windows(2)
            .all(|w| w[0].changed_at <= w[1].changed_at),
        "calls follow one another in the feed"
    );
    events.sort();
    events
}

/// Every kind of call, conflicts and retries included, on one store; the
/// outcomes of the calls, and then the whole change feed.
async fn script(env: &Env) -> (Vec<String>, Vec<Event>) {
    let mut outcomes = Vec::new();
    let mut record = |what: &str, result: &Result<abi::Reservation, Error>| {
        outcomes.push(match result {
            Ok(r) => format!("{what}: ok {}", r.status),
            Err(Error::Conflict(c)) => format!("{what}: conflict with {}", c.existing.len()),
            Err(Error::NotFound(_)) => what.to_string(),
            Err(e) => format!("{what}: {e}"),
        });
        env.clock.advance(TimeDelta::seconds(1));
    };
    let s = &env.store;
    let a = s.reserve(short_hold("alice", "room-1", 0, 60, 10)).await;
    record("hold a", &a);
    let a = a.unwrap();
    record("clash", &s.reserve(hold("bob", "room-1", 30, 90)).await);
    let c = s.reserve(hold("carol", "room-1", 60, 120)).await;
    record("hold c", &c);
    let c = c.unwrap();
    record("confirm c", &s.confirm(c.id).await);
    record("confirm c again", &s.confirm(c.id).await);
    let note = ReservationUpdate::builder()
        .id(a.id.to_string())
        .note("agenda")
        .build()
        .unwrap();
    record("note a", &s.update(note).await);
    let h = s.reserve(hold("hank", "room-1", 300, 360)).await;
    record("hold h", &h);
    env.advance(20); // a is overdue
    record("confirm a", &s.confirm(a.id).await);
    // Refused: h is in the way (and so is overdue a, which stays as stored).
    record("refused move", &s.update(reschedule(c.id, 0, 320)).await);
    let note = ReservationUpdate::builder()
        .id(c.id.to_string())
        .note("moving")
        .build()
        .unwrap();
    record("note c", &s.update(note).await);
    record("move c", &s.update(reschedule(c.id, 30, 130)).await);
    let keyed = || {
        NewReservation::builder()
            .user_id("erin")
            .resource_id("room-2")
            .start(at(0))
            .end(at(60))
            .request_id("erin-1")
            .build()
            .unwrap()
    };
    record("keyed", &s.reserve(keyed()).await);
    record("keyed retry", &s.reserve(keyed()).await);
    let block = NewReservation::builder()
        .user_id("ops")
        .resource_id("room-3")
        .start(at(0))
        .end(at(600))
        .status(abi::InitialStatus::Blocked)
        .build()
        .unwrap();
    record("block", &s.reserve(block).await);
    let f = s.reserve(short_hold("frank", "room-4", 0, 60, 5)).await;
    record("hold f", &f);
    record("cancel c", &s.cancel(c.id).await);
    record("cancel c again", &s.cancel(c.id).await);
    env.advance(10); // f is overdue
    let swept = s.sweep().await.unwrap();
    record(
        &format!("swept {}", swept.expired),
        &Err(Error::NotFound(a.id)),
    );
    // Something to sit after room-1's history, on a fresh interval.
    record("late", &s.reserve(hold("gina", "room-1", 700, 760)).await);
    (outcomes, events(&history(env).await))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_makes_the_same_events_on_every_store() {
    let (pg_outcomes, pg_events) = script(&Env::postgres().await).await;
    let (lite_outcomes, lite_events) = script(&Env::sqlite().await).await;
    assert_eq!(pg_outcomes, lite_outcomes, "the calls answer alike");
    assert_eq!(
        pg_events.len(),
        lite_events.len(),
        "as many events: {pg_events:#?}\nvs\n{lite_events:#?}"
    );
    for (i, (pg, lite)) in pg_events.iter().zip(&lite_events).enumerate() {
        assert_eq!(pg, lite, "event {i} differs");
    }
    // The script covers what it claims: a hold settled by a write (alice),
    // two by the sweep (frank, hank).
    let expired: Vec<_> = pg_events
        .iter()
        .filter(|e| e.status == ReservationStatus::Expired)
        .map(|e| e.user.as_str())
        .collect();
    assert_eq!(expired, ["alice", "frank", "hank"], "{pg_events:#?}");
    assert!(pg_events.iter().all(|e| e.changed_at >= t0()));
}
