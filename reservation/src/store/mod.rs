//! The stores behind [`crate::Rsvp`], and opening one by URL.

use std::sync::Arc;

use abi::{Error, Result};

use crate::{Rsvp, StoreOptions};

pub mod postgres;
pub mod sqlite;

/// Opens the store a URL names: `postgres://...` (or `postgresql://...`)
/// for PostgreSQL, `sqlite:path/to/file.db` for the embedded store.
///
/// # Errors
/// [`Error::InvalidArgument`] on `database_url` for any other scheme;
/// otherwise what opening that store returns.
pub async fn connect(url: &str, options: StoreOptions) -> Result<Arc<dyn Rsvp>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PgStore::connect(url, options).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::connect(url, options).await?))
    } else {
        Err(Error::invalid(
            "database_url",
            "must start with postgres://, postgresql:// or sqlite:",
        ))
    }
}
