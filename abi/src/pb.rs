//! Types and gRPC stubs generated from `protos/reservation.proto`.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

tonic::include_proto!("reservation");

/// The encoded `FileDescriptorSet` of `reservation.proto` and its imports,
/// for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/reservation_descriptor.bin"));

/// The `type_url` under which a [`ReservationConflict`] is packed into a
/// `google.protobuf.Any` in a status' details.
pub const RESERVATION_CONFLICT_TYPE_URL: &str =
    "type.googleapis.com/reservation.ReservationConflict";

/// The `type_url` under which a [`PolicyViolation`] is packed into a
/// `google.protobuf.Any` in a status' details.
pub const POLICY_VIOLATION_TYPE_URL: &str = "type.googleapis.com/reservation.PolicyViolation";

/// The `type_url` under which a [`BookingRejection`] is packed into a
/// `google.protobuf.Any` in a status' details.
pub const BOOKING_REJECTION_TYPE_URL: &str = "type.googleapis.com/reservation.BookingRejection";
