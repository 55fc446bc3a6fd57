//! Query streams: a selection read in keyset batches, each batch streamed
//! row by row as the database yields it. Memory stays flat however many
//! rows match, no transaction is held open between batches, and dropping
//! the stream stops the work within one batch.

use abi::{Cursor, Reservation, Result};
use futures::{StreamExt, stream::BoxStream};

use crate::rsvp::ReservationStream;

/// Rows per batch.
pub(crate) const QUERY_BATCH: i64 = 500;

/// Streams every row `fetch` yields, batch after batch, each batch starting
/// after the last row of the one before, until a batch comes up short.
pub(crate) fn keyset<F>(fetch: F) -> ReservationStream
where
    F: Fn(Option<Cursor>, i64) -> BoxStream<'static, Result<Reservation>> + Send + 'static,
{
    async_stream::try_stream! {
        let mut cursor = None;
        loop {
            let mut rows = fetch(cursor, QUERY_BATCH);
            let mut n = 0;
            while let Some(row) = rows.next().await {
                let row = row?;
                cursor = Some(Cursor::after(&row));
                n += 1;
                yield row;
            }
            if n < QUERY_BATCH {
                break;
            }
        }
    }
    .boxed()
}

/// A page from up to `page_size + 1` rows of a filter: the extra row only
/// tells that another page follows.
pub(crate) fn into_page(filter: &abi::ReservationFilter, mut rows: Vec<Reservation>) -> abi::Page {
    let more = rows.len() > filter.page_size as usize;
    rows.truncate(filter.page_size as usize);
    let next_page_token = match rows.last() {
        Some(last) if more => Some(filter.next_page_token(last)),
        _ => None,
    };
    abi::Page {
        reservations: rows,
        next_page_token,
    }
}
