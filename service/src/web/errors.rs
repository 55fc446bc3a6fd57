//! Failures as HTTP clients see them: the HTTP status of the standard
//! gRPC mapping (a reservation conflict is 409), and a JSON body that is
//! the `google.rpc.Status` of the call: code, message, and the same
//! details a gRPC client reads.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use prost_reflect::{DescriptorPool, DynamicMessage};
use tonic::{
    Code, Status,
    codegen::http::{HeaderValue, StatusCode, header},
};
use tonic_types::StatusExt;

use super::transcode::to_json;

/// The HTTP status for a call that failed with `status`.
pub fn http_status(status: &Status) -> StatusCode {
    let reason = status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone());
    let conflict = match reason.as_deref() {
        Some("RESERVATION_CONFLICT") => true,
        // A booking refused for what is in the way of a part; one refused
        // by policy alone is a 400, as a Reserve would be.
        Some("BOOKING_REJECTED") => abi::booking_rejection_from_status(status)
            .is_some_and(|rejection| rejection.parts.iter().any(|p| p.conflict.is_some())),
        _ => false,
    };
    match status.code() {
        Code::FailedPrecondition if conflict => StatusCode::CONFLICT,
        code => from_code(code),
    }
}

/// google.rpc.Code's HTTP mapping.
fn from_code(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `status` as `google.rpc.Status` JSON, details included.
pub fn status_json(pool: &DescriptorPool, status: &Status) -> serde_json::Value {
    let plain = || {
        serde_json::json!({
            "code": status.code() as i32,
            "message": status.message(),
        })
    };
    if status.details().is_empty() {
        return plain();
    }
    let Some(descriptor) = pool.get_message_by_name("google.rpc.Status") else {
        return plain();
    };
    match DynamicMessage::decode(descriptor, status.details()) {
        Ok(rpc) => to_json(&rpc).unwrap_or_else(|_| plain()),
        Err(_) => plain(),
    }
}

/// The response for a call that failed with `status`.
pub fn error_response(pool: &DescriptorPool, status: &Status) -> Response {
    error_response_as(pool, status, http_status(status))
}

/// The response for `status`, with the HTTP status `http`.
pub fn error_response_as(pool: &DescriptorPool, status: &Status, http: StatusCode) -> Response {
    let mut response = (http, axum::Json(status_json(pool, status))).into_response();
    let headers = response.headers_mut();
    if let Some(delay) = status
        .get_error_details()
        .retry_info()
        .and_then(|info| info.retry_delay)
    {
        let seconds = delay.max(Duration::from_secs(1)).as_secs_f64().ceil() as u64;
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    if status.code() == Code::Unauthenticated {
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"rsvp\""),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conflict_is_409_other_failed_preconditions_400() {
        let failed = |reason: &str| {
            Status::with_error_details(
                Code::FailedPrecondition,
                "refused",
                tonic_types::ErrorDetails::with_error_info(
                    reason,
                    "rsvp",
                    std::collections::HashMap::<String, String>::new(),
                ),
            )
        };
        assert_eq!(
            http_status(&failed("RESERVATION_CONFLICT")),
            StatusCode::CONFLICT
        );
        // A booking rejection without its details is not known to conflict.
        assert_eq!(
            http_status(&failed("BOOKING_REJECTED")),
            StatusCode::BAD_REQUEST
        );
        let policy: Status = abi::Error::Policy(vec![]).into();
        assert_eq!(http_status(&policy), StatusCode::BAD_REQUEST);
        assert_eq!(
            http_status(&Status::unauthenticated("x")),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            http_status(&Status::resource_exhausted("x")),
            StatusCode::TOO_MANY_REQUESTS
        );
    }
}
