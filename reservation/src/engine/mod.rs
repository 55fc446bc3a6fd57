//! The engine: every rule of rsvp, once, for every store. It implements
//! [`Rsvp`] over a [`Dialect`], which supplies only SQL and locking.
//!
//! - `write.rs`: what a reserve and an update do — placements, plans,
//!   retries, and the answers made of what the store reports.
//! - `plan.rs`: how an update changes a reservation (the status machine).
//! - `conflict.rs`: what a refusal reports, bounded.
//! - `pages.rs`: selections read in keyset batches; pages and their tokens.
//!
//! Where a new rule goes: if it decides what a call does, here; if it is
//! how a database is asked, in the store's dialect.

mod batch;
mod bookings;
mod conflict;
mod pages;
mod plan;
mod resources;
mod write;

use std::sync::Arc;

use abi::{
    ApiToken, AvailabilityAnswer, AvailabilityRequest, Booking, BookingId, ListenFilter,
    NewBooking, NewReservation, NewToken, Page, Reservation, ReservationFilter, ReservationId,
    ReservationQuery, ReservationUpdate, Resource, ResourceId, ResourceListing, ResourcePage,
    ResourcePatch, ResourceSpec, Result, TokenId, TokenSecret,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::OnceCell;
use tokio_util::sync::DropGuard;

use crate::{
    StoreOptions,
    dialect::{BookingPlacement, Dialect, Placement, WriteTime},
    feed::Feed,
    rsvp::{ChangeStream, ReservationStream, Rsvp, SweepReport},
};

/// Rows a sweep updates per statement; changes it deletes per statement are
/// ten times as many.
const SWEEP_BATCH: i64 = 1000;

/// The rules, over a store's dialect.
pub(crate) struct Engine<D: Dialect> {
    dialect: Arc<D>,
    options: StoreOptions,
    time: WriteTime,
    placer: batch::Lanes<Placement>,
    booker: batch::Lanes<BookingPlacement>,
    rules: resources::RulesCache,
    feed: OnceCell<RunningFeed<D>>,
}

struct RunningFeed<D: Dialect> {
    feed: Feed<D::Changes>,
    _wake: Option<DropGuard>,
}

impl<D: Dialect> Engine<D> {
    /// The engine over `dialect`, with its writing lanes started.
    pub fn new(dialect: D, options: StoreOptions) -> Self {
        let dialect = Arc::new(dialect);
        let time = WriteTime::new(options.clock.clone());
        let placer = batch::Lanes::start(
            dialect.clone(),
            time.clone(),
            dialect.write_lanes(),
            conflict::MAX_LISTED as u32,
        );
        let booker = batch::Lanes::start(
            dialect.clone(),
            time.clone(),
            dialect.booking_lanes(),
            abi::MAX_LISTED_PER_PART as u32,
        );
        tokio::spawn(sample_pool(Arc::downgrade(&dialect)));
        Engine {
            time,
            dialect,
            options,
            placer,
            booker,
            rules: resources::RulesCache::default(),
            feed: OnceCell::new(),
        }
    }

    /// The store's dialect.
    pub fn dialect(&self) -> &D {
        &self.dialect
    }

    /// The store's options.
    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    fn now(&self) -> DateTime<Utc> {
        self.options.now()
    }

    async fn feed(&self) -> Result<&Feed<D::Changes>> {
        let running = self
            .feed
            .get_or_try_init(|| async {
                let source = self.dialect.feed_source().await?;
                let feed =
                    Feed::start(source.changes, source.wake, self.options.listen_buffer).await?;
                Ok::<_, abi::Error>(RunningFeed {
                    feed,
                    _wake: source.guard,
                })
            })
            .await?;
        Ok(&running.feed)
    }
}

/// Reports the pool's connections, in use and idle, every second for as
/// long as the store lives.
async fn sample_pool<D: Dialect>(dialect: std::sync::Weak<D>) {
    loop {
        let Some(d) = dialect.upgrade() else { return };
        let (open, idle, max) = d.pool_size();
        drop(d);
        metrics::gauge!("rsvp_pool_connections", "state" => "in_use")
            .set(open.saturating_sub(idle) as f64);
        metrics::gauge!("rsvp_pool_connections", "state" => "idle").set(idle as f64);
        metrics::gauge!("rsvp_pool_connections", "state" => "max").set(max as f64);
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

#[async_trait]
impl<D: Dialect> Rsvp for Engine<D> {
    #[tracing::instrument(level = "debug", skip_all, fields(resource = %request.resource_id))]
    async fn reserve(&self, request: NewReservation) -> Result<Reservation> {
        self.reserve_one(request).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(id = %update.id))]
    async fn update(&self, update: ReservationUpdate) -> Result<Reservation> {
        self.update_one(update).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user = %booking.user_id))]
    async fn book(&self, booking: NewBooking) -> Result<Booking> {
        self.book_all(booking).await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn get_booking(&self, id: BookingId) -> Result<Booking> {
        self.read_booking(id).await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn confirm_booking(&self, id: BookingId) -> Result<Booking> {
        self.change_booking(id, abi::StatusChange::Confirm).await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn cancel_booking(&self, id: BookingId) -> Result<Booking> {
        self.change_booking(id, abi::StatusChange::Cancel).await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn check_in(&self, id: ReservationId) -> Result<Reservation> {
        self.arrive(id, true).await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn check_out(&self, id: ReservationId) -> Result<Reservation> {
        self.arrive(id, false).await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn get(&self, id: ReservationId) -> Result<Reservation> {
        let now = self.now();
        let row = self.dialect.read(id).await?;
        row.ok_or(abi::Error::NotFound(id))?.into_reservation(now)
    }

    fn query(&self, query: ReservationQuery) -> ReservationStream {
        pages::stream(self, query)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn filter(&self, filter: ReservationFilter) -> Result<Page> {
        pages::page(self, filter).await
    }

    async fn listen(&self, filter: ListenFilter) -> Result<ChangeStream> {
        self.feed().await?.listen(filter).await
    }

    async fn changes_through(&self) -> Result<i64> {
        Ok(self.feed().await?.delivered())
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn sweep(&self) -> Result<SweepReport> {
        let now = self.now();
        let mut report = SweepReport::default();
        loop {
            let done = self.dialect.expire_overdue(now, SWEEP_BATCH).await?;
            report.expired += done;
            if done < SWEEP_BATCH as u64 {
                break;
            }
        }
        let cutoff = now
            .checked_sub_signed(self.options.change_retention)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        loop {
            let done = self.dialect.purge_changes(cutoff, SWEEP_BATCH * 10).await?;
            report.purged_changes += done;
            if done < SWEEP_BATCH as u64 * 10 {
                break;
            }
        }
        metrics::counter!("rsvp_swept_total", "what" => "expired").increment(report.expired);
        metrics::counter!("rsvp_swept_total", "what" => "purged_changes")
            .increment(report.purged_changes);
        Ok(report)
    }

    async fn create_token(&self, token: NewToken) -> Result<(ApiToken, TokenSecret)> {
        let secret = TokenSecret::generate();
        let made = ApiToken {
            id: TokenId::new(),
            principal: token.principal,
            role: token.role,
            digest: secret.digest(),
            created_at: self.now(),
            expires_at: token.expires_at,
            revoked_at: None,
        };
        self.dialect.insert_token(&made).await?;
        Ok((made, secret))
    }

    async fn tokens(&self) -> Result<Vec<ApiToken>> {
        self.dialect.tokens().await
    }

    async fn revoke_token(&self, id: TokenId) -> Result<ApiToken> {
        self.dialect
            .revoke_token(id, self.now())
            .await?
            .ok_or(abi::Error::TokenNotFound(id))
    }

    async fn ping(&self) -> Result<()> {
        self.dialect.ping().await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(resource = %spec.id))]
    async fn create_resource(&self, spec: ResourceSpec) -> Result<Resource> {
        Engine::create_resource(self, spec).await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn get_resource(&self, id: ResourceId) -> Result<Resource> {
        Engine::get_resource(self, id).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(resource = %patch.id))]
    async fn update_resource(&self, patch: ResourcePatch) -> Result<Resource> {
        Engine::update_resource(self, patch).await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn delete_resource(&self, id: ResourceId, force: bool) -> Result<Resource> {
        Engine::delete_resource(self, id, force).await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn list_resources(&self, listing: ResourceListing) -> Result<ResourcePage> {
        Engine::list_resources(self, listing).await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn availability(&self, request: AvailabilityRequest) -> Result<AvailabilityAnswer> {
        Engine::availability(self, request).await
    }
}
