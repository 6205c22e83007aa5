//! The request around a token: what sender-constrained tokens (DPoP, RFC 9449; mTLS,
//! RFC 8705) and audience-restricted tokens (RFC 8707) are checked against. Built by each
//! transport from what it knows: the proxy from the request it received, forward-auth from
//! the request an ingress describes (method and URI from the trusted forwarded headers),
//! ext_authz from Envoy's `CheckRequest`.

use http::HeaderMap;

use crate::config::raw::SenderConstraint;
use crate::http::ClientCert;

/// How the token was presented (`Authorization` scheme; other token sources are Bearer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Bearer,
    /// `Authorization: DPoP <token>`: a proof must come with it.
    Dpop,
}

#[derive(Debug, Clone, Copy)]
pub struct TokenRequest<'a> {
    pub token: &'a str,
    pub scheme: Scheme,
    /// The request's method (`htm`).
    pub method: &'a str,
    /// `http` or `https`, as the client used it.
    pub uri_scheme: &'a str,
    /// The authority the client addressed, with a port when it named one.
    pub host: Option<&'a str>,
    /// The path the client used (`htu` is scheme, authority and this path).
    pub path: &'a str,
    /// The request's headers: the `DPoP` proof is read from them.
    pub headers: Option<&'a HeaderMap>,
    /// A certificate the client proved it holds (TLS handshake, or a trusted report).
    pub client_cert: Option<&'a ClientCert>,
    /// The audience the token must carry here; `None`: the gateway's own
    /// (`tokens.audience`) for its own tokens, and whatever the issuer's settings demand
    /// for foreign ones.
    pub audience: Option<&'a str>,
    /// The proof of possession the caller demands.
    pub constraint: SenderConstraint,
}

impl<'a> TokenRequest<'a> {
    /// A plain bearer token at one of the gateway's own endpoints.
    pub fn bearer(token: &'a str) -> TokenRequest<'a> {
        TokenRequest {
            token,
            scheme: Scheme::Bearer,
            method: "GET",
            uri_scheme: "http",
            host: None,
            path: "/",
            headers: None,
            client_cert: None,
            audience: None,
            constraint: SenderConstraint::None,
        }
    }

    /// `htu`: the URI the client used, without query or fragment.
    pub fn htu(&self) -> String {
        format!(
            "{}://{}{}",
            self.uri_scheme,
            self.host.unwrap_or_default(),
            self.path
        )
    }
}
