//! Server streams: domain items become wire messages, errors become
//! statuses, and every open stream ends with UNAVAILABLE when the server
//! shuts down — a client never mistakes a cut-off stream for a complete one.

use abi::pb;
use futures::{StreamExt, stream::BoxStream};
use reservation::{ChangeStream, ReservationStream};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::errors::status;

/// The rows of a Query.
pub(crate) fn query(
    mut rows: ReservationStream,
    shutdown: CancellationToken,
) -> BoxStream<'static, Result<pb::Reservation, Status>> {
    async_stream::stream! {
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    yield Err(Status::unavailable(
                        "the server is shutting down; the results are incomplete, query again",
                    ));
                    break;
                }
                row = rows.next() => match row {
                    Some(Ok(r)) => yield Ok(r.into()),
                    Some(Err(e)) => {
                        yield Err(status(e));
                        break;
                    }
                    None => break,
                },
            }
        }
    }
    .boxed()
}

/// The changes of a Listen that started after `after` (if set).
pub(crate) fn listen(
    mut changes: ChangeStream,
    after: Option<i64>,
    shutdown: CancellationToken,
) -> BoxStream<'static, Result<pb::ReservationChange, Status>> {
    async_stream::stream! {
        let mut last = after;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    yield Err(Status::unavailable(match last {
                        Some(id) => format!(
                            "the server is shutting down; resume with after_change_id = {id}"
                        ),
                        None => "the server is shutting down; listen again".to_string(),
                    }));
                    break;
                }
                change = changes.next() => match change {
                    Some(Ok(c)) => {
                        last = Some(c.id);
                        yield Ok(c.into());
                    }
                    Some(Err(e)) => {
                        yield Err(status(e));
                        break;
                    }
                    None => break,
                },
            }
        }
    }
    .boxed()
}
