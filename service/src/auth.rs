//! Who is calling: every request's credentials become a [`Caller`] here,
//! before any handler runs. What a caller may then do is decided in the
//! library (`reservation::Access`), not here.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use abi::{ApiToken, Caller, Role, TokenDigest, TokenSecret, UserId};
use chrono::{DateTime, Utc};

use crate::jwt::JwtVerifier;
use reservation::Rsvp;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Status, service::Interceptor};

/// How callers prove who they are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// No credentials: every caller is an admin. Allowed only while the
    /// server listens on loopback.
    #[default]
    None,
    /// Opaque API tokens made with `rsvp-server token create`, sent as
    /// `authorization: Bearer <token>` (or a client certificate, when the
    /// server accepts them and no token is sent).
    Token,
    /// JSON Web Tokens from an identity provider, sent as
    /// `authorization: Bearer <jwt>`.
    Jwt,
    /// Client certificates (TLS): the subject's common name is the
    /// principal.
    Mtls,
}

impl AuthMode {
    /// The mode's name, as in the settings.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::None => "none",
            AuthMode::Token => "token",
            AuthMode::Jwt => "jwt",
            AuthMode::Mtls => "mtls",
        }
    }
}

impl fmt::Display for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Turns a request's credentials into its caller.
#[derive(Debug)]
pub struct Authenticator {
    mode: AuthMode,
    tokens: Option<Arc<TokenCache>>,
    /// Set when client certificates name callers: each principal's role
    /// (`user` when not listed).
    certificates: Option<HashMap<String, Role>>,
    jwt: Option<JwtVerifier>,
}

impl Authenticator {
    /// No authentication: every caller is [`Caller::system`].
    pub fn none() -> Self {
        Authenticator {
            mode: AuthMode::None,
            tokens: None,
            certificates: None,
            jwt: None,
        }
    }

    /// API tokens, checked against `cache` (no database round trip).
    pub fn tokens(cache: Arc<TokenCache>) -> Self {
        Authenticator {
            mode: AuthMode::Token,
            tokens: Some(cache),
            ..Authenticator::none()
        }
    }

    /// Client certificates: the subject's common name is the principal,
    /// its role from `roles` (`user` when not listed).
    pub fn certificates(roles: HashMap<String, Role>) -> Self {
        Authenticator {
            mode: AuthMode::Mtls,
            certificates: Some(roles),
            ..Authenticator::none()
        }
    }

    /// JSON Web Tokens, checked by `verifier`.
    pub fn jwt(verifier: JwtVerifier) -> Self {
        Authenticator {
            mode: AuthMode::Jwt,
            jwt: Some(verifier),
            ..Authenticator::none()
        }
    }

    /// Also accepts client certificates, as [`Authenticator::certificates`],
    /// from callers that send no token.
    pub fn or_certificates(mut self, roles: HashMap<String, Role>) -> Self {
        self.certificates = Some(roles);
        self
    }

    /// The mode.
    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// The token cache to keep fresh, if tokens are checked.
    pub fn token_cache(&self) -> Option<&Arc<TokenCache>> {
        self.tokens.as_ref()
    }

    /// The caller of `request`.
    ///
    /// # Errors
    /// `UNAUTHENTICATED` when credentials are missing or not valid, saying
    /// nothing else.
    pub fn authenticate<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        self.credentials(request).map(|(caller, _)| caller)
    }

    /// The caller of `request`, and its credentials to check again while
    /// its streams stay open.
    ///
    /// # Errors
    /// As [`Authenticator::authenticate`].
    pub fn credentials<T>(&self, request: &Request<T>) -> Result<(Caller, Credentials), Status> {
        let invalid = || Status::unauthenticated("invalid credentials");
        let lasting = |caller| (caller, Credentials(Held::Lasting(AuthMode::None)));
        let certified = |caller| (caller, Credentials(Held::Lasting(AuthMode::Mtls)));
        match self.mode {
            AuthMode::None => Ok(lasting(Caller::system())),
            AuthMode::Token | AuthMode::Jwt => {
                if request.metadata().get("authorization").is_none()
                    && let Some(caller) = self.certificate_caller(request)
                {
                    return Ok(certified(caller));
                }
                let credentials = bearer(request)?;
                match (&self.tokens, &self.jwt) {
                    (Some(tokens), _) => {
                        let digest = TokenSecret::from_presented(credentials).digest();
                        let caller = tokens.caller_of(&digest)?.ok_or_else(invalid)?;
                        let held = Held::Token {
                            cache: tokens.clone(),
                            digest,
                        };
                        Ok((caller, Credentials(held)))
                    }
                    (None, Some(jwt)) => {
                        let (caller, expires) = jwt.verify(credentials).ok_or_else(invalid)?;
                        Ok((caller, Credentials(Held::Until(expires))))
                    }
                    (None, None) => Err(invalid()),
                }
            }
            AuthMode::Mtls => self
                .certificate_caller(request)
                .map(certified)
                .ok_or_else(|| {
                    Status::unauthenticated(
                        "credentials required: a client certificate signed by an authority the \
                     server trusts",
                    )
                }),
        }
    }

    /// The caller a verified client certificate names: its subject's
    /// common name, if it is a valid principal.
    fn certificate_caller<T>(&self, request: &Request<T>) -> Option<Caller> {
        let roles = self.certificates.as_ref()?;
        let chain = request.peer_certs()?;
        let (_, leaf) = x509_parser::parse_x509_certificate(chain.first()?.as_ref()).ok()?;
        let name = leaf.subject().iter_common_name().next()?.as_str().ok()?;
        let principal = UserId::parse(name).ok()?;
        let role = roles.get(name).copied().unwrap_or(Role::User);
        Some(Caller::new(principal, role))
    }
}

/// The credentials of `authorization: Bearer <credentials>`.
fn bearer<T>(request: &Request<T>) -> Result<&str, Status> {
    let missing = || {
        Status::unauthenticated(
            "credentials required: send the header authorization: Bearer <token>",
        )
    };
    let value = request
        .metadata()
        .get("authorization")
        .ok_or_else(missing)?
        .to_str()
        .map_err(|_| Status::unauthenticated("invalid credentials"))?;
    let (scheme, credentials) = value.trim().split_once(' ').ok_or_else(missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || credentials.trim().is_empty() {
        return Err(missing());
    }
    Ok(credentials.trim())
}

/// How long tokens loaded from the store are trusted without a reload
/// that succeeds: a revoked token stops working on every server within it,
/// even on a server that cannot reach the store.
pub const TOKENS_TRUSTED_FOR: Duration = Duration::from_secs(10);

/// The active API tokens, by digest, held in memory and reloaded from the
/// store every few seconds: checking a token costs no database round trip,
/// and a token revoked through any server stops working on every server
/// within one reload. Tokens not reloaded for [`TOKENS_TRUSTED_FOR`] are
/// not trusted: calls are then `UNAVAILABLE` until a reload succeeds.
#[derive(Debug)]
pub struct TokenCache {
    active: RwLock<HashMap<TokenDigest, ApiToken>>,
    loaded_at: RwLock<Option<Instant>>,
    trusted_for: Duration,
}

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache::trusted_for(TOKENS_TRUSTED_FOR)
    }
}

impl TokenCache {
    /// An empty cache; [`TokenCache::reload`] fills it.
    pub fn new() -> Self {
        TokenCache::default()
    }

    /// An empty cache whose tokens are trusted for `trusted_for` after
    /// each reload.
    pub fn trusted_for(trusted_for: Duration) -> Self {
        TokenCache {
            active: RwLock::default(),
            loaded_at: RwLock::default(),
            trusted_for,
        }
    }

    /// The caller a token authenticates, if it is active.
    ///
    /// # Errors
    /// `UNAVAILABLE` when the tokens have not been reloaded for too long
    /// (the store is out of reach): a revoked token might pass.
    pub fn caller(&self, secret: &TokenSecret) -> Result<Option<Caller>, Status> {
        self.caller_of(&secret.digest())
    }

    /// The caller the active token of `digest` authenticates, if there is
    /// one.
    ///
    /// # Errors
    /// As [`TokenCache::caller`].
    fn caller_of(&self, digest: &TokenDigest) -> Result<Option<Caller>, Status> {
        let fresh = self
            .loaded_at
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|at| at.elapsed() <= self.trusted_for);
        if !fresh {
            return Err(Status::unavailable(
                "credentials cannot be checked now: the server cannot read its tokens; retry later",
            ));
        }
        let active = self.active.read().unwrap_or_else(|e| e.into_inner());
        Ok(active
            .get(digest)
            .filter(|token| token.is_active(Utc::now()))
            .map(|token| Caller::new(token.principal.clone(), token.role)))
    }

    /// Replaces what the cache holds with the store's active tokens.
    ///
    /// # Errors
    /// When the store cannot be read; the cache keeps what it held.
    pub async fn reload(&self, store: &dyn Rsvp) -> abi::Result<usize> {
        let now = Utc::now();
        let active: HashMap<TokenDigest, ApiToken> = store
            .tokens()
            .await?
            .into_iter()
            .filter(|token| token.is_active(now))
            .map(|token| (token.digest, token))
            .collect();
        let count = active.len();
        *self.active.write().unwrap_or_else(|e| e.into_inner()) = active;
        *self.loaded_at.write().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        Ok(count)
    }

    /// Reloads every `interval` until `stop` is cancelled.
    pub async fn keep_fresh(
        self: Arc<Self>,
        store: Arc<dyn Rsvp>,
        interval: Duration,
        stop: CancellationToken,
    ) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            if let Err(e) = self.reload(store.as_ref()).await {
                tracing::warn!(error = %e.chain(), "cannot reload API tokens; keeping those loaded");
            }
        }
    }
}

/// A caller's credentials as they were presented, kept with its streams
/// (Query, Listen) to check again while they stay open: a stream ends when
/// its token is revoked or expires, as a new call with it would be refused.
#[derive(Clone, Debug)]
pub struct Credentials(Held);

#[derive(Clone)]
enum Held {
    /// Nothing that lapses while the connection lasts: no authentication
    /// (`None`), or a client certificate (`Mtls`, checked when the
    /// connection was made).
    Lasting(AuthMode),
    /// An API token, active while the cache holds it.
    Token {
        cache: Arc<TokenCache>,
        digest: TokenDigest,
    },
    /// A JSON Web Token, good until its expiry.
    Until(DateTime<Utc>),
}

impl fmt::Debug for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Held::Lasting(mode) => write!(f, "Lasting({mode})"),
            Held::Token { .. } => f.write_str("Token"),
            Held::Until(expires) => write!(f, "Until({expires})"),
        }
    }
}

impl Credentials {
    /// Credentials that never lapse: no authentication.
    pub fn lasting() -> Self {
        Credentials(Held::Lasting(AuthMode::None))
    }

    /// How the caller was authenticated: none, token, jwt or mtls.
    pub fn method(&self) -> AuthMode {
        match self.0 {
            Held::Lasting(mode) => mode,
            Held::Token { .. } => AuthMode::Token,
            Held::Until(_) => AuthMode::Jwt,
        }
    }

    /// Whether the credentials still hold.
    ///
    /// # Errors
    /// `UNAUTHENTICATED` when the token was revoked or has expired;
    /// `UNAVAILABLE` when the server cannot tell (its tokens are stale).
    pub fn check(&self) -> Result<(), Status> {
        let lapsed = || {
            Status::unauthenticated(
                "the credentials this stream was opened with were revoked or have expired",
            )
        };
        match &self.0 {
            Held::Lasting(_) => Ok(()),
            Held::Token { cache, digest } => match cache.caller_of(digest)? {
                Some(_) => Ok(()),
                None => Err(lapsed()),
            },
            Held::Until(expires) if Utc::now() < *expires => Ok(()),
            Held::Until(_) => Err(lapsed()),
        }
    }
}

/// Puts each request's [`Caller`] and [`Credentials`] in its extensions,
/// or refuses it.
#[derive(Clone, Debug)]
pub struct Authenticate(pub Arc<Authenticator>);

impl Interceptor for Authenticate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let (caller, credentials) = self.0.credentials(&request)?;
        request.extensions_mut().insert(caller);
        request.extensions_mut().insert(credentials);
        Ok(request)
    }
}

/// The caller the interceptor found for `request`.
///
/// # Errors
/// `UNAUTHENTICATED` when no caller was established.
pub(crate) fn caller<T>(request: &Request<T>) -> Result<Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("credentials required"))
}

/// The credentials the interceptor found for `request`; lasting when
/// none were put there.
pub(crate) fn credentials<T>(request: &Request<T>) -> Credentials {
    request
        .extensions()
        .get::<Credentials>()
        .cloned()
        .unwrap_or_else(Credentials::lasting)
}

#[cfg(test)]
mod tests {
    use abi::{NewToken, Role, UserId};
    use reservation::{Rsvp, SqliteStore, StoreOptions};

    use super::*;

    #[tokio::test]
    async fn tokens_not_reloaded_for_too_long_are_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("rsvp.db"), StoreOptions::default())
            .await
            .unwrap();
        let (_, secret) = store
            .create_token(NewToken {
                principal: UserId::parse("ann").unwrap(),
                role: Role::User,
                expires_at: None,
            })
            .await
            .unwrap();
        let cache = TokenCache::trusted_for(Duration::from_millis(200));
        assert!(cache.caller(&secret).is_err(), "nothing loaded yet");
        cache.reload(&store).await.unwrap();
        assert_eq!(
            cache.caller(&secret).unwrap().map(|c| c.to_string()),
            Some("ann (user)".to_string())
        );
        assert_eq!(
            cache
                .caller(&TokenSecret::from_presented("rsvp_other"))
                .unwrap(),
            None
        );
        // No reload since (the store out of reach, say): a token revoked
        // meanwhile must not pass, so none does.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stale = cache.caller(&secret).unwrap_err();
        assert_eq!(stale.code(), tonic::Code::Unavailable);
        cache.reload(&store).await.unwrap();
        assert!(cache.caller(&secret).unwrap().is_some(), "trusted again");
    }
}
