//! Logs: a `tracing` subscriber whose level comes from `RUST_LOG` or the
//! configuration, and one span per call with its method, gRPC status code
//! and latency.

use std::{io::IsTerminal, time::Duration};

use anyhow::Context;
use tonic::{Code, codegen::http};
use tower_http::{
    classify::{GrpcErrorsAsFailures, SharedClassifier},
    trace::TraceLayer,
};
use tracing::{Span, field};
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

type MakeSpan = fn(&http::Request<tonic::body::Body>) -> Span;
type OnResponse<B> = fn(&http::Response<B>, Duration, &Span);
type OnEos = fn(Option<&http::HeaderMap>, Duration, &Span);

/// The per-call tracing layer.
pub type RpcTraceLayer<B> =
    TraceLayer<SharedClassifier<GrpcErrorsAsFailures>, MakeSpan, (), OnResponse<B>, (), OnEos, ()>;

/// One span per call: `rpc{method code latency_ms}`, and one event when the
/// call ends (for a stream, when it ends, with its duration).
pub fn rpc_trace_layer<B>() -> RpcTraceLayer<B> {
    TraceLayer::new_for_grpc()
        .make_span_with(make_span as MakeSpan)
        .on_request(())
        .on_response(on_response::<B> as OnResponse<B>)
        .on_body_chunk(())
        .on_eos(on_eos as OnEos)
        .on_failure(())
}

fn make_span(request: &http::Request<tonic::body::Body>) -> Span {
    tracing::info_span!(
        "rpc",
        method = %request.uri().path(),
        code = field::Empty,
        latency_ms = field::Empty,
    )
}

fn code_name(value: Option<&http::HeaderValue>) -> String {
    match value {
        Some(v) => format!("{:?}", Code::from_bytes(v.as_bytes())),
        None => "Unknown".to_string(),
    }
}

fn on_response<B>(response: &http::Response<B>, latency: Duration, span: &Span) {
    span.record("latency_ms", millis(latency));
    // A trailers-only response (every error) carries its status here.
    if let Some(status) = response.headers().get("grpc-status") {
        span.record("code", code_name(Some(status)));
        tracing::info!(parent: span, "call finished");
    }
}

fn on_eos(trailers: Option<&http::HeaderMap>, stream: Duration, span: &Span) {
    span.record(
        "code",
        code_name(trailers.and_then(|t| t.get("grpc-status"))),
    );
    tracing::info!(parent: span, stream_ms = millis(stream), "call finished");
}

/// Milliseconds, to the microsecond.
fn millis(d: Duration) -> f64 {
    d.as_micros() as f64 / 1e3
}
