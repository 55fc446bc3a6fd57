//! Prometheus metrics, on a port of their own when configured: calls by
//! method and status code with latency histograms, and what the store and
//! the streams report.

mod support;

use std::time::Duration;

use abi::pb;
use futures::StreamExt;
use rsvp_server::server::ServerSettings;
use support::{TestApp, free_addr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET /metrics` over plain HTTP/1.1.
async fn scrape(addr: std::net::SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: rsvp\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_calls_conflicts_streams_and_the_pool() {
    let metrics = free_addr();
    let settings = ServerSettings {
        metrics_listen: Some(metrics),
        ..ServerSettings::default()
    };
    let app = TestApp::spawn_with(|_| {}, settings).await;
    app.reserve("alice", "metered", 0, 60).await.unwrap();
    let clash = app.reserve("bob", "metered", 30, 90).await.unwrap_err();
    assert_eq!(clash.code(), tonic::Code::FailedPrecondition);
    let mut client = app.client().await;
    let mut listening = client
        .listen(pb::ListenRequest::default())
        .await
        .unwrap()
        .into_inner();
    app.reserve("carol", "metered-2", 0, 60).await.unwrap();
    listening.next().await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await; // a pool sample

    let text = scrape(metrics).await;
    for expected in [
        "rsvp_calls_total{method=\"/reservation.ReservationService/Reserve\",code=\"Ok\"}",
        "rsvp_calls_total{method=\"/reservation.ReservationService/Reserve\",code=\"FailedPrecondition\"}",
        "rsvp_call_duration_seconds_bucket{method=\"/reservation.ReservationService/Reserve\"",
        "rsvp_conflicts_total{write=\"reserve\"}",
        "rsvp_open_streams{kind=\"listen\"}",
        "rsvp_pool_connections{state=\"in_use\"}",
        "rsvp_lock_wait_seconds_bucket{write=\"place\"",
        "rsvp_write_batch_size_bucket",
        "rsvp_feed_lag_seconds_bucket",
    ] {
        assert!(text.contains(expected), "no {expected} in\n{text}");
    }
}

/// Made-up paths, even ones no one was authenticated for, are one
/// `unknown` method: callers cannot grow the metrics without bound. The
/// check the server makes of an HTTP request it cannot read is no call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_methods_are_one_label_and_checks_are_not_calls() {
    let metrics = free_addr();
    let settings = ServerSettings {
        metrics_listen: Some(metrics),
        auth: std::sync::Arc::new(rsvp_server::auth::Authenticator::tokens(
            std::sync::Arc::new(rsvp_server::auth::TokenCache::new()),
        )),
        ..ServerSettings::default()
    };
    let app = TestApp::spawn_with(|_| {}, settings).await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for i in 0..20 {
        let status = client
            .post(format!(
                "http://{}/reservation.ReservationService/made-up-{i}",
                app.addr
            ))
            .header("content-type", "application/grpc")
            .body(vec![0u8; 5])
            .send()
            .await
            .unwrap()
            .headers()
            .get("grpc-status")
            .map(|s| s.to_str().unwrap().to_string());
        assert_eq!(status.as_deref(), Some("16"), "UNAUTHENTICATED");
    }
    let unreadable = reqwest::Client::new()
        .get(format!("http://{}/v1/reservations?colour=red", app.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(unreadable.status(), reqwest::StatusCode::UNAUTHORIZED);

    let text = scrape(metrics).await;
    assert!(!text.contains("made-up"), "{text}");
    assert!(
        text.contains("rsvp_calls_total{method=\"unknown\",code=\"Unauthenticated\"} 20"),
        "{text}"
    );
    assert!(!text.contains("WhoAmI"), "{text}");
}
