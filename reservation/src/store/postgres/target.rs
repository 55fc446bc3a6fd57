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
//! one that accepts, and retires every pooled connection opened before.

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
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::db_error::db_error;

/// How often the server in use is checked when there is another to go to.
pub(crate) const WATCH_EVERY: Duration = Duration::from_secs(1);

/// How long one host may take to accept a connection and answer, when the
/// URL's `connect_timeout` does not say.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the store waits between rounds over the hosts while none
/// accepts.
const RETRY_EVERY: Duration = Duration::from_millis(250);

/// Which server will do (`target_session_attrs`, as libpq reads it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SessionAttrs {
    /// Any server that accepts a connection (libpq's default).
    Any,
    /// A server whose sessions may write (`transaction_read_only` off).
    ReadWrite,
    /// A server not in recovery.
    Primary,
}

impl SessionAttrs {
    fn parse(value: &str) -> Result<Self> {
        match value {
            "any" => Ok(SessionAttrs::Any),
            "read-write" => Ok(SessionAttrs::ReadWrite),
            "primary" => Ok(SessionAttrs::Primary),
            "read-only" | "standby" | "prefer-standby" => Err(Error::invalid(
                "database_url",
                "target_session_attrs must be any, read-write or primary: rsvp writes",
            )),
            _ => Err(Error::invalid(
                "database_url",
                "target_session_attrs must be any, read-write or primary",
            )),
        }
    }
}

/// A PostgreSQL URL taken apart: one URL per host, each with every other
/// setting of the original, and how to choose among them.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct HostList {
    /// One single-host URL per host, in the order given.
    pub urls: Vec<String>,
    pub attrs: SessionAttrs,
    /// `load_balance_hosts=random`: try the hosts in a random order.
    pub random: bool,
    /// `connect_timeout`, in seconds as libpq reads it.
    pub connect_timeout: Option<Duration>,
}

impl HostList {
    /// Splits `url` (`postgres://` or `postgresql://`) into one URL per host:
    /// hosts listed in the authority (`h1:5432,h2:5433,[::1]:5434`) or in
    /// `host=`/`port=` parameters (`host=h1,h2&port=5432,5433`).
    pub fn parse(url: &str) -> Result<HostList> {
        let invalid = |reason: &'static str| Error::invalid("database_url", reason);
        let (scheme, rest) = url
            .split_once("://")
            .filter(|(scheme, _)| matches!(*scheme, "postgres" | "postgresql"))
            .ok_or_else(|| invalid("must start with postgres:// or postgresql://"))?;
        let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
        let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = match before_query.find('/') {
            Some(at) => before_query.split_at(at),
            None => (before_query, ""),
        };
        let (userinfo, hostspec) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };

        let mut hosts: Vec<(String, Option<String>)> = Vec::new();
        if !hostspec.is_empty() {
            for entry in hostspec.split(',') {
                hosts.push(split_host_port(entry).ok_or_else(|| {
                    invalid("a host in the host list is empty or has a malformed port")
                })?);
            }
        }

        let mut attrs = SessionAttrs::Any;
        let mut random = false;
        let mut connect_timeout = None;
        let mut query_hosts = None;
        let mut query_ports = None;
        let mut passed = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded = percent_decode(value)
                .ok_or_else(|| invalid("a query parameter is not valid percent-encoded UTF-8"))?;
            match key {
                "target_session_attrs" => attrs = SessionAttrs::parse(&decoded)?,
                "load_balance_hosts" => {
                    random = match decoded.as_str() {
                        "disable" => false,
                        "random" => true,
                        _ => return Err(invalid("load_balance_hosts must be disable or random")),
                    }
                }
                "connect_timeout" => {
                    let seconds: u64 = decoded
                        .parse()
                        .map_err(|_| invalid("connect_timeout must be whole seconds"))?;
                    // As libpq: 0 waits for ever, and less than 2 s is 2 s.
                    connect_timeout = (seconds > 0).then(|| Duration::from_secs(seconds.max(2)));
                }
                "host" if decoded.contains(',') => query_hosts = Some(value.to_string()),
                "port" if decoded.contains(',') => query_ports = Some(decoded),
                "hostaddr" if decoded.contains(',') => {
                    return Err(invalid(
                        "hostaddr lists are not supported: list the hosts in the URL's authority",
                    ));
                }
                _ => passed.push(pair),
            }
        }
        if let Some(list) = query_hosts {
            // As libpq: parameters override what the authority says.
            hosts = list.split(',').map(|h| (h.to_string(), None)).collect();
        }
        if let Some(list) = query_ports {
            let ports: Vec<&str> = list.split(',').collect();
            if ports.iter().any(|p| p.parse::<u16>().is_err()) {
                return Err(invalid("a port in the port list is not a port number"));
            }
            match ports.len() {
                1 => hosts
                    .iter_mut()
                    .for_each(|h| h.1 = Some(ports[0].to_string())),
                n if n == hosts.len() => {
                    for (host, port) in hosts.iter_mut().zip(ports) {
                        host.1 = Some(port.to_string());
                    }
                }
                _ => {
                    return Err(invalid("the port list must have one port, or one per host"));
                }
            }
        }
        if hosts.iter().any(|(host, _)| host.is_empty()) && hosts.len() > 1 {
            return Err(invalid("a host in the host list is empty"));
        }

        let userinfo = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
        let passed = passed.join("&");
        let single = |host: &str, port: &Option<String>| {
            let mut url = format!("{scheme}://{userinfo}{host}");
            if let Some(port) = port {
                url.push(':');
                url.push_str(port);
            }
            url.push_str(path);
            if !passed.is_empty() {
                url.push('?');
                url.push_str(&passed);
            }
            url
        };
        let urls = if hosts.is_empty() {
            vec![single("", &None)]
        } else {
            hosts
                .iter()
                .map(|(host, port)| {
                    // A host given as a parameter may be a socket directory.
                    if host.starts_with('/') || host.starts_with("%2F") || host.starts_with("%2f") {
                        single(&percent_encode_path(host), port)
                    } else {
                        single(host, port)
                    }
                })
                .collect()
        };
        Ok(HostList {
            urls,
            attrs,
            random,
            connect_timeout,
        })
    }
}

/// `host[:port]`, where host may be `[v6 address]`; `None` when the port
/// is not a number or the host is empty in a list.
fn split_host_port(entry: &str) -> Option<(String, Option<String>)> {
    let (host, port) = if let Some(v6) = entry.strip_prefix('[') {
        let end = v6.find(']')?;
        let after = &v6[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => return None,
        };
        (&entry[..end + 2], port)
    } else {
        match entry.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (entry, None),
        }
    };
    if let Some(port) = port
        && port.parse::<u16>().is_err()
    {
        return None;
    }
    Some((host.to_string(), port.map(str::to_string)))
}

fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = value.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// A socket directory as a URL's host: every `/` percent-encoded.
fn percent_encode_path(host: &str) -> String {
    host.replace('/', "%2F")
}

/// The server in use and when the store last changed its mind about it.
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
    /// Bumped with `chosen_at`; the check connection follows it.
    generation: AtomicU64,
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
                let options = PgConnectOptions::from_str(url)
                    .map_err(|_| Error::invalid("database_url", "not a valid PostgreSQL URL"))?;
                let options = settings(options);
                let label = label(&options);
                Ok((options, label))
            })
            .collect::<Result<Vec<_>>>()?;
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
            generation: AtomicU64::new(0),
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
        let previous = {
            let mut current = self.current();
            let previous = std::mem::replace(&mut current.label, label.clone());
            current.options = options.clone();
            previous
        };
        let now = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.chosen_at.store(now, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(pool) = pool {
            pool.set_connect_options(options);
            if previous == label {
                tracing::info!(host = %label, "database host back in use");
            } else {
                metrics::counter!("rsvp_database_host_changes_total").increment(1);
                tracing::warn!(from = %previous, to = %label, "database host changed");
            }
        }
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
        let generation = self.generation.load(Ordering::Acquire);
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
            if self.probe().await.is_ok() {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(url: &str) -> Vec<String> {
        HostList::parse(url).unwrap().urls
    }

    #[test]
    fn one_url_per_host_with_every_other_setting() {
        let list = HostList::parse(
            "postgres://u:p%40ss@h1:5432,h2:5433,[::1]:5434,h4/rsvp?sslmode=disable&target_session_attrs=read-write&application_name=x",
        )
        .unwrap();
        assert_eq!(list.attrs, SessionAttrs::ReadWrite);
        assert!(!list.random);
        assert_eq!(
            list.urls,
            [
                "postgres://u:p%40ss@h1:5432/rsvp?sslmode=disable&application_name=x",
                "postgres://u:p%40ss@h2:5433/rsvp?sslmode=disable&application_name=x",
                "postgres://u:p%40ss@[::1]:5434/rsvp?sslmode=disable&application_name=x",
                "postgres://u:p%40ss@h4/rsvp?sslmode=disable&application_name=x",
            ]
        );
        for url in &list.urls {
            PgConnectOptions::from_str(url).unwrap();
        }
    }

    #[test]
    fn a_single_host_url_is_kept_as_it_is() {
        assert_eq!(urls("postgresql://db/rsvp"), ["postgresql://db/rsvp"]);
        assert_eq!(urls("postgres://u@db:6000"), ["postgres://u@db:6000"]);
        assert_eq!(
            urls("postgres:///rsvp?host=/tmp"),
            ["postgres:///rsvp?host=/tmp"]
        );
        let list = HostList::parse("postgres://db/rsvp").unwrap();
        assert_eq!(list.attrs, SessionAttrs::Any);
    }

    #[test]
    fn hosts_and_ports_as_parameters() {
        assert_eq!(
            urls("postgres:///rsvp?host=a,b&port=1,2&user=me"),
            ["postgres://a:1/rsvp?user=me", "postgres://b:2/rsvp?user=me"]
        );
        assert_eq!(
            urls("postgres://a,b/rsvp?port=7"),
            ["postgres://a/rsvp?port=7", "postgres://b/rsvp?port=7"]
        );
        assert_eq!(
            urls("postgres:///rsvp?host=%2Ftmp%2Fa,%2Ftmp%2Fb"),
            ["postgres://%2Ftmp%2Fa/rsvp", "postgres://%2Ftmp%2Fb/rsvp"]
        );
        let socket = PgConnectOptions::from_str("postgres://%2Ftmp%2Fa/rsvp").unwrap();
        assert_eq!(socket.get_socket().unwrap().to_str(), Some("/tmp/a"));
    }

    #[test]
    fn choice_parameters_are_read() {
        let list = HostList::parse(
            "postgres://a,b/db?load_balance_hosts=random&connect_timeout=1&target_session_attrs=primary",
        )
        .unwrap();
        assert!(list.random);
        assert_eq!(list.connect_timeout, Some(Duration::from_secs(2)));
        assert_eq!(list.attrs, SessionAttrs::Primary);
        let list =
            HostList::parse("postgres://a/db?connect_timeout=0&target_session_attrs=any").unwrap();
        assert_eq!(list.connect_timeout, None);
        assert_eq!(list.attrs, SessionAttrs::Any);
    }

    #[test]
    fn malformed_lists_are_refused_naming_the_url() {
        for url in [
            "postgres://a:5432,:5433/db",
            "postgres://a:x,b/db",
            "postgres://a,b/db?port=1,2,3",
            "postgres://a,b/db?target_session_attrs=standby",
            "postgres://a,b/db?target_session_attrs=whatever",
            "postgres://a,b/db?load_balance_hosts=sometimes",
            "postgres://a,b/db?connect_timeout=soon",
            "postgres://a/db?hostaddr=127.0.0.1,127.0.0.2",
            "postgres://[::1/db",
            "mysql://a/db",
        ] {
            match HostList::parse(url) {
                Err(Error::InvalidArgument { field, .. }) => {
                    assert_eq!(field, "database_url", "{url}")
                }
                other => panic!("{url}: {other:?}"),
            }
        }
    }
}
