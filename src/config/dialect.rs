//! The options one `token_endpoints` entry adapts the token endpoint with, so each legacy
//! client keeps its wire format: an implied grant and client, the status of bad
//! credentials, and the spelling of `token_type`. Built once, when the configuration
//! loads (`Config::dialects`); the token endpoint only looks them up.

use http::StatusCode;

use super::raw::{RawConfig, TokenEndpoint};
use super::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantType {
    Password,
    RefreshToken,
    ClientCredentials,
    AuthorizationCode,
}

impl GrantType {
    pub const ALL: [GrantType; 4] = [
        GrantType::Password,
        GrantType::RefreshToken,
        GrantType::ClientCredentials,
        GrantType::AuthorizationCode,
    ];

    /// The order discovery lists them in: the recommended flow first.
    pub const ALL_ADVERTISED: [GrantType; 4] = [
        GrantType::AuthorizationCode,
        GrantType::RefreshToken,
        GrantType::ClientCredentials,
        GrantType::Password,
    ];

    pub fn parse(s: &str) -> Option<GrantType> {
        match s {
            "password" => Some(GrantType::Password),
            "refresh_token" => Some(GrantType::RefreshToken),
            "client_credentials" => Some(GrantType::ClientCredentials),
            "authorization_code" => Some(GrantType::AuthorizationCode),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::Password => "password",
            GrantType::RefreshToken => "refresh_token",
            GrantType::ClientCredentials => "client_credentials",
            GrantType::AuthorizationCode => "authorization_code",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialect {
    /// Grant used when the request names none.
    pub implied_grant: Option<GrantType>,
    /// Client used when the request names none.
    pub implied_client: Option<String>,
    /// Status for wrong username/password (403 answers `access_denied`).
    pub invalid_credentials_status: Option<StatusCode>,
    /// `token_type` as this dialect spells it.
    pub token_type: String,
    /// The endpoint's path: the dialect as metrics and audit events name it.
    pub name: String,
}

impl Default for Dialect {
    fn default() -> Self {
        Dialect {
            implied_grant: None,
            implied_client: None,
            invalid_credentials_status: None,
            token_type: "bearer".into(),
            name: "/oauth/token".into(),
        }
    }
}

impl Dialect {
    pub fn from_endpoint(e: &TokenEndpoint) -> Dialect {
        Dialect {
            // Validated at config load: only known grants get here.
            implied_grant: e.grant.as_deref().and_then(GrantType::parse),
            implied_client: e.client.clone(),
            invalid_credentials_status: e
                .invalid_credentials_status
                .and_then(|s| StatusCode::from_u16(s).ok()),
            token_type: e.token_type.clone().unwrap_or_else(|| "bearer".into()),
            name: trim_slash(&e.path).to_string(),
        }
    }

    /// The signInWithPassword shape: a fixed grant, so the response always names its scope.
    pub fn always_names_scope(&self) -> bool {
        self.implied_grant.is_some()
    }
}

fn trim_slash(p: &str) -> &str {
    if p.len() > 1 {
        p.trim_end_matches('/')
    } else {
        p
    }
}

/// Every mounted token endpoint (path without a trailing slash) with its dialect: the
/// `token_endpoints` entries, or `/oauth/token` with the default dialect when the key is
/// absent.
pub fn mounted(raw: &RawConfig) -> Vec<(String, Dialect)> {
    match &raw.token_endpoints {
        Some(eps) => eps
            .iter()
            .map(|e| (trim_slash(&e.path).to_string(), Dialect::from_endpoint(e)))
            .collect(),
        None => vec![("/oauth/token".into(), Dialect::default())],
    }
}

/// The dialect of the token endpoint mounted at `path`, if one is.
pub fn find(config: &Config, path: &str) -> Option<Dialect> {
    let path = trim_slash(path);
    config
        .dialects
        .iter()
        .find(|(p, _)| p == path)
        .map(|(_, d)| d.clone())
}

/// Whether a token endpoint is mounted at `path`.
pub fn is_token_path(config: &Config, path: &str) -> bool {
    let path = trim_slash(path);
    config.dialects.iter().any(|(p, _)| p == path)
}
