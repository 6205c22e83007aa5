//! OpenTelemetry traces (`telemetry.tracing`): one span per request, children for the
//! calls it makes (upstream, introspection, JWKS, store, password hashing, providers), W3C
//! trace context read from trusted callers and written to everything called.
//!
//! Off (the default) nothing here runs on a request: every span is made through
//! [`crate::otel_span!`], which reads one flag and yields `Span::none()`, and `App::handle`
//! takes the uninstrumented branch. On, spans are `tracing` spans of the target
//! `tollgate::trace`; the tracing-opentelemetry layer turns them into OTLP spans and is the
//! only layer that sees them (log lines look the same either way; log events never become
//! span events).
//!
//! Trust: a `traceparent` is continued only from `trusted_proxies`. From anyone else a new
//! trace starts and the inbound one is attached as a link, so an outside caller can neither
//! pick Tollgate's trace ids nor force sampling.
//!
//! Secrets: span fields come only from route names, method, status, outcome classes and
//! addresses; never a header value, a token, a query string or a body.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use http::HeaderMap;
use ipnet::IpNet;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::export::{ExportError, QueueProcessor};
use crate::config::raw::Tracing;

/// The `tracing` target of every span meant for export.
pub const TARGET: &str = "tollgate::trace";

static ON: AtomicBool = AtomicBool::new(false);
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Whether spans are being made (set once, at start).
#[inline]
pub fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// A span for export, or `Span::none()` when tracing is off. Same syntax as
/// `tracing::info_span!` after the name.
#[macro_export]
macro_rules! otel_span {
    ($name:literal) => {
        if $crate::telemetry::trace::on() {
            ::tracing::info_span!(target: "tollgate::trace", $name)
        } else {
            ::tracing::Span::none()
        }
    };
    ($name:literal, $($fields:tt)+) => {
        if $crate::telemetry::trace::on() {
            ::tracing::info_span!(target: "tollgate::trace", $name, $($fields)+)
        } else {
            ::tracing::Span::none()
        }
    };
}

/// Builds the tracer and the layer that exports its spans. The export thread starts here,
/// so a collector URL the exporter refuses fails `serve` before it listens.
pub fn layer<S>(
    cfg: &Tracing,
) -> Result<
    tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>,
    ExportError,
>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let resource = Resource::builder()
        .with_service_name(cfg.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let processor = QueueProcessor::start(cfg, resource.clone())?;
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            cfg.sample_ratio,
        ))))
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("tollgate");
    let _ = PROVIDER.set(provider);
    ON.store(true, Ordering::Relaxed);
    Ok(tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_level(false))
}

/// Sends what is queued (bounded wait); called once at the end of `serve`.
pub fn shutdown() {
    if let Some(p) = PROVIDER.get() {
        let _ = p.shutdown();
    }
}

/// The span of one request, continuing the caller's trace only when the peer is a trusted
/// proxy. Its fields are filled in as the request goes (`record`). `client.address` is the
/// client behind any trusted proxies (`http::client_addr`), `network.peer.address` the
/// connection's peer, as OpenTelemetry's conventions name them.
#[allow(clippy::too_many_arguments)]
pub fn request_span(
    method: &http::Method,
    path: &str,
    headers: &HeaderMap,
    peer: IpAddr,
    client: IpAddr,
    trusted: &[IpNet],
    request_id: &str,
) -> Span {
    let span = tracing::info_span!(
        target: TARGET,
        "request",
        otel.name = %method,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %method,
        url.path = path,
        http.route = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        client.address = %client,
        network.peer.address = %peer,
        tollgate.request_id = request_id,
        tollgate.auth = tracing::field::Empty,
        tollgate.token_kind = tracing::field::Empty,
        tollgate.cache = tracing::field::Empty,
    );
    if headers.contains_key("traceparent") {
        let inbound = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
        let remote = inbound.span().span_context().clone();
        if remote.is_valid() {
            if crate::http::client_addr::is_trusted(peer, trusted) {
                span.set_parent(inbound);
            } else {
                span.add_link(remote);
            }
        }
    }
    span
}

/// Replaces any inbound trace context in `headers` with `span`'s, so the callee joins
/// Tollgate's trace and never a client's unverified one.
pub fn inject(span: &Span, headers: &mut HeaderMap) {
    headers.remove("traceparent");
    headers.remove("tracestate");
    TraceContextPropagator::new().inject_context(&span.context(), &mut HeaderInjector(headers));
    // The propagator writes an empty `tracestate` when there is none; W3C says omit it.
    if headers.get("tracestate").is_some_and(|v| v.is_empty()) {
        headers.remove("tracestate");
    }
}

/// The trace context of `span` as headers, for a `reqwest` call.
pub fn headers_for(span: &Span) -> HeaderMap {
    let mut h = HeaderMap::new();
    if on() {
        inject(span, &mut h);
    }
    h
}

/// The trace id of `span` in hex, when tracing is on.
pub fn trace_id(span: &Span) -> Option<String> {
    if !on() {
        return None;
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// Sets a field of the current request span (declared in [`request_span`]); a no-op when
/// tracing is off or no request span is current.
#[inline]
pub fn record(field: &'static str, value: &'static str) {
    if on() {
        Span::current().record(field, value);
    }
}
