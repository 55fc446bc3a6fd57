//! The performance baseline behind `make bench`: rsvp measured against the
//! database's own ceiling in the same run.
//!
//! 1. A throwaway PostgreSQL with production durability (`fsync`,
//!    `synchronous_commit` and `full_page_writes` on), seeded in bulk with
//!    `BENCH_ROWS` reservations (1M) over `BENCH_RESOURCES` resources (100k).
//! 2. Two ceilings, with `pgbench`, the same clients and duration: the
//!    minimal checked insert (a table with nothing but the exclusion
//!    constraint, one insert per transaction: what PostgreSQL itself can do
//!    for a durable, checked write), and a plain insert into rsvp's own
//!    table (its indexes and change trigger included). Then what each piece
//!    of a reserve costs (`pieces.sql`), each as one round trip.
//! 3. A release `rsvp-server` on it, loaded by `rsvp bench` with
//!    `BENCH_CLIENTS` clients (16) for `BENCH_DURATION` (30s) per workload.
//! 4. Listen's latency from a write on one server to a listener on another.
//! 5. A Query streaming every row while the server's memory is sampled.
//! 6. The embedded store against SQLite's own ceiling (`sqlite_ceiling.rs`).
//!
//! Results go to `target/bench/summary.{json,md}`. Build the binaries first
//! (`cargo build --release --bins`); `make bench` does.

mod listen;
mod sqlite_ceiling;
mod sse;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use reservation::{PgStore, SqliteStore, StoreOptions};
use rsvp_testing::TestCluster;
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

struct Settings {
    duration: String,
    /// How long each piece, the SQLite ceiling and the listen run last.
    piece_duration: String,
    clients: usize,
    rows: i64,
    resources: i64,
    out: PathBuf,
    bin: PathBuf,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn settings() -> anyhow::Result<Settings> {
    let exe = std::env::current_exe()?;
    // target/release/examples/bench -> target/release
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .context("locating the release binaries")?
        .to_path_buf();
    for name in ["rsvp-server", "rsvp"] {
        if !bin.join(name).is_file() {
            bail!(
                "{} is missing: run `cargo build --release --bins` first (make bench does)",
                bin.join(name).display()
            );
        }
    }
    let out = bin.parent().context("locating target/")?.join("bench");
    std::fs::create_dir_all(&out)?;
    Ok(Settings {
        duration: std::env::var("BENCH_DURATION").unwrap_or_else(|_| "30s".into()),
        piece_duration: std::env::var("BENCH_PIECE_DURATION").unwrap_or_else(|_| "10s".into()),
        clients: env_or("BENCH_CLIENTS", 16),
        rows: env_or("BENCH_ROWS", 1_000_000),
        resources: env_or("BENCH_RESOURCES", 100_000),
        out,
        bin,
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(50151)
}

/// A release `rsvp-server`, killed when dropped.
struct Server {
    child: Child,
    url: String,
    /// Sent with every call, when the server checks tokens.
    token: Option<String>,
}

impl Server {
    fn start(s: &Settings, store: &[&str]) -> anyhow::Result<Server> {
        let port = free_port();
        let child = Command::new(s.bin.join("rsvp-server"))
            .args(store)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--log-level",
                "warn",
            ])
            .args(["--pool-size", &s.clients.to_string()])
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .spawn()
            .context("starting rsvp-server")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("rsvp-server did not start");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
            token: None,
        })
    }

    /// A server on `url` that checks API tokens, and a `service` token
    /// for the bench's clients (which act for many users).
    fn start_with_tokens(s: &Settings, url: &str) -> anyhow::Result<Server> {
        let made = Command::new(s.bin.join("rsvp-server"))
            .args([
                "--database-url",
                url,
                "--log-level",
                "warn",
                "token",
                "create",
            ])
            .args(["--principal", "bench", "--role", "service"])
            .env_remove("RUST_LOG")
            .stderr(Stdio::null())
            .output()
            .context("making a token")?;
        if !made.status.success() {
            bail!("rsvp-server token create failed");
        }
        let token = String::from_utf8(made.stdout)?.trim().to_string();
        let mut server = Server::start(s, &["--database-url", url, "--auth", "token"])?;
        server.token = Some(token);
        Ok(server)
    }

    fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `rsvp bench` for one workload; its JSON report.
fn bench(s: &Settings, server: &Server, workload: &str) -> anyhow::Result<Value> {
    bench_with(s, server, workload, s.clients)
}

/// `rsvp bench` for one workload with `clients` clients; its JSON report.
fn bench_with(
    s: &Settings,
    server: &Server,
    workload: &str,
    clients: usize,
) -> anyhow::Result<Value> {
    bench_on(s, server, workload, clients, s.resources)
}

/// `rsvp bench --protocol http` for one workload; its JSON report.
fn bench_http(s: &Settings, server: &Server, workload: &str) -> anyhow::Result<Value> {
    bench_run(s, server, workload, s.clients, s.resources, "http")
}

/// `rsvp bench` for one workload with `clients` clients over `resources`
/// resources; its JSON report.
fn bench_on(
    s: &Settings,
    server: &Server,
    workload: &str,
    clients: usize,
    resources: i64,
) -> anyhow::Result<Value> {
    bench_run(s, server, workload, clients, resources, "grpc")
}

/// `rsvp bench` with everything given.
fn bench_run(
    s: &Settings,
    server: &Server,
    workload: &str,
    clients: usize,
    resources: i64,
    protocol: &str,
) -> anyhow::Result<Value> {
    eprintln!(
        "== {workload} over {protocol}: {clients} clients over {resources} resources for {}",
        s.duration
    );
    let mut rsvp = Command::new(s.bin.join("rsvp"));
    if let Some(token) = &server.token {
        rsvp.env("RSVP_TOKEN", token);
    }
    let out = rsvp
        .args([
            "--server",
            &server.url,
            "-o",
            "json",
            "bench",
            "--workload",
            workload,
        ])
        .args(["--clients", &clients.to_string(), "--duration", &s.duration])
        .args(["--resources", &resources.to_string()])
        .args(["--protocol", protocol])
        .stderr(Stdio::inherit())
        .output()
        .context("running rsvp bench")?;
    if !out.status.success() {
        bail!("rsvp bench --workload {workload} failed");
    }
    let report: Value = serde_json::from_slice(&out.stdout)?;
    eprintln!("   {}", report);
    Ok(report)
}

/// A `pgbench` script: what the database alone does for a call.
struct Script {
    name: &'static str,
    text: String,
}

impl Script {
    /// A script calling `body` with a random resource (`:r`) and hour
    /// (`:h`) of 2027.
    fn new(name: &'static str, resources: i64, body: &str) -> Script {
        let r = resources - 1;
        Script {
            name,
            text: format!("\\set r random(0, {r})\n\\set h random(0, 8759)\n{body}\n"),
        }
    }

    /// The ceiling: one checked insert per transaction into a table with
    /// nothing but the exclusion constraint.
    fn ceiling(resources: i64) -> Script {
        Script::new(
            "ceiling",
            resources,
            "INSERT INTO bench.minimal VALUES ('bench-' || :r, bench.span(:h)) ON CONFLICT DO NOTHING;",
        )
    }

    /// One reservation inserted per transaction into rsvp's own table, as
    /// reserve-spread writes (its indexes and change trigger included).
    fn insert(resources: i64) -> Script {
        Script::new(
            "insert",
            resources,
            "INSERT INTO rsvp.reservations (id, user_id, resource_id, status, timespan, created_at, updated_at) \
             VALUES (gen_random_uuid(), 'pgbench', 'bench-' || :r, 'confirmed', bench.span(:h), now(), now()) \
             ON CONFLICT DO NOTHING;",
        )
    }

    /// The statement of the query workload: a week of one resource.
    fn select(resources: i64) -> Script {
        Script {
            name: "select",
            text: format!(
                "\\set r random(0, {})\n\\set w random(0, 51)\n\
                 SELECT * FROM rsvp.reservations WHERE resource_id = 'bench-' || :r \
                 AND timespan && tstzrange('2027-01-01'::timestamptz + :w * interval '1 week', \
                                           '2027-01-01'::timestamptz + (:w + 1) * interval '1 week', '[)') \
                 ORDER BY lower(timespan), id LIMIT 500;\n",
                resources - 1
            ),
        }
    }

    /// The pieces of a reserve, from the ceiling up (`pieces.sql`).
    fn pieces(resources: i64) -> Vec<Script> {
        let call = |name: &'static str, function: &str| {
            Script::new(name, resources, &format!("SELECT {function}(:r, :h);"))
        };
        vec![
            call("+ lock", "bench.lock"),
            call("+ lock, read", "bench.lock_read"),
            call(
                "rsvp's columns and checks, lock, read",
                "bench.shape_exclusion",
            ),
            call("+ primary key", "bench.shape_pk"),
            call("+ GiST (resource, timespan)", "bench.shape_resource"),
            call("+ GiST (user, timespan)", "bench.shape_user"),
            call("+ btree (start, id)", "bench.shape_start"),
            call(
                "+ btrees (resource, start, id), (user, start, id)",
                "bench.shape_keyset",
            ),
            call("+ change row (trigger)", "bench.shape_changes"),
            call("+ expiry UPDATE finding nothing", "bench.shape_settle"),
            Script::new(
                "rsvp.place, one reserve per transaction",
                resources,
                "SELECT count(*) FROM rsvp.place(ARRAY[gen_random_uuid()], ARRAY['pgbench'], \
                 ARRAY['bench-' || :r], ARRAY[bench.span(:h)], ARRAY['confirmed'], ARRAY[''], \
                 ARRAY[NULL::interval], ARRAY[NULL::text], ARRAY[NULL::bigint], ARRAY[1], \
                 ARRAY[0::bigint], ARRAY[0::bigint], ARRAY[0::bigint], ARRAY[false], NULL, 20, \
                 NULL::uuid, ARRAY[NULL::timestamptz], ARRAY[NULL::timestamptz]);",
            ),
        ]
    }
}

/// `pgbench` running `script` with the same clients and duration as the
/// workloads, prepared statements as the service uses; its throughput and
/// latencies, from its per-transaction log.
fn pgbench(
    s: &Settings,
    cluster: &TestCluster,
    script: &Script,
    duration: &str,
) -> anyhow::Result<Value> {
    let name = script.name;
    let slug: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let file = s.out.join(format!("{slug}.sql"));
    std::fs::write(&file, &script.text)?;
    let logs = s.out.join(format!("pgbench-{slug}"));
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&logs)?;
    let seconds = humantime::parse_duration(duration)?.as_secs().max(1);
    eprintln!("== pgbench {name}: {} clients for {seconds}s", s.clients);
    let out = Command::new(cluster.bin_dir().join("pgbench"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &cluster.port().to_string(),
            "-U",
            "postgres",
        ])
        .args([
            "-n",
            "-M",
            "prepared",
            "-c",
            &s.clients.to_string(),
            "-j",
            "2",
            "-T",
            &seconds.to_string(),
            "--log",
        ])
        .arg(format!("--log-prefix={}", logs.join("log").display()))
        .arg("-f")
        .arg(&file)
        .arg("rsvp")
        .output()
        .context("running pgbench")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let tps: f64 = text
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.trim_start_matches("tps = ").split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| {
            format!(
                "no tps in pgbench's output: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    // Each log line: client, transaction, latency in µs, script, epoch, µs.
    let mut latencies = hdrhistogram::Histogram::<u64>::new(3)?;
    for entry in std::fs::read_dir(&logs)? {
        for line in std::fs::read_to_string(entry?.path())?.lines() {
            if let Some(us) = line.split_whitespace().nth(2).and_then(|v| v.parse().ok()) {
                latencies.record(us)?;
            }
        }
    }
    let mut latency = latency_ms(&latencies);
    latency["mean"] = json!(latencies.mean() / 1000.0);
    let report = json!({
        "calls_per_s": tps,
        "calls": latencies.len(),
        "latency_ms": latency,
    });
    eprintln!("   {report}");
    Ok(report)
}

/// Percentiles and the maximum of `latency` (recorded in µs), in ms.
pub fn latency_ms(latency: &hdrhistogram::Histogram<u64>) -> Value {
    let ms = |us: u64| us as f64 / 1000.0;
    json!({
        "p50": ms(latency.value_at_quantile(0.50)),
        "p90": ms(latency.value_at_quantile(0.90)),
        "p99": ms(latency.value_at_quantile(0.99)),
        "max": ms(latency.max()),
    })
}

/// How PostgreSQL runs the statement of one availability call (10 resources
/// over a week, as the workload asks), with its timings and buffers: the
/// function's inner statement as `auto_explain` reports it to the client.
fn availability_plan(cluster: &TestCluster, resources: i64) -> anyhow::Result<String> {
    let ids: Vec<String> = (0..10)
        .map(|i| format!("'bench-{}'", (i * 7919) % resources.max(1)))
        .collect();
    let spans = vec!["'[2027-03-01 00:00+00,2027-03-08 00:00+00)'"; ids.len()];
    let sql = format!(
        "LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0; \
         SET auto_explain.log_analyze = on; SET auto_explain.log_buffers = on; \
         SET auto_explain.log_timing = on; SET auto_explain.log_nested_statements = on; \
         SET auto_explain.log_level = notice; SET client_min_messages = notice; \
         SELECT count(*) FROM rsvp.availability(ARRAY[{}], ARRAY[{}]::tstzrange[], now());",
        ids.join(","),
        spans.join(",")
    );
    // Twice: the first call plans and reads from disk; the second is the
    // steady state the workload sees.
    let mut plan = String::new();
    for _ in 0..2 {
        let out = Command::new(cluster.bin_dir().join("psql"))
            .args([
                "-X",
                "-q",
                "-h",
                "127.0.0.1",
                "-p",
                &cluster.port().to_string(),
            ])
            .args(["-U", "postgres", "-d", "rsvp", "-c", &sql])
            .output()
            .context("running psql")?;
        let text = String::from_utf8_lossy(&out.stderr);
        // The first notice is the inner statement's; the next is the call's.
        plan = text
            .split("NOTICE:  ")
            .find(|n| n.contains("Query Text:"))
            .unwrap_or(&text)
            .trim_end()
            .to_string();
    }
    eprintln!("== availability plan\n{plan}");
    Ok(plan)
}

/// Streams every reservation through the server, sampling its memory.
fn stream_everything(s: &Settings, server: &Server) -> anyhow::Result<Value> {
    eprintln!("== query streaming every row");
    let baseline = server.rss_kib();
    let started = Instant::now();
    let mut child = Command::new(s.bin.join("rsvp"))
        .args(["--server", &server.url, "-o", "json", "query"])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut stdout = child.stdout.take().context("rsvp's output")?;
    let counter = std::thread::spawn(move || {
        let mut buf = [0u8; 64 * 1024];
        let mut lines = 0u64;
        while let Ok(n) = std::io::Read::read(&mut stdout, &mut buf) {
            if n == 0 {
                break;
            }
            lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        }
        lines
    });
    let mut peak = baseline;
    while child.try_wait()?.is_none() {
        peak = peak.max(server.rss_kib());
        std::thread::sleep(Duration::from_millis(20));
    }
    let rows = counter
        .join()
        .map_err(|_| anyhow::anyhow!("counting rows"))?;
    let seconds = started.elapsed().as_secs_f64();
    let report = json!({
        "rows": rows,
        "seconds": seconds,
        "rows_per_s": rows as f64 / seconds,
        "server_rss_baseline_mib": baseline as f64 / 1024.0,
        "server_rss_peak_mib": peak as f64 / 1024.0,
    });
    eprintln!("   {report}");
    Ok(report)
}

async fn seed_postgres(url: &str, s: &Settings) -> anyhow::Result<()> {
    // Bulk statements take longer than any call should.
    let store = PgStore::connect(
        url,
        StoreOptions {
            statement_timeout: None,
            ..StoreOptions::default()
        },
    )
    .await?;
    let pool = store.pool();
    eprintln!(
        "== seeding {} reservations over {} resources (PostgreSQL)",
        s.rows, s.resources
    );
    let started = Instant::now();
    // Bulk, not through the API; the change feed is not part of a seed.
    pool.execute("ALTER TABLE rsvp.reservations DISABLE TRIGGER reservations_record_insert_delete")
        .await?;
    let chunk = 100_000;
    let mut from = 0;
    while from < s.rows {
        let to = (from + chunk).min(s.rows);
        // The k-th reservation of a resource lies in the k-th tenth of 2027.
        sqlx::query(
            "INSERT INTO rsvp.reservations (id, user_id, resource_id, status, timespan, created_at, updated_at) \
             SELECT gen_random_uuid(), 'seed-' || (g % 1000), 'bench-' || (g % $3), 'confirmed', \
                    tstzrange(t, t + interval '1 hour', '[)'), now(), now() \
             FROM generate_series($1::bigint, $2::bigint - 1) g, \
                  LATERAL (SELECT '2027-01-01'::timestamptz \
                           + (((g / $3) % 10) * 876 + (g * 7919) % 800) * interval '1 hour' AS t) x",
        )
        .bind(from)
        .bind(to)
        .bind(s.resources)
        .execute(pool)
        .await?;
        from = to;
    }
    pool.execute("ALTER TABLE rsvp.reservations ENABLE TRIGGER reservations_record_insert_delete")
        .await?;
    pool.execute("VACUUM ANALYZE rsvp.reservations").await?;
    pool.execute("CHECKPOINT").await?;
    eprintln!("   seeded in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

async fn seed_sqlite(path: &Path, s: &Settings) -> anyhow::Result<()> {
    let store = SqliteStore::open(path, StoreOptions::default()).await?;
    eprintln!(
        "== seeding {} reservations over {} resources (embedded)",
        s.rows, s.resources
    );
    let started = Instant::now();
    let chunk = 100_000;
    let mut from = 0;
    let year = 1_798_761_600_000_000i64; // 2027-01-01T00:00:00Z in microseconds
    let hour = 3_600_000_000i64;
    while from < s.rows {
        let to = (from + chunk).min(s.rows);
        sqlx::query(
            "WITH RECURSIVE g(n) AS (SELECT ?1 UNION ALL SELECT n + 1 FROM g WHERE n + 1 < ?2) \
             INSERT INTO reservations (id, user_id, resource_id, status, start_us, end_us, \
                                       created_us, updated_us) \
             SELECT lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-7' || \
                          substr(hex(randomblob(2)), 2) || '-8' || substr(hex(randomblob(2)), 2) || \
                          '-' || hex(randomblob(6))), \
                    'seed-' || (n % 1000), 'bench-' || (n % ?3), 'confirmed', \
                    ?4 + (((n / ?3) % 10) * 876 + (n * 7919) % 800) * ?5, \
                    ?4 + (((n / ?3) % 10) * 876 + (n * 7919) % 800 + 1) * ?5, ?4, ?4 \
             FROM g",
        )
        .bind(from)
        .bind(to)
        .bind(s.resources)
        .bind(year)
        .bind(hour)
        .execute(store.pool())
        .await?;
        from = to;
    }
    store.pool().execute("ANALYZE").await?;
    eprintln!("   seeded in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_default();
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.trim_start_matches("MemTotal:").trim().to_string())
        })
        .unwrap_or_default();
    json!({
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "memory": memory,
    })
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn rate(report: &Value) -> f64 {
    report["calls_per_s"].as_f64().unwrap_or(0.0)
}

fn markdown(summary: &Value) -> String {
    let mut md = String::new();
    let pg = &summary["postgres"];
    let row = |name: &str, r: &Value| {
        let l = &r["latency_ms"];
        let outcomes = r["outcomes"]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        format!(
            "| {name} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {outcomes} |\n",
            rate(r),
            l["p50"].as_f64().unwrap_or(0.0),
            l["p90"].as_f64().unwrap_or(0.0),
            l["p99"].as_f64().unwrap_or(0.0),
            l["max"].as_f64().unwrap_or(0.0),
        )
    };
    md.push_str(&format!(
        "{} clients, {} per workload, {} reservations over {} resources.\n\n",
        summary["clients"],
        summary["duration"].as_str().unwrap_or(""),
        summary["rows"],
        summary["resources"]
    ));
    md.push_str("| store / workload | calls/s | p50 ms | p90 ms | p99 ms | max ms | outcomes |\n|---|---|---|---|---|---|---|\n");
    for w in [
        "pgbench ceiling",
        "pgbench insert",
        "reserve-spread",
        "reserve-spread, token auth",
        "reserve-spread, HTTP/JSON",
        "reserve-spread, again",
        "reserve-hot",
        "book",
        "reserve-capacity",
        "reserve-spread, as many resources as registered",
        "reserve-registered",
        "pgbench select",
        "query",
        "availability, 4 clients",
        "availability",
        "get",
        "mixed",
    ] {
        md.push_str(&row(&format!("PostgreSQL {w}"), &pg[w]));
    }
    let lite = &summary["embedded"];
    for w in [
        "reserve-spread",
        "reserve-hot",
        "book",
        "reserve-capacity",
        "query",
        "availability",
    ] {
        md.push_str(&row(&format!("embedded {w}"), &lite[w]));
    }
    let sq = &lite["sqlite ceiling"];
    md.push_str(&format!(
        "\nSQLite's own ceiling (WAL, synchronous=FULL): {:.0} inserts/s one per transaction, \
         {:.0}/s sixteen per transaction.\n",
        sq["one_per_transaction_per_s"].as_f64().unwrap_or(0.0),
        sq["sixteen_per_transaction_per_s"].as_f64().unwrap_or(0.0),
    ));
    let l = &pg["listen"];
    md.push_str(&format!(
        "\nListen across servers at {} changes/s: {} written, {} received; latency p50 {:.2} ms, \
         p90 {:.2}, p99 {:.2}, max {:.2}.\n",
        l["rate_per_s"],
        l["written"],
        l["received"],
        l["latency_ms"]["p50"].as_f64().unwrap_or(0.0),
        l["latency_ms"]["p90"].as_f64().unwrap_or(0.0),
        l["latency_ms"]["p99"].as_f64().unwrap_or(0.0),
        l["latency_ms"]["max"].as_f64().unwrap_or(0.0),
    ));
    let e = &pg["sse"];
    md.push_str(&format!(
        "\nServer-Sent Events to {} streams at {} changes/s: {} written, {} of {} deliveries; \
         latency p50 {:.2} ms, p90 {:.2}, p99 {:.2}, max {:.2}.\n",
        e["streams"],
        e["rate_per_s"],
        e["written"],
        e["deliveries"],
        e["deliveries_expected"],
        e["latency_ms"]["p50"].as_f64().unwrap_or(0.0),
        e["latency_ms"]["p90"].as_f64().unwrap_or(0.0),
        e["latency_ms"]["p99"].as_f64().unwrap_or(0.0),
        e["latency_ms"]["max"].as_f64().unwrap_or(0.0),
    ));
    md.push_str("\nWhat each piece of a reserve costs PostgreSQL (pgbench, one call per transaction):\n\n| piece | calls/s | ÷ ceiling |\n|---|---|---|\n");
    let ceiling = rate(&pg["pgbench ceiling"]);
    if let Some(pieces) = pg["pieces"].as_array() {
        for p in pieces {
            let r = rate(p);
            md.push_str(&format!(
                "| {} | {:.0} | {:.2} |\n",
                p["piece"].as_str().unwrap_or(""),
                r,
                if ceiling > 0.0 { r / ceiling } else { 0.0 }
            ));
        }
    }
    let t = &summary["targets"];
    md.push_str("\n| target | measured | goal | met |\n|---|---|---|---|\n");
    for (name, key, goal) in [
        ("reserve-spread ÷ ceiling", "spread_over_ceiling", "≥ 0.8"),
        (
            "reserve-hot attempts ÷ reserve-spread",
            "hot_over_spread",
            "≥ 0.5",
        ),
        (
            "reserve-hot outcomes other than ok/conflict",
            "hot_other_outcomes",
            "0",
        ),
        (
            "book (three parts) ÷ reserve-spread, PostgreSQL",
            "book_over_spread",
            "≥ 0.5",
        ),
        (
            "book outcomes other than ok/conflict",
            "book_other_outcomes",
            "0",
        ),
        (
            "reserve-spread with token auth ÷ without (mean of the runs before and after)",
            "token_auth_over_spread",
            "≥ 0.95",
        ),
        (
            "reserve-capacity units sold (PostgreSQL / embedded), 64 clients",
            "capacity_sold",
            "1000 / 1000",
        ),
        (
            "reserve-capacity outcomes other than ok/conflict",
            "capacity_other_outcomes",
            "0",
        ),
        (
            "reserve-capacity attempts ÷ reserve-spread",
            "capacity_over_spread",
            "≥ 0.5",
        ),
        (
            "reserve-registered (capacity 1, no policy) ÷ reserve-spread on as many resources",
            "registered_over_spread",
            "≥ 0.9 (same cost)",
        ),
        (
            "embedded reserve-spread ÷ SQLite's ceiling",
            "embedded_spread_over_sqlite_ceiling",
            "≥ 0.8",
        ),
        (
            "Listen p99 across servers (ms), 1,000 changes/s",
            "listen_p99_ms",
            "< 10",
        ),
        ("query p99 (ms), 1M rows", "query_p99_ms", "< 5"),
        (
            "availability p99 (ms), 10 resources × 7 days, 30-minute slots, 4 clients",
            "availability_p99_ms",
            "< 5",
        ),
        (
            "availability ÷ query calls/s",
            "availability_over_query",
            "≥ 0.5",
        ),
        (
            "availability outcomes other than ok",
            "availability_other_outcomes",
            "0",
        ),
        (
            "server RSS streaming every row (MiB)",
            "stream_rss_peak_mib",
            "< 200",
        ),
    ] {
        let v = &t[key];
        md.push_str(&format!(
            "| {name} | {} | {goal} | {} |\n",
            v["value"],
            if v["met"].as_bool().unwrap_or(false) {
                "yes"
            } else {
                "no"
            }
        ));
    }
    md.push_str(&format!(
        "\nreserve-spread ÷ pgbench insert into rsvp's own table: {}; query ÷ pgbench select: {}\n",
        summary["ratios"]["spread_over_pgbench_insert"],
        summary["ratios"]["query_over_pgbench_select"]
    ));
    md.push_str(&format!(
        "\nThe statement of one availability call (10 resources, a week), as PostgreSQL ran it:\n\n```text\n{}\n```\n",
        pg["availability plan"].as_str().unwrap_or("")
    ));
    md
}

/// `BENCH_ONLY=listen`: only Listen's latency across two servers of an
/// empty database, `BENCH_REPEAT` times (3), for comparing changes to the
/// feed quickly.
async fn listen_only(s: &Settings, url: &str) -> anyhow::Result<()> {
    drop(PgStore::connect(url, StoreOptions::default()).await?);
    let writer = Server::start(s, &["--database-url", url])?;
    let listener = Server::start(s, &["--database-url", url])?;
    for _ in 0..env_or("BENCH_REPEAT", 3) {
        listen::measure(
            &writer.url,
            &listener.url,
            1000,
            humantime::parse_duration(&s.piece_duration)?,
        )
        .await?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let s = settings()?;
    let cluster = tokio::task::spawn_blocking(|| {
        TestCluster::start_with(&[
            ("fsync", "on"),
            ("synchronous_commit", "on"),
            ("full_page_writes", "on"),
            ("shared_buffers", "512MB"),
            ("max_wal_size", "4GB"),
            ("checkpoint_timeout", "30min"),
            ("max_connections", "200"),
        ])
    })
    .await?
    .map_err(|e| anyhow::anyhow!(e))?;
    let mut admin = PgConnection::connect(&cluster.url("postgres")).await?;
    admin
        .execute(AssertSqlSafe("CREATE DATABASE rsvp".to_string()))
        .await?;
    let url = cluster.url("rsvp");
    if std::env::var("BENCH_ONLY").as_deref() == Ok("listen") {
        return listen_only(&s, &url).await;
    }
    seed_postgres(&url, &s).await?;
    {
        let store = PgStore::connect(&url, StoreOptions::default()).await?;
        sqlx::raw_sql(include_str!("pieces.sql"))
            .execute(store.pool())
            .await
            .context("creating the tables of the pieces")?;
    }

    let server = Server::start(&s, &["--database-url", &url])?;
    // Warm the server and the database's caches.
    let warm = Settings {
        duration: "3s".into(),
        ..settings()?
    };
    bench(&warm, &server, "query")?;
    let ceiling = pgbench(&s, &cluster, &Script::ceiling(s.resources), &s.duration)?;
    let pgbench_insert = pgbench(&s, &cluster, &Script::insert(s.resources), &s.duration)?;
    let spread = bench(&s, &server, "reserve-spread")?;
    // The same with every call authenticated by an API token, between two
    // runs without, so that drift in the machine does not favour either.
    let tokens = Server::start_with_tokens(&s, &url)?;
    bench(&warm, &tokens, "reserve-spread")?;
    let spread_token = bench(&s, &tokens, "reserve-spread")?;
    drop(tokens);
    // HTTP/JSON, also between the two gRPC runs.
    bench_http(&warm, &server, "reserve-spread")?;
    let spread_http = bench_http(&s, &server, "reserve-spread")?;
    let spread_again = bench(&s, &server, "reserve-spread")?;
    let hot = bench(&s, &server, "reserve-hot")?;
    let book = bench(&s, &server, "book")?;
    let pgbench_select = pgbench(&s, &cluster, &Script::select(s.resources), &s.duration)?;
    let query = bench(&s, &server, "query")?;
    let availability_4 = bench_with(&s, &server, "availability", 4)?;
    let availability = bench(&s, &server, "availability")?;
    let availability_plan = availability_plan(&cluster, s.resources)?;
    let get = bench(&s, &server, "get")?;
    let mixed = bench(&s, &server, "mixed")?;
    let capacity = bench_with(&s, &server, "reserve-capacity", 64)?;
    // The same spread over as many unregistered resources as
    // reserve-registered uses (1,000): rows as dense per resource, so the
    // two differ only in the resources being registered.
    let spread_dense = bench_on(
        &s,
        &server,
        "reserve-spread",
        s.clients,
        s.resources.clamp(1, 1000),
    )?;
    let registered = bench(&s, &server, "reserve-registered")?;
    let stream = stream_everything(&s, &server)?;
    let second = Server::start(&s, &["--database-url", &url])?;
    let listen = listen::measure(
        &server.url,
        &second.url,
        1000,
        humantime::parse_duration(&s.piece_duration)?,
    )
    .await?;
    drop(second);
    let sse = sse::measure(
        &server.url,
        100,
        100,
        humantime::parse_duration(&s.piece_duration)?,
    )
    .await?;
    drop(server);
    let mut pieces =
        vec![json!({ "piece": "ceiling (minimal checked insert)", "calls_per_s": rate(&ceiling) })];
    for script in Script::pieces(s.resources) {
        let r = pgbench(&s, &cluster, &script, &s.piece_duration)?;
        pieces.push(json!({ "piece": script.name, "calls_per_s": rate(&r) }));
    }

    let dir = s.out.join("embedded");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let sqlite_ceiling =
        sqlite_ceiling::measure(&dir, humantime::parse_duration(&s.piece_duration)?)?;
    seed_sqlite(&dir.join("rsvp.db"), &s).await?;
    let lite = Server::start(&s, &["--data-dir", dir.to_str().context("a UTF-8 path")?])?;
    let lite_spread = bench(&s, &lite, "reserve-spread")?;
    let lite_hot = bench(&s, &lite, "reserve-hot")?;
    let lite_book = bench(&s, &lite, "book")?;
    let lite_query = bench(&s, &lite, "query")?;
    let lite_availability = bench(&s, &lite, "availability")?;
    let lite_capacity = bench_with(&s, &lite, "reserve-capacity", 64)?;
    drop(lite);

    let other = |report: &Value| -> u64 {
        report["outcomes"]
            .as_object()
            .map(|o| {
                o.iter()
                    .filter(|(k, _)| *k != "ok" && *k != "conflict")
                    .filter_map(|(_, v)| v.as_u64())
                    .sum()
            })
            .unwrap_or(0)
    };
    let hot_other = other(&hot);
    let sold = |report: &Value| report["outcomes"]["ok"].as_u64().unwrap_or(0);
    let capacity_other = other(&capacity) + other(&lite_capacity);
    let capacity_sold = (sold(&capacity), sold(&lite_capacity));
    let capacity_ratio = rate(&capacity) / rate(&spread);
    let registered_ratio = rate(&registered) / rate(&spread_dense);
    let spread_over_ceiling = rate(&spread) / rate(&ceiling);
    let spread_ratio = rate(&spread) / rate(&pgbench_insert);
    let query_ratio = rate(&query) / rate(&pgbench_select);
    let hot_ratio = rate(&hot) / rate(&spread);
    let book_ratio = rate(&book) / rate(&spread);
    let token_ratio = rate(&spread_token) / ((rate(&spread) + rate(&spread_again)) / 2.0);
    let http_ratio = rate(&spread_http) / ((rate(&spread) + rate(&spread_again)) / 2.0);
    let sse_p99 = sse["latency_ms"]["p99"].as_f64().unwrap_or(f64::MAX);
    let sse_missing = sse["deliveries_expected"]
        .as_u64()
        .unwrap_or(0)
        .saturating_sub(sse["deliveries"].as_u64().unwrap_or(0));
    let book_other = other(&book) + other(&lite_book);
    let lite_ceiling = sqlite_ceiling["one_per_transaction_per_s"]
        .as_f64()
        .unwrap_or(f64::MAX);
    let lite_ratio = rate(&lite_spread) / lite_ceiling;
    let listen_p99 = listen["latency_ms"]["p99"].as_f64().unwrap_or(f64::MAX);
    let query_p99 = query["latency_ms"]["p99"].as_f64().unwrap_or(f64::MAX);
    let availability_p99 = availability_4["latency_ms"]["p99"]
        .as_f64()
        .unwrap_or(f64::MAX);
    let availability_ratio = rate(&availability) / rate(&query);
    let availability_other = other(&availability_4) + other(&availability);
    let rss = stream["server_rss_peak_mib"].as_f64().unwrap_or(f64::MAX);
    let summary = json!({
        "machine": machine(),
        "clients": s.clients,
        "duration": s.duration,
        "rows": s.rows,
        "resources": s.resources,
        "postgres": {
            "pgbench ceiling": ceiling,
            "pgbench insert": pgbench_insert,
            "pgbench select": pgbench_select,
            "reserve-spread": spread,
            "reserve-spread, token auth": spread_token,
            "reserve-spread, HTTP/JSON": spread_http,
            "reserve-spread, again": spread_again,
            "reserve-hot": hot,
            "book": book,
            "query": query,
            "availability, 4 clients": availability_4,
            "availability": availability,
            "availability plan": availability_plan,
            "get": get,
            "mixed": mixed,
            "reserve-capacity": capacity,
            "reserve-spread, as many resources as registered": spread_dense,
            "reserve-registered": registered,
            "stream_all": stream,
            "listen": listen,
            "sse": sse,
            "pieces": pieces,
        },
        "embedded": {
            "sqlite ceiling": sqlite_ceiling,
            "reserve-spread": lite_spread,
            "reserve-hot": lite_hot,
            "book": lite_book,
            "query": lite_query,
            "availability": lite_availability,
            "reserve-capacity": lite_capacity,
        },
        "targets": {
            "spread_over_ceiling": { "value": round2(spread_over_ceiling), "met": spread_over_ceiling >= 0.8 },
            "hot_over_spread": { "value": round2(hot_ratio), "met": hot_ratio >= 0.5 },
            "hot_other_outcomes": { "value": hot_other, "met": hot_other == 0 },
            "book_over_spread": { "value": round2(book_ratio), "met": book_ratio >= 0.5 },
            "token_auth_over_spread": { "value": round2(token_ratio), "met": token_ratio >= 0.95 },
            "http_over_grpc_spread": { "value": round2(http_ratio), "met": http_ratio >= 0.8 },
            "sse_100_streams_p99_ms": { "value": round2(sse_p99), "met": sse_p99 < 50.0 },
            "sse_missing_deliveries": { "value": sse_missing, "met": sse_missing == 0 },
            "book_other_outcomes": { "value": book_other, "met": book_other == 0 },
            "capacity_sold": {
                "value": format!("{} / {}", capacity_sold.0, capacity_sold.1),
                "met": capacity_sold == (1000, 1000),
            },
            "capacity_other_outcomes": { "value": capacity_other, "met": capacity_other == 0 },
            "capacity_over_spread": { "value": round2(capacity_ratio), "met": capacity_ratio >= 0.5 },
            "registered_over_spread": { "value": round2(registered_ratio), "met": registered_ratio >= 0.9 },
            "embedded_spread_over_sqlite_ceiling": { "value": round2(lite_ratio), "met": lite_ratio >= 0.8 },
            "listen_p99_ms": { "value": round2(listen_p99), "met": listen_p99 < 10.0 },
            "query_p99_ms": { "value": round2(query_p99), "met": query_p99 < 5.0 },
            "availability_p99_ms": { "value": round2(availability_p99), "met": availability_p99 < 5.0 },
            "availability_over_query": { "value": round2(availability_ratio), "met": availability_ratio >= 0.5 },
            "availability_other_outcomes": { "value": availability_other, "met": availability_other == 0 },
            "stream_rss_peak_mib": { "value": rss.round(), "met": rss < 200.0 },
        },
        "ratios": {
            "spread_over_pgbench_insert": round2(spread_ratio),
            "query_over_pgbench_select": round2(query_ratio),
        },
    });
    std::fs::write(
        s.out.join("summary.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    let md = markdown(&summary);
    std::fs::write(s.out.join("summary.md"), &md)?;
    println!("{md}");
    eprintln!(
        "written: {} and summary.md",
        s.out.join("summary.json").display()
    );
    Ok(())
}
