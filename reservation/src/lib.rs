//! # reservation — rsvp's reservation store
//!
//! Reserves a resource for a period of time and never holds one resource
//! twice for overlapping time, under any load, retry or failure. Programs
//! embed it directly; `rsvp-server` serves it over gRPC.
//!
//! # Layout
//! - [`Rsvp`] (`rsvp.rs`): the trait every store implements.
//! - [`PgStore`] (`store/postgres`): PostgreSQL, with an exclusion constraint
//!   as the last line of defence and a trigger-fed change feed.
//! - [`SqliteStore`] (`store/sqlite`): the embedded default, one file, the
//!   same behaviour; [`connect`] opens either by URL.
//! - `plan.rs`: how an update changes a reservation, for every store.
//! - `feed.rs`: the change feed hub, in-order delivery to many listeners.
//! - `stream.rs`: query streams read in keyset batches.
//! - `db_error.rs`: driver errors classified into [`abi::Error`], and retries.
//! - [`Clock`], [`StoreOptions`]: time and settings.
//! - `testing` (feature `testing`): throwaway PostgreSQL, per-test
//!   databases, and the no-double-booking invariant checker.

#![warn(missing_docs)]

mod clock;
mod db_error;
mod feed;
mod options;
mod plan;
mod row;
mod rsvp;
mod store;
mod stream;
#[cfg(feature = "testing")]
pub mod testing;

pub use abi;
pub use clock::{Clock, ManualClock, SystemClock};
pub use options::StoreOptions;
pub use rsvp::{ChangeStream, ReservationStream, Rsvp, SweepReport};
pub use store::{
    connect,
    postgres::{self, PgStore},
    sqlite::{self, SqliteStore},
};

/// The README's Rust examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
