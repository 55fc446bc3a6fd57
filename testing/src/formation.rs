//! A throwaway pg_auto_failover formation on loopback: a monitor and two
//! PostgreSQL nodes (a primary and a synchronous standby) that fail over by
//! themselves. Failover tests kill the primary and watch the standby take
//! over.
//!
//! Everything lives in one temporary directory (data, configuration, state,
//! pid files, logs); each `pg_autoctl` runs in its own process group, as
//! the `postgres` user when the tests run as root. Dropping the formation
//! stops it and removes the directory.

use std::{
    fs::{self, File},
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::cluster::{as_user, cluster_user, find_bin_dir, free_port};

const INSTALL_HINT: &str = "pg_autoctl was not found: install pg_auto_failover \
     (Debian/Ubuntu: `apt-get install postgresql-15-auto-failover pg-auto-failover-cli`; \
     `make test-deps` does)";

/// The database the formation serves.
pub const DATABASE: &str = "rsvp";

/// How quickly the monitor declares a node failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MonitorTimings {
    /// pg_auto_failover's defaults: about 20 s to detect a failure and up
    /// to 30 s more waiting for the old primary to demote itself.
    Default,
    /// Health checks every 0.5 s, a node failed after 1.5 s, the demotion
    /// wait 1 s: a failover in a few seconds.
    Fast,
}

const FAST_MONITOR: &str = "\n# failover tests: fast failure detection\n\
    pgautofailover.health_check_period = 500\n\
    pgautofailover.health_check_timeout = 500\n\
    pgautofailover.health_check_max_retries = 1\n\
    pgautofailover.health_check_retry_delay = 200\n\
    pgautofailover.node_considered_unhealthy_timeout = 1500\n\
    pgautofailover.primary_demote_timeout = 1000\n\
    pgautofailover.startup_grace_period = 1000\n";

/// pg_autoctl sizes PostgreSQL for the whole machine; tests need little.
/// Appended after its include line, so these win; the standby's base
/// backup copies them.
const NODE_SETTINGS: &str = "\n# failover tests\n\
    shared_buffers = 128MB\n\
    fsync = off\n\
    wal_keep_size = '256MB'\n\
    max_connections = 200\n\
    wal_retrieve_retry_interval = '200ms'\n";

/// A running formation: a monitor and nodes `node1`, `node2`.
#[derive(Debug)]
pub struct Formation {
    dir: PathBuf,
    bin: PathBuf,
    autoctl: PathBuf,
    user: Option<(u32, u32)>,
    monitor_port: u16,
    ports: [u16; 2],
    /// `pg_autoctl run` of the monitor and of each node, by name.
    services: Mutex<Vec<(String, Child)>>,
    /// Semaphores of services killed without their clean-up.
    leaked: Mutex<Vec<String>>,
}

impl Formation {
    /// Builds and starts a monitor and two nodes, and waits until one is
    /// primary and the other its secondary.
    ///
    /// # Errors
    /// When pg_autoctl or PostgreSQL is missing (saying what to install),
    /// or the formation does not come up within two minutes.
    pub fn start(timings: MonitorTimings) -> Result<Formation, String> {
        let bin = find_bin_dir()?;
        let autoctl = find_autoctl(&bin)?;
        let user = cluster_user()?;
        let dir = tempfile::Builder::new()
            .prefix("rsvp-test-pgaf-")
            .tempdir()
            .map_err(|e| e.to_string())?
            .keep();
        let formation = Formation {
            dir,
            bin,
            autoctl,
            user,
            monitor_port: free_port()?,
            ports: [free_port()?, free_port()?],
            services: Mutex::new(Vec::new()),
            leaked: Mutex::new(Vec::new()),
        };
        formation.build(timings)?;
        Ok(formation)
    }

    fn build(&self, timings: MonitorTimings) -> Result<(), String> {
        // pg_autoctl keeps pid files under XDG_RUNTIME_DIR, which must exist
        // before its first run.
        fs::create_dir_all(self.dir.join("run")).map_err(|e| e.to_string())?;
        for path in [self.dir.clone(), self.dir.join("run")] {
            if let Some((uid, gid)) = self.user {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
            }
            fs::set_permissions(&path, fs::Permissions::from_mode(0o700))
                .map_err(|e| e.to_string())?;
        }
        let monitor = self.pgdata("monitor");
        self.create("monitor", "monitor", self.monitor_port, &[])?;
        self.autoctl(&[
            "config",
            "set",
            "--pgdata",
            &monitor,
            "postgresql.listen_addresses",
            "127.0.0.1",
        ])?;
        if timings == MonitorTimings::Fast {
            self.append(&self.dir.join("monitor/postgresql.conf"), FAST_MONITOR)?;
        }
        self.run("monitor")?;
        self.wait_until(Duration::from_secs(60), "the monitor to answer", || {
            self.monitor_query("SELECT 1").is_ok_and(|r| r == "1")
        })?;

        for (index, name) in ["node1", "node2"].into_iter().enumerate() {
            let monitor_url = format!(
                "postgres://autoctl_node@127.0.0.1:{}/pg_auto_failover?sslmode=disable",
                self.monitor_port
            );
            self.create(
                "postgres",
                name,
                self.ports[index],
                &[
                    "--listen",
                    "127.0.0.1",
                    "--name",
                    name,
                    "--monitor",
                    &monitor_url,
                    "--dbname",
                    DATABASE,
                ],
            )?;
            if index == 0 {
                self.append(&self.dir.join("node1/postgresql.conf"), NODE_SETTINGS)?;
            }
            // The second node's creation copies the first: it must run.
            self.run(name)?;
        }
        self.wait_ready(Duration::from_secs(120))
    }

    /// `pg_autoctl create <kind>` of `name` on `port`, on loopback, trusting
    /// loopback connections, without TLS; `extra` arguments after.
    fn create(&self, kind: &str, name: &str, port: u16, extra: &[&str]) -> Result<(), String> {
        let pgdata = self.pgdata(name);
        let port = port.to_string();
        let pg_ctl = self.bin.join("pg_ctl");
        let pg_ctl = pg_ctl.to_string_lossy();
        let mut args = vec![
            "create",
            kind,
            "--pgdata",
            &pgdata,
            "--pgport",
            &port,
            "--hostname",
            "127.0.0.1",
            "--auth",
            "trust",
            "--no-ssl",
            "--ssl-mode",
            "disable",
            "--pgctl",
            &pg_ctl,
        ];
        args.extend_from_slice(extra);
        self.autoctl(&args)
    }

    /// `postgres://postgres@127.0.0.1:<p1>,127.0.0.1:<p2>/rsvp?target_session_attrs=read-write`,
    /// as `pg_autoctl show uri` gives it (with the user named).
    pub fn url(&self) -> String {
        format!(
            "postgres://{}@127.0.0.1:{},127.0.0.1:{}/{DATABASE}?target_session_attrs=read-write&sslmode=disable",
            self.role(),
            self.ports[0],
            self.ports[1]
        )
    }

    /// The nodes' superuser: the user `pg_autoctl` runs as.
    fn role(&self) -> String {
        match self.user {
            Some(_) => "postgres".to_string(),
            None => std::env::var("USER").unwrap_or_else(|_| "postgres".to_string()),
        }
    }

    /// The URL of one node alone.
    pub fn node_url(&self, name: &str) -> String {
        let port = self.port(name);
        format!(
            "postgres://{}@127.0.0.1:{port}/{DATABASE}?sslmode=disable",
            self.role()
        )
    }

    /// The node the monitor holds primary now, if any.
    pub fn primary(&self) -> Option<String> {
        self.monitor_query(
            "SELECT nodename FROM pgautofailover.node \
             WHERE reportedstate IN ('primary', 'wait_primary', 'single') \
               AND goalstate = reportedstate",
        )
        .ok()
        .filter(|name| !name.is_empty() && !name.contains('\n'))
    }

    /// Each node's reported and goal state, for messages.
    pub fn states(&self) -> String {
        self.monitor_query(
            "SELECT string_agg(nodename || ':' || reportedstate || '/' || goalstate, ' ' \
             ORDER BY nodeid) FROM pgautofailover.node",
        )
        .unwrap_or_else(|e| e)
    }

    /// Waits until one node is primary and the other its secondary.
    ///
    /// # Errors
    /// When that does not happen within `within`.
    pub fn wait_ready(&self, within: Duration) -> Result<(), String> {
        self.wait_until(within, "a primary and a secondary", || {
            self.monitor_query(
                "SELECT count(*) FILTER (WHERE reportedstate = 'primary' AND goalstate = 'primary') \
                 || '/' || count(*) FILTER (WHERE reportedstate = 'secondary' AND goalstate = 'secondary') \
                 FROM pgautofailover.node",
            )
            .is_ok_and(|r| r == "1/1")
        })
    }

    /// Kills a node as a machine failure would: its `pg_autoctl` (which
    /// would otherwise restart PostgreSQL in place) and its PostgreSQL
    /// together, with SIGKILL.
    ///
    /// # Errors
    /// When the node still accepts connections 10 s later.
    pub fn kill(&self, name: &str) -> Result<(), String> {
        let pid_file = self.pid_file(name);
        if let Ok(text) = fs::read_to_string(&pid_file)
            && let Some(semaphore) = text.lines().nth(4)
        {
            self.leaked
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(semaphore.trim().to_string());
        }
        // The postmaster, by its own pid file, in case it left the group.
        let postmaster = fs::read_to_string(self.dir.join(name).join("postmaster.pid"))
            .ok()
            .and_then(|text| {
                text.lines()
                    .next()
                    .and_then(|l| l.trim().parse::<i32>().ok())
            });
        let mut services = self.services.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(at) = services.iter().position(|(n, _)| n == name) {
            let (_, mut child) = services.remove(at);
            // SAFETY: a signal to a process group this process started.
            unsafe {
                libc::kill(-(child.id() as i32), libc::SIGKILL);
            }
            let _ = child.wait();
        }
        if let Some(pid) = postmaster {
            // SAFETY: a signal to the node's postmaster, read from its pid
            // file a moment ago.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        // PostgreSQL's children notice the postmaster's death and exit.
        let port = self.port(name);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            if Instant::now() > deadline {
                return Err(format!(
                    "{name} still accepts connections 10 s after SIGKILL"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn port(&self, name: &str) -> u16 {
        if name == "node1" {
            self.ports[0]
        } else {
            self.ports[1]
        }
    }

    /// Starts a killed node's `pg_autoctl` again: it rejoins as secondary.
    ///
    /// # Errors
    /// When it cannot be started.
    pub fn restart(&self, name: &str) -> Result<(), String> {
        self.run(name)
    }

    fn pgdata(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    fn pid_file(&self, name: &str) -> PathBuf {
        let data = self.dir.join(name);
        let relative = data.strip_prefix("/").unwrap_or(&data);
        self.dir
            .join("run/pg_autoctl")
            .join(relative)
            .join("pg_autoctl.pid")
    }

    fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        let path = format!("{}:/usr/bin:/bin", self.bin.display());
        cmd.env_clear()
            .env("HOME", &self.dir)
            .env("XDG_CONFIG_HOME", self.dir.join("config"))
            .env("XDG_DATA_HOME", self.dir.join("data"))
            .env("XDG_RUNTIME_DIR", self.dir.join("run"))
            .env("PATH", path)
            .env("PG_CONFIG", self.bin.join("pg_config"))
            .env("LANG", "C.UTF-8")
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        as_user(&mut cmd, self.user);
        cmd
    }

    /// Runs a `pg_autoctl` command to its end, at most two minutes.
    fn autoctl(&self, args: &[&str]) -> Result<(), String> {
        let log = self.dir.join("autoctl.log");
        let out = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| e.to_string())?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut child = self
            .command(&self.autoctl)
            .args(args)
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("running pg_autoctl: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                return if status.success() {
                    Ok(())
                } else {
                    Err(format!(
                        "pg_autoctl {} failed ({status}): {}",
                        args.join(" "),
                        tail(&log)
                    ))
                };
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "pg_autoctl {} did not finish in 2 minutes: {}",
                    args.join(" "),
                    tail(&log)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts `pg_autoctl run` for `name` in a process group of its own.
    fn run(&self, name: &str) -> Result<(), String> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{name}.log")))
            .map_err(|e| e.to_string())?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let child = self
            .command(&self.autoctl)
            .args(["run", "--pgdata", &self.pgdata(name)])
            .stdout(log)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("starting pg_autoctl run: {e}"))?;
        self.services
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((name.to_string(), child));
        Ok(())
    }

    fn append(&self, file: &Path, text: &str) -> Result<(), String> {
        use std::io::Write;
        File::options()
            .append(true)
            .open(file)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| format!("{}: {e}", file.display()))
    }

    /// One value from the monitor's database (`psql -At`).
    fn monitor_query(&self, sql: &str) -> Result<String, String> {
        let out = self
            .command(&self.bin.join("psql"))
            .args(["-X", "-At", "-h", "127.0.0.1", "-p"])
            .arg(self.monitor_port.to_string())
            .args(["-d", "pg_auto_failover", "-c", sql])
            .env("PGCONNECT_TIMEOUT", "2")
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    fn wait_until(
        &self,
        within: Duration,
        what: &str,
        mut done: impl FnMut() -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + within;
        while !done() {
            if Instant::now() > deadline {
                return Err(format!(
                    "waited {within:?} for {what}; nodes: {}",
                    self.states()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }
}

impl Drop for Formation {
    fn drop(&mut self) {
        for name in ["node1", "node2", "monitor"] {
            if self.pid_file(name).exists()
                && let Ok(mut stop) = self
                    .command(&self.autoctl)
                    .args(["stop", "--pgdata", &self.pgdata(name)])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
            {
                let deadline = Instant::now() + Duration::from_secs(15);
                while matches!(stop.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = stop.kill();
                let _ = stop.wait();
            }
        }
        let mut services = self.services.lock().unwrap_or_else(|p| p.into_inner());
        for (_, child) in services.iter_mut() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if matches!(child.try_wait(), Ok(None)) {
                // SAFETY: a signal to a process group this process started
                // and has not reaped.
                unsafe {
                    libc::kill(-(child.id() as i32), libc::SIGKILL);
                }
                let _ = child.wait();
            }
        }
        for semaphore in self.leaked.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = Command::new("ipcrm")
                .args(["-s", semaphore])
                .stderr(Stdio::null())
                .status();
        }
        if std::env::var_os("RSVP_KEEP_FORMATION").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn find_autoctl(bin: &Path) -> Result<PathBuf, String> {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain([PathBuf::from("/usr/bin"), bin.to_path_buf()])
        .map(|dir| dir.join("pg_autoctl"))
        .find(|path| path.is_file())
        .ok_or_else(|| INSTALL_HINT.to_string())
}

/// The end of a log, for error messages.
fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
