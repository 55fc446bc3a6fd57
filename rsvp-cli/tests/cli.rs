//! The real `rsvp` binary against a real server over TCP (the service's own
//! `run`, on the embedded store), in a pinned environment: each command's
//! table and JSON output, exit codes, and the messages a user sees.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::PathBuf,
    process::{Command as StdCommand, Stdio},
    sync::{Arc, mpsc},
    time::Duration,
};

use assert_cmd::Command;
use predicates::prelude::*;
use reservation::{Rsvp, SqliteStore, StoreOptions};
use rsvp_server::server::{self, ServerSettings};

/// A server on a loopback port over a store in a temporary file, run on its
/// own thread; stopped when dropped.
struct Server {
    addr: SocketAddr,
    db: PathBuf,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Server {
    fn start() -> Server {
        Server::start_with(ServerSettings::default)
    }

    /// A server with the settings `settings` makes.
    fn start_with(settings: impl FnOnce() -> ServerSettings + Send + 'static) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("rsvp.db");
        let (ready, addr) = mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let path = db.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async move {
                let store = SqliteStore::open(&path, StoreOptions::default())
                    .await
                    .unwrap();
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                ready.send(listener.local_addr().unwrap()).unwrap();
                let _ = server::run(listener, Arc::new(store), settings(), async {
                    let _ = stopped.await;
                })
                .await;
            });
        });
        Server {
            addr: addr.recv().unwrap(),
            db,
            _dir: dir,
            stop: Some(stop),
        }
    }

    /// `rsvp` pointed at this server, in a pinned environment: UTC, 80
    /// columns, a cache of shown ids of its own.
    fn rsvp(&self) -> Command {
        let mut cmd = self.rsvp_in("UTC");
        cmd.arg("--utc");
        cmd
    }

    /// `rsvp` pointed at this server, its system zone `tz`, 80 columns.
    fn rsvp_in(&self, tz: &str) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rsvp"));
        cmd.env_clear()
            .env("RSVP_SERVER", format!("http://{}", self.addr))
            .env("COLUMNS", "80")
            .env("TZ", tz)
            .env("XDG_CACHE_HOME", self._dir.path().join("cache"));
        cmd
    }

    /// Where `rsvp` remembers the ids it showed.
    fn id_cache(&self) -> PathBuf {
        self._dir.path().join("cache/rsvp/ids")
    }

    /// Makes reservations straight through the store, for bulk.
    fn seed(&self, n: i64) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let store = SqliteStore::open(&self.db, StoreOptions::default())
                .await
                .unwrap();
            for i in 0..n {
                let r = abi::NewReservation::builder()
                    .user_id("bulk")
                    .resource_id(format!("bulk-{}", i % 10))
                    .start(
                        at(&format!("2026-12-01T{:02}:00:00Z", i % 24))
                            + chrono::TimeDelta::days(i / 10),
                    )
                    .end(
                        at(&format!("2026-12-01T{:02}:30:00Z", i % 24))
                            + chrono::TimeDelta::days(i / 10),
                    )
                    .build()
                    .unwrap();
                store.reserve(r).await.unwrap();
            }
        });
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .with_timezone(&chrono::Utc)
}

fn stdout(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Reserves and returns the new reservation's id.
fn reserve(server: &Server, args: &[&str]) -> String {
    let mut cmd = server.rsvp();
    cmd.args(["-o", "json", "reserve"]).args(args);
    let line = stdout(&mut cmd);
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    v["id"].as_str().unwrap().to_string()
}

fn alice(server: &Server) -> String {
    reserve(
        server,
        &[
            "-r",
            "room-42",
            "-u",
            "alice",
            "-s",
            "2026-12-01 10:00",
            "-d",
            "1h",
            "-n",
            "design review",
        ],
    )
}

#[test]
fn reserve_prints_the_reservation_as_a_record_or_json() {
    let server = Server::start();
    let out = stdout(server.rsvp().args([
        "reserve",
        "--resource",
        "room-42",
        "--user",
        "alice",
        "--start",
        "2026-12-01 10:00",
        "--duration",
        "90m",
        "--note",
        "design review",
    ]));
    let lines: Vec<_> = out.lines().collect();
    assert!(
        lines[0].starts_with("id        ") && lines[0].len() == 46,
        "{out}"
    );
    assert_eq!(lines[1], "user      alice");
    assert_eq!(lines[2], "resource  room-42");
    assert_eq!(lines[3], "status    pending");
    assert_eq!(lines[4], "start     2026-12-01 10:00 UTC");
    assert_eq!(lines[5], "end       2026-12-01 11:30 UTC");
    assert!(
        lines[6].starts_with("expires   ") && lines[6].ends_with("UTC (in 30m)"),
        "{out}"
    );
    assert_eq!(lines[7], "note      design review");

    let json = stdout(server.rsvp().args([
        "-o",
        "json",
        "reserve",
        "-r",
        "room-7",
        "-u",
        "bob",
        "-s",
        "2026-12-01T09:00:00+01:00",
        "-e",
        "2026-12-01T12:00:00+01:00",
        "--confirm",
    ]));
    assert_eq!(json.lines().count(), 1);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["status"], "confirmed");
    assert_eq!(v["start"], "2026-12-01T08:00:00Z");
    assert_eq!(v["end"], "2026-12-01T11:00:00Z");
    assert_eq!(v["expires_at"], serde_json::Value::Null);
    assert_eq!(v["id"].as_str().unwrap().len(), 36);
}

#[test]
fn a_conflict_exits_3_and_shows_what_is_in_the_way() {
    let server = Server::start();
    let id = alice(&server);
    let tail = &id[id.len() - 12..];
    server
        .rsvp()
        .args([
            "reserve",
            "-r",
            "room-42",
            "-u",
            "bob",
            "-s",
            "2026-12-01 10:30",
            "-d",
            "1h",
        ])
        .assert()
        .code(3)
        .stdout("")
        .stderr(format!(
            "rsvp: room-42 is taken: 1 live reservation in the way\n\
             ID            USER   RESOURCE STATUS  START (UTC)      END   EXPIRES\n\
             …{tail} alice  room-42  pending 2026-12-01 10:00 11:00 in 30m\n"
        ));
}

#[test]
fn confirm_get_update_and_cancel_print_the_result() {
    let server = Server::start();
    let id = alice(&server);
    let out = stdout(server.rsvp().args(["confirm", &id]));
    assert!(
        out.contains("status    confirmed\n") && out.contains("expires   -\n"),
        "{out}"
    );
    let out = stdout(server.rsvp().args(["get", &id]));
    assert!(out.contains(&format!("id        {id}\n")), "{out}");
    let out = stdout(server.rsvp().args([
        "update",
        &id,
        "--note",
        "moved",
        "-s",
        "2026-12-01 14:00",
        "-e",
        "2026-12-01 15:00",
    ]));
    assert!(
        out.contains("start     2026-12-01 14:00 UTC\n") && out.contains("note      moved\n"),
        "{out}"
    );
    let json = stdout(server.rsvp().args(["-o", "json", "cancel", &id]));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        (v["status"].as_str(), v["note"].as_str()),
        (Some("cancelled"), Some("moved"))
    );
    // Confirming what is cancelled is not allowed in that state.
    server
        .rsvp()
        .args(["confirm", &id])
        .assert()
        .code(7)
        .stderr("rsvp: not allowed: cannot confirm a reservation that is cancelled\n");
    server
        .rsvp()
        .args(["update", &id])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("nothing to change"));
}

#[test]
fn query_prints_a_table_that_fits_80_columns_and_json_lines() {
    let server = Server::start();
    let a = alice(&server);
    let b = reserve(
        &server,
        &[
            "-r",
            "room-7",
            "-u",
            "carol",
            "-s",
            "2026-12-02T09:00:00Z",
            "-e",
            "2026-12-03T17:30:00Z",
            "--confirm",
            "-n",
            "offsite: bring the long cables and the spare projector",
        ],
    );
    reserve(
        &server,
        &[
            "-r",
            "room-42",
            "-u",
            "dave",
            "-s",
            "2026-12-05 10:00",
            "-d",
            "1h",
        ],
    );
    let out = stdout(server.rsvp().args(["query", "--to", "2026-12-04"]));
    let tail = |id: &str| id[id.len() - 12..].to_string();
    // At 80 columns the notes give way; users and resources stay whole.
    assert_eq!(
        out,
        format!(
            "ID            USER   RESOURCE STATUS    START (UTC)      END         EXPIRES\n\
             …{} alice  room-42  pending   2026-12-01 10:00 11:00       in 30m\n\
             …{} carol  room-7   confirmed 2026-12-02 09:00 12-03 17:30 -\n",
            tail(&a),
            tail(&b)
        )
    );
    assert!(out.lines().all(|l| l.chars().count() <= 80));
    let mut wide = server.rsvp();
    wide.env("COLUMNS", "120")
        .args(["query", "--to", "2026-12-04"]);
    let wide = stdout(&mut wide);
    assert!(wide.contains("design review"), "{wide}");

    let json = stdout(server.rsvp().args(["-o", "json", "query", "-r", "room-7"]));
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["id"], b.as_str(), "whole ids in JSON");
    assert_eq!(
        v["note"],
        "offsite: bring the long cables and the spare projector"
    );

    let desc = stdout(
        server
            .rsvp()
            .args(["-o", "json", "query", "--desc", "-r", "room-42"]),
    );
    let users: Vec<String> = desc
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["user_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(users, ["dave", "alice"]);
    let none = stdout(server.rsvp().args(["query", "--user", "nobody"]));
    assert_eq!(none, "no reservations\n");
}

#[test]
fn list_all_follows_every_page() {
    let server = Server::start();
    server.seed(7);
    // A table's page says how to go on, on stderr...
    let first = server
        .rsvp()
        .args(["list", "--page-size", "3"])
        .output()
        .unwrap();
    assert!(first.status.success());
    assert_eq!(String::from_utf8_lossy(&first.stdout).lines().count(), 4);
    let hint = String::from_utf8_lossy(&first.stderr);
    let token = hint
        .trim()
        .strip_prefix("more: add --page-token ")
        .unwrap_or_else(|| panic!("{hint}"));
    // ...a JSON page in its last line.
    let json = stdout(
        server
            .rsvp()
            .args(["-o", "json", "list", "--page-size", "3"]),
    );
    let last: serde_json::Value = serde_json::from_str(json.lines().last().unwrap()).unwrap();
    assert_eq!(last["next_page_token"], token);
    let second = stdout(server.rsvp().args([
        "-o",
        "json",
        "list",
        "--page-size",
        "3",
        "--page-token",
        token,
    ]));
    assert_eq!(
        second.lines().count(),
        4,
        "3 reservations and the next token"
    );

    let all = stdout(
        server
            .rsvp()
            .args(["-o", "json", "list", "--page-size", "3", "--all"]),
    );
    let ids: Vec<String> = all
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ids.len(), 7);
    assert_eq!(
        ids.iter().collect::<std::collections::HashSet<_>>().len(),
        7
    );
    let table = stdout(server.rsvp().args(["list", "--page-size", "2", "--all"]));
    assert_eq!(
        table.lines().count(),
        8,
        "a heading and seven rows:\n{table}"
    );
}

#[test]
fn bad_input_is_refused_before_anything_is_sent() {
    let server = Server::start();
    server
        .rsvp()
        .args([
            "reserve",
            "-r",
            "room-42",
            "-u",
            "alice",
            "-s",
            "tomorrow at ten",
            "-d",
            "1h",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "invalid value 'tomorrow at ten' for '--start <TIME>'",
        ));
    server
        .rsvp()
        .args([
            "reserve",
            "-r",
            "room-42",
            "-u",
            "alice",
            "-s",
            "2026-12-01 10:00",
            "-d",
            "soon",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--duration"));
    server
        .rsvp()
        .args([
            "reserve",
            "-r",
            "room-42",
            "-u",
            "",
            "-s",
            "2026-12-01 10:00",
            "-d",
            "1h",
        ])
        .assert()
        .code(5)
        .stderr("rsvp: --user: must not be empty\n");
    server
        .rsvp()
        .args([
            "reserve",
            "-r",
            "room-42",
            "-u",
            "a",
            "-s",
            "2026-12-01 10:00",
            "-e",
            "2026-12-01 09:00",
        ])
        .assert()
        .code(2)
        .stderr(
            "rsvp: --end (2026-12-01 09:00 UTC) must be after --start (2026-12-01 10:00 UTC), \
             not before it\n",
        );
    server
        .rsvp()
        .args([
            "--tz",
            "Europe/Paris",
            "reserve",
            "-r",
            "r",
            "-u",
            "a",
            "-s",
            "2026-03-29 02:30",
            "-d",
            "1h",
        ])
        .env_remove("RSVP_UTC")
        .assert()
        .code(2);
    server
        .rsvp()
        .args(["get", "not-an-id"])
        .assert()
        .code(2)
        .stderr(predicate::str::starts_with(
            "rsvp: \"not-an-id\" is not a reservation id: give the whole id, or at least its last 6 digits",
        ));
    server
        .rsvp()
        .args(["get", "01a1fee2-20e9-74d9-9d8f-644a0eb6e704"])
        .assert()
        .code(4)
        .stderr("rsvp: reservation 01a1fee2-20e9-74d9-9d8f-644a0eb6e704 not found\n");
}

#[test]
fn an_unreachable_server_exits_6_and_says_how_to_point_elsewhere() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = format!("http://127.0.0.1:{port}");
    Command::new(env!("CARGO_BIN_EXE_rsvp"))
        .env_clear()
        .args([
            "--server",
            &server,
            "get",
            "01a1fee2-20e9-74d9-9d8f-644a0eb6e704",
        ])
        .assert()
        .code(6)
        .stderr(format!(
            "rsvp: cannot reach rsvp-server at {server}: connection refused (os error 111); \
             is it running? (--server or RSVP_SERVER sets the address)\n"
        ));
}

#[test]
fn listen_prints_changes_made_by_another_client() {
    let server = Server::start();
    let mut listen = StdCommand::new(env!("CARGO_BIN_EXE_rsvp"))
        .env_clear()
        .env("RSVP_SERVER", format!("http://{}", server.addr))
        .args(["--utc", "-o", "json", "listen", "--resource", "room-42"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, got) = mpsc::channel();
    let stdout = listen.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    // The listener is subscribed once it is connected; keep making changes
    // until the first one shows.
    let mut id = String::new();
    let first = loop {
        if let Ok(line) = got.recv_timeout(Duration::from_millis(300)) {
            break line;
        }
        if id.is_empty() {
            id = alice(&server);
        } else {
            stdout_ok(server.rsvp().args(["update", &id, "--note", "ping"]));
        }
    };
    let v: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(v["reservation"]["user_id"], "alice");
    assert_eq!(v["reservation"]["resource_id"], "room-42");
    let next_id = v["change_id"].as_i64().unwrap() + 1;
    stdout_ok(server.rsvp().args(["cancel", &id]));
    reserve(
        &server,
        &[
            "-r",
            "elsewhere",
            "-u",
            "bob",
            "-s",
            "2026-12-01 10:00",
            "-d",
            "1h",
        ],
    );
    let mut last = serde_json::Value::Null;
    while let Ok(line) = got.recv_timeout(Duration::from_secs(10)) {
        last = serde_json::from_str(&line).unwrap();
        if last["reservation"]["status"] == "cancelled" {
            break;
        }
    }
    assert_eq!(last["op"], "update");
    assert_eq!(last["reservation"]["status"], "cancelled");
    assert!(last["change_id"].as_i64().unwrap() >= next_id);

    // Interrupting it is the normal way to stop: exit 0.
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(listen.id() as i32, libc::SIGINT);
    }
    assert!(listen.wait().unwrap().success());
}

fn stdout_ok(cmd: &mut Command) {
    stdout(cmd);
}

#[test]
fn a_closed_pipe_is_not_an_error() {
    let server = Server::start();
    server.seed(3000);
    let script = format!(
        "RSVP_SERVER=http://{} {} --utc query | head -n 2",
        server.addr,
        env!("CARGO_BIN_EXE_rsvp")
    );
    let out = StdCommand::new("bash")
        .args(["-o", "pipefail", "-c", &script])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "no complaint about the pipe"
    );
    assert!(
        out.status.success(),
        "rsvp exits 0 when its reader goes away"
    );
}

/// A listen the server ends before its first change (here, a shutdown)
/// still says where to resume: where its stream started.
#[test]
fn a_listen_ended_before_its_first_change_says_where_to_resume() {
    let server = Server::start();
    alice(&server);
    let listen = StdCommand::new(env!("CARGO_BIN_EXE_rsvp"))
        .env_clear()
        .env("RSVP_SERVER", format!("http://{}", server.addr))
        .args(["--utc", "listen"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Time to start and subscribe, generously.
    std::thread::sleep(Duration::from_secs(2));
    drop(server);
    let out = listen.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("resume with --after 1"), "{said}");
}

#[test]
fn a_listen_from_past_the_latest_change_is_refused() {
    let server = Server::start();
    alice(&server);
    server
        .rsvp()
        .args(["listen", "--after", "999"])
        .assert()
        .code(5)
        .stderr(predicate::str::contains(
            "--after: 999 is past the latest change, 1",
        ));
}

#[test]
fn help_explains_with_examples_and_completions_are_generated() {
    Command::new(env!("CARGO_BIN_EXE_rsvp"))
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("Examples:"))
        .stdout(predicate::str::contains("Exit codes: 0 ok"));
    for command in [
        "reserve",
        "confirm",
        "cancel",
        "get",
        "update",
        "query",
        "list",
        "listen",
        "completions",
    ] {
        Command::new(env!("CARGO_BIN_EXE_rsvp"))
            .args([command, "--help"])
            .assert()
            .success()
            .stdout(predicate::str::contains("Example"));
    }
    for shell in ["bash", "zsh", "fish"] {
        Command::new(env!("CARGO_BIN_EXE_rsvp"))
            .args(["completions", shell])
            .assert()
            .success()
            .stdout(predicate::str::contains("reserve"));
    }
    Command::new(env!("CARGO_BIN_EXE_rsvp"))
        .args(["reserve", "--frobnicate"])
        .assert()
        .code(2);
}

/// `rsvp -o json bench` for one short run; its report.
fn bench(server: &Server, args: &[&str]) -> serde_json::Value {
    let out = stdout(
        server
            .rsvp()
            .args(["-o", "json", "bench", "--clients", "4", "--duration", "1s"])
            .args(args),
    );
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let outcomes = report["outcomes"].as_object().unwrap();
    let total: u64 = outcomes.values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(report["calls"].as_u64().unwrap(), total, "{report}");
    assert!(
        outcomes.keys().all(|k| k == "ok" || k == "conflict"),
        "{report}"
    );
    let l = &report["latency_ms"];
    let ms = |k: &str| l[k].as_f64().unwrap();
    assert!(
        0.0 < ms("p50")
            && ms("p50") <= ms("p90")
            && ms("p90") <= ms("p99")
            && ms("p99") <= ms("max"),
        "{report}"
    );
    report
}

fn count(report: &serde_json::Value, outcome: &str) -> u64 {
    report["outcomes"][outcome].as_u64().unwrap_or(0)
}

/// Every reservation stored, as JSON lines.
fn stored(server: &Server, args: &[&str]) -> Vec<serde_json::Value> {
    stdout(server.rsvp().args(["-o", "json", "query"]).args(args))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn bench_runs_each_workload_and_reports_what_the_server_did() {
    let server = Server::start();

    let spread = bench(&server, &["-w", "reserve-spread", "--resources", "50"]);
    assert_eq!(spread["workload"], "reserve-spread");
    assert_eq!(spread["clients"], 4);
    assert!(count(&spread, "ok") > 0, "{spread}");
    let spread_rows = stored(&server, &[]);
    assert_eq!(
        spread_rows.len() as u64,
        count(&spread, "ok"),
        "one row per ok"
    );

    let hot = bench(&server, &["-w", "reserve-hot", "--connections", "2"]);
    assert_eq!(hot["connections"], 2);
    let held = stored(&server, &["-r", "bench-hot"]);
    assert_eq!(held.len() as u64, count(&hot, "ok"), "one row per ok");
    assert!(
        count(&hot, "ok") >= 1 && count(&hot, "conflict") > 0,
        "{hot}"
    );

    for w in ["query", "get", "mixed", "availability", "book"] {
        let report = bench(&server, &["-w", w, "--resources", "50"]);
        assert_eq!(report["workload"], w);
        assert!(count(&report, "ok") > 0, "{report}");
        if w == "book" {
            assert_eq!(
                Some(count(&report, "ok") + count(&report, "conflict")),
                report["calls"].as_u64(),
                "nothing but bookings made or refused: {report}"
            );
        }
        if w == "availability" {
            assert_eq!(
                Some(count(&report, "ok")),
                report["calls"].as_u64(),
                "every call answered: {report}"
            );
        }
    }

    let table = stdout(
        server
            .rsvp()
            .args(["bench", "-w", "get", "-c", "2", "-d", "200ms"]),
    );
    assert!(
        table.starts_with("workload   get over grpc\nclients    2 over 2 connections\n"),
        "{table}"
    );
    assert!(table.contains("\nlatency    mean "), "{table}");

    // The same workloads over HTTP/JSON.
    for w in ["reserve-spread", "book", "availability"] {
        let report = bench(
            &server,
            &["-w", w, "--resources", "50", "--protocol", "http"],
        );
        assert_eq!(report["protocol"], "http");
        assert!(count(&report, "ok") > 0, "{report}");
        assert_eq!(
            Some(count(&report, "ok") + count(&report, "conflict")),
            report["calls"].as_u64(),
            "nothing but calls made or refused: {report}"
        );
    }
    server
        .rsvp()
        .args(["bench", "-w", "query", "--protocol", "http"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--protocol http runs"));

    server
        .rsvp()
        .args(["bench", "-w", "get", "--clients", "0"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--clients"));
}

#[test]
fn utc_changes_only_how_times_are_shown() {
    let server = Server::start();
    let json = |extra: &[&str]| {
        let mut cmd = server.rsvp_in("Europe/Paris");
        cmd.args(["-o", "json"]).args(extra);
        stdout(&mut cmd)
    };
    // The same typed time books the same instant with or without --utc.
    let plain = json(&[
        "reserve",
        "-r",
        "room-6",
        "-u",
        "g",
        "-s",
        "2026-12-05 10:00",
        "-d",
        "1h",
    ]);
    let utc = json(&[
        "--utc",
        "reserve",
        "-r",
        "room-7",
        "-u",
        "g",
        "-s",
        "2026-12-05 10:00",
        "-d",
        "1h",
    ]);
    for out in [&plain, &utc] {
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["start"], "2026-12-05T09:00:00Z", "10:00 in Paris: {out}");
    }
    // And a window selects the same rows either way.
    // 10:30 to 10:45 in Paris, both ways.
    let window = [
        "query",
        "--from",
        "2026-12-05 10:30",
        "--to",
        "2026-12-05 10:45",
    ];
    let with = json(&[&["--utc"][..], &window[..]].concat());
    let without = json(&window);
    assert_eq!(with.lines().count(), 2, "{with}");
    assert_eq!(with, without);
    // Only the display differs.
    let shown = stdout(
        server
            .rsvp_in("Europe/Paris")
            .args(["--utc", "query", "-r", "room-6"]),
    );
    assert!(
        shown.contains("START (UTC)") && shown.contains("2026-12-05 09:00"),
        "{shown}"
    );
    let shown = stdout(
        server
            .rsvp_in("Europe/Paris")
            .args(["query", "-r", "room-6"]),
    );
    assert!(
        shown.contains("START (Europe/Paris)") && shown.contains("2026-12-05 10:00"),
        "{shown}"
    );

    // The system's zone as TZ may name it: a path into the zone files, or
    // a POSIX rule (Japan: nine hours ahead, no summer time).
    for (tz, room) in [
        ("/usr/share/zoneinfo/Asia/Tokyo", "room-8"),
        ("JST-9", "room-9"),
    ] {
        let mut cmd = server.rsvp_in(tz);
        cmd.args(["-o", "json", "reserve", "-r", room, "-u", "g", "-s"])
            .args(["2027-06-01 10:00", "-d", "1h"]);
        let out = stdout(&mut cmd);
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["start"], "2027-06-01T01:00:00Z", "TZ={tz}: {out}");
    }
}

#[test]
fn a_heading_names_the_zone_and_each_time_has_its_own_offset() {
    let server = Server::start();
    for (start, user) in [
        ("2026-06-01 10:00", "summer"),
        ("2026-12-01 10:00", "winter"),
    ] {
        reserve(
            &server,
            &["-r", "room-1", "-u", user, "-s", start, "-d", "1h"],
        );
    }
    let table = stdout(
        server
            .rsvp_in("UTC")
            .args(["--tz", "Europe/Paris", "query"]),
    );
    assert!(
        table.starts_with("ID") && table.contains("START (Europe/Paris)"),
        "{table}"
    );
    assert!(
        !table.contains("+01:00") && !table.contains("CET"),
        "{table}"
    );
    let json = stdout(
        server
            .rsvp_in("UTC")
            .args(["-o", "json", "query", "-u", "summer"]),
    );
    let id = serde_json::from_str::<serde_json::Value>(json.trim()).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let one = stdout(
        server
            .rsvp_in("UTC")
            .args(["--tz", "Europe/Paris", "get", &id]),
    );
    assert!(one.contains("start     2026-06-01 12:00 CEST"), "{one}");
    assert!(
        table.contains("2026-12-01 11:00"),
        "winter: +01:00: {table}"
    );
}

#[test]
fn an_id_as_a_table_shows_it_works_in_the_next_command() {
    let server = Server::start();
    let out = stdout(server.rsvp().args([
        "reserve",
        "-r",
        "room-42",
        "-u",
        "alice",
        "-s",
        "2026-12-01 10:00",
        "-d",
        "1h",
    ]));
    // The reserve says how to confirm, by the id as tables show it.
    let hint = out
        .lines()
        .find(|l| l.contains("rsvp confirm"))
        .unwrap_or_else(|| panic!("{out}"));
    let shown = hint.rsplit(' ').next().unwrap();
    assert!(
        shown.starts_with('…') && shown.chars().count() == 13,
        "{hint}"
    );
    assert!(out.lines().any(|l| l.starts_with("request   ")), "{out}");
    let table = stdout(server.rsvp().args(["query", "-r", "room-42"]));
    assert!(
        table.contains(shown),
        "the table shows the same id: {table}"
    );

    let confirmed = stdout(server.rsvp().args(["confirm", shown]));
    assert!(confirmed.contains("status    confirmed"), "{confirmed}");
    let digits = shown.trim_start_matches('…');
    let got = stdout(server.rsvp().args(["get", digits]));
    assert!(got.contains("status    confirmed"), "{got}");

    // An ending two shown ids share is refused, naming both.
    std::fs::write(
        server.id_cache(),
        "01a1feea-d86a-70b7-97d7-000000abcdef\n01a1feea-d86a-70b7-97d7-111111abcdef\n",
    )
    .unwrap();
    server
        .rsvp()
        .args(["get", "abcdef"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("ambiguous"))
        .stderr(predicate::str::contains("000000abcdef"))
        .stderr(predicate::str::contains("111111abcdef"));
    server
        .rsvp()
        .args(["get", "fedcba9"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "no id ending in fedcba9 was shown here",
        ));
}

#[test]
fn names_are_shown_whole_and_notes_give_way() {
    let server = Server::start();
    reserve(
        &server,
        &[
            "-r",
            "conference-room-b7",
            "-u",
            "alexandra-the-great",
            "-s",
            "2026-12-01 10:00",
            "-d",
            "1h",
            "-n",
            "Quarterly planning with the regional leads, agenda to follow",
        ],
    );
    let narrow = stdout(server.rsvp().args(["query"]));
    assert!(narrow.lines().all(|l| l.chars().count() <= 80), "{narrow}");
    assert!(
        narrow.contains("alexandra-the-great") && narrow.contains("conference-room-b7"),
        "users and resources whole at 80 columns:\n{narrow}"
    );
    let mut wide = server.rsvp();
    wide.env("COLUMNS", "200").args(["query"]);
    let wide = stdout(&mut wide);
    assert!(
        wide.contains("Quarterly planning with the regional leads, agenda to follow"),
        "a wide terminal shows the note whole:\n{wide}"
    );

    // Names up to the 64 characters an id may have, whole on a wide
    // terminal; a note's control characters are written out, not sent to
    // the terminal.
    let user = "alexandra.the-great.of-macedon.and-all-of-the-known-world";
    let resource = "the-grand-conference-room-on-the-seventh-floor-west-wing-b7";
    reserve(
        &server,
        &[
            "-r",
            resource,
            "-u",
            user,
            "-s",
            "2026-12-02 10:00",
            "-d",
            "1h",
            "-n",
            "hi\u{1b}]0;retitled\u{7}\u{1b}[2J",
        ],
    );
    let mut wide = server.rsvp();
    wide.env("COLUMNS", "250").args(["query", "-r", resource]);
    let wide = stdout(&mut wide);
    assert!(wide.contains(user) && wide.contains(resource), "{wide}");
    assert!(
        !wide.contains('\u{1b}') && !wide.contains('\u{7}'),
        "{wide:?}"
    );
    assert!(wide.contains("hi\\u{1b}]0;retitled"), "{wide}");
}

#[test]
fn a_closed_pipe_ends_any_command_quietly() {
    let server = Server::start();
    server.seed(30);
    for args in [
        &["completions", "fish"][..],
        &["query"][..],
        &["--help"][..],
    ] {
        let mut child = StdCommand::new(env!("CARGO_BIN_EXE_rsvp"))
            .env_clear()
            .env("RSVP_SERVER", format!("http://{}", server.addr))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        // The reader is gone after one line.
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}

#[test]
fn errors_speak_the_users_words() {
    let server = Server::start();
    server
        .rsvp_in("Europe/Paris")
        .args([
            "reserve",
            "-r",
            "r",
            "-u",
            "u",
            "-s",
            "2026-12-01 11:00",
            "-e",
            "2026-12-01 10:00",
        ])
        .assert()
        .code(2)
        .stderr(
            "rsvp: --end (2026-12-01 10:00 CET) must be after --start (2026-12-01 11:00 CET), \
             not before it\n",
        );
    server
        .rsvp()
        .args(["reserve", "-r", "r", "-u", "u", "-s", "2026-12-01 11:00"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "--end TIME or --duration DURATION (either works)",
        ));
    server
        .rsvp()
        .args([
            "reserve",
            "-r",
            "r",
            "-u",
            "u",
            "-s",
            "2026-12-01 11:00",
            "-d",
            "1h",
            "-n",
            &"x".repeat(5000),
        ])
        .assert()
        .code(5)
        .stderr(predicate::str::starts_with("rsvp: --note: "));
    // An end that --duration gave is refused as --duration.
    server
        .rsvp()
        .args(["reserve", "-r", "r", "-u", "u", "-s", "2026-12-01 11:00"])
        .args(["-d", "10000000d"])
        .assert()
        .code(5)
        .stderr(predicate::str::starts_with(
            "rsvp: --duration: the end it gives (+29405-12-27T11:00:00Z): ",
        ));
    // A resource's rules, in the flags that set them.
    for (flag, value) in [
        ("--grid", "7s"),
        ("--buffer-before", "20y"),
        ("--max-hold", "2000000d"),
    ] {
        let assert = server
            .rsvp()
            .args(["resource", "create", "badly-ruled", flag, value])
            .assert();
        let out = assert.get_output();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with(&format!("rsvp: {flag}: ")),
            "{flag} {value}: {err}"
        );
    }
    let help = stdout(server.rsvp().args(["reserve", "--help"]));
    assert!(!help.contains("[default: \"\"]"), "{help}");
    let help = stdout(server.rsvp().args(["list", "--help"]));
    assert!(
        help.contains("1 to 1000") && !help.contains("[default: 0]"),
        "{help}"
    );
    server
        .rsvp()
        .args(["list", "--page-size", "0"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("1..=1000"));
}

#[test]
fn a_json_page_ends_with_its_next_token() {
    let server = Server::start();
    server.seed(3);
    let page = stdout(
        server
            .rsvp()
            .args(["-o", "json", "list", "--page-size", "2"]),
    );
    let lines: Vec<serde_json::Value> = page
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{page}");
    let token = lines[2]["next_page_token"].as_str().expect("a token line");
    let rest = stdout(server.rsvp().args([
        "-o",
        "json",
        "list",
        "--page-size",
        "2",
        "--page-token",
        token,
    ]));
    assert_eq!(
        rest.lines().count(),
        1,
        "the last page has no token line: {rest}"
    );
}

#[test]
fn reserve_sends_a_request_id_of_its_own_and_repeating_it_is_safe() {
    let server = Server::start();
    let args = [
        "-o",
        "json",
        "reserve",
        "-r",
        "room-1",
        "-u",
        "alice",
        "-s",
        "2026-12-01 10:00",
        "-d",
        "1h",
    ];
    let first = stdout(server.rsvp().args(args));
    let first: serde_json::Value = serde_json::from_str(first.trim()).unwrap();
    let key = first["request_id"]
        .as_str()
        .expect("the key it used")
        .to_string();
    // Repeated with that key (after a time-out, say): the same reservation.
    let again = stdout(server.rsvp().args(args).args(["--request-id", &key]));
    let again: serde_json::Value = serde_json::from_str(again.trim()).unwrap();
    assert_eq!(again["id"], first["id"]);
}

#[test]
fn listen_shows_each_change_with_its_note() {
    let server = Server::start();
    let id = alice(&server);
    stdout_ok(
        server
            .rsvp()
            .args(["update", &id, "--note", "moved upstairs"]),
    );
    let mut listen = StdCommand::new(env!("CARGO_BIN_EXE_rsvp"))
        .env_clear()
        .env("RSVP_SERVER", format!("http://{}", server.addr))
        .env("COLUMNS", "120")
        .args(["--utc", "listen", "--after", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(listen.stdout.take().unwrap()).lines();
    let heading = lines.next().unwrap().unwrap();
    let created = lines.next().unwrap().unwrap();
    let noted = lines.next().unwrap().unwrap();
    let _ = listen.kill();
    let _ = listen.wait();
    assert!(
        heading.starts_with("CHANGE") && heading.ends_with("NOTE"),
        "{heading}"
    );
    assert!(
        heading.contains(" END "),
        "a change shows its end: {heading}"
    );
    assert!(
        created.contains("create") && created.contains("design review"),
        "{created}"
    );
    assert!(
        noted.contains("update") && noted.contains("moved upstairs"),
        "a note change shows: {noted}"
    );
    // In 80 columns too, users, resources and statuses are whole.
    reserve(
        &server,
        &[
            "-r",
            "flight-lisbon-porto-0815",
            "-u",
            "passenger-with-a-long-name",
            "-s",
            "2030-01-01 10:00",
            "-d",
            "1h",
            "--confirm",
        ],
    );
    let mut listen = StdCommand::new(env!("CARGO_BIN_EXE_rsvp"))
        .env_clear()
        .env("RSVP_SERVER", format!("http://{}", server.addr))
        .env("COLUMNS", "80")
        .args(["--utc", "listen", "--after", "2"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(listen.stdout.take().unwrap()).lines();
    let rows: Vec<String> = (0..2).map(|_| lines.next().unwrap().unwrap()).collect();
    let _ = listen.kill();
    let _ = listen.wait();
    assert!(
        rows[1].contains(" passenger-with-a-long-name flight-lisbon-porto-0815 confirmed "),
        "{rows:?}"
    );
}

#[test]
fn resources_are_registered_listed_updated_and_deleted() {
    let server = Server::start();
    server
        .rsvp()
        .args([
            "resource",
            "create",
            "dr-lee",
            "--name",
            "Dr. Lee",
            "--zone",
            "Europe/Paris",
            "--open",
            "mon-fri 09:00-17:00",
            "--grid",
            "15m",
            "--min-notice",
            "24h",
            "--max-hold",
            "30m",
            "--label",
            "kind=doctor",
        ])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("Europe/Paris")
                .and(predicate::str::contains("mon 09:00-17:00, tue 09:00-17:00"))
                .and(predicate::str::contains("grid           15m"))
                .and(predicate::str::contains("min notice     1day")),
        );
    server
        .rsvp()
        .args(["resource", "create", "dr-lee"])
        .assert()
        .code(7)
        .stderr(predicate::str::contains("already registered"));
    server
        .rsvp()
        .args(["resource", "create", "hall", "--capacity", "3"])
        .assert()
        .success();
    server
        .rsvp()
        .args(["resource", "list", "--label", "kind=doctor"])
        .assert()
        .success()
        .stdout(predicate::str::contains("dr-lee").and(predicate::str::contains("hall").not()));
    // In JSON, one line per resource; a last page ends with no token line.
    let listed = server
        .rsvp()
        .args(["-o", "json", "resource", "list"])
        .output()
        .unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines.iter().all(|l| l.get("next_page_token").is_none()));
    let json = server
        .rsvp()
        .args(["-o", "json", "resource", "get", "hall"])
        .output()
        .unwrap();
    let hall: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(hall["capacity"], 3);
    let etag = hall["etag"].as_str().unwrap().to_string();
    server
        .rsvp()
        .args([
            "resource",
            "update",
            "hall",
            "--capacity",
            "4",
            "--etag",
            &etag,
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("capacity       4"));
    // The etag is now stale.
    server
        .rsvp()
        .args([
            "resource",
            "update",
            "hall",
            "--capacity",
            "5",
            "--etag",
            &etag,
        ])
        .assert()
        .code(10)
        .stderr(predicate::str::contains("read it again"));
    server
        .rsvp()
        .args(["resource", "update", "hall"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("nothing to change"));
    // Live in the future, whenever the test runs: deleting needs --force.
    server
        .rsvp()
        .args([
            "reserve",
            "-r",
            "hall",
            "-u",
            "a",
            "-s",
            "2030-12-07 10:00",
            "-d",
            "1h",
            "--confirm",
        ])
        .assert()
        .success();
    server
        .rsvp()
        .args(["resource", "delete", "hall"])
        .assert()
        .code(7)
        .stderr(predicate::str::contains("--force"));
    server
        .rsvp()
        .args(["resource", "delete", "hall", "--force"])
        .assert()
        .success()
        .stdout(predicate::str::contains("deleted"));
    server
        .rsvp()
        .args(["resource", "get", "nowhere"])
        .assert()
        .code(4);
}

#[test]
fn units_are_reserved_up_to_the_capacity_and_rules_refuse_with_exit_8() {
    let server = Server::start();
    server
        .rsvp()
        .args(["resource", "create", "hall", "--capacity", "3"])
        .assert()
        .success();
    let reserve = |quantity: &str, extra: &[&str]| {
        let mut cmd = server.rsvp();
        cmd.args([
            "reserve",
            "-r",
            "hall",
            "-u",
            "a",
            "-s",
            "2030-12-07 10:00",
            "-d",
            "1h",
            "--quantity",
            quantity,
        ])
        .args(extra);
        cmd
    };
    reserve("2", &[]).assert().success();
    reserve("2", &["--dry-run"]).assert().code(3).stderr(
        predicate::str::starts_with(
            "rsvp: hall has fewer than 2 of its 3 units free for part of that time \
                 (1 live reservation in the way)\nfull: 2030-12-07 10:00 to 11:00 UTC\n",
        )
        .and(predicate::str::contains("\nID ")),
    );
    reserve("1", &["--dry-run"])
        .assert()
        .success()
        .stdout(predicate::str::contains("nothing was stored"));
    reserve("4", &[])
        .assert()
        .code(3)
        .stderr(predicate::str::starts_with(
            "rsvp: hall has 3 units: 4 cannot be held at once\nID ",
        ));
    // Nothing in the way: the message alone.
    server
        .rsvp_in("UTC")
        .args([
            "reserve",
            "-r",
            "shed",
            "-u",
            "a",
            "-s",
            "2030-12-07 10:00",
            "-d",
            "1h",
            "-q",
            "2",
        ])
        .assert()
        .code(3)
        .stderr(predicate::eq(
            "rsvp: shed has 1 unit: 2 cannot be held at once\n",
        ));
    // A clash of buffers alone says where the resource is full.
    let rsvp = || server.rsvp_in("UTC");
    rsvp()
        .args([
            "resource",
            "create",
            "studio",
            "-c",
            "2",
            "--buffer-after",
            "10m",
        ])
        .assert()
        .success();
    for user in ["a", "b"] {
        rsvp()
            .args([
                "reserve",
                "-r",
                "studio",
                "-u",
                user,
                "-s",
                "2030-12-07 10:00",
                "-d",
                "1h",
            ])
            .assert()
            .success();
    }
    rsvp()
        .args([
            "reserve",
            "-r",
            "studio",
            "-u",
            "c",
            "-s",
            "2030-12-07 11:00",
            "-d",
            "1h",
        ])
        .assert()
        .code(3)
        .stderr(predicate::str::starts_with(
            "rsvp: studio has none of its 2 units free for part of that time (2 live \
             reservations in the way)\nfull (the buffers kept free around reservations count): \
             2030-12-07 11:00 to 11:10 UTC\n",
        ));
    // Tables show units once a row holds other than one.
    server
        .rsvp()
        .args(["query", "-r", "hall"])
        .assert()
        .success()
        .stdout(predicate::str::contains("UNITS").and(predicate::str::contains("in 30m  2\n")));

    server
        .rsvp()
        .args([
            "resource",
            "create",
            "clinic",
            "--zone",
            "Europe/Paris",
            "--open",
            "mon-fri 09:00-17:00",
            "--grid",
            "15m",
        ])
        .assert()
        .success();
    server
        .rsvp()
        .args([
            "reserve",
            "-r",
            "clinic",
            "-u",
            "a",
            "-s",
            "2026-12-05 10:07",
            "-d",
            "30m",
        ])
        .assert()
        .code(8)
        .stderr(
            predicate::str::contains("not allowed by the resource's booking policy:")
                .and(predicate::str::contains(
                    "  - granularity: starts and ends on a 15m grid",
                ))
                .and(predicate::str::contains("  - opening hours: lies within")),
        );
    server
        .rsvp()
        .args([
            "reserve",
            "-r",
            "clinic",
            "-u",
            "a",
            "-s",
            "2026-12-05 10:07",
            "-d",
            "30m",
            "--override-policy",
        ])
        .assert()
        .success();
}

#[test]
fn free_draws_a_timeline_lists_slots_and_prints_json() {
    let server = Server::start();
    let rsvp = || server.rsvp_in("Europe/Paris");
    let ok = |args: &[&str]| {
        rsvp().args(args).assert().success();
    };
    ok(&[
        "resource",
        "create",
        "dr-lee",
        "--zone",
        "Europe/Paris",
        "--open",
        "mon-fri 09:00-17:00",
        "--closed-by-default",
        "--grid",
        "15m",
    ]);
    ok(&["resource", "create", "hall", "--capacity", "3"]);
    ok(&["resource", "create", "old-room"]);
    ok(&["resource", "delete", "old-room"]);
    // 2030-12-03 is a Tuesday: Dr. Lee is booked 10:00-11:00 and held
    // 13:00-13:30; two of the hall's three units are taken 14:00-16:00.
    let day = ["--from", "2030-12-03", "--to", "2030-12-04"];
    let reserve = |resource: &str, start: &str, duration: &str, extra: &[&str]| {
        let mut cmd = rsvp();
        cmd.args([
            "reserve", "-r", resource, "-u", "u", "-s", start, "-d", duration,
        ]);
        cmd.args(extra).assert().success();
    };
    reserve("dr-lee", "2030-12-03 10:00", "1h", &["--confirm"]);
    reserve("dr-lee", "2030-12-03 13:00", "30m", &["--hold", "0s"]);
    reserve("hall", "2030-12-03 14:00", "2h", &["--confirm", "-q", "2"]);

    // Half-hour cells: Dr. Lee closed until 09:00, free, booked, free,
    // held, free until 17:00, closed; two of the hall's units taken from
    // 14:00 to 16:00.
    let table = stdout(
        rsvp()
            .args(["free", "-r", "dr-lee,hall,old-room"])
            .args(day),
    );
    let want = [
        "2030-12-03 00:00 – 12-04 00:00 (Europe/Paris), 1 unit; a cell is 30m",
        "",
        "         00  02  04  06  08  10  12  14  16  18  20  22",
        &format!(
            "dr-lee   {}░░██░░░░▓{}{}",
            "·".repeat(18),
            "░".repeat(7),
            "·".repeat(14)
        ),
        &format!(
            "hall (3) {}{}{}",
            "░".repeat(28),
            "▒".repeat(4),
            "░".repeat(16)
        ),
        "old-room deleted",
        "",
        "         ░ free  ▒ partly free  ▓ held (pending)  █ taken  · closed",
        "",
        "as of change 3: rsvp listen --after 3 follows every later change",
        "",
    ]
    .join("\n");
    assert_eq!(table, want);

    // Forty columns: hour cells, a mark every three hours, the legend on
    // its own; a cell with free and taken time is partly free.
    let narrow = stdout(
        rsvp()
            .env("COLUMNS", "40")
            .args(["free", "-r", "dr-lee,hall"])
            .args(day),
    );
    let want = [
        "2030-12-03 00:00 – 12-04 00:00 (Europe/Paris), 1 unit; a cell is 1h",
        "",
        "         00 03 06 09 12 15 18 21",
        &format!("dr-lee   {}░█░░▒░░░{}", "·".repeat(9), "·".repeat(7)),
        &format!("hall (3) {}▒▒{}", "░".repeat(14), "░".repeat(8)),
        "",
        "░ free  ▒ partly free  ▓ held (pending)  █ taken  · closed",
    ]
    .join("\n");
    assert!(narrow.starts_with(&want), "{want}\n{narrow}");

    // Two months: a cell a day from local midnight, marked weekly. The
    // week Dr. Lee is booked shows partly free; weekends closed.
    let months = stdout(rsvp().args([
        "free",
        "-r",
        "dr-lee",
        "--from",
        "2030-12-01",
        "--to",
        "2031-02-01",
    ]));
    let want = [
        "2030-12-01 00:00 – 2031-02-01 00:00 (Europe/Paris), 1 unit; a cell is 1d",
        "",
        "       Dec 01 Dec 08 Dec 15 Dec 22 Dec 29 Jan 05 Jan 12 Jan 19 Jan 26",
        &format!("dr-lee ·░▒░░░·{}·░░░░░", "·░░░░░·".repeat(7)),
    ]
    .join("\n");
    assert!(months.starts_with(&want), "{want}\n{months}");

    // A long name is cut, its capacity kept; the legend then starts the
    // line rather than wrap.
    ok(&[
        "resource",
        "create",
        "conference-room-on-the-fourth-floor",
        "--capacity",
        "12",
    ]);
    let long = stdout(
        rsvp()
            .args(["free", "-r", "conference-room-on-the-fourth-floor"])
            .args(day),
    );
    assert!(
        long.contains(&format!("\nconference-room-on… (12) {}\n", "░".repeat(48))),
        "{long}"
    );
    assert!(long.contains("\n░ free  ▒ partly free"), "{long}");

    // With no window given: from now, for a day.
    let now = stdout(rsvp().args(["free", "-r", "hall"]));
    let bar = now
        .lines()
        .find_map(|l| l.strip_prefix("hall (3) "))
        .unwrap_or_default();
    assert!(
        bar == "░".repeat(48) || bar == "░".repeat(49),
        "a day of half-hour cells from now: {now}"
    );

    // From the last day chrono knows, a day's window does not exist: a
    // usage error, not a crash.
    server
        .rsvp_in("UTC")
        .args(["free", "-r", "hall", "--from", "+262142-12-31"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--from"));

    // Refused by the server, still in the flags' words: a second's slots
    // spaced by their length over nine days are too many to judge.
    rsvp()
        .args(["free", "-r", "hall", "--slot", "1s"])
        .args(["--from", "2030-01-01", "--to", "2030-01-10"])
        .assert()
        .code(5)
        .stderr(predicate::str::starts_with(
            "rsvp: --step: the request would judge",
        ));

    // Two units wanted: the hall has one while the two are taken.
    let two = stdout(rsvp().args(["free", "-r", "hall", "-q", "2"]).args(day));
    assert!(
        two.contains(&format!("{}{}", "░".repeat(28), "█".repeat(4))),
        "{two}"
    );

    // Hour slots on Dr. Lee's 15-minute grid: 09:00, then 11:00 to 12:00,
    // then 13:30 to 16:00.
    let slots = stdout(
        rsvp()
            .args(["free", "-r", "dr-lee", "--slot", "1h", "--segments"])
            .args(day),
    );
    let rows: Vec<&str> = slots
        .lines()
        .filter(|l| l.starts_with("dr-lee ") && l.ends_with(" 1"))
        .collect();
    let starts: Vec<&str> = rows
        .iter()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    let mut want = vec!["09:00"];
    want.extend(["11:00", "11:15", "11:30", "11:45", "12:00"]);
    want.extend([
        "13:30", "13:45", "14:00", "14:15", "14:30", "14:45", "15:00", "15:15", "15:30", "15:45",
        "16:00",
    ]);
    assert_eq!(starts, want, "{slots}");
    assert!(
        slots.contains("dr-lee   2030-12-03 13:00     13:30       0    1    open"),
        "the segments table: {slots}"
    );

    // Slot starts two hours apart, counted from midnight in the hall's
    // zone (UTC: it has no policy), 01:00 in Paris.
    let stepped = stdout(rsvp().args([
        "free",
        "-r",
        "hall",
        "--slot",
        "1h",
        "--step",
        "2h",
        "--from",
        "2030-12-03",
        "--to",
        "2030-12-03 06:00",
    ]));
    let want = [
        "RESOURCE START (Europe/Paris) END   FREE",
        "hall     2030-12-03 01:00     02:00 3",
        "hall     2030-12-03 03:00     04:00 3",
        "hall     2030-12-03 05:00     06:00 3",
    ]
    .join("\n");
    assert!(stepped.contains(&want), "{want}\n{stepped}");

    // JSON: the same answer, whole, with the change it stands at.
    let json: serde_json::Value = serde_json::from_str(&stdout(
        rsvp()
            .args([
                "-o",
                "json",
                "free",
                "-r",
                "dr-lee,old-room",
                "--slot",
                "1h",
            ])
            .args(day),
    ))
    .unwrap();
    // Three reservations made three changes; the answer reflects them all,
    // and a listener from its position misses nothing after it.
    assert_eq!(json["as_of_change_id"], 3, "{json}");
    let lee = &json["resources"][0];
    assert_eq!(lee["resource_id"], "dr-lee");
    assert_eq!(lee["slots"].as_array().unwrap().len(), 17, "{json}");
    assert_eq!(lee["slots"][0]["start"], "2030-12-03T08:00:00Z");
    assert_eq!(lee["segments"][1]["start"], "2030-12-03T08:00:00Z");
    assert_eq!(lee["segments"][1]["free"], 1);
    assert_eq!(json["resources"][1]["deleted"], true);

    // Refused before anything is sent, in the flags' words.
    rsvp()
        .args([
            "free",
            "-r",
            "dr-lee",
            "--from",
            "2030-12-03",
            "--to",
            "2031-06-01",
        ])
        .assert()
        .code(5)
        .stderr(predicate::str::contains(
            "--to: the window must be at most 92 days",
        ));
    rsvp()
        .args(["free", "-r", "hall,hall"])
        .assert()
        .code(5)
        .stderr(predicate::str::contains("--resource: names hall twice"));
    rsvp()
        .args([
            "free",
            "-r",
            "hall",
            "--from",
            "2030-12-03",
            "--to",
            "2030-12-02",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--to"));
}

/// Ids may hold commas: `--part` reads its times from the right, and
/// `free -r` takes `\,` for a comma within an id.
#[test]
fn ids_with_commas_are_booked_and_looked_up() {
    let server = Server::start();
    let rsvp = || server.rsvp_in("UTC");
    let made = stdout(rsvp().args([
        "-o",
        "json",
        "book",
        "-u",
        "ann",
        "-p",
        "Room 1, floor 2,2030-12-03 15:00,2030-12-03 16:00",
        "-p",
        "lot A,B,2030-12-03 15:00,2030-12-03 16:00,1",
    ]));
    let made: serde_json::Value = serde_json::from_str(&made).unwrap();
    let parts = made["parts"].as_array().unwrap();
    assert_eq!(parts[0]["resource_id"], "Room 1, floor 2", "{made}");
    assert_eq!(parts[1]["resource_id"], "lot A,B", "{made}");
    rsvp()
        .args(["book", "-u", "ann", "-p", "room,2030-12-03 15:00,soon"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "--part #1 (\"room,2030-12-03 15:00,soon\"): end",
        ));

    let free: serde_json::Value = serde_json::from_str(&stdout(rsvp().args([
        "-o",
        "json",
        "free",
        "-r",
        r"Room 1\, floor 2,lot A\,B",
        "--from",
        "2030-12-03 14:00",
        "--to",
        "2030-12-03 17:00",
    ])))
    .unwrap();
    let resources = free["resources"].as_array().unwrap();
    assert_eq!(resources.len(), 2, "{free}");
    assert_eq!(resources[0]["resource_id"], "Room 1, floor 2");
    assert_eq!(resources[1]["resource_id"], "lot A,B");
    assert_eq!(resources[0]["segments"][1]["free"], 0, "{free}");
}

#[test]
fn book_makes_every_part_or_names_the_ones_that_failed() {
    let server = Server::start();
    let rsvp = || server.rsvp_in("Europe/Paris");
    rsvp()
        .args([
            "reserve",
            "-r",
            "flight",
            "-u",
            "bob",
            "-s",
            "2030-12-03 10:00",
            "-d",
            "1h",
            "--confirm",
        ])
        .assert()
        .success();
    // The flight is taken: nothing is made, and the failing part is named
    // as it was given.
    rsvp()
        .args([
            "book",
            "--user",
            "ann",
            "--part",
            "hotel,2030-12-03 15:00,2030-12-05 11:00",
            "--part",
            "flight,2030-12-03 10:30,2030-12-03 11:30",
        ])
        .assert()
        .code(3)
        .stderr(predicate::str::contains(
            "booking refused; nothing was made:\n  --part #2 (flight): flight is taken: 1 live \
             reservation in the way",
        ));
    rsvp()
        .args([
            "reserve",
            "-r",
            "hotel",
            "-u",
            "cy",
            "-s",
            "2030-12-03 15:00",
            "-d",
            "1h",
        ])
        .args(["--dry-run"])
        .assert()
        .success();

    let made = stdout(rsvp().args([
        "book",
        "-u",
        "ann",
        "-p",
        "hotel,2030-12-03 15:00,2030-12-05 11:00",
        "-p",
        "flight,2030-12-03 12:00,2030-12-03 13:00",
        "--request-id",
        "trip-1",
    ]));
    let id = made
        .lines()
        .find_map(|l| l.strip_prefix("booking   "))
        .unwrap()
        .to_string();
    assert!(
        made.contains("\nuser      ann\nrequest   trip-1\n"),
        "{made}"
    );
    let rows: Vec<&str> = made.lines().filter(|l| l.contains(" pending ")).collect();
    assert_eq!(rows.len(), 2, "{made}");
    assert!(
        rows[0].contains(" hotel ") && rows[1].contains(" flight "),
        "{made}"
    );
    assert!(
        made.ends_with(&format!(
            "\nHeld: confirm every part with  rsvp booking confirm {id}\n"
        )),
        "{made}"
    );
    // The same command again returns the same booking.
    let again = stdout(rsvp().args([
        "book",
        "-u",
        "ann",
        "-p",
        "hotel,2030-12-03 15:00,2030-12-05 11:00",
        "-p",
        "flight,2030-12-03 12:00,2030-12-03 13:00",
        "--request-id",
        "trip-1",
    ]));
    assert!(again.starts_with(&format!("booking   {id}\n")), "{again}");

    let confirmed = stdout(rsvp().args(["booking", "confirm", &id]));
    assert_eq!(confirmed.matches(" confirmed ").count(), 2, "{confirmed}");
    let json: serde_json::Value =
        serde_json::from_str(&stdout(rsvp().args(["-o", "json", "booking", "get", &id]))).unwrap();
    assert_eq!(json["id"], id.as_str());
    assert_eq!(json["parts"][0]["resource_id"], "hotel");
    assert_eq!(json["parts"][1]["status"], "confirmed");
    assert_eq!(json["parts"][1]["booking_id"], id.as_str());
    let cancelled = stdout(rsvp().args(["booking", "cancel", &id]));
    assert_eq!(cancelled.matches(" cancelled ").count(), 2, "{cancelled}");

    // A cancel the notice refuses names the part, in a cancel's words.
    rsvp()
        .args(["resource", "create", "spa", "--cancel-notice", "3000d"])
        .assert()
        .success();
    let spa = stdout(rsvp().args([
        "book",
        "-u",
        "ann",
        "-p",
        "spa,2030-12-04 10:00,2030-12-04 11:00",
    ]));
    let spa = spa
        .lines()
        .find_map(|l| l.strip_prefix("booking   "))
        .unwrap()
        .to_string();
    stdout(rsvp().args(["booking", "confirm", &spa]));
    rsvp()
        .args(["booking", "cancel", &spa])
        .assert()
        .code(8)
        .stderr(predicate::str::contains(
            "booking not cancelled; no part changed:\n  part 1 (spa): ",
        ));

    // Refused before anything is sent, in the flags' words.
    rsvp()
        .args(["book", "-u", "ann", "-p", "flight,2030-12-03 10:00"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--part #1"));
    rsvp().args(["booking", "get", "nope"]).assert().code(5);
}

#[test]
fn check_in_and_out_show_when() {
    let server = Server::start();
    let rsvp = || server.rsvp_in("UTC");
    let made = stdout(rsvp().args([
        "-o",
        "json",
        "reserve",
        "-r",
        "desk",
        "-u",
        "ann",
        "-s",
        "now",
        "-d",
        "1h",
        "--confirm",
    ]));
    let made: serde_json::Value = serde_json::from_str(&made).unwrap();
    let id = made["id"].as_str().unwrap().to_string();
    let arrived = stdout(rsvp().args(["check-in", &id]));
    assert!(arrived.contains("\nstatus    checked_in\n"), "{arrived}");
    assert!(arrived.contains("\narrived   "), "{arrived}");
    // Query selects by the arrival statuses too.
    let selected = |status: &str| {
        stdout(rsvp().args(["-o", "json", "query", "-r", "desk", "--status", status]))
    };
    assert!(selected("checked-in").contains(&id));
    // As tables and JSON spell it too.
    assert!(selected("checked_in").contains(&id));
    assert!(!selected("confirmed").contains(&id));
    let left = stdout(rsvp().args(["check-out", &id]));
    assert!(left.contains("\nstatus    completed\n"), "{left}");
    assert!(left.contains("\nleft      "), "{left}");
    assert!(selected("completed").contains(&id));
    assert!(!selected("checked-in").contains(&id));
    // Not confirmed: no check-in.
    let held = stdout(rsvp().args([
        "-o", "json", "reserve", "-r", "desk-2", "-u", "ann", "-s", "now", "-d", "1h",
    ]));
    let held: serde_json::Value = serde_json::from_str(&held).unwrap();
    rsvp()
        .args(["check-in", held["id"].as_str().unwrap()])
        .assert()
        .code(7)
        .stderr(predicate::str::contains(
            "cannot check in a reservation that is pending",
        ));
    // Before its window opens: refused by the policy.
    let later = stdout(rsvp().args([
        "-o",
        "json",
        "reserve",
        "-r",
        "desk-3",
        "-u",
        "ann",
        "-s",
        "2030-01-01T10:00:00Z",
        "-d",
        "1h",
        "--confirm",
    ]));
    let later: serde_json::Value = serde_json::from_str(&later).unwrap();
    rsvp()
        .args(["check-in", later["id"].as_str().unwrap()])
        .assert()
        .code(8)
        .stderr(predicate::str::contains(
            "check-in opens at 2030-01-01 10:00 UTC",
        ));
    // A resource's check-in window and no-show rule are set, shown and
    // cleared like its other rules.
    rsvp()
        .args([
            "resource",
            "create",
            "desk-4",
            "--check-in-opens",
            "2h",
            "--auto-release-after",
            "15m",
        ])
        .assert()
        .success();
    let shown = stdout(rsvp().args(["resource", "get", "desk-4"]));
    assert!(shown.contains("\ncheck-in opens 2h\n"), "{shown}");
    assert!(shown.contains("\nno-show after  15m\n"), "{shown}");
    let json: serde_json::Value = serde_json::from_str(&stdout(
        rsvp().args(["-o", "json", "resource", "get", "desk-4"]),
    ))
    .unwrap();
    assert_eq!(json["policy"]["check_in_opens"], 7200);
    assert_eq!(json["policy"]["auto_release_after"], 900);
    let early = reserve(
        &server,
        &[
            "-r",
            "desk-4",
            "-u",
            "ann",
            "-s",
            "2030-01-01T10:00:00Z",
            "-d",
            "1h",
            "--confirm",
        ],
    );
    rsvp()
        .args(["check-in", &early])
        .assert()
        .code(8)
        .stderr(predicate::str::contains(
            "check-in opens at 2030-01-01 08:00 UTC",
        ));
    rsvp()
        .args([
            "resource",
            "update",
            "desk-4",
            "--clear",
            "auto-release-after",
        ])
        .assert()
        .success();
    let json: serde_json::Value = serde_json::from_str(&stdout(
        rsvp().args(["-o", "json", "resource", "get", "desk-4"]),
    ))
    .unwrap();
    assert_eq!(json["policy"]["check_in_opens"], 7200);
    assert!(json["policy"].get("auto_release_after").is_none(), "{json}");
}

/// Makes an API token straight through the store.
fn token(server: &Server, principal: &str, role: abi::Role) -> String {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = SqliteStore::open(&server.db, StoreOptions::default())
            .await
            .unwrap();
        let (_, secret) = store
            .create_token(abi::NewToken {
                principal: abi::UserId::parse(principal).unwrap(),
                role,
                expires_at: None,
            })
            .await
            .unwrap();
        secret.expose().to_string()
    })
}

#[test]
fn a_token_authenticates_every_command_and_whoami_names_the_caller() {
    use rsvp_server::auth::{Authenticator, TokenCache};
    let server = Server::start_with(|| ServerSettings {
        auth: Arc::new(Authenticator::tokens(Arc::new(TokenCache::new()))),
        token_refresh: Duration::from_millis(100),
        ..ServerSettings::default()
    });
    let ann = token(&server, "ann", abi::Role::User);
    let bob = token(&server, "bob", abi::Role::User);

    // The server loads new tokens within its reload interval; a reload may
    // fall between the two tokens' creation, so wait for each.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    for secret in [&ann, &bob] {
        while !server
            .rsvp()
            .args(["--token", secret, "whoami"])
            .output()
            .unwrap()
            .status
            .success()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the token never worked"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    server
        .rsvp()
        .args(["--token", &ann, "whoami"])
        .assert()
        .success()
        .stdout("principal  ann\nrole       user\nauth       token\n");
    server
        .rsvp()
        .env("RSVP_TOKEN", &bob)
        .args(["-o", "json", "whoami"])
        .assert()
        .success()
        .stdout("{\"auth\":\"token\",\"principal\":\"bob\",\"role\":\"user\"}\n");

    server.rsvp().arg("whoami").assert().code(9).stderr(
        predicate::str::contains("not authenticated").and(predicate::str::contains("--token")),
    );
    server
        .rsvp()
        .args([
            "--token",
            "rsvp_wrong",
            "get",
            "01a1fee2-20e9-74d9-9d8f-644a0eb6e704",
        ])
        .assert()
        .code(9)
        .stderr(predicate::str::contains("invalid credentials"));

    // Without --user, a reservation is the caller's.
    let line = stdout(server.rsvp().args([
        "--token",
        &ann,
        "-o",
        "json",
        "reserve",
        "-r",
        "room-1",
        "-s",
        "2026-12-01 10:00",
        "-d",
        "1h",
    ]));
    let made: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(made["user_id"], "ann");
    let id = made["id"].as_str().unwrap();

    // Another user may not read it, and is told so.
    server
        .rsvp()
        .args(["--token", &bob, "get", id])
        .assert()
        .code(9)
        .stderr(predicate::str::contains("permission denied"));
    server
        .rsvp()
        .args(["--token", &ann, "cancel", id])
        .assert()
        .success();
}

#[test]
fn https_servers_are_checked_and_client_certificates_sent() {
    use rsvp_server::auth::Authenticator;
    let certs = rsvp_testing::TestCerts::new("rsvp test authority");
    let server_files = certs.server();
    let tls = rsvp_server::tls::ServerTls::new(
        std::fs::read(&server_files.cert).unwrap(),
        std::fs::read(&server_files.key).unwrap(),
    )
    .client_ca_root(std::fs::read(certs.ca()).unwrap());
    let server = Server::start_with(move || ServerSettings {
        auth: Arc::new(Authenticator::certificates(
            std::collections::HashMap::from([("ops".to_string(), abi::Role::Admin)]),
        )),
        tls: Some(tls),
        ..ServerSettings::default()
    });
    let https = format!("https://{}", server.addr);
    let ops = certs.client("ops");
    let ca = certs.ca();

    server
        .rsvp()
        .args(["--server", &https, "whoami", "--ca-cert"])
        .arg(&ca)
        .arg("--cert")
        .arg(&ops.cert)
        .arg("--key")
        .arg(&ops.key)
        .assert()
        .success()
        .stdout("principal  ops\nrole       admin\nauth       mtls\n");
    server
        .rsvp()
        .env("RSVP_CA_CERT", &ca)
        .env("RSVP_CERT", &ops.cert)
        .env("RSVP_KEY", &ops.key)
        .args(["--server", &https, "-o", "json", "whoami"])
        .assert()
        .success()
        .stdout(predicate::str::contains("\"principal\":\"ops\""));

    // A server whose authority is not trusted is not talked to.
    server
        .rsvp()
        .args(["--server", &https, "whoami", "--cert"])
        .arg(&ops.cert)
        .arg("--key")
        .arg(&ops.key)
        .assert()
        .code(6);
    server
        .rsvp()
        .args(["--server", &https, "whoami", "--ca-cert"])
        .arg(certs.dir().join("missing.pem"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--ca-cert: cannot read"));
    server
        .rsvp()
        .args(["--server", &https, "whoami", "--cert"])
        .arg(&ops.cert)
        .assert()
        .code(2);
}

#[test]
fn without_authentication_a_reservation_needs_its_user_named() {
    let server = Server::start();
    server
        .rsvp()
        .args([
            "reserve",
            "-r",
            "room-1",
            "-s",
            "2026-12-01 10:00",
            "-d",
            "1h",
        ])
        .assert()
        .code(5)
        .stderr(
            "rsvp: --user: must not be empty (this server does not authenticate callers, so it \
             cannot tell who you are: give --user)\n",
        );
    server
        .rsvp()
        .args(["book", "--part", "room-1,2026-12-01 10:00,2026-12-01 11:00"])
        .assert()
        .code(5)
        .stderr(predicate::str::ends_with("give --user)\n"));
}

/// `rsvp reserve` of an hour of room from `start` against a server at
/// `addr` that never answers it: exit 6; what it wrote to stderr.
fn reserve_unanswered(addr: std::net::SocketAddr, timeout: &str, start: &str) -> String {
    let assert = Command::cargo_bin("rsvp")
        .unwrap()
        .env_clear()
        .env("RSVP_SERVER", format!("http://{addr}"))
        .args(["--timeout", timeout, "reserve", "-r", "room", "-u", "ann"])
        .args(["-s", start, "-d", "1h"])
        .assert()
        .code(6);
    String::from_utf8_lossy(&assert.get_output().stderr).to_string()
}

/// A connection that breaks once the call was sent (the server died, a
/// proxy cut it): the reserve may have been made; exit 6 and the hint to
/// repeat it with its request id.
#[test]
fn a_reserve_whose_connection_breaks_may_have_been_made() {
    use std::io::Read;
    let cutting = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = cutting.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut connection in cutting.incoming().take(2).flatten() {
            // Take what the client sends (the call), then cut.
            let _ = connection.set_read_timeout(Some(Duration::from_millis(500)));
            let mut buffer = [0u8; 4096];
            while matches!(connection.read(&mut buffer), Ok(n) if n > 0) {}
            drop(connection);
        }
    });
    let err = reserve_unanswered(addr, "10s", "2030-01-01T10:00:00Z");
    assert!(err.contains("broke before it answered"), "{err}");
    assert!(err.contains("may have been made"), "{err}");
    assert!(err.contains("--request-id"), "{err}");
}

/// A server that takes the connection and never answers: the reserve may
/// or may not have been made, and the hint gives the command to repeat
/// with the times as sent (a repeated `now` would be later).
#[test]
fn a_reserve_without_an_answer_says_how_to_repeat_it_exactly() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    std::thread::spawn(move || {
        let held: Vec<_> = silent.incoming().take(2).collect();
        std::thread::sleep(Duration::from_secs(10));
        drop(held);
    });
    let err = reserve_unanswered(addr, "1s", "now");
    assert!(err.contains("may have been made"), "{err}");
    let words: Vec<&str> = err.split_whitespace().collect();
    let after = |flag: &str| {
        words
            .iter()
            .position(|w| *w == flag)
            .and_then(|i| words.get(i + 1))
            .copied()
            .unwrap_or_default()
    };
    assert!(!after("--request-id").is_empty(), "{err}");
    let start: chrono::DateTime<chrono::Utc> = after("--start").parse().expect(&err);
    let end: chrono::DateTime<chrono::Utc> = after("--end").parse().expect(&err);
    assert_eq!(end - start, chrono::TimeDelta::hours(1), "{err}");
}
