//! `grpc.health.v1` status that follows the database: SERVING while it
//! answers, NOT_SERVING while it does not.

use std::{sync::Arc, time::Duration};

use abi::pb::{
    reservation_service_server::ReservationServiceServer,
    resource_service_server::ResourceServiceServer,
};

use crate::resources::Resources;
use reservation::Rsvp;
use tokio_util::sync::CancellationToken;
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::rpc::RsvpService;

/// How long the database may take to answer a probe before it counts as
/// down. Probes use a connection of their own, so a busy pool does not
/// make them wait.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The service name whose status is liveness: SERVING while the process
/// runs and serves, whatever the database does. Readiness is the whole
/// server's status (service name ""), which follows the database.
pub const LIVENESS: &str = "liveness";

/// Pings the store every `every` and reports the result, for the whole
/// server (service name "") and for `reservation.ReservationService`.
pub(crate) async fn watch(
    store: Arc<dyn Rsvp>,
    reporter: HealthReporter,
    every: Duration,
    stop: CancellationToken,
) {
    let mut last = None;
    loop {
        let up = matches!(
            tokio::time::timeout(PROBE_TIMEOUT, store.ping()).await,
            Ok(Ok(()))
        );
        if last != Some(up) {
            let status = if up {
                tracing::info!("database reachable: serving");
                ServingStatus::Serving
            } else {
                tracing::warn!("database unreachable: not serving");
                ServingStatus::NotServing
            };
            reporter.set_service_status("", status).await;
            if up {
                reporter
                    .set_serving::<ReservationServiceServer<RsvpService>>()
                    .await;
                reporter
                    .set_serving::<ResourceServiceServer<Resources>>()
                    .await;
            } else {
                reporter
                    .set_not_serving::<ReservationServiceServer<RsvpService>>()
                    .await;
                reporter
                    .set_not_serving::<ResourceServiceServer<Resources>>()
                    .await;
            }
            last = Some(up);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
