//! The storage seam: one async trait that every store implements with the
//! same behaviour.

use abi::{
    ApiToken, AvailabilityAnswer, AvailabilityRequest, Booking, BookingId, Change, ListenFilter,
    NewBooking, NewReservation, NewToken, Page, Reservation, ReservationFilter, ReservationId,
    ReservationQuery, ReservationUpdate, Resource, ResourceId, ResourceListing, ResourcePage,
    ResourcePatch, ResourceSpec, Result, StatusChange, TokenId, TokenSecret,
};
use async_trait::async_trait;
use futures::stream::BoxStream;

/// Reservations as the database yields them.
pub type ReservationStream = BoxStream<'static, Result<Reservation>>;
/// Changes as they happen.
pub type ChangeStream = BoxStream<'static, Result<Change>>;

/// What one [`Rsvp::sweep`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Overdue holds marked expired.
    pub expired: u64,
    /// Changes deleted from the feed for being older than the retention.
    pub purged_changes: u64,
}

/// Reserves resources for periods of time, never holding one resource twice
/// for overlapping time.
///
/// Every method fails with [`abi::Error::Unavailable`] when the database
/// cannot be reached, [`abi::Error::Busy`] when every connection stayed in
/// use for longer than [`crate::StoreOptions::acquire_timeout`] (both
/// retryable), and [`abi::Error::Internal`] for anything unexpected; the
/// other errors each method can return are listed with it.
#[async_trait]
pub trait Rsvp: Send + Sync + 'static {
    /// Makes a reservation: a pending hold (expiring after `request.hold`),
    /// a confirmed booking or a block. Overdue holds in the way expire first
    /// (each a change event); a refused reserve changes nothing. A retry
    /// with the same (user, request id) returns what the first call made.
    ///
    /// # Errors
    /// [`abi::Error::Conflict`] listing the live reservations that overlap;
    /// [`abi::Error::InvalidArgument`] on `request_id` when the key was
    /// already used by this user for a different request;
    /// [`abi::Error::Aborted`] when lock races persist.
    async fn reserve(&self, request: NewReservation) -> Result<Reservation>;

    /// Changes a reservation's status, note and/or interval, atomically. A
    /// new interval is checked for conflicts like a new reservation; a
    /// refused update changes nothing.
    ///
    /// # Errors
    /// [`abi::Error::NotFound`]; [`abi::Error::FailedPrecondition`] for a
    /// transition the contract does not allow (confirming an expired hold,
    /// rescheduling a cancelled reservation); [`abi::Error::Conflict`];
    /// [`abi::Error::Aborted`] when the reservation kept changing under the
    /// update.
    async fn update(&self, update: ReservationUpdate) -> Result<Reservation>;

    /// Confirms a pending hold. Confirming a confirmed reservation returns it
    /// unchanged.
    ///
    /// # Errors
    /// [`abi::Error::NotFound`]; [`abi::Error::FailedPrecondition`] unless
    /// the reservation is pending or confirmed.
    async fn confirm(&self, id: ReservationId) -> Result<Reservation> {
        self.update(ReservationUpdate::status(id, StatusChange::Confirm))
            .await
    }

    /// Cancels a reservation; the row is kept, and blocks nothing. Cancelling
    /// a cancelled reservation returns it unchanged.
    ///
    /// # Errors
    /// [`abi::Error::NotFound`]; [`abi::Error::FailedPrecondition`] for an
    /// expired hold.
    async fn cancel(&self, id: ReservationId) -> Result<Reservation> {
        self.update(ReservationUpdate::status(id, StatusChange::Cancel))
            .await
    }

    /// Makes every part of a booking, for one user, in one transaction:
    /// all or nothing. Each part is judged as a reserve would be (policy,
    /// capacity, and the booking's other parts); pending parts share one
    /// expiry. A retry with the same (user, request id) returns what the
    /// first call made.
    ///
    /// # Errors
    /// [`abi::Error::BookingRejected`] naming every part that could not be
    /// made, with its conflict or the rules it breaks (nothing is made);
    /// [`abi::Error::InvalidArgument`] on `request_id` when the key was
    /// already used by this user for a different request;
    /// [`abi::Error::Aborted`] when the resources' rules kept changing.
    async fn book(&self, booking: NewBooking) -> Result<Booking>;

    /// Reads a booking and its parts, in the order they were asked for.
    ///
    /// # Errors
    /// [`abi::Error::BookingNotFound`].
    async fn get_booking(&self, id: BookingId) -> Result<Booking>;

    /// Confirms every pending part of a booking, all or nothing; parts
    /// cancelled on purpose are left as they are.
    ///
    /// # Errors
    /// [`abi::Error::BookingNotFound`]; [`abi::Error::FailedPrecondition`]
    /// naming a part that cannot be confirmed (an expired hold).
    async fn confirm_booking(&self, id: BookingId) -> Result<Booking>;

    /// Cancels every pending, confirmed or blocked part of a booking, all
    /// or nothing; checked-in parts, and parts that ended, stay.
    ///
    /// # Errors
    /// [`abi::Error::BookingNotFound`]; [`abi::Error::BookingRejected`]
    /// naming the parts within their resource's cancel notice.
    async fn cancel_booking(&self, id: BookingId) -> Result<Booking>;

    /// Checks a confirmed reservation in, from its resource's
    /// `check_in_opens` before its start until its end. Checking in a
    /// checked-in reservation returns it unchanged.
    ///
    /// # Errors
    /// [`abi::Error::NotFound`]; [`abi::Error::FailedPrecondition`] for
    /// another status (completed included); [`abi::Error::Policy`]
    /// (`CHECK_IN_WINDOW`) outside the window.
    async fn check_in(&self, id: ReservationId) -> Result<Reservation>;

    /// Checks a checked-in reservation out: COMPLETED. Before its end, the
    /// end becomes the check-out time (rounded up to the grid) and the rest
    /// is free. Checking out a completed one returns it unchanged.
    ///
    /// # Errors
    /// [`abi::Error::NotFound`]; [`abi::Error::FailedPrecondition`] for
    /// another status or before the start.
    async fn check_out(&self, id: ReservationId) -> Result<Reservation>;

    /// Reads one reservation.
    ///
    /// # Errors
    /// [`abi::Error::NotFound`].
    async fn get(&self, id: ReservationId) -> Result<Reservation>;

    /// Streams the reservations that overlap the query's window and match its
    /// filters, by start then id, as the database yields them. Dropping the
    /// stream stops the work.
    fn query(&self, query: ReservationQuery) -> ReservationStream;

    /// One page of a query. Pages never skip or repeat a reservation when
    /// others are made or cancelled between requests.
    async fn filter(&self, filter: ReservationFilter) -> Result<Page>;

    /// Streams changes in change-id order: with `after_change_id`, first
    /// every retained change after it, then live ones, with no gap.
    ///
    /// # Errors
    /// The stream ends with [`abi::Error::Lagged`] when its reader falls too
    /// far behind; it can resume from the id the error names.
    async fn listen(&self, filter: ListenFilter) -> Result<ChangeStream>;

    /// Where a `listen` without `after_change_id` would start now: every
    /// change up to this id has been delivered to this store's listeners.
    /// `listen` with `after_change_id` set to it misses nothing later, so a
    /// reader that is cut off before its first change can resume from it.
    async fn changes_through(&self) -> Result<i64>;

    /// Marks overdue holds expired (each a change event) and deletes changes
    /// older than the retention. Reads never depend on it having run.
    async fn sweep(&self) -> Result<SweepReport>;

    /// Makes an API token for `token.principal`; only the digest of its
    /// secret is stored, and the secret is returned this once.
    async fn create_token(&self, token: NewToken) -> Result<(ApiToken, TokenSecret)>;

    /// Every API token, revoked and expired ones too, oldest first.
    async fn tokens(&self) -> Result<Vec<ApiToken>>;

    /// Revokes a token: it authenticates no one from then on. Revoking a
    /// revoked token returns it unchanged.
    ///
    /// # Errors
    /// [`abi::Error::TokenNotFound`].
    async fn revoke_token(&self, id: TokenId) -> Result<ApiToken>;

    /// Checks that the database answers, on a connection of its own: a
    /// pool whose connections are all busy does not make it fail.
    async fn ping(&self) -> Result<()>;

    /// Registers a resource with its capacity and rules. Reservations its
    /// id already has (made while it was not registered) count against the
    /// capacity.
    ///
    /// # Errors
    /// [`abi::Error::ResourceExists`] when the id is registered (deleted or
    /// not); nothing changes.
    async fn create_resource(&self, spec: ResourceSpec) -> Result<Resource>;

    /// Reads a registered resource (a deleted one too).
    ///
    /// # Errors
    /// [`abi::Error::ResourceNotFound`] for an id never registered.
    async fn get_resource(&self, id: ResourceId) -> Result<Resource>;

    /// Changes the fields a patch names, atomically. The new rules apply
    /// to new reservations and changes; reservations keep the buffers they
    /// were made with.
    ///
    /// # Errors
    /// [`abi::Error::ResourceNotFound`]; [`abi::Error::EtagMismatch`] when
    /// the patch names an etag that is not the resource's; a
    /// [`abi::Error::FailedPrecondition`] for a deleted resource;
    /// [`abi::Error::CapacityInUse`] for a capacity below what live
    /// reservations hold, naming when; [`abi::Error::InvalidArgument`] for
    /// a new value that is not valid.
    async fn update_resource(&self, patch: ResourcePatch) -> Result<Resource>;

    /// Marks a resource deleted: it takes no new reservations. Deleting a
    /// deleted resource returns it unchanged.
    ///
    /// # Errors
    /// [`abi::Error::ResourceNotFound`]; [`abi::Error::CapacityInUse`] when
    /// live reservations of it have not ended, unless `force`, which
    /// cancels them first (each a change event).
    async fn delete_resource(&self, id: ResourceId, force: bool) -> Result<Resource>;

    /// A page of registered resources, by id.
    async fn list_resources(&self, listing: ResourceListing) -> Result<ResourcePage>;

    /// For each resource asked, the window cut into segments of constant
    /// state and (when the request gives a slot length) every slot a
    /// Reserve of its quantity would accept now, judged by the rules
    /// Reserve uses; all from one snapshot, whose change-feed position the
    /// answer gives.
    ///
    /// # Errors
    /// [`abi::Error::Unavailable`] when the resources' rules keep changing
    /// while they are read.
    async fn availability(&self, request: AvailabilityRequest) -> Result<AvailabilityAnswer>;
}
