//! Raw → validated. Every check pushes a message naming the key (and, where it can be
//! found, the line) instead of returning early, so one run reports every problem.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use http::Method;
use ipnet::IpNet;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::identity::IdentityHeaderNames;
use super::raw::{self, AuthMode, RawConfig};
use super::{AuthPolicy, Config, ConfigError, HostMatch, RouteSpec, TargetSpec, TokenSource};
use super::{UpstreamSpec, UpstreamTlsSpec};
use crate::http::path::normalize_path;

pub(super) fn validate(
    raw: RawConfig,
    text: &str,
    source_path: Option<PathBuf>,
) -> Result<Config, ConfigError> {
    let mut problems = Vec::new();

    let mut trusted_proxies = Vec::new();
    for (i, cidr) in raw.trusted_proxies.iter().enumerate() {
        match parse_cidr(cidr) {
            Some(net) => trusted_proxies.push(net),
            None => problems.push(format!(
                "trusted_proxies[{i}]: `{cidr}` is not a CIDR (e.g. 10.0.0.0/8 or 127.0.0.1){}",
                line_hint(text, cidr)
            )),
        }
    }

    if raw.listen.https.is_some() && raw.tls.is_none() {
        problems.push("listen.https: set, but there is no `tls` section with cert and key".into());
    }
    if let Some(tls) = &raw.tls {
        for (key, p) in [("tls.cert", &tls.cert), ("tls.key", &tls.key)] {
            if !p.exists() {
                problems.push(format!("{key}: file {} does not exist", p.display()));
            }
        }
        match (&tls.client_ca, tls.client_auth) {
            (Some(ca), _) => {
                if let Err(why) = pem_has(ca, PemKind::Certificate) {
                    problems.push(format!("tls.client_ca: {why}"));
                }
            }
            (None, Some(_)) => problems.push(
                "tls.client_auth: set, but there is no tls.client_ca to verify client certificates with".into(),
            ),
            (None, None) => {}
        }
    }
    if let Some(css) = &raw.login.css_file {
        if std::fs::read_to_string(css).is_err() {
            problems.push(format!("login.css_file: {} cannot be read", css.display()));
        }
    }
    if let Some(logo) = &raw.login.logo_url {
        if !(logo.starts_with("https://") || logo.starts_with("/")) || logo.contains('"') {
            problems
                .push("login.logo_url: must be an https:// URL or a path on this gateway".into());
        }
    }
    if raw.login.code_ttl.is_zero() || raw.login.code_ttl > std::time::Duration::from_secs(600) {
        problems.push("login.code_ttl: must be between 1s and 10m (RFC 6749 §4.1.2)".into());
    }
    if raw.login.session.idle.is_zero() || raw.login.session.idle > raw.login.session.absolute {
        problems.push(
            "login.session.idle: must be more than 0s and at most login.session.absolute".into(),
        );
    }
    if raw.listen.workers > MAX_WORKERS {
        problems.push(format!(
            "listen.workers: {} is more than {MAX_WORKERS}; use 0 for one per CPU core",
            raw.listen.workers
        ));
    }
    if raw.listen.http.is_none() && raw.listen.https.is_none() && raw.listen.ext_authz.is_none() {
        problems.push(
            "listen: none of `http`, `https` and `ext_authz` is set; nothing would be served"
                .into(),
        );
    }
    // Two listeners on one address: the second could not bind, so `serve` would fail
    // after `check` passed. Port 0 (any free port) never collides.
    let listeners = [
        ("http", raw.listen.http),
        ("https", raw.listen.https),
        ("admin", raw.listen.admin),
        ("ext_authz", raw.listen.ext_authz),
    ];
    for (i, (name, addr)) in listeners.iter().enumerate() {
        let Some(addr) = addr.filter(|a| a.port() != 0) else {
            continue;
        };
        if let Some((other, _)) = listeners[..i].iter().find(|(_, o)| {
            o.is_some_and(|o| {
                o.port() == addr.port()
                    && (o.ip() == addr.ip()
                        || o.ip().is_unspecified()
                        || addr.ip().is_unspecified())
            })
        }) {
            problems.push(format!(
                "listen.{name}: {addr} is also listen.{other}; each listener needs its own port"
            ));
        }
    }
    let store = &raw.store.url;
    if !(store.starts_with("sqlite:")
        || store.starts_with("postgres://")
        || store.starts_with("postgresql://"))
    {
        problems.push(format!(
            "store.url: `{}` is neither sqlite://… nor postgres://…",
            redact_url(store)
        ));
    }
    if raw.limits.max_header_bytes < 8192 {
        problems.push("limits.max_header_bytes: must be at least 8192".into());
    }
    if raw.limits.max_connections == 0 {
        problems.push("limits.max_connections: must be at least 1".into());
    }
    if let Some(eps) = &raw.token_endpoints {
        for (i, ep) in eps.iter().enumerate() {
            if !ep.path.starts_with('/') {
                problems.push(format!("token_endpoints[{i}].path: must start with `/`"));
            }
            if let Some(s) = ep.invalid_credentials_status {
                if !(400..500).contains(&s) {
                    problems.push(format!(
                        "token_endpoints[{i}].invalid_credentials_status: {s} is not a 4xx status"
                    ));
                }
            }
            if let Some(g) = &ep.grant {
                if !["password", "refresh_token", "client_credentials"].contains(&g.as_str()) {
                    problems.push(format!("token_endpoints[{i}].grant: unknown grant `{g}`"));
                }
            }
        }
    }
    if let Some(p) = &raw.forward_auth.path {
        if !p.starts_with('/') {
            problems.push("forward_auth.path: must start with `/`".into());
        }
    }
    let identity = IdentityHeaderNames::parse(&raw.identity_headers, &mut problems);

    problems.extend(crate::config::provider::validate_config(&raw));
    super::rate_limit::validate_globals(&raw, &mut problems);
    if raw.audit.destination != "stderr" {
        let p = std::path::Path::new(&raw.audit.destination);
        let parent = p.parent().filter(|d| !d.as_os_str().is_empty());
        if raw.audit.destination.is_empty() || parent.is_some_and(|d| !d.is_dir()) {
            problems.push(format!(
                "audit.destination: `{}` is neither `stderr` nor a file in an existing directory",
                raw.audit.destination
            ));
        }
    }
    if raw.audit.max_bytes < 4096 {
        problems.push("audit.max_bytes: must be at least 4096".into());
    }
    if let Some(t) = &raw.telemetry.tracing {
        validate_tracing(t, &mut problems);
    }

    let mut routes = Vec::with_capacity(raw.routes.len());
    for (i, r) in raw.routes.iter().enumerate() {
        if let Some(spec) = validate_route(i, r, &raw, text, &mut problems) {
            routes.push(spec);
        }
    }
    check_route_conflicts(&routes, text, &mut problems);
    super::resource::check_resource_conflicts(&routes, &mut problems);
    super::resource::validate_top(&raw, &mut problems);

    let client_registration_token_env = super::resource::registration_token_env(&raw);
    match identity {
        Some(identity) if problems.is_empty() => Ok(Config {
            dialects: super::dialect::mounted(&raw),
            connect_providers: crate::config::provider::resolve_all(&raw),
            listen: raw.listen,
            tls: raw.tls,
            store: raw.store,
            tokens: raw.tokens,
            users_api: raw.users_api,
            login: raw.login,
            client_registration: raw.client_registration,
            client_registration_token_env,
            dpop: raw.dpop,
            cors: raw.cors,
            connect: raw.connect,
            introspection: raw.introspection,
            jwt_issuers: raw.jwt_issuers,
            forward_auth: raw.forward_auth,
            limits: raw.limits,
            log: raw.log,
            echo_upstream: raw.echo_upstream,
            rate_limit_store: raw.rate_limit_store,
            audit: raw.audit,
            telemetry: raw.telemetry,
            identity,
            source_path,
            trusted_proxies,
            routes,
        }),
        _ => Err(ConfigError {
            source_path,
            problems,
        }),
    }
}

fn validate_route(
    i: usize,
    r: &raw::Route,
    raw: &RawConfig,
    text: &str,
    problems: &mut Vec<String>,
) -> Option<RouteSpec> {
    let key = format!("routes[{i}] ({})", r.name);
    let line = line_hint(text, &format!("name: {}", r.name));
    let before = problems.len();

    if r.name.trim().is_empty() {
        problems.push(format!("routes[{i}].name: must not be empty{line}"));
    }
    let host = match r.host.as_deref().map(str::trim) {
        None | Some("") | Some("*") => HostMatch::Any,
        Some(h) if h.starts_with("*.") && h.len() > 2 && !h[2..].contains('*') => {
            HostMatch::Suffix(h[1..].to_ascii_lowercase())
        }
        Some(h) if !h.contains('*') && !h.contains('/') && !h.contains(':') => {
            HostMatch::Exact(h.to_ascii_lowercase())
        }
        Some(h) => {
            problems.push(format!(
                "{key}.host: `{h}` must be an exact host or `*.suffix` (no port, no path){line}"
            ));
            HostMatch::Any
        }
    };
    let path = if !r.path.starts_with('/') {
        problems.push(format!(
            "{key}.path: `{}` must start with `/`{line}",
            r.path
        ));
        String::from("/")
    } else {
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
    };
    let methods = r.methods.as_ref().map(|ms| {
        ms.iter()
            .filter_map(
                |m| match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                    Ok(m) => Some(m),
                    Err(_) => {
                        problems.push(format!("{key}.methods: `{m}` is not an HTTP method{line}"));
                        None
                    }
                },
            )
            .collect::<Vec<_>>()
    });
    if methods.as_ref().is_some_and(|m| m.is_empty())
        && r.methods.as_ref().is_some_and(|m| m.is_empty())
    {
        problems.push(format!(
            "{key}.methods: empty list would match nothing; omit it to match every method{line}"
        ));
    }

    let (targets, timeout, connect_timeout, eject_after, eject_for, retries) = match &r.upstream {
        raw::Upstream::Url(u) => (vec![u.clone()], None, None, None, None, None),
        raw::Upstream::Detailed(d) => (
            d.targets.clone(),
            d.timeout,
            d.connect_timeout,
            d.eject_after,
            d.eject_for,
            d.retries,
        ),
    };
    let (protocol, raw_tls) = match &r.upstream {
        raw::Upstream::Url(_) => (None, None),
        raw::Upstream::Detailed(d) => (d.protocol, d.tls.as_ref()),
    };
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
    let (protocol, upstream_tls) =
        validate_upstream_transport(&key, &line, &targets, protocol, raw_tls, problems);

    let auth = match &r.auth {
        None => AuthPolicy {
            mode: AuthMode::None,
            scopes: vec![],
            roles: vec![],
        },
        Some(raw::Auth::Mode(m)) => AuthPolicy {
            mode: *m,
            scopes: vec![],
            roles: vec![],
        },
        Some(raw::Auth::Detailed(d)) => {
            if d.mode == AuthMode::None && (!d.scopes.is_empty() || !d.roles.is_empty()) {
                problems.push(format!(
                    "{key}.auth: scopes/roles need mode `required` or `optional`{line}"
                ));
            }
            AuthPolicy {
                mode: d.mode,
                scopes: d.scopes.clone(),
                roles: d.roles.clone(),
            }
        }
    };
    let token_sources = match &r.token_sources {
        None => vec![TokenSource::Header],
        Some(list) => list
            .iter()
            .filter_map(|s| match parse_token_source(s) {
                Some(ts) => Some(ts),
                None => {
                    problems.push(format!(
                        "{key}.token_sources: `{s}` is not `header`, `query:NAME` or `cookie:NAME`{line}"
                    ));
                    None
                }
            })
            .collect(),
    };

    let rate_limit = super::rate_limit::route_limit(&key, r, raw, problems);
    let audience = super::resource::route_resource(&key, r, raw, problems);
    // A certificate comes from this listener's handshake (`tls.client_ca`), or, where an
    // ingress asks (forward-auth, ext_authz), from what a trusted proxy or Envoy reports.
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
            "{key}.require_client_cert: set, but no client certificate could ever be seen (no tls.client_ca, no listen.ext_authz, no forward_auth.client_cert_header with trusted_proxies), so no request could pass{line}"
        ));
    }

    if problems.len() > before {
        return None;
    }
    Some(RouteSpec {
        name: r.name.clone(),
        host,
        path,
        methods,
        upstream: UpstreamSpec {
            targets,
            timeout: timeout.unwrap_or(Duration::from_secs(30)),
            connect_timeout: connect_timeout.unwrap_or(Duration::from_secs(2)),
            eject_after: eject_after.unwrap_or(3).max(1),
            eject_for: eject_for.unwrap_or(Duration::from_secs(10)),
            retries: retries.unwrap_or(1),
            protocol,
            tls: upstream_tls,
        },
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

/// Rejects what would be ambiguous at request time: the same name twice, or two routes
/// with the same host pattern and path whose methods overlap.
fn check_route_conflicts(routes: &[RouteSpec], text: &str, problems: &mut Vec<String>) {
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

#[derive(Clone, Copy)]
pub(crate) enum PemKind {
    Certificate,
    PrivateKey,
}

/// Whether the PEM file at `path` can be read and holds at least one certificate or a
/// private key, as `kind` asks; the message says what is wrong otherwise.
pub(crate) fn pem_has(path: &std::path::Path, kind: PemKind) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let found = match kind {
        PemKind::Certificate => CertificateDer::pem_slice_iter(&bytes).any(|c| c.is_ok()),
        PemKind::PrivateKey => PrivateKeyDer::from_pem_slice(&bytes).is_ok(),
    };
    if found {
        Ok(())
    } else {
        let what = match kind {
            PemKind::Certificate => "certificate",
            PemKind::PrivateKey => "private key",
        };
        Err(format!("{} holds no PEM {what}", path.display()))
    }
}

fn parse_cidr(s: &str) -> Option<IpNet> {
    IpNet::from_str(s.trim())
        .ok()
        .or_else(|| std::net::IpAddr::from_str(s.trim()).ok().map(IpNet::from))
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

/// " (line N)" for the first line of `text` containing `needle`, or "".
fn line_hint(text: &str, needle: &str) -> String {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|n| format!(" (line {})", n + 1))
        .unwrap_or_default()
}

/// A store URL without its password, for error messages.
/// `telemetry.tracing`: everything the exporter would refuse at start is refused here.
fn validate_tracing(t: &super::raw::Tracing, problems: &mut Vec<String>) {
    use super::raw::OtlpProtocol;
    match url::Url::parse(&t.otlp_endpoint) {
        Ok(u) if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() => {
            problems.push(format!(
                "telemetry.tracing.otlp_endpoint: `{}` is not an http:// or https:// URL",
                redact_url(&t.otlp_endpoint)
            ))
        }
        Ok(u) if t.protocol == OtlpProtocol::Grpc && u.scheme() == "https" => problems.push(
            "telemetry.tracing.otlp_endpoint: gRPC export is plain `http://` only; use \
             `protocol: http/protobuf` for a collector behind TLS"
                .into(),
        ),
        Ok(u) if t.protocol == OtlpProtocol::Grpc && u.path() != "/" && !u.path().is_empty() => {
            problems.push(
                "telemetry.tracing.otlp_endpoint: a gRPC endpoint is `http://host:port`, with no path"
                    .into(),
            )
        }
        Ok(_) => {}
        Err(e) => problems.push(format!(
            "telemetry.tracing.otlp_endpoint: not a URL ({e})"
        )),
    }
    if !(0.0..=1.0).contains(&t.sample_ratio) {
        problems.push(format!(
            "telemetry.tracing.sample_ratio: {} is not between 0.0 and 1.0",
            t.sample_ratio
        ));
    }
    if t.service_name.trim().is_empty() {
        problems.push("telemetry.tracing.service_name: must not be empty".into());
    }
    for (name, value) in &t.headers {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            problems.push(format!(
                "telemetry.tracing.headers: `{name}` is not a valid header name"
            ));
        }
        // The value is a secret: the problem names the header, never the value.
        if http::HeaderValue::from_str(value).is_err() {
            problems.push(format!(
                "telemetry.tracing.headers.{name}: the value is not a valid header value"
            ));
        }
    }
}

pub(crate) fn redact_url(u: &str) -> String {
    match url::Url::parse(u) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => u.to_string(),
    }
}

/// More serving threads than this is a typo, not a tuning.
const MAX_WORKERS: usize = 1024;
