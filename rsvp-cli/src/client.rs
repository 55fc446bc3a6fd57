//! The connection to rsvp-server, and calls with a deadline.

use std::{future::Future, time::Duration};

use abi::pb::reservation_service_client::ReservationServiceClient;
use tonic::{
    Request, Response, Status,
    transport::{Channel, Endpoint},
};

use crate::{error::CliError, exit::Exit};

/// A connected client.
pub type Client = ReservationServiceClient<Channel>;

/// Connects to `server` (`http://host:port`, or just `host:port`).
///
/// # Errors
/// A usage error for a malformed address; unreachable when nothing answers.
pub async fn connect(server: &str, timeout: Duration) -> Result<Client, CliError> {
    Ok(ReservationServiceClient::new(
        channel(server, timeout).await?,
    ))
}

/// A connection (an HTTP/2 channel) to `server`.
///
/// # Errors
/// As [`connect`].
pub async fn channel(server: &str, timeout: Duration) -> Result<Channel, CliError> {
    let url = if server.contains("://") {
        server.to_string()
    } else {
        format!("http://{server}")
    };
    let endpoint = Endpoint::from_shared(url)
        .map_err(|_| CliError::new(Exit::Usage, format!("--server: {server:?} is not a URL")))?
        .connect_timeout(timeout);
    endpoint
        .connect()
        .await
        .map_err(|e| CliError::unreachable(server, root_cause(&e)))
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
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(CliError::from_status(status, server)),
        Err(_) => Err(CliError::from_status(
            Status::deadline_exceeded("timed out"),
            server,
        )),
    }
}
