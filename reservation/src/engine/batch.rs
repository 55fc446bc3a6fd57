//! Writes combined into shared transactions.
//!
//! A write's cost is its commit: the round trip, and the wait for the WAL
//! (or SQLite's journal) to reach the disk. Reserves (and bookings) that
//! arrive while others are being written queue here, and each free writing
//! lane takes everything queued (up to [`MAX_BATCH`]) into one call of the
//! store ([`Dialect::place`], [`Dialect::book`]): one transaction, one
//! commit, every item with an outcome of its own — a refused one does not
//! refuse its neighbours, and none is answered before the commit. A write
//! that finds a lane free goes at once, alone.
//!
//! Should a combined call fail as a whole, each of its items is tried again
//! on its own, so one item's failure is never its neighbours' — unless the
//! database itself is out of reach (busy or unavailable), which every item
//! is told.

use std::{sync::Arc, time::Duration};

use abi::Result;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::{
    db_error::retry_aborted,
    dialect::{Booked, BookingPlacement, Dialect, Placed, Placement, WriteTime},
};

/// Most items combined into one transaction.
pub(crate) const MAX_BATCH: usize = 64;

/// A kind of write the lanes combine.
#[async_trait]
pub(crate) trait Combined: Send + Sync + Sized + 'static {
    /// What one item became.
    type Done: Send + 'static;

    /// The write's name in metrics.
    const WRITE: &'static str;

    /// Writes `batch` in one transaction, in order; each refusal lists at
    /// most `limit` of what is in the way.
    async fn write<D: Dialect>(
        dialect: &D,
        batch: &[Self],
        time: &WriteTime,
        limit: u32,
    ) -> Result<Written<Self::Done>>;
}

/// What a combined write did.
pub(crate) struct Written<T> {
    /// The time it ran at, read after its locks.
    pub at: DateTime<Utc>,
    /// One outcome per item, in order.
    pub done: Vec<T>,
    /// How long it waited for its locks.
    pub lock_wait: Duration,
}

#[async_trait]
impl Combined for Placement {
    type Done = Placed;
    const WRITE: &'static str = "place";

    async fn write<D: Dialect>(
        dialect: &D,
        batch: &[Self],
        time: &WriteTime,
        limit: u32,
    ) -> Result<Written<Placed>> {
        let outcome = dialect.place(batch, time, limit).await?;
        Ok(Written {
            at: outcome.at,
            done: outcome.placed,
            lock_wait: outcome.lock_wait,
        })
    }
}

#[async_trait]
impl Combined for BookingPlacement {
    type Done = Booked;
    const WRITE: &'static str = "book";

    async fn write<D: Dialect>(
        dialect: &D,
        batch: &[Self],
        time: &WriteTime,
        limit: u32,
    ) -> Result<Written<Booked>> {
        let outcome = dialect.book(batch, time, limit).await?;
        Ok(Written {
            at: outcome.at,
            done: outcome.booked,
            lock_wait: outcome.lock_wait,
        })
    }
}

/// What an item became, at the time its transaction ran.
pub(crate) type Answer<T> = Result<(DateTime<Utc>, <T as Combined>::Done)>;

struct Job<T: Combined> {
    item: T,
    reply: oneshot::Sender<Answer<T>>,
}

/// The queue of one kind of write and its writing lanes. Dropping it stops
/// the lanes once the queue is empty.
pub(crate) struct Lanes<T: Combined> {
    queue: mpsc::UnboundedSender<Job<T>>,
}

impl<T: Combined> Lanes<T> {
    /// Starts `lanes` writers of `dialect`; refusals list at most `limit`.
    pub fn start<D: Dialect>(dialect: Arc<D>, time: WriteTime, lanes: usize, limit: u32) -> Self {
        let (queue, jobs) = mpsc::unbounded_channel();
        let jobs = Arc::new(Mutex::new(jobs));
        for _ in 0..lanes.max(1) {
            tokio::spawn(lane(dialect.clone(), time.clone(), jobs.clone(), limit));
        }
        Lanes { queue }
    }

    /// Writes one item, in whatever transaction it can share.
    pub async fn write(&self, item: T) -> Answer<T> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job { item, reply })
            .map_err(|_| abi::Error::internal("the store's writers have stopped"))?;
        answer
            .await
            .map_err(|_| abi::Error::internal("a store writer stopped before answering"))?
    }
}

async fn lane<D: Dialect, T: Combined>(
    dialect: Arc<D>,
    time: WriteTime,
    jobs: Arc<Mutex<mpsc::UnboundedReceiver<Job<T>>>>,
    limit: u32,
) {
    loop {
        let batch = {
            let mut jobs = jobs.lock().await;
            let Some(first) = jobs.recv().await else {
                return; // the store is gone
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            batch
        };
        let (items, replies): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|j| (j.item, j.reply)).unzip();
        let written = retry_aborted(|| T::write(&*dialect, &items, &time, limit)).await;
        match written {
            Ok(written) if written.done.len() == replies.len() => {
                metrics::histogram!("rsvp_write_batch_size", "write" => T::WRITE)
                    .record(replies.len() as f64);
                metrics::histogram!("rsvp_lock_wait_seconds", "write" => T::WRITE)
                    .record(written.lock_wait.as_secs_f64());
                for (reply, done) in replies.into_iter().zip(written.done) {
                    // The caller may have gone; what it wrote stands.
                    let _ = reply.send(Ok((written.at, done)));
                }
            }
            Ok(_) => {
                for reply in replies {
                    let _ = reply.send(Err(abi::Error::internal(
                        "the store answered for a different number of writes",
                    )));
                }
            }
            Err(e) if items.len() == 1 => {
                if let Some(reply) = replies.into_iter().next() {
                    let _ = reply.send(Err(e));
                }
            }
            // The database as a whole is out of reach: each item would
            // fail alike.
            Err(e @ (abi::Error::Busy(_) | abi::Error::Unavailable(_))) => {
                let cause = e.chain();
                for reply in replies {
                    let again = match &e {
                        abi::Error::Busy(_) => abi::Error::Busy(cause.clone().into()),
                        _ => abi::Error::Unavailable(cause.clone().into()),
                    };
                    let _ = reply.send(Err(again));
                }
            }
            Err(e) => {
                tracing::debug!(
                    error = %e.chain(),
                    n = items.len(),
                    write = T::WRITE,
                    "combined write failed; writing one by one"
                );
                for (item, reply) in items.iter().zip(replies) {
                    let one = std::slice::from_ref(item);
                    let answer = retry_aborted(|| T::write(&*dialect, one, &time, limit))
                        .await
                        .and_then(|written| {
                            let at = written.at;
                            written
                                .done
                                .into_iter()
                                .next()
                                .map(|done| (at, done))
                                .ok_or_else(|| abi::Error::internal("the store wrote nothing"))
                        });
                    let _ = reply.send(answer);
                }
            }
        }
    }
}
