//! A Query that streams every row of one busy resource out of a large
//! table, with and without the keyset indexes (`reservations_resource_start_id`,
//! `reservations_user_start_id`): `make bench-scale`.
//!
//! 1. A throwaway PostgreSQL seeded in bulk with `SCALE_ROWS` reservations
//!    (10M): `SCALE_BUSY` (100,000) on the resource `busy`, the rest over
//!    100,000 other resources.
//!    Rows go in without indexes; the indexes are built after, two at a
//!    time, and the exclusion constraint comes back as a plain index of
//!    the same definition (a read uses indexes, not constraints; adding the
//!    constraint would check every row against the others).
//! 2. A release `rsvp-server` on it; `rsvp query --resource busy` streams
//!    every row of `busy` (keyset batches of 500), three times, without the
//!    keyset indexes and then with them. The plan of one batch is kept.
//!
//! Results go to `target/bench/query-scale.{json,md}`. Build the binaries
//! first (`cargo build --release --bins`); `make bench-scale` does.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use reservation::{PgStore, StoreOptions};
use rsvp_testing::TestCluster;
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

fn env_or(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Streams every row of `busy`; rows and seconds.
fn stream(bin: &Path, url: &str) -> anyhow::Result<(u64, f64)> {
    let started = Instant::now();
    let out = Command::new(bin.join("rsvp"))
        .args(["--server", url, "-o", "json", "--timeout", "10m", "query"])
        .args(["--resource", "busy"])
        .stderr(Stdio::inherit())
        .output()
        .context("running rsvp query")?;
    if !out.status.success() {
        bail!("rsvp query failed");
    }
    let rows = out.stdout.iter().filter(|&&b| b == b'\n').count() as u64;
    Ok((rows, started.elapsed().as_secs_f64()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rows = env_or("SCALE_ROWS", 10_000_000);
    let busy = env_or("SCALE_BUSY", 100_000);
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .context("locating the release binaries")?
        .to_path_buf();
    let out_dir = bin.parent().context("locating target/")?.join("bench");
    std::fs::create_dir_all(&out_dir)?;

    let cluster = tokio::task::spawn_blocking(|| {
        TestCluster::start_with(&[
            ("shared_buffers", "1GB"),
            ("max_wal_size", "8GB"),
            ("checkpoint_timeout", "30min"),
        ])
    })
    .await?
    .map_err(|e| anyhow::anyhow!(e))?;
    let mut admin = PgConnection::connect(&cluster.url("postgres")).await?;
    admin
        .execute(AssertSqlSafe("CREATE DATABASE rsvp".to_string()))
        .await?;
    let url = cluster.url("rsvp");
    let store = PgStore::connect(
        &url,
        StoreOptions {
            statement_timeout: None,
            ..StoreOptions::default()
        },
    )
    .await?;
    let pool = store.pool();

    eprintln!("== seeding {rows} reservations, {busy} of them on `busy`");
    let started = Instant::now();
    // Nothing is registered and nobody listens: the change rows and the
    // capacity check are left out of the bulk load.
    pool.execute(
        "ALTER TABLE rsvp.reservations DISABLE TRIGGER reservations_record_insert_delete; \
         ALTER TABLE rsvp.reservations DISABLE TRIGGER reservations_within_capacity",
    )
    .await?;
    // Bulk load without indexes, then build them once: far faster than
    // keeping eight indexes up to date row by row.
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'rsvp' \
         AND tablename = 'reservations' AND indexname NOT IN \
         ('reservations_pkey', 'reservations_no_overlap')",
    )
    .fetch_all(pool)
    .await?;
    for (name, _) in &indexes {
        sqlx::raw_sql(AssertSqlSafe(format!("DROP INDEX rsvp.{name}")))
            .execute(pool)
            .await?;
    }
    // The exclusion constraint comes back as an index of the same
    // definition: added as a constraint, it would check each of the 10M
    // rows against the others (hours on this machine), and a read never
    // asks whether the constraint holds, only which indexes there are.
    let exclusion: String = sqlx::query_scalar(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = 'rsvp' \
         AND indexname = 'reservations_no_overlap'",
    )
    .fetch_one(pool)
    .await?;
    pool.execute("ALTER TABLE rsvp.reservations DROP CONSTRAINT reservations_no_overlap")
        .await?;
    // `busy`: one hour after another from 2020-01-01.
    sqlx::query(
        "INSERT INTO rsvp.reservations (id, user_id, resource_id, status, timespan, created_at, updated_at) \
         SELECT gen_random_uuid(), 'seed-' || (g % 1000), 'busy', 'confirmed', \
                tstzrange(t, t + interval '1 hour', '[)'), now(), now() \
         FROM generate_series(0, $1::bigint - 1) g, \
              LATERAL (SELECT '2020-01-01'::timestamptz + g * interval '1 hour' AS t) x",
    )
    .bind(busy)
    .execute(pool)
    .await?;
    let chunk = 1_000_000;
    let mut from = busy;
    while from < rows {
        let to = (from + chunk).min(rows);
        sqlx::query(
            "INSERT INTO rsvp.reservations (id, user_id, resource_id, status, timespan, created_at, updated_at) \
             SELECT gen_random_uuid(), 'seed-' || (g % 1000), 'bench-' || (g % 100000), 'confirmed', \
                    tstzrange(t, t + interval '1 hour', '[)'), now(), now() \
             FROM generate_series($1::bigint, $2::bigint - 1) g, \
                  LATERAL (SELECT '2020-01-01'::timestamptz \
                           + ((g / 100000) * 7 + (g * 7919) % 5) * interval '1 hour' AS t) x",
        )
        .bind(from)
        .bind(to)
        .execute(pool)
        .await?;
        eprintln!("   {to} rows, {:.0}s", started.elapsed().as_secs_f64());
        from = to;
    }
    pool.execute(
        "ALTER TABLE rsvp.reservations ENABLE TRIGGER reservations_record_insert_delete; \
         ALTER TABLE rsvp.reservations ENABLE TRIGGER reservations_within_capacity",
    )
    .await?;
    eprintln!(
        "   rows in after {:.0}s; building the indexes",
        started.elapsed().as_secs_f64()
    );
    // The indexes two at a time (one core each), the slow ones first:
    // the two GiST indexes over every row by resource take most of the
    // time, and go side by side.
    let mut statements: Vec<String> = indexes.iter().map(|(_, def)| def.clone()).collect();
    statements.push(exclusion);
    statements.sort_by_key(|def| {
        if !def.contains("USING gist") {
            2
        } else if def.contains("gist (resource_id") && !def.contains("AND shared") {
            0
        } else {
            1
        }
    });
    let queue = std::sync::Mutex::new(std::collections::VecDeque::from(statements));
    let build = || async {
        loop {
            let next = queue.lock().ok().and_then(|mut q| q.pop_front());
            let Some(statement) = next else {
                return Ok::<_, anyhow::Error>(());
            };
            sqlx::raw_sql(AssertSqlSafe(format!(
                "SET maintenance_work_mem = '1GB'; {statement}"
            )))
            .execute(pool)
            .await?;
            eprintln!("   {:.0}s: {statement}", started.elapsed().as_secs_f64());
        }
    };
    let (a, b) = tokio::join!(build(), build());
    a?;
    b?;
    pool.execute("VACUUM ANALYZE rsvp.reservations").await?;
    eprintln!("   seeded in {:.0}s", started.elapsed().as_secs_f64());

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let _server = Server(
        Command::new(bin.join("rsvp-server"))
            .args([
                "--database-url",
                &url,
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .args(["--log-level", "warn", "--statement-timeout", "10m"])
            .spawn()
            .context("starting rsvp-server")?,
    );
    let server_url = format!("http://127.0.0.1:{port}");
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(50));
    }

    // One batch of the stream, where the other resources' rows are.
    let plan_of_a_batch = || async {
        let lines: Vec<String> = sqlx::query_scalar(
            "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) \
             SELECT id FROM rsvp.reservations WHERE resource_id = 'busy' \
             AND (lower(timespan), id) > ('2020-01-10'::timestamptz, '00000000-0000-0000-0000-000000000000'::uuid) \
             ORDER BY lower(timespan) ASC, id ASC LIMIT 500",
        )
        .fetch_all(pool)
        .await?;
        Ok::<_, anyhow::Error>(lines.join("\n"))
    };

    let mut results = Vec::new();
    for (label, ddl) in [
        (
            "without the keyset indexes",
            "DROP INDEX rsvp.reservations_resource_start_id; DROP INDEX rsvp.reservations_user_start_id",
        ),
        (
            "with the keyset indexes",
            "CREATE INDEX reservations_resource_start_id ON rsvp.reservations (resource_id, lower(timespan), id); \
             CREATE INDEX reservations_user_start_id ON rsvp.reservations (user_id, lower(timespan), id); \
             ANALYZE rsvp.reservations",
        ),
    ] {
        eprintln!("== {label}");
        sqlx::raw_sql(AssertSqlSafe(ddl)).execute(pool).await?;
        let mut runs = Vec::new();
        for _ in 0..3 {
            let (n, seconds) = stream(&bin, &server_url)?;
            eprintln!("   {n} rows in {seconds:.2}s");
            runs.push(json!({ "rows": n, "seconds": seconds }));
        }
        let plan = plan_of_a_batch().await?;
        eprintln!("{plan}");
        results.push(json!({ "case": label, "runs": runs, "plan_of_a_batch": plan }));
    }
    let report = json!({ "rows": rows, "busy_rows": busy, "results": results });
    std::fs::write(
        out_dir.join("query-scale.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let mut md = format!(
        "Streaming every row of one resource ({busy} rows) out of {rows}:\n\n| case | seconds (3 runs) | rows/s (best) |\n|---|---|---|\n"
    );
    for r in &results {
        let secs: Vec<f64> = r["runs"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x["seconds"].as_f64()).collect())
            .unwrap_or_default();
        let best = secs.iter().cloned().fold(f64::MAX, f64::min);
        md.push_str(&format!(
            "| {} | {} | {:.0} |\n",
            r["case"].as_str().unwrap_or(""),
            secs.iter()
                .map(|s| format!("{s:.2}"))
                .collect::<Vec<_>>()
                .join(", "),
            busy as f64 / best
        ));
    }
    for r in &results {
        md.push_str(&format!(
            "\nPlan of one batch, {}:\n\n```text\n{}\n```\n",
            r["case"].as_str().unwrap_or(""),
            r["plan_of_a_batch"].as_str().unwrap_or("")
        ));
    }
    std::fs::write(out_dir.join("query-scale.md"), &md)?;
    println!("{md}");
    drop(cluster);
    Ok(())
}
