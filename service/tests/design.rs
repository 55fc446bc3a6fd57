//! Clients generated from the API as the original design wrote it
//! (`tests/design/reservation.proto`: no package, lower-case methods), as
//! it stands and with `package reservation;` added: the server answers their
//! paths with the same handlers.

mod support;

#[allow(clippy::all, dead_code)]
mod design {
    include!(concat!(env!("OUT_DIR"), "/design/_.rs"));
}

#[allow(clippy::all, dead_code)]
mod design_packaged {
    include!(concat!(env!("OUT_DIR"), "/design_packaged/reservation.rs"));
}

use futures::StreamExt;
use support::{TestApp, ts};
use tonic::{Code, transport::Channel};

macro_rules! the_story {
    ($module:ident, $app:expr, $resource:expr) => {{
        use $module::{
            CancelRequest, ConfirmRequest, GetRequest, QueryRequest, Reservation,
            ReservationStatus, ReserveRequest, UpdateRequest,
            reservation_service_client::ReservationServiceClient,
        };
        let channel = Channel::from_shared(format!("http://{}", $app.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = ReservationServiceClient::new(channel);
        let request = |user: &str, from: i64| ReserveRequest {
            reservation: Some(Reservation {
                user_id: user.into(),
                resource_id: $resource.into(),
                start: Some(ts(from)),
                end: Some(ts(from + 60)),
                note: "as designed".into(),
                ..Default::default()
            }),
        };
        let made = client
            .reserve(request("alice", 0))
            .await
            .unwrap()
            .into_inner()
            .reservation
            .unwrap();
        assert_eq!(made.status(), ReservationStatus::Pending);
        assert_eq!(made.note, "as designed");

        let clash = client.reserve(request("bob", 30)).await.unwrap_err();
        assert_eq!(clash.code(), Code::FailedPrecondition, "{clash:?}");

        let got = client
            .get(GetRequest {
                id: made.id.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .reservation
            .unwrap();
        assert_eq!(got.id, made.id);
        let confirmed = client
            .confirm(ConfirmRequest {
                id: made.id.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .reservation
            .unwrap();
        assert_eq!(confirmed.status(), ReservationStatus::Confirmed);
        let noted = client
            .update(UpdateRequest {
                id: made.id.clone(),
                note: "moved to the terrace".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .reservation
            .unwrap();
        assert_eq!(noted.note, "moved to the terrace");

        let mut rows = client
            .query(QueryRequest {
                resource_id: $resource.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let mut ids = Vec::new();
        while let Some(row) = rows.next().await {
            ids.push(row.unwrap().id);
        }
        assert_eq!(ids, vec![made.id.clone()]);

        let cancelled = client
            .cancel(CancelRequest {
                id: made.id.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .reservation
            .unwrap();
        // CANCELLED is not in the design's enum; the number still arrives.
        assert_eq!(cancelled.status, 4);
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_the_design_without_a_package_is_answered() {
    let app = TestApp::spawn().await;
    the_story!(design, app, "room-design");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_the_design_with_a_package_is_answered() {
    let app = TestApp::spawn().await;
    the_story!(design_packaged, app, "room-packaged");
}
