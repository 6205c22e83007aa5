//! A route's `WWW-Authenticate` challenges, made once per configuration: the schemes it
//! accepts (Bearer; DPoP with the proof algorithms, RFC 9449 §7.1) and, for a protected
//! resource, where its metadata is (`resource_metadata`, RFC 9728 §5.1), so that a client
//! meeting a 401 can discover the authorization server on its own (what MCP clients do).

use http::{header, HeaderValue, Response};

use super::error::GatewayError;
use crate::config::raw::SenderConstraint;
use crate::config::RouteSpec;
use crate::http::body::Body;

pub const PRM_PATH: &str = "/.well-known/oauth-protected-resource";

/// The challenge parameters of one route.
#[derive(Debug, Clone)]
pub struct RouteChallenge {
    resource_metadata: Option<String>,
    bearer: bool,
    dpop: bool,
}

impl RouteChallenge {
    /// `None` for a route whose challenges are the plain Bearer ones.
    pub fn for_route(spec: &RouteSpec) -> Option<RouteChallenge> {
        let resource_metadata = spec.resource.as_ref().and_then(|r| metadata_url(&r.id));
        if resource_metadata.is_none() && spec.sender_constraint == SenderConstraint::None {
            return None;
        }
        Some(RouteChallenge {
            resource_metadata,
            bearer: spec.sender_constraint != SenderConstraint::Dpop,
            dpop: spec.sender_constraint != SenderConstraint::Mtls,
        })
    }

    /// Rewrites the `WWW-Authenticate` of a 401/403 made from `error`.
    pub fn apply(&self, error: &GatewayError, resp: &mut Response<Body>) {
        if !resp.headers().contains_key(header::WWW_AUTHENTICATE) {
            return;
        }
        let (bearer_error, dpop_error) = match error {
            GatewayError::DpopProof { error, .. } => (None, Some(error.code())),
            GatewayError::InvalidToken(_) => (Some("invalid_token"), Some("invalid_token")),
            GatewayError::InsufficientScope => {
                (Some("insufficient_scope"), Some("insufficient_scope"))
            }
            _ => (None, None),
        };
        let extra = self
            .resource_metadata
            .as_deref()
            .map(|u| format!(r#", resource_metadata="{u}""#))
            .unwrap_or_default();
        let h = resp.headers_mut();
        h.remove(header::WWW_AUTHENTICATE);
        let mut push = |v: String| {
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.append(header::WWW_AUTHENTICATE, v);
            }
        };
        // A DPoP proof failure is answered in the DPoP scheme only.
        if self.bearer && !matches!(error, GatewayError::DpopProof { .. }) {
            push(format!(
                r#"Bearer realm="tollgate"{}{extra}"#,
                param("error", bearer_error)
            ));
        }
        if self.dpop || matches!(error, GatewayError::DpopProof { .. }) {
            push(format!(
                r#"DPoP realm="tollgate", algs="{}"{}{extra}"#,
                crate::authn::dpop::ALGS.join(" "),
                param("error", dpop_error)
            ));
        }
    }
}

fn param(name: &str, value: Option<&str>) -> String {
    value
        .map(|v| format!(r#", {name}="{v}""#))
        .unwrap_or_default()
}

/// RFC 9728 §3.1: the well-known path inserted between the resource's authority and its
/// path (`https://api.example.com/mcp` →
/// `https://api.example.com/.well-known/oauth-protected-resource/mcp`).
pub fn metadata_url(resource_id: &str) -> Option<String> {
    let u = url::Url::parse(resource_id).ok()?;
    let path = u.path().trim_end_matches('/');
    let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
    Some(format!(
        "{}://{}{port}{PRM_PATH}{path}",
        u.scheme(),
        u.host_str()?
    ))
}

/// The resource path a metadata request names: `""` for the bare well-known path,
/// `/mcp` for `…/oauth-protected-resource/mcp`; `None` for any other path.
pub fn metadata_suffix(path: &str) -> Option<&str> {
    let rest = path.strip_prefix(PRM_PATH)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// A resource's path as the well-known suffix compares it.
pub fn resource_path(resource_id: &str) -> Option<String> {
    let u = url::Url::parse(resource_id).ok()?;
    Some(u.path().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_urls_insert_the_well_known_path() {
        assert_eq!(
            metadata_url("https://api.example.com/mcp").unwrap(),
            "https://api.example.com/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            metadata_url("https://api.example.com").unwrap(),
            "https://api.example.com/.well-known/oauth-protected-resource"
        );
        assert_eq!(
            metadata_url("http://127.0.0.1:8080/a/b/").unwrap(),
            "http://127.0.0.1:8080/.well-known/oauth-protected-resource/a/b"
        );
        assert_eq!(metadata_suffix(PRM_PATH), Some(""));
        assert_eq!(
            metadata_suffix("/.well-known/oauth-protected-resource/mcp"),
            Some("/mcp")
        );
        assert_eq!(
            metadata_suffix("/.well-known/oauth-protected-resourcex"),
            None
        );
    }
}
