//! Every answer is bounded: a conflict lists at most 20 reservations,
//! without notes, and counts the rest; a page ends before it outgrows what
//! clients accept in one message.

use abi::{Error, NewReservation, ReservationFilter, ReservationQuery};

use crate::support::{Env, at};

conformance!(
    a_conflict_lists_twenty_without_notes_and_counts_the_rest,
    pages_end_before_they_outgrow_a_message,
);

fn noted(user: &str, from: i64, to: i64, note: &str) -> NewReservation {
    NewReservation::builder()
        .user_id(user)
        .resource_id("room-1")
        .start(at(from))
        .end(at(to))
        .note(note)
        .build()
        .unwrap()
}

async fn a_conflict_lists_twenty_without_notes_and_counts_the_rest(env: Env) {
    let long = "n".repeat(4000);
    for hour in 0..30 {
        env.store
            .reserve(noted("alice", hour * 60, hour * 60 + 30, &long))
            .await
            .unwrap();
    }
    // Thirty hours over thirty bookings with 4,000-byte notes.
    let err = env
        .store
        .reserve(noted("bob", 0, 30 * 60, &long))
        .await
        .unwrap_err();
    let Error::Conflict(c) = err else {
        panic!("expected a conflict, got {err:?}");
    };
    assert_eq!(c.existing.len(), 20);
    assert_eq!(c.omitted, 10);
    assert!(
        c.existing
            .windows(2)
            .all(|w| w[0].timespan.start() < w[1].timespan.start())
    );
    assert_eq!(
        c.existing[0].timespan.start(),
        at(0),
        "the first ones by start"
    );
    assert!(c.existing.iter().all(|r| r.note.as_str().is_empty()));
    assert!(c.requested.note.as_str().is_empty());
    // Where it is full: every booked half hour, the first twenty, even
    // past the ones listed.
    assert_eq!(c.full.len(), 20);
    assert_eq!((c.full[0].start(), c.full[0].end()), (at(0), at(30)));
    assert_eq!(
        (c.full[19].start(), c.full[19].end()),
        (at(19 * 60), at(19 * 60 + 30))
    );
    // The reservations themselves keep their notes.
    assert_eq!(env.get(c.existing[0].id).await.note.as_str(), long);
}

async fn pages_end_before_they_outgrow_a_message(env: Env) {
    let long = "n".repeat(4000);
    for i in 0..600 {
        env.store
            .reserve(noted(&format!("u{i}"), i * 10, i * 10 + 5, &long))
            .await
            .unwrap();
    }
    let query = ReservationQuery::builder()
        .resource_id("room-1")
        .build()
        .unwrap();
    let mut filter = ReservationFilter::first_page(query.clone(), 1000).unwrap();
    let (mut seen, mut pages) = (Vec::new(), 0);
    loop {
        let page = env.store.filter(filter.clone()).await.unwrap();
        let bytes: usize = page.reservations.iter().map(|r| r.wire_size_bound()).sum();
        assert!(bytes <= abi::MAX_PAGE_BYTES, "page of {bytes} bytes");
        assert!(!page.reservations.is_empty());
        pages += 1;
        seen.extend(page.reservations.iter().map(|r| r.id));
        match page.next_page_token {
            Some(token) => {
                filter = ReservationFilter::first_page(query.clone(), 1000)
                    .unwrap()
                    .with_page_token(&token)
                    .unwrap()
            }
            None => break,
        }
    }
    assert!(pages >= 3, "cut by size: {pages} pages");
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        (seen.len(), unique.len()),
        (600, 600),
        "no row skipped or repeated"
    );
}
