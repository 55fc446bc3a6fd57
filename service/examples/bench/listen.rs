//! Listen's end-to-end latency across servers: reserves written through one
//! server at a fixed rate, a Listen stream on another server of the same
//! database, and for every change the time from its commit — as the writer
//! sees it, when its Reserve is answered — to its arrival at the listener
//! (none when it arrived first).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
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

/// Writers sharing the rate.
const WRITERS: u32 = 8;

/// Runs so far: each writes on resources of its own.
static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

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
    // When each reservation's Reserve was answered, and when its change
    // arrived, by id: whichever comes second settles the latency.
    let acked: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let arrived: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let latency = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 60_000_000, 3,
    )?));
    let record = |latency: &Mutex<Histogram<u64>>, d: Duration| {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        if let Ok(mut h) = latency.lock() {
            h.saturating_record(us);
        }
    };
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let period = Duration::from_secs_f64(f64::from(WRITERS) / f64::from(rate.max(1)));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let url = writer_url.to_string();
            let (acked, arrived, latency) = (acked.clone(), arrived.clone(), latency.clone());
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
                            resource_id: format!("latency-{run}-{w}"),
                            status: pb::ReservationStatus::Confirmed.into(),
                            start: Some(to_timestamp(start)),
                            end: Some(to_timestamp(start + TimeDelta::hours(1))),
                            ..Default::default()
                        }),
                        ..Default::default()
                    };
                    if let Ok(r) = client.reserve(request).await {
                        made += 1;
                        let now = Instant::now();
                        let id = r.into_inner().reservation.map(|r| r.id).unwrap_or_default();
                        let came = arrived.lock().ok().and_then(|mut a| a.remove(&id));
                        match came {
                            // The listener had it before the writer's answer.
                            Some(_) => record(&latency, Duration::ZERO),
                            None => {
                                if let Ok(mut a) = acked.lock() {
                                    a.insert(id, now);
                                }
                            }
                        }
                    }
                }
                Ok::<_, anyhow::Error>(made)
            })
        })
        .collect();

    let mut received = 0u64;
    let collect = async {
        while let Some(change) = listener.next().await {
            let now = Instant::now();
            let change = change?;
            let id = change.reservation.map(|r| r.id).unwrap_or_default();
            received += 1;
            let ack = acked.lock().ok().and_then(|mut a| a.remove(&id));
            match ack {
                Some(at) => record(&latency, now - at),
                None => {
                    if let Ok(mut a) = arrived.lock() {
                        a.insert(id, now);
                    }
                }
            }
        }
        Ok::<_, anyhow::Error>(())
    };
    // Everything written arrives well within a second of the last write.
    let _ = tokio::time::timeout(seconds + Duration::from_secs(2), collect).await;
    let mut made = 0;
    for w in writers {
        made += w.await??;
    }
    let latency = latency
        .lock()
        .map_err(|_| anyhow::anyhow!("the latency histogram"))?
        .clone();
    let report = json!({
        "rate_per_s": rate,
        "written": made,
        "received": received,
        "latency_ms": super::latency_ms(&latency),
    });
    eprintln!("   {report}");
    Ok(report)
}
