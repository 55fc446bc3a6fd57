//! Test support, behind the `testing` feature: throwaway PostgreSQL
//! clusters (one shared, with a database per test; or private ones that
//! fault tests crash and restart), and the no-double-booking invariant
//! checker that every concurrency and fault test ends with.

mod cluster;
mod invariant;
mod postgres;

pub use cluster::TestCluster;
pub use invariant::{DoubleBooking, assert_no_double_booking, find_double_bookings};
pub use postgres::{TestDb, TestServer};
