//! What a token request asks its tokens to be bound to and issued for: the sender
//! constraint (a DPoP proof, RFC 9449 §5; or the TLS client certificate of the
//! connection, RFC 8705 §3) and the RFC 8707 resources (the access token's `aud`).

use http::request::Parts;

use super::error::OAuthError;
use crate::authn::binding::Binding;
use crate::authn::{Confirmation, Scheme, TokenRequest};
use crate::config::Config;
use crate::http::ConnInfo;
use crate::store::Client;

/// The binding and resources of one token request.
#[derive(Debug, Default)]
pub(super) struct Bind {
    pub cnf: Option<Confirmation>,
    /// The `resource` parameters, checked to be resources this gateway serves.
    pub asked: Vec<String>,
}

impl Bind {
    /// Reads the request's `DPoP` proof (verified, recorded as used) or, without one, the
    /// certificate of an mTLS connection; and its `resource` parameters.
    pub async fn of(
        cfg: &Config,
        binding: Option<&Binding>,
        parts: &Parts,
        conn: &ConnInfo,
        resources: &[String],
    ) -> Result<Bind, OAuthError> {
        let asked = known_resources(cfg, resources)?;
        let host = parts.uri.authority().map(|a| a.as_str()).or_else(|| {
            parts
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        });
        let req = TokenRequest {
            token: "",
            scheme: Scheme::Bearer,
            method: parts.method.as_str(),
            uri_scheme: conn.scheme,
            host,
            path: parts.uri.path(),
            headers: Some(&parts.headers),
            client_cert: conn.client_cert.as_deref(),
            audience: None,
            constraint: crate::config::raw::SenderConstraint::None,
        };
        let proof = match (binding, parts.headers.contains_key("dpop")) {
            (Some(b), true) => b.proof(&req, None).await?,
            (None, true) => {
                return Err(OAuthError::DpopProof {
                    error: crate::authn::dpop::DpopError::Invalid("DPoP is not available here"),
                    nonce: None,
                })
            }
            (_, false) => None,
        };
        let cnf = match (proof, conn.client_cert.as_deref()) {
            (Some(p), _) => Some(Confirmation::Jkt(p.jkt)),
            (None, Some(cert)) => Some(Confirmation::X5tS256(
                crate::authn::dpop::cert_thumbprint_of(&cert.sha256),
            )),
            (None, None) => None,
        };
        Ok(Bind { cnf, asked })
    }

    /// The resources the new tokens are for: what was asked, which must be within what
    /// the grant allows (`allowed`: a code's or a refresh token's resources; `None`: a
    /// fresh grant, anything known); nothing asked keeps what the grant had.
    pub fn resources(&self, allowed: Option<&[String]>) -> Result<Vec<String>, OAuthError> {
        match allowed {
            None => Ok(self.asked.clone()),
            Some(had) if self.asked.is_empty() => Ok(had.to_vec()),
            Some(had) => {
                if self.asked.iter().all(|a| had.contains(a)) {
                    Ok(self.asked.clone())
                } else {
                    Err(OAuthError::InvalidTarget)
                }
            }
        }
    }

    /// Whether the refresh token is bound too: a public client's, to its DPoP key.
    pub fn binds_refresh(&self, client: &Client) -> bool {
        !client.is_confidential() && matches!(self.cnf, Some(Confirmation::Jkt(_)))
    }

    /// A refresh token bound to a key (`stored`, its `cnf` JSON) may only be used with a
    /// proof by that key.
    pub fn matches_refresh(&self, stored: Option<&str>) -> bool {
        let Some(stored) = stored else {
            return true;
        };
        let want = serde_json::from_str::<serde_json::Value>(stored)
            .ok()
            .as_ref()
            .and_then(Confirmation::from_claim);
        match (want, &self.cnf) {
            (Some(Confirmation::Jkt(w)), Some(Confirmation::Jkt(h))) => {
                crate::crypto::constant_time_eq(w.as_bytes(), h.as_bytes())
            }
            _ => false,
        }
    }
}

/// Every resource must be one a route names (its `audience` or `resource.id`): a token
/// for anything else would be accepted nowhere, and naming it is a mistake or a probe.
pub(super) fn known_resources(cfg: &Config, asked: &[String]) -> Result<Vec<String>, OAuthError> {
    let mut out: Vec<String> = Vec::new();
    for r in asked {
        if !cfg
            .routes
            .iter()
            .any(|route| route.audience.as_deref() == Some(r))
        {
            return Err(OAuthError::InvalidTarget);
        }
        if !out.contains(r) {
            out.push(r.clone());
        }
    }
    Ok(out)
}
