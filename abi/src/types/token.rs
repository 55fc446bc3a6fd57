//! API tokens: opaque secrets that name a principal and its role. Only
//! their SHA-256 digest is stored; the secret is shown once, when made.

use std::fmt;

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::{Role, TokenId, UserId};

/// What every token's text starts with, so that a leaked one is easy to
/// recognise (secret scanners look for such prefixes).
pub const TOKEN_PREFIX: &str = "rsvp_";

/// A token's secret text. Its `Debug` hides it; nothing logs it.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSecret(String);

impl TokenSecret {
    /// A new secret: the prefix and 256 random bits.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        TokenSecret(format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// A secret as a caller presents it.
    pub fn from_presented(text: &str) -> Self {
        TokenSecret(text.to_string())
    }

    /// The secret's text: to show once to whoever made it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What the store keeps instead of the secret.
    pub fn digest(&self) -> TokenDigest {
        TokenDigest(Sha256::digest(self.0.as_bytes()).into())
    }
}

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSecret(****)")
    }
}

/// The SHA-256 digest of a token's secret. A secret has 256 random bits,
/// so a fast hash is enough: no one can find a secret from its digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    /// The digest's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A digest read back from the store.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(TokenDigest)
    }
}

impl fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenDigest(..)")
    }
}

/// A token as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiToken {
    /// Its id.
    pub id: TokenId,
    /// Who it authenticates.
    pub principal: UserId,
    /// What that principal may do.
    pub role: Role,
    /// The digest of its secret.
    pub digest: TokenDigest,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it stops working; `None`: never.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiToken {
    /// Whether it authenticates a caller at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| now < at)
    }
}

/// A token to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewToken {
    /// Who it authenticates.
    pub principal: UserId,
    /// What that principal may do.
    pub role: Role,
    /// When it stops working; `None`: never.
    pub expires_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_prefixed_and_never_shown_by_debug() {
        let a = TokenSecret::generate();
        let b = TokenSecret::generate();
        assert_ne!(a, b);
        assert!(a.expose().starts_with(TOKEN_PREFIX));
        assert_eq!(a.expose().len(), TOKEN_PREFIX.len() + 43);
        assert!(!format!("{a:?}").contains(&a.expose()[5..]));
        assert_eq!(
            a.digest(),
            TokenSecret::from_presented(a.expose()).digest(),
            "the presented secret has the stored digest"
        );
        assert_ne!(a.digest(), b.digest());
    }
}
