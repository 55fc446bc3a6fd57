//! The command line of `rsvp-server`.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::config::LogFormat;

/// rsvp-server: reserves resources for periods of time, over gRPC.
///
/// With no database configured it keeps its state in an embedded database,
/// the file rsvp.db under --data-dir: nothing to install. Give
/// --database-url postgres://... for PostgreSQL.
///
/// Settings come from built-in defaults, then the --config file (TOML, keys
/// as the flags with underscores: pool_size = 20), then RSVP_* environment
/// variables (RSVP_POOL_SIZE=20), then flags.
///
/// Example:
///   rsvp-server --database-url postgres://rsvp@localhost/rsvp --listen 0.0.0.0:50051
#[derive(Debug, Parser)]
#[command(name = "rsvp-server", version, verbatim_doc_comment)]
pub struct Cli {
    /// A TOML file of settings.
    #[arg(long, short = 'c', value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    /// Settings given as flags.
    #[command(flatten)]
    pub overrides: Overrides,

    /// Serve (no command), or one of the commands.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to do instead of serving.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply database migrations and exit.
    Migrate,
    /// Print the effective configuration (passwords hidden) and exit.
    Config,
    /// Make, list and revoke API tokens (for auth = "token").
    #[command(subcommand)]
    Token(TokenCommand),
}

/// What to do with API tokens.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token and print it, once: only its digest is stored.
    ///
    /// Example:
    ///   rsvp-server token create --principal booking-backend --role service --expires 90d
    #[command(verbatim_doc_comment)]
    Create {
        /// Who the token authenticates (1 to 64 characters): a user id, or
        /// a service's name.
        #[arg(long, value_name = "NAME")]
        principal: String,
        /// What it may do: admin (everything), service (acts for any user,
        /// reads everything) or user (acts only as itself).
        #[arg(long, value_name = "ROLE", value_parser = role)]
        role: abi::Role,
        /// How long it works (30d, 12h...); unset: until revoked.
        #[arg(long, value_name = "DURATION", value_parser = lifetime)]
        expires: Option<std::time::Duration>,
    },
    /// List tokens (never their secrets): id, principal, role, made,
    /// expires, revoked.
    List,
    /// Revoke a token by id: every server stops accepting it within
    /// seconds.
    Revoke {
        /// The token's id, as `token list` shows it.
        id: String,
    },
}

/// Settings given as flags; each overrides the file and the environment.
#[derive(Debug, Default, Args, Serialize)]
pub struct Overrides {
    /// Database URL: postgres://user:password@host/db or sqlite:path; unset: the embedded store in --data-dir [env: RSVP_DATABASE_URL]
    #[arg(long, value_name = "URL", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,

    /// Directory of the embedded database (rsvp.db) [env: RSVP_DATA_DIR] [default: ~/.local/share/rsvp]
    #[arg(long, value_name = "DIR", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,

    /// Address to serve on [env: RSVP_LISTEN] [default: 127.0.0.1:50051]
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,

    /// How callers authenticate: none (every caller an admin; loopback only), token, jwt or mtls (client certificates) [env: RSVP_AUTH] [default: none]
    #[arg(long, value_name = "MODE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<crate::auth::AuthMode>,

    /// How long a pending hold lasts when the request does not say; 0s: forever [env: RSVP_DEFAULT_HOLD] [default: 30m]
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_hold: Option<String>,

    /// Most database connections [env: RSVP_POOL_SIZE] [default: 10]
    #[arg(long, value_name = "N", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool_size: Option<u32>,

    /// How long a call waits for a free database connection [env: RSVP_ACQUIRE_TIMEOUT] [default: 5s]
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acquire_timeout: Option<String>,

    /// The longest one SQL statement may run on PostgreSQL, lock waits included [env: RSVP_STATEMENT_TIMEOUT] [default: 30s]
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statement_timeout: Option<String>,

    /// How often overdue holds are marked expired [env: RSVP_SWEEP_INTERVAL] [default: 30s]
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sweep_interval: Option<String>,

    /// How long changes stay available to resuming listeners [env: RSVP_CHANGE_RETENTION] [default: 7d]
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change_retention: Option<String>,

    /// How many changes a listener may fall behind before its stream ends [env: RSVP_LISTEN_BUFFER] [default: 4096]
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen_buffer: Option<usize>,

    /// Log filter, e.g. info or rsvp=debug; RUST_LOG overrides it [env: RSVP_LOG_LEVEL] [default: info]
    #[arg(long, value_name = "FILTER", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,

    /// Log format [env: RSVP_LOG_FORMAT] [default: text]
    #[arg(long, value_name = "FORMAT", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,

    /// Do not apply migrations at start [env: RSVP_MIGRATE=false]
    #[arg(long)]
    #[serde(
        rename = "migrate",
        skip_serializing_if = "std::ops::Not::not",
        serialize_with = "negate"
    )]
    pub no_migrate: bool,

    /// How long shutdown waits for in-flight calls [env: RSVP_SHUTDOWN_GRACE] [default: 30s]
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shutdown_grace: Option<String>,

    /// The longest a PostgreSQL statement waits for a lock (then retryable) [env: RSVP_LOCK_TIMEOUT] [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock_timeout: Option<String>,

    /// End a PostgreSQL session left idle inside a transaction this long, freeing its locks [env: RSVP_IDLE_IN_TRANSACTION_TIMEOUT] [default: 60s]
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_in_transaction_timeout: Option<String>,

    /// Most Query and Listen streams open at once [env: RSVP_MAX_STREAMS] [default: 1000]
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_streams: Option<usize>,

    /// Most streams open at once on one client connection [env: RSVP_MAX_STREAMS_PER_CONNECTION] [default: 100]
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_streams_per_connection: Option<u32>,

    /// End a stream whose client reads nothing for this long [env: RSVP_STREAM_IDLE_TIMEOUT] [default: 60s]
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_idle_timeout: Option<String>,

    /// Serve Prometheus metrics at http://ADDR/metrics [env: RSVP_METRICS_LISTEN] [default: off]
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,

    /// Log every call (method, status code, latency) at INFO [env: RSVP_ACCESS_LOG=true]
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub access_log: bool,

    /// Log calls slower than this at WARN [env: RSVP_SLOW_CALL] [default: 1s]
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slow_call: Option<String>,

    /// The server's certificate chain (PEM); with --tls-key, serve gRPC over TLS [env: RSVP_TLS_CERT]
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,

    /// The server's private key (PEM) [env: RSVP_TLS_KEY]
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,

    /// Accept client certificates signed by these authorities (PEM); required by --auth mtls [env: RSVP_TLS_CLIENT_CA]
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_client_ca: Option<PathBuf>,
}

fn negate<S: serde::Serializer>(v: &bool, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bool(!v)
}

/// Checks a duration flag (`90s`, `30m`, `1d`) and keeps its text.
fn role(value: &str) -> Result<abi::Role, String> {
    value.parse().map_err(|e: abi::InvalidValue| e.to_string())
}

fn lifetime(value: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(value).map_err(|e| format!("{e} (examples: 12h, 30d)"))
}

fn duration(value: &str) -> Result<String, String> {
    humantime::parse_duration(value)
        .map(|_| value.to_string())
        .map_err(|e| format!("{e} (examples: 90s, 30m, 2h, 1d)"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_migrate_overrides_migrate() {
        let cli = Cli::parse_from(["rsvp-server", "--no-migrate", "--pool-size", "3"]);
        let json = serde_json::to_value(&cli.overrides).unwrap();
        assert_eq!(json["migrate"], false);
        assert_eq!(json["pool_size"], 3);
        assert!(json.get("listen").is_none());
    }
}
