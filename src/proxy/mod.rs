//! The data path, in the order it runs. [`Proxy::handle`] is the whole story of a proxied
//! request, one stage per line, each a call into a module named after what it does:
//!
//! 1–4. admission — the one decision forward-auth and ext_authz make too
//!    (`admission.rs`): route by host + method + the path `App::handle` normalised once
//!    (`route.rs`; 404), limits (413; 403 without a required client certificate), token →
//!    identity → policy (`authn`, `authz`: 401/403), the route's rate limit (`ratelimit`:
//!    429). The same normalised path is forwarded.
//! 5. mutate    — hop-by-hop headers out, identity headers stripped then injected
//!    (`headers.rs`, `identity.rs`), `X-Forwarded-*`, request id, a query token removed.
//! 6. `forward` — pooled upstream request, bodies streamed both ways (`forward/`).
//! 7. the answer — rate-limit headers; a streaming answer ends with its token
//!    (`authn::lifetime`).
//!
//! Any failure becomes its status in one place, `error.rs`.

pub mod admission;
pub mod authz;
pub mod challenge;
pub mod error;
pub mod forward;
pub mod grpc;
pub mod headers;
pub mod identity;
pub mod ratelimit;
pub mod route;
pub mod upstream_tls;

use std::sync::Arc;

use http::{header, HeaderValue, Method, Request, Response};
use hyper::body::Incoming;
use opentelemetry::trace::SpanKind;

use crate::authn::{self, Authenticator, Identity};
use crate::config::{Config, RouteSpec};
use crate::http::body::{self, Body};
use crate::http::head::Fields;
use crate::http::host::host_of;
use crate::http::ConnInfo;
use crate::telemetry::{trace, RequestMetrics};
use admission::RouteBy;
use error::GatewayError;
use forward::{ClientCache, ForwardRequest, LimitedBody, Upstream};
use headers::IdentityHeaderSet;
use route::{HasSpec, RouteTable};

/// A route with its live upstream.
pub struct Route {
    pub spec: RouteSpec,
    pub upstream: Upstream,
    /// The route's request counters and latency histogram, kept across requests.
    pub metrics: Arc<RequestMetrics>,
    /// The route's request rate limit, kept across reloads that leave it unchanged.
    pub rate_limit: Option<Arc<ratelimit::RouteLimit>>,
    /// Its own `WWW-Authenticate` parameters (protected resource, DPoP), when it has any.
    pub challenge: Option<Arc<challenge::RouteChallenge>>,
}

impl HasSpec for Route {
    fn spec(&self) -> &RouteSpec {
        &self.spec
    }
}

/// Everything a request needs from one configuration generation. Built whole from a
/// validated [`Config`] and swapped atomically on reload; a request holds the generation
/// it started with until it ends.
pub struct Generation {
    pub config: Arc<Config>,
    pub routes: RouteTable<Route>,
    pub identity_headers: IdentityHeaderSet,
    pub identity_names: identity::IdentityHeaderNames,
    /// The identity header names as an ext_authz answer carries them.
    pub ext_authz: crate::ext_authz::Prepared,
}

impl Generation {
    pub fn build(config: Arc<Config>, clients: &ClientCache) -> Generation {
        Generation::build_with(config, clients, &ratelimit::RateLimiters::new())
    }

    /// Like [`Generation::build`], keeping the rate-limit budgets held in `limiters`.
    pub fn build_with(
        config: Arc<Config>,
        clients: &ClientCache,
        limiters: &ratelimit::RateLimiters,
    ) -> Generation {
        let limits = limiters.for_routes(&config);
        let routes = config
            .routes
            .iter()
            .zip(limits)
            .map(|(spec, rate_limit)| Route {
                rate_limit,
                challenge: challenge::RouteChallenge::for_route(spec).map(Arc::new),
                upstream: Upstream::new(&spec.upstream, clients),
                metrics: Arc::new(RequestMetrics::new(metrics::SharedString::from(
                    spec.name.clone(),
                ))),
                spec: spec.clone(),
            })
            .collect();
        Generation {
            // A proxy's report of a client certificate is as much a claim of identity as
            // the identity headers: no client's copy reaches an upstream.
            identity_headers: IdentityHeaderSet::new(
                config
                    .identity
                    .all()
                    .chain(crate::http::forwarded_cert::NAMES.iter().copied()),
            ),
            identity_names: config.identity.clone(),
            ext_authz: crate::ext_authz::Prepared::new(&config.identity),
            routes: RouteTable::new(routes),
            config,
        }
    }
}

/// The `X-Forwarded-Host` value: the host the request is addressed to (`host`: the
/// authority wins over `Host`, `http::host`), as the `Host` field itself when that is the
/// bare host (a reference to the parsed head, no copy), else made into a value. A `Host`
/// with a port (a service on a port of its own) is the other common case, and a worker's
/// requests mostly name one host: the last value made is kept per thread and handed out
/// again, where a new one would be allocated, then promoted to shared on its first clone
/// (the retry copy of the head), and freed twice (BENCHMARKS.md, "Eleventh round").
fn forwarded_host(host: Option<&str>, host_field: Option<&HeaderValue>) -> Option<HeaderValue> {
    thread_local! {
        static LAST: std::cell::RefCell<Option<HeaderValue>> =
            const { std::cell::RefCell::new(None) };
    }
    let host = host?;
    match host_field {
        Some(v) if v.as_bytes() == host.as_bytes() => Some(v.clone()),
        _ => LAST.with_borrow_mut(|last| match last {
            Some(v) if v.as_bytes() == host.as_bytes() => Some(v.clone()),
            _ => {
                let v = HeaderValue::from_str(host).ok()?;
                *last = Some(v.clone());
                Some(v)
            }
        }),
    }
}

/// The scheme and authority the client used, for a DPoP proof's `htu`: this connection's,
/// or, from a peer in `trusted_proxies` that terminated TLS in front (a load balancer),
/// the `X-Forwarded-Proto` and `X-Forwarded-Host` it reports.
fn client_origin<'r, B>(
    req: &'r Request<B>,
    host_field: Option<&'r HeaderValue>,
    conn: &ConnInfo,
    trusted: &[ipnet::IpNet],
) -> (&'static str, Option<&'r str>) {
    let own = req
        .uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| host_field.and_then(|h| h.to_str().ok()));
    if !crate::http::client_addr::is_trusted(conn.peer.ip(), trusted) {
        return (conn.scheme, own);
    }
    let forwarded = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let scheme = match forwarded("x-forwarded-proto") {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        Some(p) if p.eq_ignore_ascii_case("http") => "http",
        _ => conn.scheme,
    };
    (scheme, forwarded("x-forwarded-host").or(own))
}

/// The proxy pipeline.
pub struct Proxy {
    pub authenticator: Arc<dyn Authenticator>,
}

/// What the pipeline reports about a request for metrics and the access log.
pub struct Outcome {
    pub route: Option<Arc<RequestMetrics>>,
}

impl Proxy {
    /// The data path, one stage per line; each stage is a function below (or in the
    /// module named after it) and the first failure ends the request (`error.rs`).
    /// `fields`: which fields the head may carry (`http::head`), as `App::handle` found.
    #[allow(clippy::too_many_arguments)]
    pub async fn handle(
        &self,
        rt: &Generation,
        req: Request<Incoming>,
        fields: Fields,
        norm: String,
        conn: ConnInfo,
        request_id: &HeaderValue,
        outcome: &mut Outcome,
    ) -> Result<Response<Body>, GatewayError> {
        // 1–4. Route, limits, token and policy, rate limit: the one admission decision
        //      that forward-auth and ext_authz make too (`admission.rs`). `App::handle`
        //      has refused a request whose host is ambiguous (`http::host::check`).
        let host_field = req.headers().get(header::HOST);
        let host = host_of(req.uri(), host_field);
        let x_forwarded_host = forwarded_host(host, host_field);
        let (scheme, authority) =
            client_origin(&req, host_field, &conn, &rt.config.trusted_proxies);
        let view = admission::RequestView {
            method: req.method(),
            scheme,
            host,
            path: &norm,
            raw_path: req.uri().path(),
            authority,
            query: req.uri().query(),
            headers: req.headers(),
            fields,
            peer: conn.peer.ip(),
            client_cert: conn.client_cert.as_deref(),
        };
        let admitted = match admission::admit(rt, &*self.authenticator, &view, RouteBy::Match).await
        {
            Ok(a) => a,
            Err(refusal) => {
                outcome.route = refusal.route.map(|r| r.metrics.clone());
                return Err(refusal.error);
            }
        };
        let route = admitted.route;
        outcome.route = Some(route.metrics.clone());
        let identity = admitted.identity;
        let limit_headers = admitted.limit_headers;
        // 5. Rewrite the request for the upstream (hop-by-hop, identity, forwarding
        //    headers; a query token removed). A request that may be sent again after a
        //    failure keeps a copy of its head as received, and a further attempt's head
        //    is rewritten again from it: the received head is the smaller of the two,
        //    and a request that succeeds at once never needs its copy.
        let rewrite = HeadRewrite {
            rt,
            spec: &route.spec,
            fields,
            conn: &conn,
            identity: identity.as_ref(),
            request_id,
            upgrade: fields.may_have(Fields::UPGRADE)
                && headers::is_upgrade_request(req.headers())
                && req
                    .extensions()
                    .get::<hyper::upgrade::OnUpgrade>()
                    .is_some(),
        };
        let received = route
            .upstream
            .may_retry(
                req.method(),
                http_body::Body::is_end_stream(req.body()),
                rewrite.upgrade,
            )
            .then(|| (req.headers().clone(), x_forwarded_host.clone()));
        let again = received.as_ref().map(|(head, x_forwarded_host)| {
            let rewrite = &rewrite;
            move || {
                let mut head = head.clone();
                rewrite.apply(&mut head, x_forwarded_host.clone());
                head
            }
        });
        let outgoing = self.mutate(
            &rewrite,
            route,
            req,
            norm,
            admitted.query_token,
            x_forwarded_host,
            again.as_ref().map(|f| f as forward::HeadAgain<'_>),
        );
        let close_at = outgoing.close_at;
        // 6. Forward: the upstream's own future awaited here, with no layer around it to
        //    build and copy; in a client span when tracing is on.
        let mut resp = if trace::on() {
            forward_traced(route, outgoing).await?
        } else {
            route.upstream.forward(outgoing).await?
        };
        // 7. The answer: rate-limit headers; a streaming response ends with its token.
        if let Some(h) = &limit_headers {
            h.apply(resp.headers_mut());
        }
        match &identity {
            Some(id)
                if route.spec.close_on_token_expiry && authn::lifetime::is_streaming(&resp) =>
            {
                Ok(authn::lifetime::guard(
                    resp,
                    close_at,
                    self.authenticator.revoked(id),
                ))
            }
            _ => Ok(resp),
        }
    }

    /// Stage 5: the request as the upstream gets it: its head rewritten
    /// ([`HeadRewrite::apply`]), its path and query, its body limited.
    #[allow(clippy::too_many_arguments)]
    fn mutate<'a>(
        &self,
        rewrite: &HeadRewrite<'_>,
        route: &Route,
        req: Request<Incoming>,
        norm: String,
        query_token: Option<&str>,
        x_forwarded_host: Option<HeaderValue>,
        again: Option<forward::HeadAgain<'a>>,
    ) -> ForwardRequest<'a> {
        let spec = &route.spec;
        let identity = rewrite.identity;
        let query = match (req.uri().query(), query_token) {
            (Some(q), Some(name)) => authn::source::remove_query_param(q, name),
            (Some(q), None) => Some(q.to_string()),
            (None, _) => None,
        };
        let (mut parts, incoming) = req.into_parts();
        let upgrade = if rewrite.upgrade {
            parts.extensions.remove::<hyper::upgrade::OnUpgrade>()
        } else {
            None
        };
        rewrite.apply(&mut parts.headers, x_forwarded_host);
        // A deadline a gRPC client set (after a `Connection` list naming `grpc-timeout`
        // has removed it).
        let grpc_timeout = if rewrite.fields.may_have(Fields::GRPC_TIMEOUT) {
            grpc::timeout(&parts.headers)
        } else {
            None
        };

        let close_at = match (identity, spec.close_on_token_expiry) {
            (Some(id), true) => id.expires_at.map(authn::lifetime::Expiry),
            _ => None,
        };
        let close_on = match (identity, spec.close_on_token_expiry, &upgrade) {
            (Some(id), true, Some(_)) => self.authenticator.revoked(id),
            _ => None,
        };
        let body = if http_body::Body::is_end_stream(&incoming) {
            body::empty()
        } else {
            body::boxed(LimitedBody::new(incoming, spec.max_body_bytes))
        };
        ForwardRequest {
            parts,
            body,
            path: forwarded_path(spec, norm),
            query,
            grpc_timeout,
            upgrade,
            close_at,
            close_on,
            again,
        }
    }
}

/// What stage 5 does to a request's head, kept whole so that a retry can make its head
/// again from a copy of the received one (`Proxy::handle`): one rewrite, written once.
struct HeadRewrite<'r> {
    rt: &'r Generation,
    spec: &'r RouteSpec,
    /// Which fields the received head may carry (`http::head`).
    fields: Fields,
    conn: &'r ConnInfo,
    identity: Option<&'r Arc<Identity>>,
    request_id: &'r HeaderValue,
    /// The client asked for a protocol upgrade that this connection can hand over.
    upgrade: bool,
}

impl HeadRewrite<'_> {
    /// Rewrites a received head for the upstream. Hop-by-hop headers go first, so a
    /// client's `Connection:` list can name only its own headers, never one Tollgate
    /// injects below; then strip before inject: spoofed identity headers never pass, on
    /// any route.
    fn apply(&self, headers: &mut http::HeaderMap, x_forwarded_host: Option<HeaderValue>) {
        let fields = self.fields;
        // `te: trailers` is the one hop-by-hop value that must reach the upstream: gRPC
        // servers refuse calls without it.
        let te_trailers = fields.may_have(Fields::TE)
            && headers
                .get(header::TE)
                .is_some_and(|v| grpc::names_trailers(v.as_bytes()));
        if fields.may_have(Fields::HOP_BY_HOP) || self.upgrade {
            headers::remove_hop_by_hop(headers, self.upgrade);
        }
        if te_trailers {
            headers.insert(header::TE, HeaderValue::from_static("trailers"));
        }
        // Room for what is added below (`X-Forwarded-For/-Proto/-Host`, `X-Request-Id`,
        // the identity's fields, and `traceparent` when tracing) made at once: a head
        // parsed with two fields has room for three, and would otherwise grow, rehashing,
        // twice.
        headers.reserve(4 + if self.identity.is_some() { 8 } else { 0 } + usize::from(trace::on()));
        self.rt.identity_headers.strip(headers);
        if !self.spec.forward_authorization {
            headers.remove(header::AUTHORIZATION);
        }
        if let Some(id) = self.identity {
            self.rt.identity_names.inject(headers, id);
        }
        if let Some(cert) = &self.conn.client_cert {
            self.rt.identity_names.inject_client_cert(headers, cert);
        }
        headers::set_forwarded(
            headers,
            fields,
            self.conn.peer.ip(),
            self.conn.scheme,
            x_forwarded_host,
            &self.rt.config.trusted_proxies,
        );
        headers.insert(&headers::X_REQUEST_ID, self.request_id.clone());
    }
}

/// Stage 4: the route's request budget; the headers to add to the answer when allowed.
pub(crate) async fn rate_limit(
    rt: &Generation,
    route: &Route,
    identity: Option<&Identity>,
    headers: &http::HeaderMap,
    peer: std::net::IpAddr,
) -> Result<Option<ratelimit::RateLimitHeaders>, GatewayError> {
    let Some(limit) = &route.rate_limit else {
        return Ok(None);
    };
    let key = ratelimit::key_for(
        &limit.spec,
        identity,
        headers,
        peer,
        &rt.config.trusted_proxies,
    );
    match limit.check(&key).await {
        ratelimit::Verdict::Allowed(h) => Ok(Some(h)),
        ratelimit::Verdict::Limited(headers, retry_after) => Err(GatewayError::RateLimited {
            headers,
            retry_after,
        }),
        ratelimit::Verdict::Unavailable => Err(GatewayError::RateLimitUnavailable),
    }
}

/// Stage 6 with tracing on: the upstream call inside a client span whose context the
/// upstream receives.
async fn forward_traced(
    route: &Route,
    mut outgoing: ForwardRequest<'_>,
) -> Result<Response<Body>, GatewayError> {
    let span = crate::otel_span!(
        "upstream",
        SpanKind::Client,
        "tollgate.route" => route.metrics.route_value().clone(),
    );
    trace::inject(&span, &mut outgoing.parts.headers);
    // A retry's head carries the same context.
    let again = outgoing.again.take().map(|again| {
        let span = &span;
        move || {
            let mut head = again();
            trace::inject(span, &mut head);
            head
        }
    });
    let mut outgoing = outgoing;
    outgoing.again = again.as_ref().map(|f| f as forward::HeadAgain<'_>);
    // Not made current (`Span::instrument`): the upstream call starts no spans of its
    // own, and a task-local layer around it would be set and reset on every poll. (A
    // span started in there would be the request span's child, not this one's.)
    let resp = route.upstream.forward(outgoing).await;
    match &resp {
        Ok(r) => span.add("http.response.status_code", i64::from(r.status().as_u16())),
        Err(_) => span.set_error(),
    };
    resp
}

/// The path sent upstream: the normalised path, minus the route prefix when
/// `strip_prefix` is set (never empty: at least "/").
pub fn forwarded_path(spec: &RouteSpec, norm: String) -> String {
    if spec.strip_prefix && spec.path != "/" {
        let rest = &norm[spec.path.len().min(norm.len())..];
        if rest.is_empty() {
            "/".to_string()
        } else {
            rest.to_string()
        }
    } else {
        // The common case reuses the normalised path's allocation.
        norm
    }
}

/// The coarse method class used as a metrics label.
pub fn method_class(m: &Method) -> &'static str {
    match *m {
        Method::GET | Method::HEAD => "read",
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE => "write",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::forwarded_host;
    use http::HeaderValue;

    /// The `Host` field itself when it is the bare host; otherwise the host alone, the
    /// thread's last value handed out again only for that same host.
    #[test]
    fn forwarded_host_is_the_host_named_each_time() {
        let bare = HeaderValue::from_static("api.example.com");
        assert_eq!(
            forwarded_host(Some("api.example.com"), Some(&bare)).unwrap(),
            "api.example.com"
        );
        let with_port = HeaderValue::from_static("api.example.com:8443");
        for _ in 0..2 {
            assert_eq!(
                forwarded_host(Some("api.example.com"), Some(&with_port)).unwrap(),
                "api.example.com"
            );
        }
        let other = HeaderValue::from_static("admin.example.com:8443");
        assert_eq!(
            forwarded_host(Some("admin.example.com"), Some(&other)).unwrap(),
            "admin.example.com"
        );
        // The authority of an absolute URI, with no `Host` field.
        assert_eq!(
            forwarded_host(Some("api.example.com"), None).unwrap(),
            "api.example.com"
        );
        assert_eq!(forwarded_host(None, Some(&bare)), None);
    }
}
