//! The background sweeper: marks overdue holds expired (each a change event)
//! and trims the change feed. Reads never depend on it having run.

use std::{sync::Arc, time::Duration};

use reservation::Rsvp;
use tokio_util::sync::CancellationToken;

/// Sweeps every `every` until `stop`.
pub(crate) async fn run(store: Arc<dyn Rsvp>, every: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        match store.sweep().await {
            Ok(report) if report.expired > 0 || report.purged_changes > 0 => {
                tracing::info!(
                    expired = report.expired,
                    purged_changes = report.purged_changes,
                    "swept"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e.chain(), "sweep failed; will retry"),
        }
    }
}
