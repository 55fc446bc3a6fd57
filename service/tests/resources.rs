//! ResourceService, and reserves on registered resources, through a real
//! client over TCP: each status code and the details a client reads.

mod support;

use abi::{
    conflict_from_status,
    pb::{self, resource_service_client::ResourceServiceClient},
    policy_from_status,
};
use support::{TestApp, expect_code, reserve_request, ts};
use tonic::{Code, transport::Channel};
use tonic_types::StatusExt;

async fn resources(app: &TestApp) -> ResourceServiceClient<Channel> {
    ResourceServiceClient::connect(format!("http://{}", app.addr))
        .await
        .unwrap()
}

fn minutes(m: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: m * 60,
        nanos: 0,
    })
}

fn clinic() -> pb::Resource {
    pb::Resource {
        id: "dr-lee".into(),
        display_name: "Dr. Lee".into(),
        capacity: 1,
        time_zone: "Europe/Paris".into(),
        opening_hours: vec![pb::OpeningHours {
            day: pb::DayOfWeek::Tuesday.into(),
            open_minute: 9 * 60,
            close_minute: 17 * 60,
        }],
        policy: Some(pb::BookingPolicy {
            min_notice: minutes(24 * 60),
            granularity: minutes(15),
            ..Default::default()
        }),
        labels: [("kind".to_string(), "doctor".to_string())].into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn resources_are_created_read_updated_listed_and_deleted() {
    let app = TestApp::spawn().await;
    let mut client = resources(&app).await;
    let made = client
        .create_resource(pb::CreateResourceRequest {
            resource: Some(clinic()),
        })
        .await
        .unwrap()
        .into_inner()
        .resource
        .unwrap();
    assert_eq!(made.display_name, "Dr. Lee");
    assert_eq!(made.created_at, Some(ts(0)));
    assert!(!made.etag.is_empty());

    let again = client
        .create_resource(pb::CreateResourceRequest {
            resource: Some(clinic()),
        })
        .await;
    expect_code(again, Code::AlreadyExists);
    let missing = client
        .get_resource(pb::GetResourceRequest {
            id: "nobody".into(),
        })
        .await;
    expect_code(missing, Code::NotFound);
    let bad = client
        .create_resource(pb::CreateResourceRequest {
            resource: Some(pb::Resource {
                id: "x".into(),
                time_zone: "Mars/Olympus".into(),
                ..Default::default()
            }),
        })
        .await;
    let status = expect_code(bad, Code::InvalidArgument);
    assert!(
        status.message().starts_with("resource.time_zone"),
        "{status:?}"
    );

    let updated = client
        .update_resource(pb::UpdateResourceRequest {
            resource: Some(pb::Resource {
                id: "dr-lee".into(),
                capacity: 2,
                etag: made.etag.clone(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["capacity".into()],
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .resource
        .unwrap();
    assert_eq!(updated.capacity, 2);
    assert_eq!(updated.display_name, "Dr. Lee");
    let stale = client
        .update_resource(pb::UpdateResourceRequest {
            resource: Some(pb::Resource {
                id: "dr-lee".into(),
                capacity: 3,
                etag: made.etag.clone(),
                ..Default::default()
            }),
            update_mask: None,
        })
        .await;
    let status = expect_code(stale, Code::Aborted);
    assert_eq!(
        status.get_details_error_info().map(|i| i.reason),
        Some("ETAG_MISMATCH".to_string())
    );

    let page = client
        .list_resources(pb::ListResourcesRequest {
            labels: [("kind".to_string(), "doctor".to_string())].into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.resources.len(), 1);
    assert!(page.next_page_token.is_empty());

    let gone = client
        .delete_resource(pb::DeleteResourceRequest {
            id: "dr-lee".into(),
            force: false,
        })
        .await
        .unwrap()
        .into_inner()
        .resource
        .unwrap();
    assert!(gone.deleted_at.is_some());
    let page = client
        .list_resources(pb::ListResourcesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(page.resources.is_empty());
}

#[tokio::test]
async fn clients_tell_taken_from_not_allowed_by_the_details() {
    let app = TestApp::spawn().await;
    let mut client = resources(&app).await;
    client
        .create_resource(pb::CreateResourceRequest {
            resource: Some(clinic()),
        })
        .await
        .unwrap();
    let mut reservations = app.client.clone();
    // Today, off the grid, out of hours: every rule named.
    let refused = reservations
        .reserve(reserve_request("client", "dr-lee", 7, 52))
        .await;
    let status = expect_code(refused, Code::FailedPrecondition);
    let policy = policy_from_status(&status).expect("policy details");
    let rules: Vec<_> = policy.violations.iter().map(|v| v.rule()).collect();
    assert_eq!(
        rules,
        [
            pb::PolicyRule::MinNotice,
            pb::PolicyRule::Granularity,
            pb::PolicyRule::OpeningHours
        ]
    );
    assert!(policy.violations.iter().all(|v| !v.message.is_empty()));
    assert_eq!(
        status.get_details_error_info().map(|i| i.reason),
        Some("POLICY_VIOLATION".to_string())
    );
    assert!(conflict_from_status(&status).is_none());

    // Next Tuesday 10:00 Paris (09:00 UTC): allowed, then taken.
    let tuesday = 7 * 24 * 60 + 9 * 60;
    let ok = reserve_request("client", "dr-lee", tuesday, tuesday + 30);
    let mut dry = ok.clone();
    dry.validate_only = true;
    let preview = reservations
        .reserve(dry)
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert!(preview.id.is_empty(), "nothing was made");
    reservations.reserve(ok.clone()).await.unwrap();
    let mut other = ok;
    other.reservation.as_mut().unwrap().user_id = "other".into();
    let status = expect_code(reservations.reserve(other).await, Code::FailedPrecondition);
    let conflict = conflict_from_status(&status).expect("conflict details");
    assert_eq!(conflict.capacity, 1);
    assert_eq!(conflict.full.len(), 1);
    assert_eq!(
        status.get_details_error_info().map(|i| i.reason),
        Some("RESERVATION_CONFLICT".to_string())
    );
}

#[tokio::test]
async fn units_of_a_resource_are_sold_up_to_its_capacity() {
    let app = TestApp::spawn().await;
    let mut client = resources(&app).await;
    client
        .create_resource(pb::CreateResourceRequest {
            resource: Some(pb::Resource {
                id: "show".into(),
                capacity: 5,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let mut reservations = app.client.clone();
    let mut three = reserve_request("a", "show", 600, 720);
    three.reservation.as_mut().unwrap().quantity = 3;
    let made = reservations
        .reserve(three.clone())
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(made.quantity, 3);
    three.reservation.as_mut().unwrap().user_id = "b".into();
    let status = expect_code(reservations.reserve(three).await, Code::FailedPrecondition);
    let conflict = conflict_from_status(&status).expect("conflict details");
    assert_eq!(conflict.capacity, 5);
    assert_eq!(conflict.requested.unwrap().quantity, 3);
    assert_eq!(conflict.full[0].start, Some(ts(600)));
    // A quantity of 0 in an update is invalid.
    let zero = reservations
        .update(pb::UpdateRequest {
            id: made.id.clone(),
            quantity: Some(0),
            ..Default::default()
        })
        .await;
    let status = expect_code(zero, Code::InvalidArgument);
    assert!(status.message().starts_with("quantity"), "{status:?}");
    // A capacity cut below what is held names when.
    let cut = client
        .update_resource(pb::UpdateResourceRequest {
            resource: Some(pb::Resource {
                id: "show".into(),
                capacity: 2,
                ..Default::default()
            }),
            update_mask: None,
        })
        .await;
    let status = expect_code(cut, Code::FailedPrecondition);
    assert_eq!(
        status.get_details_error_info().map(|i| i.reason),
        Some("CAPACITY_IN_USE".to_string())
    );
    assert!(
        status.message().contains("2026-12-01T10:00:00"),
        "{status:?}"
    );
}

#[tokio::test]
async fn availability_answers_segments_and_slots_and_refuses_what_is_too_big() {
    let app = TestApp::spawn().await;
    let mut client = resources(&app).await;
    client
        .create_resource(pb::CreateResourceRequest {
            resource: Some(pb::Resource {
                id: "show".into(),
                capacity: 5,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let mut reservations = app.client.clone();
    let mut three = reserve_request("a", "show", 600, 720);
    three.reservation.as_mut().unwrap().quantity = 3;
    reservations.reserve(three).await.unwrap();
    let ask = |ids: &[&str], days: i64, slot: i64| pb::AvailabilityRequest {
        resource_ids: ids.iter().map(ToString::to_string).collect(),
        start: Some(ts(540)),
        end: Some(ts(540 + days * 24 * 60)),
        quantity: 3,
        slot_duration: minutes(slot),
        slot_step: None,
    };
    let answer = reservations
        .availability(ask(&["show"], 1, 60))
        .await
        .unwrap()
        .into_inner();
    let show = &answer.resources[0];
    assert_eq!(show.capacity, 5);
    let free: Vec<_> = show.segments.iter().map(|s| (s.start, s.free)).collect();
    assert_eq!(
        free,
        vec![(Some(ts(540)), 5), (Some(ts(600)), 2), (Some(ts(720)), 5)]
    );
    // Three more units fit every hour on the hour but 10:00 and 11:00.
    let starts: Vec<_> = show.slots.iter().map(|s| s.start).collect();
    assert_eq!(starts.len(), 22);
    assert!(starts.contains(&Some(ts(540))) && starts.contains(&Some(ts(720))));
    assert!(!starts.contains(&Some(ts(600))) && !starts.contains(&Some(ts(660))));
    assert!(show.slots.iter().all(|s| s.free == 5));
    assert!(answer.as_of_change_id > 0);
    // Bad requests name their field.
    let status = expect_code(
        reservations.availability(ask(&[], 1, 60)).await,
        Code::InvalidArgument,
    );
    assert!(status.message().starts_with("resource_ids"), "{status:?}");
    let status = expect_code(
        reservations.availability(ask(&["show"], 93, 60)).await,
        Code::InvalidArgument,
    );
    assert!(status.message().starts_with("end"), "{status:?}");
    // An answer past 4 MiB is refused; so is a request that would judge
    // far more slots than any answer could hold.
    let hundred: Vec<String> = (0..100).map(|i| format!("r{i}")).collect();
    let hundred: Vec<&str> = hundred.iter().map(String::as_str).collect();
    let mut big = ask(&hundred, 92, 60);
    big.quantity = 1;
    let status = expect_code(reservations.availability(big).await, Code::InvalidArgument);
    assert!(status.message().contains("4 MiB"), "{status:?}");
    let mut huge = ask(&hundred, 92, 15);
    huge.quantity = 1;
    let status = expect_code(reservations.availability(huge).await, Code::InvalidArgument);
    assert!(status.message().starts_with("slot_step"), "{status:?}");
    // Slots of a microsecond, spaced by their length: billions of starts
    // in a day, refused before any is worked out.
    let mut tiny = ask(&["plain"], 1, 0);
    tiny.quantity = 1;
    tiny.slot_duration = Some(prost_types::Duration {
        seconds: 0,
        nanos: 1_000,
    });
    let status = expect_code(reservations.availability(tiny).await, Code::InvalidArgument);
    assert!(status.message().starts_with("slot_step"), "{status:?}");
}
