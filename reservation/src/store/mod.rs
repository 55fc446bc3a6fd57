//! The stores behind [`crate::Rsvp`], and opening one by URL. Each is the
//! engine over its dialect: [`PgStore`](postgres::PgStore) and
//! [`SqliteStore`](sqlite::SqliteStore).

use std::sync::Arc;

use abi::{Error, Resource, ResourceId, ResourceSpec, Result, pb};
use chrono::{DateTime, TimeDelta, Utc};
use prost::Message;

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

            async fn book(&self, booking: abi::NewBooking) -> abi::Result<abi::Booking> {
                self.engine.book(booking).await
            }

            async fn get_booking(&self, id: abi::BookingId) -> abi::Result<abi::Booking> {
                self.engine.get_booking(id).await
            }

            async fn confirm_booking(&self, id: abi::BookingId) -> abi::Result<abi::Booking> {
                self.engine.confirm_booking(id).await
            }

            async fn cancel_booking(&self, id: abi::BookingId) -> abi::Result<abi::Booking> {
                self.engine.cancel_booking(id).await
            }

            async fn check_in(&self, id: abi::ReservationId) -> abi::Result<abi::Reservation> {
                self.engine.check_in(id).await
            }

            async fn check_out(&self, id: abi::ReservationId) -> abi::Result<abi::Reservation> {
                self.engine.check_out(id).await
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

            async fn changes_through(&self) -> abi::Result<i64> {
                self.engine.changes_through().await
            }

            async fn sweep(&self) -> abi::Result<$crate::SweepReport> {
                self.engine.sweep().await
            }

            async fn ping(&self) -> abi::Result<()> {
                self.engine.ping().await
            }

            async fn create_token(
                &self,
                token: abi::NewToken,
            ) -> abi::Result<(abi::ApiToken, abi::TokenSecret)> {
                self.engine.create_token(token).await
            }

            async fn tokens(&self) -> abi::Result<Vec<abi::ApiToken>> {
                self.engine.tokens().await
            }

            async fn revoke_token(&self, id: abi::TokenId) -> abi::Result<abi::ApiToken> {
                self.engine.revoke_token(id).await
            }

            async fn create_resource(&self, spec: abi::ResourceSpec) -> abi::Result<abi::Resource> {
                self.engine.create_resource(spec).await
            }

            async fn get_resource(&self, id: abi::ResourceId) -> abi::Result<abi::Resource> {
                self.engine.get_resource(id).await
            }

            async fn update_resource(
                &self,
                patch: abi::ResourcePatch,
            ) -> abi::Result<abi::Resource> {
                self.engine.update_resource(patch).await
            }

            async fn delete_resource(
                &self,
                id: abi::ResourceId,
                force: bool,
            ) -> abi::Result<abi::Resource> {
                self.engine.delete_resource(id, force).await
            }

            async fn list_resources(
                &self,
                listing: abi::ResourceListing,
            ) -> abi::Result<abi::ResourcePage> {
                self.engine.list_resources(listing).await
            }

            async fn availability(
                &self,
                request: abi::AvailabilityRequest,
            ) -> abi::Result<abi::AvailabilityAnswer> {
                self.engine.availability(request).await
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

/// A length in whole microseconds, as stored.
pub(crate) fn micros(d: TimeDelta) -> i64 {
    d.num_microseconds().unwrap_or(i64::MAX)
}

/// A resource's spec as stored: the wire form of everything but its id,
/// capacity and the store's own columns.
pub(crate) fn encode_spec(spec: &ResourceSpec) -> Vec<u8> {
    let mut wire = pb::Resource::from(spec);
    wire.id.clear();
    wire.capacity = 0;
    wire.encode_to_vec()
}

/// A stored resource, checked as a request is.
///
/// # Errors
/// [`Error::Internal`] when what is stored does not decode or check.
pub(crate) fn decode_resource(
    id: &str,
    capacity: i64,
    spec: &[u8],
    (created_at, updated_at, deleted_at): (DateTime<Utc>, DateTime<Utc>, Option<DateTime<Utc>>),
    version: i64,
) -> Result<Resource> {
    let corrupt = |why: String| Error::internal(format!("stored resource {id:?}: {why}"));
    let mut wire = pb::Resource::decode(spec).map_err(|e| corrupt(e.to_string()))?;
    wire.id = id.to_string();
    wire.capacity = u32::try_from(capacity).map_err(|e| corrupt(e.to_string()))?;
    let spec = ResourceSpec::try_from(wire).map_err(|e| corrupt(e.to_string()))?;
    Ok(Resource {
        spec,
        created_at,
        updated_at,
        deleted_at,
        version,
    })
}

/// A capacity cut refused: live reservations hold `used` units from
/// `start` to `end`.
pub(crate) fn capacity_in_use(
    id: &ResourceId,
    capacity: u32,
    (start, end, used): (DateTime<Utc>, DateTime<Utc>, i64),
) -> Error {
    let when = if end == DateTime::<Utc>::MAX_UTC || end.timestamp() > 253_402_300_799 {
        format!("from {}", start.to_rfc3339())
    } else {
        format!("from {} to {}", start.to_rfc3339(), end.to_rfc3339())
    };
    Error::CapacityInUse(
        format!(
            "live reservations of {id} hold {used} units {when}, more than the capacity {capacity} \
             would allow"
        )
        .into(),
    )
}
