//! Listen over gRPC: events caused by other clients arrive in order
//! (sweeper expiries included), resuming loses nothing, a slow listener
//! cannot hold others back, and shutdown ends streams cleanly.

mod support;

use std::time::Duration;

use abi::pb::{self, ReservationStatus, ReservationUpdateType};
use futures::StreamExt;
use rsvp_server::server::ServerSettings;
use support::{TestApp, next, quiet};
use tonic::{Code, transport::Channel};
use tonic_types::StatusExt;

fn listen_all() -> pb::ListenRequest {
    pb::ListenRequest::default()
}

#[tokio::test]
async fn listener_receives_other_clients_changes_in_order_with_sweeper_expiries() {
    let settings = ServerSettings {
        sweep_interval: Duration::from_millis(50),
        ..Default::default()
    };
    let app = TestApp::spawn_with(|_| {}, settings).await;
    let mut listener = app.client().await;
    let mut feed = listener.listen(listen_all()).await.unwrap().into_inner();

    let mut other = app.client().await;
    let kept = app.reserve("alice", "room-1", 60, 120).await.unwrap();
    let lapsing = app.reserve("bob", "room-2", 60, 120).await.unwrap();
    other
        .confirm(pb::ConfirmRequest {
            id: kept.id.clone(),
        })
        .await
        .unwrap();
    app.advance(31); // bob's hold is overdue; the sweeper will notice

    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(next(&mut feed).await);
    }
    quiet(&mut feed).await;
    assert!(seen.windows(2).all(|w| w[0].change_id < w[1].change_id));
    let summary: Vec<_> = seen
        .iter()
        .map(|c| {
            let r = c.reservation.as_ref().unwrap();
            (c.op(), r.id.clone(), r.status())
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                ReservationUpdateType::Create,
                kept.id.clone(),
                ReservationStatus::Pending
            ),
            (
                ReservationUpdateType::Create,
                lapsing.id.clone(),
                ReservationStatus::Pending
            ),
            (
                ReservationUpdateType::Update,
                kept.id.clone(),
                ReservationStatus::Confirmed
            ),
            (
                ReservationUpdateType::Update,
                lapsing.id.clone(),
                ReservationStatus::Expired
            ),
        ]
    );
    assert!(seen.iter().all(|c| c.changed_at.is_some()));
}

#[tokio::test]
async fn a_listener_that_reconnects_with_after_change_id_misses_nothing() {
    let app = TestApp::spawn().await;
    let mut client = app.client().await;
    let mut feed = client.listen(listen_all()).await.unwrap().into_inner();
    let first = app.reserve("alice", "room-1", 0, 60).await.unwrap();
    let seen = next(&mut feed).await;
    drop(feed);
    drop(client); // the listener goes away...

    let second = app.reserve("bob", "room-1", 60, 120).await.unwrap(); // ...changes happen...
    app.client
        .clone()
        .cancel(pb::CancelRequest {
            id: first.id.clone(),
        })
        .await
        .unwrap();

    let mut client = app.client().await; // ...and it comes back
    let mut feed = client
        .listen(pb::ListenRequest {
            after_change_id: Some(seen.change_id),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let a = next(&mut feed).await;
    let b = next(&mut feed).await;
    assert_eq!(
        (a.change_id, a.reservation.unwrap().id),
        (seen.change_id + 1, second.id)
    );
    assert_eq!(b.change_id, seen.change_id + 2);
    assert_eq!(
        b.reservation.unwrap().status(),
        ReservationStatus::Cancelled
    );
    let third = app.reserve("carol", "room-2", 0, 60).await.unwrap();
    let c = next(&mut feed).await;
    assert_eq!(
        (c.change_id, c.reservation.unwrap().id),
        (seen.change_id + 3, third.id)
    );
}

/// A Listen names where its stream starts (`rsvp-after-change-id`): the
/// position asked for, or where "from now" began. A listener cut off
/// before its first change resumes from it and misses nothing.
#[tokio::test]
async fn a_listener_cut_off_before_its_first_change_resumes_from_where_it_started() {
    let app = TestApp::spawn().await;
    let before = app.reserve("alice", "room-1", 0, 60).await.unwrap();
    let started = |response: &tonic::Response<_>| -> i64 {
        response
            .metadata()
            .get("rsvp-after-change-id")
            .expect("the header")
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let mut client = app.client().await;
    let answer = client.listen(listen_all()).await.unwrap();
    let from = started(&answer);
    assert_eq!(from, 1, "after the one change made before");
    drop(answer);
    drop(client);

    let missed = app.reserve("bob", "room-2", 0, 60).await.unwrap();
    let mut client = app.client().await;
    let answer = client
        .listen(pb::ListenRequest {
            after_change_id: Some(from),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(started(&answer), from, "the position asked for, named");
    let mut feed = answer.into_inner();
    let change = next(&mut feed).await;
    assert_eq!(change.reservation.unwrap().id, missed.id);
    assert_ne!(missed.id, before.id);
}

#[tokio::test]
async fn listen_filters_by_user_and_resource() {
    let app = TestApp::spawn().await;
    let mut client = app.client().await;
    let mut alices = client
        .listen(pb::ListenRequest {
            user_id: "alice".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut room2 = client
        .listen(pb::ListenRequest {
            resource_id: "room-2".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    app.reserve("bob", "room-1", 0, 60).await.unwrap();
    let a = app.reserve("alice", "room-1", 60, 120).await.unwrap();
    let b = app.reserve("bob", "room-2", 0, 60).await.unwrap();
    assert_eq!(next(&mut alices).await.reservation.unwrap().id, a.id);
    assert_eq!(next(&mut room2).await.reservation.unwrap().id, b.id);
    quiet(&mut alices).await;
    quiet(&mut room2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_listener_is_cut_off_without_holding_back_the_others() {
    const CHANGES: i64 = 20_000;
    let app = TestApp::spawn_with(|o| o.listen_buffer = 1024, ServerSettings::default()).await;

    // A reader with tiny flow-control windows, which will not read for a while.
    let channel = Channel::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .initial_stream_window_size(Some(16 * 1024))
        .initial_connection_window_size(Some(16 * 1024))
        .connect()
        .await
        .unwrap();
    let mut slow_client = pb::reservation_service_client::ReservationServiceClient::new(channel);
    let mut slow = slow_client.listen(listen_all()).await.unwrap().into_inner();

    let mut fast_client = app.client().await;
    let mut fast = fast_client.listen(listen_all()).await.unwrap().into_inner();
    let reader = tokio::spawn(async move {
        let mut ids = Vec::new();
        while ids.len() < CHANGES as usize {
            ids.push(next(&mut fast).await.change_id);
        }
        ids
    });

    // Changes arrive steadily, 250 at a time.
    for _ in 0..CHANGES / 250 {
        support::seed(app.store.pool(), 250).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let fast_ids = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        fast_ids,
        (1..=CHANGES).collect::<Vec<_>>(),
        "the fast listener got everything, in order"
    );

    // The slow one gets what was in flight, then a clear status saying where to resume.
    let mut got = Vec::new();
    let status = loop {
        match tokio::time::timeout(Duration::from_secs(10), slow.next())
            .await
            .unwrap()
        {
            Some(Ok(c)) => got.push(c.change_id),
            Some(Err(status)) => break status,
            None => panic!(
                "the slow stream ended without a status after {} changes",
                got.len()
            ),
        }
    };
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let info = status.get_details_error_info().expect("an ErrorInfo");
    assert_eq!(info.reason, "LISTENER_LAGGED");
    assert!((got.len() as i64) < CHANGES, "it fell behind");
    assert_eq!(got, (1..=got.len() as i64).collect::<Vec<_>>());
    let resume_at: i64 = status
        .message()
        .rsplit("after_change_id = ")
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no resume point in {:?}", status.message()));
    assert_eq!(
        info.metadata.get("last_change_id"),
        Some(&resume_at.to_string())
    );
    assert!(resume_at >= *got.last().unwrap_or(&0));

    // Resuming from there yields the rest with no gap.
    let mut resumed = fast_client
        .listen(pb::ListenRequest {
            after_change_id: Some(resume_at),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut rest = Vec::new();
    while (rest.len() as i64) < CHANGES - resume_at {
        rest.push(next(&mut resumed).await.change_id);
    }
    assert_eq!(rest, (resume_at + 1..=CHANGES).collect::<Vec<_>>());
}

#[tokio::test]
async fn shutdown_ends_open_streams_with_unavailable() {
    let mut app = TestApp::spawn().await;
    for i in 0..3 {
        app.reserve("alice", "room-1", i * 10, i * 10 + 10)
            .await
            .unwrap();
    }
    let mut client = app.client().await;
    let mut feed = client
        .listen(pb::ListenRequest {
            after_change_id: Some(0),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    for _ in 0..3 {
        next(&mut feed).await;
    }
    app.stop().await.expect("a clean stop");
    let end = tokio::time::timeout(Duration::from_secs(5), feed.next())
        .await
        .unwrap();
    let status = match end {
        Some(Err(status)) => status,
        other => panic!("expected an UNAVAILABLE status, got {other:?}"),
    };
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("after_change_id = 3"),
        "{}",
        status.message()
    );
    let refused = client
        .get(pb::GetRequest {
            id: uuid::Uuid::now_v7().to_string(),
        })
        .await;
    assert!(refused.is_err(), "the server no longer answers");
}
