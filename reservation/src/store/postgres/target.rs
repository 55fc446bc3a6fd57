//! Where the store connects: one PostgreSQL server, or several named in one
//! URL as libpq reads it (`postgres://u@h1:5432,h2:5432/db?target_session_attrs=read-write`),
//! of which the first in the list that accepts the kind of session asked
//! for is used.
//!
//! A pair behind pg_auto_failover, Patroni or a managed primary/standby
//! service is named this way. When the server in use goes away or stops
//! taking writes (a failover demotes it), the store finds the next one by
//! itself: [`Target::watch`] checks the server in use every
//! [`WATCH_EVERY`] (and at once when a new connection lands on the wrong
//! kind of server), tries the hosts again in order, points the pool at the
//! one that accepts, and retires every pooled connection opened before;
//! the change feed's own connections follow ([`Target::subscribe`]).

use std::{
    str::FromStr,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use abi::{Error, Result};
use rand::seq::SliceRandom;
use sqlx::{
    Connection, PgConnection, PgPool, pool::PoolConnectionMetadata, postgres::PgConnectOptions,
};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::hosts::{HostList, SessionAttrs};
use crate::db_error::db_error;

/// How often the server in use is checked when there is another to go to.
pub(crate) const WATCH_EVERY: Duration = Duration::from_secs(1);

/// How long one host may take to accept a connection and answer, when the
/// URL's `connect_timeout` does not say (or says 0): a host that vanished
/// without a word must not hold up finding the next one for long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the store waits between rounds over the hosts while none
/// accepts.
const RETRY_EVERY: Duration = Duration::from_millis(250);

/// The server in use.
struct Current {
    options: PgConnectOptions,
    label: String,
}

/// The hosts a store may connect to, the one in use, and the connection
/// that checks it (for health, and to notice a failover).
pub(crate) struct Target {
    hosts: Vec<(PgConnectOptions, String)>,
    attrs: SessionAttrs,
    random: bool,
    connect_timeout: Duration,
    current: Mutex<Current>,
    /// Microseconds after `epoch` at which the store last chose a server:
    /// pooled connections opened before then are retired.
    chosen_at: AtomicU64,
    /// Bumped with `chosen_at`: the check connection, the change feed's
    /// listener and its announcer reconnect when it moves.
    generation: watch::Sender<u64>,
    epoch: Instant,
    /// Something found the server in use unusable.
    lost: Notify,
    probe: tokio::sync::Mutex<Option<(PgConnection, u64)>>,
}

impl Target {
    /// The hosts of `url`, each with `settings` applied.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] on `database_url` for a malformed URL.
    pub fn parse(
        url: &str,
        settings: impl Fn(PgConnectOptions) -> PgConnectOptions,
    ) -> Result<Target> {
        let list = HostList::parse(url)?;
        let hosts = list
            .urls
            .iter()
            .map(|url| {
                let mut options = PgConnectOptions::from_str(url)
                    .map_err(|_| Error::invalid("database_url", "not a valid PostgreSQL URL"))?;
                // sqlx keeps an IPv6 literal's brackets, which the resolver
                // does not take.
                if let Some(v6) = options
                    .get_host()
                    .strip_prefix('[')
                    .and_then(|h| h.strip_suffix(']'))
                {
                    let v6 = v6.to_string();
                    options = options.host(&v6);
                }
                let options = settings(options);
                let label = label(&options);
                Ok((options, label))
            })
            .collect::<Result<Vec<_>>>()?;
        if hosts.len() > 1 && list.attrs == SessionAttrs::Any {
            tracing::warn!(
                "database_url names several hosts without target_session_attrs=read-write: \
                 the first that answers is used even if it cannot take writes"
            );
        }
        Ok(Self::new(
            hosts,
            list.attrs,
            list.random,
            list.connect_timeout.unwrap_or(CONNECT_TIMEOUT),
        ))
    }

    /// The one server an existing pool connects to, taken as it is.
    pub fn single(options: PgConnectOptions) -> Target {
        let label = label(&options);
        Self::new(
            vec![(options, label)],
            SessionAttrs::Any,
            false,
            CONNECT_TIMEOUT,
        )
    }

    fn new(
        hosts: Vec<(PgConnectOptions, String)>,
        attrs: SessionAttrs,
        random: bool,
        connect_timeout: Duration,
    ) -> Target {
        let (options, label) = hosts[0].clone();
        Target {
            hosts,
            attrs,
            random,
            connect_timeout,
            current: Mutex::new(Current { options, label }),
            chosen_at: AtomicU64::new(0),
            generation: watch::Sender::new(0),
            epoch: Instant::now(),
            lost: Notify::new(),
            probe: tokio::sync::Mutex::new(None),
        }
    }

    /// Whether there is anything to watch: another host to go to, or a kind
    /// of server to insist on.
    pub fn watched(&self) -> bool {
        self.hosts.len() > 1 || self.attrs != SessionAttrs::Any
    }

    /// The settings of the server in use.
    pub fn options(&self) -> PgConnectOptions {
        self.current().options.clone()
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Finds the first host that accepts, trying every host in turn until
    /// `deadline` (at least one round), and makes it the one in use.
    ///
    /// # Errors
    /// [`Error::Unavailable`] naming each host's answer when none accepted.
    pub async fn choose(&self, deadline: Duration) -> Result<PgConnectOptions> {
        let started = Instant::now();
        loop {
            match self.find().await {
                Ok(index) => {
                    self.use_host(index, None);
                    return Ok(self.options());
                }
                Err(e) if started.elapsed() + RETRY_EVERY >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(RETRY_EVERY).await,
            }
        }
    }

    /// One round over the hosts: the index of the first that accepts.
    async fn find(&self) -> Result<usize> {
        let mut order: Vec<usize> = (0..self.hosts.len()).collect();
        if self.random {
            order.shuffle(&mut rand::rng());
        }
        let mut answers = Vec::with_capacity(order.len());
        for index in order {
            let (options, label) = &self.hosts[index];
            let answer = tokio::time::timeout(self.connect_timeout, async {
                let mut conn = PgConnection::connect_with(options).await?;
                let accepts = self.accepts(&mut conn).await;
                let _ = conn.close().await;
                accepts
            })
            .await;
            match answer {
                Ok(Ok(Verdict::Accepts)) => return Ok(index),
                Ok(Ok(verdict)) => answers.push(format!("{label}: {verdict}")),
                Ok(Err(e)) => answers.push(format!("{label}: {e}")),
                Err(_) => answers.push(format!(
                    "{label}: no answer within {}s",
                    self.connect_timeout.as_secs()
                )),
            }
        }
        Err(Error::Unavailable(
            format!(
                "no database host accepted a session ({}): {}",
                self.attrs_name(),
                answers.join("; ")
            )
            .into(),
        ))
    }

    fn attrs_name(&self) -> &'static str {
        match self.attrs {
            SessionAttrs::Any => "any",
            SessionAttrs::ReadWrite => "read-write",
            SessionAttrs::Primary => "primary",
        }
    }

    /// Makes host `index` the one in use: the pool connects there from now
    /// on, and every connection opened before is retired.
    fn use_host(&self, index: usize, pool: Option<&PgPool>) {
        let (options, label) = self.hosts[index].clone();
        // The pool first, then the moment: a connection opened on the old
        // settings after the moment would pass for current.
        if let Some(pool) = pool {
            pool.set_connect_options(options.clone());
        }
        let previous = {
            let mut current = self.current();
            let previous = std::mem::replace(&mut current.label, label.clone());
            current.options = options;
            previous
        };
        let now = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.chosen_at.store(now.max(1), Ordering::Release);
        self.generation.send_modify(|g| *g += 1);
        if pool.is_some() {
            if previous == label {
                tracing::info!(host = %label, "database host back in use");
            } else {
                metrics::counter!("rsvp_database_host_changes_total").increment(1);
                tracing::warn!(from = %previous, to = %label, "database host changed");
            }
        }
    }

    /// Changes each time the store chooses a server: connections of their
    /// own (the change feed's) reconnect when it does.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Whether a pooled connection was opened after the store last chose a
    /// server (older ones may be on a server that is gone or demoted).
    pub fn current_connection(&self, meta: &PoolConnectionMetadata) -> bool {
        let chosen_at = self.chosen_at.load(Ordering::Acquire);
        if chosen_at == 0 {
            return true;
        }
        let now = self.epoch.elapsed();
        let opened = now.saturating_sub(meta.age);
        u64::try_from(opened.as_micros()).unwrap_or(u64::MAX) >= chosen_at
    }

    /// Sets up a new session (every write's commit waits for its WAL) and
    /// checks that its server is of the kind asked for; when it is not,
    /// the watcher is told and the connection refused.
    ///
    /// # Errors
    /// When the session cannot be set up, or its server will not do.
    pub async fn prepare(&self, conn: &mut PgConnection) -> std::result::Result<(), sqlx::Error> {
        match self.accepts(conn).await? {
            Verdict::Accepts => Ok(()),
            verdict => {
                self.lost.notify_one();
                Err(sqlx::Error::Configuration(
                    format!("the database host {verdict}").into(),
                ))
            }
        }
    }

    /// One round trip: makes the session's commits wait for their WAL
    /// (acknowledged reservations must survive a crash, whatever the
    /// server's default) and reads what kind of server it is.
    async fn accepts(&self, conn: &mut PgConnection) -> std::result::Result<Verdict, sqlx::Error> {
        let (writable, primary): (bool, bool) = sqlx::query_as(
            "SELECT current_setting('transaction_read_only') = 'off', NOT pg_is_in_recovery() \
             FROM (SELECT CASE WHEN current_setting('synchronous_commit') = 'off' \
                          THEN set_config('synchronous_commit', 'on', false) END) AS durable",
        )
        .fetch_one(conn)
        .await?;
        Ok(match self.attrs {
            SessionAttrs::Any => Verdict::Accepts,
            SessionAttrs::ReadWrite if !writable => Verdict::ReadOnly,
            SessionAttrs::Primary if !primary => Verdict::Standby,
            _ => Verdict::Accepts,
        })
    }

    /// Checks that the server in use answers and will do, on a connection
    /// of its own (a pool whose connections are all busy is a busy
    /// database, not one that is down).
    ///
    /// # Errors
    /// [`Error::Unavailable`] when it cannot be reached, does not answer or
    /// will not do; the watcher is told.
    pub async fn check(&self) -> Result<()> {
        let checked = self.probe().await;
        if checked.is_err() {
            self.lost.notify_one();
        }
        checked
    }

    async fn probe(&self) -> Result<()> {
        let mut slot = self.probe.lock().await;
        let generation = *self.generation.borrow();
        let mut conn = match slot.take() {
            Some((conn, seen)) if seen == generation => conn,
            _ => tokio::time::timeout(
                self.connect_timeout,
                PgConnection::connect_with(&self.options()),
            )
            .await
            .map_err(|_| Error::Unavailable("the database did not accept a connection".into()))?
            .map_err(db_error)?,
        };
        let verdict = tokio::time::timeout(self.connect_timeout, self.accepts(&mut conn))
            .await
            .map_err(|_| Error::Unavailable("the database did not answer".into()))?
            .map_err(db_error)?;
        if verdict != Verdict::Accepts {
            return Err(Error::Unavailable(
                format!("the database host {}: {verdict}", self.current().label).into(),
            ));
        }
        *slot = Some((conn, generation));
        Ok(())
    }

    /// Keeps the pool on a server that will do, until `stop`: checks the
    /// one in use every [`WATCH_EVERY`] or when told it failed, and when it
    /// does not answer or will not do, goes over the hosts until one
    /// accepts.
    pub async fn watch(self: std::sync::Arc<Self>, pool: PgPool, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.lost.notified() => {}
                _ = tokio::time::sleep(WATCH_EVERY) => {}
            }
            // Once more on a fresh connection before giving up on the host:
            // a probe connection can die alone (an idle timeout, a killed
            // backend), and retiring the whole pool for that is costly.
            if self.probe().await.is_ok() || self.probe().await.is_ok() {
                continue;
            }
            let lost_at = Instant::now();
            let mut rounds = 0u32;
            loop {
                match self.find().await {
                    Ok(index) => {
                        self.use_host(index, Some(&pool));
                        tracing::info!(
                            searched_ms = lost_at.elapsed().as_millis() as u64,
                            "database host found"
                        );
                        break;
                    }
                    Err(e) => {
                        rounds += 1;
                        if rounds == 1 || rounds.is_multiple_of(40) {
                            tracing::warn!(error = %e.chain(), "looking for a database host");
                        }
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep(RETRY_EVERY) => {}
                        }
                    }
                }
            }
        }
    }
}

/// What a server is, against what was asked for.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Accepts,
    ReadOnly,
    Standby,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Accepts => "accepts",
            Verdict::ReadOnly => "is read-only",
            Verdict::Standby => "is a standby",
        })
    }
}

fn label(options: &PgConnectOptions) -> String {
    match options.get_socket() {
        Some(socket) => format!("{}:{}", socket.display(), options.get_port()),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    }
}
