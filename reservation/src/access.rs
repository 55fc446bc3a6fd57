//! Who may do what: every access rule, decided here and nowhere else.
//!
//! [`Access`] wraps a store and takes the [`Caller`] with each call. It lets
//! a call through, narrows it (a user's query sees only what it may read),
//! refuses it with [`Error::PermissionDenied`], or redacts what the answer
//! shows of other users' reservations. The store below knows nothing of
//! callers: an embedded program with no users of its own may use it
//! directly, which is what [`Caller::system`] is allowed anyway.
//!
//! The rules (the design's "Identity and access"):
//! - `admin` does everything; blocks and `override_policy` are for admins
//!   of the service or of the resource concerned.
//! - `service` acts for any user and reads everything.
//! - `user` acts only as itself, and reads its own reservations and those
//!   of the resources it administers (a resource's `admins`). Another user's
//!   reservation appears only redacted, inside a conflict and in Listen.
//!   A call on a reservation or booking it may not read is denied whether
//!   it exists or not.
//! - Only the owner, a service or an admin (of the service or of the
//!   reservation's resource) changes a reservation; marking a no-show is
//!   for admins.
//! - Resources are read and Availability is asked by any caller; only
//!   admins register resources, and a resource's admins change it.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use abi::{
    AvailabilityAnswer, AvailabilityRequest, Booking, BookingId, Caller, Error, InitialStatus,
    ListenFilter, NewBooking, NewReservation, Page, Reservation, ReservationFilter, ReservationId,
    ReservationQuery, ReservationStatus, ReservationUpdate, Resource, ResourceId, ResourceListing,
    ResourcePage, ResourcePatch, ResourceSpec, Result, Role, StatusChange, UserId,
};
use futures::StreamExt;
use tokio::sync::Mutex;

use crate::{ChangeStream, ReservationStream, Rsvp};

/// How long a Listen stream trusts what it learned of whether its caller
/// administers a resource.
pub const ADMINS_REMEMBERED: Duration = Duration::from_secs(10);

/// Whether a Listen stream's caller administers each resource, and since
/// when that is known.
type Administered = HashMap<ResourceId, (bool, Instant)>;

/// A store seen through the access rules.
#[derive(Clone)]
pub struct Access {
    store: Arc<dyn Rsvp>,
}

/// Whether a change needs an admin, or the owner may make it too.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Needs {
    OwnerOrAdmin,
    Admin,
}

/// `caller` may not do `what` on `resource`, which only admins may.
fn not_an_admin(caller: &Caller, resource: &ResourceId, what: &str) -> Error {
    denied(format!(
        "{caller} may not {what} on {resource}: only an admin of the service or of the \
         resource may"
    ))
}

fn denied(what: String) -> Error {
    Error::PermissionDenied(what.into())
}

impl Access {
    /// The access rules over `store`.
    pub fn new(store: Arc<dyn Rsvp>) -> Self {
        Access { store }
    }

    /// The store below, with no rules: for callers the server trusts.
    pub fn store(&self) -> &Arc<dyn Rsvp> {
        &self.store
    }

    /// [`Rsvp::reserve`] for `caller`: a user reserves only as itself;
    /// blocks and `override_policy` need an admin of the resource.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`]; as [`Rsvp::reserve`], with another
    /// user's reservations in a conflict redacted.
    pub async fn reserve(&self, caller: &Caller, request: NewReservation) -> Result<Reservation> {
        acts_as(caller, &request.user_id)?;
        if request.status == InitialStatus::Blocked || request.override_policy {
            self.must_administer(caller, &request.resource_id, admin_only_reason(&request))
                .await?;
        }
        let made = self.store.reserve(request).await;
        self.redact_error(caller, made).await
    }

    /// [`Rsvp::update`] for `caller`: the owner, a service or an admin;
    /// a no-show mark or `override_policy` needs an admin.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`]; as [`Rsvp::update`].
    pub async fn update(&self, caller: &Caller, update: ReservationUpdate) -> Result<Reservation> {
        let needs = if update.override_policy || update.status == Some(StatusChange::NoShow) {
            Needs::Admin
        } else {
            Needs::OwnerOrAdmin
        };
        self.may_change(caller, update.id, needs).await?;
        let updated = self.store.update(update).await;
        self.redact_error(caller, updated).await
    }

    /// [`Rsvp::confirm`] for `caller`: the owner, a service or an admin.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`]; as [`Rsvp::confirm`].
    pub async fn confirm(&self, caller: &Caller, id: ReservationId) -> Result<Reservation> {
        self.may_change(caller, id, Needs::OwnerOrAdmin).await?;
        self.store.confirm(id).await
    }

    /// [`Rsvp::cancel`] for `caller`: the owner, a service or an admin.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`]; as [`Rsvp::cancel`].
    pub async fn cancel(&self, caller: &Caller, id: ReservationId) -> Result<Reservation> {
        self.may_change(caller, id, Needs::OwnerOrAdmin).await?;
        self.store.cancel(id).await
    }

    /// [`Rsvp::check_in`] for `caller`: the owner, a service or an admin.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`]; as [`Rsvp::check_in`].
    pub async fn check_in(&self, caller: &Caller, id: ReservationId) -> Result<Reservation> {
        self.may_change(caller, id, Needs::OwnerOrAdmin).await?;
        self.store.check_in(id).await
    }

    /// [`Rsvp::check_out`] for `caller`: the owner, a service or an admin.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`]; as [`Rsvp::check_out`].
    pub async fn check_out(&self, caller: &Caller, id: ReservationId) -> Result<Reservation> {
        self.may_change(caller, id, Needs::OwnerOrAdmin).await?;
        self.store.check_out(id).await
    }

    /// [`Rsvp::get`] for `caller`: a user reads its own reservations and
    /// those of the resources it administers.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`] for a user, whether the reservation
    /// exists or not; as [`Rsvp::get`].
    pub async fn get(&self, caller: &Caller, id: ReservationId) -> Result<Reservation> {
        if caller.role() != Role::User {
            return self.store.get(id).await;
        }
        let found = match self.store.get(id).await {
            Ok(found) => found,
            Err(Error::NotFound(_)) => return Err(may_not_read(caller, id)),
            Err(e) => return Err(e),
        };
        if caller.is(&found.user_id) || self.administers(caller, &found.resource_id).await? {
            Ok(found)
        } else {
            Err(may_not_read(caller, id))
        }
    }

    /// [`Rsvp::query`] for `caller`: a user's query is narrowed to its own
    /// reservations, unless it names a resource the user administers.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`] when a user names another `user_id`.
    pub async fn query(
        &self,
        caller: &Caller,
        query: ReservationQuery,
    ) -> Result<ReservationStream> {
        let query = self.scope(caller, query).await?;
        Ok(self.store.query(query))
    }

    /// [`Rsvp::filter`] for `caller`, narrowed as [`Access::query`] is.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`] when a user names another `user_id`; as
    /// [`Rsvp::filter`].
    pub async fn filter(&self, caller: &Caller, mut filter: ReservationFilter) -> Result<Page> {
        let asked = filter.query.clone();
        filter.query = self.scope(caller, filter.query).await?;
        let narrowed = filter.query != asked;
        let mut page = self.store.filter(filter.clone()).await?;
        // The next page's token is for the query as the caller sent it, so
        // that sending it back with the same query is accepted.
        if narrowed
            && page.next_page_token.is_some()
            && let Some(last) = page.reservations.last()
        {
            filter.query = asked;
            page.next_page_token = Some(filter.next_page_token(last));
        }
        Ok(page)
    }

    /// [`Rsvp::changes_through`]: change ids are no one's secret (every
    /// Availability answer names one).
    ///
    /// # Errors
    /// As [`Rsvp::changes_through`].
    pub async fn changes_through(&self) -> Result<i64> {
        self.store.changes_through().await
    }

    /// [`Rsvp::listen`] for `caller`: every change the filter asks for, with
    /// other users' reservations redacted for a user (so that every open
    /// page stays live), unless they are of a resource it administers.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`] when a user names another `user_id`; as
    /// [`Rsvp::listen`].
    pub async fn listen(&self, caller: &Caller, filter: ListenFilter) -> Result<ChangeStream> {
        if caller.role() != Role::User {
            return self.store.listen(filter).await;
        }
        if let Some(user) = &filter.user_id {
            acts_as(caller, user)?;
        }
        let changes = self.store.listen(filter).await?;
        let caller = caller.clone();
        let access = self.clone();
        // Whether the caller administers each resource seen, and when that
        // was learned.
        let administered = Arc::new(Mutex::new(Administered::new()));
        Ok(changes
            .then(move |change| {
                let (access, caller, administered) =
                    (access.clone(), caller.clone(), administered.clone());
                async move {
                    let mut change = change?;
                    if !access
                        .shows_in_full(&caller, &change.reservation, &administered)
                        .await
                    {
                        change.reservation = change.reservation.redacted();
                    }
                    Ok(change)
                }
            })
            .boxed())
    }

    /// Whether a user sees a change's reservation in full: its own, or of
    /// a resource it administers (remembered in `administered` for
    /// [`ADMINS_REMEMBERED`], so that a change to a resource's admins
    /// reaches open streams soon). A lookup that fails shows less, never
    /// more.
    async fn shows_in_full(
        &self,
        caller: &Caller,
        reservation: &Reservation,
        administered: &Mutex<Administered>,
    ) -> bool {
        if caller.is(&reservation.user_id) {
            return true;
        }
        let mut administered = administered.lock().await;
        if let Some((known, at)) = administered.get(&reservation.resource_id)
            && at.elapsed() < ADMINS_REMEMBERED
        {
            return *known;
        }
        match self.administers(caller, &reservation.resource_id).await {
            Ok(known) => {
                administered.insert(reservation.resource_id.clone(), (known, Instant::now()));
                known
            }
            Err(_) => false,
        }
    }

    /// [`Rsvp::book`] for `caller`: a user books only as itself; blocks and
    /// `override_policy` need an admin of every part's resource.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`]; as [`Rsvp::book`], with other users'
    /// reservations in each part's conflict redacted.
    pub async fn book(&self, caller: &Caller, booking: NewBooking) -> Result<Booking> {
        acts_as(caller, &booking.user_id)?;
        for part in &booking.parts {
            if part.status == InitialStatus::Blocked || booking.override_policy {
                self.must_administer(caller, &part.resource_id, admin_only_reason(part))
                    .await?;
            }
        }
        match self.store.book(booking).await {
            Err(Error::BookingRejected(mut parts)) if caller.role() == Role::User => {
                for part in &mut parts {
                    if let Some(conflict) = part.conflict.as_deref_mut() {
                        self.redact_conflict(caller, conflict).await;
                    }
                }
                Err(Error::BookingRejected(parts))
            }
            other => other,
        }
    }

    /// [`Rsvp::get_booking`] for `caller`: a user reads its own bookings,
    /// and those whose every part is of a resource it administers.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`] for a user, whether the booking exists
    /// or not; as [`Rsvp::get_booking`].
    pub async fn get_booking(&self, caller: &Caller, id: BookingId) -> Result<Booking> {
        if caller.role() != Role::User {
            return self.store.get_booking(id).await;
        }
        self.readable_booking(caller, id).await
    }

    /// [`Rsvp::confirm_booking`] for `caller`: the owner, a service or an
    /// admin.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`]; as [`Rsvp::confirm_booking`].
    pub async fn confirm_booking(&self, caller: &Caller, id: BookingId) -> Result<Booking> {
        if caller.role() == Role::User {
            self.readable_booking(caller, id).await?;
        }
        self.store.confirm_booking(id).await
    }

    /// [`Rsvp::cancel_booking`] for `caller`: the owner, a service or an
    /// admin; a booking with a blocking part, an admin of its resource.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`]; as [`Rsvp::cancel_booking`].
    pub async fn cancel_booking(&self, caller: &Caller, id: BookingId) -> Result<Booking> {
        if caller.role() == Role::Admin {
            return self.store.cancel_booking(id).await;
        }
        let found = if caller.role() == Role::User {
            self.readable_booking(caller, id).await?
        } else {
            self.store.get_booking(id).await?
        };
        // A block is lifted by admins only, as a block alone is: an admin
        // of the service or of its resource.
        for part in &found.parts {
            if part.status == ReservationStatus::Blocked
                && !self.administers(caller, &part.resource_id).await?
            {
                return Err(denied(format!(
                    "{caller} may not cancel booking {id}: part {} blocks {}, and only an \
                     admin of the service or of {} may lift it",
                    part.id, part.resource_id, part.resource_id
                )));
            }
        }
        self.store.cancel_booking(id).await
    }

    /// [`Rsvp::availability`]: any caller may ask.
    ///
    /// # Errors
    /// As [`Rsvp::availability`].
    pub async fn availability(
        &self,
        _caller: &Caller,
        request: AvailabilityRequest,
    ) -> Result<AvailabilityAnswer> {
        self.store.availability(request).await
    }

    /// [`Rsvp::create_resource`]: admins only.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`]; as [`Rsvp::create_resource`].
    pub async fn create_resource(&self, caller: &Caller, spec: ResourceSpec) -> Result<Resource> {
        if caller.role() != Role::Admin {
            return Err(denied(format!(
                "{caller} may not register resources: only admins may"
            )));
        }
        self.store.create_resource(spec).await
    }

    /// [`Rsvp::get_resource`]: any caller may read resources.
    ///
    /// # Errors
    /// As [`Rsvp::get_resource`].
    pub async fn get_resource(&self, _caller: &Caller, id: ResourceId) -> Result<Resource> {
        self.store.get_resource(id).await
    }

    /// [`Rsvp::list_resources`]: any caller may list resources.
    ///
    /// # Errors
    /// As [`Rsvp::list_resources`].
    pub async fn list_resources(
        &self,
        _caller: &Caller,
        listing: ResourceListing,
    ) -> Result<ResourcePage> {
        self.store.list_resources(listing).await
    }

    /// [`Rsvp::update_resource`]: an admin, or one of the resource's.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`]; as [`Rsvp::update_resource`].
    pub async fn update_resource(&self, caller: &Caller, patch: ResourcePatch) -> Result<Resource> {
        self.must_administer_registered(caller, &patch.id, "change this resource")
            .await?;
        self.store.update_resource(patch).await
    }

    /// [`Rsvp::delete_resource`]: an admin, or one of the resource's.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`]; as [`Rsvp::delete_resource`].
    pub async fn delete_resource(
        &self,
        caller: &Caller,
        id: ResourceId,
        force: bool,
    ) -> Result<Resource> {
        self.must_administer_registered(caller, &id, "delete this resource")
            .await?;
        self.store.delete_resource(id, force).await
    }

    /// Whether `caller` administers `resource`: an admin of the service, or
    /// one of the resource's `admins`. An unregistered resource has none.
    ///
    /// # Errors
    /// When the resource cannot be read.
    pub async fn administers(&self, caller: &Caller, resource: &ResourceId) -> Result<bool> {
        if caller.role() == Role::Admin {
            return Ok(true);
        }
        let Some(principal) = caller.principal() else {
            return Ok(false);
        };
        match self.store.get_resource(resource.clone()).await {
            Ok(found) => Ok(found.spec.admins.contains(principal)),
            Err(Error::ResourceNotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// As [`Self::must_administer`], but an id never registered is
    /// NOT_FOUND to anyone (any caller may read resources, so saying so
    /// tells nothing) rather than a refusal to change what is not there.
    ///
    /// # Errors
    /// [`Error::ResourceNotFound`], [`Error::PermissionDenied`]; when the
    /// resource cannot be read.
    async fn must_administer_registered(
        &self,
        caller: &Caller,
        resource: &ResourceId,
        what: &str,
    ) -> Result<()> {
        if caller.role() == Role::Admin {
            return Ok(());
        }
        let found = self.store.get_resource(resource.clone()).await?;
        match caller.principal() {
            Some(principal) if found.spec.admins.contains(principal) => Ok(()),
            _ => Err(not_an_admin(caller, resource, what)),
        }
    }

    async fn must_administer(
        &self,
        caller: &Caller,
        resource: &ResourceId,
        what: &str,
    ) -> Result<()> {
        if self.administers(caller, resource).await? {
            Ok(())
        } else {
            Err(not_an_admin(caller, resource, what))
        }
    }

    /// Whether `caller` may change reservation `id`. A block is changed
    /// by admins only, whoever it names.
    async fn may_change(&self, caller: &Caller, id: ReservationId, needs: Needs) -> Result<()> {
        if caller.role() == Role::Admin {
            return Ok(());
        }
        let found = match self.store.get(id).await {
            Ok(found) => found,
            Err(Error::NotFound(_)) if caller.role() == Role::User => {
                return Err(may_not_read(caller, id));
            }
            Err(e) => return Err(e),
        };
        let needs = if found.status == ReservationStatus::Blocked {
            Needs::Admin
        } else {
            needs
        };
        if needs == Needs::OwnerOrAdmin
            && (caller.role() == Role::Service || caller.is(&found.user_id))
        {
            return Ok(());
        }
        if self.administers(caller, &found.resource_id).await? {
            return Ok(());
        }
        let readable = caller.role() != Role::User || caller.is(&found.user_id);
        Err(if readable {
            denied(format!(
                "{caller} may not do this to reservation {id}: only an admin of the service or \
                 of {} may",
                found.resource_id
            ))
        } else {
            may_not_read(caller, id)
        })
    }

    /// The booking, if `caller` (a user) may read it; whoever may read a
    /// booking may confirm or cancel it.
    async fn readable_booking(&self, caller: &Caller, id: BookingId) -> Result<Booking> {
        let may_not = || {
            denied(format!(
                "{caller} may not read booking {id}, or it does not exist"
            ))
        };
        let found = match self.store.get_booking(id).await {
            Ok(found) => found,
            Err(Error::BookingNotFound(_)) => return Err(may_not()),
            Err(e) => return Err(e),
        };
        if caller.is(&found.user_id) {
            return Ok(found);
        }
        for part in &found.parts {
            if !self.administers(caller, &part.resource_id).await? {
                return Err(may_not());
            }
        }
        Ok(found)
    }

    /// A user's query narrowed to what it may read.
    async fn scope(
        &self,
        caller: &Caller,
        mut query: ReservationQuery,
    ) -> Result<ReservationQuery> {
        if caller.role() != Role::User {
            return Ok(query);
        }
        if let Some(user) = &query.user_id {
            acts_as(caller, user)?;
        }
        if let Some(resource) = &query.resource_id
            && self.administers(caller, resource).await?
        {
            return Ok(query);
        }
        query.user_id = caller.principal().cloned();
        Ok(query)
    }

    /// Redacts, for a user, other users' reservations in a conflict.
    async fn redact_error<T>(&self, caller: &Caller, result: Result<T>) -> Result<T> {
        match result {
            Err(Error::Conflict(mut conflict)) if caller.role() == Role::User => {
                self.redact_conflict(caller, &mut conflict).await;
                Err(Error::Conflict(conflict))
            }
            other => other,
        }
    }

    async fn redact_conflict(&self, caller: &Caller, conflict: &mut abi::Conflict) {
        let resource = conflict.requested.resource_id.clone();
        // A lookup that fails shows less, never more.
        if self.administers(caller, &resource).await.unwrap_or(false) {
            return;
        }
        for existing in &mut conflict.existing {
            if !caller.is(&existing.user_id) {
                *existing = existing.clone().redacted();
            }
        }
    }
}

/// A user acts only as itself; services and admins act for anyone.
fn acts_as(caller: &Caller, user: &UserId) -> Result<()> {
    if caller.role() != Role::User || caller.is(user) {
        Ok(())
    } else {
        Err(denied(format!(
            "{caller} may act only as itself, not as user {user}"
        )))
    }
}

fn may_not_read(caller: &Caller, id: ReservationId) -> Error {
    denied(format!(
        "{caller} may not read reservation {id}, or it does not exist"
    ))
}

fn admin_only_reason(request: &NewReservation) -> &'static str {
    if request.status == InitialStatus::Blocked {
        "block"
    } else {
        "book outside the policy (override_policy)"
    }
}
