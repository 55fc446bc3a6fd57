//! Selections of reservations, for every store: a query streamed in keyset
//! batches, and one page of a filter.
//!
//! Each batch is read in full before any of it is handed on, so no
//! database connection is held while a slow reader takes its time; no
//! transaction spans batches; memory stays flat however many rows match;
//! and dropping the stream stops the work within one batch.

use abi::{Cursor, MAX_PAGE_BYTES, Page, ReservationFilter, ReservationQuery, Result};
use futures::StreamExt;

use super::Engine;
use crate::{dialect::Dialect, rsvp::ReservationStream, statement::Statement};

/// Rows per batch of a streamed query.
pub(crate) const QUERY_BATCH: i64 = 500;

/// Streams every reservation `query` selects, batch after batch, each
/// starting after the last row of the one before, until a batch comes up
/// short. Statuses read as at the time the query started.
pub(super) fn stream<D: Dialect>(engine: &Engine<D>, query: ReservationQuery) -> ReservationStream {
    let dialect = engine.dialect.clone();
    let now = engine.now();
    async_stream::try_stream! {
        let mut cursor: Option<Cursor> = None;
        loop {
            let statement =
                Statement::page(dialect.sql(), &query, cursor.as_ref(), QUERY_BATCH, now);
            let rows = dialect.select(statement).await?;
            let full = rows.len() as i64 == QUERY_BATCH;
            for row in rows {
                let r = row.into_reservation(now)?;
                cursor = Some(Cursor::after(&r));
                yield r;
            }
            if !full {
                break;
            }
        }
    }
    .boxed()
}

/// One page of a filter: up to `page_size + 1` rows are read; the extra row
/// only tells that another page follows. A page also ends before its rows
/// outgrow [`MAX_PAGE_BYTES`]; its token continues after its last row.
pub(super) async fn page<D: Dialect>(
    engine: &Engine<D>,
    filter: ReservationFilter,
) -> Result<Page> {
    let now = engine.now();
    let limit = i64::from(filter.page_size) + 1;
    let statement = Statement::page(
        engine.dialect.sql(),
        &filter.query,
        filter.cursor.as_ref(),
        limit,
        now,
    );
    let mut rows = engine
        .dialect
        .select(statement)
        .await?
        .into_iter()
        .map(|r| r.into_reservation(now))
        .collect::<Result<Vec<_>>>()?;
    // A page ends at its size, or earlier at MAX_PAGE_BYTES (never empty).
    let mut bytes = 0;
    let fits = rows
        .iter()
        .take(filter.page_size as usize)
        .take_while(|r| {
            bytes += r.wire_size_bound();
            bytes <= MAX_PAGE_BYTES
        })
        .count()
        .max(1);
    let more = rows.len() > fits;
    rows.truncate(fits);
    let next_page_token = match rows.last() {
        Some(last) if more => Some(filter.next_page_token(last)),
        _ => None,
    };
    Ok(Page {
        reservations: rows,
        next_page_token,
    })
}
