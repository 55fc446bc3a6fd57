//! The stores behind [`crate::Rsvp`].

pub mod postgres;
