//! Which target a request goes to: round robin over the targets that are not ejected,
//! passive ejection after consecutive failures, and each target's `Host` header.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use bytes::Bytes;

use crate::config::raw::UpstreamProtocol;
use crate::config::{TargetSpec, UpstreamSpec};

use super::Upstream;

fn now_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_millis() as u64
}

pub(super) struct Target {
    pub(super) spec: TargetSpec,
    /// The `Host` header sent to this target, made once instead of per request; `None`
    /// when the connection may be HTTP/2, where `:authority` (from the URI) carries it and
    /// a second `host` is refused by some servers (nginx answers 400). The pooled client
    /// adds `Host` itself on HTTP/1.1 connections.
    pub(super) host: Option<http::HeaderValue>,
    /// Its connections on each worker.
    pub(super) clients: super::pool::TargetClients,
    pub(super) consecutive_failures: AtomicU32,
    pub(super) ejected_until_ms: AtomicU64,
}

impl Upstream {
    /// Round robin over targets that are not ejected; when all are ejected, plain round
    /// robin (trying is better than refusing outright).
    pub(super) fn pick(&self) -> &Target {
        let n = self.targets.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        if n == 1 {
            return &self.targets[0];
        }
        let now = now_ms();
        for i in 0..n {
            let t = &self.targets[(start + i) % n];
            if t.ejected_until_ms.load(Ordering::Relaxed) <= now {
                return t;
            }
        }
        &self.targets[start % n]
    }

    pub(super) fn record(&self, t: &Target, ok: bool) {
        if ok {
            if t.consecutive_failures.load(Ordering::Relaxed) != 0 {
                t.consecutive_failures.store(0, Ordering::Relaxed);
            }
            return;
        }
        let failures = t.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= self.eject_after && self.targets.len() > 1 {
            t.ejected_until_ms.store(
                now_ms() + self.eject_for.as_millis() as u64,
                Ordering::Relaxed,
            );
            t.consecutive_failures.store(0, Ordering::Relaxed);
            tracing::warn!(target = %t.spec, for_ms = self.eject_for.as_millis() as u64, "upstream target ejected after consecutive failures");
            metrics::counter!("tollgate_upstream_ejections_total").increment(1);
        }
    }
}

/// Whether the upstream's connections may speak HTTP/2: always for h2 and h2c, and for
/// auto over TLS when ALPN picks it.
pub(super) fn may_be_http2(spec: &UpstreamSpec) -> bool {
    match spec.protocol {
        UpstreamProtocol::H1 => false,
        UpstreamProtocol::H2 | UpstreamProtocol::H2c => true,
        UpstreamProtocol::Auto => spec.tls.is_some(),
    }
}

/// The `Host` header for a target, exactly as the pooled client would write it when the
/// request has none: the host, plus the port unless it is the scheme's default. Made once
/// per target because the client formats (and allocates) it on every request otherwise.
pub(super) fn host_header(t: &TargetSpec) -> http::HeaderValue {
    let host = t.authority.host();
    let secure = matches!(t.scheme.as_str(), "https" | "wss");
    let value = match t.authority.port_u16() {
        Some(443) if secure => host.to_string(),
        Some(80) if !secure => host.to_string(),
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    http::HeaderValue::from_maybe_shared(Bytes::from(value))
        .expect("an authority is a valid header value")
}

#[cfg(test)]
mod host_header_tests {
    use super::*;
    use http::Uri;

    fn target(s: &str) -> TargetSpec {
        let uri: Uri = s.parse().unwrap();
        TargetSpec {
            scheme: uri.scheme().unwrap().clone(),
            authority: uri.authority().unwrap().clone(),
            base_path: String::new(),
        }
    }

    #[test]
    fn host_header_matches_what_the_client_would_send() {
        for (uri, want) in [
            ("http://127.0.0.1:3000", "127.0.0.1:3000"),
            ("http://127.0.0.1:80", "127.0.0.1"),
            ("http://app.internal", "app.internal"),
            ("https://app.internal:443", "app.internal"),
            ("https://app.internal:80", "app.internal:80"),
            ("http://app.internal:443", "app.internal:443"),
            ("http://[::1]:8080", "[::1]:8080"),
            ("http://user@app.internal:81", "app.internal:81"),
        ] {
            assert_eq!(host_header(&target(uri)), want, "{uri}");
        }
    }
}
