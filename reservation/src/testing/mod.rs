//! Test support, behind the `testing` feature: a throwaway PostgreSQL
//! cluster with one database per test, and the no-double-booking invariant
//! checker that every concurrency and fault test ends with.

mod invariant;
mod postgres;

pub use invariant::{DoubleBooking, assert_no_double_booking, find_double_bookings};
pub use postgres::{TestDb, TestServer};
