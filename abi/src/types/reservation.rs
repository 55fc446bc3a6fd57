//! A reservation as stored, and the requests that make and change one.

use std::hash::Hasher;

use chrono::{DateTime, TimeDelta, Utc};
use derive_builder::Builder;

use super::{
    BookingId, Hold, InitialStatus, Note, RequestId, ReservationId, ReservationStatus, ResourceId,
    StatusChange, Timespan, UserId,
};
use crate::{
    error::{Error, FieldContext, Result},
    pb,
    time::{from_duration, from_timestamp, to_timestamp},
};

/// A reservation as the store reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// Assigned by rsvp.
    pub id: ReservationId,
    /// Who holds it.
    pub user_id: UserId,
    /// What it holds.
    pub resource_id: ResourceId,
    /// Its effective status: an overdue hold reads as expired.
    pub status: ReservationStatus,
    /// The interval `[start, end)` it holds.
    pub timespan: Timespan,
    /// Free text.
    pub note: Note,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When a pending hold expires (or expired); `None` for anything else.
    pub expires_at: Option<DateTime<Utc>>,
    /// Units held; 0 only for a block of every unit.
    pub quantity: u32,
    /// The booking it is a part of, if any.
    pub booking_id: Option<BookingId>,
    /// When the holder checked in.
    pub checked_in_at: Option<DateTime<Utc>>,
    /// When the holder checked out.
    pub checked_out_at: Option<DateTime<Utc>>,
}

impl Reservation {
    /// The reservation as a caller who may not read it sees it (inside a
    /// conflict, or in Listen): its resource, interval, status and
    /// quantity only. No id, user, note or booking, and none of its own
    /// times (when it was made or changed, arrival, departure, hold
    /// expiry), which would let a stranger's reservation be followed or
    /// its holder's comings and goings read; the wire omits the creation
    /// and update times of a redacted reservation.
    pub fn redacted(self) -> Reservation {
        Reservation {
            id: ReservationId::from(uuid::Uuid::nil()),
            user_id: UserId::redacted(),
            note: Note::default(),
            created_at: DateTime::UNIX_EPOCH,
            updated_at: DateTime::UNIX_EPOCH,
            expires_at: None,
            booking_id: None,
            checked_in_at: None,
            checked_out_at: None,
            ..self
        }
    }

    /// Whether this is a [`Reservation::redacted`] copy.
    pub fn is_redacted(&self) -> bool {
        self.user_id.as_str().is_empty()
    }

    /// At least as many bytes as the reservation takes on the wire.
    pub fn wire_size_bound(&self) -> usize {
        // Fixed fields (ids, status, times, tags and lengths) take under 240.
        240 + self.user_id.as_str().len()
            + self.resource_id.as_str().len()
            + self.note.as_str().len()
    }
}

impl From<Reservation> for pb::Reservation {
    fn from(r: Reservation) -> Self {
        let shown = !r.is_redacted();
        pb::Reservation {
            // A validate_only answer has no id.
            id: if r.id.uuid().is_nil() {
                String::new()
            } else {
                r.id.to_string()
            },
            user_id: r.user_id.into(),
            status: pb::ReservationStatus::from(r.status).into(),
            resource_id: r.resource_id.into(),
            start: Some(to_timestamp(r.timespan.start())),
            end: Some(to_timestamp(r.timespan.end())),
            created_at: shown.then(|| to_timestamp(r.created_at)),
            updated_at: shown.then(|| to_timestamp(r.updated_at)),
            note: r.note.into(),
            expires_at: r.expires_at.map(to_timestamp),
            quantity: r.quantity,
            booking_id: r.booking_id.map(|b| b.to_string()).unwrap_or_default(),
            checked_in_at: r.checked_in_at.map(to_timestamp),
            checked_out_at: r.checked_out_at.map(to_timestamp),
        }
    }
}

/// Reads a required timestamp field.
pub(crate) fn required_time(
    ts: Option<&prost_types::Timestamp>,
    field: &'static str,
) -> Result<DateTime<Utc>> {
    let ts = ts.ok_or_else(|| Error::invalid(field, "required"))?;
    from_timestamp(ts).field(field)
}

/// Reads an optional timestamp field.
pub(crate) fn optional_time(
    ts: Option<&prost_types::Timestamp>,
    field: &'static str,
) -> Result<Option<DateTime<Utc>>> {
    ts.map(from_timestamp).transpose().field(field)
}

/// A request for a new reservation, every field checked.
///
/// Build one from raw values with [`NewReservation::builder`], or from the
/// wire with `TryFrom<pb::ReserveRequest>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewReservation {
    /// Who holds it.
    pub user_id: UserId,
    /// What it holds.
    pub resource_id: ResourceId,
    /// The interval it holds.
    pub timespan: Timespan,
    /// Free text.
    pub note: Note,
    /// PENDING (a hold), CONFIRMED or BLOCKED.
    pub status: InitialStatus,
    /// How long a pending hold lasts.
    pub hold: Hold,
    /// Idempotency key, unique per user.
    pub request_id: Option<RequestId>,
    /// Units to hold (1 to the capacity); 0 only for a block of every unit.
    pub quantity: u32,
    /// Check everything and answer as a reserve would, storing nothing.
    pub validate_only: bool,
    /// Book outside the resource's policy (never beyond its capacity).
    pub override_policy: bool,
}

/// Raw values of a new reservation, checked by [`NewReservationBuilder::build`].
#[derive(Builder)]
#[builder(
    name = "NewReservationBuilder",
    public,
    pattern = "owned",
    build_fn(private, name = "fields", error = "Error")
)]
pub(crate) struct NewReservationFields {
    /// Who holds it: 1 to 64 characters, no control characters.
    #[builder(setter(into))]
    pub(crate) user_id: String,
    /// What it holds: 1 to 64 characters, no control characters.
    #[builder(setter(into))]
    pub(crate) resource_id: String,
    /// Start of the interval (inclusive).
    pub(crate) start: DateTime<Utc>,
    /// End of the interval (exclusive).
    pub(crate) end: DateTime<Utc>,
    /// Free text, at most 4096 bytes.
    #[builder(default, setter(into))]
    pub(crate) note: String,
    /// Initial status; a pending hold unless set.
    #[builder(default)]
    pub(crate) status: InitialStatus,
    /// Hold length; the store's default unless set, zero for never.
    #[builder(default, setter(strip_option))]
    pub(crate) hold: Option<TimeDelta>,
    /// Idempotency key, at most 64 characters.
    #[builder(default, setter(into, strip_option))]
    pub(crate) request_id: Option<String>,
    /// Units to hold; 0 means 1, except for a block (every unit).
    #[builder(default)]
    pub(crate) quantity: u32,
    /// Store nothing: only check and answer.
    #[builder(default)]
    pub(crate) validate_only: bool,
    /// Book outside the resource's policy.
    #[builder(default)]
    pub(crate) override_policy: bool,
}

impl NewReservationBuilder {
    /// Checks every value and makes the request.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the first field that is missing or
    /// invalid.
    pub fn build(self) -> Result<NewReservation> {
        NewReservation::from_fields(self.fields()?)
    }
}

impl NewReservation {
    /// A builder taking raw values.
    pub fn builder() -> NewReservationBuilder {
        NewReservationBuilder::default()
    }

    /// When this reservation, made at `now`, stops blocking on its own:
    /// a pending hold at the end of its hold (`default_hold` standing in for
    /// [`Hold::Default`]); a confirmed or blocked one never (`None`).
    pub fn expires_at(
        &self,
        now: DateTime<Utc>,
        default_hold: Option<TimeDelta>,
    ) -> Option<DateTime<Utc>> {
        now.checked_add_signed(self.hold_length(default_hold)?)
    }

    /// How long after it is made this reservation stops blocking on its
    /// own: a pending hold's length (`default_hold` standing in for
    /// [`Hold::Default`]); `None` for a hold that never expires and for a
    /// confirmed or blocked reservation.
    pub fn hold_length(&self, default_hold: Option<TimeDelta>) -> Option<TimeDelta> {
        match self.status {
            InitialStatus::Pending => self.hold.length(default_hold),
            _ => None,
        }
    }

    pub(crate) fn from_fields(f: NewReservationFields) -> Result<Self> {
        if f.quantity > super::MAX_CAPACITY {
            return Err(Error::invalid(
                "reservation.quantity",
                "must be at most 1,000,000",
            ));
        }
        let quantity = match (f.quantity, f.status) {
            (0, InitialStatus::Blocked) => 0,
            (0, _) => 1,
            (q, _) => q,
        };
        Ok(NewReservation {
            quantity,
            validate_only: f.validate_only,
            override_policy: f.override_policy,
            user_id: UserId::parse(f.user_id).field("reservation.user_id")?,
            resource_id: ResourceId::parse(f.resource_id).field("reservation.resource_id")?,
            timespan: Timespan::new(f.start, f.end).field("reservation.start")?,
            note: Note::parse(f.note).field("reservation.note")?,
            status: f.status,
            hold: f
                .hold
                .map(Hold::new)
                .transpose()
                .field("hold")?
                .unwrap_or_default(),
            request_id: f
                .request_id
                .filter(|id| !id.is_empty())
                .map(RequestId::parse)
                .transpose()
                .field("request_id")?,
        })
    }

    /// A digest of everything the request asks for, to tell a retry (same
    /// digest) from a different request that reuses a `request_id`.
    pub fn fingerprint(&self) -> i64 {
        let mut h = fnv::FnvHasher::default();
        for part in [
            self.user_id.as_str(),
            self.resource_id.as_str(),
            self.note.as_str(),
        ] {
            h.write(part.as_bytes());
            h.write_u8(0xff);
        }
        h.write_i64(self.timespan.start().timestamp_micros());
        h.write_i64(self.timespan.end().timestamp_micros());
        h.write_u8(self.status as u8);
        h.write_u32(self.quantity);
        match self.hold {
            Hold::Default => h.write_u8(0),
            Hold::Never => h.write_u8(1),
            Hold::For(d) => {
                h.write_u8(2);
                h.write_i64(d.num_microseconds().unwrap_or(i64::MAX));
            }
        }
        h.finish() as i64
    }
}

impl TryFrom<pb::ReserveRequest> for NewReservation {
    type Error = Error;

    fn try_from(req: pb::ReserveRequest) -> Result<Self> {
        let r = req
            .reservation
            .ok_or_else(|| Error::invalid("reservation", "required"))?;
        if !r.id.is_empty() {
            return Err(Error::invalid(
                "reservation.id",
                "must be empty: rsvp assigns the id",
            ));
        }
        let fields = NewReservationFields {
            start: required_time(r.start.as_ref(), "reservation.start")?,
            end: required_time(r.end.as_ref(), "reservation.end")?,
            status: InitialStatus::from_wire(r.status).field("reservation.status")?,
            hold: req
                .hold
                .as_ref()
                .map(from_duration)
                .transpose()
                .field("hold")?,
            user_id: r.user_id,
            resource_id: r.resource_id,
            note: r.note,
            request_id: Some(req.request_id),
            quantity: r.quantity,
            validate_only: req.validate_only,
            override_policy: req.override_policy,
        };
        NewReservation::from_fields(fields)
    }
}

/// A change to an existing reservation: its status, its note, its interval
/// (a reschedule), or several at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReservationUpdate {
    /// Which reservation.
    pub id: ReservationId,
    /// Confirm or cancel; `None` leaves the status as it is.
    pub status: Option<StatusChange>,
    /// A new note; `None` leaves the note as it is.
    pub note: Option<Note>,
    /// A new interval, checked for conflicts like a new reservation.
    pub timespan: Option<Timespan>,
    /// A new number of units; more are checked against the capacity.
    pub quantity: Option<u32>,
    /// Change it outside the resource's policy.
    pub override_policy: bool,
}

/// Raw values of an update, checked by [`ReservationUpdateBuilder::build`].
#[derive(Builder)]
#[builder(
    name = "ReservationUpdateBuilder",
    public,
    pattern = "owned",
    build_fn(private, name = "fields", error = "Error")
)]
struct ReservationUpdateFields {
    /// The reservation's id (a UUID).
    #[builder(setter(into))]
    id: String,
    /// Confirm or cancel.
    #[builder(default, setter(strip_option))]
    status: Option<StatusChange>,
    /// The new note.
    #[builder(default, setter(into, strip_option))]
    note: Option<String>,
    /// The new start; needs `end` too.
    #[builder(default, setter(strip_option))]
    start: Option<DateTime<Utc>>,
    /// The new end; needs `start` too.
    #[builder(default, setter(strip_option))]
    end: Option<DateTime<Utc>>,
    /// The new number of units (at least 1).
    #[builder(default, setter(strip_option))]
    quantity: Option<u32>,
    /// Change it outside the resource's policy.
    #[builder(default)]
    override_policy: bool,
}

impl ReservationUpdateBuilder {
    /// Checks every value and makes the update.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the first field that is missing or
    /// invalid, including a reschedule with only one of `start` and `end`.
    pub fn build(self) -> Result<ReservationUpdate> {
        ReservationUpdate::from_fields(self.fields()?)
    }
}

impl ReservationUpdate {
    /// A builder taking raw values.
    pub fn builder() -> ReservationUpdateBuilder {
        ReservationUpdateBuilder::default()
    }

    /// An update that only changes the status.
    pub fn status(id: ReservationId, change: StatusChange) -> Self {
        ReservationUpdate {
            id,
            status: Some(change),
            note: None,
            timespan: None,
            quantity: None,
            override_policy: false,
        }
    }

    fn from_fields(f: ReservationUpdateFields) -> Result<Self> {
        let id = ReservationId::parse(&f.id).field("id")?;
        let timespan = match (f.start, f.end) {
            (None, None) => None,
            (Some(start), Some(end)) => Some(Timespan::new(start, end).field("start")?),
            (Some(_), None) => {
                return Err(Error::invalid(
                    "end",
                    "required when start is set: a reschedule needs both",
                ));
            }
            (None, Some(_)) => {
                return Err(Error::invalid(
                    "start",
                    "required when end is set: a reschedule needs both",
                ));
            }
        };
        let quantity = match f.quantity {
            Some(0) => {
                return Err(Error::invalid(
                    "quantity",
                    "must be at least 1 (only a new block may take every unit)",
                ));
            }
            Some(q) if q > super::MAX_CAPACITY => {
                return Err(Error::invalid("quantity", "must be at most 1,000,000"));
            }
            q => q,
        };
        Ok(ReservationUpdate {
            id,
            status: f.status,
            note: f.note.map(Note::parse).transpose().field("note")?,
            timespan,
            quantity,
            override_policy: f.override_policy,
        })
    }
}

impl TryFrom<pb::UpdateRequest> for ReservationUpdate {
    type Error = Error;

    fn try_from(req: pb::UpdateRequest) -> Result<Self> {
        let fields = ReservationUpdateFields {
            id: req.id,
            status: StatusChange::from_wire(req.status).field("status")?,
            note: req.note,
            start: optional_time(req.start.as_ref(), "start")?,
            end: optional_time(req.end.as_ref(), "end")?,
            quantity: req.quantity,
            override_policy: req.override_policy,
        };
        ReservationUpdate::from_fields(fields)
    }
}

/// Reads the `id` of a Confirm, Cancel or Get request.
///
/// # Errors
/// [`Error::InvalidArgument`] naming `id` when it is not a UUID.
pub fn parse_id(id: &str) -> Result<ReservationId> {
    ReservationId::parse(id).field("id")
}

/// Reads the `id` field of a booking request.
///
/// # Errors
/// [`Error::InvalidArgument`] on `id` when it is not a UUID.
pub fn parse_booking_id(id: &str) -> Result<BookingId> {
    BookingId::parse(id).field("id")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(s, 0).unwrap()
    }

    fn builder() -> NewReservationBuilder {
        NewReservation::builder()
            .user_id("alice")
            .resource_id("room-1")
            .start(at(0))
            .end(at(3600))
    }

    #[test]
    fn builder_checks_every_field() {
        let r = builder().note("hi").build().unwrap();
        assert_eq!(r.user_id.as_str(), "alice");
        assert_eq!(r.hold, Hold::Default);
        assert_eq!(r.request_id, None);

        let err = builder().user_id("").build().unwrap_err();
        assert!(err.to_string().starts_with("reservation.user_id:"), "{err}");
        let err = NewReservation::builder().user_id("a").build().unwrap_err();
        assert!(err.to_string().starts_with("resource_id:"), "{err}");
        let err = builder().end(at(0)).build().unwrap_err();
        assert!(err.to_string().starts_with("reservation.start:"), "{err}");
        let err = builder().hold(TimeDelta::seconds(-5)).build().unwrap_err();
        assert!(err.to_string().starts_with("hold:"), "{err}");
        let err = builder().request_id("r".repeat(65)).build().unwrap_err();
        assert!(err.to_string().starts_with("request_id:"), "{err}");
    }

    #[test]
    fn only_a_pending_hold_expires() {
        let now = at(100);
        let default = Some(TimeDelta::minutes(30));
        let held = builder().build().unwrap();
        assert_eq!(held.expires_at(now, default), Some(at(100 + 1800)));
        assert_eq!(held.expires_at(now, None), None);
        let short = builder().hold(TimeDelta::minutes(5)).build().unwrap();
        assert_eq!(short.expires_at(now, default), Some(at(100 + 300)));
        let never = builder().hold(TimeDelta::zero()).build().unwrap();
        assert_eq!(never.expires_at(now, default), None);
        for status in [InitialStatus::Confirmed, InitialStatus::Blocked] {
            let r = builder()
                .status(status)
                .hold(TimeDelta::minutes(5))
                .build()
                .unwrap();
            assert_eq!(r.expires_at(now, default), None);
        }
    }

    #[test]
    fn fingerprint_tells_requests_apart() {
        let a = builder().build().unwrap();
        let b = builder().note("other").build().unwrap();
        assert_eq!(a.fingerprint(), builder().build().unwrap().fingerprint());
        assert_ne!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn update_needs_both_ends_of_a_reschedule() {
        let id = ReservationId::new().to_string();
        let err = ReservationUpdate::builder()
            .id(id.clone())
            .start(at(0))
            .build()
            .unwrap_err();
        assert!(err.to_string().starts_with("end:"), "{err}");
        let err = ReservationUpdate::builder()
            .id(id.clone())
            .end(at(0))
            .build()
            .unwrap_err();
        assert!(err.to_string().starts_with("start:"), "{err}");
        let ok = ReservationUpdate::builder()
            .id(id)
            .start(at(0))
            .end(at(1))
            .build()
            .unwrap();
        assert!(ok.timespan.is_some());
    }
}
