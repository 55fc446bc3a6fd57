//! The web: HTTP/JSON on the gRPC port.
//!
//! - [`routes`]: the table of HTTP routes onto RPCs (served, and written
//!   into the OpenAPI document).
//! - [`transcode`]: JSON to and from messages by the proto's descriptors,
//!   and calls made in process through the gRPC services themselves, so an
//!   HTTP call is authenticated, limited, checked, logged and counted as a
//!   gRPC call is.
//! - [`errors`]: a failed call as an HTTP status and a `google.rpc.Status`
//!   JSON body.
//! - `openapi.rs`: the OpenAPI 3 document, generated from the same
//!   descriptors and routes at start-up.
//! - `events.rs`: `GET /v1/changes` as Server-Sent Events.
//! - `board.rs`: the booking board at `/`, compiled into the binary.

mod board;
mod errors;
mod events;
mod openapi;
pub(crate) mod routes;
pub(crate) mod transcode;

use std::sync::Arc;

use anyhow::Context;
use axum::{
    body::Body,
    extract::{Request, State},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use futures::StreamExt;
use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MessageDescriptor, MethodDescriptor};
use tonic::{
    Code, Status,
    codegen::http::{self, HeaderMap, HeaderValue, StatusCode, header},
};

use self::{
    errors::{error_response, error_response_as, status_json},
    routes::{Input, Matched, Output, Route},
    transcode::{Fallback, Forwarded, GrpcService, from_json, to_json},
};
use abi::invalid_argument as invalid;
use tower::util::BoxCloneSyncService;

/// The HTTP API's state: the descriptors, the routes resolved to their
/// methods, and the gRPC services to call.
pub struct Web {
    /// Without authentication: requests must name a loopback host.
    open: bool,
    pool: DescriptorPool,
    grpc: GrpcService,
    routes: Vec<Route>,
    methods: Vec<MethodDescriptor>,
    openapi: Bytes,
    /// The largest request message the gRPC services decode.
    message_limit: usize,
    whoami: MethodDescriptor,
}

impl Web {
    /// The API over `grpc`, which decodes request messages of at most
    /// `message_limit` bytes; JSON bodies may be four times that.
    /// `open`: the server authenticates no one, so requests must name a
    /// loopback host (a page of another site that a DNS name pointed at
    /// 127.0.0.1 gets nothing).
    ///
    /// # Errors
    /// When a route names an RPC the proto does not have, or an RPC has no
    /// route.
    pub fn new(grpc: GrpcService, message_limit: usize, open: bool) -> anyhow::Result<Self> {
        let pool = transcode::descriptors().context("loading the API's descriptors")?;
        let routes = routes::all();
        let methods = routes
            .iter()
            .map(|route| method(&pool, route.rpc))
            .collect::<anyhow::Result<Vec<_>>>()?;
        for service in [
            "reservation.ReservationService",
            "reservation.ResourceService",
        ] {
            let service = pool
                .get_service_by_name(service)
                .with_context(|| format!("no {service} in the proto"))?;
            for rpc in service.methods() {
                anyhow::ensure!(
                    methods.iter().any(|m| m.full_name() == rpc.full_name()),
                    "{} has no HTTP route",
                    rpc.full_name()
                );
            }
        }
        let whoami = method(&pool, "ReservationService/WhoAmI")?;
        let openapi = serde_json::to_vec_pretty(&openapi::document(&pool, &routes, &methods))
            .context("writing the OpenAPI document")?;
        Ok(Web {
            open,
            pool,
            grpc,
            routes,
            methods,
            openapi: Bytes::from(openapi),
            message_limit,
            whoami,
        })
    }

    /// The routes under `/v1/`, answering everything else with `fallback`
    /// (the gRPC services).
    pub fn router(self, fallback: Fallback) -> axum::Router {
        use axum::routing::{any, get};
        use tower::ServiceExt;
        let pool = self.pool.clone();
        axum::Router::new()
            .route("/", get(|| board::page(board::INDEX)))
            .route("/board.js", get(|| board::page(board::SCRIPT)))
            .route("/board.css", get(|| board::page(board::STYLE)))
            .route("/v1/{*path}", any(serve))
            .with_state(Arc::new(self))
            .fallback(move |request: Request| async move {
                let grpc = request
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("application/grpc"));
                if !grpc {
                    let path = request.uri().path().to_string();
                    return error_response_as(
                        &pool,
                        &Status::not_found(format!("nothing at {path}")),
                        StatusCode::NOT_FOUND,
                    );
                }
                match fallback.oneshot(request).await {
                    Ok(answer) => answer.into_response(),
                    Err(never) => match never {},
                }
            })
    }
}

/// Lets pages of `origins` (`*`: any) call the API from a browser: the
/// HTTP/JSON routes, the change stream and gRPC-Web. `None` when no
/// origin is named.
///
/// # Errors
/// When an origin is not a valid header value.
pub fn cors(origins: &[String]) -> anyhow::Result<Option<tower_http::cors::CorsLayer>> {
    use tonic::codegen::http::{HeaderName, Method};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return Ok(None);
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .map(|o| {
                    // What a browser sends: scheme://host[:port], nothing
                    // more; anything else would never match.
                    let origin = o.trim_end_matches('/');
                    let uri = origin.parse::<http::Uri>().ok();
                    let whole = uri.as_ref().is_some_and(|u| {
                        matches!(u.scheme_str(), Some("http" | "https"))
                            && u.authority().is_some()
                            && u.path_and_query()
                                .is_none_or(|p| matches!(p.as_str(), "" | "/"))
                    });
                    anyhow::ensure!(
                        whole,
                        "{o:?} is not an origin: give it as a browser sends it, \
                         https://shop.example or http://localhost:8080"
                    );
                    HeaderValue::from_str(origin).with_context(|| format!("{o:?} is not an origin"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?,
        )
    };
    let headers = |names: &[&'static str]| {
        names
            .iter()
            .map(|n| HeaderName::from_static(n))
            .collect::<Vec<_>>()
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
            .allow_headers(headers(&[
                "authorization",
                "content-type",
                "last-event-id",
                "x-grpc-web",
                "x-user-agent",
                "grpc-timeout",
            ]))
            .expose_headers(headers(&[
                "grpc-status",
                "grpc-message",
                "grpc-status-details-bin",
                "retry-after",
                "www-authenticate",
                abi::AFTER_CHANGE_ID,
            ]))
            .max_age(std::time::Duration::from_secs(3600)),
    ))
}

fn method(pool: &DescriptorPool, rpc: &str) -> anyhow::Result<MethodDescriptor> {
    let (service, name) = rpc
        .split_once('/')
        .with_context(|| format!("route names {rpc}"))?;
    pool.get_service_by_name(&format!("reservation.{service}"))
        .and_then(|s| s.methods().find(|m| m.name() == name))
        .with_context(|| format!("no RPC {rpc} in the proto"))
}

async fn serve(State(web): State<Arc<Web>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    if web.open && !loopback_host(&parts.headers, &parts.uri) {
        return error_response_as(
            &web.pool,
            &Status::permission_denied(OPEN_SERVER),
            StatusCode::FORBIDDEN,
        );
    }
    if path == "/v1/openapi.json" && parts.method == tonic::codegen::http::Method::GET {
        return (
            [(header::CONTENT_TYPE, "application/json")],
            web.openapi.clone(),
        )
            .into_response();
    }
    let (route, method, param) = match routes::find(&web.routes, &parts.method, path) {
        Matched::Found(index, param) => (&web.routes[index], &web.methods[index], param),
        Matched::MethodNotAllowed(allowed) => {
            let mut response = error_response_as(
                &web.pool,
                &Status::unimplemented(format!("{} is not served on {path}", parts.method)),
                StatusCode::METHOD_NOT_ALLOWED,
            );
            let allow = allowed
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            if let Ok(allow) = HeaderValue::from_str(&allow) {
                response.headers_mut().insert(header::ALLOW, allow);
            }
            return response;
        }
        Matched::NotFound => {
            return error_response_as(
                &web.pool,
                &Status::not_found(format!("no route {path}; see /v1/openapi.json")),
                StatusCode::NOT_FOUND,
            );
        }
    };
    let from = Forwarded::from_request(&parts.headers, parts.extensions);
    let read = read_message(
        &web,
        route,
        method,
        param,
        &parts.headers,
        parts.uri.query(),
        body,
    );
    let message = match read.await {
        Ok(message) => message,
        Err(refusal) => return unreadable(&web, from, refusal).await,
    };
    match route.output {
        Output::Json => match transcode::unary(&web.grpc, method, message, from).await {
            Ok(answer) => match to_json(&answer) {
                Ok(json) => axum::Json(json).into_response(),
                Err(status) => error_response(&web.pool, &status),
            },
            Err(status) => error_response(&web.pool, &status),
        },
        Output::JsonLines => json_lines(&web, method, message, from).await,
        Output::Events => events::serve(&web, method, message, from).await,
    }
}

/// The request message of `route`'s `method` from its body or query
/// parameters and the path's `param`; else the refusal saying why not.
async fn read_message(
    web: &Web,
    route: &Route,
    method: &MethodDescriptor,
    param: Option<String>,
    headers: &HeaderMap,
    query: Option<&str>,
    body: Body,
) -> Result<DynamicMessage, Response> {
    let input = match route.input {
        Input::Body => read_json(headers, body, web.message_limit.saturating_mul(4))
            .await
            .map_err(|failed| failed.into_response(&web.pool))?,
        Input::Query => query_json(&method.input(), query.unwrap_or_default())
            .map_err(|status| error_response(&web.pool, &status))?,
    };
    let mut input =
        with_param(input, route, param).map_err(|status| error_response(&web.pool, &status))?;
    if route.output == Output::Events
        && let Some(last) = headers.get("last-event-id")
    {
        // A browser reconnecting: resume after the last change it saw.
        let id = last
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .ok_or_else(|| {
                error_response(&web.pool, &invalid("Last-Event-ID", "must be a change id"))
            })?;
        input["afterChangeId"] = serde_json::Value::String(id.to_string());
    }
    let message =
        from_json(method.input(), input).map_err(|status| error_response(&web.pool, &status))?;
    // JSON is larger than the message it carries; the message itself must
    // fit what the services decode, as a gRPC client's must.
    if prost::Message::encoded_len(&message) > web.message_limit {
        return Err(BodyError::MessageTooLarge(web.message_limit).into_response(&web.pool));
    }
    Ok(message)
}

/// A request that could not be read is answered as any call of its
/// caller would be first: UNAUTHENTICATED without credentials that hold,
/// RESOURCE_EXHAUSTED over the caller's rate (it counts as a read, by a
/// `WhoAmI` made in process); only then with `refusal`, why it could not be
/// read. So no one unknown learns how requests are checked, or spends the
/// server's work without limit.
async fn unreadable(web: &Web, mut from: Forwarded, refusal: Response) -> Response {
    // No client made this call: it is neither logged nor counted.
    from.extensions.insert(crate::telemetry::Unrecorded);
    let message = DynamicMessage::new(web.whoami.input());
    match transcode::unary(&web.grpc, &web.whoami, message, from).await {
        Ok(_) => refusal,
        Err(status) => error_response(&web.pool, &status),
    }
}

/// Why a server that authenticates no one refuses a call naming another
/// host.
const OPEN_SERVER: &str =
    "this server authenticates no one: call it as localhost or a loopback address";

/// `grpc` as the gRPC and gRPC-Web clients reach it. On a server that
/// authenticates no one (`open`), a call that names a host other than a
/// loopback one is PERMISSION_DENIED, as the HTTP routes answer it 403: a
/// page of another site whose DNS name was pointed at 127.0.0.1 is
/// same-origin to the browser and could otherwise call gRPC-Web as an
/// admin. Health checks answer anyone.
pub fn loopback_only(grpc: GrpcService, open: bool) -> GrpcService {
    use tower::ServiceExt;
    if !open {
        return grpc;
    }
    BoxCloneSyncService::new(tower::service_fn(
        move |request: http::Request<tonic::body::Body>| {
            let grpc = grpc.clone();
            async move {
                let health = request.uri().path().starts_with("/grpc.health.");
                if !health && !loopback_host(request.headers(), request.uri()) {
                    return Ok(Status::permission_denied(OPEN_SERVER).into_http());
                }
                grpc.oneshot(request).await
            }
        },
    ))
}

/// Whether the request names a loopback host: its `Host` header (HTTP/1),
/// else the authority of its URI (HTTP/2), else none at all, as HTTP/1.0
/// may.
fn loopback_host(headers: &HeaderMap, uri: &http::Uri) -> bool {
    let authority = match headers.get(header::HOST) {
        Some(host) => match host.to_str().ok().and_then(|h| h.parse().ok()) {
            Some(authority) => authority,
            None => return false,
        },
        None => match uri.authority() {
            Some(authority) => authority.clone(),
            None => return true,
        },
    };
    // The host alone: no user information, no port; an IPv6 address
    // without its brackets.
    let name = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Why a request body was refused.
enum BodyError {
    NotJson,
    TooLarge(usize),
    MessageTooLarge(usize),
    Unreadable(String),
    Invalid(Status),
}

impl BodyError {
    fn into_response(self, pool: &DescriptorPool) -> Response {
        match self {
            BodyError::NotJson => error_response_as(
                pool,
                &invalid("Content-Type", "must be application/json"),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            BodyError::TooLarge(limit) => error_response_as(
                pool,
                &invalid("body", &format!("must be at most {limit} bytes")),
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            BodyError::MessageTooLarge(limit) => error_response_as(
                pool,
                &invalid(
                    "body",
                    &format!("the request must encode to at most {limit} bytes of protobuf"),
                ),
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            BodyError::Unreadable(e) => error_response_as(
                pool,
                &Status::new(Code::Cancelled, format!("reading the body: {e}")),
                StatusCode::BAD_REQUEST,
            ),
            BodyError::Invalid(status) => error_response(pool, &status),
        }
    }
}

/// The body as a JSON object; an empty body with no `Content-Type` is
/// `{}`. A body must say it is JSON: a form another site's page posts
/// (which a browser sends with no preflight), even one with no fields, is
/// refused.
async fn read_json(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<serde_json::Value, BodyError> {
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
        {
            BodyError::TooLarge(limit)
        } else {
            BodyError::Unreadable(e.to_string())
        }
    })?;
    let content_type = headers.get(header::CONTENT_TYPE);
    let json = content_type
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            let v = v.trim();
            v.eq_ignore_ascii_case("application/json")
                || (v.starts_with("application/") && v.ends_with("+json"))
        });
    // A form with no fields is an empty body too, and says it is a form.
    if !json && content_type.is_some() {
        return Err(BodyError::NotJson);
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Value::Object(Default::default()));
    }
    if !json {
        return Err(BodyError::NotJson);
    }
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(value @ serde_json::Value::Object(_)) => Ok(value),
        Ok(_) => Err(BodyError::Invalid(invalid("body", "must be a JSON object"))),
        Err(e) => Err(BodyError::Invalid(invalid(
            "body",
            &format!("not valid JSON: {e}"),
        ))),
    }
}

/// Query parameters as the JSON of a `descriptor` message: each names a
/// field (either name form); a repeated field may be given many times; a
/// map entry is `field.key=value`.
fn query_json(descriptor: &MessageDescriptor, query: &str) -> Result<serde_json::Value, Status> {
    use serde_json::Value;
    let mut object = serde_json::Map::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let (name, entry) = match key.split_once('.') {
            Some((name, entry)) => (name, Some(entry)),
            None => (key.as_ref(), None),
        };
        let field = descriptor
            .get_field_by_json_name(name)
            .or_else(|| descriptor.get_field_by_name(name))
            .ok_or_else(|| invalid(&key, "no such query parameter"))?;
        let json_name = field.json_name().to_string();
        if field.is_map() {
            let Some(entry) = entry else {
                return Err(invalid(&key, "give map entries as name.key=value"));
            };
            let value_kind = match field.kind() {
                Kind::Message(entry) => entry.map_entry_value_field().kind(),
                kind => kind,
            };
            let map = object
                .entry(json_name)
                .or_insert_with(|| Value::Object(Default::default()));
            if let Value::Object(map) = map {
                map.insert(entry.to_string(), scalar(&key, &value_kind, &value)?);
            }
            continue;
        }
        if entry.is_some() {
            return Err(invalid(&key, "no such query parameter"));
        }
        let value = scalar(&key, &field.kind(), &value)?;
        if field.is_list() {
            let list = object
                .entry(json_name)
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(list) = list {
                list.push(value);
            }
        } else if object.insert(json_name, value).is_some() {
            return Err(invalid(&key, "given more than once"));
        }
    }
    Ok(Value::Object(object))
}

/// One query parameter's value as JSON for a field of `kind`: proto3 JSON
/// takes numbers, enums and well-known types as strings; booleans are
/// `true` or `false`.
fn scalar(key: &str, kind: &Kind, value: &str) -> Result<serde_json::Value, Status> {
    match kind {
        Kind::Bool => match value {
            "true" => Ok(serde_json::Value::Bool(true)),
            "false" => Ok(serde_json::Value::Bool(false)),
            _ => Err(invalid(key, "must be true or false")),
        },
        Kind::Message(message) if !message.full_name().starts_with("google.protobuf.") => {
            Err(invalid(key, "cannot be given as a query parameter"))
        }
        _ => Ok(serde_json::Value::String(value.to_string())),
    }
}

/// `input` with the path parameter at the route's field; a body naming
/// another value there is refused.
fn with_param(
    mut input: serde_json::Value,
    route: &Route,
    param: Option<String>,
) -> Result<serde_json::Value, Status> {
    let (Some(field), Some(value)) = (route.param, param) else {
        return Ok(input);
    };
    let mut at = &mut input;
    let mut names = field.split('.').peekable();
    while let Some(name) = names.next() {
        let serde_json::Value::Object(object) = at else {
            return Err(invalid(field, "must be an object"));
        };
        let camel = camel_case(name);
        // Either name form may be in the body; the path's value goes in
        // the one used, so the two are never both given.
        let key = if object.contains_key(name) {
            name.to_string()
        } else {
            camel
        };
        if names.peek().is_none() {
            match object.get(&key) {
                Some(serde_json::Value::String(given)) if *given != value => {
                    return Err(invalid(field, "differs from the one in the path"));
                }
                _ => {
                    object.insert(key, serde_json::Value::String(value));
                }
            }
            return Ok(input);
        }
        at = object
            .entry(key)
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
    }
    Ok(input)
}

fn camel_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// A streaming RPC as JSON lines: `{"result": ...}` per message, and
/// `{"error": status}` last if the stream fails after it began. A failure
/// before the first message is an error response like any other.
async fn json_lines(
    web: &Web,
    method: &MethodDescriptor,
    message: DynamicMessage,
    from: Forwarded,
) -> Response {
    let mut stream = match transcode::server_streaming(&web.grpc, method, message, from).await {
        Ok((_, stream)) => stream,
        Err(status) => return error_response(&web.pool, &status),
    };
    let first = match stream.next().await {
        Some(Err(status)) => return error_response(&web.pool, &status),
        first => first,
    };
    let pool = web.pool.clone();
    let lines = async_stream::stream! {
        let mut next = first;
        while let Some(item) = next {
            let line = match item.and_then(|message| to_json(&message)) {
                Ok(json) => serde_json::json!({ "result": json }),
                Err(status) => {
                    yield Ok::<_, std::convert::Infallible>(line_bytes(
                        &serde_json::json!({ "error": status_json(&pool, &status) }),
                    ));
                    break;
                }
            };
            yield Ok(line_bytes(&line));
            next = stream.next().await;
        }
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    (headers, Body::from_stream(lines)).into_response()
}

fn line_bytes(value: &serde_json::Value) -> Bytes {
    let mut line = serde_json::to_vec(value).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        let host = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, HeaderValue::from_str(value).unwrap());
            loopback_host(&headers, &http::Uri::from_static("/v1/whoami"))
        };
        for ok in [
            "localhost",
            "localhost:50051",
            "127.0.0.1:80",
            "[::1]:50051",
            "[::1]",
            "LOCALHOST",
        ] {
            assert!(host(ok), "{ok}");
        }
        for refused in [
            "rebound.example",
            "rebound.example:50051",
            "10.0.0.1:50051",
            "localhost.evil",
        ] {
            assert!(!host(refused), "{refused}");
        }
        let none = HeaderMap::new();
        assert!(loopback_host(&none, &http::Uri::from_static("/v1/whoami")));
        // HTTP/2 names its host in the URI's authority instead.
        for (uri, ok) in [
            (
                "http://127.0.0.1:50051/reservation.ReservationService/Get",
                true,
            ),
            (
                "http://[::1]:50051/reservation.ReservationService/Get",
                true,
            ),
            (
                "http://rebound.example:50051/reservation.ReservationService/Get",
                false,
            ),
            (
                "http://u:p@127.0.0.1:50051/reservation.ReservationService/Get",
                true,
            ),
            (
                "http://localhost@rebound.example/reservation.ReservationService/Get",
                false,
            ),
        ] {
            let uri = http::Uri::from_static(uri);
            assert_eq!(loopback_host(&none, &uri), ok, "{uri}");
        }
    }
}
