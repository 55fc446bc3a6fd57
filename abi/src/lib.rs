//! # abi — rsvp's API
//!
//! The wire types of `reservation.proto` and the domain types the rest of
//! rsvp works with. A wire message is turned into a domain type once, at the
//! edge, with `TryFrom`; a domain value that exists is valid.
//!
//! # Layout
//! - [`pb`]: generated protobuf types and gRPC client/server stubs, which
//!   encode with [`codec`].
//! - [`types`]: ids, notes, timespans, statuses, reservations, queries, the
//!   change feed, conflicts — each parsed with the field it came from named.
//! - [`time`]: protobuf `Timestamp`/`Duration` ⇄ chrono, to the microsecond.
//! - [`Error`]: the one error type; its `tonic::Status` mapping is in
//!   `grpc.rs`, and [`conflict_from_status`] reads a conflict back out.
//!
//! ```
//! use abi::{NewReservation, pb};
//! use chrono::{DateTime, Utc};
//!
//! let request = NewReservation::builder()
//!     .user_id("alice")
//!     .resource_id("room-42")
//!     .start("2026-12-01T10:00:00Z".parse::<DateTime<Utc>>()?)
//!     .end("2026-12-01T11:00:00Z".parse::<DateTime<Utc>>()?)
//!     .build()?;
//! assert_eq!(request.resource_id.as_str(), "room-42");
//!
//! // The same rules apply to wire requests, and name the field at fault.
//! let err = NewReservation::try_from(pb::ReserveRequest::default()).unwrap_err();
//! assert_eq!(err.to_string(), "reservation: required");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

pub mod codec;
mod error;
mod grpc;
pub mod pb;
pub mod time;
pub mod types;

pub use error::{BoxError, Error, FieldContext, InvalidValue, Result};
pub use grpc::{
    AFTER_CHANGE_ID, MAX_STATUS_WIRE_BYTES, after_change_id, booking_rejection_from_status,
    conflict_from_status, error_reason, invalid_argument, policy_from_status, retry_delay,
    wire_len,
};
pub use types::*;
