//! One route, raw → [`RouteSpec`]: its host, path and methods, its upstream and how to
//! reach it, its authentication policy and token sources, rate limit and resource; then
//! the checks across routes. Like the rest of validation, every problem is pushed (naming
//! the route's key and line) rather than returned early, so one run reports them all.

use std::str::FromStr;
use std::time::Duration;

use http::Method;

use super::raw::{self, AuthMode, RawConfig};
use super::validate::{line_hint, pem_has, PemKind};
use super::{AuthPolicy, HostMatch, RouteSpec, TargetSpec, TokenSource};
use super::{UpstreamSpec, UpstreamTlsSpec};
use crate::http::path::normalize_path;

/// Where a problem is: the route's key (`routes[3] (api)`) and line hint (` (line 12)`).
struct At {
    key: String,
    line: String,
}

pub(super) fn validate_route(
    i: usize,
    r: &raw::Route,
    raw: &RawConfig,
    text: &str,
    problems: &mut Vec<String>,
) -> Option<RouteSpec> {
    let at = At {
        key: format!("routes[{i}] ({})", r.name),
        line: line_hint(text, &format!("name: {}", r.name)),
    };
    let before = problems.len();

    if r.name.trim().is_empty() {
        problems.push(format!("routes[{i}].name: must not be empty{}", at.line));
    }
    let host = route_host(r, &at, problems);
    let path = route_path(r, &at, problems);
    let methods = route_methods(r, &at, problems);
    let upstream = route_upstream(&r.upstream, &at, problems);
    let auth = route_auth(r, &at, problems);
    let token_sources = route_token_sources(r, &at, problems);
    let rate_limit = super::rate_limit::route_limit(&at.key, r, raw, problems);
    let audience = super::resource::route_resource(&at.key, r, raw, problems);
    check_client_cert_can_be_seen(r, raw, &at, problems);

    if problems.len() > before {
        return None;
    }
    Some(RouteSpec {
        name: r.name.clone(),
        host,
        path,
        methods,
        upstream: upstream?,
        strip_prefix: r.strip_prefix,
        auth,
        token_sources,
        max_body_bytes: r.max_body_bytes.unwrap_or(raw.limits.max_body_bytes),
        // Off unless the route opts in: an upstream that receives the caller's bearer
        // token can replay it against every other route that accepts it.
        forward_authorization: r.forward_authorization.unwrap_or(false),
        close_on_token_expiry: r.close_on_token_expiry.unwrap_or(true),
        rate_limit,
        require_client_cert: r.require_client_cert,
        audience,
        resource: r.resource.clone(),
        sender_constraint: r.sender_constraint,
        index: i,
    })
}

/// `host`: any (absent, empty or `*`), an exact name, or `*.suffix`; matched lowercased.
fn route_host(r: &raw::Route, at: &At, problems: &mut Vec<String>) -> HostMatch {
    match r.host.as_deref().map(str::trim) {
        None | Some("") | Some("*") => HostMatch::Any,
        Some(h) if h.starts_with("*.") && h.len() > 2 && !h[2..].contains('*') => {
            HostMatch::Suffix(h[1..].to_ascii_lowercase())
        }
        Some(h) if !h.contains('*') && !h.contains('/') && !h.contains(':') => {
            HostMatch::Exact(h.to_ascii_lowercase())
        }
        Some(h) => {
            problems.push(format!(
                "{}.host: `{h}` must be an exact host or `*.suffix` (no port, no path){}",
                at.key, at.line
            ));
            HostMatch::Any
        }
    }
}

/// `path`: absolute, normalised as request paths are, without a trailing slash.
fn route_path(r: &raw::Route, at: &At, problems: &mut Vec<String>) -> String {
    let At { key, line } = at;
    if !r.path.starts_with('/') {
        problems.push(format!(
            "{key}.path: `{}` must start with `/`{line}",
            r.path
        ));
        return String::from("/");
    }
    match normalize_path(&r.path) {
        Ok(p) => {
            let p = p.into_owned();
            if p.len() > 1 && p.ends_with('/') {
                p.trim_end_matches('/').to_string()
            } else {
                p
            }
        }
        Err(_) => {
            problems.push(format!(
                "{key}.path: `{}` is not a valid path{line}",
                r.path
            ));
            String::from("/")
        }
    }
}

/// `methods`: HTTP methods, any case; absent matches every method, empty is refused.
fn route_methods(r: &raw::Route, at: &At, problems: &mut Vec<String>) -> Option<Vec<Method>> {
    let At { key, line } = at;
    let listed = r.methods.as_ref()?;
    if listed.is_empty() {
        problems.push(format!(
            "{key}.methods: empty list would match nothing; omit it to match every method{line}"
        ));
    }
    Some(
        listed
            .iter()
            .filter_map(
                |m| match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                    Ok(m) => Some(m),
                    Err(_) => {
                        problems.push(format!("{key}.methods: `{m}` is not an HTTP method{line}"));
                        None
                    }
                },
            )
            .collect(),
    )
}

/// `upstream`: a URL, or targets with timeouts, ejection, retries, protocol and TLS.
/// `None` when a problem was pushed.
fn route_upstream(
    upstream: &raw::Upstream,
    at: &At,
    problems: &mut Vec<String>,
) -> Option<UpstreamSpec> {
    let At { key, line } = at;
    let detailed = match upstream {
        raw::Upstream::Url(_) => None,
        raw::Upstream::Detailed(d) => Some(d),
    };
    let targets = match upstream {
        raw::Upstream::Url(u) => std::slice::from_ref(u),
        raw::Upstream::Detailed(d) => d.targets.as_slice(),
    };
    let before = problems.len();
    if targets.is_empty() {
        problems.push(format!(
            "{key}.upstream.targets: at least one target is needed{line}"
        ));
    }
    let targets: Vec<TargetSpec> = targets
        .iter()
        .filter_map(|t| match parse_target(t) {
            Ok(t) => Some(t),
            Err(why) => {
                problems.push(format!("{key}.upstream: `{t}` {why}{line}"));
                None
            }
        })
        .collect();
    let (protocol, tls) = validate_upstream_transport(
        key,
        line,
        &targets,
        detailed.and_then(|d| d.protocol),
        detailed.and_then(|d| d.tls.as_ref()),
        problems,
    );
    if problems.len() > before {
        return None;
    }
    Some(UpstreamSpec {
        targets,
        timeout: detailed
            .and_then(|d| d.timeout)
            .unwrap_or(Duration::from_secs(30)),
        connect_timeout: detailed
            .and_then(|d| d.connect_timeout)
            .unwrap_or(Duration::from_secs(2)),
        eject_after: detailed.and_then(|d| d.eject_after).unwrap_or(3).max(1),
        eject_for: detailed
            .and_then(|d| d.eject_for)
            .unwrap_or(Duration::from_secs(10)),
        retries: detailed.and_then(|d| d.retries).unwrap_or(1),
        protocol,
        tls,
    })
}

/// `auth`: a mode alone, or a mode with the scopes and roles a token must carry.
fn route_auth(r: &raw::Route, at: &At, problems: &mut Vec<String>) -> AuthPolicy {
    let policy = |mode, scopes: &[String], roles: &[String]| AuthPolicy {
        mode,
        scopes: scopes.to_vec(),
        roles: roles.to_vec(),
    };
    match &r.auth {
        None => policy(AuthMode::None, &[], &[]),
        Some(raw::Auth::Mode(m)) => policy(*m, &[], &[]),
        Some(raw::Auth::Detailed(d)) => {
            if d.mode == AuthMode::None && (!d.scopes.is_empty() || !d.roles.is_empty()) {
                problems.push(format!(
                    "{}.auth: scopes/roles need mode `required` or `optional`{}",
                    at.key, at.line
                ));
            }
            policy(d.mode, &d.scopes, &d.roles)
        }
    }
}

/// `token_sources`: where the bearer token is read (the `Authorization` header unless
/// the route lists others).
fn route_token_sources(r: &raw::Route, at: &At, problems: &mut Vec<String>) -> Vec<TokenSource> {
    let Some(list) = &r.token_sources else {
        return vec![TokenSource::Header];
    };
    list.iter()
        .filter_map(|s| match parse_token_source(s) {
            Some(ts) => Some(ts),
            None => {
                problems.push(format!(
                    "{}.token_sources: `{s}` is not `header`, `query:NAME` or `cookie:NAME`{}",
                    at.key, at.line
                ));
                None
            }
        })
        .collect()
}

/// `require_client_cert` on a gateway that could never see a certificate would refuse
/// every request: refused here instead. A certificate comes from this listener's
/// handshake (`tls.client_ca`), or, where an ingress asks (forward-auth, ext_authz), from
/// what a trusted proxy or Envoy reports.
fn check_client_cert_can_be_seen(
    r: &raw::Route,
    raw: &RawConfig,
    at: &At,
    problems: &mut Vec<String>,
) {
    let handshake = raw
        .tls
        .as_ref()
        .and_then(|t| t.client_ca.as_ref())
        .is_some();
    let reported = raw.listen.ext_authz.is_some()
        || (raw.forward_auth.path.is_some()
            && raw.forward_auth.client_cert_header.is_some()
            && !raw.trusted_proxies.is_empty());
    if r.require_client_cert && !handshake && !reported {
        problems.push(format!(
            "{}.require_client_cert: set, but no client certificate could ever be seen (no tls.client_ca, no listen.ext_authz, no forward_auth.client_cert_header with trusted_proxies), so no request could pass{}",
            at.key, at.line
        ));
    }
}

/// Rejects what would be ambiguous at request time: the same name twice, or two routes
/// with the same host pattern and path whose methods overlap.
pub(super) fn check_route_conflicts(routes: &[RouteSpec], text: &str, problems: &mut Vec<String>) {
    for (a_i, a) in routes.iter().enumerate() {
        for b in &routes[a_i + 1..] {
            if a.name == b.name {
                problems.push(format!(
                    "routes[{}]: name `{}` is used twice (routes[{}] too){}",
                    b.index,
                    b.name,
                    a.index,
                    line_hint(text, &format!("name: {}", b.name))
                ));
            }
            let overlap = match (&a.methods, &b.methods) {
                (None, None) => true,
                (Some(x), Some(y)) => x.iter().any(|m| y.contains(m)),
                _ => false,
            };
            if a.host == b.host && a.path == b.path && overlap {
                problems.push(format!(
                    "routes[{}] ({}): same host `{}`, path `{}` and methods as routes[{}] ({}); one would never be used{}",
                    b.index,
                    b.name,
                    b.host,
                    b.path,
                    a.index,
                    a.name,
                    line_hint(text, &format!("name: {}", b.name))
                ));
            }
        }
    }
}

/// The protocol and TLS settings of one upstream: all targets `http://` or all
/// `https://`, a protocol that fits the scheme, TLS settings only for `https://`, and TLS
/// files that exist and hold what they should.
fn validate_upstream_transport(
    key: &str,
    line: &str,
    targets: &[TargetSpec],
    protocol: Option<raw::UpstreamProtocol>,
    tls: Option<&raw::UpstreamTls>,
    problems: &mut Vec<String>,
) -> (raw::UpstreamProtocol, Option<UpstreamTlsSpec>) {
    use raw::UpstreamProtocol as P;
    let protocol = protocol.unwrap_or_default();
    let secure = targets
        .first()
        .is_some_and(|t| t.scheme == http::uri::Scheme::HTTPS);
    if targets
        .iter()
        .any(|t| (t.scheme == http::uri::Scheme::HTTPS) != secure)
    {
        problems.push(format!(
            "{key}.upstream.targets: mixes http:// and https:// targets; use one scheme per upstream{line}"
        ));
    }
    match (protocol, secure) {
        (P::H2, false) if !targets.is_empty() => problems.push(format!(
            "{key}.upstream.protocol: `h2` is HTTP/2 over TLS and needs https:// targets; use `h2c` for cleartext HTTP/2{line}"
        )),
        (P::H2c, true) => problems.push(format!(
            "{key}.upstream.protocol: `h2c` is cleartext HTTP/2 and needs http:// targets; use `h2` over TLS{line}"
        )),
        _ => {}
    }
    let Some(t) = tls else {
        return (protocol, secure.then(UpstreamTlsSpec::default));
    };
    if !secure {
        problems.push(format!(
            "{key}.upstream.tls: set, but the targets are http://; TLS settings need https:// targets{line}"
        ));
    }
    if let Some(ca) = &t.ca_file {
        if let Err(why) = pem_has(ca, PemKind::Certificate) {
            problems.push(format!("{key}.upstream.tls.ca_file: {why}{line}"));
        }
    }
    if let Some(name) = &t.server_name {
        if rustls::pki_types::ServerName::try_from(name.as_str()).is_err() {
            problems.push(format!(
                "{key}.upstream.tls.server_name: `{name}` is neither a DNS name nor an IP address{line}"
            ));
        }
    }
    let client_cert = match (&t.client_cert, &t.client_key) {
        (Some(c), Some(k)) => {
            if let Err(why) = pem_has(c, PemKind::Certificate) {
                problems.push(format!("{key}.upstream.tls.client_cert: {why}{line}"));
            }
            if let Err(why) = pem_has(k, PemKind::PrivateKey) {
                problems.push(format!("{key}.upstream.tls.client_key: {why}{line}"));
            }
            Some((c.clone(), k.clone()))
        }
        (None, None) => None,
        _ => {
            problems.push(format!(
                "{key}.upstream.tls: client_cert and client_key go together; set both or neither{line}"
            ));
            None
        }
    };
    (
        protocol,
        secure.then(|| UpstreamTlsSpec {
            ca_file: t.ca_file.clone(),
            server_name: t.server_name.clone(),
            client_cert,
            min_version: t.min_version.unwrap_or_default(),
        }),
    )
}

fn parse_target(t: &str) -> Result<TargetSpec, &'static str> {
    let uri = http::Uri::from_str(t).map_err(|_| "is not a URL")?;
    let scheme = uri.scheme().cloned().ok_or("needs a scheme (http://)")?;
    if scheme != http::uri::Scheme::HTTP && scheme != http::uri::Scheme::HTTPS {
        return Err("must be an http:// or https:// URL");
    }
    let authority = uri.authority().cloned().ok_or("needs a host")?;
    if uri.query().is_some() {
        return Err("must not carry a query");
    }
    let base_path = uri.path().trim_end_matches('/').to_string();
    Ok(TargetSpec {
        scheme,
        authority,
        base_path,
    })
}

fn parse_token_source(s: &str) -> Option<TokenSource> {
    let s = s.trim();
    if s == "header" {
        return Some(TokenSource::Header);
    }
    let (kind, name) = s.split_once(':')?;
    if name.is_empty() {
        return None;
    }
    match kind {
        "query" => Some(TokenSource::Query(name.to_string())),
        "cookie" => Some(TokenSource::Cookie(name.to_string())),
        _ => None,
    }
}
