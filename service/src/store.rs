//! Opens the store the configuration names: the `database_url`'s scheme
//! picks it (`postgres://`, `sqlite:`); with none, the embedded store keeps
//! its file in `data_dir`.

use std::sync::Arc;

use anyhow::Context;
use reservation::{Rsvp, SqliteStore, StoreOptions};

use crate::config::Config;

/// The embedded store's file name inside `data_dir`.
pub const EMBEDDED_FILE: &str = "rsvp.db";

/// The store's options, from the configuration.
pub fn options(config: &Config, migrate: bool) -> StoreOptions {
    StoreOptions {
        default_hold: config.default_hold(),
        max_connections: config.pool_size,
        acquire_timeout: config.acquire_timeout,
        statement_timeout: Some(config.statement_timeout),
        lock_timeout: Some(config.lock_timeout),
        idle_in_transaction_timeout: Some(config.idle_in_transaction_timeout),
        change_retention: chrono::TimeDelta::from_std(config.change_retention)
            .unwrap_or(chrono::TimeDelta::MAX),
        listen_buffer: config.listen_buffer,
        migrate,
        ..StoreOptions::default()
    }
}

/// Where the store lives, for logs: the URL (password hidden) or the file.
pub fn describe(config: &Config) -> String {
    match &config.database_url {
        Some(url) => url.redacted(),
        None => format!("sqlite:{}", config.data_dir.join(EMBEDDED_FILE).display()),
    }
}

/// Opens the configured store, applying migrations when `migrate` is set.
///
/// # Errors
/// When the store cannot be opened; the message says which and why.
pub async fn open(config: &Config, migrate: bool) -> anyhow::Result<Arc<dyn Rsvp>> {
    let options = options(config, migrate);
    let opened = match &config.database_url {
        Some(url) => reservation::connect(url.expose(), options).await,
        None => SqliteStore::open(config.data_dir.join(EMBEDDED_FILE), options)
            .await
            .map(|s| Arc::new(s) as Arc<dyn Rsvp>),
    };
    opened
        .map_err(|e| anyhow::anyhow!(e.chain()))
        .with_context(|| format!("cannot open the database at {}", describe(config)))
}
