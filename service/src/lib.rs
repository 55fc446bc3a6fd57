//! # rsvp-server
//!
//! The gRPC service over the `reservation` library. It is thin: wire
//! messages become domain types at the edge (`abi`), the store does the
//! work, and errors become statuses in the one place `abi` maps them.
//!
//! # Layout
//! - [`auth`]: credentials become a caller; `reservation::Access` then
//!   decides what it may do.
//! - [`jwt`]: JSON Web Tokens checked against the configured keys.
//! - [`limits`]: per-principal rate limits and open streams.
//! - [`tokens`]: `rsvp-server token create|list|revoke`.
//! - [`cli`]: the command line; [`config`]: layered settings.
//! - [`server::run`]: serves a store on a bound listener until a shutdown
//!   future completes — health, reflection, per-call logs, the sweeper.
//! - `rpc.rs`: the `ReservationService` RPCs; `streams.rs`: Query and Listen
//!   streams as the wire sees them, ending cleanly on shutdown;
//!   [`errors`]: library errors become statuses (and are logged) here.
//! - `health.rs`: health that follows the database; `sweeper.rs`.
//! - [`web`]: HTTP/JSON, Server-Sent Events and the OpenAPI document on
//!   the gRPC port, through the same services.
//! - [`store`]: opens the configured store; [`telemetry`]: logs.

#![warn(missing_docs)]

pub mod auth;
pub mod cli;
pub mod config;
pub mod errors;
mod health;
pub mod jwt;
pub mod limits;
pub mod paths;
mod resources;
mod rpc;
pub mod server;
pub mod store;
mod streams;
mod sweeper;
pub mod telemetry;
pub mod tls;
pub mod tokens;
pub mod web;

use anyhow::Context;

pub use rpc::RsvpService;

use crate::{
    cli::{Cli, Command},
    config::Config,
    server::ServerSettings,
};

/// Runs the command line: serve, migrate, or print the configuration.
///
/// # Errors
/// Any failure, with context for the user.
pub async fn main(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(cli.config.as_deref(), &cli.overrides)?;
    if let Some(Command::Config) = cli.command {
        let mut shown = config.clone();
        shown.database_url = shown
            .database_url
            .map(|url| config::DatabaseUrl::new(url.redacted()));
        print!(
            "{}",
            toml::to_string(&shown).context("rendering the configuration")?
        );
        return Ok(());
    }
    telemetry::init(&config.log_level, config.log_format)?;

    if let Some(Command::Migrate) = cli.command {
        store::open(&config, true).await?;
        tracing::info!("migrations applied");
        return Ok(());
    }
    if let Some(Command::Token(command)) = cli.command {
        let store = store::open(&config, config.migrate).await?;
        return tokens::run(command, store.as_ref(), &mut std::io::stdout().lock()).await;
    }

    let store = store::open(&config, config.migrate).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {} (listen)", config.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    tracing::info!(%addr, database = %store::describe(&config), "serving rsvp");
    let settings = ServerSettings {
        sweep_interval: config.sweep_interval,
        shutdown_grace: config.shutdown_grace,
        max_streams: config.max_streams,
        max_streams_per_connection: config.max_streams_per_connection,
        stream_idle_timeout: config.stream_idle_timeout,
        metrics_listen: config.metrics_listen,
        access_log: config.access_log,
        slow_call: config.slow_call,
        limits: std::sync::Arc::new(limits::Limits::new(
            config.admin_limits,
            config.service_limits,
            config.user_limits,
        )),
        auth: std::sync::Arc::new(authenticator(&config)?),
        tls: tls(&config)?,
        cors_origins: config.cors_origins.clone(),
        ..ServerSettings::default()
    };
    server::run(listener, store, settings, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Completes on SIGTERM or Ctrl-C; a second of either stops the process at
/// once (exit 130).
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => Some(term),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the server");
            None
        }
    };
    signal(&mut term).await;
    tokio::spawn(async move {
        signal(&mut term).await;
        std::process::exit(130);
    });
}

/// The next Ctrl-C or SIGTERM.
async fn signal(term: &mut Option<tokio::signal::unix::Signal>) {
    match term {
        Some(term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        None => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// How callers are authenticated, as the settings say.
fn authenticator(config: &Config) -> anyhow::Result<auth::Authenticator> {
    let roles = config
        .mtls_roles
        .iter()
        .map(|(principal, role)| Ok((principal.clone(), role.parse()?)))
        .collect::<Result<std::collections::HashMap<_, _>, abi::InvalidValue>>()
        .map_err(|e| anyhow::anyhow!("mtls_roles: {e}"))?;
    Ok(match config.auth {
        auth::AuthMode::None => auth::Authenticator::none(),
        auth::AuthMode::Token if config.tls_client_ca.is_some() => {
            auth::Authenticator::tokens(Default::default()).or_certificates(roles)
        }
        auth::AuthMode::Token => auth::Authenticator::tokens(Default::default()),
        auth::AuthMode::Mtls => auth::Authenticator::certificates(roles),
        auth::AuthMode::Jwt => {
            let keys = match (&config.jwt_key, &config.jwt_secret_file) {
                (Some(key), _) => jwt::KeySource::Public(key),
                (None, Some(secret)) => jwt::KeySource::Secret(secret),
                (None, None) => anyhow::bail!("auth = \"jwt\" needs jwt_key or jwt_secret_file"),
            };
            auth::Authenticator::jwt(jwt::JwtVerifier::new(
                keys,
                config.jwt_issuer.as_deref().unwrap_or_default(),
                config.jwt_audience.as_deref().unwrap_or_default(),
                &config.jwt_role_claim,
            )?)
        }
    })
}

/// The server's TLS, read from the files the settings name.
fn tls(config: &Config) -> anyhow::Result<Option<tls::ServerTls>> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return Ok(None);
    };
    let read = |path: &std::path::Path, what: &str| {
        std::fs::read(path).with_context(|| format!("reading {what} {}", path.display()))
    };
    let mut tls = tls::ServerTls::new(read(cert, "tls_cert")?, read(key, "tls_key")?);
    if let Some(ca) = &config.tls_client_ca {
        tls = tls
            .client_ca_root(read(ca, "tls_client_ca")?)
            .client_auth_optional(config.auth != auth::AuthMode::Mtls);
    }
    // Fail at start, not at the first connection.
    tls.acceptor()?;
    Ok(Some(tls))
}
