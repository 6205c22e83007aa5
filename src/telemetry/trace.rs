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

use http::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_http::HeaderExtractor;
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
    // The fields are given as text, not `%value`: `fmt` through tracing-opentelemetry's
    // field visitor cost ~1,500 instructions an address (BENCHMARKS.md, "Seventh round").
    let (mut client_text, mut peer_text) = ([0u8; IP_TEXT], [0u8; IP_TEXT]);
    let span = tracing::info_span!(
        target: TARGET,
        "request",
        otel.name = method.as_str(),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = method.as_str(),
        url.path = path,
        http.route = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        client.address = ip_text(client, &mut client_text),
        network.peer.address = ip_text(peer, &mut peer_text),
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

/// The longest address text (an IPv6 address with an IPv4 tail).
const IP_TEXT: usize = 45;

/// `ip` as `Display` writes it: by hand for IPv4, through `fmt` for IPv6.
fn ip_text(ip: IpAddr, buf: &mut [u8; IP_TEXT]) -> &str {
    let n = match ip {
        IpAddr::V4(v4) => {
            let mut n = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[n] = b'.';
                    n += 1;
                }
                if octet >= 100 {
                    buf[n] = b'0' + octet / 100;
                    n += 1;
                }
                if octet >= 10 {
                    buf[n] = b'0' + octet / 10 % 10;
                    n += 1;
                }
                buf[n] = b'0' + octet % 10;
                n += 1;
            }
            n
        }
        IpAddr::V6(v6) => {
            use std::io::Write;
            let mut out = std::io::Cursor::new(&mut buf[..]);
            let _ = write!(out, "{v6}");
            out.position() as usize
        }
    };
    std::str::from_utf8(&buf[..n]).unwrap_or_default()
}

/// Replaces any inbound trace context in `headers` with `span`'s, so the callee joins
/// Tollgate's trace and never a client's unverified one.
pub fn inject(span: &Span, headers: &mut HeaderMap) {
    static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
    static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
    headers.remove(&TRACEPARENT);
    headers.remove(&TRACESTATE);
    let cx = span.context();
    let otel = cx.span();
    let sc = otel.span_context();
    if !sc.is_valid() {
        return;
    }
    headers.insert(&TRACEPARENT, traceparent(sc));
    // W3C says omit an empty `tracestate`.
    let state = sc.trace_state().header();
    if let Ok(v) = HeaderValue::from_str(&state) {
        if !v.is_empty() {
            headers.insert(&TRACESTATE, v);
        }
    }
}

/// `traceparent` for `sc` (W3C Trace Context: version 00, the ids and the sampled flag in
/// lowercase hex), what `TraceContextPropagator` writes, without its `format!` and its
/// header name parsing on every upstream request (BENCHMARKS.md, "Seventh round").
fn traceparent(sc: &SpanContext) -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let flags = (sc.trace_flags() & TraceFlags::SAMPLED).to_u8();
    let mut out = [b'-'; 55];
    out[..2].copy_from_slice(b"00");
    let fields: [(&[u8], usize); 3] = [
        (&sc.trace_id().to_bytes(), 3),
        (&sc.span_id().to_bytes(), 36),
        (&[flags], 53),
    ];
    for (bytes, at) in fields {
        for (i, b) in bytes.iter().enumerate() {
            out[at + 2 * i] = HEX[usize::from(b >> 4)];
            out[at + 2 * i + 1] = HEX[usize::from(b & 0xf)];
        }
    }
    HeaderValue::from_bytes(&out).expect("hex and dashes are a header value")
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

#[cfg(test)]
mod tests {
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId};
    use opentelemetry::Context;
    use opentelemetry_http::HeaderInjector;
    use opentelemetry_sdk::propagation::TraceContextPropagator;

    #[test]
    fn ip_text_is_display() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.199.255",
            "255.255.255.255",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:192.0.2.128",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            let mut buf = [0u8; super::IP_TEXT];
            assert_eq!(super::ip_text(ip, &mut buf), ip.to_string());
        }
    }

    /// The same header as the propagator's, for the flags a span can carry.
    #[test]
    fn traceparent_is_the_propagators() {
        for flags in [
            TraceFlags::SAMPLED,
            TraceFlags::default(),
            TraceFlags::new(0xff),
        ] {
            let sc = SpanContext::new(
                TraceId::from(0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c),
                SpanId::from(0x00f0_67aa_0ba9_02b7),
                flags,
                false,
                Default::default(),
            );
            let mut theirs = http::HeaderMap::new();
            TraceContextPropagator::new().inject_context(
                &Context::new().with_remote_span_context(sc.clone()),
                &mut HeaderInjector(&mut theirs),
            );
            assert_eq!(Some(&super::traceparent(&sc)), theirs.get("traceparent"));
        }
    }
}
