//! The change feed hub: one reader of the changes table per store, fanned
//! out to every listener through a bounded broadcast buffer.
//!
//! Change ids come from a sequence, so with concurrent writers they can
//! commit out of order: id 11 may be visible while id 10's transaction is
//! still open. The hub delivers strictly in id order and never skips an id
//! that may still commit.
//!
//! A missing id below a visible one was drawn by a transaction that had its
//! transaction id before the visible one committed, so before the snapshot
//! that shows the gap. That transaction is listed in the snapshot's
//! in-progress ids, or (PostgreSQL lists only ids below the snapshot's
//! `xmax`, which trails the ids already handed out) at or above `xmax`. So
//! on seeing a gap the hub takes a fence — a transaction id assigned now,
//! above every possible holder — and waits until a later snapshot has
//! passed the fence and none of the holders (listed, or between the old
//! `xmax` and the fence) still runs, or the server restarted. An id still
//! missing then was rolled back. Where writers are serialized (SQLite) no
//! gap can fill later.

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

/// Changes read in one go.
pub(crate) struct ChangeBatch {
    /// Changes in id order.
    pub changes: Vec<Change>,
    /// The transactions in progress in the snapshot that read `changes`, or
    /// `None` when no earlier id can commit later.
    pub in_progress: Option<InProgress>,
}

/// Transactions in progress at a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct InProgress {
    /// The ids listed as in progress (all below `xmax`).
    pub xids: Vec<i64>,
    /// Ids from here up were unfinished or not yet assigned, unlisted.
    pub xmax: i64,
    /// Which run of the database server they belong to (its start time). No
    /// transaction outlives a restart, and after a crash the server may hand
    /// the ids of lost transactions to new ones.
    pub epoch: i64,
}

/// The transactions that may still fill a gap: those listed in progress
/// when it was seen, and every id from that snapshot's `xmax` up to a fence
/// taken after it.
#[derive(Clone, Debug)]
struct Holders {
    listed: Vec<i64>,
    from: i64,
    /// Not known until the fence is taken.
    to: Option<i64>,
    epoch: i64,
}

impl Holders {
    fn seen_at(snapshot: &InProgress) -> Self {
        Holders {
            listed: snapshot.xids.clone(),
            from: snapshot.xmax,
            to: None,
            epoch: snapshot.epoch,
        }
    }

    /// Whether every possible holder has finished by the snapshot `now`.
    fn all_done(&self, now: &InProgress) -> bool {
        if now.epoch != self.epoch {
            return true; // the server restarted: nothing from before runs
        }
        let Some(to) = self.to else { return false };
        if now.xmax < to {
            return false; // holders may run unlisted
        }
        !now.xids
            .iter()
            .any(|x| self.listed.contains(x) || (self.from..to).contains(x))
    }
}

/// Where a store keeps its changes.
#[async_trait]
pub(crate) trait ChangeSource: Send + Sync + 'static {
    /// Up to `limit` changes with ids above `after`, in id order.
    async fn read_after(&self, after: i64, limit: i64) -> Result<ChangeBatch>;

    /// The changes a statement built by [`Statement::replay`] selects.
    async fn select(&self, statement: Statement) -> Result<Vec<StoredChange>>;

    /// The SQL text of this store.
    fn sql(&self) -> &'static Sql;

    /// The changes with ids in `(after, upto]` that `filter` selects, in id
    /// order, at most `limit`.
    async fn replay(
        &self,
        after: i64,
        upto: i64,
        filter: &ListenFilter,
        limit: i64,
    ) -> Result<Vec<Change>> {
        let statement = Statement::replay(self.sql(), after, upto, filter, limit);
        self.select(statement)
            .await?
            .into_iter()
            .map(StoredChange::into_change)
            .collect()
    }

    /// The highest change id, and the transactions then in progress.
    async fn head(&self) -> Result<(i64, Option<InProgress>)>;

    /// A transaction id assigned now, above every id assigned before.
    async fn fence(&self) -> Result<i64>;
}

/// Most changes read per query.
const READ_BATCH: i64 = 1000;
const REPLAY_BATCH: i64 = 500;
/// Polling interval when nothing wakes the hub (a safety net).
const IDLE_POLL: Duration = Duration::from_secs(1);
/// Polling interval while waiting for a gap to fill.
const GAP_POLL: Duration = Duration::from_millis(10);
/// How long a gap may hold the feed back before the hub moves on. Only a
/// transaction held open outside rsvp can take this long.
const GAP_PATIENCE: Duration = Duration::from_secs(10);

struct State {
    delivered: i64,
    tx: broadcast::Sender<Arc<Change>>,
}

struct Shared {
    state: Mutex<State>,
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

struct Gap {
    /// Ids below this one are missing and may still be filled...
    below: i64,
    /// ...but only by these transactions.
    holders: Holders,
    since: Instant,
}

impl<S: ChangeSource> Feed<S> {
    /// Starts a hub that reads `source` whenever `wake` is notified (and
    /// every second regardless), keeping up to `capacity` changes for slow
    /// listeners.
    ///
    /// # Errors
    /// When the source cannot be read.
    pub async fn start(source: Arc<S>, wake: Arc<Notify>, capacity: usize) -> Result<Self> {
        let (head, in_progress) = source.head().await?;
        // Ids up to `head` that are not visible yet belong to transactions
        // running now; once those end, everything up to `head` is final.
        if let Some(snapshot) = in_progress {
            let mut holders = Holders::seen_at(&snapshot);
            holders.to = Some(source.fence().await?);
            let since = Instant::now();
            loop {
                let (_, now) = source.head().await?;
                if now.is_none_or(|now| holders.all_done(&now)) {
                    break;
                }
                if since.elapsed() > GAP_PATIENCE {
                    tracing::warn!("change feed started while a transaction stayed open");
                    break;
                }
                tokio::time::sleep(GAP_POLL).await;
            }
        }
        let capacity = capacity.max(2);
        let (tx, _) = broadcast::channel(capacity);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                delivered: head,
                tx,
            }),
            read_batch: READ_BATCH.min(capacity as i64 / 2),
        });
        let stop = CancellationToken::new();
        tokio::spawn(run(source.clone(), shared.clone(), wake, stop.clone()));
        Ok(Feed {
            shared,
            source,
            _stop: stop.drop_guard(),
        })
    }

    /// A stream of the changes `filter` selects.
    pub fn listen(&self, filter: ListenFilter) -> ChangeStream {
        let (mut rx, delivered) = {
            let state = self.shared.lock();
            (state.tx.subscribe(), state.delivered)
        };
        let source = self.source.clone();
        async_stream::try_stream! {
            // Everything up to `delivered` is in the table; later changes
            // arrive through `rx`.
            let mut last = delivered;
            if let Some(after) = filter.after_change_id {
                let mut from = after;
                while from < delivered {
                    let batch = source.replay(from, delivered, &filter, REPLAY_BATCH).await?;
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
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        }
        .boxed()
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
        let pause = if gap.is_some() { GAP_POLL } else { IDLE_POLL };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(pause) => {}
        }
        loop {
            let delivered = shared.lock().delivered;
            let batch = match source.read_after(delivered, shared.read_batch).await {
                Ok(batch) => {
                    failures = 0;
                    batch
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(60) {
                        tracing::warn!(error = %e, "change feed cannot read changes; retrying");
                    }
                    break;
                }
            };
            let full = batch.changes.len() as i64 == shared.read_batch;
            let blocked = deliver(&shared, batch, &mut gap);
            if let Some(g) = gap.as_mut()
                && g.holders.to.is_none()
            {
                match source.fence().await {
                    Ok(fence) => g.holders.to = Some(fence),
                    Err(e) => {
                        tracing::warn!(error = %e, "change feed cannot take a fence; retrying")
                    }
                }
            }
            if blocked || !full {
                break;
            }
        }
    }
}

/// Delivers what can be delivered in order. Returns true when it stopped at
/// a gap that may still fill.
fn deliver(shared: &Shared, batch: ChangeBatch, gap: &mut Option<Gap>) -> bool {
    for change in batch.changes {
        let next = shared.lock().delivered + 1;
        if change.id > next {
            let settled = match &batch.in_progress {
                None => true,
                Some(running) => match gap {
                    Some(g) if change.id <= g.below => {
                        let done = g.holders.all_done(running);
                        let overdue = g.since.elapsed() > GAP_PATIENCE;
                        if !done && overdue {
                            tracing::warn!(
                                from = next,
                                to = change.id - 1,
                                "change ids held by a transaction open for too long; skipping"
                            );
                        }
                        done || overdue
                    }
                    _ => {
                        *gap = Some(Gap {
                            below: change.id,
                            holders: Holders::seen_at(running),
                            since: Instant::now(),
                        });
                        false
                    }
                },
            };
            if !settled {
                return true;
            }
        }
        if gap.as_ref().is_some_and(|g| change.id >= g.below) {
            *gap = None;
        }
        let mut state = shared.lock();
        state.delivered = change.id;
        // No receivers is fine: nobody is listening right now.
        let _ = state.tx.send(Arc::new(change));
    }
    false
}
