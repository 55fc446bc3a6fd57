//! Query and Filter: overlap windows, order, filters, keyset pages.

use std::collections::HashSet;

use abi::{
    Error, Reservation, ReservationFilter, ReservationId, ReservationQuery,
    ReservationQueryBuilder, ReservationStatus,
};

use crate::support::{Env, at};

conformance!(
    query_returns_reservations_overlapping_the_window_in_order,
    query_filters_by_user_resource_and_status,
    query_reads_overdue_holds_as_expired,
    query_desc_returns_newest_start_first,
    query_streams_more_than_one_batch,
    filter_pages_yield_every_row_exactly_once,
    filter_pages_survive_inserts_and_cancels_between_requests,
    filter_desc_pages_newest_first,
    filter_rejects_a_garbage_token,
);

fn ids(rs: &[Reservation]) -> Vec<ReservationId> {
    rs.iter().map(|r| r.id).collect()
}

/// The ids of `rs` in query order: by start, then id.
fn in_order(rs: &[&Reservation]) -> Vec<ReservationId> {
    let mut rs = rs.to_vec();
    rs.sort_by_key(|r| (r.timespan.start(), r.id));
    rs.iter().map(|r| r.id).collect()
}

async fn query_returns_reservations_overlapping_the_window_in_order(env: Env) {
    let before = env.reserve("u", "r", 0, 100).await.unwrap(); // starts before the window
    let inside = env.reserve("u", "r", 110, 120).await.unwrap();
    let after = env.reserve("u", "r", 190, 300).await.unwrap(); // ends after it
    let around = env.reserve("u", "r2", 0, 1000).await.unwrap(); // covers it
    env.reserve("u", "r", 300, 360).await.unwrap(); // starts after its end
    env.reserve("u", "r", -60, 0).await.unwrap(); // ends before its start
    env.reserve("u", "r3", 200, 260).await.unwrap(); // starts at its end
    env.reserve("u", "r3", 0, 50).await.unwrap(); // ends at its start
    let q = ReservationQuery::builder()
        .start(at(50))
        .end(at(200))
        .build()
        .unwrap();
    let got = env.query(q).await;
    assert_eq!(ids(&got), in_order(&[&before, &inside, &after, &around]));
}

async fn query_filters_by_user_resource_and_status(env: Env) {
    let a1 = env.reserve("alice", "room-1", 0, 60).await.unwrap();
    let a2 = env.confirmed("alice", "room-2", 0, 60).await;
    let b1 = env.reserve("bob", "room-1", 60, 120).await.unwrap();
    let b2 = env.reserve("bob", "room-2", 60, 120).await.unwrap();
    let b2 = env.store.cancel(b2.id).await.unwrap();

    let cases: Vec<(ReservationQueryBuilder, Vec<&Reservation>)> = vec![
        (ReservationQuery::builder(), vec![&a1, &a2, &b1, &b2]),
        (ReservationQuery::builder().user_id("alice"), vec![&a1, &a2]),
        (
            ReservationQuery::builder().resource_id("room-1"),
            vec![&a1, &b1],
        ),
        (
            ReservationQuery::builder().status(ReservationStatus::Confirmed),
            vec![&a2],
        ),
        (
            ReservationQuery::builder().status(ReservationStatus::Cancelled),
            vec![&b2],
        ),
        (
            ReservationQuery::builder().status(ReservationStatus::Pending),
            vec![&a1, &b1],
        ),
        (
            ReservationQuery::builder().status(ReservationStatus::Blocked),
            vec![],
        ),
        (
            ReservationQuery::builder()
                .user_id("bob")
                .resource_id("room-2"),
            vec![&b2],
        ),
        (
            ReservationQuery::builder()
                .user_id("bob")
                .status(ReservationStatus::Pending),
            vec![&b1],
        ),
        (
            ReservationQuery::builder()
                .resource_id("room-1")
                .start(at(60))
                .end(at(61)),
            vec![&b1],
        ),
        (ReservationQuery::builder().user_id("nobody"), vec![]),
    ];
    for (i, (query, want)) in cases.into_iter().enumerate() {
        let got = env.query(query.build().unwrap()).await;
        assert_eq!(ids(&got), in_order(&want), "case {i}");
    }
}

async fn query_reads_overdue_holds_as_expired(env: Env) {
    let stale = env.reserve("alice", "room-1", 0, 60).await.unwrap();
    env.advance(20);
    let fresh = env.reserve("alice", "room-2", 0, 60).await.unwrap();
    env.advance(15); // `stale` is overdue, `fresh` is not
    let status = |s| ReservationQuery::builder().status(s).build().unwrap();
    let pending = env.query(status(ReservationStatus::Pending)).await;
    assert_eq!(ids(&pending), vec![fresh.id]);
    let expired = env.query(status(ReservationStatus::Expired)).await;
    assert_eq!(ids(&expired), vec![stale.id]);
    assert_eq!(expired[0].status, ReservationStatus::Expired);
    // The same once the sweeper has rewritten it.
    env.store.sweep().await.unwrap();
    let expired = env.query(status(ReservationStatus::Expired)).await;
    assert_eq!(ids(&expired), vec![stale.id]);
}

async fn query_desc_returns_newest_start_first(env: Env) {
    for i in 0..5 {
        env.reserve("u", &format!("r{}", i % 2), i * 60, i * 60 + 30)
            .await
            .unwrap();
        env.reserve("u", "r9", i * 60, i * 60 + 30).await.unwrap();
    }
    let asc = env.query(ReservationQuery::default()).await;
    let mut desc = env
        .query(ReservationQuery::builder().desc(true).build().unwrap())
        .await;
    desc.reverse();
    assert_eq!(asc.len(), 10);
    assert_eq!(asc, desc);
}

async fn query_streams_more_than_one_batch(env: Env) {
    // More rows than a keyset batch holds, with ties on start.
    for i in 0..1203 {
        env.reserve("u", &format!("r{}", i % 7), i / 7, i / 7 + 1)
            .await
            .unwrap();
    }
    let all = env.all().await;
    assert_eq!(all.len(), 1203);
    assert_eq!(all.iter().map(|r| r.id).collect::<HashSet<_>>().len(), 1203);
    assert!(
        all.windows(2)
            .all(|w| { (w[0].timespan.start(), w[0].id) < (w[1].timespan.start(), w[1].id) })
    );
}

/// Follows every page of `query`, `size` at a time, awaiting `between(n)`
/// after page `n`.
async fn pages<F, Fut>(
    env: &Env,
    query: ReservationQuery,
    size: u32,
    mut between: F,
) -> Vec<Reservation>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut seen = Vec::new();
    let mut token = String::new();
    for n in 0.. {
        let filter = ReservationFilter::first_page(query.clone(), size)
            .unwrap()
            .with_page_token(&token)
            .unwrap();
        let page = env.store.filter(filter).await.unwrap();
        assert!(page.reservations.len() <= size as usize);
        seen.extend(page.reservations);
        match page.next_page_token {
            Some(next) => token = next,
            None => break,
        }
        between(n).await;
    }
    seen
}

async fn filter_pages_yield_every_row_exactly_once(env: Env) {
    let mut made = HashSet::new();
    for i in 0..250 {
        // Three reservations share each start: ties are broken by id.
        let r = env
            .reserve("u", &format!("r{}", i % 3), i / 3 * 10, i / 3 * 10 + 10)
            .await
            .unwrap();
        made.insert(r.id);
    }
    let all = env.all().await;
    for size in [1, 7, 100] {
        let seen = pages(&env, ReservationQuery::default(), size, |_| async {}).await;
        assert_eq!(seen.len(), 250, "page size {size}");
        assert_eq!(
            seen.iter().map(|r| r.id).collect::<HashSet<_>>(),
            made,
            "page size {size}"
        );
        assert_eq!(seen, all, "page size {size}: pages follow query order");
    }
}

async fn filter_pages_survive_inserts_and_cancels_between_requests(env: Env) {
    for size in [1u32, 7, 100] {
        let resource = format!("r-{size}");
        let mut originals = Vec::new();
        for i in 0..250 {
            originals.push(
                env.reserve("u", &resource, i * 10, i * 10 + 5)
                    .await
                    .unwrap()
                    .id,
            );
        }
        let query = ReservationQuery::builder()
            .resource_id(resource.clone())
            .build()
            .unwrap();
        let (env_ref, resource_ref, originals_ref) = (&env, &resource, &originals);
        let seen = pages(&env, query, size, |n| async move {
            let n = n as i64;
            // Cancel rows behind and ahead of the cursor...
            let victim = originals_ref[(n as usize * 37) % originals_ref.len()];
            let _ = env_ref.store.cancel(victim).await;
            // ...and insert rows before every cursor and, for a while, after
            // the last one.
            env_ref
                .reserve("u", resource_ref, -100_000 + n * 10, -100_000 + n * 10 + 5)
                .await
                .unwrap();
            if n < 20 {
                env_ref
                    .reserve("u", resource_ref, 10_000 + n * 10, 10_000 + n * 10 + 5)
                    .await
                    .unwrap();
            }
        })
        .await;
        let seen_ids: Vec<_> = seen.iter().map(|r| r.id).collect();
        let unique: HashSet<_> = seen_ids.iter().copied().collect();
        assert_eq!(
            seen_ids.len(),
            unique.len(),
            "page size {size}: a row repeated"
        );
        for id in &originals {
            assert!(unique.contains(id), "page size {size}: row {id} skipped");
        }
        assert!(
            seen.windows(2)
                .all(|w| w[0].timespan.start() < w[1].timespan.start()),
            "page size {size}: out of order"
        );
        assert!(
            seen.iter().all(|r| r.timespan.start() >= at(0)),
            "rows inserted behind the cursor never show"
        );
    }
}

async fn filter_desc_pages_newest_first(env: Env) {
    for i in 0..20 {
        env.reserve("u", "r", i * 10, i * 10 + 10).await.unwrap();
    }
    let q = ReservationQuery::builder().desc(true).build().unwrap();
    let seen = pages(&env, q.clone(), 3, |_| async {}).await;
    assert_eq!(seen.len(), 20);
    assert_eq!(seen, env.query(q).await);
    assert!(
        seen.windows(2)
            .all(|w| w[0].timespan.start() > w[1].timespan.start())
    );
}

async fn filter_rejects_a_garbage_token(env: Env) {
    env.reserve("u", "r", 0, 10).await.unwrap();
    let wire = abi::pb::FilterRequest {
        page_token: "garbage".into(),
        ..Default::default()
    };
    let err = ReservationFilter::try_from(wire).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidArgument {
                field: "page_token",
                ..
            }
        ),
        "{err:?}"
    );
    // A token from another selection is refused as well.
    let page = env
        .store
        .filter(ReservationFilter::first_page(ReservationQuery::default(), 1).unwrap())
        .await
        .unwrap();
    assert!(page.next_page_token.is_none(), "one row, one page");
    env.reserve("u", "r", 10, 20).await.unwrap();
    let page = env
        .store
        .filter(ReservationFilter::first_page(ReservationQuery::default(), 1).unwrap())
        .await
        .unwrap();
    let token = page.next_page_token.expect("a second page");
    let other = ReservationQuery::builder().user_id("u").build().unwrap();
    let err = ReservationFilter::first_page(other, 1)
        .unwrap()
        .with_page_token(&token)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidArgument {
                field: "page_token",
                ..
            }
        ),
        "{err:?}"
    );
}
