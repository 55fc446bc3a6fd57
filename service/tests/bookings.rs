//! Book, GetBooking, ConfirmBooking, CancelBooking, CheckIn and CheckOut
//! through a real client over TCP: answers, status codes and the details a
//! client reads.

mod support;

use abi::{
    booking_rejection_from_status,
    pb::{self, ReservationStatus, resource_service_client::ResourceServiceClient},
};
use support::{TestApp, expect_code, reserve_request, ts};
use tonic::Code;
use tonic_types::StatusExt;

fn part(resource: &str, from: i64, to: i64) -> pb::Reservation {
    reserve_request("", resource, from, to).reservation.unwrap()
}

fn book(parts: Vec<pb::Reservation>) -> pb::BookRequest {
    pb::BookRequest {
        user_id: "ann".into(),
        reservations: parts,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_booking_is_made_read_confirmed_and_cancelled() {
    let app = TestApp::spawn().await;
    let mut client = app.client.clone();
    let made = client
        .book(book(vec![part("flight", 0, 60), part("hotel", 60, 600)]))
        .await
        .unwrap()
        .into_inner()
        .booking
        .unwrap();
    assert_eq!(made.user_id, "ann");
    assert_eq!(made.created_at, Some(ts(0)));
    assert_eq!(made.reservations.len(), 2);
    for (p, resource) in made.reservations.iter().zip(["flight", "hotel"]) {
        assert_eq!(p.resource_id, resource);
        assert_eq!(p.booking_id, made.id);
        assert_eq!(p.user_id, "ann");
        assert_eq!(p.status(), ReservationStatus::Pending);
        assert_eq!(p.expires_at, Some(ts(30)));
    }
    let read = client
        .get_booking(pb::GetBookingRequest {
            id: made.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .booking
        .unwrap();
    assert_eq!(read, made);
    let confirmed = client
        .confirm_booking(pb::ConfirmBookingRequest {
            id: made.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .booking
        .unwrap();
    assert!(
        confirmed
            .reservations
            .iter()
            .all(|p| p.status() == ReservationStatus::Confirmed && p.expires_at.is_none())
    );
    let cancelled = client
        .cancel_booking(pb::CancelBookingRequest { id: made.id })
        .await
        .unwrap()
        .into_inner()
        .booking
        .unwrap();
    assert!(
        cancelled
            .reservations
            .iter()
            .all(|p| p.status() == ReservationStatus::Cancelled)
    );
}

#[tokio::test]
async fn a_refused_booking_names_each_failing_part() {
    let app = TestApp::spawn().await;
    let mut client = app.client.clone();
    let seat = app.reserve("bob", "flight", 0, 60).await.unwrap();
    let status = expect_code(
        client
            .book(book(vec![part("hotel", 0, 600), part("flight", 30, 90)]))
            .await,
        Code::FailedPrecondition,
    );
    assert_eq!(
        status.get_details_error_info().map(|i| i.reason),
        Some("BOOKING_REJECTED".to_string())
    );
    let rejection = booking_rejection_from_status(&status).expect("BookingRejection");
    assert_eq!(rejection.parts.len(), 1);
    let refused = &rejection.parts[0];
    assert_eq!((refused.index, refused.resource_id.as_str()), (1, "flight"));
    let conflict = refused.conflict.as_ref().unwrap();
    assert_eq!(conflict.existing[0].id, seat.id);
    assert!(refused.policy.is_none());
    // Nothing was made: the hotel is free.
    app.reserve("cy", "hotel", 0, 600).await.unwrap();
}

#[tokio::test]
async fn bad_bookings_name_the_field() {
    let app = TestApp::spawn().await;
    let mut client = app.client.clone();
    let field = |status: tonic::Status| {
        status
            .get_details_bad_request()
            .and_then(|b| b.field_violations.first().map(|v| v.field.clone()))
            .unwrap_or_default()
    };
    let mut backwards = book(vec![part("a", 0, 60), part("b", 60, 0)]);
    let status = expect_code(client.book(backwards.clone()).await, Code::InvalidArgument);
    assert_eq!(field(status), "reservations[1].start");
    backwards.reservations.clear();
    let status = expect_code(client.book(backwards).await, Code::InvalidArgument);
    assert_eq!(field(status), "reservations");
    let mut other = book(vec![part("a", 0, 60)]);
    other.reservations[0].user_id = "eve".into();
    let status = expect_code(client.book(other).await, Code::InvalidArgument);
    assert_eq!(field(status), "reservations[0].user_id");
    // The booking's hold is the booking's field, whichever part it is for.
    let mut negative = book(vec![part("a", 0, 60)]);
    negative.hold = Some(prost_types::Duration {
        seconds: -60,
        nanos: 0,
    });
    let status = expect_code(client.book(negative).await, Code::InvalidArgument);
    assert_eq!(field(status), "hold");
    let many = book((0..21).map(|i| part("a", i * 60, i * 60 + 60)).collect());
    expect_code(client.book(many).await, Code::InvalidArgument);
    let status = expect_code(
        client
            .get_booking(pb::GetBookingRequest { id: "x".into() })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(field(status), "id");
    expect_code(
        client
            .get_booking(pb::GetBookingRequest {
                id: uuid::Uuid::now_v7().to_string(),
            })
            .await,
        Code::NotFound,
    );
}

#[tokio::test]
async fn arrival_checks_in_and_out() {
    let app = TestApp::spawn().await;
    let mut client = app.client.clone();
    let mut resources = ResourceServiceClient::connect(format!("http://{}", app.addr))
        .await
        .unwrap();
    resources
        .create_resource(pb::CreateResourceRequest {
            resource: Some(pb::Resource {
                id: "suite".into(),
                capacity: 1,
                policy: Some(pb::BookingPolicy {
                    check_in_opens: Some(prost_types::Duration {
                        seconds: 3600,
                        nanos: 0,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let mut request = reserve_request("ann", "suite", 120, 240);
    request.reservation.as_mut().unwrap().status = ReservationStatus::Confirmed.into();
    let stay = client
        .reserve(request)
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    let check_in = || pb::CheckInRequest {
        id: stay.id.clone(),
    };
    let status = expect_code(
        client.clone().check_in(check_in()).await,
        Code::FailedPrecondition,
    );
    assert!(status.message().contains("check-in opens"), "{status:?}");
    let refused = abi::policy_from_status(&status).expect("a policy violation");
    assert_eq!(
        refused
            .violations
            .iter()
            .map(|v| v.rule)
            .collect::<Vec<_>>(),
        [pb::PolicyRule::CheckInWindow as i32]
    );
    app.advance(60);
    let arrived = client
        .check_in(check_in())
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(arrived.status(), ReservationStatus::CheckedIn);
    assert_eq!(arrived.checked_in_at, Some(ts(60)));
    app.advance(70);
    let left = client
        .check_out(pb::CheckOutRequest {
            id: stay.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(left.status(), ReservationStatus::Completed);
    assert_eq!(left.checked_out_at, Some(ts(130)));
    assert_eq!(left.end, Some(ts(130)));
    expect_code(
        client
            .check_out(pb::CheckOutRequest {
                id: uuid::Uuid::now_v7().to_string(),
            })
            .await,
        Code::NotFound,
    );
}

#[tokio::test]
async fn a_refusal_of_twenty_crowded_parts_stays_small() {
    let app = TestApp::spawn().await;
    let mut client = app.client.clone();
    // Twenty resources with long ids, each taken by six reservations of
    // users with long names.
    let resource = |i: usize| format!("{}{i:04}", "r".repeat(60));
    for i in 0..20 {
        for k in 0..6 {
            let user = format!("{}{k:04}", "u".repeat(60));
            app.reserve(&user, &resource(i), k * 10, k * 10 + 10)
                .await
                .unwrap();
        }
    }
    let parts = (0..20).map(|i| part(&resource(i), 0, 60)).collect();
    let status = expect_code(client.book(book(parts)).await, Code::FailedPrecondition);
    // As the trailers carry it: the message percent-encoded, the details
    // in base64.
    let size = abi::wire_len(&status);
    assert!(
        size <= abi::MAX_STATUS_WIRE_BYTES,
        "the status takes {size} bytes"
    );
    let rejection = booking_rejection_from_status(&status).unwrap();
    assert_eq!(rejection.parts.len(), 20, "every part is named");
    for (i, p) in rejection.parts.iter().enumerate() {
        assert_eq!(p.index as usize, i);
        let conflict = p.conflict.as_ref().unwrap();
        assert!(conflict.existing.len() <= 5);
        assert_eq!(
            conflict.existing.len() as u32 + conflict.omitted,
            6,
            "what is not listed is counted"
        );
    }
}

/// Twenty parts whose ids are as long as ids get (64 characters of 4
/// bytes): what each part asked for leaves out its ids, then the parts
/// theirs, until the refusal fits; every part keeps its index.
#[tokio::test]
async fn a_refusal_of_twenty_parts_with_the_longest_ids_stays_small() {
    let app = TestApp::spawn().await;
    let mut client = app.client.clone();
    let long = |c: char, i: usize| format!("{}{i:02}", c.to_string().repeat(62));
    let user = long('𝄞', 0);
    for i in 0..20 {
        app.reserve(&user, &long('𝕽', i), 0, 60).await.unwrap();
    }
    let parts = (0..20).map(|i| part(&long('𝕽', i), 0, 60)).collect();
    let request = pb::BookRequest {
        user_id: user,
        ..book(parts)
    };
    let status = expect_code(client.book(request).await, Code::FailedPrecondition);
    let size = abi::wire_len(&status);
    assert!(
        size <= abi::MAX_STATUS_WIRE_BYTES,
        "the status takes {size} bytes"
    );
    let rejection = booking_rejection_from_status(&status).unwrap();
    let indexes: Vec<u32> = rejection.parts.iter().map(|p| p.index).collect();
    assert_eq!(indexes, (0..20).collect::<Vec<u32>>());
    assert!(rejection.parts.iter().all(|p| p.conflict.is_some()));
}
