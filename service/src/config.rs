//! The server's settings, loaded once and layered: built-in defaults, then a
//! TOML file (`--config`), then `RSVP_*` environment variables, then flags.

use std::{
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail};
use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::limits::RoleLimits;

/// Every setting's name: the key in the config file, and (upper-cased,
/// prefixed with `RSVP_`) the environment variable.
pub const KEYS: [&str; 36] = [
    "auth",
    "cors_origins",
    "jwt_key",
    "jwt_secret_file",
    "jwt_issuer",
    "jwt_audience",
    "jwt_role_claim",
    "tls_cert",
    "tls_key",
    "tls_client_ca",
    "mtls_roles",
    "user_limits",
    "service_limits",
    "admin_limits",
    "database_url",
    "data_dir",
    "listen",
    "default_hold",
    "pool_size",
    "acquire_timeout",
    "statement_timeout",
    "sweep_interval",
    "change_retention",
    "listen_buffer",
    "log_level",
    "log_format",
    "migrate",
    "shutdown_grace",
    "lock_timeout",
    "idle_in_transaction_timeout",
    "max_streams",
    "max_streams_per_connection",
    "stream_idle_timeout",
    "metrics_listen",
    "access_log",
    "slow_call",
];

/// The server's settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `postgres://...` for PostgreSQL. Unset: the embedded store in `data_dir`.
    pub database_url: Option<DatabaseUrl>,
    /// Where the embedded store keeps its file.
    pub data_dir: PathBuf,
    /// The address to serve gRPC on.
    pub listen: SocketAddr,
    /// How callers are authenticated: `none` (loopback only), `token`,
    /// `jwt` or `mtls`.
    pub auth: crate::auth::AuthMode,
    /// Each `user` principal's limits: reads and writes per second (bursts
    /// of twice as many) and open streams; 0 is unlimited. None apply
    /// without authentication.
    pub user_limits: RoleLimits,
    /// Each `service` principal's limits, as `user_limits`.
    pub service_limits: RoleLimits,
    /// Each `admin` principal's limits, as `user_limits`.
    pub admin_limits: RoleLimits,
    /// How long a pending hold lasts unless the request says; `0s`: forever.
    #[serde(with = "duration_text")]
    pub default_hold: Duration,
    /// Most database connections.
    pub pool_size: u32,
    /// How long a call waits for a free database connection.
    #[serde(with = "duration_text")]
    pub acquire_timeout: Duration,
    /// The longest one SQL statement may run (PostgreSQL), lock waits
    /// included.
    #[serde(with = "duration_text")]
    pub statement_timeout: Duration,
    /// How often overdue holds are marked expired.
    #[serde(with = "duration_text")]
    pub sweep_interval: Duration,
    /// How long changes stay available for listeners to resume from.
    #[serde(with = "duration_text")]
    pub change_retention: Duration,
    /// How many changes a listener may fall behind before its stream ends.
    pub listen_buffer: usize,
    /// Log filter (`info`, `debug`, `rsvp=debug,sqlx=warn`...); `RUST_LOG`
    /// overrides it.
    pub log_level: String,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// Apply migrations at start.
    pub migrate: bool,
    /// How long shutdown waits for in-flight calls.
    #[serde(with = "duration_text")]
    pub shutdown_grace: Duration,
    /// The longest a PostgreSQL statement waits for a lock before failing
    /// (retryable).
    #[serde(with = "duration_text")]
    pub lock_timeout: Duration,
    /// A PostgreSQL session idle inside a transaction this long is ended by
    /// the database, releasing its locks.
    #[serde(with = "duration_text")]
    pub idle_in_transaction_timeout: Duration,
    /// Most Query and Listen streams open at once, in total.
    pub max_streams: usize,
    /// Most streams open at once on one client connection.
    pub max_streams_per_connection: u32,
    /// A stream whose client reads nothing for this long ends.
    #[serde(with = "duration_text")]
    pub stream_idle_timeout: Duration,
    /// Where to serve Prometheus metrics (`/metrics`); unset: not served.
    pub metrics_listen: Option<SocketAddr>,
    /// Log one line per call (method, status code, latency) at INFO.
    pub access_log: bool,
    /// Calls slower than this are logged at WARN.
    #[serde(with = "duration_text")]
    pub slow_call: Duration,
    /// The server's certificate chain (PEM): with `tls_key`, gRPC is
    /// served over TLS only.
    pub tls_cert: Option<PathBuf>,
    /// The server's private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Certificate authorities (PEM) whose client certificates are
    /// accepted; required with `auth = "mtls"`, optional otherwise.
    pub tls_client_ca: Option<PathBuf>,
    /// The role of each client certificate's principal (its subject's
    /// common name): `{ ops = "admin", backend = "service" }`; others are
    /// `user`.
    pub mtls_roles: std::collections::BTreeMap<String, String>,
    /// Web origins whose pages may call the HTTP/JSON and gRPC-Web API
    /// from a browser (`["https://shop.example"]`, or `["*"]` for any);
    /// empty: pages of the server's own origin only (the board).
    pub cors_origins: Vec<String>,
    /// With `auth = "jwt"`: the identity provider's public key (PEM: RSA,
    /// EC P-256, Ed25519) or key set (JWKS file).
    pub jwt_key: Option<PathBuf>,
    /// With `auth = "jwt"`: a file holding the HS256 secret (instead of
    /// `jwt_key`).
    pub jwt_secret_file: Option<PathBuf>,
    /// The `iss` every token must carry.
    pub jwt_issuer: Option<String>,
    /// The `aud` every token must carry.
    pub jwt_audience: Option<String>,
    /// The claim holding the role (`admin`, `service`, `user`); absent
    /// means `user`.
    pub jwt_role_claim: String,
}

/// How logs are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: None,
            data_dir: default_data_dir(),
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            auth: crate::auth::AuthMode::None,
            user_limits: RoleLimits {
                reads_per_second: 100,
                writes_per_second: 100,
                streams: 32,
            },
            service_limits: RoleLimits::UNLIMITED,
            admin_limits: RoleLimits::UNLIMITED,
            default_hold: Duration::from_secs(30 * 60),
            pool_size: 10,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
            sweep_interval: Duration::from_secs(30),
            change_retention: Duration::from_secs(7 * 24 * 3600),
            listen_buffer: 4096,
            log_level: "info".into(),
            log_format: LogFormat::Text,
            migrate: true,
            shutdown_grace: Duration::from_secs(30),
            lock_timeout: Duration::from_secs(10),
            idle_in_transaction_timeout: Duration::from_secs(60),
            max_streams: 1000,
            max_streams_per_connection: 100,
            stream_idle_timeout: Duration::from_secs(60),
            metrics_listen: None,
            access_log: false,
            slow_call: Duration::from_secs(1),
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            mtls_roles: Default::default(),
            cors_origins: Vec::new(),
            jwt_key: None,
            jwt_secret_file: None,
            jwt_issuer: None,
            jwt_audience: None,
            jwt_role_claim: "role".into(),
        }
    }
}

/// `$XDG_DATA_HOME/rsvp`, else `$HOME/.local/share/rsvp`, else `./rsvp-data`.
pub fn default_data_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("rsvp");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join(".local/share/rsvp");
    }
    PathBuf::from("rsvp-data")
}

impl Config {
    /// Loads the layers: defaults < `file` < `RSVP_*` environment <
    /// `overrides` (flags), then checks the result.
    ///
    /// # Errors
    /// When the file is missing or malformed, or a setting is invalid; the
    /// message names the setting and where it came from.
    pub fn load(file: Option<&Path>, overrides: impl Serialize) -> anyhow::Result<Config> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.is_file() {
                bail!("config file {} does not exist", file.display());
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        let config: Config = figment
            .merge(Env::prefixed("RSVP_").only(&KEYS))
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(|e| anyhow::anyhow!(describe(e)))
            .context("invalid configuration")?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            bail!("tls_cert and tls_key go together: give both to serve over TLS, or neither");
        }
        if self.auth == crate::auth::AuthMode::Mtls
            && (self.tls_cert.is_none() || self.tls_client_ca.is_none())
        {
            bail!(
                "auth = \"mtls\" needs TLS with client certificates: set tls_cert, tls_key and \
                 tls_client_ca"
            );
        }
        if self.auth == crate::auth::AuthMode::Jwt {
            if self.jwt_key.is_some() == self.jwt_secret_file.is_some() {
                bail!(
                    "auth = \"jwt\" needs one of jwt_key (a public key or JWKS file) or jwt_secret_file (HS256)"
                );
            }
            if self.jwt_issuer.is_none() || self.jwt_audience.is_none() {
                bail!(
                    "auth = \"jwt\" needs jwt_issuer and jwt_audience: tokens are checked against both"
                );
            }
        }
        if self.tls_client_ca.is_some() && self.tls_cert.is_none() {
            bail!("tls_client_ca needs TLS: set tls_cert and tls_key too");
        }
        for (principal, role) in &self.mtls_roles {
            role.parse::<abi::Role>()
                .map_err(|e| anyhow::anyhow!("mtls_roles.{principal}: {e}"))?;
        }
        crate::web::cors(&self.cors_origins).context("cors_origins")?;
        if self.auth == crate::auth::AuthMode::None && !self.listen.ip().is_loopback() {
            bail!(
                "listen = {} is reachable from other machines, and auth = \"none\" would let \
                 anyone who can reach it do anything: set auth (token, jwt or mtls), or listen \
                 on a loopback address such as 127.0.0.1",
                self.listen
            );
        }
        const SECOND: Duration = Duration::from_secs(1);
        const DAY: Duration = Duration::from_secs(24 * 3600);
        // Every setting within bounds that keep arithmetic on times and
        // buffer sizes safe: a typo never disables a rule or panics later.
        let durations = [
            ("default_hold", self.default_hold, Duration::ZERO, 366 * DAY),
            (
                "acquire_timeout",
                self.acquire_timeout,
                Duration::from_millis(1),
                DAY,
            ),
            (
                "statement_timeout",
                self.statement_timeout,
                Duration::from_millis(1),
                DAY,
            ),
            (
                "sweep_interval",
                self.sweep_interval,
                Duration::from_millis(10),
                DAY,
            ),
            (
                "change_retention",
                self.change_retention,
                SECOND,
                3660 * DAY,
            ),
            ("shutdown_grace", self.shutdown_grace, Duration::ZERO, DAY),
            (
                "lock_timeout",
                self.lock_timeout,
                Duration::from_millis(1),
                DAY,
            ),
            (
                "idle_in_transaction_timeout",
                self.idle_in_transaction_timeout,
                Duration::from_millis(100),
                DAY,
            ),
            (
                "stream_idle_timeout",
                self.stream_idle_timeout,
                Duration::from_millis(100),
                DAY,
            ),
            ("slow_call", self.slow_call, Duration::from_millis(1), DAY),
        ];
        for (key, value, min, max) in durations {
            if value < min || value > max {
                bail!(
                    "invalid configuration: {key} must be between {} and {}, got {}",
                    humantime::format_duration(min),
                    humantime::format_duration(max),
                    humantime::format_duration(value)
                );
            }
        }
        let counts = [
            ("pool_size", self.pool_size as u64, 1, 1000),
            ("listen_buffer", self.listen_buffer as u64, 2, 1_000_000),
            ("max_streams", self.max_streams as u64, 1, 1_000_000),
            (
                "max_streams_per_connection",
                u64::from(self.max_streams_per_connection),
                1,
                10_000,
            ),
        ];
        for (key, value, min, max) in counts {
            if value < min || value > max {
                bail!("invalid configuration: {key} must be between {min} and {max}, got {value}");
            }
        }
        if let Some(url) = &self.database_url {
            url.check()?;
        }
        Ok(())
    }

    /// The default hold for the store: `None` when holds should not expire.
    pub fn default_hold(&self) -> Option<chrono::TimeDelta> {
        (!self.default_hold.is_zero())
            .then(|| chrono::TimeDelta::from_std(self.default_hold).ok())
            .flatten()
    }
}

/// Durations as people write them: read as `humantime` does (`90s`,
/// `30m`, `7d`, `1h 30m`), written in the fewest units (`7d`, not `7days`).
mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&compact(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }

    /// `7d`, `1h30m`, `90ms`, `0s`.
    pub fn compact(d: Duration) -> String {
        if d.is_zero() {
            return "0s".into();
        }
        let mut ms = d.as_millis();
        let mut out = String::new();
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1000),
            ("ms", 1),
        ] {
            if ms >= size {
                out.push_str(&format!("{}{unit}", ms / size));
                ms %= size;
            }
        }
        if out.is_empty() {
            format!("{}us", d.as_micros())
        } else {
            out
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn durations_are_written_as_typed() {
            for (secs, text) in [(7 * 86400, "7d"), (1800, "30m"), (90, "1m30s"), (0, "0s")] {
                assert_eq!(compact(Duration::from_secs(secs)), text);
                assert_eq!(
                    humantime::parse_duration(text).unwrap(),
                    Duration::from_secs(secs)
                );
            }
            assert_eq!(compact(Duration::from_millis(1500)), "1s500ms");
        }
    }
}

/// One line per problem, each naming the setting and where it came from.
fn describe(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let source = match &e.metadata {
                Some(m) if m.name.contains("environment") && !key.is_empty() => {
                    format!(" (from environment variable RSVP_{})", key.to_uppercase())
                }
                Some(m) => match &m.source {
                    Some(source) => format!(" (from {source})"),
                    None => format!(" (from {})", m.name),
                },
                None => String::new(),
            };
            if key.is_empty() {
                format!("{}{source}", e.kind)
            } else {
                format!("{key}: {}{source}", e.kind)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A database URL. Its password never appears in logs or debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        DatabaseUrl(url.into())
    }

    /// The URL itself, password included: for connecting only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn check(&self) -> anyhow::Result<()> {
        let scheme = self.0.split_once(':').map(|(s, _)| s).unwrap_or_default();
        match scheme {
            "postgres" | "postgresql" | "sqlite" => Ok(()),
            _ => bail!(
                "invalid configuration: database_url must start with postgres://, postgresql:// \
                 or sqlite:, not {:?}",
                self.redacted()
            ),
        }
    }

    /// The URL with any password replaced by `****` (a URL naming several
    /// hosts, `postgres://u:p@h1,h2/db`, included).
    pub fn redacted(&self) -> String {
        let url = &self.0;
        let Some((scheme, rest)) = url.split_once("://") else {
            return url.clone();
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        let Some(at) = authority.rfind('@') else {
            // An `@` further on may end a password holding an unencoded
            // `/`, `?` or `#`: show nothing of what precedes it.
            return match rest.rfind('@') {
                Some(_) => format!("{scheme}://<redacted>"),
                None => url.clone(),
            };
        };
        match authority[..at].split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:****{}", &rest[at..]),
            None => url.clone(),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for DatabaseUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for DatabaseUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(DatabaseUrl)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[derive(Serialize, Default)]
    struct Flags {
        #[serde(skip_serializing_if = "Option::is_none")]
        pool_size: Option<u32>,
    }

    #[test]
    fn passwords_are_redacted() {
        let url = DatabaseUrl::new("postgres://rsvp:s3cret@db:5432/rsvp");
        assert_eq!(format!("{url:?}"), "postgres://rsvp:****@db:5432/rsvp");
        assert!(!format!("{url}").contains("s3cret"));
        assert_eq!(url.expose(), "postgres://rsvp:s3cret@db:5432/rsvp");
        let pair = DatabaseUrl::new("postgres://rsvp:s3c@et@h1:5432,h2:5432/rsvp?x=y@z");
        assert_eq!(
            pair.redacted(),
            "postgres://rsvp:****@h1:5432,h2:5432/rsvp?x=y@z"
        );
        let unencoded = DatabaseUrl::new("postgres://rsvp:pa/ss@db/rsvp");
        assert!(!unencoded.redacted().contains("ss@"), "{unencoded}");
        assert_eq!(
            DatabaseUrl::new("sqlite:data/rsvp.db").redacted(),
            "sqlite:data/rsvp.db"
        );
    }

    #[test]
    fn layers_apply_in_order_defaults_file_flags() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            file,
            "pool_size = 3\nsweep_interval = \"5s\"\nlisten = \"127.0.0.1:7000\""
        )
        .unwrap();
        let config = Config::load(Some(file.path()), Flags { pool_size: Some(7) }).unwrap();
        assert_eq!(config.pool_size, 7, "a flag beats the file");
        assert_eq!(
            config.sweep_interval,
            Duration::from_secs(5),
            "the file beats defaults"
        );
        assert_eq!(config.listen.port(), 7000);
        assert_eq!(
            config.default_hold,
            Duration::from_secs(1800),
            "defaults fill the rest"
        );
    }

    #[test]
    fn bad_settings_are_named() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "listen = \"nowhere\"").unwrap();
        let err = Config::load(Some(file.path()), Flags::default()).unwrap_err();
        assert!(format!("{err:#}").contains("listen"), "{err:#}");

        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "pool_sise = 3").unwrap();
        let err = Config::load(Some(file.path()), Flags::default()).unwrap_err();
        assert!(format!("{err:#}").contains("pool_sise"), "{err:#}");

        let err = Config::load(None, Flags { pool_size: Some(0) }).unwrap_err();
        assert!(format!("{err:#}").contains("pool_size"), "{err:#}");

        let err =
            Config::load(Some(Path::new("/nonexistent/rsvp.toml")), Flags::default()).unwrap_err();
        assert!(
            format!("{err:#}").contains("/nonexistent/rsvp.toml"),
            "{err:#}"
        );
    }

    #[test]
    fn unsafe_or_incomplete_access_settings_stop_the_server() {
        let cases = [
            ("listen = \"0.0.0.0:7000\"", "reachable from other machines"),
            ("listen = \"0.0.0.0:7000\"\nauth = \"token\"", ""),
            ("tls_cert = \"c.pem\"", "tls_cert and tls_key go together"),
            ("auth = \"mtls\"", "needs TLS with client certificates"),
            (
                "tls_cert = \"c.pem\"\ntls_key = \"k.pem\"\nauth = \"mtls\"",
                "needs TLS with client certificates",
            ),
            ("tls_client_ca = \"ca.pem\"", "tls_client_ca needs TLS"),
            ("auth = \"jwt\"", "needs one of jwt_key"),
            (
                "auth = \"jwt\"\njwt_key = \"k.pem\"\njwt_secret_file = \"s\"",
                "needs one of jwt_key",
            ),
            (
                "auth = \"jwt\"\njwt_key = \"k.pem\"",
                "needs jwt_issuer and jwt_audience",
            ),
            ("[mtls_roles]\nops = \"root\"", "mtls_roles.ops"),
            // A table names only what it changes; the rest keeps its default.
            ("[user_limits]\nreads_per_second = 5", ""),
        ];
        for (text, expected) in cases {
            let mut file = tempfile::NamedTempFile::new().unwrap();
            writeln!(file, "{text}").unwrap();
            let loaded = Config::load(Some(file.path()), Flags::default());
            match (loaded, expected) {
                (Ok(_), "") => {}
                (Ok(_), _) => panic!("{text}: accepted"),
                (Err(e), _) => assert!(
                    !expected.is_empty() && format!("{e:#}").contains(expected),
                    "{text}: {e:#}"
                ),
            }
        }
    }
}
