//! JSON Web Tokens over a real socket: each kind of key, and every claim
//! that must hold, with keys made for the test.

mod support;

use std::{path::Path, sync::Arc};

use abi::pb;
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use rsvp_server::{
    auth::Authenticator,
    jwt::{JwtVerifier, KeySource},
    server::ServerSettings,
};
use serde_json::{Value, json};
use support::TestApp;
use tonic::{Code, Request, metadata::MetadataValue};

const ISSUER: &str = "https://id.example.com";
const AUDIENCE: &str = "rsvp";

async fn server(keys: KeySource<'_>, role_claim: &str) -> TestApp {
    let verifier = JwtVerifier::new(keys, ISSUER, AUDIENCE, role_claim).unwrap();
    TestApp::spawn_with(
        |_| {},
        ServerSettings {
            auth: Arc::new(Authenticator::jwt(verifier)),
            ..ServerSettings::default()
        },
    )
    .await
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Claims that hold: for `sub`, from the issuer, for rsvp, valid now.
fn claims(sub: &str) -> Value {
    json!({"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600, "nbf": now() - 10})
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

fn sign(claims: &Value, algorithm: Algorithm, key: &EncodingKey, kid: Option<&str>) -> String {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_string);
    encode(&header, claims, key).unwrap()
}

/// Who the server takes the bearer of `jwt` to be, or the status code.
async fn whoami(app: &TestApp, jwt: &str) -> Result<(String, pb::Role), Code> {
    let mut request = Request::new(pb::WhoAmIRequest {});
    request.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {jwt}")).unwrap(),
    );
    app.client
        .clone()
        .who_am_i(request)
        .await
        .map(|r| {
            let r = r.into_inner();
            assert_eq!(r.auth, "jwt");
            let role = r.role();
            (r.principal, role)
        })
        .map_err(|s| s.code())
}

fn write(dir: &Path, name: &str, text: impl AsRef<[u8]>) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_es256_token_names_its_subject_and_every_claim_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let pair = rcgen::KeyPair::generate().unwrap();
    let public = write(dir.path(), "idp.pem", pair.public_key_pem());
    let app = server(KeySource::Public(&public), "role").await;
    let key = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
    let es = |claims: &Value| sign(claims, Algorithm::ES256, &key, None);

    assert_eq!(
        whoami(&app, &es(&claims("ann"))).await,
        Ok(("ann".into(), pb::Role::User)),
        "no role claim: a user"
    );
    assert_eq!(
        whoami(
            &app,
            &es(&with(claims("backend"), "role", json!("service")))
        )
        .await,
        Ok(("backend".into(), pb::Role::Service))
    );

    let other = rcgen::KeyPair::generate().unwrap();
    let forged = sign(
        &claims("ann"),
        Algorithm::ES256,
        &EncodingKey::from_ec_pem(other.serialize_pem().as_bytes()).unwrap(),
        None,
    );
    let hs_with_public_key = sign(
        &claims("ann"),
        Algorithm::HS256,
        &EncodingKey::from_secret(pair.public_key_pem().as_bytes()),
        None,
    );
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims("ann").to_string())
    );
    let refused = [
        (
            es(&with(claims("ann"), "iss", json!("https://evil.example"))),
            "another issuer",
        ),
        (
            es(&with(claims("ann"), "aud", json!("billing"))),
            "another audience",
        ),
        (
            es(&with(claims("ann"), "exp", json!(now() - 120))),
            "expired",
        ),
        (
            es(&with(claims("ann"), "nbf", json!(now() + 600))),
            "not valid yet",
        ),
        (es(&without(claims("ann"), "exp")), "no expiry"),
        (es(&without(claims("ann"), "aud")), "no audience"),
        (
            es(&with(claims("ann"), "role", json!("root"))),
            "an unknown role",
        ),
        (es(&with(claims(""), "sub", json!(""))), "an empty subject"),
        (forged, "signed by another key"),
        (hs_with_public_key, "HS256 keyed with the public key"),
        (unsigned, "alg none"),
        ("not.a.token".to_string(), "garbage"),
    ];
    for (jwt, case) in refused {
        assert_eq!(
            whoami(&app, &jwt).await,
            Err(Code::Unauthenticated),
            "{case}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_eddsa_from_a_jwks_and_hs256_keys_work_with_a_role_claim_of_ones_choice() {
    let dir = tempfile::tempdir().unwrap();

    // RS256 from a PEM public key.
    let rsa = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    let public = {
        use rsa::pkcs8::{EncodePublicKey, LineEnding};
        rsa.to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap()
    };
    let private = {
        use rsa::pkcs8::{EncodePrivateKey, LineEnding};
        rsa.to_pkcs8_pem(LineEnding::LF).unwrap().to_string()
    };
    let app = server(
        KeySource::Public(&write(dir.path(), "rsa.pem", public)),
        "rsvp_role",
    )
    .await;
    let key = EncodingKey::from_rsa_pem(private.as_bytes()).unwrap();
    assert_eq!(
        whoami(
            &app,
            &sign(
                &with(claims("ops"), "rsvp_role", json!("admin")),
                Algorithm::RS256,
                &key,
                None
            )
        )
        .await,
        Ok(("ops".into(), pb::Role::Admin)),
        "the role from the configured claim"
    );
    assert_eq!(
        whoami(
            &app,
            &sign(
                &with(claims("ops"), "role", json!("admin")),
                Algorithm::RS256,
                &key,
                None
            )
        )
        .await,
        Ok(("ops".into(), pb::Role::User)),
        "another claim named role is not the role"
    );

    // EdDSA from a JWKS file, chosen by kid.
    let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let jwks = json!({"keys": [{
        "kty": "OKP", "crv": "Ed25519", "kid": "2026-12",
        "x": URL_SAFE_NO_PAD.encode(ed.public_key_raw()),
    }]});
    let jwks = write(dir.path(), "jwks.json", jwks.to_string());
    let app = server(KeySource::Public(&jwks), "role").await;
    let key = EncodingKey::from_ed_pem(ed.serialize_pem().as_bytes()).unwrap();
    assert_eq!(
        whoami(
            &app,
            &sign(&claims("ann"), Algorithm::EdDSA, &key, Some("2026-12"))
        )
        .await,
        Ok(("ann".into(), pb::Role::User))
    );
    assert_eq!(
        whoami(
            &app,
            &sign(&claims("ann"), Algorithm::EdDSA, &key, Some("2025-01"))
        )
        .await,
        Err(Code::Unauthenticated),
        "a key id the set does not have"
    );

    // While keys rotate the set holds two of one algorithm, without ids:
    // a token signed by either works, by neither does not.
    let new = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let keys = [ed.public_key_raw(), new.public_key_raw()]
        .map(|x| json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(x)}));
    let jwks = json!({ "keys": keys });
    let jwks = write(dir.path(), "rotating.json", jwks.to_string());
    let app = server(KeySource::Public(&jwks), "role").await;
    for (signer, works) in [(&ed, true), (&new, true), (&other, false)] {
        let key = EncodingKey::from_ed_pem(signer.serialize_pem().as_bytes()).unwrap();
        let answer = whoami(&app, &sign(&claims("ann"), Algorithm::EdDSA, &key, None)).await;
        let expected = if works {
            Ok(("ann".into(), pb::Role::User))
        } else {
            Err(Code::Unauthenticated)
        };
        assert_eq!(answer, expected);
    }

    // HS256 from a secret file.
    let secret = "a shared secret of at least thirty-two bytes";
    let app = server(
        KeySource::Secret(&write(dir.path(), "secret", secret)),
        "role",
    )
    .await;
    let key = EncodingKey::from_secret(secret.as_bytes());
    assert_eq!(
        whoami(&app, &sign(&claims("svc"), Algorithm::HS256, &key, None)).await,
        Ok(("svc".into(), pb::Role::User))
    );
    let wrong = EncodingKey::from_secret(b"another secret of at least thirty-two bytes");
    assert_eq!(
        whoami(&app, &sign(&claims("svc"), Algorithm::HS256, &wrong, None)).await,
        Err(Code::Unauthenticated)
    );
    let short = write(dir.path(), "short", "too short");
    assert!(JwtVerifier::new(KeySource::Secret(&short), ISSUER, AUDIENCE, "role").is_err());
}

/// A server checking HS256 tokens, and the key to sign them with (the
/// directory holds its secret file).
async fn hs256_server() -> (TestApp, EncodingKey, tempfile::TempDir) {
    let secret = "a shared secret of at least thirty-two bytes";
    let dir = tempfile::tempdir().unwrap();
    let app = server(
        KeySource::Secret(&write(dir.path(), "secret", secret)),
        "role",
    )
    .await;
    (app, EncodingKey::from_secret(secret.as_bytes()), dir)
}

/// A Listen stream lasts as long as its token is accepted: past the
/// token's expiry (and the leeway allowed for clocks) it ends with
/// UNAUTHENTICATED, saying where to resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ends_when_its_token_expires() {
    let (app, key, _dir) = hs256_server().await;
    // Expired 59 s ago: accepted for one or two more seconds of the
    // minute's leeway.
    let jwt = sign(
        &with(claims("ann"), "exp", json!(now() - 59)),
        Algorithm::HS256,
        &key,
        None,
    );
    let mut request = Request::new(pb::ListenRequest::default());
    request.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {jwt}")).unwrap(),
    );
    let mut changes = app
        .client
        .clone()
        .listen(request)
        .await
        .unwrap()
        .into_inner();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), changes.message())
        .await
        .expect("the stream ends within 10 s");
    let status = ended.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    // From where the stream started: the empty feed's 0.
    assert!(
        status.message().contains("resume with after_change_id = 0"),
        "{status:?}"
    );
    assert_eq!(whoami(&app, &jwt).await, Err(Code::Unauthenticated));
}

/// An expiry may be a decimal number (RFC 7519's NumericDate), or so far
/// ahead that no time holds it: both are accepted as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiries_that_are_decimals_or_far_ahead_are_accepted() {
    let (app, key, _dir) = hs256_server().await;
    for exp in [json!(now() as f64 + 3600.5), json!(1e15), json!(u64::MAX)] {
        let jwt = sign(
            &with(claims("ann"), "exp", exp.clone()),
            Algorithm::HS256,
            &key,
            None,
        );
        assert_eq!(
            whoami(&app, &jwt).await,
            Ok(("ann".into(), pb::Role::User)),
            "exp {exp}"
        );
    }
}
