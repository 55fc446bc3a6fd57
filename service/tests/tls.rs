//! gRPC over TLS, with client certificates naming principals, over a real
//! socket, with certificates made for the test.

mod support;

use std::{collections::HashMap, sync::Arc};

use abi::{Role, pb};
use rsvp_server::tls::ServerTls;
use rsvp_server::{
    auth::{Authenticator, TokenCache},
    server::ServerSettings,
};
use rsvp_testing::{CertFiles, TestCerts};
use support::TestApp;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

type Client = pb::reservation_service_client::ReservationServiceClient<Channel>;

fn server_tls(certs: &TestCerts, client_certificates_required: bool) -> ServerTls {
    let server = certs.server();
    ServerTls::new(
        std::fs::read(server.cert).unwrap(),
        std::fs::read(server.key).unwrap(),
    )
    .client_ca_root(std::fs::read(certs.ca()).unwrap())
    .client_auth_optional(!client_certificates_required)
}

/// A server that requires client certificates signed by `certs`' authority,
/// naming callers by them (`ops` an admin).
async fn mtls_server(certs: &TestCerts) -> TestApp {
    TestApp::spawn_with(
        |_| {},
        ServerSettings {
            auth: Arc::new(Authenticator::certificates(HashMap::from([(
                "ops".to_string(),
                Role::Admin,
            )]))),
            tls: Some(server_tls(certs, true)),
            ..ServerSettings::default()
        },
    )
    .await
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
    let app = mtls_server(&certs).await;

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
        Ok(("booking-backend".into(), pb::Role::User, "mtls".into())),
        "a certificate names the caller that sends no token, authenticated by it"
    );
    let anonymous = whoami(client(&app, &certs, None).await).await;
    assert!(
        anonymous
            .as_ref()
            .is_err_and(|e| e.contains("Unauthenticated")),
        "TLS alone, with neither, is not enough: {anonymous:?}"
    );
}

/// An HTTPS request over HTTP/1.1 (a client that offers only `http/1.1`
/// in ALPN, as many REST clients do), with a client certificate; its
/// `/v1/whoami` answer.
async fn https_whoami(app: &TestApp, certs: &TestCerts, identity: &CertFiles) -> (String, String) {
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::{TlsConnector, rustls};

    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(certs.ca()).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let chain = CertificateDer::pem_file_iter(&identity.cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&identity.key).unwrap();
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let mut tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("a TLS handshake offering only http/1.1");
    let alpn =
        String::from_utf8_lossy(tls.get_ref().1.alpn_protocol().unwrap_or_default()).into_owned();
    tls.write_all(b"GET /v1/whoami HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tls.read_to_string(&mut answer).await.unwrap();
    (alpn, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_http1_clients_and_client_certificates_name_them() {
    let certs = TestCerts::new("rsvp test authority");
    let app = mtls_server(&certs).await;
    let (alpn, answer) = https_whoami(&app, &certs, &certs.client("ops")).await;
    assert_eq!(alpn, "http/1.1");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The certificate reached the call through the HTTP/JSON route.
    assert!(answer.contains(r#""principal":"ops""#), "{answer}");
    assert!(answer.contains(r#""role":"ROLE_ADMIN""#), "{answer}");
    // gRPC clients (h2) still work on the same port.
    assert_eq!(
        whoami(client(&app, &certs, Some(&certs.client("ann"))).await).await,
        Ok(("ann".into(), pb::Role::User, "mtls".into())),
    );
}
