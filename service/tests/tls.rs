//! gRPC over TLS, with client certificates naming principals, over a real
//! socket, with certificates made for the test.

mod support;

use std::{collections::HashMap, sync::Arc};

use abi::{Role, pb};
use rsvp_server::{
    auth::{Authenticator, TokenCache},
    server::ServerSettings,
};
use rsvp_testing::{CertFiles, TestCerts};
use support::TestApp;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity, ServerTlsConfig};

type Client = pb::reservation_service_client::ReservationServiceClient<Channel>;

fn server_tls(certs: &TestCerts, client_certificates_required: bool) -> ServerTlsConfig {
    let server = certs.server();
    ServerTlsConfig::new()
        .identity(Identity::from_pem(
            std::fs::read(server.cert).unwrap(),
            std::fs::read(server.key).unwrap(),
        ))
        .client_ca_root(Certificate::from_pem(std::fs::read(certs.ca()).unwrap()))
        .client_auth_optional(!client_certificates_required)
}

/// A client trusting `trusted`'s authority, presenting `identity` if any.
async fn client(
    app: &TestApp,
    trusted: &TestCerts,
    identity: Option<&CertFiles>,
) -> Result<Client, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(trusted.ca()).unwrap()))
        .domain_name("localhost");
    if let Some(files) = identity {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(&files.cert).unwrap(),
            std::fs::read(&files.key).unwrap(),
        ));
    }
    let channel = Channel::from_shared(format!("https://localhost:{}", app.addr.port()))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await?;
    Ok(Client::new(channel))
}

async fn whoami(
    client: Result<Client, tonic::transport::Error>,
) -> Result<(String, pb::Role, String), String> {
    let mut client = client.map_err(|e| format!("{e:?}"))?;
    client
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .map(|r| {
            let r = r.into_inner();
            let role = r.role();
            (r.principal, role, r.auth)
        })
        .map_err(|s| format!("{s:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_name_the_caller_and_nothing_else_gets_in() {
    let certs = TestCerts::new("rsvp test authority");
    let app = TestApp::spawn_with(
        |_| {},
        ServerSettings {
            auth: Arc::new(Authenticator::certificates(HashMap::from([(
                "ops".to_string(),
                Role::Admin,
            )]))),
            tls: Some(server_tls(&certs, true)),
            ..ServerSettings::default()
        },
    )
    .await;

    let ops = certs.client("ops");
    assert_eq!(
        whoami(client(&app, &certs, Some(&ops)).await).await,
        Ok(("ops".into(), pb::Role::Admin, "mtls".into())),
        "the subject names the principal, its role from the mapping"
    );
    let ann = certs.client("ann");
    assert_eq!(
        whoami(client(&app, &certs, Some(&ann)).await).await,
        Ok(("ann".into(), pb::Role::User, "mtls".into())),
        "a principal not in the mapping is a user"
    );

    assert!(
        whoami(client(&app, &certs, None).await).await.is_err(),
        "no certificate, no call"
    );
    let strangers = TestCerts::new("another authority");
    let stranger = strangers.client("ops");
    assert!(
        whoami(client(&app, &certs, Some(&stranger)).await)
            .await
            .is_err(),
        "a certificate from an authority the server does not trust is refused"
    );
    assert!(
        whoami(client(&app, &strangers, Some(&ops)).await)
            .await
            .is_err(),
        "a client that does not trust the server's authority does not talk to it"
    );
    let plain = Channel::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .connect()
        .await;
    let plain = match plain {
        Ok(channel) => Client::new(channel)
            .who_am_i(pb::WhoAmIRequest {})
            .await
            .map(drop)
            .map_err(|s| s.to_string()),
        Err(e) => Err(e.to_string()),
    };
    assert!(plain.is_err(), "plaintext is not served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_client_certificates_work_side_by_side() {
    let certs = TestCerts::new("rsvp test authority");
    let app = TestApp::spawn_with(
        |_| {},
        ServerSettings {
            auth: Arc::new(
                Authenticator::tokens(Arc::new(TokenCache::new())).or_certificates(HashMap::new()),
            ),
            tls: Some(server_tls(&certs, false)),
            ..ServerSettings::default()
        },
    )
    .await;
    let backend = certs.client("booking-backend");
    assert_eq!(
        whoami(client(&app, &certs, Some(&backend)).await).await,
        Ok(("booking-backend".into(), pb::Role::User, "token".into())),
        "a certificate names the caller that sends no token"
    );
    let anonymous = whoami(client(&app, &certs, None).await).await;
    assert!(
        anonymous
            .as_ref()
            .is_err_and(|e| e.contains("Unauthenticated")),
        "TLS alone, with neither, is not enough: {anonymous:?}"
    );
}
