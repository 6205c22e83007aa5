//! The forward-auth decision endpoint (`forward_auth.path`) for ingresses that proxy
//! themselves and only ask Tollgate "may this request pass, and as whom?":
//! ingress-nginx `auth-url` / nginx `auth_request`, Traefik ForwardAuth, Envoy ext_authz
//! (HTTP service), Caddy `forward_auth`.
//!
//! The request it is asked about comes from `X-Forwarded-Method`/`X-Forwarded-Uri`/
//! `X-Forwarded-Host` (Traefik, Caddy) or `X-Original-Method`/`X-Original-URI` (nginx);
//! the route table picks the route exactly as for proxied traffic, and the route's policy
//! and token sources decide. 200 carries the identity headers for the ingress to copy
//! upstream; 401/403 are the same answers as on proxied routes (with `WWW-Authenticate`).
//!
//! Threat model: the ingress copies whatever headers this answer names, so the answer
//! carries only headers Tollgate sets itself; a request no route covers is refused (403)
//! rather than waved through; a token check that cannot be done answers 503, never 200.
//!
//! Caching: an ingress that caches decisions (ingress-nginx `auth-cache-key`) keeps using
//! an allow after the token is revoked, so a 200 says how long it may be reused:
//! `Cache-Control: private, max-age=N` with N = min(`forward_auth.cache_ttl`, the token's
//! remaining life), 0 when the token's expiry is unknown. `private` keeps generic shared
//! caches from storing one caller's identity; nginx, which treats `private` as "do not
//! cache", is told the same N by `X-Accel-Expires`, which it alone reads and which takes
//! precedence there. Every denial is `no-store`, so a 401 never outlives the fix.

use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::authn::Identity;
use crate::config::Config;
use crate::endpoint::{Endpoint, RequestCtx};
use crate::http::body::{self, Body};
use crate::http::error::{Answer, ErrorResponse};
use crate::http::BoxFuture;
use crate::http::{forwarded_cert, path};
use crate::proxy::admission::{self, RequestView, RouteBy};
use crate::proxy::error::GatewayError;
use crate::proxy::Generation;

static X_FORWARDED_METHOD: &str = "x-forwarded-method";
static X_FORWARDED_URI: &str = "x-forwarded-uri";
static X_FORWARDED_HOST: &str = "x-forwarded-host";
static X_FORWARDED_PROTO: &str = "x-forwarded-proto";
static X_ORIGINAL_METHOD: &str = "x-original-method";
static X_ORIGINAL_URI: &str = "x-original-uri";
static X_ORIGINAL_URL: &str = "x-original-url";
static X_ACCEL_EXPIRES: &str = "x-accel-expires";

/// Serves `forward_auth.path` (when set) for any method.
pub struct ForwardAuthEndpoint;

impl Endpoint for ForwardAuthEndpoint {
    fn matches(&self, _method: &Method, path: &str, config: &Config) -> bool {
        // Envoy's ext_authz HTTP service appends the original path to its path_prefix.
        config.forward_auth.path.as_deref().is_some_and(|p| {
            path == p
                || (path.len() > p.len() && path.starts_with(p) && path.as_bytes()[p.len()] == b'/')
        })
    }

    fn call(self: Arc<Self>, req: Request<Incoming>, ctx: RequestCtx) -> BoxFuture<Answer> {
        Box::pin(async move {
            let prefix = ctx
                .generation
                .config
                .forward_auth
                .path
                .clone()
                .unwrap_or_default();
            let own = OwnRequest {
                method: req.method(),
                uri: req.uri(),
                peer: ctx.conn.peer.ip(),
                prefix: &prefix,
            };
            let result = decide(&ctx.generation, &*ctx.authenticator, req.headers(), own).await;
            let status = match &result {
                Ok(_) => "allow",
                Err(_) => "deny",
            };
            metrics::counter!("tollgate_forward_auth_total", "decision" => status).increment(1);
            Ok(result?)
        })
    }
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Why a forward-auth question cannot be answered with allow.
#[derive(Debug, thiserror::Error)]
pub enum ForwardAuthError {
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error("no route covers the request")]
    NoRoute,
}

impl ErrorResponse for ForwardAuthError {
    fn status(&self) -> StatusCode {
        match self {
            ForwardAuthError::Gateway(g) => g.status(),
            ForwardAuthError::NoRoute => StatusCode::FORBIDDEN,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ForwardAuthError::Gateway(g) => g.code(),
            ForwardAuthError::NoRoute => "no_route",
        }
    }

    /// The proxy's answer for the same failure, never stored by the ingress.
    fn response(&self) -> Response<Body> {
        let mut resp = match self {
            ForwardAuthError::Gateway(g) => g.response(),
            ForwardAuthError::NoRoute => body::json_error(
                StatusCode::FORBIDDEN,
                "access_denied",
                "no route covers this request",
            ),
        };
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }

    fn logged(&self) -> bool {
        match self {
            ForwardAuthError::Gateway(g) => g.logged(),
            ForwardAuthError::NoRoute => false,
        }
    }
}

/// The `decision` values of `tollgate_forward_auth_total`.
const DECISIONS: [&str; 2] = ["allow", "deny"];

/// Both decisions' counters, at 0 from the start.
pub fn register_metrics() {
    crate::telemetry::at_zero(|| {
        DECISIONS.map(|d| metrics::counter!("tollgate_forward_auth_total", "decision" => d))
    });
}

/// The forward-auth request itself, for ingresses that describe the original request by
/// its own shape (Envoy: same method, `path_prefix` + original path, original Host).
#[derive(Clone, Copy)]
pub struct OwnRequest<'a> {
    pub method: &'a Method,
    pub uri: &'a http::Uri,
    /// The peer that asked (the ingress): whether its certificate and forwarding headers
    /// are believed (`trusted_proxies`), and the address `key: ip` limits count behind it.
    pub peer: std::net::IpAddr,
    /// `forward_auth.path`.
    pub prefix: &'a str,
}

impl OwnRequest<'_> {
    /// The original path when this request is `prefix` + the original.
    fn suffix(&self) -> Option<&str> {
        let rest = self.uri.path().strip_prefix(self.prefix)?;
        rest.starts_with('/').then_some(rest)
    }
}

/// Which ingress convention described the request; it decides how the allow is written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Envoy `http_service` / Gateway API `ExternalAuth` HTTP: the request's own method,
    /// `prefix` + the original path and query, the original `Host`.
    Envoy,
    /// nginx, Traefik, Caddy: `X-Forwarded-*` / `X-Original-*` on a request to `prefix`.
    Headers,
}

/// The original request as an ingress described it.
struct Described<'a> {
    shape: Shape,
    method: Method,
    uri: http::Uri,
    host: Option<&'a str>,
    scheme: &'static str,
}

/// Reads the described request. In the Envoy shape the request's own method, path and
/// `Host` are the truth and `X-Forwarded-*`/`X-Original-*` are ignored: Envoy passes
/// client headers through to this request, so a client could otherwise name another path
/// than the one it is asking for.
fn describe<'a>(
    headers: &'a HeaderMap,
    own: &'a OwnRequest<'a>,
) -> Result<Described<'a>, GatewayError> {
    let scheme = match header_str(headers, X_FORWARDED_PROTO) {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    if let Some(path) = own.suffix() {
        let text = match own.uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.to_owned(),
        };
        return Ok(Described {
            shape: Shape::Envoy,
            method: own.method.clone(),
            uri: text.parse().map_err(|_| GatewayError::BadPath)?,
            host: header_str(headers, header::HOST.as_str()),
            scheme,
        });
    }
    let method = header_str(headers, X_FORWARDED_METHOD)
        .or_else(|| header_str(headers, X_ORIGINAL_METHOD))
        .map(|m| Method::from_bytes(m.as_bytes()).map_err(|_| GatewayError::BadPath))
        .transpose()?
        .unwrap_or_else(|| own.method.clone());
    let text = header_str(headers, X_FORWARDED_URI)
        .or_else(|| header_str(headers, X_ORIGINAL_URI))
        .or_else(|| header_str(headers, X_ORIGINAL_URL))
        .ok_or(GatewayError::BadPath)?;
    // Absolute form is allowed (X-Original-URL); only host, path and query matter.
    let uri: http::Uri = text.parse().map_err(|_| GatewayError::BadPath)?;
    Ok(Described {
        shape: Shape::Headers,
        method,
        uri,
        host: header_str(headers, X_FORWARDED_HOST),
        scheme,
    })
}

/// The decision for the request described by `headers` (or by the forward-auth request's
/// own shape): the one admission decision (`proxy::admission`), written as an answer the
/// ingress understands.
pub async fn decide(
    rt: &Generation,
    authenticator: &dyn crate::authn::Authenticator,
    headers: &HeaderMap,
    own: OwnRequest<'_>,
) -> Result<Response<Body>, ForwardAuthError> {
    let described = describe(headers, &own)?;
    let host = described
        .host
        .or_else(|| described.uri.host())
        .or_else(|| header_str(headers, header::HOST.as_str()))
        .map(crate::http::host::host_name);
    let norm = path::normalize_path(described.uri.path()).map_err(|_| GatewayError::BadPath)?;
    // Behind an ingress, a client certificate is what the trusted proxy that terminated
    // TLS reports; from anyone else such a header is ignored.
    let client_cert = rt.config.forward_auth.client_cert_header.and_then(|h| {
        forwarded_cert::from_trusted_proxy(headers, h, own.peer, &rt.config.trusted_proxies)
    });
    let view = RequestView {
        method: &described.method,
        scheme: described.scheme,
        host,
        path: &norm,
        raw_path: described.uri.path(),
        authority: described
            .host
            .or_else(|| described.uri.authority().map(|a| a.as_str())),
        query: described.uri.query(),
        headers,
        fields: crate::http::head::Fields::ALL,
        peer: own.peer,
        client_cert: client_cert.as_ref(),
    };
    let admitted = admission::admit(rt, authenticator, &view, RouteBy::Match)
        .await
        .map_err(|r| match r.error {
            GatewayError::NoRoute => ForwardAuthError::NoRoute,
            e => ForwardAuthError::Gateway(e),
        })?;
    let identity = admitted.identity.as_deref();

    let mut resp = Response::new(body::empty());
    // Every identity header is present, empty when there is no value: ingresses that copy
    // headers unconditionally (Caddy before 2.7 writes its placeholder text otherwise)
    // then overwrite a client's spoofed copy instead of leaving it.
    for name in rt.identity_names.all() {
        resp.headers_mut()
            .insert(name.clone(), HeaderValue::from_static(""));
    }
    if let Some(id) = identity {
        rt.identity_names.inject(resp.headers_mut(), id);
    }
    if let Some(cert) = &client_cert {
        rt.identity_names
            .inject_client_cert(resp.headers_mut(), cert);
    }
    // Gateway API copies every header of an allow upstream when `allowedResponseHeaders`
    // is empty, and Envoy never caches a decision: an Envoy-shaped allow carries the
    // identity headers and nothing else.
    if described.shape == Shape::Envoy {
        return Ok(resp);
    }
    if let Some(h) = &admitted.limit_headers {
        h.apply(resp.headers_mut());
    }
    // An ingress that reused an allow would skip the count: a limited route's allows are
    // not reusable.
    let ttl = if admitted.route.rate_limit.is_some() {
        Duration::ZERO
    } else {
        rt.config.forward_auth.cache_ttl
    };
    let max_age = reuse_for(identity, ttl, crate::authn::claims::now_unix());
    // X-Accel-Expires first: nginx then skips the `private` that follows.
    resp.headers_mut()
        .insert(X_ACCEL_EXPIRES, HeaderValue::from(max_age));
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::try_from(format!("private, max-age={max_age}"))
            .expect("digits are a valid header value"),
    );
    Ok(resp)
}

/// Seconds an allow decision may be reused: `ttl`, cut to the token's remaining life
/// (0 when its expiry is unknown) and to the life left in a signed identity JWT the
/// answer carries. An anonymous allow (public route, no token) depends on no token. A
/// sender-constrained token's allow is never reused: it held for one proof or one
/// connection's certificate, which the ingress's cache key does not see.
fn reuse_for(identity: Option<&Identity>, ttl: Duration, now: u64) -> u64 {
    let mut secs = ttl.as_secs();
    if let Some(id) = identity {
        if id.cnf.is_some() {
            return 0;
        }
        secs = secs.min(id.expires_at.map_or(0, |exp| exp.saturating_sub(now)));
        if id.signed_jwt.is_some() {
            // A reused internal JWT has at least half its lifetime left.
            secs = secs.min(crate::authn::signed::INTERNAL_TTL.as_secs() / 2);
        }
    }
    secs
}

#[cfg(test)]
mod tests;
