//! A throwaway PostgreSQL for tests.
//!
//! The first test that asks starts a private [`TestCluster`], migrates a
//! template database, and every test clones its own database from the
//! template. The cluster stops and its directory is removed when the test
//! process exits.
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
    sync::{
        OnceLock,
        atomic::{AtomicU32, Ordering},
    },
};

use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection, PgPool, postgres::PgPoolOptions};

use crate::TestCluster;
use reservation::{PgStore, StoreOptions};

/// The environment variable naming an existing server to test against.
pub const DATABASE_URL_VAR: &str = "RSVP_TEST_DATABASE_URL";

/// The server tests run against, shared by every test of the process.
#[derive(Debug)]
pub struct TestServer {
    admin_url: String,
    /// The URL of `database` on this server.
    base_url: String,
    template: String,
    /// The throwaway cluster, if this process started one.
    _cluster: Option<TestCluster>,
}

static SERVER: OnceLock<TestServer> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

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
                _cluster: None,
            }
        }
        _ => {
            let cluster = TestCluster::start()?;
            TestServer {
                admin_url: cluster.url("postgres"),
                base_url: cluster.base_url(),
                template: "rsvp_template".to_string(),
                _cluster: Some(cluster),
            }
        }
    };
    runtime.block_on(create_template(&server))?;
    if server._cluster.is_none() {
        drop_template_at_exit(&server);
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
    reservation::postgres::migrate(&pool)
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

/// On a server this process did not start, the template goes at exit.
fn drop_template_at_exit(server: &TestServer) {
    static TEMPLATE: OnceLock<(String, String)> = OnceLock::new();
    let _ = TEMPLATE.set((server.admin_url.clone(), server.template.clone()));
    extern "C" fn drop_template() {
        if let Some((admin_url, template)) = TEMPLATE.get() {
            let _ = std::thread::spawn(move || drop_database(admin_url, template)).join();
        }
    }
    // SAFETY: registers a plain function, once per process.
    unsafe {
        libc::atexit(drop_template);
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
