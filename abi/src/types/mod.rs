//! Domain types: each value that exists is valid. Wire messages become these
//! once, at the edge, through `TryFrom`; builders check raw values the same way.

mod availability;
pub(crate) mod booking;
mod caller;
mod change;
mod conflict;
mod ids;
mod note;
mod policy;
mod query;
mod reservation;
mod resource;
mod status;
mod timespan;
mod token;

pub use availability::{
    Availability, AvailabilityAnswer, AvailabilityRequest, MAX_AVAILABILITY_BYTES,
    MAX_AVAILABILITY_DAYS, MAX_AVAILABILITY_RESOURCES, ResourceAvailability, Segment, Slot,
    SlotAsk, Usage,
};
pub use booking::{Booking, MAX_LISTED_PER_PART, MAX_PARTS, NewBooking, PartRejection, part_field};
pub use caller::{Caller, Role};
pub use change::{Change, ChangeOp, ListenFilter};
pub use conflict::{Conflict, Requested};
pub use ids::{BookingId, MAX_ID_CHARS, RequestId, ReservationId, ResourceId, TokenId, UserId};
pub use note::{MAX_NOTE_BYTES, Note};
pub use policy::{Ask, AskKind, Policy, Rule, Rules, Schedule, Violation, WeeklyHours};
pub use query::{
    Cursor, DEFAULT_PAGE_SIZE, MAX_PAGE_BYTES, MAX_PAGE_SIZE, Page, ReservationFilter,
    ReservationQuery, ReservationQueryBuilder,
};
pub use reservation::{
    NewReservation, NewReservationBuilder, Reservation, ReservationUpdate,
    ReservationUpdateBuilder, parse_booking_id, parse_id,
};
pub use resource::{
    DEFAULT_RESOURCE_PAGE_SIZE, MAX_CAPACITY, Resource, ResourceListing, ResourcePage,
    ResourcePatch, ResourceSpec, check_labels, resource_page_token,
};
pub use status::{InitialStatus, ReservationStatus, StatusChange};
pub use timespan::{Hold, Timespan, Window};
pub use token::{ApiToken, NewToken, TOKEN_PREFIX, TokenDigest, TokenSecret};
