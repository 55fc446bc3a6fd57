//! The connection to rsvp-server, and calls with a deadline.

use std::{future::Future, time::Duration};

use abi::pb::reservation_service_client::ReservationServiceClient;
use tonic::{
    Request, Response, Status,
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};

use crate::{error::CliError, exit::Exit};

/// A connection that sends the caller's credentials with every call.
pub type Transport = InterceptedService<Channel, Credentials>;

/// A connected client.
pub type Client = ReservationServiceClient<Transport>;

/// Where the server is and who is calling.
#[derive(Clone, Debug)]
pub struct Target {
    /// The server's address: `http://host:port`, or just `host:port`.
    pub server: String,
    /// How long to wait for a connection.
    pub timeout: Duration,
    /// Sent as `authorization: Bearer <token>` with every call.
    pub credentials: Credentials,
    /// How to check an `https://` server, and what certificate to show it.
    pub tls: ClientTlsConfig,
}

/// TLS for `https://` servers: the authorities to trust (`ca_cert`, else the
/// system's) and a client certificate with its key, if given.
///
/// # Errors
/// A usage error naming a file that cannot be read.
pub fn tls(
    ca_cert: Option<&std::path::Path>,
    cert_and_key: Option<(&std::path::Path, &std::path::Path)>,
) -> Result<ClientTlsConfig, CliError> {
    let read = |path: &std::path::Path, flag: &str| {
        std::fs::read(path).map_err(|e| {
            CliError::new(
                Exit::Usage,
                format!("{flag}: cannot read {}: {e}", path.display()),
            )
        })
    };
    let mut tls = ClientTlsConfig::new();
    tls = match ca_cert {
        Some(path) => tls.ca_certificate(Certificate::from_pem(read(path, "--ca-cert")?)),
        None => tls.with_native_roots(),
    };
    if let Some((cert, key)) = cert_and_key {
        tls = tls.identity(Identity::from_pem(
            read(cert, "--cert")?,
            read(key, "--key")?,
        ));
    }
    Ok(tls)
}

/// The `authorization` header every call carries, if any. Its `Debug`
/// hides the token.
#[derive(Clone, Default)]
pub struct Credentials(Option<MetadataValue<Ascii>>);

impl Credentials {
    /// Credentials from a token.
    ///
    /// # Errors
    /// A usage error for a token that cannot be sent in a header.
    pub fn bearer(token: &str) -> Result<Self, CliError> {
        let mut value: MetadataValue<Ascii> =
            format!("Bearer {}", token.trim()).parse().map_err(|_| {
                CliError::new(Exit::Usage, "--token: not a token (unexpected characters)")
            })?;
        value.set_sensitive(true);
        Ok(Credentials(Some(value)))
    }

    /// The `authorization` header's value, if any.
    pub fn header(&self) -> Option<String> {
        self.0
            .as_ref()
            .and_then(|value| value.to_str().ok())
            .map(str::to_string)
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Credentials(Bearer ****)"
        } else {
            "Credentials(none)"
        })
    }
}

impl Interceptor for Credentials {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// Connects to the target's server.
///
/// # Errors
/// A usage error for a malformed address; unreachable when nothing answers.
pub async fn connect(target: &Target) -> Result<Client, CliError> {
    Ok(ReservationServiceClient::new(channel(target).await?))
}

/// A connection (an HTTP/2 channel) to the target's server, carrying its
/// credentials.
///
/// # Errors
/// As [`connect`].
pub async fn channel(target: &Target) -> Result<Transport, CliError> {
    let (server, timeout) = (target.server.as_str(), target.timeout);
    let url = if server.contains("://") {
        server.to_string()
    } else {
        format!("http://{server}")
    };
    let endpoint = Endpoint::from_shared(url)
        .map_err(|_| CliError::new(Exit::Usage, format!("--server: {server:?} is not a URL")))?
        .connect_timeout(timeout);
    let endpoint = if endpoint.uri().scheme_str() == Some("https") {
        endpoint
            .tls_config(target.tls.clone())
            .map_err(|e| CliError::new(Exit::Usage, format!("TLS: {}", root_cause(&e))))?
    } else {
        endpoint
    };
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| CliError::unreachable(server, root_cause(&e)))?;
    Ok(InterceptedService::new(channel, target.credentials.clone()))
}

/// The innermost cause, which is what says what happened.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string().to_lowercase()
}

/// `request` with the deadline sent along, so the server stops too.
pub fn with_deadline<T>(message: T, timeout: Duration) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(timeout);
    request
}

/// Awaits a call for at most `timeout`.
///
/// # Errors
/// What the failed call means to the user.
pub async fn call<T>(
    server: &str,
    timeout: Duration,
    call: impl Future<Output = Result<Response<T>, Status>>,
) -> Result<T, CliError> {
    call_as(server, timeout, call, |status| {
        CliError::from_status(status, server)
    })
    .await
}

/// [`call`], a refusal told in the words of `refused`.
///
/// # Errors
/// What the failed call means to the user.
pub async fn call_as<T>(
    server: &str,
    timeout: Duration,
    call: impl Future<Output = Result<Response<T>, Status>>,
    refused: impl FnOnce(Status) -> CliError,
) -> Result<T, CliError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(refused(status)),
        Err(_) => Err(CliError::from_status(
            Status::deadline_exceeded("timed out"),
            server,
        )),
    }
}
