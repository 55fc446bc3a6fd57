//! A PostgreSQL failover under load: rsvp-server on a pg_auto_failover
//! formation (a primary and a synchronous standby, named by one multi-host
//! URL) while clients reserve and a listener follows the change feed. The
//! primary is killed (its pg_autoctl with it, so the standby is promoted);
//! every acknowledged reservation must be on the new primary, no two live
//! reservations overlap, calls during the gap fail as UNAVAILABLE only, the
//! service resumes by itself, health says NOT_SERVING during the gap, the
//! listener sees every change the new primary has (in order, and none it
//! lacks), and a call cut by the failover and retried with its
//! `request_id` returns what it made, or makes it once.
//!
//! `RSVP_FAILOVERS=n` kills the primary n times in a row (the old one
//! rejoins as standby in between); `RSVP_HA_TIMINGS=default` keeps
//! pg_auto_failover's default failure detection (about 50 s a failover)
//! instead of a fast one. `make ha-test` runs 5 failovers each way and
//! prints the figures.

mod support;

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use abi::pb::{self, reservation_service_client::ReservationServiceClient as Client};
use futures::StreamExt;
use reservation::{PgStore, Rsvp, StoreOptions};
use rsvp_testing::{Formation, MonitorTimings, assert_no_double_booking};
use support::{BIN, Server, reserve_request};
use tonic::{Code, transport::Channel};
use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient};

/// One call's outcome, with when it ended.
#[derive(Clone, Debug)]
enum Outcome {
    Acked(String),
    Conflict,
    Unavailable,
    Other(String),
}

#[derive(Default)]
struct Log {
    calls: Vec<(Instant, Instant, Outcome)>,
    /// Health as seen, with when.
    health: Vec<(Instant, ServingStatus)>,
    /// Reservation ids and change ids the listener saw, and its
    /// resumptions.
    seen: HashSet<String>,
    changes: HashSet<i64>,
    resumed: u32,
    /// Each request's key and how it ended, retries and all.
    keyed: Vec<(String, Outcome)>,
}

fn channel(addr: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(1))
        .connect_lazy()
}

/// Clients reserving confirmed, mostly disjoint intervals until `stop`,
/// each request with a key of its own, retried with it while it fails as
/// UNAVAILABLE.
fn clients(
    addr: std::net::SocketAddr,
    n: u64,
    log: Arc<Mutex<Log>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..n)
        .map(|task| {
            let log = log.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut client = Client::new(channel(addr));
                let mut k: i64 = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    k += 1;
                    let mix = (task as i64 * 7919 + k * 104_729) % 1_000_003;
                    let start = (mix * 37) % 525_600;
                    let mut request = reserve_request(
                        "ha",
                        &format!("room-{}", mix % 10),
                        start,
                        start + 30 + mix % 60,
                    );
                    request.reservation.as_mut().unwrap().status =
                        pb::ReservationStatus::Confirmed.into();
                    request.request_id = format!("{task}-{k}");
                    let outcome = loop {
                        let mut call = tonic::Request::new(request.clone());
                        call.set_timeout(Duration::from_secs(30));
                        let started = Instant::now();
                        let outcome = match client.reserve(call).await {
                            Ok(r) => Outcome::Acked(r.into_inner().reservation.unwrap().id),
                            Err(s) if s.code() == Code::FailedPrecondition => Outcome::Conflict,
                            Err(s) if s.code() == Code::Unavailable => Outcome::Unavailable,
                            Err(s) => Outcome::Other(format!("{:?}: {}", s.code(), s.message())),
                        };
                        log.lock()
                            .unwrap()
                            .calls
                            .push((started, Instant::now(), outcome.clone()));
                        if !matches!(outcome, Outcome::Unavailable)
                            || stop.load(std::sync::atomic::Ordering::Relaxed)
                        {
                            break outcome;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    };
                    log.lock()
                        .unwrap()
                        .keyed
                        .push((request.request_id.clone(), outcome));
                }
            })
        })
        .collect()
}

/// Follows the change feed from the start, resuming after the last change
/// it saw whenever its stream ends.
fn listener(addr: std::net::SocketAddr, log: Arc<Mutex<Log>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut client = Client::new(channel(addr));
        let mut after = 0i64;
        loop {
            let request = pb::ListenRequest {
                after_change_id: Some(after),
                ..Default::default()
            };
            if let Ok(stream) = client.listen(request).await {
                let mut stream = stream.into_inner();
                while let Some(Ok(change)) = stream.next().await {
                    assert!(
                        change.change_id > after,
                        "changes arrive in order: {} after {after}",
                        change.change_id
                    );
                    after = change.change_id;
                    let mut log = log.lock().unwrap();
                    log.changes.insert(change.change_id);
                    if let Some(r) = change.reservation {
                        log.seen.insert(r.id);
                    }
                }
            }
            log.lock().unwrap().resumed += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// Records the server's health every 100 ms.
fn health(addr: std::net::SocketAddr, log: Arc<Mutex<Log>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut health = HealthClient::new(channel(addr));
        loop {
            let status = support::health_status(&mut health).await;
            log.lock().unwrap().health.push((Instant::now(), status));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// What one failover looked like to clients.
#[derive(Debug)]
struct Gap {
    /// From the kill to the first call that succeeded after it failed.
    kill_to_service: Duration,
    /// From the first failed call to the first success after it.
    outage: Duration,
    failed: usize,
    health_down: bool,
}

fn gap(log: &Log, killed: Instant) -> Option<Gap> {
    let after: Vec<_> = log
        .calls
        .iter()
        .filter(|(_, ended, _)| *ended >= killed)
        .collect();
    let first_failure = after
        .iter()
        .filter(|(_, _, o)| !matches!(o, Outcome::Acked(_) | Outcome::Conflict))
        .map(|(_, ended, _)| *ended)
        .min()?;
    let back = after
        .iter()
        .filter(|(started, _, o)| matches!(o, Outcome::Acked(_)) && *started >= first_failure)
        .map(|(_, ended, _)| *ended)
        .min()?;
    Some(Gap {
        kill_to_service: back - killed,
        outage: back - first_failure,
        failed: after
            .iter()
            .filter(|(started, _, o)| {
                *started < back && !matches!(o, Outcome::Acked(_) | Outcome::Conflict)
            })
            .count(),
        health_down: log
            .health
            .iter()
            .any(|(at, s)| *at >= killed && *at <= back && *s == ServingStatus::NotServing),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_loses_no_acknowledged_reservation_and_service_resumes() {
    let failovers: usize = std::env::var("RSVP_FAILOVERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let timings = match std::env::var("RSVP_HA_TIMINGS").as_deref() {
        Ok("default") => MonitorTimings::Default,
        _ => MonitorTimings::Fast,
    };
    let deadline = match timings {
        MonitorTimings::Fast => Duration::from_secs(90),
        MonitorTimings::Default => Duration::from_secs(180),
    };
    let built = Instant::now();
    let formation = Arc::new(
        tokio::task::spawn_blocking(move || Formation::start(timings))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("a pg_auto_failover formation: {e}")),
    );
    eprintln!("formation ready in {:?}", built.elapsed());
    let url = formation.url();

    // The schema, applied through the multi-host URL by the real binary.
    let migrate = url.clone();
    let migrated = tokio::task::spawn_blocking(move || {
        std::process::Command::new(BIN)
            .args(["migrate", "--database-url", &migrate])
            .status()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(migrated.success(), "rsvp-server migrate: {migrated}");
    let server = Server::start(&url, &["--no-migrate", "--acquire-timeout", "2s"]).await;

    let log = Arc::new(Mutex::new(Log::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watching = listener(server.addr, log.clone());
    let checking = health(server.addr, log.clone());
    let load = clients(server.addr, 6, log.clone(), stop.clone());

    // The monitor is asked with psql: off the runtime's two workers.
    let primary = |formation: &Arc<Formation>| {
        let f = formation.clone();
        tokio::task::spawn_blocking(move || f.primary())
    };
    let states = |formation: &Arc<Formation>| {
        let f = formation.clone();
        tokio::task::spawn_blocking(move || f.states())
    };
    let mut gaps = Vec::new();
    let mut windows = Vec::new();
    for round in 1..=failovers {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let old = primary(&formation)
            .await
            .unwrap()
            .expect("a primary before the kill");
        let killed = Instant::now();
        let f = formation.clone();
        let victim = old.clone();
        tokio::task::spawn_blocking(move || f.kill(&victim))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("failover {round}: {e}"));

        // The standby takes over and clients are served again.
        let mut promoted = None;
        let found = loop {
            if promoted.is_none() && primary(&formation).await.unwrap().is_some_and(|p| p != old) {
                promoted = Some(killed.elapsed());
            }
            let resumed = gap(&log.lock().unwrap(), killed);
            if promoted.is_some()
                && let Some(g) = resumed
            {
                break g;
            }
            if killed.elapsed() > deadline {
                panic!(
                    "failover {round}: service not back within {deadline:?}; nodes: {}",
                    states(&formation).await.unwrap()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        eprintln!(
            "failover {round}/{failovers}: {old} killed; the monitor had a new primary after \
             {:.2}s; service back after {:.2}s, outage (first failure to first success) {:.2}s, \
             {} calls failed, health NOT_SERVING seen: {}",
            promoted.unwrap_or_default().as_secs_f64(),
            found.kill_to_service.as_secs_f64(),
            found.outage.as_secs_f64(),
            found.failed,
            found.health_down
        );
        windows.push((killed, killed + found.kill_to_service));
        gaps.push(found);

        // The old primary rejoins as standby, so the next failover has one.
        if round < failovers {
            let f = formation.clone();
            tokio::task::spawn_blocking(move || {
                f.restart(&old)?;
                f.wait_ready(Duration::from_secs(180))
            })
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("failover {round}: the old primary did not rejoin: {e}"));
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }

    let (acked, others, calls) = {
        let log = log.lock().unwrap();
        let acked: Vec<String> = log
            .calls
            .iter()
            .filter_map(|(_, _, o)| match o {
                Outcome::Acked(id) => Some(id.clone()),
                _ => None,
            })
            .collect();
        let others: Vec<String> = log
            .calls
            .iter()
            .filter_map(|(_, _, o)| match o {
                Outcome::Other(e) => Some(e.clone()),
                _ => None,
            })
            .collect();
        (acked, others, log.calls.len())
    };
    assert!(
        others.is_empty(),
        "calls fail as UNAVAILABLE only: {others:?}"
    );
    // And only in a gap: every failed call was under way between a kill
    // and the service's return.
    {
        let log = log.lock().unwrap();
        let outside = log
            .calls
            .iter()
            .filter(|(_, _, o)| matches!(o, Outcome::Unavailable))
            .filter(|(started, ended, _)| {
                !windows
                    .iter()
                    .any(|(killed, back)| *started <= *back && *ended >= *killed)
            })
            .count();
        assert_eq!(outside, 0, "calls failed outside a failover");
    }
    assert!(
        gaps.iter().all(|g| g.health_down),
        "health said NOT_SERVING during every gap: {gaps:?}"
    );

    // Every acknowledged reservation is on the primary now.
    let store = PgStore::connect(
        &url,
        StoreOptions {
            migrate: false,
            ..StoreOptions::default()
        },
    )
    .await
    .unwrap();
    let stored: HashSet<String> =
        sqlx::query_scalar::<_, uuid::Uuid>("SELECT id FROM rsvp.reservations")
            .fetch_all(store.pool())
            .await
            .unwrap()
            .into_iter()
            .map(|id| id.to_string())
            .collect();
    let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged reservations lost: {lost:?}",
        lost.len()
    );
    assert_no_double_booking(&store as &dyn Rsvp).await;

    // A request cut by a failover and retried with its key returned what
    // its first call made, or made it once: a key whose last answer was a
    // conflict made nothing, and one acknowledged is the reservation
    // stored under it.
    let by_key: std::collections::HashMap<String, String> =
        sqlx::query_as::<_, (String, uuid::Uuid)>(
            "SELECT request_id, id FROM rsvp.reservations WHERE request_id IS NOT NULL",
        )
        .fetch_all(store.pool())
        .await
        .unwrap()
        .into_iter()
        .map(|(key, id)| (key, id.to_string()))
        .collect();
    let retried = {
        let log = log.lock().unwrap();
        for (key, outcome) in &log.keyed {
            match outcome {
                Outcome::Acked(id) => assert_eq!(by_key.get(key), Some(id), "key {key}"),
                Outcome::Conflict => assert_eq!(by_key.get(key), None, "key {key}"),
                _ => {}
            }
        }
        log.calls
            .iter()
            .filter(|(_, _, o)| matches!(o, Outcome::Unavailable))
            .count()
    };

    // The listener saw every acknowledged change, and every change the new
    // primary has.
    let changes: HashSet<i64> =
        sqlx::query_scalar::<_, i64>("SELECT id FROM rsvp.reservation_changes")
            .fetch_all(store.pool())
            .await
            .unwrap()
            .into_iter()
            .collect();
    let waited = Instant::now();
    loop {
        let (missing, unseen) = {
            let log = log.lock().unwrap();
            (
                acked.iter().filter(|id| !log.seen.contains(*id)).count(),
                changes.difference(&log.changes).count(),
            )
        };
        if missing == 0 && unseen == 0 {
            break;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(30),
            "the listener missed {missing} acknowledged reservations and {unseen} changes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let phantom: Vec<i64> = log
        .lock()
        .unwrap()
        .changes
        .difference(&changes)
        .copied()
        .collect();
    assert!(
        phantom.is_empty(),
        "the listener saw changes the new primary lacks: {phantom:?}"
    );
    // Every reservation the listener was told of is on the primary: it was
    // never told of a write the failover lost.
    let told: Vec<String> = log
        .lock()
        .unwrap()
        .seen
        .iter()
        .filter(|id| !stored.contains(*id))
        .cloned()
        .collect();
    assert!(
        told.is_empty(),
        "the listener saw writes that were lost: {told:?}"
    );
    let resumed = log.lock().unwrap().resumed;
    if watching.is_finished() {
        // Its in-order check failed.
        watching.await.unwrap();
    } else {
        watching.abort();
    }
    checking.abort();
    assert_eq!(
        resumed, 0,
        "the listener's stream stayed open across failovers"
    );
    eprintln!(
        "{failovers} failover(s), {timings:?} monitor timings: {calls} calls ({retried} \
         retried with their key), {} acknowledged, all {} on the new primary and seen by the \
         listener with all {} changes ({resumed} resumptions); \
         outage max {:.2}s, kill to service max {:.2}s, {} calls failed in all",
        acked.len(),
        acked.len(),
        changes.len(),
        gaps.iter()
            .map(|g| g.outage.as_secs_f64())
            .fold(0.0, f64::max),
        gaps.iter()
            .map(|g| g.kill_to_service.as_secs_f64())
            .fold(0.0, f64::max),
        gaps.iter().map(|g| g.failed).sum::<usize>(),
    );
}
