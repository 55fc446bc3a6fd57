//! The server: the reservation service over gRPC, gRPC-Web and HTTP/JSON
//! on one address, health, reflection, per-call logs, the sweeper, and
//! graceful shutdown.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use abi::pb::{
    self, reservation_service_server::ReservationServiceServer,
    resource_service_server::ResourceServiceServer,
};
use anyhow::Context;
use reservation::Rsvp;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{
    codegen::http,
    service::{Routes, interceptor::InterceptedService},
    transport::{Server, server::TcpIncoming},
};
use tonic_web::GrpcWebLayer;
use tower::{ServiceBuilder, util::BoxCloneSyncService};

use crate::{
    auth::{Authenticate, Authenticator},
    health,
    limits::Limits,
    paths::DesignPaths,
    rpc::RsvpService,
    sweeper,
    telemetry::{self, CallLayer, CallLog},
    tls::{self, ServerTls},
    web::{
        Web,
        transcode::{Fallback, GrpcService},
    },
};

/// How the server runs, beyond what the store decides.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    /// How often overdue holds are marked expired.
    pub sweep_interval: Duration,
    /// How often the database is pinged for the health status.
    pub health_interval: Duration,
    /// How long shutdown waits for in-flight calls before giving up.
    pub shutdown_grace: Duration,
    /// The largest request message accepted, in bytes.
    pub max_message_bytes: usize,
    /// Most Query and Listen streams open at once, in total.
    pub max_streams: usize,
    /// Most streams open at once on one connection (HTTP/2).
    pub max_streams_per_connection: u32,
    /// A stream whose client reads nothing for this long ends.
    pub stream_idle_timeout: Duration,
    /// Where to serve Prometheus metrics; `None`: not served.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Log one line per call at INFO (else at DEBUG).
    pub access_log: bool,
    /// Calls slower than this are logged at WARN.
    pub slow_call: Duration,
    /// How callers are authenticated.
    pub auth: Arc<Authenticator>,
    /// Per-principal rate limits and open streams.
    pub limits: Arc<Limits>,
    /// Serve over TLS (with client certificates, if it names authorities).
    pub tls: Option<ServerTls>,
    /// How often API tokens are reloaded from the store: a revoked token
    /// stops working within this long.
    pub token_refresh: Duration,
    /// Web origins whose pages may call the API from a browser (`*`: any).
    pub cors_origins: Vec<String>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            sweep_interval: Duration::from_secs(30),
            health_interval: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(30),
            max_message_bytes: 64 * 1024,
            max_streams: 1000,
            max_streams_per_connection: 100,
            stream_idle_timeout: Duration::from_secs(60),
            metrics_listen: None,
            access_log: false,
            slow_call: Duration::from_secs(1),
            auth: Arc::new(Authenticator::none()),
            token_refresh: Duration::from_secs(5),
            limits: Arc::new(Limits::none()),
            tls: None,
            cors_origins: Vec::new(),
        }
    }
}

/// Serves `store` on `listener` until `shutdown` completes. Then it stops
/// accepting connections, ends open streams with UNAVAILABLE, lets in-flight
/// unary calls finish, and returns.
///
/// # Errors
/// When the server fails, or in-flight calls outlast
/// `settings.shutdown_grace`.
pub async fn run(
    listener: TcpListener,
    store: Arc<dyn Rsvp>,
    settings: ServerSettings,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    let metrics = match settings.metrics_listen {
        Some(addr) => Some(telemetry::serve_metrics(addr, stop.clone()).await?),
        None => None,
    };
    let (reporter, health_service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(health::LIVENESS, tonic_health::ServingStatus::Serving)
        .await;
    if let Some(tokens) = settings.auth.token_cache() {
        match tokens.reload(store.as_ref()).await {
            Ok(count) => tracing::info!(count, "API tokens loaded"),
            Err(e) => tracing::warn!(error = %e.chain(), "cannot load API tokens yet; retrying"),
        }
    }
    let mut background = vec![
        tokio::spawn(health::watch(
            store.clone(),
            reporter.clone(),
            settings.health_interval,
            stop.clone(),
        )),
        tokio::spawn(sweeper::run(
            store.clone(),
            settings.sweep_interval,
            stop.clone(),
        )),
    ];
    background.push(tokio::spawn(forget_idle_callers(
        settings.limits.clone(),
        stop.clone(),
    )));
    if let Some(tokens) = settings.auth.token_cache() {
        background.push(tokio::spawn(tokens.clone().keep_fresh(
            store.clone(),
            settings.token_refresh,
            stop.clone(),
        )));
    }

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building the reflection service")?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .context("building the reflection service")?;
    // Every call of the two services is authenticated first; health and
    // reflection answer anyone (load balancers carry no credentials).
    let authenticate = Authenticate(settings.auth.clone());
    let resources = InterceptedService::new(
        ResourceServiceServer::new(crate::resources::Resources::new(
            store.clone(),
            settings.limits.clone(),
        ))
        .max_decoding_message_size(settings.max_message_bytes),
        authenticate.clone(),
    );
    let service = InterceptedService::new(
        ReservationServiceServer::new(RsvpService::new(
            store,
            settings.limits.clone(),
            settings.max_streams,
            settings.stream_idle_timeout,
            stop.clone(),
        ))
        .max_decoding_message_size(settings.max_message_bytes),
        authenticate,
    );

    let signal = {
        let stop = stop.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections, ending open streams");
            reporter
                .set_service_status("", tonic_health::ServingStatus::NotServing)
                .await;
            stop.cancel();
        }
    };
    // One address for gRPC, gRPC-Web and HTTP/JSON: the gRPC services
    // answer every path the web routes do not, and the web routes call
    // the gRPC services in process.
    let in_flight = telemetry::InFlight::default();
    let mut grpc = Routes::builder();
    grpc.add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(service)
        .add_service(resources);
    let grpc: GrpcService = BoxCloneSyncService::new(
        ServiceBuilder::new()
            .map_response(|answer: http::Response<_>| answer.map(tonic::body::Body::new))
            .layer(CallLayer(
                CallLog {
                    access_log: settings.access_log,
                    slow_call: settings.slow_call,
                },
                in_flight.clone(),
            ))
            .service(grpc.routes()),
    );
    let open = settings.auth.mode() == crate::auth::AuthMode::None;
    let grpc_web: Fallback = BoxCloneSyncService::new(
        ServiceBuilder::new()
            .map_response(|answer: http::Response<_>| answer.map(tonic::body::Body::new))
            .layer(GrpcWebLayer::new())
            .service(crate::web::loopback_only(grpc.clone(), open)),
    );
    let mut web = Web::new(grpc, settings.max_message_bytes, open)?.router(grpc_web);
    if let Some(cors) = crate::web::cors(&settings.cors_origins)? {
        web = web.layer(cors);
    }

    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(60)));
    let acceptor = match &settings.tls {
        Some(tls) => Some(tls.acceptor()?),
        None => None,
    };
    let router = Server::builder()
        .accept_http1(true)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .max_concurrent_streams(Some(settings.max_streams_per_connection))
        .layer(DesignPaths)
        .add_routes(Routes::from(web));
    let serve: Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>> =
        match acceptor {
            Some(acceptor) => Box::pin(router.serve_with_incoming_shutdown(
                tls::incoming(incoming, acceptor, stop.clone()),
                signal,
            )),
            None => Box::pin(router.serve_with_incoming_shutdown(incoming, signal)),
        };
    let overdue = {
        let stop = stop.clone();
        async move {
            stop.cancelled().await;
            tokio::time::sleep(settings.shutdown_grace).await;
        }
    };
    let result = tokio::select! {
        served = serve => served.context("serving gRPC"),
        _ = overdue => match in_flight.count() {
            // Only connections that made no call (a request never sent
            // whole, an idle preface) were left: closed, nothing lost.
            0 => {
                tracing::info!("closed connections that made no call by the end of shutdown_grace");
                Ok(())
            }
            calls => Err(anyhow::anyhow!(
                "{calls} in-flight calls did not finish within shutdown_grace ({:?})",
                settings.shutdown_grace
            )),
        },
    };
    stop.cancel();
    for task in background.into_iter().chain(metrics) {
        let _ = task.await;
    }
    result
}

/// Forgets, every minute, the rate-limit buckets of callers idle long
/// enough for them to be full again.
async fn forget_idle_callers(limits: Arc<Limits>, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => limits.forget_idle(),
        }
    }
}
