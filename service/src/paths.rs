//! Method paths of clients written from the original design.
//!
//! The design this service implements first gave its API as a proto with no
//! `package` line and lower-case methods (`rpc reserve(...)`, `confirm`,
//! `update`, `cancel`, `get`, `Query`). A client generated from it calls
//! `/ReservationService/reserve`; one that added `package reservation;`
//! calls `/reservation.ReservationService/reserve`. Their messages are
//! wire-compatible with ours (same field and enum numbers), so this layer
//! maps those paths onto the service's own before routing: the same
//! handlers answer both.

use std::task::{Context, Poll};

use tonic::codegen::http::{self, uri::PathAndQuery};
use tower::{Layer, Service};

/// Rewrites the design's method paths to the service's.
#[derive(Clone, Copy, Debug, Default)]
pub struct DesignPaths;

impl<S> Layer<S> for DesignPaths {
    type Service = DesignPathsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DesignPathsService { inner }
    }
}

/// See [`DesignPaths`].
#[derive(Clone, Debug)]
pub struct DesignPathsService<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for DesignPathsService<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        if let Some(path) = canonical(request.uri().path()) {
            let mut parts = request.uri().clone().into_parts();
            parts.path_and_query = Some(PathAndQuery::from_static(path));
            if let Ok(uri) = http::Uri::from_parts(parts) {
                *request.uri_mut() = uri;
            }
        }
        self.inner.call(request)
    }
}

/// The service's own path for one of the design's, if `path` is one.
pub(crate) fn canonical(path: &str) -> Option<&'static str> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    if service != "ReservationService" && service != "reservation.ReservationService" {
        return None;
    }
    let canonical = match method {
        "reserve" | "Reserve" => "/reservation.ReservationService/Reserve",
        "confirm" | "Confirm" => "/reservation.ReservationService/Confirm",
        "update" | "Update" => "/reservation.ReservationService/Update",
        "cancel" | "Cancel" => "/reservation.ReservationService/Cancel",
        "get" | "Get" => "/reservation.ReservationService/Get",
        "query" | "Query" => "/reservation.ReservationService/Query",
        "filter" | "Filter" => "/reservation.ReservationService/Filter",
        "listen" | "Listen" => "/reservation.ReservationService/Listen",
        _ => return None,
    };
    (canonical != path).then_some(canonical)
}

#[cfg(test)]
mod tests {
    use super::canonical;

    #[test]
    fn the_designs_paths_map_to_the_services() {
        for (from, to) in [
            (
                "/ReservationService/reserve",
                Some("/reservation.ReservationService/Reserve"),
            ),
            (
                "/ReservationService/Query",
                Some("/reservation.ReservationService/Query"),
            ),
            (
                "/reservation.ReservationService/cancel",
                Some("/reservation.ReservationService/Cancel"),
            ),
            ("/reservation.ReservationService/Reserve", None),
            ("/ReservationService/drop", None),
            ("/grpc.health.v1.Health/Check", None),
            ("", None),
        ] {
            assert_eq!(canonical(from), to, "{from}");
        }
    }
}
