//! Provider connect: link a Tollgate user to their Facebook, Google, GitHub or other
//! OAuth 2.0 / OIDC account, in the legacy request shape
//! (`GET /{provider}/oauth_dialog?redirect_uri=…&oauth_token=…`).
//!
//! ```text
//! browser ──GET /facebook/oauth_dialog?redirect_uri=R&oauth_token=T──▶ Tollgate
//!         ◀──302 provider authorize URL (client_id, callback, scope, state, PKCE S256)──
//! browser ──consent──▶ provider ──302 /facebook/oauth_code?code=C&state=S──▶ Tollgate
//!         Tollgate: take state S (single use) → code+verifier → tokens → userinfo → link
//!         ◀──302 R?status=connected&provider=facebook  (or status=error&error=…)──
//! ```
//!
//! Threat model and defences:
//! - **Token leakage.** The legacy system put the user's access token in the callback URL it
//!   sent to the provider, so the provider, its logs and any Referer saw it. Here the
//!   provider only ever sees a random `state`; the user and the integrator URL live
//!   server-side under the state's SHA-256 hash.
//! - **Login CSRF / account-linking CSRF.** An attacker who gets a victim's browser to
//!   finish the attacker's dialog (or vice versa) would link the wrong accounts. `state` is
//!   256 bits of randomness, bound to one user and one provider, single use (taken and
//!   deleted in one step), and expires after `connect.state_ttl`.
//! - **Consent-URL CSRF.** An attacker's consent URL opened by a victim would link the
//!   victim's provider account to the attacker: a per-state cookie binds the dialog to the
//!   browser that started it (`binding.rs`).
//! - **Code interception.** PKCE S256: the verifier never leaves Tollgate except in the
//!   back-channel token request, and is stored encrypted.
//! - **Open redirect.** Only allow-listed integrator URIs are ever redirected to
//!   (`redirect.rs`); a bad one is a 400, checked again at the callback in case the
//!   config changed in between.
//! - **Database theft.** Provider tokens are AES-256-GCM encrypted with a key held
//!   outside the database (`cipher.rs`); without a key, linking is refused.
//! - **Callback host spoofing.** Tollgate's callback URL comes from configuration
//!   (`connect.callback_base_url`, else `tokens.issuer`), never from the `Host` header.
//!
//! Linked identities are listed and removed at `/api/v1/users/{id}/identities[/{provider}]`
//! under the users API's access rule: the user themself, or role `admin`; 404 otherwise.

pub mod binding;
pub mod callback;
pub mod cipher;
pub mod dialog;
pub mod error;
pub mod exchange;
pub mod identities;

use std::sync::Arc;

use base64::Engine;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use sha2::{Digest, Sha256};

use crate::authn::{Authenticator, AuthnError, Identity};
use crate::config::Config;
use crate::crypto::{random_token, sha256_hex};
use crate::endpoint::{Endpoint, Envelope, RequestCtx};
use crate::http::body::{self, Body};
use crate::http::error::Answer;
use crate::http::BoxFuture;
use crate::store::{ConnectStateStore, IdentityStore, Store, UserId, UserStore};
use cipher::TokenCipher;
use error::ConnectError;
use exchange::ProviderClient;

/// The store capabilities provider connect uses.
#[derive(Clone)]
pub struct ConnectStores {
    pub users: Arc<dyn UserStore>,
    pub identities: Arc<dyn IdentityStore>,
    pub states: Arc<dyn ConnectStateStore>,
}

impl ConnectStores {
    /// The capabilities of the gateway's store.
    pub fn from_store(store: Arc<dyn Store>) -> ConnectStores {
        ConnectStores {
            users: store.clone(),
            identities: store.clone(),
            states: store,
        }
    }
}

/// Provider connect, built once at start.
pub struct Connect {
    stores: ConnectStores,
    /// `None` when no usable key is configured: linking is then refused (503).
    cipher: Option<TokenCipher>,
    /// Why `cipher` is `None`, for the log.
    cipher_problem: Option<String>,
    client: ProviderClient,
}

/// Each configured provider's `connected` count at 0 from the start; failures appear by
/// their code with the first one.
fn register_metrics(config: &Config) {
    crate::telemetry::at_zero(|| {
        config
            .connect_providers
            .values()
            .map(|p| {
                metrics::counter!("tollgate_provider_connect_total", "provider" => p.name.clone(), "outcome" => "connected")
            })
            .collect::<Vec<_>>()
    });
}

impl Connect {
    /// Reads the encryption key named by `connect.encryption_key_env`. A missing or bad key
    /// is logged (when providers are configured) and turns linking off rather than storing
    /// plaintext; listing and unlinking keep working.
    pub fn new(config: &Config, stores: ConnectStores) -> Connect {
        register_metrics(config);
        let (cipher, cipher_problem) = match TokenCipher::from_env(
            config.connect.encryption_key_env.as_deref(),
        ) {
            Ok(c) => (Some(c), None),
            Err(e) => {
                if !config.connect_providers.is_empty() {
                    tracing::error!(error = %e, "provider linking is disabled until an encryption key is configured");
                }
                (None, Some(e.to_string()))
            }
        };
        Connect {
            stores,
            cipher,
            cipher_problem,
            client: ProviderClient::new(config.connect.provider_timeout),
        }
    }

    /// With an explicit key (tests, embedding).
    pub fn with_cipher(config: &Config, stores: ConnectStores, cipher: TokenCipher) -> Connect {
        register_metrics(config);
        Connect {
            stores,
            cipher: Some(cipher),
            cipher_problem: None,
            client: ProviderClient::new(config.connect.provider_timeout),
        }
    }

    fn cipher(&self) -> Result<&TokenCipher, ConnectError> {
        self.cipher.as_ref().ok_or_else(|| {
            ConnectError::NotConfigured(
                self.cipher_problem
                    .clone()
                    .unwrap_or_else(|| "no encryption key".into()),
            )
        })
    }

    /// Answers one request already matched by [`ConnectRoute::parse`].
    pub async fn handle<B>(
        &self,
        config: &Config,
        authn: &dyn Authenticator,
        route: ConnectRoute,
        req: &Request<B>,
    ) -> Result<Response<Body>, ConnectError> {
        match route {
            ConnectRoute::Dialog(p) => {
                self.dialog(config, authn, &p, req.headers(), req.uri().query())
                    .await
            }
            ConnectRoute::Callback(p) => {
                self.callback(config, &p, req.headers(), req.uri().query())
                    .await
            }
            ConnectRoute::List(id) => self.list(authn, req.headers(), &id).await,
            ConnectRoute::Unlink(id, p) => self.unlink(authn, req.headers(), &id, &p).await,
            // `App::handle` answers preflights before the endpoint is called.
            ConnectRoute::Preflight => Err(ConnectError::NotFound),
        }
    }
}

/// Which connect request a path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectRoute {
    /// `GET /{provider}/oauth_dialog`
    Dialog(String),
    /// `GET /{provider}/oauth_code`
    Callback(String),
    /// `GET /api/v1/users/{id}/identities`
    List(String),
    /// `DELETE /api/v1/users/{id}/identities/{provider}`
    Unlink(String, String),
    /// `OPTIONS` on either identities path (CORS preflight, as for the users API).
    Preflight,
}

impl ConnectRoute {
    /// Matches a normalised path. Dialog and callback paths match only configured providers,
    /// so `/anything/oauth_dialog` on an unconfigured name falls through to the routes.
    pub fn parse(method: &Method, path: &str, config: &Config) -> Option<ConnectRoute> {
        // Asked for every request before the routes: most paths are none of these, and
        // say so by their ends alone (no split into segments).
        if !(path.starts_with("/api/v1/users/")
            || path.ends_with("/oauth_dialog")
            || path.ends_with("/oauth_code"))
        {
            return None;
        }
        let rest = path.strip_prefix('/')?;
        let mut segs = rest.split('/');
        let parts: [Option<&str>; 7] = std::array::from_fn(|_| segs.next());
        match (method, parts) {
            (&Method::GET, [Some(p), Some("oauth_dialog"), None, ..])
                if config.connect_providers.contains_key(p) =>
            {
                Some(ConnectRoute::Dialog(p.to_string()))
            }
            (&Method::GET, [Some(p), Some("oauth_code"), None, ..])
                if config.connect_providers.contains_key(p) =>
            {
                Some(ConnectRoute::Callback(p.to_string()))
            }
            (
                &Method::GET,
                [Some("api"), Some("v1"), Some("users"), Some(id), Some("identities"), None, _],
            ) => Some(ConnectRoute::List(id.to_string())),
            (
                &Method::DELETE,
                [Some("api"), Some("v1"), Some("users"), Some(id), Some("identities"), Some(p), None],
            ) if !p.is_empty() => Some(ConnectRoute::Unlink(id.to_string(), p.to_string())),
            (
                &Method::OPTIONS,
                [Some("api"), Some("v1"), Some("users"), Some(_), Some("identities"), _, None],
            ) => Some(ConnectRoute::Preflight),
            _ => None,
        }
    }
}

/// The gateway endpoint serving the provider dialog and callback, browser navigations.
pub struct ConnectEndpoint {
    pub connect: Arc<Connect>,
}

/// The identities API, part of the users API: same CORS, never cached.
pub struct IdentitiesEndpoint {
    pub connect: Arc<Connect>,
}

fn is_identities(route: &ConnectRoute) -> bool {
    matches!(
        route,
        ConnectRoute::List(_) | ConnectRoute::Unlink(..) | ConnectRoute::Preflight
    )
}

/// Both endpoints: the route parsed again against the request's configuration.
fn call_route(
    connect: Arc<Connect>,
    req: Request<Incoming>,
    ctx: RequestCtx,
    identities: bool,
) -> BoxFuture<Answer> {
    Box::pin(async move {
        let config = &ctx.generation.config;
        match ConnectRoute::parse(req.method(), &ctx.path, config) {
            Some(route) if is_identities(&route) == identities => Ok(connect
                .handle(config, ctx.authenticator.as_ref(), route, &req)
                .await?),
            // The config was swapped between matching and now.
            _ => Err(ConnectError::NotFound.into()),
        }
    })
}

impl Endpoint for ConnectEndpoint {
    fn matches(&self, method: &Method, path: &str, config: &Config) -> bool {
        ConnectRoute::parse(method, path, config).is_some_and(|r| !is_identities(&r))
    }

    fn call(self: Arc<Self>, req: Request<Incoming>, ctx: RequestCtx) -> BoxFuture<Answer> {
        call_route(self.connect.clone(), req, ctx, false)
    }
}

impl Endpoint for IdentitiesEndpoint {
    fn matches(&self, method: &Method, path: &str, config: &Config) -> bool {
        ConnectRoute::parse(method, path, config).is_some_and(|r| is_identities(&r))
    }

    fn envelope(&self) -> Envelope {
        Envelope {
            cors_methods: Some("GET, DELETE, OPTIONS"),
            no_store: true,
        }
    }

    fn call(self: Arc<Self>, req: Request<Incoming>, ctx: RequestCtx) -> BoxFuture<Answer> {
        call_route(self.connect.clone(), req, ctx, true)
    }
}

/// The endpoints `app::wiring` adds to the gateway.
pub fn endpoints(config: &Config, stores: ConnectStores) -> Vec<Arc<dyn Endpoint>> {
    let connect = Arc::new(Connect::new(config, stores));
    vec![
        Arc::new(ConnectEndpoint {
            connect: connect.clone(),
        }),
        Arc::new(IdentitiesEndpoint { connect }),
    ]
}

/// Validates `token` and returns the caller, mapping failures to 401/503.
async fn authenticate(
    authn: &dyn Authenticator,
    token: Option<&str>,
) -> Result<Arc<Identity>, ConnectError> {
    let token = token
        .filter(|t| !t.is_empty())
        .ok_or(ConnectError::Unauthenticated)?;
    authn.authenticate(token).await.map_err(|e| match e {
        AuthnError::Invalid(why) => ConnectError::InvalidToken(why),
        AuthnError::Proof { error, .. } => ConnectError::InvalidToken(error.to_string()),
        AuthnError::Unavailable(why) => ConnectError::AuthUnavailable(why),
    })
}

/// The caller's numeric user id; a token for a client rather than a user is refused.
fn user_id_of(identity: &Identity) -> Result<UserId, ConnectError> {
    crate::users::access::caller_user(identity)
        .ok_or_else(|| ConnectError::InvalidToken("the token does not belong to a user".into()))
}

/// The `Authorization: Bearer` token, if any.
fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    crate::authn::source::bearer(headers)
}

/// The first value of `name` in a query string, percent-decoded.
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// PKCE S256 challenge (RFC 7636 §4.2).
fn pkce_challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A 302 to `location` with the small HTML body the legacy API sent.
fn redirect(location: &str) -> Response<Body> {
    let html = format!(
        "<html><body>You are being <a href=\"{}\">redirected</a>.</body></html>",
        html_escape(location)
    );
    let mut resp = Response::new(body::full(html));
    *resp.status_mut() = StatusCode::FOUND;
    let h = resp.headers_mut();
    match HeaderValue::from_str(location) {
        Ok(v) => {
            h.insert(header::LOCATION, v);
        }
        Err(_) => {
            // Serialised URLs are ASCII; reaching this is a bug, never a redirect elsewhere.
            return body::json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "internal error",
            );
        }
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // The dialog URL carries the user's token; keep it out of Referer headers.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests;
