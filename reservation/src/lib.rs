//! # reservation — rsvp's reservation store
//!
//! Reserves a resource for a period of time and never holds one resource
//! twice for overlapping time, under any load, retry or failure. Programs
//! embed it directly; `rsvp-server` serves it over gRPC.
//!
//! # Layout
//! - [`Rsvp`] (`rsvp.rs`): the trait every store implements.
//! - [`Access`] (`access.rs`): who may do what, decided once, over any store.
//! - `engine/`: every rule, once — what a reserve or an update does, what
//!   blocks, how holds expire, pages, streams — over a store's dialect.
//! - `dialect.rs`: the seam below the engine; a store supplies its SQL and
//!   its locking there, nothing more. `statement.rs`: the statements the
//!   engine builds for every store.
//! - [`PgStore`] (`store/postgres`): PostgreSQL, with an exclusion constraint
//!   as the last line of defence and a trigger-fed change feed.
//! - [`SqliteStore`] (`store/sqlite`): the embedded default, one file, the
//!   same behaviour; [`connect`] opens either by URL.
//! - `feed.rs`: the change feed hub, in-order delivery to many listeners.
//! - `row.rs`: rows as every store decodes them.
//! - `db_error.rs`: driver errors classified into [`abi::Error`], and retries.
//! - [`Clock`], [`StoreOptions`]: time and settings.

#![warn(missing_docs)]

mod access;
mod clock;
mod db_error;
mod dialect;
mod engine;
mod feed;
mod options;
mod probe;
mod row;
mod rsvp;
mod statement;
mod store;

pub use abi;
pub use access::Access;
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
