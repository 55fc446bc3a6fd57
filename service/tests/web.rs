//! HTTP/JSON, Server-Sent Events and gRPC-Web on the gRPC port, over real
//! sockets, against a server on a throwaway PostgreSQL.

mod support;

use std::time::Duration;

use abi::{Role, pb};
use reqwest::{Client, Method, StatusCode};
use reservation::Rsvp;
use rsvp_server::server::ServerSettings;
use serde_json::{Value, json};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A minute after [`t0`] as RFC 3339.
fn at(minutes: i64) -> String {
    (t0() + chrono::TimeDelta::minutes(minutes)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn reservation(user: &str, resource: &str, from: i64, to: i64) -> Value {
    json!({"reservation": {"userId": user, "resourceId": resource, "start": at(from), "end": at(to)}})
}

/// An HTTP client of one server.
struct Http {
    base: String,
    client: Client,
    token: Option<String>,
}

impl Http {
    fn new(app: &TestApp) -> Http {
        Http {
            base: format!("http://{}", app.addr),
            client: Client::new(),
            token: None,
        }
    }

    fn with_token(app: &TestApp, token: &str) -> Http {
        Http {
            token: Some(token.to_string()),
            ..Http::new(app)
        }
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status();
        let text = response.text().await.expect("a body");
        let value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        (status, value)
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }
}

/// The `@type`s of an error body's details.
fn detail_types(error: &Value) -> Vec<String> {
    error["details"]
        .as_array()
        .map(|details| {
            details
                .iter()
                .filter_map(|d| d["@type"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn detail<'e>(error: &'e Value, type_suffix: &str) -> &'e Value {
    error["details"]
        .as_array()
        .and_then(|details| {
            details.iter().find(|d| {
                d["@type"]
                    .as_str()
                    .is_some_and(|t| t.ends_with(type_suffix))
            })
        })
        .unwrap_or_else(|| panic!("no {type_suffix} in {error}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_over_http_are_the_same_as_over_grpc() {
    let app = TestApp::spawn().await;
    let http = Http::new(&app);

    let (status, made) = http
        .post("/v1/reservations", reservation("alice", "room-1", 60, 120))
        .await;
    assert_eq!(status, StatusCode::OK, "{made}");
    let id = made["reservation"]["id"]
        .as_str()
        .expect("an id")
        .to_string();
    assert_eq!(made["reservation"]["status"], "RESERVATION_STATUS_PENDING");
    assert_eq!(made["reservation"]["start"], at(60));

    // The same reservation, read over gRPC: one store, one library.
    let over_grpc = app
        .client
        .clone()
        .get(pb::GetRequest { id: id.clone() })
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(over_grpc.user_id, "alice");

    // A conflict is 409, with the conflict's details as gRPC gives them.
    let (status, error) = http
        .post("/v1/reservations", reservation("bob", "room-1", 90, 150))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    assert_eq!(error["code"], 9, "FAILED_PRECONDITION");
    assert!(error["message"].as_str().unwrap().contains("conflict"));
    let conflict = detail(&error, "reservation.ReservationConflict");
    assert_eq!(conflict["existing"][0]["id"], id.as_str());
    assert_eq!(
        detail(&error, "google.rpc.ErrorInfo")["reason"],
        "RESERVATION_CONFLICT"
    );

    let (status, confirmed) = http
        .post(&format!("/v1/reservations/{id}:confirm"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{confirmed}");
    assert_eq!(
        confirmed["reservation"]["status"],
        "RESERVATION_STATUS_CONFIRMED"
    );

    let (status, got) = http.get(&format!("/v1/reservations/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["reservation"]["status"], "RESERVATION_STATUS_CONFIRMED");

    let (status, updated) = http
        .call(
            Method::PATCH,
            &format!("/v1/reservations/{id}"),
            Some(json!({"note": "window seat"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["reservation"]["note"], "window seat");

    // Filter: query parameters are FilterRequest's fields, either name form.
    http.post("/v1/reservations", reservation("carol", "room-2", 0, 30))
        .await;
    let (status, page) = http
        .get("/v1/reservations?resource_id=room-1&pageSize=10")
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let listed = page["reservations"].as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());
    let (status, page) = http
        .get("/v1/reservations?status=RESERVATION_STATUS_PENDING")
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["reservations"][0]["userId"], "carol");

    // Query: JSON lines, one reservation each.
    let lines = http
        .request(Method::POST, "/v1/reservations:query")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(lines.status(), StatusCode::OK);
    assert_eq!(
        lines.headers()["content-type"].to_str().unwrap(),
        "application/x-ndjson"
    );
    let text = lines.text().await.unwrap();
    let users: Vec<String> = text
        .lines()
        .map(|line| {
            let line: Value = serde_json::from_str(line).unwrap();
            line["result"]["userId"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(users, ["carol", "alice"], "by start time: {text}");

    let (status, cancelled) = http
        .post(&format!("/v1/reservations/{id}:cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(
        cancelled["reservation"]["status"],
        "RESERVATION_STATUS_CANCELLED"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_name_the_field_and_unknown_routes_say_so() {
    let app = TestApp::spawn().await;
    let http = Http::new(&app);

    let cases = [
        (
            json!({"reservation": {"start": "not a time"}}),
            "reservation.start",
        ),
        (
            json!({"reservation": {"quantity": "many"}}),
            "reservation.quantity",
        ),
        (json!({"reservation": {"colour": "red"}}), "reservation"),
        (json!({"hold": 5}), "hold"),
    ];
    for (body, field) in cases {
        let (status, error) = http.post("/v1/reservations", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {error}");
        assert_eq!(error["code"], 3, "INVALID_ARGUMENT");
        let violation = &detail(&error, "google.rpc.BadRequest")["fieldViolations"][0];
        assert!(
            violation["field"].as_str().unwrap().starts_with(field),
            "{body}: {error}"
        );
    }
    // Checked by the library as for gRPC: the message names the field.
    let (status, error) = http
        .post("/v1/reservations", reservation("alice", "room-1", 60, 30))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let field = &detail(&error, "google.rpc.BadRequest")["fieldViolations"][0]["field"];
    assert!(
        field.as_str().unwrap().starts_with("reservation."),
        "{error}"
    );

    let response = http
        .request(Method::POST, "/v1/reservations")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error: Value = response.json().await.unwrap();
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("body: not valid JSON")
    );

    // A form, as another site's page can post without asking: refused.
    let response = http
        .request(Method::POST, "/v1/reservations")
        .header("content-type", "text/plain")
        .body(reservation("alice", "room-1", 0, 30).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Even a form with no fields, which is an empty body: refused, and
    // nothing changes. An empty body that names no type is `{}`.
    let (_, made) = http
        .post("/v1/reservations", reservation("alice", "room-9", 0, 30))
        .await;
    let id = made["reservation"]["id"].as_str().unwrap().to_string();
    let response = http
        .request(Method::POST, &format!("/v1/reservations/{id}:cancel"))
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (_, got) = http.get(&format!("/v1/reservations/{id}")).await;
    assert_eq!(got["reservation"]["status"], "RESERVATION_STATUS_PENDING");
    let response = http
        .request(Method::POST, &format!("/v1/reservations/{id}:confirm"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // A server without authentication answers only calls to a loopback
    // name (not a page whose DNS name was pointed at 127.0.0.1).
    let response = http
        .request(Method::GET, "/v1/whoami")
        .header("host", "rebound.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // Outside /v1/ and not gRPC: 404, as JSON.
    let (status, error) = http.get("/favicon.ico").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{error}");

    let (status, error) = http.get("/v1/reservations?colour=red").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert!(error["message"].as_str().unwrap().starts_with("colour:"));
    let (status, error) = http.get("/v1/reservations?desc=maybe").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");

    let (status, error) = http
        .get("/v1/reservations/0190c5a0-0000-7000-8000-000000000000")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{error}");
    assert_eq!(error["code"], 5);

    let (status, error) = http.get("/v1/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{error}");
    let response = http
        .request(Method::PUT, "/v1/reservations/x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "GET, PATCH");

    // A body within the JSON limit whose message is over what the
    // services decode: 413 naming the limit, as a gRPC client is refused.
    let mut big = reservation("alice", "room-1", 0, 30);
    big["reservation"]["note"] = Value::String("n".repeat(100_000));
    let (status, error) = http.post("/v1/reservations", big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{error}");
    assert_eq!(error["code"], 3, "{error}");
    let violation = &detail(&error, "google.rpc.BadRequest")["fieldViolations"][0];
    assert_eq!(violation["field"], "body", "{error}");
    assert!(
        violation["description"].as_str().unwrap().contains("65536"),
        "{error}"
    );

    // A body too large is refused before it is read whole: the answer comes
    // while most of the body announced is still unsent. (A client that
    // sends all of it may see the connection closed under its writes
    // instead of the answer.)
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /v1/reservations HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        app.addr,
        4 << 20
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(&vec![b' '; 300 << 10]).await.unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut chunk))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        assert!(n > 0, "closed without an answer");
        answer.extend_from_slice(&chunk[..n]);
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_availability_and_bookings_over_http() {
    let app = TestApp::spawn().await;
    let http = Http::new(&app);

    let (status, made) = http
        .post(
            "/v1/resources",
            json!({"resource": {"id": "suite/1", "displayName": "Suite", "capacity": 2, "labels": {"floor": "3"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{made}");
    assert_eq!(made["resource"]["capacity"], 2);
    let (status, error) = http
        .post("/v1/resources", json!({"resource": {"id": "suite/1"}}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "ALREADY_EXISTS: {error}");

    // An id with a slash, percent-encoded in the path.
    let (status, got) = http.get("/v1/resources/suite%2F1").await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got["resource"]["displayName"], "Suite");
    let (status, listed) = http.get("/v1/resources?labels.floor=3").await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["resources"].as_array().unwrap().len(), 1);
    let (_, listed) = http.get("/v1/resources?labels.floor=4").await;
    assert!(listed["resources"].as_array().is_none_or(Vec::is_empty));

    let (status, changed) = http
        .call(
            Method::PATCH,
            "/v1/resources/suite%2F1",
            Some(json!({"resource": {"capacity": 3}, "updateMask": "capacity"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["resource"]["capacity"], 3);
    assert_eq!(changed["resource"]["displayName"], "Suite");

    let (status, free) = http
        .post(
            "/v1/availability",
            json!({"resourceIds": ["suite/1"], "start": at(0), "end": at(120), "slotDuration": "1800s"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{free}");
    assert_eq!(
        free["resources"][0]["slots"].as_array().unwrap().len(),
        4,
        "{free}"
    );
    assert_eq!(free["resources"][0]["resourceId"], "suite/1");

    let part = |resource: &str, from: i64, to: i64| json!({"resourceId": resource, "start": at(from), "end": at(to)});
    let (status, booked) = http
        .post(
            "/v1/bookings",
            json!({"userId": "dana", "reservations": [part("suite/1", 0, 60), part("car-9", 0, 60)]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{booked}");
    let booking = booked["booking"]["id"].as_str().unwrap().to_string();
    let (status, got) = http.get(&format!("/v1/bookings/{booking}")).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got["booking"]["reservations"].as_array().unwrap().len(), 2);

    // A booking refused: every failing part named, 409.
    let (status, refused) = http
        .post(
            "/v1/bookings",
            json!({"userId": "erin", "reservations": [part("suite/1", 0, 60), part("car-9", 30, 90)]}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert_eq!(
        detail(&refused, "google.rpc.ErrorInfo")["reason"],
        "BOOKING_REJECTED"
    );
    assert!(
        detail_types(&refused)
            .iter()
            .any(|t| t.ends_with("BookingRejection"))
    );

    let (status, confirmed) = http
        .post(&format!("/v1/bookings/{booking}:confirm"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{confirmed}");
    let (status, cancelled) = http
        .post(&format!("/v1/bookings/{booking}:cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");

    let (status, deleted) = http
        .call(Method::DELETE, "/v1/resources/suite%2F1?force=true", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    let (status, _) = http.get("/v1/whoami").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_calls_are_authenticated_as_grpc_calls_are() {
    let app = TestApp::spawn_with_tokens().await;
    let token = async |principal: &str| app.token(principal, Role::User).await.expose().to_string();
    let alice = Http::with_token(&app, &token("alice").await);
    let bob = Http::with_token(&app, &token("bob").await);
    for http in [&alice, &bob] {
        until_token_works(app.addr, http.token.as_deref().unwrap_or_default()).await;
    }

    let anonymous = Http::new(&app);
    let response = anonymous
        .request(Method::GET, "/v1/whoami")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().contains_key("www-authenticate"));
    let (status, _) = Http::with_token(&app, "not-a-token")
        .get("/v1/whoami")
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, me) = alice.get("/v1/whoami").await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["principal"], "alice");
    assert_eq!(me["role"], "ROLE_USER");

    // The user id defaults to the caller, as over gRPC.
    let (status, made) = alice
        .post(
            "/v1/reservations",
            json!({"reservation": {"resourceId": "room-1", "start": at(60), "end": at(120)}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{made}");
    assert_eq!(made["reservation"]["userId"], "alice");
    let id = made["reservation"]["id"].as_str().unwrap();

    let (status, error) = bob
        .post(&format!("/v1/reservations/{id}:cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{error}");
    let (status, error) = bob
        .post("/v1/reservations", reservation("alice", "room-2", 0, 30))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{error}");
    // A conflict with another user's reservation shows it redacted.
    let (status, error) = bob
        .post("/v1/reservations", reservation("bob", "room-1", 60, 90))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    let existing = &detail(&error, "ReservationConflict")["existing"][0];
    assert!(existing.get("userId").is_none(), "{existing}");
}

/// A request that cannot be read is answered as any call would be first:
/// 401 without credentials, 429 over the caller's rate; only then 400 (or
/// 415) saying why it cannot be read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_requests_are_authenticated_and_limited_first() {
    use rsvp_server::limits::{Limits, RoleLimits};
    let app = TestApp::spawn_with(
        |_| {},
        ServerSettings {
            auth: std::sync::Arc::new(rsvp_server::auth::Authenticator::tokens(
                std::sync::Arc::new(rsvp_server::auth::TokenCache::new()),
            )),
            token_refresh: Duration::from_millis(100),
            limits: std::sync::Arc::new(Limits::new(
                RoleLimits::UNLIMITED,
                RoleLimits::UNLIMITED,
                RoleLimits {
                    reads_per_second: 2,
                    writes_per_second: 1000,
                    streams: 10,
                },
            )),
            ..ServerSettings::default()
        },
    )
    .await;
    let secret = app.token("ann", Role::User).await.expose().to_string();
    until_token_works(app.addr, &secret).await;

    let unreadable = |http: &Http| {
        [
            http.request(Method::POST, "/v1/reservations")
                .header("content-type", "application/json")
                .body(r#"{"reservation": {"colour": "red"}}"#),
            http.request(Method::POST, "/v1/reservations")
                .header("content-type", "text/plain")
                .body("{}"),
            http.request(Method::GET, "/v1/reservations?colour=red"),
            http.request(Method::GET, "/v1/changes")
                .header("last-event-id", "yesterday"),
        ]
    };
    for request in unreadable(&Http::new(&app)) {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers().contains_key("www-authenticate"));
    }

    // Full again after two seconds: four reads a burst, two a second.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let ann = Http::with_token(&app, &secret);
    let answers = futures::future::join_all(
        unreadable(&ann)
            .into_iter()
            .chain(unreadable(&ann))
            .map(|request| async move { request.send().await.unwrap().status() }),
    )
    .await;
    let refused = |status: StatusCode| answers.iter().filter(|s| **s == status).count();
    let unread = refused(StatusCode::BAD_REQUEST) + refused(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(unread >= 1, "{answers:?}");
    assert!(refused(StatusCode::TOO_MANY_REQUESTS) >= 1, "{answers:?}");
    assert_eq!(
        unread + refused(StatusCode::TOO_MANY_REQUESTS),
        answers.len(),
        "{answers:?}"
    );
}

/// Reads Server-Sent Events from a raw connection until `until` returns
/// true for the events read so far, or the deadline passes.
struct Events {
    stream: tokio::net::TcpStream,
    text: String,
}

impl Events {
    async fn open(app: &TestApp, query: &str, last_event_id: Option<&str>) -> Events {
        Events::open_with_buffer(app, query, last_event_id, None).await
    }

    /// A stream opened with `token`.
    async fn open_as(app: &TestApp, token: &str) -> Events {
        Events::open_with(app, "", None, None, Some(token)).await
    }

    async fn open_with_buffer(
        app: &TestApp,
        query: &str,
        last_event_id: Option<&str>,
        receive_buffer: Option<u32>,
    ) -> Events {
        Events::open_with(app, query, last_event_id, receive_buffer, None).await
    }

    async fn open_with(
        app: &TestApp,
        query: &str,
        last_event_id: Option<&str>,
        receive_buffer: Option<u32>,
        token: Option<&str>,
    ) -> Events {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        if let Some(size) = receive_buffer {
            socket.set_recv_buffer_size(size).unwrap();
        }
        let mut stream = socket.connect(app.addr).await.unwrap();
        let last = last_event_id
            .map(|id| format!("Last-Event-ID: {id}\r\n"))
            .unwrap_or_default()
            + &token
                .map(|t| format!("Authorization: Bearer {t}\r\n"))
                .unwrap_or_default();
        let request = format!(
            "GET /v1/changes{query} HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n{last}\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        Events {
            stream,
            text: String::new(),
        }
    }

    async fn read_until(&mut self, until: impl Fn(&str) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut buffer = vec![0u8; 64 * 1024];
        while !until(&self.text) {
            let read = tokio::time::timeout_at(deadline, self.stream.read(&mut buffer))
                .await
                .unwrap_or_else(|_| panic!("no such events within 20 s; read:\n{}", self.text))
                .unwrap();
            assert!(read > 0, "the connection closed; read:\n{}", self.text);
            self.text
                .push_str(&String::from_utf8_lossy(&buffer[..read]));
        }
    }

    /// Every change event's (id, data) read so far (events named
    /// otherwise, `start` and `end`, are not changes).
    fn changes(&self) -> Vec<(i64, Value)> {
        let mut out = Vec::new();
        for block in self.text.split("\n\n") {
            if block.lines().any(|line| line.starts_with("event:")) {
                continue;
            }
            let mut id = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(v).ok();
                }
            }
            if let (Some(id), Some(data)) = (id, data) {
                out.push((id, data));
            }
        }
        out
    }
}

/// A stream opened without a position names where it starts as the id of
/// its first, data-less event: a browser cut off before any change sends
/// that back as `Last-Event-ID` and misses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_stream_names_where_it_starts_for_a_reconnect() {
    let app = TestApp::spawn().await;
    let http = Http::new(&app);
    http.post("/v1/reservations", reservation("alice", "room-1", 0, 30))
        .await;
    let mut events = Events::open(&app, "", None).await;
    events.read_until(|text| text.contains(": listening")).await;
    let first = events.text.split("\n\n").next().unwrap_or_default();
    assert!(first.contains("event: start"), "{first}");
    let start = first
        .lines()
        .find_map(|line| line.strip_prefix("id: "))
        .expect("the first event names where the stream starts")
        .trim()
        .to_string();
    assert_eq!(start, "1", "{first}");
    assert!(first.contains("data: 1"), "{first}");
    assert!(
        events.changes().is_empty(),
        "no change event: {}",
        events.text
    );
    drop(events);

    let (_, missed) = http
        .post("/v1/reservations", reservation("bob", "room-2", 0, 30))
        .await;
    let mut resumed = Events::open(&app, "", Some(&start)).await;
    resumed.read_until(|text| text.contains("\ndata: {")).await;
    let changes = resumed.changes();
    assert_eq!(changes.len(), 1, "{}", resumed.text);
    assert_eq!(
        changes[0].1["reservation"]["id"],
        missed["reservation"]["id"]
    );
}

/// An open change stream whose token is revoked (through the store, as
/// another server or `rsvp-server token revoke` would) ends with an `end`
/// event saying so, as a Listen over gRPC does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_stream_ends_when_its_token_is_revoked() {
    let app = TestApp::spawn_with_tokens().await;
    let (made, secret) = app
        .store
        .create_token(abi::NewToken {
            principal: abi::UserId::parse("ann").unwrap(),
            role: Role::User,
            expires_at: None,
        })
        .await
        .unwrap();
    let secret = secret.expose().to_string();
    until_token_works(app.addr, &secret).await;
    let mut events = Events::open_as(&app, &secret).await;
    events.read_until(|text| text.contains(": listening")).await;
    app.store.revoke_token(made.id).await.unwrap();
    events.read_until(|text| text.contains("event: end")).await;
    let end = events.text.split("event: end").nth(1).unwrap();
    assert!(end.contains("\"code\":16"), "UNAUTHENTICATED: {end}");
    assert!(end.contains("revoked"), "{end}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_arrive_as_server_sent_events_and_resume_from_the_last_id() {
    let app = TestApp::spawn().await;
    let http = Http::new(&app);
    let mut events = Events::open(&app, "?resource_id=room-1", None).await;
    events.read_until(|text| text.contains(": listening")).await;
    assert!(
        events.text.contains("content-type: text/event-stream"),
        "{}",
        events.text
    );

    let (_, first) = http
        .post("/v1/reservations", reservation("alice", "room-1", 0, 30))
        .await;
    http.post("/v1/reservations", reservation("alice", "room-2", 0, 30))
        .await;
    let (_, second) = http
        .post("/v1/reservations", reservation("bob", "room-1", 30, 60))
        .await;
    events
        .read_until(|text| text.matches("\ndata: {").count() >= 2)
        .await;
    let changes = events.changes();
    assert_eq!(changes.len(), 2, "only room-1: {}", events.text);
    assert_eq!(
        changes[0].1["reservation"]["id"],
        first["reservation"]["id"]
    );
    assert_eq!(
        changes[1].1["reservation"]["id"],
        second["reservation"]["id"]
    );
    // The event id is the change id.
    assert_eq!(changes[0].1["changeId"], changes[0].0.to_string());
    drop(events);

    // A browser reconnecting sends the last id it saw: what came after, and
    // nothing before.
    let last = changes[0].0.to_string();
    let mut resumed = Events::open(&app, "?resource_id=room-1", Some(&last)).await;
    resumed.read_until(|text| text.contains("\ndata: {")).await;
    let again = resumed.changes();
    assert_eq!(again[0].0, changes[1].0, "{}", resumed.text);

    // A Last-Event-ID that is not a change id is refused, as is such a
    // parameter.
    let response = Http::new(&app)
        .request(Method::GET, "/v1/changes")
        .header("last-event-id", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let (status, _) = Http::new(&app)
        .call(Method::GET, "/v1/changes?after_change_id=x", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// A browser that reads nothing is cut off as a gRPC listener would be;
/// reconnecting with the last id it saw resumes with no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_falls_behind_is_cut_off_and_resumes() {
    let app = TestApp::spawn_with(
        |_| {},
        ServerSettings {
            stream_idle_timeout: Duration::from_millis(500),
            ..ServerSettings::default()
        },
    )
    .await;
    // 20,000 changes (some 8 MB of events): more than the socket buffers.
    seed(app.store.pool(), 20_000).await;
    let mut slow = Events::open_with_buffer(&app, "?after_change_id=0", None, Some(4096)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    slow.read_until(|text| text.contains("event: end")).await;
    let end = slow.text.split("event: end").nth(1).unwrap();
    assert!(end.contains("STREAM_IDLE"), "{end}");
    let seen = slow.changes();
    let last = seen.last().expect("some changes before the cut").0;
    assert!(seen.len() < 20_000, "cut off before the end");
    for pair in seen.windows(2) {
        assert_eq!(pair[1].0, pair[0].0 + 1, "in order, no gap");
    }

    let mut resumed = Events::open(&app, "", Some(&last.to_string())).await;
    resumed.read_until(|text| text.contains("\ndata: {")).await;
    assert_eq!(resumed.changes()[0].0, last + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_names_every_route() {
    let app = TestApp::spawn().await;
    let (status, document) = Http::new(&app).get("/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(document["openapi"], "3.0.3");
    let paths = document["paths"].as_object().unwrap();
    for (path, method) in [
        ("/v1/reservations", "post"),
        ("/v1/reservations", "get"),
        ("/v1/reservations/{id}", "patch"),
        ("/v1/reservations/{id}:confirm", "post"),
        ("/v1/reservations/{id}:checkOut", "post"),
        ("/v1/reservations:query", "post"),
        ("/v1/resources/{id}", "delete"),
        ("/v1/availability", "post"),
        ("/v1/bookings/{id}:cancel", "post"),
        ("/v1/changes", "get"),
        ("/v1/whoami", "get"),
    ] {
        assert!(paths[path].get(method).is_some(), "{method} {path}");
    }
    let schemas = document["components"]["schemas"].as_object().unwrap();
    let reservation = &schemas["reservation.Reservation"]["properties"];
    assert_eq!(reservation["start"]["format"], "date-time");
    assert_eq!(reservation["status"]["type"], "string");
    assert!(schemas.contains_key("google.rpc.Status"));
}

/// A gRPC-Web call as a browser makes it: HTTP/1.1, one POST, the message
/// framed in the body and the status in a trailer frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_web_clients_are_served_on_the_same_port() {
    use prost::Message;
    let app = TestApp::spawn().await;
    let call_as = |host: Option<&'static str>, path: &'static str, message: Vec<u8>| {
        let url = format!("http://{}{path}", app.addr);
        async move {
            let mut body = vec![0u8];
            body.extend_from_slice(&(message.len() as u32).to_be_bytes());
            body.extend_from_slice(&message);
            let mut request = Client::builder()
                .http1_only()
                .build()
                .unwrap()
                .post(url)
                .header("content-type", "application/grpc-web+proto")
                .header("x-grpc-web", "1");
            if let Some(host) = host {
                request = request.header("host", host);
            }
            let response = request.body(body).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.version(), reqwest::Version::HTTP_11);
            // A status with no message comes in the headers (trailers-only).
            let mut trailers = String::new();
            for (name, value) in response.headers() {
                if name.as_str().starts_with("grpc-") {
                    trailers.push_str(&format!("{name}:{}\r\n", value.to_str().unwrap()));
                }
            }
            let bytes = response.bytes().await.unwrap().to_vec();
            // Frames: [flag, length (4 bytes, big-endian), payload]...
            let (mut messages, mut at) = (Vec::new(), 0);
            while at + 5 <= bytes.len() {
                let len = u32::from_be_bytes(bytes[at + 1..at + 5].try_into().unwrap()) as usize;
                let payload = bytes[at + 5..at + 5 + len].to_vec();
                if bytes[at] & 0x80 != 0 {
                    trailers.push_str(&String::from_utf8(payload).unwrap());
                } else {
                    messages.push(payload);
                }
                at += 5 + len;
            }
            (messages, trailers)
        }
    };
    let call = |path: &'static str, message: Vec<u8>| call_as(None, path, message);

    let request = reserve_request("alice", "room-1", 0, 60).encode_to_vec();
    let (messages, trailers) = call("/reservation.ReservationService/Reserve", request).await;
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
    let made = pb::ReserveResponse::decode(messages[0].as_slice())
        .unwrap()
        .reservation
        .unwrap();
    assert_eq!(made.user_id, "alice");

    // A conflict: the status and its details in the trailer frame.
    let request = reserve_request("bob", "room-1", 30, 90).encode_to_vec();
    let (messages, trailers) = call("/reservation.ReservationService/Reserve", request).await;
    assert!(messages.is_empty());
    assert!(trailers.contains("grpc-status:9"), "{trailers}");
    assert!(trailers.contains("grpc-status-details-bin:"), "{trailers}");
    let stored = app.store.get(made.id.parse().unwrap()).await.unwrap();
    assert_eq!(stored.user_id.as_str(), "alice");

    // A server stream: every message framed, the status last.
    app.reserve("carol", "room-1", 120, 180).await.unwrap();
    let request = pb::QueryRequest {
        resource_id: "room-1".into(),
        ..Default::default()
    }
    .encode_to_vec();
    let (messages, trailers) = call("/reservation.ReservationService/Query", request).await;
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
    let users: Vec<String> = messages
        .iter()
        .map(|m| pb::Reservation::decode(m.as_slice()).unwrap().user_id)
        .collect();
    assert_eq!(users, ["alice", "carol"]);

    // This server authenticates no one: a page of another site whose DNS
    // name was pointed at 127.0.0.1 is same-origin to the browser, and its
    // gRPC-Web calls name that host. Refused as the HTTP routes refuse it,
    // and nothing changes.
    let cancel = pb::CancelRequest {
        id: made.id.clone(),
    }
    .encode_to_vec();
    let path = "/reservation.ReservationService/Cancel";
    let (messages, trailers) = call_as(Some("rebound.example"), path, cancel.clone()).await;
    assert!(messages.is_empty());
    assert!(trailers.contains("grpc-status:7"), "{trailers}");
    let (_, trailers) = call_as(Some("rebound.example:80"), path, cancel).await;
    assert!(trailers.contains("grpc-status:7"), "{trailers}");
    let stored = app.store.get(made.id.parse().unwrap()).await.unwrap();
    assert_eq!(stored.status, abi::ReservationStatus::Pending);
    let whoami = pb::WhoAmIRequest {}.encode_to_vec();
    let (_, trailers) = call_as(
        Some("rebound.example"),
        "/reservation.ReservationService/WhoAmI",
        whoami.clone(),
    )
    .await;
    assert!(trailers.contains("grpc-status:7"), "{trailers}");
    let (_, trailers) = call_as(
        Some("localhost"),
        "/reservation.ReservationService/WhoAmI",
        whoami,
    )
    .await;
    assert!(trailers.contains("grpc-status:0"), "{trailers}");

    // Over HTTP/2 the host is the request's authority: the same rule.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .origin(
            format!("http://rebound.example:{}", app.addr.port())
                .parse()
                .unwrap(),
        )
        .connect()
        .await
        .unwrap();
    let refused = pb::reservation_service_client::ReservationServiceClient::new(channel.clone())
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    // Health checks answer anyone.
    let health = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap();
    assert_eq!(
        health.into_inner().status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

/// Pages of the origins named in `cors_origins` may call the API from a
/// browser; others may not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_origins_may_call_from_the_browser() {
    let app = TestApp::spawn_with(
        |_| {},
        ServerSettings {
            cors_origins: vec!["https://shop.example".into()],
            ..ServerSettings::default()
        },
    )
    .await;
    let http = Http::new(&app);
    let preflight = |origin: &'static str| {
        http.request(Method::OPTIONS, "/v1/reservations")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let allowed = preflight("https://shop.example").await.unwrap();
    assert!(allowed.status().is_success(), "{allowed:?}");
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
    let refused = preflight("https://evil.example").await.unwrap();
    assert!(
        !refused
            .headers()
            .contains_key("access-control-allow-origin")
    );

    let response = http
        .request(Method::POST, "/v1/reservations")
        .header("origin", "https://shop.example")
        .json(&reservation("alice", "room-1", 0, 30))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
}
