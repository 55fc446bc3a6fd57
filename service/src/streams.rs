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
//! - A stream's credentials are checked again every second: when its token
//!   is revoked or expires it ends with `UNAUTHENTICATED`, saying how to
//!   resume (with credentials that hold).

use std::{sync::Arc, time::Duration};

use abi::pb;
use futures::{StreamExt, stream::BoxStream};
use reservation::{ChangeStream, ReservationStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::{auth::Credentials, errors::status, telemetry::Open};

/// Items buffered between a stream's producer and the wire.
const BUFFER: usize = 64;

/// How often an open stream's credentials are checked again.
const RECHECK: Duration = Duration::from_secs(1);

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

/// How a cut-off stream ended, for its last status.
enum Ending {
    /// The server is shutting down.
    Shutdown,
    /// The client read nothing for the idle time.
    Idle,
    /// Its credentials no longer hold (or cannot be checked): why.
    Lapsed(Status),
}

/// What kind of stream a server stream is: `name` (for metrics), `wire`
/// turns an item into its message, `position` names where a client would
/// resume after it, and `ended` words the end of a cut-off stream
/// (shutdown, idle, credentials that lapsed) from the last position
/// delivered.
struct Shape<T, W> {
    name: &'static str,
    wire: fn(T) -> W,
    position: fn(&W) -> Option<i64>,
    ended: fn(Ending, Option<i64>) -> Status,
}

/// Runs `items` in a task of its own, into a bounded buffer the returned
/// stream drains, as `shape` says; `start` is where a client would resume
/// before the first item.
fn run<T, W>(
    shape: Shape<T, W>,
    mut items: BoxStream<'static, abi::Result<T>>,
    start: Option<i64>,
    limits: &StreamLimits,
    credentials: Credentials,
) -> Result<BoxStream<'static, Result<W, Status>>, Status>
where
    T: Send + 'static,
    W: Send + 'static,
{
    let Shape {
        name,
        wire,
        position,
        ended,
    } = shape;
    let permit = limits.admit()?;
    let (tx, mut rx) = mpsc::channel::<Result<W, Status>>(BUFFER);
    let (cut_tx, mut cut) = oneshot::channel::<Cut>();
    let idle = limits.idle;
    let shutdown = limits.shutdown.clone();
    let producer = tokio::spawn(async move {
        let _permit = permit;
        let _open = Open::new(name);
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
        let mut recheck = tokio::time::interval_at(tokio::time::Instant::now() + RECHECK, RECHECK);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    yield Err(ended(Ending::Shutdown, last));
                    break;
                }
                signal = &mut cut, if !cut_seen => {
                    cut_seen = true;
                    if let Ok(Cut::Idle) = signal {
                        yield Err(ended(Ending::Idle, last));
                        break;
                    }
                }
                _ = recheck.tick() => {
                    if let Err(lapsed) = credentials.check() {
                        yield Err(ended(Ending::Lapsed(lapsed), last));
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
                            yield Err(ended(Ending::Idle, last));
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
    credentials: Credentials,
) -> Result<BoxStream<'static, Result<pb::Reservation, Status>>, Status> {
    let shape = Shape {
        name: "query",
        wire: pb::Reservation::from,
        position: |_| None,
        ended: |ending, _| match ending {
            Ending::Shutdown => Status::unavailable(
                "the server is shutting down; the results are incomplete, query again",
            ),
            Ending::Idle => exhausted(
                "STREAM_IDLE",
                "the client read nothing for too long; the results are incomplete, query again",
            ),
            Ending::Lapsed(why) => Status::new(
                why.code(),
                format!("{}; the results are incomplete", why.message()),
            ),
        },
    };
    run(shape, rows, None, limits, credentials)
}

/// The changes of a Listen that started after `after` (if set).
pub(crate) fn listen(
    changes: ChangeStream,
    after: Option<i64>,
    limits: &StreamLimits,
    credentials: Credentials,
) -> Result<BoxStream<'static, Result<pb::ReservationChange, Status>>, Status> {
    let shape = Shape {
        name: "listen",
        wire: pb::ReservationChange::from,
        position: |c| Some(c.change_id),
        ended: |ending, last| {
            let resume = match last {
                Some(id) => format!("resume with after_change_id = {id}"),
                None => "listen again".to_string(),
            };
            match ending {
                Ending::Shutdown => {
                    Status::unavailable(format!("the server is shutting down; {resume}"))
                }
                Ending::Idle => exhausted(
                    "STREAM_IDLE",
                    &format!("the client read nothing for too long; {resume}"),
                ),
                Ending::Lapsed(why) => Status::new(
                    why.code(),
                    format!("{}; {resume} with credentials that hold", why.message()),
                ),
            }
        },
    };
    run(shape, changes, after, limits, credentials)
}
