//! Raw → validated. Every check pushes a message naming the key (and, where it can be
//! found, the line) instead of returning early, so one run reports every problem.

use std::path::PathBuf;
use std::str::FromStr;

use ipnet::IpNet;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::identity::IdentityHeaderNames;
use super::raw::RawConfig;
use super::route::{check_route_conflicts, validate_route};
use super::{Config, ConfigError};

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
    // Both are watched by timers that tick at half the period: zero would stop every
    // connection from being served (or panic the timer), so `check` refuses it.
    for (key, d) in [
        ("header_read_timeout", raw.limits.header_read_timeout),
        ("idle_timeout", raw.limits.idle_timeout),
    ] {
        if d < std::time::Duration::from_millis(1) {
            problems.push(format!("limits.{key}: must be at least 1ms"));
        }
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

/// " (line N)" for the first line of `text` containing `needle`, or "".
pub(super) fn line_hint(text: &str, needle: &str) -> String {
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
