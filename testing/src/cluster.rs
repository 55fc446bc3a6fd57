//! A private PostgreSQL cluster: `initdb` into a temporary directory, the
//! server on a free loopback port and a private socket directory (as root,
//! run as the `postgres` user). Fault tests crash and restart it.
//!
//! Clusters are stopped and their directories removed when dropped, and at
//! the latest when the test process exits; if the process dies without
//! exiting cleanly, the server gets an immediate shutdown signal.

use std::{
    env,
    fs::{self, File},
    net::TcpListener,
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Mutex, OnceLock, mpsc},
    time::{Duration, Instant},
};

use sqlx::{Connection, PgConnection};

const INSTALL_HINT: &str = "PostgreSQL server binaries (initdb, postgres) were not found. \
     Install PostgreSQL 15 or later (Debian/Ubuntu: `apt-get install postgresql`), \
     point RSVP_PG_BIN at its bin directory, or set RSVP_TEST_DATABASE_URL to a server \
     whose role may create databases.";

/// Running clusters, stopped at exit if their owners have not stopped them.
static RUNNING: Mutex<Vec<(PathBuf, i32)>> = Mutex::new(Vec::new());

/// A private PostgreSQL cluster.
#[derive(Debug)]
pub struct TestCluster {
    bin: PathBuf,
    user: Option<(u32, u32)>,
    dir: PathBuf,
    port: u16,
    settings: Vec<(String, String)>,
    pid: Mutex<Option<i32>>,
}

/// Settings for tests: durability against power loss is not what they test.
const TEST_SETTINGS: [(&str, &str); 5] = [
    ("fsync", "off"),
    ("synchronous_commit", "off"),
    ("full_page_writes", "off"),
    ("max_connections", "300"),
    ("shared_buffers", "64MB"),
];

impl TestCluster {
    /// Initializes and starts a cluster.
    ///
    /// # Errors
    /// When PostgreSQL's binaries cannot be found (saying what to install),
    /// or the cluster does not start.
    pub fn start() -> Result<TestCluster, String> {
        Self::start_with(&[])
    }

    /// Like [`TestCluster::start`], with `settings` (`name`, `value`)
    /// replacing or adding to the test defaults (`fsync=off`,
    /// `synchronous_commit=off`, `full_page_writes=off`,
    /// `max_connections=300`, `shared_buffers=64MB`).
    ///
    /// # Errors
    /// As [`TestCluster::start`].
    pub fn start_with(settings: &[(&str, &str)]) -> Result<TestCluster, String> {
        Self::start_inner(settings, None)
    }

    /// Like [`TestCluster::start`], with TLS on: `server` is the server's
    /// certificate and key (PEM).
    ///
    /// # Errors
    /// As [`TestCluster::start`], or when the files cannot be copied.
    pub fn start_with_tls(server: &crate::CertFiles) -> Result<TestCluster, String> {
        Self::start_inner(&[("ssl", "on")], Some(server))
    }

    fn start_inner(
        settings: &[(&str, &str)],
        tls: Option<&crate::CertFiles>,
    ) -> Result<TestCluster, String> {
        let mut all: Vec<(String, String)> = TEST_SETTINGS
            .iter()
            .filter(|(k, _)| !settings.iter().any(|(o, _)| o == k))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        all.extend(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let bin = find_bin_dir()?;
        let user = cluster_user()?;
        let dir = tempfile::Builder::new()
            .prefix("rsvp-test-pg-")
            .tempdir()
            .map_err(|e| e.to_string())?
            .keep();
        let cluster = TestCluster {
            bin,
            user,
            port: free_port()?,
            dir,
            settings: all,
            pid: Mutex::new(None),
        };
        cluster.init()?;
        if let Some(files) = tls {
            cluster.install_certificate(files)?;
        }
        cluster.launch()?;
        Ok(cluster)
    }

    /// `postgres://postgres@127.0.0.1:<port>`: append `/<database>`.
    pub fn base_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    /// The URL of `database`.
    pub fn url(&self, database: &str) -> String {
        format!("{}/{database}", self.base_url())
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory of PostgreSQL's binaries (`pgbench` is there too).
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// Runs `program` from PostgreSQL's binaries as the cluster's user.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        as_user(&mut cmd, self.user);
        cmd
    }

    /// Stops the server at once, as a crash would: no checkpoint, open
    /// connections cut, recovery on the next start.
    pub fn crash(&self) {
        self.signal_and_wait(libc::SIGQUIT);
    }

    /// Stops the server cleanly (fast shutdown).
    pub fn stop(&self) {
        self.signal_and_wait(libc::SIGINT);
    }

    /// Starts the server again on the same port and data.
    ///
    /// # Errors
    /// When it does not come up.
    pub fn restart(&self) -> Result<(), String> {
        self.launch()
    }

    fn signal_and_wait(&self, signal: i32) {
        let pid = self.pid.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(pid) = pid {
            stop_process(pid, signal);
            forget(&self.dir);
        }
    }

    fn init(&self) -> Result<(), String> {
        if let Some((uid, gid)) = self.user {
            std::os::unix::fs::chown(&self.dir, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
        }
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| e.to_string())?;
        let initdb = as_user(&mut Command::new(self.bin.join("initdb")), self.user)
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"])
            .args(["--no-sync", "--no-instructions"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running initdb: {e}"))?;
        if initdb.status.success() {
            Ok(())
        } else {
            Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&initdb.stderr)
            ))
        }
    }

    /// Copies the server's certificate and key to where PostgreSQL looks
    /// for them (`server.crt`, `server.key` in the data directory), owned
    /// by the cluster's user, the key readable by it alone.
    fn install_certificate(&self, files: &crate::CertFiles) -> Result<(), String> {
        let data = self.dir.join("data");
        for (from, to) in [(&files.cert, "server.crt"), (&files.key, "server.key")] {
            let to = data.join(to);
            fs::copy(from, &to).map_err(|e| format!("copying {}: {e}", from.display()))?;
            fs::set_permissions(&to, fs::Permissions::from_mode(0o600))
                .map_err(|e| e.to_string())?;
            if let Some((uid, gid)) = self.user {
                std::os::unix::fs::chown(&to, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    fn launch(&self) -> Result<(), String> {
        let log_path = self.dir.join("postgres.log");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| e.to_string())?;
        if let Some((uid, gid)) = self.user {
            std::os::unix::fs::chown(&log_path, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
        }
        let mut cmd = Command::new(self.bin.join("postgres"));
        as_user(&mut cmd, self.user)
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-p", &self.port.to_string()])
            .arg("-k")
            .arg(&self.dir)
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(
                self.settings
                    .iter()
                    .flat_map(|(k, v)| ["-c".to_string(), format!("{k}={v}")]),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        // SAFETY: prctl is async-signal-safe. If this process dies without
        // running its exit handlers, the server gets an immediate shutdown.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let pid = spawn_from_keeper(cmd)?;
        *self.pid.lock().unwrap_or_else(|p| p.into_inner()) = Some(pid);
        remember(&self.dir, pid);
        self.wait_until_ready(&log_path)
    }

    fn wait_until_ready(&self, log_path: &Path) -> Result<(), String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let url = self.url("postgres");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = runtime.block_on(async { PgConnection::connect(&url).await.map(|_| ()) });
            match ok {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    let log = fs::read_to_string(log_path).unwrap_or_default();
                    return Err(format!("postgres did not start: {e}\n{log}"));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        self.crash();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Signals `pid` and waits for it to exit.
fn stop_process(pid: i32, signal: i32) {
    // SAFETY: plain syscalls on a child of this process.
    unsafe {
        libc::kill(pid, signal);
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
    }
}

fn remember(dir: &Path, pid: i32) {
    static AT_EXIT: OnceLock<()> = OnceLock::new();
    AT_EXIT.get_or_init(|| {
        extern "C" fn stop_all() {
            let running = std::mem::take(&mut *RUNNING.lock().unwrap_or_else(|p| p.into_inner()));
            for (dir, pid) in running {
                stop_process(pid, libc::SIGQUIT);
                let _ = fs::remove_dir_all(dir);
            }
        }
        // SAFETY: registers a plain function, once per process.
        unsafe {
            libc::atexit(stop_all);
        }
    });
    let mut running = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
    running.retain(|(d, _)| d != dir);
    running.push((dir.to_path_buf(), pid));
}

fn forget(dir: &Path) {
    RUNNING
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|(d, _)| d != dir);
}

/// Spawns `cmd` from a thread that lives as long as the process: the
/// parent-death signal fires when the spawning *thread* ends.
fn spawn_from_keeper(cmd: Command) -> Result<i32, String> {
    type Job = (Command, mpsc::Sender<std::io::Result<u32>>);
    static KEEPER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let keeper = KEEPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let _ = std::thread::Builder::new()
            .name("test-postgres".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn().map(|c| c.id()));
                }
                loop {
                    std::thread::park();
                }
            });
        Mutex::new(tx)
    });
    let (reply, answer) = mpsc::channel();
    keeper
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((cmd, reply))
        .map_err(|e| e.to_string())?;
    answer
        .recv()
        .map_err(|e| e.to_string())?
        .map(|pid| pid as i32)
        .map_err(|e| format!("starting postgres: {e}"))
}

/// Where PostgreSQL's server binaries are.
pub(crate) fn find_bin_dir() -> Result<PathBuf, String> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Ok(dir) = env::var("RSVP_PG_BIN") {
        let dir = PathBuf::from(dir);
        return if has_server(&dir) {
            Ok(dir)
        } else {
            Err(format!(
                "RSVP_PG_BIN={} holds no initdb and postgres. {INSTALL_HINT}",
                dir.display()
            ))
        };
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_server(&dir) {
            return Ok(dir);
        }
    }
    for dir in env::split_paths(&env::var_os("PATH").unwrap_or_default()) {
        if let Ok(initdb) = fs::canonicalize(dir.join("initdb"))
            && let Some(real) = initdb.parent()
            && has_server(real)
        {
            return Ok(real.to_path_buf());
        }
    }
    let mut versions: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions
        .into_iter()
        .rev()
        .find(|d| has_server(d))
        .ok_or_else(|| INSTALL_HINT.to_string())
}

/// The user the cluster runs as: as root, `postgres` (PostgreSQL refuses to
/// run as root); otherwise the current user.
pub(crate) fn cluster_user() -> Result<Option<(u32, u32)>, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = c"postgres";
    // SAFETY: getpwnam reads a NUL-terminated name; the returned record is
    // copied out before any other passwd call.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(
            "tests run as root, and PostgreSQL refuses to: create a `postgres` user \
             (installing PostgreSQL does) or run the tests as another user"
                .into(),
        );
    }
    // SAFETY: pw is non-null and points to a valid passwd record.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok(Some((uid, gid)))
}

pub(crate) fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

pub(crate) fn as_user(cmd: &mut Command, user: Option<(u32, u32)>) -> &mut Command {
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
    cmd
}
