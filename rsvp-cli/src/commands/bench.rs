//! `rsvp bench`: a closed-loop load generator, as pgbench is to PostgreSQL.
//!
//! Each client sends its next call when the last one answers and records its
//! latency in an HDR histogram; outcomes are counted by status code.

use std::{
    collections::BTreeMap,
    io::{IsTerminal, Write},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use abi::{
    pb::{self, ReservationStatus, resource_service_client::ResourceServiceClient},
    time::{to_duration, to_timestamp},
};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use clap::ValueEnum;
use futures::StreamExt;
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::Serialize;
use tonic::Code;

use super::Context;
use crate::{
    cli::{BenchArgs, Format, Protocol, Workload},
    client::{self, Client, Transport},
    error::CliError,
    exit::Exit,
};

/// The year reservations are spread over.
fn year_start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap() // ok: a valid constant date
}

/// One client's results.
struct Tally {
    latency: Histogram<u64>,
    outcomes: BTreeMap<String, u64>,
}

impl Tally {
    fn new() -> Self {
        Tally {
            // 1 µs to 100 s, 3 significant digits.
            latency: Histogram::new_with_bounds(1, 100_000_000, 3)
                .expect("1 ≤ 100 s and 3 digits are valid bounds"), // ok: constant bounds
            outcomes: BTreeMap::new(),
        }
    }

    fn record(&mut self, took: Duration, outcome: String) {
        self.latency
            .saturating_record(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
        *self.outcomes.entry(outcome).or_default() += 1;
    }

    fn merge(&mut self, other: Tally) {
        let _ = self.latency.add(&other.latency);
        for (k, v) in other.outcomes {
            *self.outcomes.entry(k).or_default() += v;
        }
    }
}

fn outcome(result: Result<(), tonic::Status>) -> String {
    match result {
        Ok(()) => "ok".into(),
        Err(s)
            if s.code() == Code::FailedPrecondition
                && (abi::conflict_from_status(&s).is_some()
                    || abi::booking_rejection_from_status(&s).is_some()) =>
        {
            "conflict".into()
        }
        Err(s) => format!("{:?}", s.code()),
    }
}

/// What one client does, call after call.
struct Worker {
    client: Client,
    rng: StdRng,
    workload: Workload,
    resources: u64,
    user: String,
    /// Ids of reservations to get (sampled before the run).
    sample: Arc<Vec<String>>,
    /// The mixed workload's own pending holds, to confirm or cancel.
    holds: Vec<String>,
    /// The resource of reserve-capacity.
    target: String,
    /// Set when calls go over HTTP/JSON.
    http: Option<Http>,
}

/// A client of the HTTP/JSON API: its own HTTP/1.1 connection.
struct Http {
    client: reqwest::Client,
    base: String,
    /// The `authorization` header, if the caller has credentials.
    authorization: Option<String>,
}

impl Http {
    /// One POST; the outcome as `rsvp bench` counts it.
    async fn post(&self, path: &str, body: serde_json::Value) -> String {
        let mut request = self.client.post(format!("{}{path}", self.base)).json(&body);
        if let Some(authorization) = &self.authorization {
            request = request.header("authorization", authorization);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status();
                // Read the whole answer, as a client would.
                let read = response.bytes().await;
                match (status.as_u16(), read) {
                    (_, Err(_)) => "read error".into(),
                    (200, _) => "ok".into(),
                    (409, _) => "conflict".into(),
                    (code, _) => format!("HTTP {code}"),
                }
            }
            Err(e) if e.is_connect() => "connect error".into(),
            Err(_) => "transport error".into(),
        }
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Worker {
    fn resource(&mut self) -> String {
        format!("bench-{}", self.rng.random_range(0..self.resources.max(1)))
    }

    /// A random hour of 2027.
    fn hour(&mut self) -> DateTime<Utc> {
        year_start() + TimeDelta::hours(self.rng.random_range(0..8760))
    }

    /// A random week of 2027.
    fn week(&mut self) -> DateTime<Utc> {
        year_start() + TimeDelta::weeks(self.rng.random_range(0..52))
    }

    /// The resource and start of the workload's next reserve (reserve-hot,
    /// -capacity and -registered their own; any other as reserve-spread).
    fn reserve_target(&mut self) -> (String, DateTime<Utc>) {
        match self.workload {
            Workload::ReserveHot => (
                "bench-hot".into(),
                year_start() + TimeDelta::minutes(self.rng.random_range(0..60)),
            ),
            Workload::ReserveCapacity => (self.target.clone(), year_start()),
            Workload::ReserveRegistered => (
                format!(
                    "bench-registered-{}",
                    self.rng.random_range(0..registered(self.resources))
                ),
                self.hour(),
            ),
            _ => (self.resource(), self.hour()),
        }
    }

    /// [`AVAILABILITY_RESOURCES`] distinct random resources.
    fn availability_ids(&mut self) -> Vec<String> {
        let wanted = AVAILABILITY_RESOURCES.min(usize::try_from(self.resources).unwrap_or(1));
        let mut ids = std::collections::BTreeSet::new();
        while ids.len() < wanted.max(1) {
            ids.insert(self.resource());
        }
        ids.into_iter().collect()
    }

    /// The parts of a booking: random hours on random resources.
    fn book_parts(&mut self) -> Vec<(String, DateTime<Utc>)> {
        (0..BOOK_PARTS)
            .map(|_| (self.resource(), self.hour()))
            .collect()
    }

    async fn reserve(
        &mut self,
        resource: String,
        start: DateTime<Utc>,
        status: ReservationStatus,
    ) -> Result<(), tonic::Status> {
        let request = pb::ReserveRequest {
            reservation: Some(pb::Reservation {
                user_id: self.user.clone(),
                resource_id: resource,
                status: status.into(),
                start: Some(to_timestamp(start)),
                end: Some(to_timestamp(start + TimeDelta::hours(1))),
                quantity: 1,
                ..Default::default()
            }),
            ..Default::default()
        };
        let made = self.client.reserve(request).await?.into_inner();
        if status == ReservationStatus::Pending
            && let Some(r) = made.reservation
        {
            self.holds.push(r.id);
        }
        Ok(())
    }

    async fn query_week(&mut self) -> Result<(), tonic::Status> {
        let start = self.week();
        let request = pb::QueryRequest {
            resource_id: self.resource(),
            start: Some(to_timestamp(start)),
            end: Some(to_timestamp(start + TimeDelta::weeks(1))),
            ..Default::default()
        };
        let mut rows = self.client.query(request).await?.into_inner();
        while let Some(row) = rows.next().await {
            row?;
        }
        Ok(())
    }

    /// What a booking page asks: [`AVAILABILITY_RESOURCES`] resources over
    /// a week of 2027, with the 30-minute slots a reserve would get.
    async fn availability_week(&mut self) -> Result<(), tonic::Status> {
        let start = self.week();
        let request = pb::AvailabilityRequest {
            resource_ids: self.availability_ids(),
            start: Some(to_timestamp(start)),
            end: Some(to_timestamp(start + TimeDelta::weeks(1))),
            quantity: 1,
            slot_duration: Some(to_duration(TimeDelta::minutes(30))),
            slot_step: None,
        };
        self.client.availability(request).await.map(drop)
    }

    /// A booking of three confirmed parts: random hours of 2027 on random
    /// resources (conflicts rare), as reserve-spread reserves one.
    async fn book_three(&mut self) -> Result<(), tonic::Status> {
        let parts = self
            .book_parts()
            .into_iter()
            .map(|(resource_id, start)| pb::Reservation {
                resource_id,
                status: ReservationStatus::Confirmed.into(),
                start: Some(to_timestamp(start)),
                end: Some(to_timestamp(start + TimeDelta::hours(1))),
                quantity: 1,
                ..Default::default()
            })
            .collect();
        let request = pb::BookRequest {
            user_id: self.user.clone(),
            reservations: parts,
            ..Default::default()
        };
        self.client.book(request).await.map(drop)
    }

    async fn get(&mut self) -> Result<(), tonic::Status> {
        let id = match self.holds.last() {
            Some(id) if self.rng.random_bool(0.5) => id.clone(),
            _ if !self.sample.is_empty() => {
                self.sample[self.rng.random_range(0..self.sample.len())].clone()
            }
            _ => return Err(tonic::Status::failed_precondition("nothing to get")),
        };
        self.client.get(pb::GetRequest { id }).await.map(drop)
    }

    /// One call and its outcome.
    async fn once(&mut self) -> String {
        if self.http.is_some() {
            return self.call_http().await;
        }
        outcome(self.call().await)
    }

    /// One call over HTTP/JSON: the same requests as over gRPC.
    async fn call_http(&mut self) -> String {
        let span = |start: DateTime<Utc>| (rfc3339(start), rfc3339(start + TimeDelta::hours(1)));
        let (path, body) = match self.workload {
            Workload::ReserveSpread | Workload::ReserveRegistered | Workload::ReserveHot => {
                let (resource, start) = self.reserve_target();
                let (start, end) = span(start);
                let body = serde_json::json!({"reservation": {
                    "userId": self.user, "resourceId": resource, "start": start, "end": end,
                    "status": "RESERVATION_STATUS_CONFIRMED", "quantity": 1,
                }});
                ("/v1/reservations", body)
            }
            Workload::Availability => {
                let start = self.week();
                let body = serde_json::json!({
                    "resourceIds": self.availability_ids(), "start": rfc3339(start),
                    "end": rfc3339(start + TimeDelta::weeks(1)), "quantity": 1,
                    "slotDuration": "1800s",
                });
                ("/v1/availability", body)
            }
            Workload::Book => {
                let parts: Vec<_> = self
                    .book_parts()
                    .into_iter()
                    .map(|(resource, start)| {
                        let (start, end) = span(start);
                        serde_json::json!({
                            "resourceId": resource, "start": start, "end": end,
                            "status": "RESERVATION_STATUS_CONFIRMED", "quantity": 1,
                        })
                    })
                    .collect();
                let body = serde_json::json!({"userId": self.user, "reservations": parts});
                ("/v1/bookings", body)
            }
            _ => return "not over HTTP".into(),
        };
        match &self.http {
            Some(http) => http.post(path, body).await,
            None => "not over HTTP".into(),
        }
    }

    async fn call(&mut self) -> Result<(), tonic::Status> {
        match self.workload {
            Workload::ReserveSpread
            | Workload::ReserveHot
            | Workload::ReserveCapacity
            | Workload::ReserveRegistered => {
                let (resource, start) = self.reserve_target();
                self.reserve(resource, start, ReservationStatus::Confirmed)
                    .await
            }
            Workload::Query => self.query_week().await,
            Workload::Availability => self.availability_week().await,
            Workload::Book => self.book_three().await,
            Workload::Get => self.get().await,
            Workload::Mixed => match self.rng.random_range(0..100) {
                0..35 => {
                    let (resource, start) = self.reserve_target();
                    self.reserve(resource, start, ReservationStatus::Pending)
                        .await
                }
                35..50 if !self.holds.is_empty() => {
                    let id = self
                        .holds
                        .swap_remove(self.rng.random_range(0..self.holds.len()));
                    self.client
                        .confirm(pb::ConfirmRequest { id })
                        .await
                        .map(drop)
                }
                50..60 if !self.holds.is_empty() => {
                    let id = self
                        .holds
                        .swap_remove(self.rng.random_range(0..self.holds.len()));
                    self.client.cancel(pb::CancelRequest { id }).await.map(drop)
                }
                60..90 => self.query_week().await,
                _ => self.get().await,
            },
        }
    }
}

/// What `rsvp bench` reports.
#[derive(Debug, Serialize)]
pub struct Report {
    workload: String,
    protocol: String,
    clients: usize,
    connections: usize,
    duration_s: f64,
    calls: u64,
    calls_per_s: f64,
    outcomes: BTreeMap<String, u64>,
    latency_ms: Latency,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Serialize)]
struct Latency {
    mean: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

/// How many resources reserve-registered spreads over.
fn registered(resources: u64) -> u64 {
    resources.clamp(1, 1000)
}

/// How many parts one call of the book workload books.
const BOOK_PARTS: usize = 3;

/// How many resources one call of the availability workload asks about.
const AVAILABILITY_RESOURCES: usize = 10;

/// The units of the resource reserve-capacity sells.
const CAPACITY: u32 = 1000;

/// Registers what a workload needs before it runs: a new resource of
/// [`CAPACITY`] units (its id returned), or the resources of
/// reserve-registered (those registered by an earlier run are kept).
async fn prepare(
    channel: Transport,
    workload: Workload,
    resources: u64,
) -> Result<String, tonic::Status> {
    let mut admin = ResourceServiceClient::new(channel);
    let mut create = async |id: String, capacity: u32| {
        let request = pb::CreateResourceRequest {
            resource: Some(pb::Resource {
                id,
                capacity,
                ..Default::default()
            }),
        };
        match admin.create_resource(request).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::AlreadyExists => Ok(()),
            Err(s) => Err(s),
        }
    };
    match workload {
        Workload::ReserveCapacity => {
            let id = format!(
                "bench-capacity-{}",
                &uuid::Uuid::now_v7().simple().to_string()[20..]
            );
            create(id.clone(), CAPACITY).await?;
            Ok(id)
        }
        Workload::ReserveRegistered => {
            for i in 0..registered(resources) {
                create(format!("bench-registered-{i}"), 1).await?;
            }
            Ok(String::new())
        }
        _ => Ok(String::new()),
    }
}

async fn sample_ids(client: &mut Client) -> Result<Vec<String>, tonic::Status> {
    let page = client
        .filter(pb::FilterRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(page.reservations.into_iter().map(|r| r.id).collect())
}

/// The base URL of the HTTP/JSON API, for the workloads it runs.
fn http_base(args: &BenchArgs, cx: &Context) -> Result<String, CliError> {
    let supported = [
        Workload::ReserveSpread,
        Workload::ReserveHot,
        Workload::ReserveRegistered,
        Workload::Availability,
        Workload::Book,
    ];
    if !supported.contains(&args.workload) {
        return Err(CliError::new(
            Exit::Usage,
            "--protocol http runs reserve-spread, reserve-hot, reserve-registered, availability \
             and book",
        ));
    }
    let server = cx.target().server;
    let base = if server.contains("://") {
        server
    } else {
        format!("http://{server}")
    };
    if !base.starts_with("http://") {
        return Err(CliError::new(
            Exit::Usage,
            "--protocol http measures plain HTTP: give an http:// server",
        ));
    }
    Ok(base.trim_end_matches('/').to_string())
}

/// Runs the benchmark and prints its report.
///
/// # Errors
/// When the server cannot be reached, or the `get` workload finds nothing
/// to get.
pub async fn run(args: BenchArgs, cx: &Context, out: &mut impl Write) -> Result<(), CliError> {
    if args.clients == 0 {
        return Err(CliError::new(Exit::Usage, "--clients must be at least 1"));
    }
    let connections = args
        .connections
        .unwrap_or(args.clients)
        .clamp(1, args.clients);
    let mut channels: Vec<Transport> = Vec::with_capacity(connections);
    for _ in 0..connections {
        channels.push(client::channel(&cx.target()).await?);
    }
    let mut probe = Client::new(channels[0].clone());
    let sample = Arc::new(
        sample_ids(&mut probe)
            .await
            .map_err(|s| CliError::from_status(s, &cx.server))?,
    );
    if args.workload == Workload::Get && sample.is_empty() {
        return Err(CliError::new(
            Exit::Other,
            "the get workload needs reservations to get; the server has none",
        ));
    }

    let target = prepare(channels[0].clone(), args.workload, args.resources)
        .await
        .map_err(|s| CliError::from_status(s, &cx.server))?;

    let http_base = match args.protocol {
        Protocol::Grpc => None,
        Protocol::Http => Some(http_base(&args, cx)?),
    };
    let duration = args.duration.0;
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let workers: Vec<_> = (0..args.clients)
        .map(|i| {
            let mut worker = Worker {
                client: Client::new(channels[i % connections].clone()),
                rng: StdRng::seed_from_u64(rand::rng().random()),
                workload: args.workload,
                resources: args.resources,
                user: format!("bench-{i}"),
                sample: sample.clone(),
                holds: Vec::new(),
                target: target.clone(),
                http: http_base.as_ref().map(|base| Http {
                    // One HTTP/1.1 connection per client, kept alive.
                    client: reqwest::Client::builder()
                        .http1_only()
                        .tcp_nodelay(true)
                        .pool_max_idle_per_host(1)
                        .build()
                        .unwrap_or_default(),
                    base: base.clone(),
                    authorization: cx.target().credentials.header(),
                }),
            };
            let done = done.clone();
            tokio::spawn(async move {
                let mut tally = Tally::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let result = worker.once().await;
                    tally.record(t.elapsed(), result);
                    done.fetch_add(1, Ordering::Relaxed);
                }
                tally
            })
        })
        .collect();

    // A progress line while it runs.
    let terminal = std::io::stderr().is_terminal();
    let mut last = 0;
    while Instant::now() < deadline {
        tokio::time::sleep(
            Duration::from_secs(1).min(deadline.saturating_duration_since(Instant::now())),
        )
        .await;
        let now = done.load(Ordering::Relaxed);
        let elapsed = started.elapsed().as_secs_f64();
        let line = format!(
            "{:>5.1}s  {:>9} calls  {:>8.0} calls/s now",
            elapsed,
            now,
            (now - last) as f64
        );
        last = now;
        if terminal {
            eprint!("\r{line}");
        } else {
            eprintln!("{line}");
        }
    }
    if terminal {
        eprintln!();
    }

    let mut total = Tally::new();
    for worker in workers {
        let tally = worker
            .await
            .map_err(|e| CliError::new(Exit::Other, format!("a client failed: {e}")))?;
        total.merge(tally);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let calls = total.latency.len();
    let ms = |us: u64| us as f64 / 1000.0;
    let report = Report {
        workload: args
            .workload
            .to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default(),
        protocol: format!("{:?}", args.protocol).to_lowercase(),
        clients: args.clients,
        connections: match args.protocol {
            // One HTTP/1.1 connection per client.
            Protocol::Http => args.clients,
            Protocol::Grpc => connections,
        },
        duration_s: elapsed,
        calls,
        calls_per_s: calls as f64 / elapsed,
        outcomes: total.outcomes,
        latency_ms: Latency {
            mean: total.latency.mean() / 1000.0,
            p50: ms(total.latency.value_at_quantile(0.50)),
            p90: ms(total.latency.value_at_quantile(0.90)),
            p99: ms(total.latency.value_at_quantile(0.99)),
            max: ms(total.latency.max()),
        },
    };
    print(&report, cx.view.format, out)?;
    Ok(())
}

fn print(report: &Report, format: Format, out: &mut impl Write) -> std::io::Result<()> {
    if format == Format::Json {
        serde_json::to_writer(&mut *out, report).map_err(std::io::Error::other)?;
        return writeln!(out);
    }
    let l = &report.latency_ms;
    writeln!(
        out,
        "workload   {} over {}",
        report.workload, report.protocol
    )?;
    writeln!(
        out,
        "clients    {} over {} connections",
        report.clients, report.connections
    )?;
    writeln!(out, "duration   {:.1}s", report.duration_s)?;
    writeln!(
        out,
        "calls      {} ({:.0}/s)",
        report.calls, report.calls_per_s
    )?;
    let outcomes: Vec<String> = report
        .outcomes
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    writeln!(out, "outcomes   {}", outcomes.join(", "))?;
    writeln!(
        out,
        "latency    mean {:.2} ms, p50 {:.2}, p90 {:.2}, p99 {:.2}, max {:.2}",
        l.mean, l.p50, l.p90, l.p99, l.max
    )?;
    out.flush()
}
