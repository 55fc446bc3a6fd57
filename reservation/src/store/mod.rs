//! The stores behind [`crate::Rsvp`], and opening one by URL. Each is the
//! engine over its dialect: [`PgStore`](postgres::PgStore) and
//! [`SqliteStore`](sqlite::SqliteStore).

use std::sync::Arc;

use abi::{Error, Result};

use crate::{Rsvp, StoreOptions};

pub mod postgres;
pub mod sqlite;

/// Implements [`Rsvp`] (and `Debug`) for a store type whose `engine` field
/// is its engine: every call is the engine's.
macro_rules! rsvp_store {
    ($store:ident) => {
        impl std::fmt::Debug for $store {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($store))
                    .field("options", self.engine.options())
                    .finish_non_exhaustive()
            }
        }

        #[async_trait::async_trait]
        impl $crate::Rsvp for $store {
            async fn reserve(&self, request: abi::NewReservation) -> abi::Result<abi::Reservation> {
                self.engine.reserve(request).await
            }

            async fn update(
                &self,
                update: abi::ReservationUpdate,
            ) -> abi::Result<abi::Reservation> {
                self.engine.update(update).await
            }

            async fn get(&self, id: abi::ReservationId) -> abi::Result<abi::Reservation> {
                self.engine.get(id).await
            }

            fn query(&self, query: abi::ReservationQuery) -> $crate::ReservationStream {
                self.engine.query(query)
            }

            async fn filter(&self, filter: abi::ReservationFilter) -> abi::Result<abi::Page> {
                self.engine.filter(filter).await
            }

            async fn listen(&self, filter: abi::ListenFilter) -> abi::Result<$crate::ChangeStream> {
                self.engine.listen(filter).await
            }

            async fn sweep(&self) -> abi::Result<$crate::SweepReport> {
                self.engine.sweep().await
            }

            async fn ping(&self) -> abi::Result<()> {
                self.engine.ping().await
            }
        }
    };
}
pub(crate) use rsvp_store;

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
