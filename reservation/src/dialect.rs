//! The seam below the engine: what a store supplies, and nothing more — its
//! SQL and its locking. Every rule (what a reserve or an update does, what
//! blocks, when a hold expires, how pages are cut, how the feed replays)
//! lives once, above it, in [`crate::engine`].
//!
//! A store answers in rows ([`StoredReservation`]); the engine turns them
//! into reservations, conflicts and errors. Writes take the locks of the
//! resources they touch, in one global order, and read their time after the
//! locks ([`WriteTime`]), so a write that queued behind others judges holds
//! by the time it actually runs.

use std::{sync::Arc, time::Duration};

use abi::{
    ApiToken, BookingId, Note, RequestId, ReservationId, ReservationStatus, Resource, ResourceId,
    ResourceSpec, Result, Timespan, TokenId, UserId,
};
use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::Notify;
use tokio_util::sync::DropGuard;

use crate::{Clock, feed::ChangeSource, row::StoredReservation, statement::Statement};

/// Where a write reads its time.
#[derive(Clone, Debug)]
pub(crate) struct WriteTime {
    clock: Arc<dyn Clock>,
}

impl WriteTime {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        WriteTime { clock }
    }

    /// The time to write with, read once the write holds its locks.
    pub fn now(&self) -> DateTime<Utc> {
        abi::time::truncate_to_micros(self.clock.now())
    }

    /// `None` when the store may read its own clock after taking the locks
    /// (the system clock); the time to use when the clock is the caller's.
    pub fn fixed(&self) -> Option<DateTime<Utc>> {
        (!self.clock.is_system()).then(|| self.now())
    }
}

/// A new reservation, decided by the engine, for the store to place.
#[derive(Clone, Debug)]
pub(crate) struct Placement {
    pub id: ReservationId,
    pub user_id: UserId,
    pub resource_id: ResourceId,
    pub timespan: Timespan,
    pub status: ReservationStatus,
    pub note: Note,
    /// How long a pending hold lasts after the write's time; `None`: it
    /// never expires.
    pub hold: Option<TimeDelta>,
    /// The idempotency key, and the digest of the request it came with.
    pub request: Option<(RequestId, i64)>,
    /// Units held; 0: every unit (a block).
    pub quantity: u32,
    /// The buffers before and after, copied onto the row.
    pub buffers: (TimeDelta, TimeDelta),
    /// The version of the resource the engine judged this by (0: not
    /// registered).
    pub resource_version: i64,
    /// Only check: write nothing.
    pub dry: bool,
    /// For a confirmed reservation: when it stops holding the resource
    /// unless checked in (a no-show).
    pub release_at: Option<DateTime<Utc>>,
    /// The last write time its notice allows ([`abi::Rules::accept_until`]):
    /// a write that runs later refuses it ([`Placed::Late`]), however long
    /// it queued; `None`: no limit.
    pub accept_until: Option<DateTime<Utc>>,
}

/// A booking for the store to make, all or nothing.
#[derive(Clone, Debug)]
pub(crate) struct BookingPlacement {
    pub id: BookingId,
    pub user_id: UserId,
    /// The idempotency key, and the digest of the booking it came with: a
    /// booking the user made under it is answered, dry or not.
    pub request: Option<(RequestId, i64)>,
    /// Its parts, in order (their own keys are ignored).
    pub parts: Vec<Placement>,
    /// Only check: place the parts against one another, then undo it all.
    pub dry: bool,
}

/// What became of a booking.
#[derive(Debug)]
pub(crate) enum Booked {
    /// Made, or (dry) would have been: one outcome per part, each
    /// `Created` (or `Fits`).
    Made(Vec<Placed>),
    /// Refused: one outcome per part, some `Blocked`, `Stale` or `Late`.
    /// Nothing was written.
    Refused(Vec<Placed>),
    /// The user made a booking under the same key before: its parts, and
    /// the digest of the request that made it.
    Existing {
        parts: Vec<StoredReservation>,
        fingerprint: Option<i64>,
    },
}

impl Booked {
    /// What a booking's placed parts make it: made only if every part was
    /// created (and then, when it only checks, each `Fits`).
    pub fn of(placed: Vec<Placed>, dry: bool) -> Self {
        if !placed.iter().all(|p| matches!(p, Placed::Created(_))) {
            Booked::Refused(placed)
        } else if dry {
            Booked::Made(placed.into_iter().map(|_| Placed::Fits).collect())
        } else {
            Booked::Made(placed)
        }
    }

    /// Whether it wrote anything.
    pub fn wrote(&self) -> bool {
        matches!(self, Booked::Made(placed)
            if placed.iter().any(|p| matches!(p, Placed::Created(_))))
    }
}

/// What a call of bookings did, at the time it read after its locks.
#[derive(Debug)]
pub(crate) struct BookOutcome {
    pub at: DateTime<Utc>,
    /// One per booking, in order.
    pub booked: Vec<Booked>,
    /// How long the write waited for its locks.
    pub lock_wait: Duration,
}

/// A booking as stored.
#[derive(Clone, Debug)]
pub(crate) struct StoredBooking {
    pub id: uuid::Uuid,
    pub user_id: String,
    pub created_at: DateTime<Utc>,
    /// Its parts, in order.
    pub parts: Vec<StoredReservation>,
}

/// Live reservations in the way of a write.
#[derive(Clone, Debug, Default)]
pub(crate) struct Blockers {
    /// The first of them, by start then id (at most the limit asked for).
    pub rows: Vec<StoredReservation>,
    /// How many there are in all.
    pub total: u64,
    /// The resource's capacity.
    pub capacity: u32,
    /// Where fewer units are free than asked, merged, in order.
    pub full: Vec<(DateTime<Utc>, DateTime<Utc>)>,
}

/// A resource as it is and the units in use over the span read.
#[derive(Clone, Debug)]
pub(crate) struct ResourceUsage {
    /// `None`: never registered.
    pub resource: Option<Resource>,
    /// Pieces in order where units are in use.
    pub usage: Vec<abi::Usage>,
}

/// What became of one placement.
#[derive(Debug)]
pub(crate) enum Placed {
    /// Inserted.
    Created(StoredReservation),
    /// The same user used the same request id before: what that made, and
    /// the digest of the request that made it.
    Existing {
        stored: StoredReservation,
        fingerprint: Option<i64>,
    },
    /// Refused: these are in the way. Nothing was written.
    Blocked(Blockers),
    /// The resource is no longer at the version the placement was judged
    /// by. Nothing was written.
    Stale,
    /// The write ran after the placement's `accept_until`: its notice had
    /// passed. Nothing was written.
    Late,
    /// A dry placement that would have been made.
    Fits,
}

/// What a batch of placements did, at the time it read after its locks.
#[derive(Debug)]
pub(crate) struct PlaceOutcome {
    pub at: DateTime<Utc>,
    /// One per placement, in order.
    pub placed: Vec<Placed>,
    /// How long the write waited for its locks.
    pub lock_wait: Duration,
}

/// An update of one reservation, planned by the engine from the row it
/// read, for the store to apply if the row has not changed since.
#[derive(Clone, Debug)]
pub(crate) struct Revision {
    pub id: ReservationId,
    /// The version the plan was made from.
    pub version: i64,
    /// Whether the plan saw the row's hold as overdue.
    pub seen_lapsed: bool,
    /// The interval moves or more units are held: take the resource's
    /// lock and refuse what the capacity leaves no room for.
    pub check: bool,
    pub status: ReservationStatus,
    pub note: Note,
    pub timespan: Timespan,
    pub expires_at: Option<DateTime<Utc>>,
    pub quantity: u32,
    /// The version of the resource's rules the plan was judged by (0: not
    /// registered), compared with the resource's; none when no rule has a
    /// say in it (only the note changes).
    pub resource_version: Option<i64>,
    /// When it was checked in and out.
    pub checked_in_at: Option<DateTime<Utc>>,
    pub checked_out_at: Option<DateTime<Utc>>,
    /// The last write time at which the plan's judgment by the clock still
    /// holds (a notice, a cancel notice, a check-in window); past it, under
    /// the locks, the revision is stale. `None`: no limit.
    pub accept_until: Option<DateTime<Utc>>,
}

/// What became of a revision.
#[derive(Debug)]
pub(crate) enum Revised {
    /// Applied.
    Done(StoredReservation),
    /// The row or its resource's rules changed since it was read, its hold
    /// lapsed, or the write ran past the plan's `accept_until`: this is how
    /// it stands now. Nothing was written.
    Stale(StoredReservation),
    /// Refused: these are in the way. Nothing was written.
    Blocked(Blockers),
    /// No such reservation.
    Missing,
}

/// What a revision did, at the time it read after its locks.
#[derive(Debug)]
pub(crate) struct ReviseOutcome {
    pub at: DateTime<Utc>,
    pub revised: Revised,
    /// How long the write waited for its locks.
    pub lock_wait: Duration,
}

/// How a store's change feed is read and woken.
pub(crate) struct FeedSource<C> {
    pub changes: Arc<C>,
    /// Notified when changes may have been committed.
    pub wake: Arc<Notify>,
    /// Stops whatever wakes the feed, when the feed goes.
    pub guard: Option<DropGuard>,
}

/// A store: its SQL and its locking.
#[async_trait]
pub(crate) trait Dialect: Send + Sync + 'static {
    /// Where its changes are kept.
    type Changes: ChangeSource;

    /// The SQL fragments the engine's shared statements are built from.
    fn sql(&self) -> &'static Sql;

    /// How many transactions of combined placements may run at once.
    fn write_lanes(&self) -> usize;

    /// How many transactions of combined bookings may run at once.
    fn booking_lanes(&self) -> usize;

    /// The pool's connections: open, idle, and the most it may open.
    fn pool_size(&self) -> (usize, usize, usize);

    /// Places `batch` in one transaction, in order, holding the locks of
    /// every resource involved (taken in one global order); each blocked
    /// placement lists at most `limit` of what is in the way.
    async fn place(
        &self,
        batch: &[Placement],
        time: &WriteTime,
        limit: u32,
    ) -> Result<PlaceOutcome>;

    /// Applies `revision` if the row is still as it was planned from.
    async fn revise(
        &self,
        revision: &Revision,
        time: &WriteTime,
        limit: u32,
    ) -> Result<ReviseOutcome>;

    /// Makes `batch`'s bookings in one transaction, in order, each all or
    /// nothing (a refused one leaves nothing behind and does not refuse
    /// the others), holding the locks of every resource involved (taken in
    /// one global order); each refused part lists at most `limit` of what
    /// is in the way.
    async fn book(
        &self,
        batch: &[BookingPlacement],
        time: &WriteTime,
        limit: u32,
    ) -> Result<BookOutcome>;

    /// Reads a booking and its parts.
    async fn booking(&self, id: BookingId) -> Result<Option<StoredBooking>>;

    /// What a user's booking with this idempotency key made, and the
    /// digest of the request that made it.
    async fn booking_by_request(
        &self,
        user: &UserId,
        key: &RequestId,
    ) -> Result<Option<(StoredBooking, Option<i64>)>>;

    /// Applies every revision (none of which checks capacity) if every row
    /// is still as it was planned from, or none: the rows that were not
    /// are answered as they stand now.
    async fn revise_all(
        &self,
        revisions: &[Revision],
        time: &WriteTime,
    ) -> Result<(DateTime<Utc>, Vec<Revised>)>;

    /// Stores a new API token.
    async fn insert_token(&self, token: &ApiToken) -> Result<()>;

    /// Every API token, oldest first.
    async fn tokens(&self) -> Result<Vec<ApiToken>>;

    /// Marks a token revoked at `now` unless it already is; the token as
    /// it then stands, if it exists.
    async fn revoke_token(&self, id: TokenId, now: DateTime<Utc>) -> Result<Option<ApiToken>>;

    /// Reads one reservation.
    async fn read(&self, id: ReservationId) -> Result<Option<StoredReservation>>;

    /// What a user's reserve with this idempotency key made, and the digest
    /// of the request that made it.
    async fn by_request(
        &self,
        user: &UserId,
        key: &RequestId,
    ) -> Result<Option<(StoredReservation, Option<i64>)>>;

    /// Reads one registered resource (deleted ones too).
    async fn resource(&self, id: &ResourceId) -> Result<Option<Resource>>;

    /// Registers a resource at `now`.
    ///
    /// # Errors
    /// [`abi::Error::ResourceExists`] when the id is registered already.
    async fn create_resource(&self, spec: &ResourceSpec, now: DateTime<Utc>) -> Result<Resource>;

    /// Changes a resource under its lock: `change` makes the new spec from
    /// the resource as it is. Overdue holds are settled first; a capacity
    /// below what live reservations hold is refused.
    ///
    /// # Errors
    /// [`abi::Error::ResourceNotFound`]; whatever `change` returns;
    /// [`abi::Error::CapacityInUse`] naming when.
    async fn update_resource(
        &self,
        id: &ResourceId,
        change: &(dyn for<'r> Fn(&'r Resource) -> Result<ResourceSpec> + Send + Sync),
        now: DateTime<Utc>,
    ) -> Result<Resource>;

    /// Marks a resource deleted at `now`; with `force`, first cancels its
    /// live reservations that have not ended.
    ///
    /// # Errors
    /// [`abi::Error::ResourceNotFound`]; [`abi::Error::CapacityInUse`]
    /// when live reservations have not ended and `force` is off.
    async fn delete_resource(
        &self,
        id: &ResourceId,
        force: bool,
        now: DateTime<Utc>,
    ) -> Result<Resource>;

    /// Registered resources after `after`, by id: at most `limit`.
    async fn list_resources(
        &self,
        after: Option<&ResourceId>,
        limit: i64,
        show_deleted: bool,
    ) -> Result<Vec<Resource>>;

    /// For each of `asks` (a resource and the span to read), in order: the
    /// resource as it is and the units live reservations hold there at
    /// `now` (an overdue hold holds nothing), all from one snapshot.
    async fn usage(
        &self,
        asks: &[(ResourceId, Timespan)],
        now: DateTime<Utc>,
    ) -> Result<Vec<ResourceUsage>>;

    /// Runs a selection of reservations built by the engine, reading every
    /// row before returning (no connection is held while the caller uses
    /// them).
    async fn select(&self, statement: Statement) -> Result<Vec<StoredReservation>>;

    /// Marks up to `limit` overdue holds expired; returns how many.
    async fn expire_overdue(&self, now: DateTime<Utc>, limit: i64) -> Result<u64>;

    /// Deletes up to `limit` changes made before `before`; returns how many.
    async fn purge_changes(&self, before: DateTime<Utc>, limit: i64) -> Result<u64>;

    /// Checks that the database answers.
    async fn ping(&self) -> Result<()>;

    /// Starts reading the change feed.
    async fn feed_source(&self) -> Result<FeedSource<Self::Changes>>;
}

/// The SQL text in which the stores differ, for the statements the engine
/// builds ([`crate::statement`]).
#[derive(Debug)]
pub(crate) struct Sql {
    /// `SELECT <reservation columns> FROM <reservations> WHERE TRUE`.
    pub select_reservations: &'static str,
    /// The keyset order's key: start, then id.
    pub start_id: &'static str,
    /// The start column (for ordering).
    pub start: &'static str,
    /// Overlap with a window, around its two (nullable) bounds.
    pub overlaps: [&'static str; 3],
    /// The hold expiry (and release time) column.
    pub expires_at: &'static str,
    /// The check-in time column.
    pub checked_in_at: &'static str,
    /// `SELECT <change columns> FROM <changes> ch WHERE TRUE`.
    pub select_changes: &'static str,
}
