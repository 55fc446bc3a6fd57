//! # rsvp-testing — test support, never shipped
//!
//! What rsvp's tests share: throwaway PostgreSQL clusters (one shared, with
//! a database per test; or private ones that fault tests crash and
//! restart), and the no-double-booking invariant checker that every
//! concurrency and fault test ends with. Only tests and benchmarks depend
//! on it; the library does not.
//!
//! # Layout
//! - [`TestCluster`] (`cluster.rs`): `initdb` + `postgres` on a free
//!   loopback port, stopped and removed on drop.
//! - [`TestDb`], [`TestServer`] (`postgres.rs`): a database per test,
//!   cloned from a migrated template.
//! - [`Formation`] (`formation.rs`): a pg_auto_failover monitor, primary
//!   and synchronous standby on loopback, for failover tests.
//! - [`TestCerts`] (`certs.rs`): an authority and certificates it signed,
//!   for TLS tests.
//! - `invariant.rs`: the no-double-booking check over any store.

#![warn(missing_docs)]

mod certs;
mod cluster;
mod formation;
mod invariant;
mod postgres;

pub use certs::{CertFiles, TestCerts};
pub use cluster::TestCluster;
pub use formation::{Formation, MonitorTimings};
pub use invariant::{
    DoubleBooking, Overbooking, assert_no_double_booking, assert_within_capacity,
    find_double_bookings, find_overbookings,
};
pub use postgres::{TestDb, TestServer};
