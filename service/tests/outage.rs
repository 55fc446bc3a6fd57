//! A database outage: calls fail with UNAVAILABLE (never INTERNAL), health
//! reports NOT_SERVING, and the service recovers by itself.

mod support;

use std::{sync::Arc, time::Duration};

use reservation::{PgStore, StoreOptions};
use rsvp_server::server::{self, ServerSettings};
use rsvp_testing::TestDb;
use support::{Proxy, connect, reserve_request, url_addr};
use tonic::Code;
use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient};

async fn wait_for(health: &mut HealthClient<tonic::transport::Channel>, want: ServingStatus) {
    for _ in 0..100 {
        let status = support::health_status(health).await;
        if status == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("health never became {want:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_unavailable_and_the_service_recovers_by_itself() {
    let db = TestDb::new().await;
    let proxy = Proxy::start(url_addr(db.url())).await;
    let options = StoreOptions {
        acquire_timeout: Duration::from_secs(1),
        ..StoreOptions::default()
    };
    let store = PgStore::connect(&proxy.url(db.url()), options)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let settings = ServerSettings {
        health_interval: Duration::from_millis(100),
        ..Default::default()
    };
    let server = tokio::spawn(server::run(
        listener,
        Arc::new(store),
        settings,
        std::future::pending(),
    ));
    let mut client = connect(addr).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);

    client
        .reserve(reserve_request("alice", "room-1", 0, 60))
        .await
        .unwrap();
    wait_for(&mut health, ServingStatus::Serving).await;

    proxy.cut();
    for i in 0..5 {
        let status = client
            .reserve(reserve_request(
                "alice",
                "room-1",
                100 + i * 10,
                105 + i * 10,
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(
            !status.message().contains("os error"),
            "no driver text: {}",
            status.message()
        );
    }
    let status = client
        .get(abi::pb::GetRequest {
            id: uuid::Uuid::now_v7().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    wait_for(&mut health, ServingStatus::NotServing).await;

    proxy.restore();
    wait_for(&mut health, ServingStatus::Serving).await;
    let made = client
        .reserve(reserve_request("alice", "room-1", 200, 260))
        .await
        .unwrap();
    assert!(made.into_inner().reservation.is_some());
    server.abort();
}
