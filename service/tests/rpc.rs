//! Every RPC through a real client over TCP: the happy path and each status
//! code it can return.

mod support;

use abi::{
    conflict_from_status,
    pb::{self, ReservationStatus},
};
use futures::TryStreamExt;
use rsvp_server::server::ServerSettings;
use support::{TestApp, expect_code, reserve_request, ts};
use tonic::Code;

#[tokio::test]
async fn reserve_makes_a_pending_hold() {
    let app = TestApp::spawn().await;
    let r = app.reserve("alice", "room-1", 60, 120).await.unwrap();
    assert_eq!(r.status(), ReservationStatus::Pending);
    assert_eq!(r.user_id, "alice");
    assert_eq!(r.start, Some(ts(60)));
    assert_eq!(r.end, Some(ts(120)));
    assert_eq!(r.expires_at, Some(ts(30)));
    assert_eq!(r.created_at, Some(ts(0)));
    assert!(uuid::Uuid::parse_str(&r.id).is_ok());
}

#[tokio::test]
async fn reserve_confirmed_with_its_own_hold_and_request_id() {
    let app = TestApp::spawn().await;
    let mut client = app.client.clone();
    let mut request = reserve_request("alice", "room-1", 0, 60);
    request.request_id = "k-1".into();
    request.hold = Some(prost_types::Duration {
        seconds: 300,
        nanos: 0,
    });
    let first = client.reserve(request.clone()).await.unwrap().into_inner();
    let again = client.reserve(request).await.unwrap().into_inner();
    assert_eq!(first, again, "a retry returns the first result");
    let r = first.reservation.unwrap();
    assert_eq!(r.expires_at, Some(ts(5)));

    let mut booked = reserve_request("bob", "room-2", 0, 60);
    booked.reservation.as_mut().unwrap().status = ReservationStatus::Confirmed.into();
    let b = client
        .reserve(booked)
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(b.status(), ReservationStatus::Confirmed);
    assert_eq!(b.expires_at, None);
}

#[tokio::test]
async fn reserve_conflict_details_name_the_blocking_reservation() {
    let app = TestApp::spawn().await;
    let first = app.reserve("alice", "room-1", 60, 120).await.unwrap();
    let status = expect_code(
        app.reserve("bob", "room-1", 90, 150).await,
        Code::FailedPrecondition,
    );
    assert!(
        status.message().contains("conflict"),
        "{}",
        status.message()
    );
    let conflict = conflict_from_status(&status).expect("ReservationConflict in the details");
    assert_eq!(conflict.existing.len(), 1);
    assert_eq!(conflict.existing[0].id, first.id);
    assert_eq!(conflict.existing[0].user_id, "alice");
    let requested = conflict.requested.unwrap();
    assert_eq!(requested.user_id, "bob");
    assert_eq!(requested.start, Some(ts(90)));
    assert_eq!(requested.id, "");
}

#[tokio::test]
async fn confirm_get_cancel_round_trip() {
    let app = TestApp::spawn().await;
    let mut client = app.client.clone();
    let r = app.reserve("alice", "room-1", 60, 120).await.unwrap();
    let id = r.id.clone();

    let confirmed = client
        .confirm(pb::ConfirmRequest { id: id.clone() })
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(confirmed.status(), ReservationStatus::Confirmed);
    assert_eq!(confirmed.expires_at, None);
    let again = client
        .confirm(pb::ConfirmRequest { id: id.clone() })
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(again, confirmed, "confirm is idempotent");

    let got = client
        .get(pb::GetRequest { id: id.clone() })
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(got, confirmed);

    let cancelled = client
        .cancel(pb::CancelRequest { id: id.clone() })
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(cancelled.status(), ReservationStatus::Cancelled);
    let again = client
        .cancel(pb::CancelRequest { id: id.clone() })
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(again, cancelled, "cancel is idempotent");
    let got = client
        .get(pb::GetRequest { id })
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(
        got.status(),
        ReservationStatus::Cancelled,
        "the row is kept"
    );
}

#[tokio::test]
async fn unknown_ids_are_not_found() {
    let app = TestApp::spawn().await;
    let mut client = app.client.clone();
    let id = uuid::Uuid::now_v7().to_string();
    let status = expect_code(
        client.get(pb::GetRequest { id: id.clone() }).await,
        Code::NotFound,
    );
    assert!(status.message().contains(&id));
    expect_code(
        client.confirm(pb::ConfirmRequest { id: id.clone() }).await,
        Code::NotFound,
    );
    expect_code(
        client.cancel(pb::CancelRequest { id: id.clone() }).await,
        Code::NotFound,
    );
    let update = pb::UpdateRequest {
        id,
        note: Some("x".into()),
        ..Default::default()
    };
    expect_code(client.update(update).await, Code::NotFound);
}

#[tokio::test]
async fn impossible_transitions_fail_their_precondition() {
    let app = TestApp::spawn().await;
    let mut client = app.client.clone();
    let r = app.reserve("alice", "room-1", 60, 120).await.unwrap();
    app.advance(31);
    let status = expect_code(
        client
            .confirm(pb::ConfirmRequest { id: r.id.clone() })
            .await,
        Code::FailedPrecondition,
    );
    assert!(status.message().contains("expired"), "{}", status.message());
    assert!(conflict_from_status(&status).is_none());
    expect_code(
        client.cancel(pb::CancelRequest { id: r.id.clone() }).await,
        Code::FailedPrecondition,
    );
    let moved = pb::UpdateRequest {
        id: r.id,
        start: Some(ts(0)),
        end: Some(ts(10)),
        ..Default::default()
    };
    expect_code(client.update(moved).await, Code::FailedPrecondition);
}

#[tokio::test]
async fn update_changes_note_status_and_interval() {
    let app = TestApp::spawn().await;
    let mut client = app.client.clone();
    let r = app.reserve("alice", "room-1", 60, 120).await.unwrap();
    let other = app.reserve("bob", "room-1", 120, 180).await.unwrap();

    let noted = client
        .update(pb::UpdateRequest {
            id: r.id.clone(),
            note: Some("projector".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(noted.note, "projector");
    assert_eq!(noted.status(), ReservationStatus::Pending);

    let confirmed = client
        .update(pb::UpdateRequest {
            id: r.id.clone(),
            status: ReservationStatus::Confirmed.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(confirmed.status(), ReservationStatus::Confirmed);
    assert_eq!(confirmed.note, "projector");

    let moved = client
        .update(pb::UpdateRequest {
            id: r.id.clone(),
            start: Some(ts(0)),
            end: Some(ts(60)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!((moved.start, moved.end), (Some(ts(0)), Some(ts(60))));

    let clash = pb::UpdateRequest {
        id: r.id.clone(),
        start: Some(ts(100)),
        end: Some(ts(130)),
        ..Default::default()
    };
    let status = expect_code(client.update(clash).await, Code::FailedPrecondition);
    let conflict = conflict_from_status(&status).expect("conflict details");
    assert_eq!(conflict.requested.unwrap().id, r.id);
    assert_eq!(conflict.existing[0].id, other.id);
}

#[tokio::test]
async fn query_streams_overlapping_reservations_in_order() {
    let app = TestApp::spawn().await;
    let mut client = app.client.clone();
    let a = app.reserve("alice", "room-1", 0, 100).await.unwrap();
    let b = app.reserve("bob", "room-1", 110, 120).await.unwrap();
    let c = app.reserve("carol", "room-1", 190, 300).await.unwrap();
    app.reserve("dave", "room-1", 300, 360).await.unwrap();
    app.reserve("erin", "room-2", 100, 200).await.unwrap();
    let request = pb::QueryRequest {
        resource_id: "room-1".into(),
        start: Some(ts(50)),
        end: Some(ts(200)),
        ..Default::default()
    };
    let rows: Vec<pb::Reservation> = client
        .query(request.clone())
        .await
        .unwrap()
        .into_inner()
        .try_collect()
        .await
        .unwrap();
    let ids: Vec<_> = rows.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, [a.id.as_str(), b.id.as_str(), c.id.as_str()]);

    let desc = pb::QueryRequest {
        desc: true,
        ..request
    };
    let rows: Vec<pb::Reservation> = client
        .query(desc)
        .await
        .unwrap()
        .into_inner()
        .try_collect()
        .await
        .unwrap();
    let ids: Vec<_> = rows.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, [c.id.as_str(), b.id.as_str(), a.id.as_str()]);

    let by_status = pb::QueryRequest {
        status: ReservationStatus::Cancelled.into(),
        ..Default::default()
    };
    let rows: Vec<pb::Reservation> = client
        .query(by_status)
        .await
        .unwrap()
        .into_inner()
        .try_collect()
        .await
        .unwrap();
    assert!(rows.is_empty());
}

#[tokio::test]
async fn filter_pages_through_every_row_once() {
    let app = TestApp::spawn().await;
    let mut client = app.client.clone();
    let mut made = Vec::new();
    for i in 0..25 {
        made.push(
            app.reserve("alice", "room-1", i * 10, i * 10 + 10)
                .await
                .unwrap()
                .id,
        );
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .filter(pb::FilterRequest {
                user_id: "alice".into(),
                page_size: 7,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.reservations.len() <= 7);
        seen.extend(page.reservations.into_iter().map(|r| r.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, made);
    let default_size = client
        .filter(pb::FilterRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(default_size.reservations.len(), 25);
    assert!(default_size.next_page_token.is_empty());
}

#[tokio::test]
async fn internal_errors_reach_clients_without_internals() {
    let db = rsvp_testing::TestDb::empty().await;
    let store = reservation::PgStore::connect(
        db.url(),
        reservation::StoreOptions {
            migrate: false,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(rsvp_server::server::run(
        listener,
        std::sync::Arc::new(store),
        ServerSettings::default(),
        std::future::pending(),
    ));
    let mut client = support::connect(addr).await;
    let status = expect_code(
        client.reserve(reserve_request("a", "r", 0, 1)).await,
        Code::Internal,
    );
    assert_eq!(status.message(), "internal error");
    server.abort();
}

#[tokio::test]
async fn health_is_serving_and_reflection_lists_the_services() {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };

    let app = TestApp::spawn().await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel.clone());
    for service in ["", "reservation.ReservationService"] {
        let mut status = ServingStatus::Unknown;
        for _ in 0..50 {
            status = health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .map(|r| r.into_inner().status())
                .unwrap_or(ServingStatus::Unknown);
            if status == ServingStatus::Serving {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(status, ServingStatus::Serving, "service {service:?}");
    }

    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer: {response:?}");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"reservation.ReservationService".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_string()),
        "{names:?}"
    );
}

/// Reservations of users with the longest ids in the way, on a resource
/// with the longest id: the refusal lists fewer than 20 so that it stays
/// under 8 KiB, and counts the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_with_long_ids_in_the_way_stays_small() {
    let app = TestApp::spawn().await;
    let mut client = app.client().await;
    // 64 characters of 4 bytes each.
    let long = |c: char| c.to_string().repeat(64);
    let resource = long('\u{1D11E}');
    for i in 0..25 {
        let user = format!(
            "{}{}",
            long('\u{1F600}').chars().skip(2).collect::<String>(),
            i + 10
        );
        client
            .reserve(reserve_request(&user, &resource, i * 60, i * 60 + 30))
            .await
            .unwrap();
    }
    let status = client
        .reserve(reserve_request("bob", &resource, 0, 25 * 60))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    let conflict = abi::conflict_from_status(&status).expect("conflict details");
    assert!(
        (1..20).contains(&conflict.existing.len()),
        "{} listed",
        conflict.existing.len()
    );
    assert_eq!(conflict.existing.len() as u32 + conflict.omitted, 25);
    // As the trailers carry it: the message percent-encoded, the details
    // in base64.
    let size = abi::wire_len(&status);
    assert!(
        size <= abi::MAX_STATUS_WIRE_BYTES,
        "the status takes {size} bytes"
    );
}

/// Hundreds of reservations with long notes in the way: the refusal lists
/// 20 without notes, counts the rest, and stays far below the header sizes
/// that clients accept (gRPC's C-core clients refuse 16 KiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_with_hundreds_in_the_way_stays_small() {
    let app = TestApp::spawn().await;
    let mut client = app.client().await;
    for hour in 0..300 {
        let mut request = reserve_request("alice", "busy-room", hour * 60, hour * 60 + 30);
        if let Some(r) = request.reservation.as_mut() {
            r.note = "n".repeat(4000);
        }
        client.reserve(request).await.unwrap();
    }
    let mut request = reserve_request("bob", "busy-room", 0, 300 * 60);
    if let Some(r) = request.reservation.as_mut() {
        r.note = "m".repeat(4000);
    }
    let status = client.reserve(request).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    let conflict = abi::conflict_from_status(&status).expect("conflict details");
    assert_eq!(conflict.existing.len(), 20);
    assert_eq!(conflict.omitted, 280);
    assert!(conflict.existing.iter().all(|r| r.note.is_empty()));
    assert!(conflict.requested.unwrap().note.is_empty());
    // As the trailers carry it: the message percent-encoded, the details
    // in base64.
    let size = abi::wire_len(&status);
    assert!(
        size <= abi::MAX_STATUS_WIRE_BYTES,
        "the status takes {size} bytes"
    );
}
