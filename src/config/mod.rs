//! Configuration: file → [`raw::RawConfig`] → validated [`Config`].
//!
//! The YAML is parsed twice on purpose: once by `serde_yaml` alone, whose errors carry the
//! line and column of the bad key, and once through figment so that `TOLLGATE_…__…`
//! environment variables override file values. Validation then collects every problem
//! before failing, so an operator fixes a file in one pass. A [`Config`] is never patched in
//! place: live reload builds a new one and swaps it (see `reload.rs`).

pub mod dialect;
pub mod identity;
pub mod provider;
pub mod rate_limit;
pub mod raw;
pub mod reload;
pub mod resource;
mod route;
mod validate;

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Yaml};
use figment::Figment;
use http::Method;
use ipnet::IpNet;

pub use identity::{IdentityHeaderNames, IDENTITY_FIELDS};
pub use rate_limit::{RateLimitKey, RateLimitSpec};
use raw::AuthMode;
pub use raw::RawConfig;

/// Where `serve` and friends look when neither `--config` nor `$TOLLGATE_CONFIG` is set.
pub const DEFAULT_PATH: &str = "config/tollgate.yaml";

/// Every problem found in a configuration, reported at once.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration{}:\n  - {}", source_suffix(.source_path), .problems.join("\n  - "))]
pub struct ConfigError {
    pub source_path: Option<PathBuf>,
    pub problems: Vec<String>,
}

fn source_suffix(p: &Option<PathBuf>) -> String {
    p.as_ref()
        .map(|p| format!(" in {}", p.display()))
        .unwrap_or_default()
}

impl ConfigError {
    fn one(source_path: Option<PathBuf>, problem: impl Into<String>) -> Self {
        ConfigError {
            source_path,
            problems: vec![problem.into()],
        }
    }
}

/// A validated configuration. Sections that need no parsing beyond the file's own types
/// (`listen`, `limits`, ...) are carried as read; those that do (routes, trusted proxies,
/// identity headers, token dialects, providers) exist only in their built form, so no code
/// past loading can read the raw value instead.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: raw::Listen,
    pub tls: Option<raw::Tls>,
    pub store: raw::Store,
    pub tokens: raw::Tokens,
    pub users_api: raw::UsersApi,
    pub login: raw::Login,
    pub client_registration: raw::ClientRegistration,
    /// The environment variable of the registration initial access token.
    pub client_registration_token_env: String,
    pub dpop: raw::Dpop,
    pub cors: raw::Cors,
    pub connect: raw::Connect,
    pub introspection: Vec<raw::Introspection>,
    pub jwt_issuers: Vec<raw::JwtIssuer>,
    pub forward_auth: raw::ForwardAuth,
    pub limits: raw::Limits,
    pub log: raw::Log,
    pub echo_upstream: Option<std::net::SocketAddr>,
    pub rate_limit_store: Option<raw::RateLimitStore>,
    pub audit: raw::Audit,
    pub telemetry: raw::Telemetry,
    /// The identity header names, validated: the one list every stage reads.
    pub identity: IdentityHeaderNames,
    /// Each token endpoint's path and dialect, built once.
    pub dialects: Vec<(String, dialect::Dialect)>,
    /// The `providers` of account linking, resolved (preset defaults, URLs, allowed
    /// redirects) once.
    pub connect_providers: std::collections::BTreeMap<String, provider::ResolvedProvider>,
    pub source_path: Option<PathBuf>,
    pub trusted_proxies: Vec<IpNet>,
    /// The routes, each with its default `rate_limit` applied.
    pub routes: Vec<RouteSpec>,
}

/// How a route's host pattern matches the request's host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    Any,
    /// Lower-case exact host, no port.
    Exact(String),
    /// `*.example.com` stored as `.example.com`: matches `a.example.com`, `a.b.example.com`,
    /// never `example.com` itself.
    Suffix(String),
}

impl HostMatch {
    pub fn matches(&self, host: Option<&str>) -> bool {
        match self {
            HostMatch::Any => true,
            HostMatch::Exact(h) => host.is_some_and(|x| x.eq_ignore_ascii_case(h)),
            HostMatch::Suffix(s) => host.is_some_and(|x| {
                x.len() > s.len()
                    && x.is_char_boundary(x.len() - s.len())
                    && x[x.len() - s.len()..].eq_ignore_ascii_case(s)
            }),
        }
    }
}

impl std::fmt::Display for HostMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostMatch::Any => f.write_str("*"),
            HostMatch::Exact(h) => f.write_str(h),
            HostMatch::Suffix(s) => write!(f, "*{s}"),
        }
    }
}

/// Where a route looks for the bearer token, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `Authorization: Bearer …`
    Header,
    /// `?NAME=…`; removed from the query before forwarding.
    Query(String),
    /// `Cookie: NAME=…`
    Cookie(String),
}

/// A route's authentication policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthPolicy {
    pub mode: AuthMode,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
}

/// A validated upstream target: scheme + authority, and an optional base path.
#[derive(Debug, Clone)]
pub struct TargetSpec {
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
    /// Base path of the target without a trailing slash ("" for none).
    pub base_path: String,
}

impl std::fmt::Display for TargetSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.base_path)
    }
}

#[derive(Debug, Clone)]
pub struct UpstreamSpec {
    pub targets: Vec<TargetSpec>,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub eject_after: u32,
    pub eject_for: Duration,
    pub retries: u32,
    /// Wire protocol to the targets.
    pub protocol: raw::UpstreamProtocol,
    /// Present exactly when the targets are `https://` (all of them or none).
    pub tls: Option<UpstreamTlsSpec>,
}

impl UpstreamSpec {
    /// How Tollgate reaches the targets, for `check` and `route`: the protocol, and for
    /// `https://` targets the trust, name and client certificate in use.
    pub fn transport(&self) -> String {
        let mut s = format!("protocol {}", self.protocol.as_str());
        match &self.tls {
            None => s.push_str(", plain"),
            Some(t) => {
                match &t.ca_file {
                    Some(ca) => s.push_str(&format!(", tls ca_file {}", ca.display())),
                    None => s.push_str(", tls system roots"),
                }
                if let Some(n) = &t.server_name {
                    s.push_str(&format!(", server_name {n}"));
                }
                if let Some((c, _)) = &t.client_cert {
                    s.push_str(&format!(", client_cert {}", c.display()));
                }
                s.push_str(&format!(", min TLS {}", t.min_version.as_str()));
            }
        }
        s
    }
}

/// Validated TLS settings of an `https://` upstream; also the key under which its client
/// pools are shared, so two routes with the same settings share connections.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct UpstreamTlsSpec {
    /// CA bundle replacing the system roots.
    pub ca_file: Option<PathBuf>,
    /// SNI and certificate name, when not the target's host.
    pub server_name: Option<String>,
    /// Client certificate chain and key for mTLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    pub min_version: raw::TlsVersion,
}

/// A validated route.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub name: String,
    pub host: HostMatch,
    /// Normalised prefix, no trailing slash except for the root "/".
    pub path: String,
    pub methods: Option<Vec<Method>>,
    pub upstream: UpstreamSpec,
    pub strip_prefix: bool,
    pub auth: AuthPolicy,
    pub token_sources: Vec<TokenSource>,
    pub max_body_bytes: u64,
    pub forward_authorization: bool,
    pub close_on_token_expiry: bool,
    /// The request rate limit in force on this route (its own or the default).
    pub rate_limit: Option<RateLimitSpec>,
    /// Only requests with a verified client certificate pass.
    pub require_client_cert: bool,
    /// The audience a token must carry here, when the route names one (its own
    /// `audience`, else its `resource.id`).
    pub audience: Option<String>,
    /// RFC 9728 metadata this route publishes.
    pub resource: Option<raw::ProtectedResource>,
    pub sender_constraint: raw::SenderConstraint,
    /// Position in the file, the last tie-breaker.
    pub index: usize,
}

impl Config {
    /// Settings that are valid but probably not what the operator meant: `check` prints
    /// them and `serve` logs them at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.users_api.registration == raw::Registration::Open {
            for r in &self.routes {
                if r.auth.mode == AuthMode::Required
                    && r.auth.roles.is_empty()
                    && r.auth.scopes.is_empty()
                {
                    w.push(format!(
                        "routes ({}): `auth: required` with no roles or scopes while \
                         users_api.registration is open: anyone can register and pass it",
                        r.name
                    ));
                }
            }
        }
        w
    }

    /// Loads and validates the file at `path` with environment overrides.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::one(
                Some(path.into()),
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        Self::from_yaml_with_env(&text, Some(path.to_path_buf()))
    }

    /// Parses YAML text (plus `TOLLGATE_…` environment overrides) and validates it.
    pub fn from_yaml_with_env(text: &str, source: Option<PathBuf>) -> Result<Config, ConfigError> {
        let text = if text.trim().is_empty() { "{}" } else { text };
        // First pass: serde_yaml alone, for errors that carry a line number.
        serde_yaml::from_str::<RawConfig>(text)
            .map_err(|e| ConfigError::one(source.clone(), yaml_error(&e)))?;
        // Second pass: the same file with environment overrides layered on top.
        let raw: RawConfig = Figment::new()
            .merge(Yaml::string(text))
            .merge(Env::prefixed("TOLLGATE_").split("__").ignore(&[
                "config",
                "log_format",
                "test_postgres_url",
                "test_redis_url",
            ]))
            .extract()
            .map_err(|e| {
                let problems = e
                    .into_iter()
                    .map(|e| {
                        let key = e.path.join(".");
                        if key.is_empty() {
                            format!("{} (from the environment)", e.kind)
                        } else {
                            format!("{key}: {} (from the environment)", e.kind)
                        }
                    })
                    .collect();
                ConfigError {
                    source_path: source.clone(),
                    problems,
                }
            })?;
        validate::validate(raw, text, source)
    }

    /// Validates an already-built raw config (used by tests and `demo`).
    pub fn from_raw(raw: RawConfig) -> Result<Config, ConfigError> {
        validate::validate(raw, "", None)
    }

    /// The JSON Schema of the configuration file.
    pub fn json_schema() -> String {
        let schema = schemars::schema_for!(RawConfig);
        serde_json::to_string_pretty(&schema).expect("schema serialises")
    }
}

fn yaml_error(e: &serde_yaml::Error) -> String {
    // serde_yaml already prefixes the key path ("routes[0]: unknown field `x`") and ends
    // with "at line L column C"; keep its words.
    e.to_string()
}

#[cfg(test)]
mod tests;
