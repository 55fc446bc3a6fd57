//! Who is calling: every request's credentials become a [`Caller`] here,
//! before any handler runs. What a caller may then do is decided in the
//! library (`reservation::Access`), not here.

use std::{fmt, sync::Arc};

use abi::Caller;
use serde::{Deserialize, Serialize};
use tonic::{Request, Status, service::Interceptor};

/// How callers prove who they are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// No credentials: every caller is an admin. Allowed only while the
    /// server listens on loopback.
    #[default]
    None,
}

impl AuthMode {
    /// The mode's name, as in the settings.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::None => "none",
        }
    }
}

impl fmt::Display for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Turns a request's credentials into its caller.
#[derive(Clone, Debug)]
pub struct Authenticator {
    mode: AuthMode,
}

impl Authenticator {
    /// Authentication as `mode` says.
    pub fn new(mode: AuthMode) -> Self {
        Authenticator { mode }
    }

    /// The mode.
    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// The caller of `request`.
    ///
    /// # Errors
    /// `UNAUTHENTICATED` when credentials are missing or not valid, saying
    /// nothing else.
    pub fn authenticate<T>(&self, _request: &Request<T>) -> Result<Caller, Status> {
        match self.mode {
            AuthMode::None => Ok(Caller::system()),
        }
    }
}

/// Puts each request's [`Caller`] in its extensions, or refuses it.
#[derive(Clone, Debug)]
pub struct Authenticate(pub Arc<Authenticator>);

impl Interceptor for Authenticate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let caller = self.0.authenticate(&request)?;
        request.extensions_mut().insert(caller);
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
