//! Reserves combined into shared transactions.
//!
//! A reserve's cost is its commit: the round trip, and the wait for the WAL
//! (or SQLite's journal) to reach the disk. Reserves that arrive while
//! others are being written queue here, and each free writing lane takes
//! everything queued (up to [`MAX_BATCH`]) into one call of
//! [`Dialect::place`]: one transaction, one commit, every placement with an
//! outcome of its own — a refused one does not refuse its neighbours, and
//! none is answered before the commit. A reserve that finds a lane free goes
//! at once, alone.
//!
//! Should a combined call fail as a whole, each of its placements is tried
//! again on its own, so one placement's failure is never its neighbours' —
//! unless the database itself is out of reach (busy or unavailable), which
//! every placement is told.

use std::sync::Arc;

use abi::Result;
use chrono::{DateTime, Utc};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::{
    db_error::retry_aborted,
    dialect::{Dialect, Placed, Placement, WriteTime},
};

/// Most placements combined into one transaction.
pub(crate) const MAX_BATCH: usize = 64;

/// What a placement became, at the time its transaction ran.
pub(crate) type Answer = Result<(DateTime<Utc>, Placed)>;

struct Job {
    placement: Placement,
    reply: oneshot::Sender<Answer>,
}

/// The queue of placements and its writing lanes. Dropping it stops the
/// lanes once the queue is empty.
pub(crate) struct Placer {
    queue: mpsc::UnboundedSender<Job>,
}

impl Placer {
    /// Starts `lanes` writers of `dialect`; conflicts list at most `limit`.
    pub fn start<D: Dialect>(dialect: Arc<D>, time: WriteTime, lanes: usize, limit: u32) -> Self {
        let (queue, jobs) = mpsc::unbounded_channel();
        let jobs = Arc::new(Mutex::new(jobs));
        for _ in 0..lanes.max(1) {
            tokio::spawn(lane(dialect.clone(), time.clone(), jobs.clone(), limit));
        }
        Placer { queue }
    }

    /// Places one reservation, in whatever transaction it can share.
    pub async fn place(&self, placement: Placement) -> Answer {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job { placement, reply })
            .map_err(|_| abi::Error::internal("the store's writers have stopped"))?;
        answer
            .await
            .map_err(|_| abi::Error::internal("a store writer stopped before answering"))?
    }
}

async fn lane<D: Dialect>(
    dialect: Arc<D>,
    time: WriteTime,
    jobs: Arc<Mutex<mpsc::UnboundedReceiver<Job>>>,
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
        let (placements, replies): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|j| (j.placement, j.reply)).unzip();
        let placed = retry_aborted(|| dialect.place(&placements, &time, limit)).await;
        match placed {
            Ok(outcome) if outcome.placed.len() == replies.len() => {
                metrics::histogram!("rsvp_write_batch_size").record(replies.len() as f64);
                metrics::histogram!("rsvp_lock_wait_seconds", "write" => "place")
                    .record(outcome.lock_wait.as_secs_f64());
                for (reply, placed) in replies.into_iter().zip(outcome.placed) {
                    // The caller may have gone; its reservation stands.
                    let _ = reply.send(Ok((outcome.at, placed)));
                }
            }
            Ok(_) => {
                for reply in replies {
                    let _ = reply.send(Err(abi::Error::internal(
                        "the store answered for a different number of placements",
                    )));
                }
            }
            Err(e) if placements.len() == 1 => {
                if let Some(reply) = replies.into_iter().next() {
                    let _ = reply.send(Err(e));
                }
            }
            // The database as a whole is out of reach: each placement
            // would fail alike.
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
                    n = placements.len(),
                    "combined placement failed; placing one by one"
                );
                for (placement, reply) in placements.iter().zip(replies) {
                    let one = std::slice::from_ref(placement);
                    let answer = retry_aborted(|| dialect.place(one, &time, limit))
                        .await
                        .and_then(|outcome| {
                            let at = outcome.at;
                            outcome
                                .placed
                                .into_iter()
                                .next()
                                .map(|p| (at, p))
                                .ok_or_else(|| abi::Error::internal("the store placed nothing"))
                        });
                    let _ = reply.send(answer);
                }
            }
        }
    }
}
