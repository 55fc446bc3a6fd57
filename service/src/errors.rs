//! Errors as clients see them: the one place a library error becomes a
//! gRPC status on its way out of the server, with its whole cause chain
//! logged here and never sent.

use tonic::Status;

/// The status a client sees for `e`. Causes of internal and unavailable
/// errors are logged here, whole, and never sent.
pub(crate) fn status(e: abi::Error) -> Status {
    match &e {
        abi::Error::Internal(_) => tracing::error!(error = %e.chain(), "internal error"),
        abi::Error::Unavailable(_) | abi::Error::Busy(_) | abi::Error::Aborted { .. } => {
            tracing::warn!(error = %e.chain(), "call failed, retryable")
        }
        _ => {}
    }
    Status::from(e)
}
