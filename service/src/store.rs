//! Opens the store the configuration names.

use std::sync::Arc;

use anyhow::bail;
use reservation::{PgStore, Rsvp, StoreOptions};

use crate::config::Config;

/// The store's options, from the configuration.
pub fn options(config: &Config, migrate: bool) -> StoreOptions {
    StoreOptions {
        default_hold: config.default_hold(),
        max_connections: config.pool_size,
        acquire_timeout: config.acquire_timeout,
        change_retention: chrono::TimeDelta::from_std(config.change_retention)
            .unwrap_or(chrono::TimeDelta::MAX),
        listen_buffer: config.listen_buffer,
        migrate,
        ..StoreOptions::default()
    }
}

/// Opens the store named by `database_url`, applying migrations when
/// `migrate` is set.
///
/// # Errors
/// When no database is configured, or it cannot be opened.
pub async fn open(config: &Config, migrate: bool) -> anyhow::Result<Arc<dyn Rsvp>> {
    let Some(url) = &config.database_url else {
        bail!(
            "no database configured: pass --database-url postgres://user@host/db, \
             set RSVP_DATABASE_URL, or set database_url in the --config file"
        );
    };
    let options = options(config, migrate);
    match PgStore::connect(url.expose(), options).await {
        Ok(store) => Ok(Arc::new(store)),
        Err(e) => bail!("cannot open the database at {url}: {}", chain(&e)),
    }
}

fn chain(e: &abi::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}
