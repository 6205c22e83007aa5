//! The agent-facing settings: a route as an RFC 9728 protected resource (its `resource`,
//! `audience` and `sender_constraint`), and the top-level `client_registration` and
//! `dpop` sections.

use super::raw::{self, ClientRegistration, DpopReplayStore, RawConfig, SenderConstraint};

/// The default variable of the registration initial access token.
pub const DEFAULT_REGISTRATION_TOKEN_ENV: &str = "TOLLGATE_REGISTRATION_TOKEN";

/// Shortest initial access token accepted: it is a shared secret.
const MIN_REGISTRATION_TOKEN: usize = 16;

pub(super) fn registration_token_env(raw: &RawConfig) -> String {
    raw.client_registration_token_env
        .clone()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_REGISTRATION_TOKEN_ENV.into())
}

/// Top-level checks: a registration mode that can work, a sane proof window, a replay
/// store that exists.
pub(super) fn validate_top(raw: &RawConfig, problems: &mut Vec<String>) {
    if raw.client_registration == ClientRegistration::InitialToken {
        let var = registration_token_env(raw);
        match std::env::var(&var) {
            Ok(v) if v.len() >= MIN_REGISTRATION_TOKEN => {}
            Ok(_) => problems.push(format!(
                "client_registration: initial_token, but ${var} is shorter than {MIN_REGISTRATION_TOKEN} characters"
            )),
            Err(_) => problems.push(format!(
                "client_registration: initial_token, but ${var} is not set (client_registration_token_env names the variable)"
            )),
        }
    }
    let w = raw.dpop.proof_window;
    if w.is_zero() || w > std::time::Duration::from_secs(600) {
        problems.push("dpop.proof_window: must be between 1s and 10m".into());
    }
    if raw.dpop.replay_store == DpopReplayStore::Redis && raw.rate_limit_store.is_none() {
        problems.push(
            "dpop.replay_store: redis, but there is no rate_limit_store section naming the server"
                .into(),
        );
    }
}

/// A resource identifier or audience Tollgate can compare and publish: an absolute
/// https URL (http only on a loopback host), no fragment.
fn resource_id_problem(id: &str) -> Option<&'static str> {
    let Ok(u) = url::Url::parse(id) else {
        return Some("is not an absolute URL");
    };
    if u.fragment().is_some() {
        return Some("must not have a fragment (RFC 8707 §2)");
    }
    let loopback = matches!(u.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    match u.scheme() {
        "https" => None,
        "http" if loopback => None,
        _ => Some("must be an https URL (http only on a loopback host)"),
    }
}

/// The route's audience (its own, else its resource id) and metadata, checked.
pub(super) fn route_resource(
    key: &str,
    r: &raw::Route,
    raw: &RawConfig,
    problems: &mut Vec<String>,
) -> Option<String> {
    if let Some(res) = &r.resource {
        if let Some(why) = resource_id_problem(&res.id) {
            problems.push(format!("{key}.resource.id: `{}` {why}", res.id));
        }
        if let Some(doc) = &res.documentation {
            if url::Url::parse(doc)
                .map(|u| u.scheme() != "https" && u.scheme() != "http")
                .unwrap_or(true)
            {
                problems.push(format!(
                    "{key}.resource.documentation: `{doc}` is not an http(s) URL"
                ));
            }
        }
        if r.auth.is_none() {
            problems.push(format!(
                "{key}.resource: a protected resource needs `auth` (required, or optional)"
            ));
        }
    }
    if let Some(aud) = &r.audience {
        if aud.trim().is_empty() {
            problems.push(format!("{key}.audience: must not be empty"));
        }
    }
    let mtls_possible = raw.tls.as_ref().is_some_and(|t| t.client_ca.is_some())
        || raw.listen.ext_authz.is_some()
        || (raw.forward_auth.client_cert_header.is_some() && !raw.trusted_proxies.is_empty());
    if r.sender_constraint == SenderConstraint::Mtls && !mtls_possible {
        problems.push(format!(
            "{key}.sender_constraint: mtls, but no client certificate could ever be seen (no tls.client_ca, no listen.ext_authz, no forward_auth.client_cert_header with trusted_proxies)"
        ));
    }
    r.audience
        .clone()
        .or_else(|| r.resource.as_ref().map(|res| res.id.clone()))
}

/// Two routes publishing metadata for one resource id must publish the same document.
pub(super) fn check_resource_conflicts(routes: &[super::RouteSpec], problems: &mut Vec<String>) {
    for (i, a) in routes.iter().enumerate() {
        let Some(ra) = &a.resource else { continue };
        for b in &routes[i + 1..] {
            if let Some(rb) = &b.resource {
                if ra.id == rb.id && ra != rb {
                    problems.push(format!(
                        "routes ({} and {}): resource `{}` is described twice, differently",
                        a.name, b.name, ra.id
                    ));
                }
            }
        }
    }
}
