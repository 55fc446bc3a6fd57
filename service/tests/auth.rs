//! Authentication and access over a real socket: tokens, who may do what,
//! what a user sees of others, and the loopback-only default.

mod support;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use abi::{NewToken, Role, TokenSecret, UserId, pb};
use futures::TryStreamExt;
use reservation::Rsvp;
use rsvp_server::{
    auth::{Authenticator, TokenCache},
    server::ServerSettings,
};
use support::{BIN, TestApp, expect_code, free_addr, reserve_request};
use tonic::{
    Code, Request, Status,
    metadata::MetadataValue,
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

type Client =
    pb::reservation_service_client::ReservationServiceClient<InterceptedService<Channel, Bearer>>;

/// Sends `authorization` as given (or nothing).
#[derive(Clone)]
struct Bearer(Option<String>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert(
                "authorization",
                MetadataValue::try_from(value.as_str()).unwrap(),
            );
        }
        Ok(request)
    }
}

async fn client(app: &TestApp, authorization: Option<String>) -> Client {
    let channel = Channel::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    pb::reservation_service_client::ReservationServiceClient::with_interceptor(
        channel,
        Bearer(authorization),
    )
}

async fn as_token(app: &TestApp, secret: &TokenSecret) -> Client {
    client(app, Some(format!("Bearer {}", secret.expose()))).await
}

/// Asks who the client is until the server knows, for at most `within`:
/// a token made through another server works once this one reloads.
async fn eventually(within: Duration, client: &Client) -> pb::WhoAmIResponse {
    let deadline = Instant::now() + within;
    loop {
        match whoami(&mut client.clone()).await {
            Ok(value) => return value,
            Err(status) if Instant::now() < deadline => {
                let _ = status;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("still failing after {within:?}: {status:?}"),
        }
    }
}

async fn whoami(client: &mut Client) -> Result<pb::WhoAmIResponse, Status> {
    client
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_authentication_every_caller_is_an_admin() {
    let app = TestApp::spawn().await;
    let me = app
        .client
        .clone()
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (me.principal.as_str(), me.role(), me.auth.as_str()),
        ("", pb::Role::Admin, "none")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_bad_credentials_are_unauthenticated_and_say_nothing_more() {
    let app = TestApp::spawn_with_tokens().await;
    let alice = app.token("alice", Role::User).await;
    let good = as_token(&app, &alice).await;
    eventually(Duration::from_secs(10), &good).await;

    let bad_headers = [
        None,
        Some("Bearer".to_string()),
        Some("Basic YWxpY2U6c2VjcmV0".to_string()),
        Some("Bearer rsvp_not-a-token".to_string()),
        Some(alice.expose().to_string()),
    ];
    for header in bad_headers {
        let mut client = client(&app, header.clone()).await;
        let status = expect_code(whoami(&mut client).await, Code::Unauthenticated);
        assert!(
            !status.message().contains("alice"),
            "{header:?}: {}",
            status.message()
        );
        let status = expect_code(
            client
                .reserve(reserve_request("alice", "room", 0, 60))
                .await,
            Code::Unauthenticated,
        );
        assert!(status.details().is_empty(), "{header:?}: no details");
        let resources = pb::resource_service_client::ResourceServiceClient::with_interceptor(
            Channel::from_shared(format!("http://{}", app.addr))
                .unwrap()
                .connect()
                .await
                .unwrap(),
            Bearer(header.clone()),
        )
        .list_resources(pb::ListResourcesRequest::default())
        .await;
        expect_code(resources, Code::Unauthenticated);
    }
    let made: Vec<_> = app
        .store
        .query(abi::ReservationQuery::default())
        .try_collect()
        .await
        .unwrap();
    assert!(made.is_empty(), "nothing was made");

    // Health answers anyone: load balancers carry no credentials.
    let mut health = HealthClient::new(
        Channel::from_shared(format!("http://{}", app.addr))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health answers without credentials");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_names_its_principal_and_role_until_it_is_revoked() {
    let app = TestApp::spawn_with_tokens().await;
    let (made, secret) = app
        .store
        .create_token(NewToken {
            principal: UserId::parse("booking-backend").unwrap(),
            role: Role::Service,
            expires_at: None,
        })
        .await
        .unwrap();
    let mut backend = as_token(&app, &secret).await;
    let me = eventually(Duration::from_secs(10), &backend).await;
    assert_eq!(
        (me.principal.as_str(), me.role(), me.auth.as_str()),
        ("booking-backend", pb::Role::Service, "token")
    );
    let lowercase = format!("bearer {}", secret.expose());
    whoami(&mut client(&app, Some(lowercase)).await)
        .await
        .expect("the scheme is case-insensitive");

    // Revoked through the store (as another server, or `rsvp-server token
    // revoke`, would): refused within the reload interval, well under 10 s.
    app.store.revoke_token(made.id).await.unwrap();
    let revoked_at = Instant::now();
    loop {
        match whoami(&mut backend).await {
            Ok(_) => {
                assert!(
                    revoked_at.elapsed() < Duration::from_secs(10),
                    "a revoked token still works after 10 s"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => {
                assert_eq!(status.code(), Code::Unauthenticated);
                break;
            }
        }
    }

    // An expired token authenticates no one.
    let (_, expired) = app
        .store
        .create_token(NewToken {
            principal: UserId::parse("late").unwrap(),
            role: Role::Admin,
            expires_at: Some(chrono::Utc::now() - chrono::TimeDelta::seconds(1)),
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    expect_code(
        whoami(&mut as_token(&app, &expired).await).await,
        Code::Unauthenticated,
    );
}

/// A stream lasts as long as its token: revoked (through any server) or
/// expired, an open Listen ends with UNAUTHENTICATED, saying where to
/// resume, and delivers nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_streams_end_when_their_token_is_revoked_or_expires() {
    let app = TestApp::spawn_with_tokens().await;
    let new = |principal: &str, expires_at| NewToken {
        principal: UserId::parse(principal).unwrap(),
        role: Role::Admin,
        expires_at,
    };
    let (made, ops) = app.store.create_token(new("ops", None)).await.unwrap();
    let soon = chrono::Utc::now() + chrono::TimeDelta::seconds(2);
    let (_, brief) = app
        .store
        .create_token(new("brief", Some(soon)))
        .await
        .unwrap();
    let ops = as_token(&app, &ops).await;
    let brief = as_token(&app, &brief).await;
    eventually(Duration::from_secs(10), &ops).await;
    eventually(Duration::from_secs(10), &brief).await;

    let listen = |mut client: Client| async move {
        client
            .listen(pb::ListenRequest::default())
            .await
            .unwrap()
            .into_inner()
    };
    let mut revoked = listen(ops.clone()).await;
    let mut expiring = listen(brief.clone()).await;
    ops.clone()
        .reserve(reserve_request("ann", "room-1", 0, 30))
        .await
        .unwrap();
    let first = revoked.message().await.unwrap().unwrap();
    assert_eq!(first.reservation.unwrap().user_id, "ann");
    let first = expiring.message().await.unwrap().unwrap();
    assert_eq!(first.reservation.unwrap().user_id, "ann");

    app.store.revoke_token(made.id).await.unwrap();
    for (stream, what) in [(&mut revoked, "revoked"), (&mut expiring, "expired")] {
        let ended = loop {
            match tokio::time::timeout(Duration::from_secs(10), stream.message())
                .await
                .unwrap_or_else(|_| panic!("the {what} token's stream still open after 10 s"))
            {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the {what} token's stream ended without a status"),
                Err(status) => break status,
            }
        };
        assert_eq!(ended.code(), Code::Unauthenticated, "{what}: {ended:?}");
        assert!(
            ended.message().contains("resume with after_change_id = "),
            "{what}: {ended:?}"
        );
    }
    expect_code(whoami(&mut ops.clone()).await, Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_act_as_themselves_and_see_others_only_redacted() {
    let app = TestApp::spawn_with_tokens().await;
    let ann_token = app.token("ann", Role::User).await;
    let bob_token = app.token("bob", Role::User).await;
    let mut ann = as_token(&app, &ann_token).await;
    let mut bob = as_token(&app, &bob_token).await;
    eventually(Duration::from_secs(10), &ann).await;
    eventually(Duration::from_secs(10), &bob).await;

    // An empty user_id means the caller.
    let mut request = reserve_request("", "room", 0, 60);
    request.reservation.as_mut().unwrap().note = "board meeting".into();
    let mine = ann
        .reserve(request)
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(mine.user_id, "ann");

    // Bob may not act as ann, nor read or change her reservation, and the
    // answer does not say whether it exists.
    let status = expect_code(
        bob.reserve(reserve_request("ann", "room", 120, 180)).await,
        Code::PermissionDenied,
    );
    let details = tonic_types::StatusExt::get_error_details(&status);
    let info = details.error_info().expect("an ErrorInfo");
    assert_eq!(
        (info.reason.as_str(), info.domain.as_str()),
        ("PERMISSION_DENIED", "rsvp")
    );
    let theirs = expect_code(
        bob.get(pb::GetRequest {
            id: mine.id.clone(),
        })
        .await,
        Code::PermissionDenied,
    );
    let nowhere = uuid::Uuid::now_v7().to_string();
    let missing = expect_code(
        bob.get(pb::GetRequest {
            id: nowhere.clone(),
        })
        .await,
        Code::PermissionDenied,
    );
    assert_eq!(
        theirs.message().replace(&mine.id, "ID"),
        missing.message().replace(&nowhere, "ID")
    );
    expect_code(
        bob.cancel(pb::CancelRequest {
            id: mine.id.clone(),
        })
        .await,
        Code::PermissionDenied,
    );
    expect_code(
        bob.query(pb::QueryRequest {
            user_id: "ann".into(),
            ..Default::default()
        })
        .await,
        Code::PermissionDenied,
    );

    // In a conflict bob sees that the room is taken, and when, not by whom.
    let status = expect_code(
        bob.reserve(reserve_request("", "room", 30, 90)).await,
        Code::FailedPrecondition,
    );
    let conflict = abi::conflict_from_status(&status).expect("conflict details");
    let seen = &conflict.existing[0];
    assert_eq!(
        (seen.id.as_str(), seen.user_id.as_str(), seen.note.as_str()),
        ("", "", "")
    );
    assert_eq!((seen.start, seen.end), (mine.start, mine.end));
    assert!(!status.message().contains(&mine.id), "{}", status.message());

    // Ann reads, confirms and cancels her own.
    ann.get(pb::GetRequest {
        id: mine.id.clone(),
    })
    .await
    .unwrap();
    ann.confirm(pb::ConfirmRequest {
        id: mine.id.clone(),
    })
    .await
    .unwrap();
    ann.cancel(pb::CancelRequest {
        id: mine.id.clone(),
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_server_reachable_from_other_machines_needs_authentication() {
    let port = free_addr().port();
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(BIN)
        .args(["--listen", &format!("0.0.0.0:{port}")])
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("RSVP_AUTH")
        .output()
        .unwrap();
    assert!(!output.status.success(), "it refuses to start");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("auth") && stderr.contains("0.0.0.0"),
        "it says why: {stderr}"
    );
}

/// Runs `rsvp-server` with `args` on the embedded store at `url`.
fn server_command(url: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN)
        .args(["--database-url", url, "--log-level", "warn"])
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_made_listed_and_revoked_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("rsvp.db").display());

    let made = server_command(
        &url,
        &[
            "token",
            "create",
            "--principal",
            "ops",
            "--role",
            "admin",
            "--expires",
            "30d",
        ],
    );
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let secret = String::from_utf8(made.stdout).unwrap().trim().to_string();
    assert!(
        secret.starts_with("rsvp_") && !secret.contains(' '),
        "{secret}"
    );
    let said = String::from_utf8_lossy(&made.stderr);
    assert!(
        said.contains("shown once") && said.contains("expires"),
        "{said}"
    );

    let refused = server_command(
        &url,
        &["token", "create", "--principal", "ops", "--role", "root"],
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("admin, service or user"));

    let listed = server_command(&url, &["token", "list"]);
    let listed = String::from_utf8(listed.stdout).unwrap();
    let row = listed.lines().nth(1).expect("a row per token");
    assert!(row.contains("ops") && row.contains("admin"), "{listed}");
    // Each value stands under its heading.
    let heading = listed.lines().next().unwrap();
    for (name, value) in [("PRINCIPAL", "ops"), ("ROLE", "admin")] {
        assert_eq!(
            heading.find(name),
            row.find(&format!(" {value} ")).map(|i| i + 1),
            "{listed}"
        );
    }
    assert!(!listed.contains(&secret[5..]), "the secret is never listed");
    let id = row.split_whitespace().next().unwrap().to_string();

    let server = support::Server::start(&url, &["--auth", "token"]).await;
    let channel = Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let ops = pb::reservation_service_client::ReservationServiceClient::with_interceptor(
        channel,
        Bearer(Some(format!("Bearer {secret}"))),
    );
    let me = eventually(Duration::from_secs(10), &ops).await;
    assert_eq!((me.principal.as_str(), me.role()), ("ops", pb::Role::Admin));

    let revoked = server_command(&url, &["token", "revoke", &id]);
    assert!(revoked.status.success());
    assert!(String::from_utf8_lossy(&revoked.stdout).contains("revoked token"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while whoami(&mut ops.clone()).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the revoked token works after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let listed = server_command(&url, &["token", "list"]);
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert!(
        !listed.lines().nth(1).unwrap().trim_end().ends_with('-'),
        "the list shows when it was revoked: {listed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_principal_over_its_limits_is_told_when_to_retry_and_others_are_not_slowed() {
    use rsvp_server::limits::{Limits, RoleLimits};
    let app = TestApp::spawn_with(
        |_| {},
        ServerSettings {
            auth: Arc::new(Authenticator::tokens(Arc::new(TokenCache::new()))),
            token_refresh: Duration::from_millis(100),
            limits: Arc::new(Limits::new(
                RoleLimits::UNLIMITED,
                RoleLimits::UNLIMITED,
                RoleLimits {
                    reads_per_second: 1000,
                    writes_per_second: 1,
                    streams: 2,
                },
            )),
            ..ServerSettings::default()
        },
    )
    .await;
    let ann = as_token(&app, &app.token("ann", Role::User).await).await;
    let bob = as_token(&app, &app.token("bob", Role::User).await).await;
    eventually(Duration::from_secs(10), &ann).await;
    eventually(Duration::from_secs(10), &bob).await;

    // A burst of twice the rate, then a wait of about a second. Sent
    // together, so that however slow the writes, no token refills between.
    let burst = futures::future::join_all([0, 60, 120].map(|from| {
        let mut ann = ann.clone();
        async move {
            ann.reserve(reserve_request("", "room", from, from + 30))
                .await
        }
    }))
    .await;
    let (made, refused): (Vec<_>, Vec<_>) = burst.into_iter().partition(Result::is_ok);
    assert_eq!(made.len(), 2, "the burst: {made:?} {refused:?}");
    let status = expect_code(
        refused.into_iter().next().expect("one refused"),
        Code::ResourceExhausted,
    );
    let details = tonic_types::StatusExt::get_error_details(&status);
    let delay = details
        .retry_info()
        .and_then(|r| r.retry_delay)
        .expect("a RetryInfo with the delay");
    assert!(
        delay > Duration::ZERO && delay <= Duration::from_secs(1),
        "{delay:?}"
    );
    assert_eq!(
        details.error_info().map(|i| i.reason.as_str()),
        Some("RATE_LIMITED")
    );
    bob.clone()
        .reserve(reserve_request("", "hall", 0, 30))
        .await
        .expect("bob is not slowed by ann");
    whoami(&mut ann.clone())
        .await
        .expect("reads have a bucket of their own");
    tokio::time::sleep(delay).await;
    ann.clone()
        .reserve(reserve_request("", "room", 180, 210))
        .await
        .expect("after the delay");

    // Two open streams at once, not three; closing one frees its place.
    let listen = || {
        let mut ann = ann.clone();
        async move { ann.listen(pb::ListenRequest::default()).await }
    };
    let first = listen().await.expect("a first stream");
    let _second = listen().await.expect("a second stream");
    let refused = expect_code(listen().await, Code::ResourceExhausted);
    let details = tonic_types::StatusExt::get_error_details(&refused);
    assert_eq!(
        details.retry_info().and_then(|r| r.retry_delay),
        Some(Duration::from_secs(1)),
        "a RetryInfo with the delay"
    );
    assert_eq!(
        details.error_info().map(|i| i.reason.as_str()),
        Some("RATE_LIMITED")
    );
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    while listen().await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the closed stream's place never freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_and_refused_bookings_show_others_redacted_over_the_wire() {
    let app = TestApp::spawn_with_tokens().await;
    let ann = as_token(&app, &app.token("ann", Role::User).await).await;
    let bob = as_token(&app, &app.token("bob", Role::User).await).await;
    let svc = as_token(&app, &app.token("svc", Role::Service).await).await;
    eventually(Duration::from_secs(10), &ann).await;
    eventually(Duration::from_secs(10), &bob).await;
    eventually(Duration::from_secs(10), &svc).await;

    let mut bobs_feed = bob
        .clone()
        .listen(pb::ListenRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut services_feed = svc
        .clone()
        .listen(pb::ListenRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut request = reserve_request("", "room", 0, 60);
    request.reservation.as_mut().unwrap().note = "private".into();
    let mine = ann
        .clone()
        .reserve(request)
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();

    let seen = support::next(&mut bobs_feed).await.reservation.unwrap();
    assert_eq!(
        (seen.id.as_str(), seen.user_id.as_str(), seen.note.as_str()),
        ("", "", ""),
        "bob sees ann's reservation without id, user or note"
    );
    assert_eq!((seen.created_at, seen.expires_at), (None, None));
    assert_eq!(
        (&seen.resource_id, seen.start, seen.end, seen.status),
        (&mine.resource_id, mine.start, mine.end, mine.status),
        "but sees the room taken, when"
    );
    let whole = support::next(&mut services_feed).await.reservation.unwrap();
    assert_eq!(whole.id, mine.id, "a service sees it whole");
    assert_eq!(whole.note, "private");

    let refused = bob
        .clone()
        .book(pb::BookRequest {
            reservations: vec![reserve_request("", "room", 30, 90).reservation.unwrap()],
            ..Default::default()
        })
        .await;
    let status = expect_code(refused, Code::FailedPrecondition);
    let rejection = abi::booking_rejection_from_status(&status).expect("a BookingRejection");
    let conflict = rejection.parts[0]
        .conflict
        .as_ref()
        .expect("the part's conflict");
    assert!(
        conflict
            .existing
            .iter()
            .all(|r| r.id.is_empty() && r.user_id.is_empty() && r.note.is_empty()),
        "{conflict:?}"
    );
    assert!(!status.message().contains(&mine.id), "{}", status.message());
}
