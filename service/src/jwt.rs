//! JSON Web Tokens from an identity provider (`auth = "jwt"`): the
//! signature checked against a configured key (RS256, ES256 or EdDSA from
//! a public key or a JWKS file; HS256 from a secret file), then the
//! issuer, audience, expiry and not-before. `sub` is the principal; the
//! role is a configured claim (`user` when absent).

use std::path::Path;

use abi::{Caller, Role, UserId};
use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use jsonwebtoken::{
    Algorithm, DecodingKey, Validation, decode, decode_header,
    jwk::{AlgorithmParameters, JwkSet},
};
use serde::Deserialize;

/// One key a token may be signed with.
struct Key {
    /// The JWKS `kid`, if it has one.
    id: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// Checks tokens against the configured keys and claims.
pub struct JwtVerifier {
    keys: Vec<Key>,
    issuer: String,
    audience: String,
    role_claim: String,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("keys", &self.keys.len())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("role_claim", &self.role_claim)
            .finish()
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    /// Seconds since the epoch, a whole or a decimal number; required by
    /// the validation.
    exp: f64,
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

/// Where the keys come from.
#[derive(Clone, Copy, Debug)]
pub enum KeySource<'a> {
    /// A public key (PEM: RSA, EC P-256 or Ed25519) or a JWKS file (JSON).
    Public(&'a Path),
    /// A file holding the HS256 secret.
    Secret(&'a Path),
}

impl JwtVerifier {
    /// A verifier of tokens signed by `keys`, issued by `issuer` for
    /// `audience`, with the role in claim `role_claim`.
    ///
    /// # Errors
    /// When a file cannot be read or holds no key rsvp can use.
    pub fn new(
        keys: KeySource<'_>,
        issuer: &str,
        audience: &str,
        role_claim: &str,
    ) -> anyhow::Result<Self> {
        let keys = match keys {
            KeySource::Secret(path) => {
                let secret = std::fs::read(path)
                    .with_context(|| format!("reading jwt_secret_file {}", path.display()))?;
                let secret = secret.trim_ascii();
                if secret.len() < 32 {
                    bail!("jwt_secret_file: an HS256 secret needs at least 32 bytes");
                }
                vec![Key {
                    id: None,
                    algorithm: Algorithm::HS256,
                    key: DecodingKey::from_secret(secret),
                }]
            }
            KeySource::Public(path) => {
                let text = std::fs::read(path)
                    .with_context(|| format!("reading jwt_key {}", path.display()))?;
                if text.trim_ascii_start().starts_with(b"{") {
                    jwks(&text).context("jwt_key: not a JWKS file rsvp can use")?
                } else {
                    vec![pem(&text).context("jwt_key: not a public key rsvp can use")?]
                }
            }
        };
        Ok(JwtVerifier {
            keys,
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            role_claim: role_claim.to_string(),
        })
    }

    /// The caller a token names, if its signature and claims hold now.
    pub fn caller(&self, token: &str) -> Option<Caller> {
        self.verify(token).map(|(caller, _)| caller)
    }

    /// The caller a token names and until when the token is accepted (its
    /// expiry and the leeway allowed for clocks), if its signature and
    /// claims hold now.
    pub fn verify(&self, token: &str) -> Option<(Caller, DateTime<Utc>)> {
        let header = decode_header(token).ok()?;
        // The header's algorithm must be the key's: a token cannot choose
        // how it is checked.
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        validation.validate_nbf = true;
        // Each key of its algorithm (of its `kid`, when both name one) in
        // turn: while keys rotate, a JWKS holds the old and the new, and a
        // token need not say which signed it.
        let claims = self
            .keys
            .iter()
            .filter(|k| {
                k.algorithm == header.alg
                    && match (&header.kid, &k.id) {
                        (Some(wanted), Some(id)) => wanted == id,
                        _ => true,
                    }
            })
            .find_map(|key| decode::<Claims>(token, &key.key, &validation).ok())?
            .claims;
        let role = match claims.other.get(&self.role_claim) {
            None => Role::User,
            Some(serde_json::Value::String(role)) => role.parse().ok()?,
            Some(_) => return None,
        };
        // Accepted through the whole second of its expiry and the leeway
        // the validation allows, as the validation counts in seconds; an
        // expiry past what a time holds is no expiry.
        let until = claims.exp.ceil() + validation.leeway as f64 + 1.0;
        let expires = (until < i64::MAX as f64)
            .then(|| DateTime::from_timestamp(until as i64, 0))
            .flatten()
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        Some((Caller::new(UserId::parse(claims.sub).ok()?, role), expires))
    }
}

/// A public key in PEM: RSA (RS256), EC P-256 (ES256) or Ed25519 (EdDSA).
fn pem(text: &[u8]) -> anyhow::Result<Key> {
    let tried = [
        (Algorithm::RS256, DecodingKey::from_rsa_pem(text)),
        (Algorithm::ES256, DecodingKey::from_ec_pem(text)),
        (Algorithm::EdDSA, DecodingKey::from_ed_pem(text)),
    ];
    tried
        .into_iter()
        .find_map(|(algorithm, key)| {
            key.ok().map(|key| Key {
                id: None,
                algorithm,
                key,
            })
        })
        .context("expected an RSA, EC P-256 or Ed25519 public key in PEM")
}

/// The usable keys of a JWKS (`{"keys": [...]}`) or of a single JWK.
fn jwks(text: &[u8]) -> anyhow::Result<Vec<Key>> {
    let set: JwkSet = match serde_json::from_slice(text) {
        Ok(set) => set,
        Err(_) => JwkSet {
            keys: vec![serde_json::from_slice(text)?],
        },
    };
    let keys: Vec<Key> = set
        .keys
        .iter()
        .filter_map(|jwk| {
            let algorithm = match (&jwk.algorithm, jwk.common.key_algorithm) {
                (_, Some(alg)) => alg.to_string().parse().ok()?,
                (AlgorithmParameters::RSA(_), None) => Algorithm::RS256,
                (AlgorithmParameters::EllipticCurve(_), None) => Algorithm::ES256,
                (AlgorithmParameters::OctetKeyPair(_), None) => Algorithm::EdDSA,
                (AlgorithmParameters::OctetKey(_), None) => return None,
            };
            if !matches!(
                algorithm,
                Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA
            ) {
                return None;
            }
            Some(Key {
                id: jwk.common.key_id.clone(),
                algorithm,
                key: DecodingKey::from_jwk(jwk).ok()?,
            })
        })
        .collect();
    if keys.is_empty() {
        bail!("no RS256, ES256 or EdDSA public key in it");
    }
    Ok(keys)
}
