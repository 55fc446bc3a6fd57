//! Server-Sent Events fan-out: `streams` browsers-worth of `/v1/changes`
//! streams (each an HTTP/1.1 connection of its own) on one server, reserves
//! written through gRPC at a fixed rate, and for every change and every
//! stream the time from its Reserve being sent to its arrival: the write,
//! its commit, the feed and the event together.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use abi::{
    pb::{self, reservation_service_client::ReservationServiceClient as Client},
    time::to_timestamp,
};
use chrono::{TimeDelta, TimeZone, Utc};
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// Writes `rate` reserves per second through `url` for `seconds` while
/// `streams` Server-Sent Events streams of the same server read them.
pub async fn measure(
    url: &str,
    streams: usize,
    rate: u32,
    seconds: Duration,
) -> anyhow::Result<Value> {
    eprintln!("== SSE fan-out: {rate} changes/s to {streams} event streams");
    // Every stream opens, and says so, before the first write.
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(streams);
    let stop = Instant::now() + seconds + Duration::from_secs(3);
    let readers: Vec<_> = (0..streams)
        .map(|_| {
            let url = format!("{url}/v1/changes?resource_id=sse-bench");
            let ready = ready_tx.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::builder().http1_only().build()?;
                let response = client.get(url).send().await?;
                anyhow::ensure!(response.status().is_success(), "HTTP {}", response.status());
                let mut body = response.bytes_stream();
                let mut text = String::new();
                let mut arrivals: Vec<(String, Instant)> = Vec::new();
                let mut told = false;
                loop {
                    let next = tokio::time::timeout_at(stop.into(), body.next()).await;
                    let Ok(Some(chunk)) = next else { break };
                    let now = Instant::now();
                    text.push_str(&String::from_utf8_lossy(&chunk?));
                    while let Some(end) = text.find("\n\n") {
                        let event: String = text.drain(..end + 2).collect();
                        if !told && event.contains(": listening") {
                            told = true;
                            let _ = ready.send(()).await;
                        }
                        for line in event.lines() {
                            if let Some(data) = line.strip_prefix("data: ") {
                                let change: Value = serde_json::from_str(data)?;
                                if let Some(id) = change["reservation"]["id"].as_str() {
                                    arrivals.push((id.to_string(), now));
                                }
                            }
                        }
                    }
                }
                Ok::<_, anyhow::Error>(arrivals)
            })
        })
        .collect();
    drop(ready_tx);
    for _ in 0..streams {
        ready_rx
            .recv()
            .await
            .ok_or_else(|| anyhow::anyhow!("an event stream did not open"))?;
    }

    let mut client = Client::connect(url.to_string()).await?;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    let base = Utc.with_ymd_and_hms(2029, 1, 1, 0, 0, 0).unwrap();
    let deadline = Instant::now() + seconds;
    let mut acked: HashMap<String, Instant> = HashMap::new();
    let mut i = 0i64;
    while Instant::now() < deadline {
        tick.tick().await;
        i += 1;
        let start = base + TimeDelta::hours(i);
        let request = pb::ReserveRequest {
            reservation: Some(pb::Reservation {
                user_id: "sse".into(),
                resource_id: "sse-bench".into(),
                status: pb::ReservationStatus::Confirmed.into(),
                start: Some(to_timestamp(start)),
                end: Some(to_timestamp(start + TimeDelta::hours(1))),
                ..Default::default()
            }),
            ..Default::default()
        };
        let sent = Instant::now();
        if let Ok(r) = client.reserve(request).await {
            let id = r.into_inner().reservation.map(|r| r.id).unwrap_or_default();
            acked.insert(id, sent);
        }
    }

    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut delivered = 0u64;
    for reader in readers {
        for (id, at) in reader.await?? {
            if let Some(ack) = acked.get(&id) {
                delivered += 1;
                let us = u64::try_from(at.saturating_duration_since(*ack).as_micros())
                    .unwrap_or(u64::MAX);
                latency.saturating_record(us.max(1));
            }
        }
    }
    let expected = acked.len() as u64 * streams as u64;
    let report = json!({
        "streams": streams,
        "rate_per_s": rate,
        "written": acked.len(),
        "deliveries": delivered,
        "deliveries_expected": expected,
        "latency_ms": super::latency_ms(&latency),
    });
    eprintln!("   {report}");
    Ok(report)
}
