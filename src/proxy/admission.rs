//! The one admission decision: may this request pass, as whom, and within which budget.
//!
//! The proxy (stages 1–4 of [`super::Proxy::handle`]), HTTP forward-auth
//! (`forward_auth/`) and the Envoy ext_authz gRPC server (`ext_authz/`) all call
//! [`admit`], each over a [`RequestView`] built from its own transport: the proxy from the
//! request it received, forward-auth from the request an ingress describes, ext_authz from
//! Envoy's `CheckRequest`. Whatever is decided here is decided the same way everywhere;
//! what differs is only how the answer is written.
//!
//! In order, the first failure ending the decision:
//! 1. route — by host, method and normalised path, or by name (ext_authz
//!    `context_extensions`); none: `NoRoute` (404 on the proxy, 403 in forward modes);
//! 2. limits — a declared body over the route's limit (413), no client certificate where
//!    the route requires one (403);
//! 3. token → identity → policy (`authn`, `authz`: 401/403, 503 when it cannot be checked);
//! 4. the route's rate limit, by the caller when there is one (429).

use std::net::IpAddr;
use std::sync::Arc;

use http::{header, HeaderMap, Method};

use super::error::GatewayError;
use super::ratelimit::RateLimitHeaders;
use super::{authz, route, Generation, Route};
use crate::authn::{source, Authenticator, Identity, TokenRequest};
use crate::config::{RouteSpec, TokenSource};
use crate::http::head::Fields;
use crate::http::ClientCert;

/// The request to decide, whatever carried it.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub method: &'a Method,
    /// `http` or `https`, as the client used it.
    pub scheme: &'a str,
    /// The host the request is addressed to, without port or trailing dot.
    pub host: Option<&'a str>,
    /// The normalised path (`http::path::normalize_path`), without the query.
    pub path: &'a str,
    /// The path as the client sent it, without the query: a DPoP proof's `htu` names it.
    pub raw_path: &'a str,
    /// The authority as the client addressed it, with its port (`htu`); `host` when the
    /// transport knows no more.
    pub authority: Option<&'a str>,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    /// Which fields `headers` may carry (`http::head`): an absent one is not looked up.
    /// [`Fields::ALL`] where nothing is known.
    pub fields: Fields,
    /// The address rate limits with `key: ip` count behind `trusted_proxies`.
    pub peer: IpAddr,
    /// A certificate the client proved it holds: from this listener's TLS handshake, or
    /// reported by a trusted proxy (`http::forwarded_cert`) or by Envoy.
    pub client_cert: Option<&'a ClientCert>,
}

/// How the route is chosen.
#[derive(Debug, Clone, Copy)]
pub enum RouteBy<'a> {
    /// By host, method and path, as for proxied traffic.
    Match,
    /// By the route's `name` (Envoy `context_extensions["tollgate_route"]`).
    Name(&'a str),
}

/// An allowed request.
pub struct Admitted<'g> {
    pub route: &'g Arc<Route>,
    pub identity: Option<Arc<Identity>>,
    /// The rate-limit headers for the answer, when the route is limited.
    pub limit_headers: Option<RateLimitHeaders>,
    /// The query parameter the token came from, removed before the request is forwarded.
    pub query_token: Option<&'g str>,
}

/// A refused request: why, and on which route when one was found (for its metrics).
pub struct Refusal<'g> {
    pub route: Option<&'g Arc<Route>>,
    pub error: GatewayError,
}

impl From<Refusal<'_>> for GatewayError {
    fn from(r: Refusal<'_>) -> GatewayError {
        r.error
    }
}

/// The decision. See the module comment for its stages.
pub async fn admit<'g>(
    rt: &'g Generation,
    authenticator: &dyn Authenticator,
    req: &RequestView<'_>,
    by: RouteBy<'_>,
) -> Result<Admitted<'g>, Refusal<'g>> {
    let route = find(rt, req, by).map_err(|error| Refusal { route: None, error })?;
    let refuse = |error| Refusal {
        route: Some(route),
        error,
    };
    let spec = &route.spec;
    check_limits(spec, req).map_err(refuse)?;
    let found = source::find_token(&spec.token_sources, req.headers, req.query, &|b| {
        authenticator.known_token(b)
    });
    let token = found.as_ref().map(|f| TokenRequest {
        token: f.token.as_str(),
        scheme: f.scheme,
        method: req.method.as_str(),
        uri_scheme: req.scheme,
        host: req.authority.or(req.host),
        path: req.raw_path,
        headers: Some(req.headers),
        client_cert: req.client_cert,
        audience: spec.audience.as_deref(),
        constraint: spec.sender_constraint,
    });
    let identity = authz::decide(&spec.auth, token.as_ref(), authenticator)
        .await
        .map_err(|e| refuse(e.on_route(route.challenge.as_ref())))?;
    let limit_headers = super::rate_limit(rt, route, identity.as_deref(), req.headers, req.peer)
        .await
        .map_err(refuse)?;
    let query_token = match found.map(|f| f.source) {
        Some(TokenSource::Query(name)) => Some(name.as_str()),
        _ => None,
    };
    Ok(Admitted {
        route,
        identity,
        limit_headers,
        query_token,
    })
}

fn find<'g>(
    rt: &'g Generation,
    req: &RequestView<'_>,
    by: RouteBy<'_>,
) -> Result<&'g Arc<Route>, GatewayError> {
    match by {
        RouteBy::Match => rt
            .routes
            .find(
                req.host,
                req.method,
                &crate::http::path::route_key(req.path),
            )
            .ok_or(GatewayError::NoRoute),
        RouteBy::Name(name) => rt
            .routes
            .routes()
            .iter()
            .find(|r| route::HasSpec::spec(&***r).name == name)
            .ok_or(GatewayError::NoRoute),
    }
}

/// A declared body over the route's limit (streamed bodies are counted as they go,
/// `forward::LimitedBody`), and a missing client certificate where the route insists.
fn check_limits(spec: &RouteSpec, req: &RequestView<'_>) -> Result<(), GatewayError> {
    if let Some(len) = req
        .fields
        .may_have(Fields::CONTENT_LENGTH)
        .then(|| req.headers.get(header::CONTENT_LENGTH))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > spec.max_body_bytes {
            return Err(GatewayError::BodyTooLarge(spec.max_body_bytes));
        }
    }
    if spec.require_client_cert && req.client_cert.is_none() {
        return Err(GatewayError::ClientCertRequired);
    }
    Ok(())
}
