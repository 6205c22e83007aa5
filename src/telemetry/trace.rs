//! OpenTelemetry traces (`telemetry.tracing`): one span per request, children for the
//! calls it makes (upstream, introspection, JWKS, store, password hashing, providers), W3C
//! trace context read from trusted callers and written to everything called.
//!
//! Off (the default) nothing here runs on a request: every span is made through
//! [`crate::otel_span!`], which reads one flag and yields `Span::none()`, and `App::handle`
//! takes the uninstrumented branch. On, spans are Tollgate's own (`span.rs`), kept apart
//! from the `tracing` log: log lines look the same either way, and log events never become
//! span events.
//!
//! Trust: a `traceparent` is continued only from `trusted_proxies`. From anyone else a new
//! trace starts and the inbound one is attached as a link, so an outside caller can neither
//! pick Tollgate's trace ids nor force sampling.
//!
//! Secrets: span attributes come only from route names, method, status, outcome classes
//! and addresses; never a header value, a token, a query string or a body.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use http::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, SpanKind, TraceContextExt, TraceFlags};
use opentelemetry::{KeyValue, StringValue};
use opentelemetry_http::HeaderExtractor;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::Resource;

use super::export::{ExportError, Queue};
pub use super::span::{current_request, Parent, Span};
use crate::config::raw::Tracing;

static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

static ON: AtomicBool = AtomicBool::new(false);

/// Whether spans are being made (set once, at start).
#[inline]
pub fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// A child of the current span, or `Span::none()` when tracing is off: a name, a
/// [`SpanKind`] and `"key" => value` attributes (evaluated only when tracing is on), with
/// room for two set later (the upstream's status code) without growing.
#[macro_export]
macro_rules! otel_span {
    ($name:expr, $kind:expr $(, $key:literal => $value:expr)* $(,)?) => {
        if $crate::telemetry::trace::on() {
            let mut attributes = ::std::vec::Vec::with_capacity(
                2 $(+ { let _ = $key; 1 })*
            );
            $(attributes.push(::opentelemetry::KeyValue::new($key, $value));)*
            $crate::telemetry::trace::Span::start(
                $name,
                $kind,
                $crate::telemetry::trace::Parent::Current,
                attributes,
            )
        } else {
            $crate::telemetry::trace::Span::none()
        }
    };
}

/// Starts the export thread and turns span recording on. A collector URL the exporter
/// refuses fails `serve` here, before it listens.
pub fn start(cfg: &Tracing) -> Result<(), ExportError> {
    let resource = Resource::builder()
        .with_service_name(cfg.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    Queue::start(cfg, resource)?;
    super::span::set_ratio(cfg.sample_ratio);
    ON.store(true, Ordering::Relaxed);
    Ok(())
}

/// Sends what is queued (bounded wait); called once at the end of `serve`.
pub fn shutdown() {
    super::export::shutdown();
}

/// The attributes the request span starts with, and room for those set later
/// (`http.route`, `http.response.status_code`, `tollgate.auth`, `tollgate.token_kind`,
/// `tollgate.cache`).
const REQUEST_ATTRIBUTES: usize = 11;

/// The span of one request, continuing the caller's trace only when the peer is a trusted
/// proxy. `client.address` is the client behind any trusted proxies
/// (`http::client_addr`), `network.peer.address` the connection's peer, as OpenTelemetry's
/// conventions name them. Named by its method until the route is known.
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
    let mut attributes = Vec::with_capacity(REQUEST_ATTRIBUTES);
    attributes.extend([
        KeyValue::new("http.request.method", method_value(method)),
        KeyValue::new("url.path", path.to_owned()),
        KeyValue::new("client.address", ip_value(client)),
        KeyValue::new("network.peer.address", ip_value(peer)),
        KeyValue::new("tollgate.request_id", request_id.to_owned()),
    ]);
    let name = method_value(method);
    let inbound = headers.contains_key(&TRACEPARENT).then(|| {
        TraceContextPropagator::new()
            .extract(&HeaderExtractor(headers))
            .span()
            .span_context()
            .clone()
    });
    match inbound.filter(SpanContext::is_valid) {
        Some(remote) if crate::http::client_addr::is_trusted(peer, trusted) => {
            Span::start(name, SpanKind::Server, Parent::Remote(remote), attributes)
        }
        Some(remote) => Span::start(name, SpanKind::Server, Parent::Linked(&remote), attributes),
        None => Span::start(name, SpanKind::Server, Parent::Current, attributes),
    }
}

/// The method as a static string for the common methods (no allocation), owned for the
/// rest.
fn method_value(method: &http::Method) -> std::borrow::Cow<'static, str> {
    use http::Method;
    const KNOWN: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::CONNECT, "CONNECT"),
        (Method::PATCH, "PATCH"),
        (Method::TRACE, "TRACE"),
    ];
    match KNOWN.iter().find(|(m, _)| m == method) {
        Some((_, s)) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(method.as_str().to_owned()),
    }
}

/// `ip` as an attribute value. Each thread keeps the last address it wrote: a worker's
/// requests mostly come from few peers (a load balancer, keep-alive clients), and the
/// client is mostly the peer, so most requests copy no address text at all.
fn ip_value(ip: IpAddr) -> StringValue {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(IpAddr, StringValue)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        match &*last {
            Some((at, value)) if *at == ip => value.clone(),
            _ => {
                let mut text = [0u8; IP_TEXT];
                let value = StringValue::from(std::sync::Arc::<str>::from(ip_text(ip, &mut text)));
                *last = Some((ip, value.clone()));
                value
            }
        }
    })
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
    headers.remove(&TRACESTATE);
    let Some(sc) = span.context().filter(|sc| sc.is_valid()) else {
        headers.remove(&TRACEPARENT);
        return;
    };
    // `insert` replaces every inbound value of the name.
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

/// The trace id of the current request in hex, when tracing is on.
pub fn trace_id() -> Option<String> {
    if !on() {
        return None;
    }
    let span = current_request();
    let sc = span.context()?;
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// Sets an attribute of the current request's span; a no-op when tracing is off or
/// outside a request.
#[inline]
pub fn record(key: &'static str, value: &'static str) {
    if on() {
        super::span::record_request(key, value);
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
