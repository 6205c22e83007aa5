//! Forwarding to the upstream, one concern per file:
//!
//! - this file: the retry loop of one request (URI rewrite, connect and response
//!   timeouts, retries for idempotent body-less requests, the upgrade hand-off);
//! - `deadline.rs`: the response timeout, on timers a serving worker reuses;
//! - `pool.rs`: the pooled clients, shared across reloads, one per serving worker;
//! - `targets.rs`: target choice (round robin with passive ejection) and each target's
//!   `Host` header;
//! - `body_limit.rs`: the streaming request-body limit;
//! - `tunnel.rs`: the WebSocket (upgrade) tunnel and its end with the token.
//!
//! Hop-by-hop and `X-Forwarded-*` handling is in `proxy/headers.rs`; the lifetime of
//! streamed responses in `proxy/authn/lifetime.rs`.

mod body_limit;
mod deadline;
mod h1pool;
mod pool;
mod targets;
mod tunnel;

pub use body_limit::{BodyTooLarge, LimitedBody};
pub use pool::{ClientCache, HttpClient, WorkerClients};

use std::ops::Not;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize};
use std::time::Duration;

use http::request::Parts;
use http::{Method, Request, Response, StatusCode, Uri};

use crate::config::{TargetSpec, UpstreamSpec};
use crate::http::body::{self, Body};
use crate::proxy::error::GatewayError;
use crate::proxy::headers::remove_hop_by_hop;
use crate::proxy::upstream_tls::tls_failure;
use body_limit::body_too_large;
use targets::{host_header, may_be_http2, Target};
use tunnel::tunnel;

/// Why an upstream request failed, as `tollgate_upstream_errors_total{kind}` counts it.
#[derive(Debug, Clone, Copy)]
enum Failure {
    Unreachable,
    Timeout,
    Tls,
}

impl Failure {
    const ALL: [Failure; 3] = [Failure::Unreachable, Failure::Timeout, Failure::Tls];

    fn label(self) -> &'static str {
        match self {
            Failure::Unreachable => "unreachable",
            Failure::Timeout => "timeout",
            Failure::Tls => "tls",
        }
    }

    fn count(self) {
        metrics::counter!("tollgate_upstream_errors_total", "kind" => self.label()).increment(1);
    }
}

/// The upstream counters, each kind and result at 0 from the start.
pub fn register_metrics() {
    crate::telemetry::at_zero(|| {
        Failure::ALL
            .map(|f| metrics::counter!("tollgate_upstream_errors_total", "kind" => f.label()))
            .into_iter()
            .chain([metrics::counter!("tollgate_upstream_ejections_total")])
            .chain(
                crate::telemetry::RELOAD_RESULTS.map(
                    |r| metrics::counter!("tollgate_upstream_tls_reloads_total", "result" => r),
                ),
            )
    });
}

/// One route's upstream: its targets and the shared client.
pub struct Upstream {
    targets: Vec<Target>,
    next: AtomicUsize,
    /// Whether its clients take an origin-form URI (`WorkerClients::origin_form`).
    origin_form: bool,
    timeout: Duration,
    retries: u32,
    eject_after: u32,
    eject_for: Duration,
}

/// The head of a further attempt: the received head rewritten again
/// (`proxy::HeadRewrite::apply`).
/// Called only when an attempt fails, so a request that succeeds at once keeps no copy of
/// its rewritten head.
pub type HeadAgain<'a> = &'a (dyn Fn() -> http::HeaderMap + Sync);

/// What `forward` needs to know beyond the request itself.
pub struct ForwardRequest<'a> {
    pub parts: Parts,
    pub body: Body,
    /// The normalised path to send (after `strip_prefix`), without query.
    pub path: String,
    /// The query to send (after removing a query token), without `?`.
    pub query: Option<String>,
    /// The request's `grpc-timeout` (`proxy::grpc::timeout`), when it sent one.
    pub grpc_timeout: Option<Duration>,
    /// Present when the client asked for a protocol upgrade (WebSocket).
    pub upgrade: Option<hyper::upgrade::OnUpgrade>,
    /// Close an upgraded connection when its token expires; `None` keeps it open.
    pub close_at: Option<crate::authn::lifetime::Expiry>,
    /// Close an upgraded connection when this resolves (the token was revoked).
    pub close_on: Option<crate::revocation::RevokedFuture>,
    /// Present when the request may be sent again after a failure
    /// ([`Upstream::may_retry`]): its head for each further attempt.
    pub again: Option<HeadAgain<'a>>,
}

impl Upstream {
    pub fn new(spec: &UpstreamSpec, clients: &ClientCache) -> Self {
        let upstream_clients = clients.get(spec);
        Upstream {
            targets: spec
                .targets
                .iter()
                .map(|t| Target {
                    host: may_be_http2(spec).not().then(|| host_header(t)),
                    clients: upstream_clients.for_target(&t.authority),
                    spec: t.clone(),
                    consecutive_failures: AtomicU32::new(0),
                    ejected_until_ms: AtomicU64::new(0),
                })
                .collect(),
            next: AtomicUsize::new(0),
            origin_form: upstream_clients.origin_form(),
            timeout: spec.timeout,
            retries: spec.retries,
            eject_after: spec.eject_after,
            eject_for: spec.eject_for,
        }
    }
}

impl Upstream {
    /// The request URI: absolute, or in origin form (path and query) for a client that
    /// takes the target from elsewhere. In origin form, a path and query that go upstream
    /// as the client sent them (no base path, nothing normalised away, no query token
    /// removed: the common case) are the client's own URI, shared, not parsed again.
    fn uri_for(
        t: &TargetSpec,
        path: &str,
        query: Option<&str>,
        origin_form: bool,
        received: &Uri,
    ) -> Result<Uri, GatewayError> {
        if origin_form
            && t.base_path.is_empty()
            && received.scheme().is_none()
            && received.path() == path
            && received.query() == query
        {
            return Ok(received.clone());
        }
        let mut s = String::with_capacity(
            t.authority.as_str().len()
                + t.base_path.len()
                + path.len()
                + 16
                + query.map_or(0, |q| q.len() + 1),
        );
        if !origin_form {
            s.push_str(t.scheme.as_str());
            s.push_str("://");
            s.push_str(t.authority.as_str());
        }
        s.push_str(&t.base_path);
        if t.base_path.is_empty() || path != "/" {
            s.push_str(path);
        }
        if let Some(q) = query {
            s.push('?');
            s.push_str(q);
        }
        Uri::try_from(s).map_err(|_| GatewayError::BadPath)
    }

    /// Whether a request may be sent again after a failure, to the next target: an
    /// idempotent method, no body (`body_done`), no protocol upgrade, and `retries` set.
    pub fn may_retry(&self, method: &Method, body_done: bool, upgrade: bool) -> bool {
        self.retries > 0 && is_idempotent(method) && body_done && !upgrade
    }

    /// Sends the request upstream and returns the upstream's response head with its body
    /// streaming behind it.
    pub async fn forward(&self, req: ForwardRequest<'_>) -> Result<Response<Body>, GatewayError> {
        let ForwardRequest {
            parts,
            body,
            path,
            query,
            grpc_timeout,
            upgrade,
            close_at,
            close_on,
            again,
        } = req;
        // Hop-by-hop request headers were removed by the pipeline before it injected its
        // own (`proxy::handle`), so a `Connection:` list cannot name what it added; it
        // kept `te: trailers`, which gRPC servers require. The client's `Host` is
        // replaced by the target's below (or removed, where the URI carries it).
        // A gRPC deadline shorter than the route's timeout bounds the wait too.
        let timeout = match grpc_timeout {
            Some(t) if t < self.timeout => t,
            _ => self.timeout,
        };

        let attempts = match again {
            Some(_) => 1 + self.retries,
            None => 1,
        };
        let method = again.is_some().then(|| parts.method.clone());
        let mut first = Some((parts, body));
        // The last attempt's failure, made only when one fails: a request answered at
        // once never builds (and frees) an error's text.
        let mut last_err = None;
        for attempt in 0..attempts {
            let target = self.pick();
            // The first attempt sends the received head as rewritten, with the body; a
            // further one (body-less by construction) a head rewritten again.
            let (mut head, b) = match (first.take(), again, &method) {
                (Some((mut head, b)), _, _) => {
                    // hyper's own notes on the received request (an HTTP/2 `:protocol`,
                    // say) are not instructions for the upstream connection.
                    head.extensions.clear();
                    (head, b)
                }
                (None, Some(again), Some(method)) => {
                    let mut head = Request::new(()).into_parts().0;
                    head.method = method.clone();
                    head.headers = again();
                    (head, body::empty())
                }
                // `attempts` is 1 without `again`.
                (None, _, _) => break,
            };
            // The received URI (first attempt) is sent as it came when it is the one to
            // send (`uri_for`).
            head.uri = Self::uri_for(
                &target.spec,
                &path,
                query.as_deref(),
                self.origin_form,
                &head.uri,
            )?;
            head.version = http::Version::HTTP_11;
            match &target.host {
                Some(host) => head.headers.insert(http::header::HOST, host.clone()),
                None => head.headers.remove(http::header::HOST),
            };
            let upstream_req = Request::from_parts(head, b);
            let mut deadline = deadline::Deadline::after(timeout);
            match deadline.within(target.clients.send(upstream_req)).await {
                Ok(Ok(mut resp)) => {
                    self.record(target, true);
                    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                        if let Some(down) = upgrade {
                            let up = hyper::upgrade::on(&mut resp);
                            tokio::spawn(tunnel(down, up, close_at, close_on));
                            let (mut rparts, _) = resp.into_parts();
                            remove_hop_by_hop(&mut rparts.headers, true);
                            return Ok(Response::from_parts(rparts, body::empty()));
                        }
                    }
                    // In place: taking the answer apart and putting it back together
                    // would copy its head twice.
                    remove_hop_by_hop(resp.headers_mut(), false);
                    return Ok(resp);
                }
                Ok(Err(e)) => {
                    let e: &(dyn std::error::Error + 'static) = &*e;
                    if let Some(limit) = body_too_large(e) {
                        return Err(GatewayError::BodyTooLarge(limit));
                    }
                    self.record(target, false);
                    let chain = error_chain(e);
                    if let Some(why) = tls_failure(e) {
                        tracing::warn!(
                            target = %target.spec,
                            attempt,
                            problem = why.problem,
                            error = %why.detail,
                            "upstream TLS handshake failed: {}",
                            why.advice
                        );
                        Failure::Tls.count();
                    } else {
                        tracing::warn!(target = %target.spec, attempt, error = %chain, "upstream request failed");
                        Failure::Unreachable.count();
                    }
                    last_err = Some(GatewayError::UpstreamUnreachable(chain));
                }
                Err(_) => {
                    self.record(target, false);
                    tracing::warn!(target = %target.spec, timeout_ms = timeout.as_millis() as u64, "upstream timed out");
                    Failure::Timeout.count();
                    return Err(GatewayError::UpstreamTimeout(timeout));
                }
            }
        }
        Err(last_err.unwrap_or_else(|| GatewayError::UpstreamUnreachable("no attempt made".into())))
    }
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
