//! Malformed requests: each is refused with INVALID_ARGUMENT naming the
//! field at fault, nothing panics, and the server answers correctly after.

mod support;

use abi::pb::{self, ReservationStatus};
use futures::TryStreamExt;
use prost_types::{Duration, Timestamp};
use support::{RsvpClient, TestApp, expect_code, reserve_request, ts};
use tonic::{Code, Status};
use tonic_types::StatusExt;

enum Call {
    Reserve(Box<pb::ReserveRequest>),
    Confirm(&'static str),
    Cancel(&'static str),
    Get(&'static str),
    Update(pb::UpdateRequest),
    Query(pb::QueryRequest),
    Filter(pb::FilterRequest),
    Listen(pb::ListenRequest),
}

async fn send(client: &mut RsvpClient, call: Call) -> Result<(), Status> {
    match call {
        Call::Reserve(r) => client.reserve(*r).await.map(drop),
        Call::Confirm(id) => client
            .confirm(pb::ConfirmRequest { id: id.into() })
            .await
            .map(drop),
        Call::Cancel(id) => client
            .cancel(pb::CancelRequest { id: id.into() })
            .await
            .map(drop),
        Call::Get(id) => client.get(pb::GetRequest { id: id.into() }).await.map(drop),
        Call::Update(u) => client.update(u).await.map(drop),
        Call::Query(q) => client.query(q).await.map(drop),
        Call::Filter(f) => client.filter(f).await.map(drop),
        Call::Listen(l) => client.listen(l).await.map(drop),
    }
}

/// A valid reserve request changed by `f`.
fn reserve(f: impl FnOnce(&mut pb::ReserveRequest)) -> Call {
    let mut r = reserve_request("alice", "room-1", 60, 120);
    f(&mut r);
    Call::Reserve(Box::new(r))
}

fn res(r: &mut pb::ReserveRequest) -> &mut pb::Reservation {
    r.reservation.as_mut().unwrap()
}

const ID: &str = "0192b4c5-8a8e-7f3e-9d4a-1a2b3c4d5e6f";

fn update(f: impl FnOnce(&mut pb::UpdateRequest)) -> Call {
    let mut u = pb::UpdateRequest {
        id: ID.into(),
        ..Default::default()
    };
    f(&mut u);
    Call::Update(u)
}

fn stamp(seconds: i64, nanos: i32) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos })
}

fn cases() -> Vec<(&'static str, Call, &'static str)> {
    let long = "x".repeat(65);
    let long_wide = "é".repeat(65);
    vec![
        (
            "no reservation",
            Call::Reserve(Box::default()),
            "reservation",
        ),
        (
            "empty user id",
            reserve(|r| res(r).user_id.clear()),
            "reservation.user_id",
        ),
        (
            "65-character user id",
            reserve(|r| res(r).user_id = long.clone()),
            "reservation.user_id",
        ),
        (
            "bell in user id",
            reserve(|r| res(r).user_id = "a\u{7}b".into()),
            "reservation.user_id",
        ),
        (
            "empty resource id",
            reserve(|r| res(r).resource_id.clear()),
            "reservation.resource_id",
        ),
        (
            "65 wide characters in resource id",
            reserve(|r| res(r).resource_id = long_wide.clone()),
            "reservation.resource_id",
        ),
        (
            "newline in resource id",
            reserve(|r| res(r).resource_id = "room\n1".into()),
            "reservation.resource_id",
        ),
        (
            "NUL in resource id",
            reserve(|r| res(r).resource_id = "room\u{0}".into()),
            "reservation.resource_id",
        ),
        (
            "start after end",
            reserve(|r| res(r).start = Some(ts(200))),
            "reservation.start",
        ),
        (
            "start equals end",
            reserve(|r| res(r).start = Some(ts(120))),
            "reservation.start",
        ),
        (
            "missing start",
            reserve(|r| res(r).start = None),
            "reservation.start",
        ),
        (
            "missing end",
            reserve(|r| res(r).end = None),
            "reservation.end",
        ),
        (
            "negative nanos",
            reserve(|r| res(r).start = stamp(1_700_000_000, -1)),
            "reservation.start",
        ),
        (
            "nanos of a whole second",
            reserve(|r| res(r).start = stamp(1_700_000_000, 1_000_000_000)),
            "reservation.start",
        ),
        (
            "end after year 9999",
            reserve(|r| res(r).end = stamp(253_402_300_800, 0)),
            "reservation.end",
        ),
        (
            "start before year 1",
            reserve(|r| res(r).start = stamp(-62_135_596_801, 0)),
            "reservation.start",
        ),
        (
            "4097-byte note",
            reserve(|r| res(r).note = "n".repeat(4097)),
            "reservation.note",
        ),
        (
            "NUL in note",
            reserve(|r| res(r).note = "a\u{0}b".into()),
            "reservation.note",
        ),
        (
            "65-character request id",
            reserve(|r| r.request_id = long.clone()),
            "request_id",
        ),
        (
            "tab in request id",
            reserve(|r| r.request_id = "k\t1".into()),
            "request_id",
        ),
        (
            "reserve CANCELLED",
            reserve(|r| res(r).status = ReservationStatus::Cancelled.into()),
            "reservation.status",
        ),
        (
            "reserve EXPIRED",
            reserve(|r| res(r).status = ReservationStatus::Expired.into()),
            "reservation.status",
        ),
        (
            "status outside the enum",
            reserve(|r| res(r).status = 42),
            "reservation.status",
        ),
        (
            "negative hold",
            reserve(|r| {
                r.hold = Some(Duration {
                    seconds: -60,
                    nanos: 0,
                })
            }),
            "hold",
        ),
        (
            // Its expiry would pass what a timestamp holds.
            "a hold of 2,000 years",
            reserve(|r| {
                r.hold = Some(Duration {
                    seconds: 2_000 * 365 * 86_400,
                    nanos: 0,
                })
            }),
            "hold",
        ),
        (
            "hold nanos out of range",
            reserve(|r| {
                r.hold = Some(Duration {
                    seconds: 0,
                    nanos: 1_000_000_000,
                })
            }),
            "hold",
        ),
        (
            "client-chosen id",
            reserve(|r| res(r).id = ID.into()),
            "reservation.id",
        ),
        (
            "confirm a malformed uuid",
            Call::Confirm("not-a-uuid"),
            "id",
        ),
        ("confirm an empty id", Call::Confirm(""), "id"),
        (
            "get a truncated uuid",
            Call::Get("0192b4c5-8a8e-7f3e-9d4a"),
            "id",
        ),
        ("cancel a number", Call::Cancel("123"), "id"),
        (
            "update a malformed uuid",
            update(|u| u.id = "zz".into()),
            "id",
        ),
        (
            "reschedule with only start",
            update(|u| u.start = Some(ts(0))),
            "end",
        ),
        (
            "reschedule with only end",
            update(|u| u.end = Some(ts(0))),
            "start",
        ),
        (
            "reschedule start after end",
            update(|u| {
                u.start = Some(ts(10));
                u.end = Some(ts(5));
            }),
            "start",
        ),
        (
            "update to PENDING",
            update(|u| u.status = ReservationStatus::Pending.into()),
            "status",
        ),
        (
            "update to EXPIRED",
            update(|u| u.status = ReservationStatus::Expired.into()),
            "status",
        ),
        (
            "update to a status outside the enum",
            update(|u| u.status = 9),
            "status",
        ),
        (
            "update a 5000-byte note",
            update(|u| u.note = Some("n".repeat(5000))),
            "note",
        ),
        (
            "query a status outside the enum",
            Call::Query(pb::QueryRequest {
                status: 99,
                ..Default::default()
            }),
            "status",
        ),
        (
            "query an empty window",
            Call::Query(pb::QueryRequest {
                start: Some(ts(5)),
                end: Some(ts(5)),
                ..Default::default()
            }),
            "start",
        ),
        (
            "query a long user id",
            Call::Query(pb::QueryRequest {
                user_id: long.clone(),
                ..Default::default()
            }),
            "user_id",
        ),
        (
            "query bad nanos",
            Call::Query(pb::QueryRequest {
                end: stamp(0, -5),
                ..Default::default()
            }),
            "end",
        ),
        (
            "page size -1",
            Call::Filter(pb::FilterRequest {
                page_size: -1,
                ..Default::default()
            }),
            "page_size",
        ),
        (
            "page size 1001",
            Call::Filter(pb::FilterRequest {
                page_size: 1001,
                ..Default::default()
            }),
            "page_size",
        ),
        (
            "forged page token",
            Call::Filter(pb::FilterRequest {
                page_token: "AQAAAAAAAAAAAAAA".into(),
                ..Default::default()
            }),
            "page_token",
        ),
        (
            "page token that is not base64",
            Call::Filter(pb::FilterRequest {
                page_token: "%%%".into(),
                ..Default::default()
            }),
            "page_token",
        ),
        (
            "listen after a negative id",
            Call::Listen(pb::ListenRequest {
                after_change_id: Some(-1),
                ..Default::default()
            }),
            "after_change_id",
        ),
        (
            "listen to a resource with an escape",
            Call::Listen(pb::ListenRequest {
                resource_id: "r\u{1b}[0m".into(),
                ..Default::default()
            }),
            "resource_id",
        ),
    ]
}

#[tokio::test]
async fn malformed_requests_name_the_field_and_hurt_nothing() {
    let app = TestApp::spawn().await;
    let mut client = app.client.clone();
    let cases = cases();
    assert!(cases.len() >= 30);
    for (what, call, field) in cases {
        let status = match send(&mut client, call).await {
            Err(status) => status,
            Ok(()) => panic!("{what}: accepted"),
        };
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert!(
            status.message().starts_with(&format!("{field}: ")),
            "{what}: message {:?} should name {field}",
            status.message()
        );
        let bad = status
            .get_details_bad_request()
            .unwrap_or_else(|| panic!("{what}: no BadRequest details"));
        assert_eq!(bad.field_violations[0].field, field, "{what}");
    }

    // Nothing was stored, and the server still works.
    let rows: Vec<pb::Reservation> = client
        .query(pb::QueryRequest::default())
        .await
        .unwrap()
        .into_inner()
        .try_collect()
        .await
        .unwrap();
    assert!(rows.is_empty(), "{rows:?}");
    let r = app.reserve("alice", "room-1", 60, 120).await.unwrap();
    let got = client
        .get(pb::GetRequest { id: r.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.reservation.unwrap(), r);
}

#[tokio::test]
async fn a_page_token_only_fits_its_own_selection() {
    let app = TestApp::spawn().await;
    let mut client = app.client.clone();
    for i in 0..3 {
        app.reserve("alice", "room-1", i * 10, i * 10 + 10)
            .await
            .unwrap();
    }
    let first = client
        .filter(pb::FilterRequest {
            resource_id: "room-1".into(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!first.next_page_token.is_empty());
    let elsewhere = pb::FilterRequest {
        resource_id: "room-2".into(),
        page_size: 1,
        page_token: first.next_page_token,
        ..Default::default()
    };
    let status = expect_code(client.filter(elsewhere).await, Code::InvalidArgument);
    assert!(
        status.message().starts_with("page_token: "),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn confirming_an_expired_hold_fails_its_precondition() {
    let app = TestApp::spawn().await;
    let mut client = app.client.clone();
    let hold = app.reserve("alice", "room-1", 60, 120).await.unwrap();
    app.advance(30);
    let status = expect_code(
        client.confirm(pb::ConfirmRequest { id: hold.id }).await,
        Code::FailedPrecondition,
    );
    assert!(status.message().contains("expired"), "{}", status.message());
}
