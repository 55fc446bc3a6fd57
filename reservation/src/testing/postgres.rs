//! A throwaway PostgreSQL for tests.
//!
//! The first test that asks starts a private cluster (initdb, then the
//! server on a free loopback port and a private socket directory; as root,
//! both run as the `postgres` user), migrates a template database, and
//! every test clones its own database from the template. The cluster stops
//! and its directory is removed when the test process exits.
//!
//! With `RSVP_TEST_DATABASE_URL` set (a URL whose role may create
//! databases), that server is used instead of a throwaway cluster.
//!
//! PostgreSQL's binaries are looked for in `RSVP_PG_BIN`, `pg_config
//! --bindir`, next to `initdb` on `PATH`, and in `/usr/lib/postgresql/*/bin`.
//! When they cannot be found the test fails saying what to install; it is
//! never skipped.

use std::{
    env,
    fs::{self, File},
    net::TcpListener,
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Mutex, OnceLock,
        atomic::{AtomicU32, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection, PgPool, postgres::PgPoolOptions};

use crate::{PgStore, StoreOptions};

/// The environment variable naming an existing server to test against.
pub const DATABASE_URL_VAR: &str = "RSVP_TEST_DATABASE_URL";

const INSTALL_HINT: &str = "PostgreSQL server binaries (initdb, postgres) were not found. \
     Install PostgreSQL 15 or later (Debian/Ubuntu: `apt-get install postgresql`), \
     point RSVP_PG_BIN at its bin directory, or set RSVP_TEST_DATABASE_URL to a server \
     whose role may create databases.";

/// The server tests run against, shared by every test of the process.
#[derive(Debug)]
pub struct TestServer {
    admin_url: String,
    /// The URL of `database` on this server.
    base_url: String,
    template: String,
}

static SERVER: OnceLock<TestServer> = OnceLock::new();
static CLEANUP: Mutex<Option<Cleanup>> = Mutex::new(None);
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

enum Cleanup {
    Cluster { pid: i32, dir: PathBuf },
    Template { admin_url: String, template: String },
}

impl TestServer {
    /// The process-wide server, started on first use.
    ///
    /// # Panics
    /// When no server can be started, with what to install.
    pub fn get() -> &'static TestServer {
        SERVER.get_or_init(|| {
            // Startup blocks on async work; run it away from any runtime the
            // caller is inside.
            let started = std::thread::spawn(start)
                .join()
                .unwrap_or_else(|_| Err("the PostgreSQL starter thread panicked".into()));
            match started {
                Ok(server) => server,
                Err(e) => panic!("cannot start a test PostgreSQL: {e}"),
            }
        })
    }

    /// A URL to `database` on this server.
    pub fn url(&self, database: &str) -> String {
        format!("{}/{database}", self.base_url)
    }
}

fn start() -> Result<TestServer, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let server = match env::var(DATABASE_URL_VAR) {
        Ok(url) if !url.is_empty() => {
            let (base_url, _) = url
                .rsplit_once('/')
                .ok_or_else(|| format!("{DATABASE_URL_VAR} must end in /<database>"))?;
            TestServer {
                base_url: base_url.to_string(),
                admin_url: url,
                template: format!("rsvp_template_{}", std::process::id()),
            }
        }
        _ => {
            let base_url = start_cluster()?;
            TestServer {
                admin_url: format!("{base_url}/postgres"),
                base_url,
                template: "rsvp_template".to_string(),
            }
        }
    };
    runtime.block_on(create_template(&server))?;
    if env::var(DATABASE_URL_VAR).is_ok_and(|u| !u.is_empty()) {
        register_cleanup(Cleanup::Template {
            admin_url: server.admin_url.clone(),
            template: server.template.clone(),
        });
    }
    Ok(server)
}

async fn create_template(server: &TestServer) -> Result<(), String> {
    let mut admin = PgConnection::connect(&server.admin_url)
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", server.admin_url))?;
    let t = &server.template;
    admin
        .execute(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{t}\" WITH (FORCE)"
        )))
        .await
        .map_err(|e| e.to_string())?;
    admin
        .execute(AssertSqlSafe(format!("CREATE DATABASE \"{t}\"")))
        .await
        .map_err(|e| e.to_string())?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&server.url(t))
        .await
        .map_err(|e| e.to_string())?;
    crate::postgres::migrate(&pool)
        .await
        .map_err(|e| format!("migrating the template: {e:?}"))?;
    pool.close().await;
    admin
        .execute(AssertSqlSafe(format!(
            "ALTER DATABASE \"{t}\" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"
        )))
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Where PostgreSQL's server binaries are.
fn find_bin_dir() -> Result<PathBuf, String> {
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
fn cluster_user() -> Result<Option<(u32, u32)>, String> {
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

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

fn as_user(cmd: &mut Command, user: Option<(u32, u32)>) -> &mut Command {
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

/// Starts a private cluster; returns `postgres://postgres@127.0.0.1:<port>`.
fn start_cluster() -> Result<String, String> {
    let bin = find_bin_dir()?;
    let user = cluster_user()?;
    let dir = tempfile::Builder::new()
        .prefix("rsvp-test-pg-")
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
    }
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(|e| e.to_string())?;
    let data = dir.join("data");

    let initdb = as_user(&mut Command::new(bin.join("initdb")), user)
        .arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"])
        .args(["--no-sync", "--no-instructions"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running initdb: {e}"))?;
    if !initdb.status.success() {
        let _ = fs::remove_dir_all(&dir);
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&initdb.stderr)
        ));
    }

    let port = free_port()?;
    let log_path = dir.join("postgres.log");
    let log = File::create(&log_path).map_err(|e| e.to_string())?;
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(&log_path, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
    }
    let mut cmd = Command::new(bin.join("postgres"));
    as_user(&mut cmd, user)
        .arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string()])
        .arg("-k")
        .arg(&dir)
        .args(["-c", "listen_addresses=127.0.0.1"])
        // Durability is not what these tests test; speed is welcome.
        .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
        .args(["-c", "full_page_writes=off", "-c", "max_connections=300"])
        .args(["-c", "shared_buffers=64MB"])
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

    // The death signal fires when the spawning *thread* ends, so the server
    // is spawned from a thread that lives as long as the process.
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("test-postgres".into())
        .spawn(move || {
            let _ = tx.send(cmd.spawn().map(|c| c.id()));
            loop {
                std::thread::park();
            }
        })
        .map_err(|e| e.to_string())?;
    let pid = rx
        .recv()
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("starting postgres: {e}"))?;
    register_cleanup(Cleanup::Cluster {
        pid: pid as i32,
        dir: dir.clone(),
    });

    let base_url = format!("postgres://postgres@127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let probe = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    loop {
        let ok = probe.block_on(async {
            PgConnection::connect(&format!("{base_url}/postgres"))
                .await
                .map(|_| ())
        });
        match ok {
            Ok(()) => return Ok(base_url),
            Err(e) if Instant::now() > deadline => {
                let log = fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!("postgres did not start: {e}\n{log}"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn register_cleanup(cleanup: Cleanup) {
    let mut slot = CLEANUP.lock().unwrap_or_else(|p| p.into_inner());
    *slot = Some(cleanup);
    extern "C" fn at_exit() {
        let cleanup = CLEANUP.lock().unwrap_or_else(|p| p.into_inner()).take();
        match cleanup {
            Some(Cleanup::Cluster { pid, dir }) => {
                // SAFETY: plain syscalls on the server's pid.
                unsafe {
                    libc::kill(pid, libc::SIGQUIT);
                    let mut status = 0;
                    libc::waitpid(pid, &mut status, 0);
                }
                let _ = fs::remove_dir_all(dir);
            }
            Some(Cleanup::Template {
                admin_url,
                template,
            }) => {
                let _ = std::thread::spawn(move || drop_database(&admin_url, &template)).join();
            }
            None => {}
        }
    }
    // SAFETY: registers a plain function, once per process.
    unsafe {
        libc::atexit(at_exit);
    }
}

fn drop_database(admin_url: &str, name: &str) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    runtime.block_on(async {
        if let Ok(mut admin) = PgConnection::connect(admin_url).await {
            let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
            if let Err(e) = admin.execute(AssertSqlSafe(sql)).await {
                eprintln!("cannot drop test database {name}: {e}");
            }
        }
    });
}

/// A database of its own for one test, cloned from the migrated template
/// and dropped when the value is dropped.
#[derive(Debug)]
pub struct TestDb {
    name: String,
    url: String,
    server: &'static TestServer,
}

impl TestDb {
    /// A new, migrated, empty database.
    ///
    /// # Panics
    /// When no server can be started or the database cannot be made.
    pub async fn new() -> TestDb {
        let server = TestServer::get();
        TestDb::create(server, &server.template).await
    }

    /// A new database with no schema at all, for testing migrations.
    ///
    /// # Panics
    /// When no server can be started or the database cannot be made.
    pub async fn empty() -> TestDb {
        TestDb::create(TestServer::get(), "template0").await
    }

    async fn create(server: &'static TestServer, template: &str) -> TestDb {
        let name = format!(
            "rsvp_test_{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = PgConnection::connect(&server.admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test server: {e}"));
        let sql = format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\"");
        admin
            .execute(AssertSqlSafe(sql))
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        let _ = admin.close().await;
        TestDb {
            url: server.url(&name),
            name,
            server,
        }
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A pool of up to `max_connections` connections to the database.
    ///
    /// # Panics
    /// When the database cannot be reached.
    pub async fn pool(&self, max_connections: u32) -> PgPool {
        PgPoolOptions::new()
            .max_connections(max_connections)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.url))
    }

    /// A store on the database.
    ///
    /// # Panics
    /// When the store cannot open.
    pub async fn store(&self, options: StoreOptions) -> PgStore {
        PgStore::connect(&self.url, options)
            .await
            .unwrap_or_else(|e| panic!("cannot open a store on {}: {e:?}", self.url))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin_url = self.server.admin_url.clone();
        let name = self.name.clone();
        let _ = std::thread::spawn(move || drop_database(&admin_url, &name)).join();
    }
}
