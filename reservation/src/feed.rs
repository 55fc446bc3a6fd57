//! The change feed hub: one reader of the changes table per store, fanned
//! out to every listener through a bounded broadcast buffer.
//!
//! The hub reads new changes when woken (after a write of this process, or
//! an announcement from another server) and also every [`FEED_POLL`], so
//! that writes announced by nobody (made outside rsvp, or by a server that
//! died before announcing) still arrive.
//!
//! Change ids come from a sequence, so with concurrent writers they can
//! commit out of order: id 11 may be visible while id 10's transaction is
//! still open. The hub delivers strictly in id order and never moves past
//! an id that may still commit. A transaction that drew a missing id holds
//! a lock on the changes table from before it drew the id until it ends, so
//! on seeing a gap the hub asks the store which transactions hold such a
//! lock ([`ChangeSource::writers`]), waits until none of them runs, and reads
//! again: an id still missing then was rolled back. While it waits it keeps
//! reading, and delivers each missing id as soon as it commits (with what
//! follows it up to the next one still missing). It waits for nothing
//! else, and however long it waits it does not skip; a long wait is logged.
//! Where writers are serialized (SQLite) ids commit in order and no gap can
//! fill later.

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use abi::{Change, Error, ListenFilter, Result};
use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::{dialect::Sql, row::StoredChange, rsvp::ChangeStream, statement::Statement};

/// Transactions that may still commit change ids drawn before they were
/// named, and the database server they run on: opaque to the hub,
/// meaningful to the store that named them. Transactions of another server
/// (one that failed over, or restarted) can commit nothing more: what they
/// committed is on the server now answering, or is gone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Writers {
    pub server: String,
    pub transactions: Vec<String>,
}

/// Where a store keeps its changes.
#[async_trait]
pub(crate) trait ChangeSource: Send + Sync + 'static {
    /// Up to `limit` changes with ids above `after`, in id order.
    async fn read_after(&self, after: i64, limit: i64) -> Result<Vec<Change>>;

    /// The highest change id.
    async fn head(&self) -> Result<i64>;

    /// The transactions that may still commit an id drawn before this call;
    /// `None` where ids always commit in order.
    async fn writers(&self) -> Result<Option<Writers>>;

    /// Whether any of `writers` still runs.
    async fn running(&self, writers: &Writers) -> Result<bool>;

    /// Waits until every change committed so far is wherever it must be
    /// before a listener is told of it (a synchronous standby); nothing
    /// where a commit is final at once.
    async fn durable(&self) -> Result<()> {
        Ok(())
    }

    /// The highest change id that retention deleted (0 if none).
    async fn purged_through(&self) -> Result<i64>;

    /// The changes a statement built by [`Statement::replay`] selects, and
    /// the highest change id retention had deleted as of the same snapshot.
    async fn select(&self, statement: Statement) -> Result<(Vec<StoredChange>, i64)>;

    /// The SQL text of this store.
    fn sql(&self) -> &'static Sql;

    /// The changes with ids in `(after, upto]` that `filter` selects, in id
    /// order, at most `limit`; and the highest change id retention had
    /// deleted when they were read.
    async fn replay(
        &self,
        after: i64,
        upto: i64,
        filter: &ListenFilter,
        limit: i64,
    ) -> Result<(Vec<Change>, i64)> {
        let statement = Statement::replay(self.sql(), after, upto, filter, limit);
        let (rows, purged) = self.select(statement).await?;
        let changes = rows
            .into_iter()
            .map(StoredChange::into_change)
            .collect::<Result<_>>()?;
        Ok((changes, purged))
    }
}

/// Most changes read per query.
const READ_BATCH: i64 = 1000;
const REPLAY_BATCH: i64 = 500;
/// How often the hub reads the table when nothing wakes it.
pub(crate) const FEED_POLL: Duration = Duration::from_millis(100);
/// How often the hub looks again while waiting at a gap.
const GAP_POLL: Duration = Duration::from_millis(2);
/// A wait at a gap this long is logged (and again every as long).
const GAP_REPORT: Duration = Duration::from_secs(5);

struct State {
    delivered: i64,
    tx: broadcast::Sender<Arc<Change>>,
}

struct Shared {
    state: Mutex<State>,
    /// Changes kept for slow listeners.
    capacity: usize,
    /// Changes read per query: at most half the buffer, so that one read's
    /// burst never cuts off a listener that keeps up.
    read_batch: i64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running hub. Dropping it stops its task and ends every listener's
/// stream.
pub(crate) struct Feed<S> {
    shared: Arc<Shared>,
    source: Arc<S>,
    _stop: DropGuard,
}

/// Ids above what was delivered and below `below` are missing, and may
/// still be committed by `writers`.
struct Gap {
    below: i64,
    writers: Writers,
    since: Instant,
    reported: Instant,
}

/// Waits until none of the transactions that may hold an id drawn before
/// now still runs.
async fn settle<S: ChangeSource>(source: &S) -> Result<()> {
    let Some(writers) = source.writers().await? else {
        return Ok(());
    };
    let since = Instant::now();
    let mut reported = since;
    while source.running(&writers).await? {
        if reported.elapsed() >= GAP_REPORT {
            tracing::warn!(
                writers = ?writers.transactions,
                waited_s = since.elapsed().as_secs(),
                "change feed starting: waiting for transactions that may commit changes"
            );
            reported = Instant::now();
        }
        tokio::time::sleep(GAP_POLL).await;
    }
    Ok(())
}

impl<S: ChangeSource> Feed<S> {
    /// Starts a hub that reads `source` whenever `wake` is notified (and
    /// every [`FEED_POLL`] regardless), keeping up to `capacity` changes for
    /// slow listeners.
    ///
    /// # Errors
    /// When the source cannot be read.
    pub async fn start(source: Arc<S>, wake: Arc<Notify>, capacity: usize) -> Result<Self> {
        // Ids up to `head` that are not visible yet belong to transactions
        // running now; once those end, everything up to `head` is final.
        let head = source.head().await?;
        settle(source.as_ref()).await?;
        // Changes up to `head` are replayed to listeners without being read
        // by the hub: they too must be on a synchronous standby first.
        source.durable().await?;
        let capacity = capacity.max(2);
        let (tx, _) = broadcast::channel(capacity);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                delivered: head,
                tx,
            }),
            capacity,
            read_batch: READ_BATCH.min(capacity as i64 / 2),
        });
        let stop = CancellationToken::new();
        tokio::spawn(supervise(
            source.clone(),
            shared.clone(),
            wake,
            stop.clone(),
        ));
        Ok(Feed {
            shared,
            source,
            _stop: stop.drop_guard(),
        })
    }

    /// The highest change id delivered: every change up to it has
    /// committed (or will never).
    pub fn delivered(&self) -> i64 {
        self.shared.lock().delivered
    }

    /// A stream of the changes `filter` selects: with `after_change_id`,
    /// first every retained change after it, then live ones, with no gap.
    ///
    /// # Errors
    /// [`Error::ChangesExpired`] when retention already deleted changes
    /// after `after_change_id` (0 always means "from the oldest retained");
    /// in the stream, when retention deletes changes the replay has not
    /// read yet.
    pub async fn listen(&self, filter: ListenFilter) -> Result<ChangeStream> {
        let (mut rx, delivered) = {
            let state = self.shared.lock();
            (state.tx.subscribe(), state.delivered)
        };
        let mut from = None;
        // 0: from the oldest retained, whatever retention deletes meanwhile.
        let from_oldest = filter.after_change_id == Some(0);
        if let Some(after) = filter.after_change_id {
            let purged = self.source.purged_through().await?;
            if after > 0 && after < purged {
                return Err(Error::ChangesExpired {
                    oldest_change_id: purged + 1,
                });
            }
            // Past every change made (a mistyped id, or one of another
            // database): waiting for it would skip every change up to it.
            // An id another server has delivered is in the table, though
            // this one's feed may not have read it yet.
            if after > delivered {
                let latest = self.source.head().await?.max(purged);
                if after > latest {
                    return Err(Error::invalid(
                        "after_change_id",
                        format!(
                            "{after} is past the latest change, {latest}: resume after a \
                             change id a listener was given"
                        ),
                    ));
                }
            }
            from = Some(after.max(purged));
        }
        let source = self.source.clone();
        Ok(async_stream::try_stream! {
            // Everything up to `delivered` is in the table; later changes
            // arrive through `rx`.
            let mut last = delivered;
            if let Some(after) = from {
                let mut from = after;
                while from < delivered {
                    let (batch, purged) =
                        source.replay(from, delivered, &filter, REPLAY_BATCH).await?;
                    // Retention deleted changes after `from` before the
                    // batch was read (it purges in id order): the batch
                    // misses them, and the stream ends as a start too old
                    // for retention does, rather than skip them. From the
                    // oldest, what is kept is still the whole ask.
                    if purged > from && !from_oldest {
                        Err(Error::ChangesExpired {
                            oldest_change_id: purged + 1,
                        })?;
                    }
                    // Read in the same snapshot, every row is past `purged`.
                    let Some(tail) = batch.last() else { break };
                    from = tail.id;
                    for change in batch {
                        yield change;
                    }
                }
                last = last.max(after);
            }
            let floor = last;
            loop {
                match rx.recv().await {
                    Ok(change) => {
                        if change.id <= floor {
                            continue;
                        }
                        last = change.id;
                        if filter.matches(&change) {
                            yield Change::clone(&change);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        Err(Error::Lagged { last_change_id: last })?;
                    }
                    // The feed stopped (its store closed) or failed and
                    // starts again: this stream ends, saying where to resume.
                    Err(broadcast::error::RecvError::Closed) => {
                        Err(Error::FeedInterrupted { last_change_id: last })?;
                    }
                }
            }
        }
        .boxed())
    }
}

/// Runs the hub until `stop`. Should it fail (a panic), every listener's
/// stream ends with [`Error::FeedInterrupted`] rather than wait for changes
/// that would never come, and the hub starts again from what it delivered
/// a second later; a listener resumes from its last change id.
async fn supervise<S: ChangeSource>(
    source: Arc<S>,
    shared: Arc<Shared>,
    wake: Arc<Notify>,
    stop: CancellationToken,
) {
    loop {
        let hub = tokio::spawn(run(
            source.clone(),
            shared.clone(),
            wake.clone(),
            stop.clone(),
        ));
        match hub.await {
            Ok(()) => return,
            // Cancelled: the runtime is shutting down.
            Err(failed) if !failed.is_panic() => return,
            Err(failed) => {
                tracing::error!(
                    error = %failed,
                    "the change feed failed: ending every listener's stream, starting again"
                );
                metrics::counter!("rsvp_feed_failures_total").increment(1);
                // Dropping the sender ends every receiver.
                let mut state = shared.lock();
                state.tx = broadcast::channel(shared.capacity).0;
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn run<S: ChangeSource>(
    source: Arc<S>,
    shared: Arc<Shared>,
    wake: Arc<Notify>,
    stop: CancellationToken,
) {
    let mut gap: Option<Gap> = None;
    let mut failures = 0u32;
    loop {
        let pause = if gap.is_some() { GAP_POLL } else { FEED_POLL };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(pause) => {}
        }
        match step(source.as_ref(), &shared, &mut gap).await {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(60) {
                    tracing::warn!(
                        error = %e.chain(),
                        "change feed cannot read changes; retrying"
                    );
                }
            }
        }
    }
}

/// Reads and delivers whatever can be delivered in order now. At a gap,
/// every id that commits meanwhile is delivered as soon as it is visible
/// and the ids before it are: only what is still missing waits for the
/// transactions that may hold it.
async fn step<S: ChangeSource>(source: &S, shared: &Shared, gap: &mut Option<Gap>) -> Result<()> {
    // Ids up to this one that are still missing were rolled back.
    let mut settled: Option<i64> = None;
    'read: loop {
        let delivered = shared.lock().delivered;
        // At a gap, only the ids up to its end are read until it closes: a
        // long wait reads a few rows each time, not a whole batch.
        let limit = gap.as_ref().map_or(shared.read_batch, |g| {
            (g.below - delivered).clamp(1, shared.read_batch)
        });
        let batch = source.read_after(delivered, limit).await?;
        let full = batch.len() as i64 == limit;
        for change in batch {
            let next = shared.lock().delivered + 1;
            if change.id > next && settled.is_none_or(|below| change.id > below) {
                if let Some(g) = gap.as_mut() {
                    // Until every transaction that may fill the gap has
                    // ended, there is nothing to deliver past it.
                    if !ended(source, g, next, change.id - 1).await? {
                        return Ok(());
                    }
                    // Read again after the writers were seen to end: what
                    // is still missing then was rolled back.
                    settled = Some(g.below);
                    close(gap);
                    continue 'read;
                }
                // A gap not known to be settled: find who may fill it.
                if let Some(writers) = source.writers().await? {
                    let now = Instant::now();
                    *gap = Some(Gap {
                        below: change.id,
                        writers,
                        since: now,
                        reported: now,
                    });
                    return Ok(());
                }
            }
            let lag = (chrono::Utc::now() - change.changed_at).num_microseconds();
            metrics::histogram!("rsvp_feed_lag_seconds")
                .record(lag.unwrap_or(0).max(0) as f64 / 1e6);
            let mut state = shared.lock();
            state.delivered = change.id;
            // No receivers is fine: nobody is listening right now.
            let _ = state.tx.send(Arc::new(change));
            drop(state);
            // Filled: the ids it missed committed.
            if gap.as_ref().is_some_and(|g| filled(shared, g)) {
                close(gap);
            }
        }
        if let Some(g) = gap.as_mut() {
            // The gap's end is no longer there to read (a failover to a
            // server that never had it, say): the gap ends with its
            // writers; a later id opens a new one if need be.
            let next = shared.lock().delivered + 1;
            if ended(source, g, next, g.below - 1).await? {
                close(gap);
            }
            return Ok(());
        }
        if !full {
            return Ok(());
        }
    }
}

/// Whether every transaction that may commit the ids `from..=to` of a gap
/// has ended; a long wait is logged.
async fn ended<S: ChangeSource>(source: &S, gap: &mut Gap, from: i64, to: i64) -> Result<bool> {
    metrics::gauge!("rsvp_feed_waiting_seconds").set(gap.since.elapsed().as_secs_f64());
    if !source.running(&gap.writers).await? {
        return Ok(true);
    }
    if gap.reported.elapsed() >= GAP_REPORT {
        tracing::warn!(
            from,
            to,
            writers = ?gap.writers.transactions,
            waited_s = gap.since.elapsed().as_secs(),
            "change feed waiting for open transactions that may commit these change ids"
        );
        gap.reported = Instant::now();
    }
    Ok(false)
}

/// Whether every id below the gap's end has been delivered.
fn filled(shared: &Shared, gap: &Gap) -> bool {
    shared.lock().delivered + 1 >= gap.below
}

/// Ends the wait at a gap, recording how long it lasted.
fn close(gap: &mut Option<Gap>) {
    if let Some(g) = gap.take() {
        metrics::histogram!("rsvp_feed_gap_wait_seconds").record(g.since.elapsed().as_secs_f64());
        metrics::gauge!("rsvp_feed_waiting_seconds").set(0.0);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use abi::{
        ChangeOp, Note, Reservation, ReservationId, ReservationStatus, ResourceId, Timespan, UserId,
    };
    use chrono::DateTime;

    use super::*;

    /// Changes in memory; the first read after `fail` is set panics, as a
    /// row the hub cannot handle would.
    #[derive(Default)]
    struct Fake {
        changes: Mutex<Vec<Change>>,
        fail: AtomicBool,
    }

    impl Fake {
        fn push(&self) -> i64 {
            let at = |s| DateTime::from_timestamp(s, 0).unwrap_or_default();
            let mut changes = self.changes.lock().unwrap_or_else(|p| p.into_inner());
            let id = changes.len() as i64 + 1;
            changes.push(Change {
                id,
                op: ChangeOp::Create,
                reservation: Reservation {
                    id: ReservationId::new(),
                    user_id: UserId::parse("alice").unwrap(),
                    resource_id: ResourceId::parse("room").unwrap(),
                    status: ReservationStatus::Pending,
                    timespan: Timespan::new(at(0), at(60)).unwrap(),
                    note: Note::default(),
                    created_at: at(0),
                    updated_at: at(0),
                    expires_at: None,
                    quantity: 1,
                    booking_id: None,
                    checked_in_at: None,
                    checked_out_at: None,
                },
                changed_at: at(0),
            });
            id
        }
    }

    #[async_trait]
    impl ChangeSource for Fake {
        async fn read_after(&self, after: i64, limit: i64) -> Result<Vec<Change>> {
            assert!(
                !self.fail.swap(false, Ordering::SeqCst),
                "a change the hub cannot handle"
            );
            let changes = self.changes.lock().unwrap_or_else(|p| p.into_inner());
            Ok(changes
                .iter()
                .filter(|c| c.id > after)
                .take(limit as usize)
                .cloned()
                .collect())
        }

        async fn head(&self) -> Result<i64> {
            Ok(self.changes.lock().unwrap_or_else(|p| p.into_inner()).len() as i64)
        }

        async fn writers(&self) -> Result<Option<Writers>> {
            Ok(None)
        }

        async fn running(&self, _: &Writers) -> Result<bool> {
            Ok(false)
        }

        async fn purged_through(&self) -> Result<i64> {
            Ok(0)
        }

        async fn select(&self, _: Statement) -> Result<(Vec<StoredChange>, i64)> {
            Ok((Vec::new(), 0))
        }

        fn sql(&self) -> &'static Sql {
            unreachable!("no replay in these tests")
        }
    }

    async fn next(stream: &mut ChangeStream) -> Result<Change> {
        tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("an item within 10 s")
            .expect("the stream goes on")
    }

    /// A hub that fails ends every listener's stream, saying so, instead of
    /// leaving it to wait for changes that never come; it starts again, and
    /// new listeners get every later change.
    #[tokio::test]
    async fn a_hub_that_fails_ends_its_listeners_and_starts_again() {
        let source = Arc::new(Fake::default());
        let wake = Arc::new(Notify::new());
        let feed = Feed::start(source.clone(), wake.clone(), 16).await.unwrap();
        let mut before = feed.listen(ListenFilter::default()).await.unwrap();
        let first = source.push();
        wake.notify_one();
        assert_eq!(next(&mut before).await.unwrap().id, first);

        source.fail.store(true, Ordering::SeqCst);
        let lost = source.push();
        wake.notify_one();
        let ended = next(&mut before).await.unwrap_err();
        assert!(
            matches!(ended, Error::FeedInterrupted { last_change_id } if last_change_id == first),
            "{ended:?}"
        );

        let mut after = feed.listen(ListenFilter::default()).await.unwrap();
        let later = source.push();
        wake.notify_one();
        // The change read when the hub failed is delivered once it starts
        // again (to listeners from before it, resuming, by replay).
        assert_eq!(next(&mut after).await.unwrap().id, lost);
        assert_eq!(next(&mut after).await.unwrap().id, later);
    }
}
