//! RFC 7591 dynamic client registration at `POST /oauth/register`, and the RFC 7592 read
//! of a registration at `GET /oauth/register/{client_id}` with its registration access
//! token.
//!
//! Who may register is `client_registration`: `closed` (the default: 403), `initial_token`
//! (a bearer token equal to `$client_registration_token_env`, compared in constant time),
//! or `open` (anyone, as MCP clients expect of a public server). Registrations are
//! rate-limited per client address either way. A registered client is third-party (the
//! user is asked to consent), may use only `authorization_code` and `refresh_token`, is
//! public (`token_endpoint_auth_method: none`) or confidential with a generated secret,
//! and has redirect URIs that are https, http on a loopback address with any port
//! (RFC 8252 §7.3), or a private-use scheme (RFC 8252 §7.1); exact strings from then on.

use std::net::IpAddr;
use std::num::NonZeroU32;

use chrono::Utc;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{json, Value};

use super::TokenService;
use crate::config::raw::ClientRegistration;
use crate::config::Config;
use crate::crypto::{constant_time_eq, random_token, sha256_hex};
use crate::http::body::{self, json_error, Body};
use crate::http::error::ErrorResponse;
use crate::store::Client;

pub const REGISTER_PATH: &str = "/oauth/register";

/// Registrations per client address per minute.
const PER_MINUTE: u32 = 10;
/// Most redirect URIs one client registers.
const MAX_REDIRECT_URIS: usize = 10;

/// What registration refuses, in RFC 7591 §3.2.2's words.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("client registration is closed")]
    Closed,
    #[error("the initial access token is missing or wrong")]
    BadInitialToken,
    #[error("invalid_redirect_uri: {0}")]
    RedirectUri(String),
    #[error("invalid_client_metadata: {0}")]
    Metadata(String),
    #[error("too many registrations")]
    Throttled,
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("password hashing: {0}")]
    Hash(String),
}

impl ErrorResponse for RegisterError {
    fn status(&self) -> StatusCode {
        match self {
            RegisterError::Closed => StatusCode::FORBIDDEN,
            RegisterError::BadInitialToken => StatusCode::UNAUTHORIZED,
            RegisterError::RedirectUri(_) | RegisterError::Metadata(_) => StatusCode::BAD_REQUEST,
            RegisterError::Throttled => StatusCode::TOO_MANY_REQUESTS,
            RegisterError::NotFound => StatusCode::UNAUTHORIZED,
            RegisterError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            RegisterError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            RegisterError::Hash(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            RegisterError::Closed => "access_denied",
            RegisterError::BadInitialToken | RegisterError::NotFound => "invalid_token",
            RegisterError::RedirectUri(_) => "invalid_redirect_uri",
            RegisterError::Metadata(_) => "invalid_client_metadata",
            RegisterError::Throttled => "slow_down",
            RegisterError::MethodNotAllowed => "invalid_request",
            RegisterError::Store(_) => "temporarily_unavailable",
            RegisterError::Hash(_) => "server_error",
        }
    }

    fn response(&self) -> Response<Body> {
        let description = match self {
            RegisterError::RedirectUri(d) | RegisterError::Metadata(d) => d.clone(),
            RegisterError::Store(_) => "try again shortly".into(),
            RegisterError::Hash(_) => "an unexpected error happened".into(),
            other => other.to_string(),
        };
        let mut resp = json_error(self.status(), self.code(), &description);
        let h = resp.headers_mut();
        match self {
            RegisterError::BadInitialToken | RegisterError::NotFound => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="tollgate", error="invalid_token""#),
                );
            }
            RegisterError::Throttled => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
            }
            RegisterError::MethodNotAllowed => {
                h.insert(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"));
            }
            _ => {}
        }
        resp
    }
}

/// The client metadata Tollgate reads (RFC 7591 §2); anything else is ignored, as the
/// RFC asks.
#[derive(Debug, Deserialize)]
struct Metadata {
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    grant_types: Option<Vec<String>>,
    #[serde(default)]
    response_types: Option<Vec<String>>,
    /// Checked for length only: it is not stored (the consent page names the client id).
    #[serde(default)]
    client_name: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

/// Per-address budgets of registrations.
pub struct Registrations {
    limiter: governor::DefaultKeyedRateLimiter<IpAddr>,
}

impl Default for Registrations {
    fn default() -> Self {
        let quota = governor::Quota::per_minute(NonZeroU32::new(PER_MINUTE).expect("non-zero"));
        Registrations {
            limiter: governor::RateLimiter::keyed(quota),
        }
    }
}

/// The scopes a registered client may ask for: OpenID Connect's and every protected
/// resource's `scopes_supported`.
fn registrable_scopes(cfg: &Config) -> Vec<String> {
    let mut out: Vec<String> = ["openid", "profile", "email"].map(String::from).to_vec();
    for r in cfg.routes.iter().filter_map(|r| r.resource.as_ref()) {
        for s in &r.scopes_supported {
            if !out.contains(s) {
                out.push(s.clone());
            }
        }
    }
    out
}

impl TokenService {
    /// `POST /oauth/register` and `GET /oauth/register/{id}`.
    pub(super) async fn registration(
        &self,
        cfg: &Config,
        limits: &Registrations,
        req: Request<Incoming>,
        client_ip: IpAddr,
        path: &str,
    ) -> Result<Response<Body>, RegisterError> {
        if cfg.client_registration == ClientRegistration::Closed {
            return Err(RegisterError::Closed);
        }
        if let Some(id) = path
            .strip_prefix(REGISTER_PATH)
            .and_then(|p| p.strip_prefix('/'))
        {
            return match *req.method() {
                Method::GET => self.read_registration(id, req.headers()).await,
                _ => Err(RegisterError::MethodNotAllowed),
            };
        }
        if req.method() != Method::POST {
            return Err(RegisterError::MethodNotAllowed);
        }
        if cfg.client_registration == ClientRegistration::InitialToken {
            let want = std::env::var(&cfg.client_registration_token_env).unwrap_or_default();
            let given = crate::authn::source::bearer(req.headers()).unwrap_or_default();
            if want.is_empty() || !constant_time_eq(given.as_bytes(), want.as_bytes()) {
                return Err(RegisterError::BadInitialToken);
            }
        }
        if limits.limiter.check_key(&client_ip).is_err() {
            return Err(RegisterError::Throttled);
        }
        let bytes = super::request::read_body(req.into_body())
            .await
            .map_err(|_| RegisterError::Metadata("the body is too large".into()))?;
        let meta: Metadata = serde_json::from_slice(&bytes)
            .map_err(|_| RegisterError::Metadata("the body is not client metadata JSON".into()))?;
        let client = self.register(cfg, meta).await?;
        let (client, secret, token) = client;
        crate::audit::event("client_registered", crate::audit::Outcome::Success)
            .client(&client.id)
            .peer(client_ip)
            .emit();
        let mut doc = describe(&client, self.keys.issuer());
        doc["registration_access_token"] = json!(token);
        if let Some(secret) = secret {
            doc["client_secret"] = json!(secret);
            doc["client_secret_expires_at"] = json!(0);
        }
        let mut resp = body::json(StatusCode::CREATED, &doc);
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(resp)
    }

    /// Checks the metadata and stores the client: the client, its secret (confidential
    /// clients) and its registration access token.
    async fn register(
        &self,
        cfg: &Config,
        meta: Metadata,
    ) -> Result<(Client, Option<String>, String), RegisterError> {
        if meta.redirect_uris.is_empty() || meta.redirect_uris.len() > MAX_REDIRECT_URIS {
            return Err(RegisterError::RedirectUri(format!(
                "register 1 to {MAX_REDIRECT_URIS} redirect_uris"
            )));
        }
        for uri in &meta.redirect_uris {
            super::super::signin::redirect::check_registrable(uri)
                .map_err(|why| RegisterError::RedirectUri(format!("{uri:?}: {why}")))?;
        }
        let method = meta
            .token_endpoint_auth_method
            .as_deref()
            .unwrap_or("client_secret_basic");
        let confidential = match method {
            "none" => false,
            "client_secret_basic" | "client_secret_post" => true,
            _ => {
                return Err(RegisterError::Metadata(
                    "token_endpoint_auth_method must be none, client_secret_basic or client_secret_post".into(),
                ))
            }
        };
        let grants = meta
            .grant_types
            .unwrap_or_else(|| vec!["authorization_code".into(), "refresh_token".into()]);
        if grants.is_empty()
            || grants
                .iter()
                .any(|g| g != "authorization_code" && g != "refresh_token")
        {
            return Err(RegisterError::Metadata(
                "grant_types may hold only authorization_code and refresh_token".into(),
            ));
        }
        if meta
            .response_types
            .is_some_and(|r| r.iter().any(|t| t != "code"))
        {
            return Err(RegisterError::Metadata(
                "response_types may hold only code".into(),
            ));
        }
        if meta.client_name.as_deref().is_some_and(|n| n.len() > 200) {
            return Err(RegisterError::Metadata("client_name is too long".into()));
        }
        let allowed = registrable_scopes(cfg);
        let scopes = match meta.scope.as_deref() {
            Some(s) => {
                let asked: Vec<String> = s.split_whitespace().map(str::to_owned).collect();
                if let Some(bad) = asked.iter().find(|a| !allowed.contains(a)) {
                    return Err(RegisterError::Metadata(format!(
                        "scope {bad:?} is not offered"
                    )));
                }
                asked
            }
            None => allowed,
        };
        let secret = confidential.then(random_token);
        let secret_hash = match &secret {
            Some(s) => Some(
                self.hasher
                    .hash(s)
                    .await
                    .map_err(|e| RegisterError::Hash(e.to_string()))?,
            ),
            None => None,
        };
        let token = random_token();
        let client = Client {
            id: format!("dyn_{}", &random_token()[..22]),
            secret_hash,
            grants,
            scopes,
            created_at: Utc::now(),
            redirect_uris: meta.redirect_uris,
            post_logout_redirect_uris: Vec::new(),
            first_party: false,
            registration_token_hash: Some(sha256_hex(&token)),
            tls_auth: None,
        };
        let client = self.store.create_client(client).await?;
        Ok((client, secret, token))
    }

    /// RFC 7592 §2.1: the registration, to whoever holds its registration access token.
    async fn read_registration(
        &self,
        id: &str,
        headers: &http::HeaderMap,
    ) -> Result<Response<Body>, RegisterError> {
        let given = crate::authn::source::bearer(headers).ok_or(RegisterError::NotFound)?;
        let client = self
            .store
            .client_by_id(id)
            .await?
            .ok_or(RegisterError::NotFound)?;
        let stored = client
            .registration_token_hash
            .as_deref()
            .ok_or(RegisterError::NotFound)?;
        if !constant_time_eq(sha256_hex(given).as_bytes(), stored.as_bytes()) {
            return Err(RegisterError::NotFound);
        }
        let mut resp = body::json(StatusCode::OK, &describe(&client, self.keys.issuer()));
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(resp)
    }
}

/// The client's registered metadata (RFC 7591 §3.2.1), without secrets.
fn describe(c: &Client, issuer: &str) -> Value {
    json!({
        "client_id": c.id,
        "client_id_issued_at": c.created_at.timestamp(),
        "redirect_uris": c.redirect_uris,
        "grant_types": c.grants,
        "response_types": ["code"],
        "token_endpoint_auth_method": if c.secret_hash.is_some() { "client_secret_basic" } else { "none" },
        "scope": c.scopes.join(" "),
        "registration_client_uri": format!("{}{REGISTER_PATH}/{}", issuer.trim_end_matches('/'), c.id),
    })
}
