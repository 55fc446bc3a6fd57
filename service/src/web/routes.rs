//! The HTTP routes of the API: one table, read both to serve requests and
//! to write the OpenAPI document, so the two cannot differ.

use tonic::codegen::http::Method;

/// How a route's request message is filled, besides its path parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// The JSON body is the request message (an empty body is `{}`).
    Body,
    /// Query parameters name the request message's fields.
    Query,
}

/// How a route answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// One JSON object: the response message.
    Json,
    /// JSON lines (`application/x-ndjson`), each `{"result": message}`, or
    /// a last `{"error": status}` when the stream fails after it began.
    JsonLines,
    /// Server-Sent Events: each message an event whose id is its change id.
    Events,
}

/// One route: an HTTP method and path template onto an RPC.
#[derive(Clone, Debug)]
pub struct Route {
    pub method: Method,
    /// The path template: `{name}` is one segment (percent-decoded), and a
    /// segment may end in a custom verb, as in `{id}:confirm`.
    pub path: &'static str,
    /// The RPC, as `Service/Method` within the `reservation` package.
    pub rpc: &'static str,
    /// The field the path parameter fills (a dotted path), if any.
    pub param: Option<&'static str>,
    pub input: Input,
    pub output: Output,
    /// The OpenAPI operation summary.
    pub summary: &'static str,
}

const fn route(
    method: Method,
    path: &'static str,
    rpc: &'static str,
    param: Option<&'static str>,
    input: Input,
    summary: &'static str,
) -> Route {
    Route {
        method,
        path,
        rpc,
        param,
        input,
        output: Output::Json,
        summary,
    }
}

/// Every route of the HTTP/JSON API.
pub fn all() -> Vec<Route> {
    use Input::{Body, Query};
    let id = Some("id");
    vec![
        route(
            Method::POST,
            "/v1/reservations",
            "ReservationService/Reserve",
            None,
            Body,
            "Reserve a resource for a period",
        ),
        route(
            Method::GET,
            "/v1/reservations",
            "ReservationService/Filter",
            None,
            Query,
            "A page of reservations",
        ),
        Route {
            output: Output::JsonLines,
            ..route(
                Method::POST,
                "/v1/reservations:query",
                "ReservationService/Query",
                None,
                Body,
                "Every reservation that matches, as JSON lines",
            )
        },
        route(
            Method::GET,
            "/v1/reservations/{id}",
            "ReservationService/Get",
            id,
            Query,
            "One reservation",
        ),
        route(
            Method::PATCH,
            "/v1/reservations/{id}",
            "ReservationService/Update",
            id,
            Body,
            "Change a reservation",
        ),
        route(
            Method::POST,
            "/v1/reservations/{id}:confirm",
            "ReservationService/Confirm",
            id,
            Body,
            "Confirm a pending reservation",
        ),
        route(
            Method::POST,
            "/v1/reservations/{id}:cancel",
            "ReservationService/Cancel",
            id,
            Body,
            "Cancel a reservation",
        ),
        route(
            Method::POST,
            "/v1/reservations/{id}:checkIn",
            "ReservationService/CheckIn",
            id,
            Body,
            "Check in a confirmed reservation",
        ),
        route(
            Method::POST,
            "/v1/reservations/{id}:checkOut",
            "ReservationService/CheckOut",
            id,
            Body,
            "Check out a checked-in reservation",
        ),
        route(
            Method::POST,
            "/v1/availability",
            "ReservationService/Availability",
            None,
            Body,
            "What can be booked",
        ),
        route(
            Method::POST,
            "/v1/bookings",
            "ReservationService/Book",
            None,
            Body,
            "Book several parts, all or nothing",
        ),
        route(
            Method::GET,
            "/v1/bookings/{id}",
            "ReservationService/GetBooking",
            id,
            Query,
            "One booking",
        ),
        route(
            Method::POST,
            "/v1/bookings/{id}:confirm",
            "ReservationService/ConfirmBooking",
            id,
            Body,
            "Confirm every pending part of a booking",
        ),
        route(
            Method::POST,
            "/v1/bookings/{id}:cancel",
            "ReservationService/CancelBooking",
            id,
            Body,
            "Cancel a booking",
        ),
        Route {
            output: Output::Events,
            ..route(
                Method::GET,
                "/v1/changes",
                "ReservationService/Listen",
                None,
                Query,
                "Every change, live, as Server-Sent Events",
            )
        },
        route(
            Method::GET,
            "/v1/whoami",
            "ReservationService/WhoAmI",
            None,
            Query,
            "Who the credentials name",
        ),
        route(
            Method::POST,
            "/v1/resources",
            "ResourceService/CreateResource",
            None,
            Body,
            "Register a resource",
        ),
        route(
            Method::GET,
            "/v1/resources",
            "ResourceService/ListResources",
            None,
            Query,
            "A page of resources",
        ),
        route(
            Method::GET,
            "/v1/resources/{id}",
            "ResourceService/GetResource",
            id,
            Query,
            "One resource",
        ),
        route(
            Method::PATCH,
            "/v1/resources/{id}",
            "ResourceService/UpdateResource",
            Some("resource.id"),
            Body,
            "Change a resource",
        ),
        route(
            Method::DELETE,
            "/v1/resources/{id}",
            "ResourceService/DeleteResource",
            id,
            Query,
            "Delete a resource",
        ),
    ]
}

/// What a path matched: the route (its index) and its percent-decoded
/// parameter.
pub enum Matched {
    Found(usize, Option<String>),
    /// The path is known, not with this method: the methods it has.
    MethodNotAllowed(Vec<Method>),
    NotFound,
}

/// The route for `method` and `path` (as sent, percent-encoded).
pub fn find(routes: &[Route], method: &Method, path: &str) -> Matched {
    let mut allowed = Vec::new();
    // Templates with a custom verb first: `{id}:confirm` before `{id}`.
    let with_verb = |r: &Route| r.path.contains("}:");
    let ordered = routes
        .iter()
        .enumerate()
        .filter(|(_, r)| with_verb(r))
        .chain(routes.iter().enumerate().filter(|(_, r)| !with_verb(r)));
    for (index, route) in ordered {
        let Some(param) = path_matches(route.path, path) else {
            continue;
        };
        if route.method == *method {
            return Matched::Found(index, param);
        }
        if !allowed.contains(&route.method) {
            allowed.push(route.method.clone());
        }
    }
    if allowed.is_empty() {
        Matched::NotFound
    } else {
        Matched::MethodNotAllowed(allowed)
    }
}

/// `Some(parameter)` when `path` fits `template`.
fn path_matches(template: &str, path: &str) -> Option<Option<String>> {
    let mut param = None;
    let mut wanted = template.split('/');
    let mut given = path.split('/');
    loop {
        match (wanted.next(), given.next()) {
            (None, None) => return Some(param),
            (Some(want), Some(got)) => match want.split_once('{') {
                None if want == got => {}
                None => return None,
                Some((prefix, rest)) => {
                    let (_, suffix) = rest.split_once('}')?;
                    let value = got.strip_prefix(prefix)?.strip_suffix(suffix)?;
                    if value.is_empty() {
                        return None;
                    }
                    let decoded = percent_encoding::percent_decode_str(value)
                        .decode_utf8()
                        .ok()?
                        .into_owned();
                    param = Some(decoded);
                }
            },
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(method: Method, path: &str) -> Option<(&'static str, Option<String>)> {
        let routes = all();
        match find(&routes, &method, path) {
            Matched::Found(index, param) => Some((routes[index].rpc, param)),
            _ => None,
        }
    }

    #[test]
    fn custom_verbs_and_parameters() {
        assert_eq!(
            found(Method::POST, "/v1/reservations/abc:confirm"),
            Some(("ReservationService/Confirm", Some("abc".into())))
        );
        assert_eq!(
            found(Method::GET, "/v1/reservations/abc"),
            Some(("ReservationService/Get", Some("abc".into())))
        );
        assert_eq!(
            found(Method::POST, "/v1/reservations:query"),
            Some(("ReservationService/Query", None))
        );
        // A resource id may hold a colon or a slash, percent-encoded.
        assert_eq!(
            found(Method::GET, "/v1/resources/room%2F1:a"),
            Some(("ResourceService/GetResource", Some("room/1:a".into())))
        );
        assert!(found(Method::GET, "/v1/reservations/abc/def").is_none());
        assert!(found(Method::GET, "/v1/nothing").is_none());
    }

    #[test]
    fn a_known_path_with_another_method_is_not_allowed() {
        let routes = all();
        match find(&routes, &Method::PUT, "/v1/reservations/abc") {
            Matched::MethodNotAllowed(methods) => {
                assert!(methods.contains(&Method::GET));
                assert!(methods.contains(&Method::PATCH));
            }
            _ => panic!("expected 405"),
        }
    }
}
