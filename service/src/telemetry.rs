//! Logs and metrics.
//!
//! - A `tracing` subscriber whose level comes from `RUST_LOG` or the
//!   configuration.
//! - One record per call ([`CallLayer`]): its method, gRPC status code and
//!   latency (for a stream: until it ends). Counted and timed in Prometheus
//!   metrics; logged at DEBUG, or at INFO with `access_log`; server-side
//!   failures and calls slower than `slow_call` at WARN whatever the level.
//! - Prometheus metrics on a port of their own when configured
//!   ([`serve_metrics`]): calls by method and code with latency histograms,
//!   and what the library and the streams record (pool use and waits, lock
//!   waits, conflicts, batch sizes, the change feed's lag and waits, open
//!   streams, sweeps).

use std::{
    collections::HashSet,
    future::Future,
    io::IsTerminal,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context as TaskContext, Poll},
    time::{Duration, Instant},
};

use anyhow::Context;
use http_body::{Body, Frame};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;
use tonic::{Code, codegen::http};
use tower::{Layer, Service};
use tracing_subscriber::{EnvFilter, fmt};

use crate::config::LogFormat;

/// Installs the global subscriber: `RUST_LOG` if set, else `level`.
///
/// # Errors
/// When the filter does not parse; the message names where it came from.
pub fn init(level: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.is_empty() => EnvFilter::try_new(&env).context("invalid RUST_LOG")?,
        _ => EnvFilter::try_new(level)
            .with_context(|| format!("invalid configuration: log_level {level:?}"))?,
    };
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    // Already installed (tests start many servers in one process): keep it.
    let _ = installed;
    Ok(())
}

/// How calls are logged.
#[derive(Clone, Copy, Debug)]
pub struct CallLog {
    /// Every call at INFO (else at DEBUG).
    pub access_log: bool,
    /// Calls slower than this at WARN.
    pub slow_call: Duration,
}

/// Records every call: metrics, and a log line at the level it deserves;
/// and counts the calls under way.
#[derive(Clone, Debug)]
pub struct CallLayer(pub CallLog, pub InFlight);

impl<S> Layer<S> for CallLayer {
    type Service = CallService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallService {
            inner,
            log: self.0,
            in_flight: self.1.clone(),
        }
    }
}

/// The calls under way on one server (a stream until it ends).
#[derive(Clone, Debug, Default)]
pub struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// How many calls are under way.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// See [`CallLayer`].
#[derive(Clone, Debug)]
pub struct CallService<S> {
    inner: S,
    log: CallLog,
    in_flight: InFlight,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> Service<http::Request<B>> for CallService<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Body + Unpin + Send + 'static,
{
    type Response = http::Response<Observed<R>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let recorded = request.extensions().get::<Unrecorded>().is_none();
        let call = recorded.then(|| Call {
            method: request.uri().path().to_string(),
            started: Instant::now(),
            log: self.log,
            _counted: Counted::new(&self.in_flight),
        });
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            let (parts, body) = response.into_parts();
            // A trailers-only response (every error) carries its status here.
            let call = match (call, parts.headers.get("grpc-status")) {
                (Some(call), Some(status)) => {
                    call.finish(Code::from_bytes(status.as_bytes()));
                    None
                }
                (call, _) => call,
            };
            Ok(http::Response::from_parts(
                parts,
                Observed { inner: body, call },
            ))
        })
    }
}

/// Marks a call the server makes to itself that no client made (the
/// check of an HTTP request it could not read): not logged, not counted.
#[derive(Clone, Copy, Debug)]
pub struct Unrecorded;

/// The paths of the RPCs served. Calls of any other path are counted as
/// one `unknown` method, however many such paths callers make up (before
/// authentication, even).
fn served(path: &str) -> bool {
    static SERVED: OnceLock<HashSet<String>> = OnceLock::new();
    SERVED
        .get_or_init(|| {
            let mut served: HashSet<String> = [
                "/grpc.health.v1.Health/Check",
                "/grpc.health.v1.Health/Watch",
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            ]
            .into_iter()
            .map(String::from)
            .collect();
            if let Ok(pool) = crate::web::transcode::descriptors() {
                for service in pool.services() {
                    for method in service.methods() {
                        served.insert(format!("/{}/{}", service.full_name(), method.name()));
                    }
                }
            }
            served
        })
        .contains(path)
}

/// A call counted in [`InFlight`] until it is dropped: finished, or
/// dropped unfinished (its client reset it before any answer).
struct Counted(InFlight);

impl Counted {
    fn new(in_flight: &InFlight) -> Self {
        in_flight.0.fetch_add(1, Ordering::SeqCst);
        Counted(in_flight.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        (self.0).0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A call under way: finished when its status is known.
struct Call {
    method: String,
    started: Instant,
    log: CallLog,
    _counted: Counted,
}

impl Call {
    fn finish(self, code: Code) {
        let latency = self.started.elapsed();
        // Unknown paths are one label, however many there are.
        let method = if code == Code::Unimplemented || !served(&self.method) {
            "unknown"
        } else {
            self.method.as_str()
        };
        let code_name = format!("{code:?}");
        metrics::counter!("rsvp_calls_total", "method" => method.to_string(), "code" => code_name.clone())
            .increment(1);
        metrics::histogram!("rsvp_call_duration_seconds", "method" => method.to_string())
            .record(latency.as_secs_f64());
        let ms = latency.as_micros() as f64 / 1e3;
        let server_failure = matches!(
            code,
            Code::Internal | Code::Unknown | Code::DataLoss | Code::Unavailable | Code::Aborted
        );
        if server_failure {
            tracing::warn!(method, code = %code_name, latency_ms = ms, "call failed");
        } else if latency > self.log.slow_call && !is_stream(method) {
            tracing::warn!(method, code = %code_name, latency_ms = ms, "slow call");
        } else if self.log.access_log {
            tracing::info!(method, code = %code_name, latency_ms = ms, "call finished");
        } else {
            tracing::debug!(method, code = %code_name, latency_ms = ms, "call finished");
        }
    }
}

/// Streams last as long as their clients want: never "slow".
fn is_stream(method: &str) -> bool {
    method.ends_with("/Query") || method.ends_with("/Listen") || method.ends_with("/Watch")
}

/// A response body that finishes its call when the status arrives in the
/// trailers, or the body ends or is dropped (the client went away).
pub struct Observed<B> {
    inner: B,
    call: Option<Call>,
}

impl<B: Body + Unpin> Body for Observed<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref()
                    && let Some(call) = self.call.take()
                {
                    let code = trailers
                        .get("grpc-status")
                        .map_or(Code::Unknown, |s| Code::from_bytes(s.as_bytes()));
                    call.finish(code);
                }
            }
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => {
                if let Some(call) = self.call.take() {
                    call.finish(Code::Unknown);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for Observed<B> {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            call.finish(Code::Cancelled);
        }
    }
}

/// The process's Prometheus recorder, installed on first use.
fn recorder() -> anyhow::Result<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let seconds = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0, 60.0,
            ];
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("rsvp_write_batch_size".into()),
                        &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0],
                    )
                })
                .map_err(|e| e.to_string())?
                .install_recorder()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| anyhow::anyhow!("cannot record metrics: {e}"))
}

/// Serves `/metrics` (Prometheus text format) on `addr` until `stop`.
///
/// # Errors
/// When the address cannot be bound or the recorder installed.
pub async fn serve_metrics(
    addr: SocketAddr,
    stop: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let handle = recorder()?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot serve metrics on {addr} (metrics_listen)"))?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let body = handle.render();
            async move { body }
        }),
    );
    tracing::info!(addr = %listener.local_addr().unwrap_or(addr), "serving metrics");
    Ok(tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "metrics server failed");
        }
    }))
}

/// Keeps a gauge of something open (a stream, a listener) while it lives.
pub(crate) struct Open(&'static str);

impl Open {
    pub fn new(kind: &'static str) -> Self {
        metrics::gauge!("rsvp_open_streams", "kind" => kind).increment(1.0);
        Open(kind)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        metrics::gauge!("rsvp_open_streams", "kind" => self.0).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use std::{convert::Infallible, time::Duration};

    use tower::{Layer, Service, ServiceExt};

    use super::{CallLayer, CallLog, InFlight, http};

    /// A call whose client goes away before any answer (the future
    /// dropped) is no longer counted as under way.
    #[tokio::test]
    async fn a_call_dropped_before_its_answer_is_not_left_in_flight() {
        let in_flight = InFlight::default();
        let log = CallLog {
            access_log: false,
            slow_call: Duration::from_secs(1),
        };
        let never = tower::service_fn(|_: http::Request<()>| {
            std::future::pending::<Result<http::Response<String>, Infallible>>()
        });
        let mut service = CallLayer(log, in_flight.clone()).layer(never);
        let call = service.ready().await.unwrap().call(http::Request::new(()));
        assert_eq!(in_flight.count(), 1);
        drop(call);
        assert_eq!(in_flight.count(), 0);
    }
}
