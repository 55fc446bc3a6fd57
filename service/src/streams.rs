//! Server streams (Query and Listen) as the wire sees them.
//!
//! - What the store yields is produced by a task of its own into a small
//!   bounded buffer; the wire drains the buffer as the client reads. The
//!   store never waits on the client while it holds a database connection
//!   (each batch is read in full first), so a slow reader holds no more
//!   than its buffer.
//! - Open streams are bounded in total ([`StreamLimits`]; HTTP/2 bounds them
//!   per connection). A stream over the bound is refused with
//!   `RESOURCE_EXHAUSTED` (`STREAM_LIMIT`).
//! - A stream whose client reads nothing for `idle` — its buffer stays full
//!   — ends with `RESOURCE_EXHAUSTED` (`STREAM_IDLE`), saying how to resume;
//!   its task and its place among the open streams are freed at once.
//! - Every open stream ends with `UNAVAILABLE` when the server shuts down,
//!   so a client never mistakes a cut-off stream for a complete one.

use std::{sync::Arc, time::Duration};

use abi::pb;
use futures::{StreamExt, stream::BoxStream};
use reservation::{ChangeStream, ReservationStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::{errors::status, telemetry::Open};

/// Items buffered between a stream's producer and the wire.
const BUFFER: usize = 64;

/// Bounds on open streams, shared by every stream of a server.
#[derive(Clone, Debug)]
pub(crate) struct StreamLimits {
    open: Arc<Semaphore>,
    /// A stream whose client reads nothing for this long ends.
    pub idle: Duration,
    shutdown: CancellationToken,
}

impl StreamLimits {
    pub fn new(max_open: usize, idle: Duration, shutdown: CancellationToken) -> Self {
        StreamLimits {
            open: Arc::new(Semaphore::new(max_open)),
            idle,
            shutdown,
        }
    }

    /// A place for one more open stream.
    fn admit(&self) -> Result<OwnedSemaphorePermit, Status> {
        self.open.clone().try_acquire_owned().map_err(|_| {
            exhausted(
                "STREAM_LIMIT",
                "too many open streams on this server; retry later",
            )
        })
    }
}

fn exhausted(reason: &str, message: &str) -> Status {
    Status::with_error_details(
        Code::ResourceExhausted,
        message,
        ErrorDetails::with_error_info(reason, "rsvp", []),
    )
}

/// Why a stream ended before its items did.
enum Cut {
    /// The client read nothing for the idle time.
    Idle,
}

/// Runs `items` in a task of its own, into a bounded buffer the returned
/// stream drains; `wire` turns an item into its message, `position` names
/// where a client would resume after it (`start` before the first), and
/// `ended` words the end of a cut-off stream (shutdown, idle) from the last
/// position delivered.
fn run<T, W>(
    kind: &'static str,
    mut items: BoxStream<'static, abi::Result<T>>,
    start: Option<i64>,
    limits: &StreamLimits,
    wire: fn(T) -> W,
    position: fn(&W) -> Option<i64>,
    ended: fn(Code, Option<i64>) -> Status,
) -> Result<BoxStream<'static, Result<W, Status>>, Status>
where
    T: Send + 'static,
    W: Send + 'static,
{
    let permit = limits.admit()?;
    let (tx, mut rx) = mpsc::channel::<Result<W, Status>>(BUFFER);
    let (cut_tx, mut cut) = oneshot::channel::<Cut>();
    let idle = limits.idle;
    let shutdown = limits.shutdown.clone();
    let producer = tokio::spawn(async move {
        let _permit = permit;
        let _open = Open::new(kind);
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                next = items.next() => next,
            };
            let message = match next {
                Some(Ok(item)) => Ok(wire(item)),
                Some(Err(e)) => Err(status(e)),
                None => return,
            };
            let last = message.is_err();
            match tokio::time::timeout(idle, tx.send(message)).await {
                Ok(Ok(())) if !last => {}
                Ok(_) => return, // sent the error, or the client is gone
                Err(_) => {
                    let _ = cut_tx.send(Cut::Idle);
                    return;
                }
            }
        }
    });
    let shutdown = limits.shutdown.clone();
    Ok(async_stream::stream! {
        // Ends the producer when the client goes away.
        let _producer = AbortOnDrop(producer);
        let mut last = start;
        // Whether the cut-off signal was received (or can no longer come).
        let mut cut_seen = false;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    yield Err(ended(Code::Unavailable, last));
                    break;
                }
                signal = &mut cut, if !cut_seen => {
                    cut_seen = true;
                    if let Ok(Cut::Idle) = signal {
                        yield Err(ended(Code::ResourceExhausted, last));
                        break;
                    }
                }
                message = rx.recv() => match message {
                    Some(Ok(m)) => {
                        last = position(&m).or(last);
                        yield Ok(m);
                    }
                    Some(Err(s)) => {
                        yield Err(s);
                        break;
                    }
                    None => {
                        // The producer ended: normally, or cut for idling.
                        if !cut_seen && let Ok(Cut::Idle) = cut.try_recv() {
                            yield Err(ended(Code::ResourceExhausted, last));
                        }
                        break;
                    }
                },
            }
        }
    }
    .boxed())
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The rows of a Query.
pub(crate) fn query(
    rows: ReservationStream,
    limits: &StreamLimits,
) -> Result<BoxStream<'static, Result<pb::Reservation, Status>>, Status> {
    run(
        "query",
        rows,
        None,
        limits,
        pb::Reservation::from,
        |_| None,
        |code, _| {
            if code == Code::Unavailable {
                Status::unavailable(
                    "the server is shutting down; the results are incomplete, query again",
                )
            } else {
                exhausted(
                    "STREAM_IDLE",
                    "the client read nothing for too long; the results are incomplete, query again",
                )
            }
        },
    )
}

/// The changes of a Listen that started after `after` (if set).
pub(crate) fn listen(
    changes: ChangeStream,
    after: Option<i64>,
    limits: &StreamLimits,
) -> Result<BoxStream<'static, Result<pb::ReservationChange, Status>>, Status> {
    run(
        "listen",
        changes,
        after,
        limits,
        pb::ReservationChange::from,
        |c| Some(c.change_id),
        |code, last| {
            let resume = match last {
                Some(id) => format!("resume with after_change_id = {id}"),
                None => "listen again".to_string(),
            };
            if code == Code::Unavailable {
                Status::unavailable(format!("the server is shutting down; {resume}"))
            } else {
                exhausted(
                    "STREAM_IDLE",
                    &format!("the client read nothing for too long; {resume}"),
                )
            }
        },
    )
}
