//! Listen's end-to-end latency across servers: reserves written through one
//! server at a fixed rate, a Listen stream on another server of the same
//! database, and for every change the time from its write (the change's
//! `changed_at`, read by the database after the write's lock, just before
//! its commit) to its arrival at the listener.

use std::time::{Duration, Instant};

use abi::{
    pb::{self, reservation_service_client::ReservationServiceClient as Client},
    time::{from_timestamp, to_timestamp},
};
use anyhow::Context;
use chrono::{TimeDelta, TimeZone, Utc};
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// Writers sharing the rate.
const WRITERS: u32 = 8;

/// Writes `rate` reserves per second through `writer_url` for `seconds`
/// while listening through `listener_url`.
pub async fn measure(
    writer_url: &str,
    listener_url: &str,
    rate: u32,
    seconds: Duration,
) -> anyhow::Result<Value> {
    eprintln!("== listen latency: {rate} changes/s through one server, listened on another");
    let mut listener = Client::connect(listener_url.to_string())
        .await?
        .listen(pb::ListenRequest::default())
        .await?
        .into_inner();
    let deadline = Instant::now() + seconds;
    let period = Duration::from_secs_f64(f64::from(WRITERS) / f64::from(rate.max(1)));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let url = writer_url.to_string();
            tokio::spawn(async move {
                let mut client = Client::connect(url).await?;
                let mut tick = tokio::time::interval(period);
                let base = Utc.with_ymd_and_hms(2028, 1, 1, 0, 0, 0).unwrap();
                let mut made = 0u64;
                let mut i = 0i64;
                while Instant::now() < deadline {
                    tick.tick().await;
                    i += 1;
                    let start = base + TimeDelta::hours(i);
                    let request = pb::ReserveRequest {
                        reservation: Some(pb::Reservation {
                            user_id: "latency".into(),
                            resource_id: format!("latency-{w}"),
                            status: pb::ReservationStatus::Confirmed.into(),
                            start: Some(to_timestamp(start)),
                            end: Some(to_timestamp(start + TimeDelta::hours(1))),
                            ..Default::default()
                        }),
                        ..Default::default()
                    };
                    if client.reserve(request).await.is_ok() {
                        made += 1;
                    }
                }
                Ok::<_, anyhow::Error>(made)
            })
        })
        .collect();

    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let collect = async {
        while let Some(change) = listener.next().await {
            let arrived = Utc::now();
            let change = change?;
            let written = change
                .changed_at
                .as_ref()
                .context("a change without changed_at")?;
            let written = from_timestamp(written).map_err(|e| anyhow::anyhow!("{e}"))?;
            let us = (arrived - written).num_microseconds().unwrap_or(0).max(1);
            latency.saturating_record(u64::try_from(us).unwrap_or(u64::MAX));
        }
        Ok::<_, anyhow::Error>(())
    };
    // Everything written arrives well within a second of the last write.
    let _ = tokio::time::timeout(seconds + Duration::from_secs(2), collect).await;
    let mut made = 0;
    for w in writers {
        made += w.await??;
    }
    let ms = |us: u64| us as f64 / 1000.0;
    let report = json!({
        "rate_per_s": rate,
        "written": made,
        "received": latency.len(),
        "latency_ms": {
            "p50": ms(latency.value_at_quantile(0.50)),
            "p90": ms(latency.value_at_quantile(0.90)),
            "p99": ms(latency.value_at_quantile(0.99)),
            "max": ms(latency.max()),
        },
    });
    eprintln!("   {report}");
    Ok(report)
}
