//! Bookings: several reservations, for one user, made, confirmed and
//! cancelled together, all or nothing.

use std::{hash::Hasher, sync::LazyLock};

use chrono::{DateTime, TimeDelta, Utc};

use super::{
    BookingId, Conflict, Hold, InitialStatus, NewReservation, RequestId, Reservation, ResourceId,
    UserId, Violation,
    reservation::{NewReservationFields, required_time},
};
use crate::{
    error::{Error, FieldContext, Result},
    pb,
    time::{from_duration, to_timestamp},
};

/// The most parts a booking has.
pub const MAX_PARTS: usize = 20;

/// The most reservations a refused part's conflict lists.
pub const MAX_LISTED_PER_PART: usize = 5;

/// A booking as the store reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Booking {
    /// Assigned by rsvp.
    pub id: BookingId,
    /// Who holds every part.
    pub user_id: UserId,
    /// Its parts, in the order they were asked for.
    pub parts: Vec<Reservation>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

impl From<Booking> for pb::Booking {
    fn from(b: Booking) -> Self {
        pb::Booking {
            // A validate_only answer has no id.
            id: if b.id.uuid().is_nil() {
                String::new()
            } else {
                b.id.to_string()
            },
            user_id: b.user_id.into(),
            reservations: b.parts.into_iter().map(Into::into).collect(),
            created_at: Some(to_timestamp(b.created_at)),
        }
    }
}

/// A request for a booking, every field checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewBooking {
    /// Who holds every part.
    pub user_id: UserId,
    /// 1 to [`MAX_PARTS`] parts, each a reserve of its own but for the
    /// hold, the idempotency key and the flags, which are the booking's.
    pub parts: Vec<NewReservation>,
    /// How long pending parts are held: one expiry for all.
    pub hold: Hold,
    /// Idempotency key, unique per user among bookings.
    pub request_id: Option<RequestId>,
    /// Check everything and answer as a book would, storing nothing.
    pub validate_only: bool,
    /// Book outside the resources' policies (never beyond capacity).
    pub override_policy: bool,
}

impl NewBooking {
    /// A booking of `parts` (their own user ids, holds, keys and flags are
    /// replaced by the booking's).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for no parts or too many, or a part of
    /// another user.
    pub fn new(
        user_id: UserId,
        parts: Vec<NewReservation>,
        hold: Hold,
        request_id: Option<RequestId>,
    ) -> Result<Self> {
        check_count(parts.len())?;
        for (i, p) in parts.iter().enumerate() {
            if p.user_id != user_id {
                return Err(Error::invalid(
                    part_field(i, "user_id"),
                    "must be empty or the booking's user_id",
                ));
            }
        }
        Ok(NewBooking {
            parts: parts
                .into_iter()
                .map(|p| NewReservation {
                    hold,
                    request_id: None,
                    validate_only: false,
                    override_policy: false,
                    ..p
                })
                .collect(),
            user_id,
            hold,
            request_id,
            validate_only: false,
            override_policy: false,
        })
    }

    /// A digest of everything the booking asks for, to tell a retry from a
    /// different request that reuses a `request_id`.
    pub fn fingerprint(&self) -> i64 {
        let mut h = fnv::FnvHasher::default();
        h.write(b"booking");
        h.write(self.user_id.as_str().as_bytes());
        h.write_u8(0xff);
        for p in &self.parts {
            h.write_i64(p.fingerprint());
        }
        h.finish() as i64
    }
}

fn check_count(n: usize) -> Result<()> {
    if n == 0 {
        return Err(Error::invalid(
            "reservations",
            "at least one part is required",
        ));
    }
    if n > MAX_PARTS {
        return Err(Error::invalid(
            "reservations",
            format!("at most {MAX_PARTS} parts, not {n}"),
        ));
    }
    Ok(())
}

/// The fields of a part that can be named in an error.
const PART_FIELDS: [&str; 9] = [
    "id",
    "user_id",
    "resource_id",
    "start",
    "end",
    "note",
    "status",
    "quantity",
    "booking_id",
];

/// `reservations[i].field`, for every part and field, made once.
static PART_FIELD_NAMES: LazyLock<Vec<Vec<String>>> = LazyLock::new(|| {
    (0..MAX_PARTS)
        .map(|i| {
            PART_FIELDS
                .iter()
                .map(|f| format!("reservations[{i}].{f}"))
                .collect()
        })
        .collect()
});

/// The path of `field` of part `index` (`reservations[2].start`); the
/// whole list's path for an index or field it does not know.
pub fn part_field(index: usize, field: &str) -> &'static str {
    let field = field.rsplit('.').next().unwrap_or(field);
    PART_FIELDS
        .iter()
        .position(|f| *f == field)
        .and_then(|f| Some(PART_FIELD_NAMES.get(index)?.get(f)?.as_str()))
        .unwrap_or("reservations")
}

impl TryFrom<pb::BookRequest> for NewBooking {
    type Error = Error;

    fn try_from(req: pb::BookRequest) -> Result<Self> {
        let user_id = UserId::parse(req.user_id).field("user_id")?;
        check_count(req.reservations.len())?;
        let hold: Option<TimeDelta> = req
            .hold
            .as_ref()
            .map(from_duration)
            .transpose()
            .field("hold")?;
        // Checked once, as the booking's: each part would name it its own.
        if let Some(length) = hold {
            Hold::new(length).field("hold")?;
        }
        let mut parts = Vec::with_capacity(req.reservations.len());
        for (i, r) in req.reservations.into_iter().enumerate() {
            let at = |field: &str| part_field(i, field);
            if !r.id.is_empty() {
                return Err(Error::invalid(
                    at("id"),
                    "must be empty: rsvp assigns the id",
                ));
            }
            if !r.booking_id.is_empty() {
                return Err(Error::invalid(
                    at("booking_id"),
                    "must be empty: rsvp assigns the booking",
                ));
            }
            if !r.user_id.is_empty() && r.user_id != user_id.as_str() {
                return Err(Error::invalid(
                    at("user_id"),
                    "must be empty or the booking's user_id",
                ));
            }
            let fields = NewReservationFields {
                start: required_time(r.start.as_ref(), at("start"))?,
                end: required_time(r.end.as_ref(), at("end"))?,
                status: InitialStatus::from_wire(r.status).field(at("status"))?,
                hold,
                user_id: user_id.to_string(),
                resource_id: r.resource_id,
                note: r.note,
                request_id: None,
                quantity: r.quantity,
                validate_only: req.validate_only,
                override_policy: req.override_policy,
            };
            let part = NewReservation::from_fields(fields).map_err(|e| match e {
                Error::InvalidArgument { field, reason } => Error::InvalidArgument {
                    field: at(field),
                    reason,
                },
                other => other,
            })?;
            parts.push(part);
        }
        let hold = parts.first().map(|p| p.hold).unwrap_or_default();
        Ok(NewBooking {
            user_id,
            parts,
            hold,
            request_id: Some(req.request_id)
                .filter(|id| !id.is_empty())
                .map(RequestId::parse)
                .transpose()
                .field("request_id")?,
            validate_only: req.validate_only,
            override_policy: req.override_policy,
        })
    }
}

/// Why one part of a booking could not be made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartRejection {
    /// The part's position in the request.
    pub index: u32,
    /// Its resource.
    pub resource_id: ResourceId,
    /// What is in the way, when the resource is taken.
    pub conflict: Option<Box<Conflict>>,
    /// Every rule broken, when a policy refuses it.
    pub policy: Vec<Violation>,
}

/// The most bytes a refused booking's message takes.
pub const MAX_REJECTION_MESSAGE: usize = 1024;

impl PartRejection {
    /// Cuts what `parts` list until their status fits in
    /// [`crate::grpc::MAX_STATUS_WIRE_BYTES`] on the wire: reservations in
    /// the way first (from the
    /// part listing the most; each counted in `omitted`), then the
    /// stretches where units are short, then all but the first rule broken
    /// by a part. Every part stays named.
    pub fn fit(parts: &mut [PartRejection]) {
        use prost::Message;
        let size = |parts: &[PartRejection]| {
            crate::grpc::refusal_wire_len(
                &crate::error::booking_message(parts),
                booking_rejection(parts).encoded_len(),
            )
        };
        while size(parts) > crate::grpc::MAX_STATUS_WIRE_BYTES {
            let most = |f: fn(&PartRejection) -> usize| {
                parts
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| f(p) > 0)
                    .max_by_key(|(i, p)| (f(p), *i))
                    .map(|(i, _)| i)
            };
            let listed = |p: &PartRejection| p.conflict.as_ref().map_or(0, |c| c.existing.len());
            let full = |p: &PartRejection| p.conflict.as_ref().map_or(0, |c| c.full.len());
            let rules = |p: &PartRejection| p.policy.len().saturating_sub(1);
            if let Some(i) = most(listed) {
                if let Some(c) = parts[i].conflict.as_mut() {
                    c.existing.pop();
                    c.omitted += 1;
                }
            } else if let Some(i) = most(full) {
                if let Some(c) = parts[i].conflict.as_mut() {
                    c.full.pop();
                }
            } else if let Some(i) = most(rules) {
                parts[i].policy.truncate(1);
            } else {
                return;
            }
        }
    }

    /// The part, its conflict cut to what a rejection lists.
    pub fn taken(index: usize, mut conflict: Conflict) -> Self {
        let cut = conflict.existing.len().saturating_sub(MAX_LISTED_PER_PART);
        conflict.existing.truncate(MAX_LISTED_PER_PART);
        conflict.omitted += cut as u64;
        conflict.full.truncate(MAX_LISTED_PER_PART);
        PartRejection {
            index: u32::try_from(index).unwrap_or(u32::MAX),
            resource_id: conflict.requested.resource_id.clone(),
            conflict: Some(Box::new(conflict)),
            policy: Vec::new(),
        }
    }

    /// The part, refused by the policy.
    pub fn not_allowed(index: usize, resource_id: ResourceId, policy: Vec<Violation>) -> Self {
        PartRejection {
            index: u32::try_from(index).unwrap_or(u32::MAX),
            resource_id,
            conflict: None,
            policy,
        }
    }
}

impl std::fmt::Display for PartRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "part {} ({}): ", self.index, self.resource_id)?;
        match &self.conflict {
            Some(c) => {
                let n = c.existing.len() as u64 + c.omitted;
                if n == 0 {
                    write!(f, "not enough units free")
                } else {
                    write!(
                        f,
                        "taken by {n} live reservation{}",
                        if n == 1 { "" } else { "s" }
                    )
                }
            }
            None => write!(
                f,
                "{}",
                self.policy
                    .iter()
                    .map(|v| v.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        }
    }
}

impl From<&PartRejection> for pb::PartRejection {
    fn from(p: &PartRejection) -> Self {
        pb::PartRejection {
            index: p.index,
            resource_id: p.resource_id.to_string(),
            conflict: p.conflict.as_deref().map(Into::into),
            policy: (!p.policy.is_empty()).then(|| p.policy.as_slice().into()),
        }
    }
}

/// The details of a refused booking.
pub(crate) fn booking_rejection(parts: &[PartRejection]) -> pb::BookingRejection {
    pb::BookingRejection {
        parts: parts.iter().map(Into::into).collect(),
    }
}
