//! Sign-in for modern clients: the authorization code flow with PKCE (RFC 6749 §4.1, RFC
//! 7636, OAuth 2.0 Security BCP), a hosted login page, a browser session for single
//! sign-on, OpenID Connect's userinfo and RP-initiated logout. The code itself is redeemed
//! at the token endpoint (`oauth/code.rs`), which also mints the ID token.
//!
//! 1. `GET /oauth/authorize` — `request.rs` checks the request (client, exact redirect
//!    URI, `response_type=code`, S256 challenge, scope, prompt, max_age, resource). A bad
//!    client or redirect URI is an error page, never a redirect; anything else wrong goes
//!    back to the redirect URI with `error`, `state` and `iss`.
//! 2. A live session (`session.rs`) and no `prompt=login` / expired `max_age`: a code;
//!    `prompt=none` without one: `login_required`; otherwise the login page (`page.rs`).
//! 3. `POST /oauth/authorize/login` — CSRF checked, the request checked again, the
//!    password checked as the password grant checks it (throttled, argon2id off the event
//!    loop, audited, one message for either wrong field); a session starts.
//! 4. Third-party clients ask for consent (`POST /oauth/authorize/consent`).
//! 5. The code: 128+ random bits, stored hashed with everything it is bound to, 303 to the
//!    redirect URI with `code`, `state` and `iss` (RFC 9207).
//!
//! Threat model: open redirects (exact registered URIs only), code interception (PKCE
//! required of every client), login CSRF (double-submit token, SameSite cookies),
//! clickjacking (`frame-ancestors 'none'`, `X-Frame-Options: DENY`), password guessing
//! (the password grant's throttle), session theft (cookie `HttpOnly`, `__Host-` and
//! `Secure` over https, stored hashed, idle and absolute timeouts, revoked at logout).

pub mod page;
pub mod redirect;
pub mod request;
pub mod session;

use std::sync::Arc;

use chrono::{Duration as ChronoDuration, Utc};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::config::Config;
use crate::crypto::{random_token, sha256_hex};
use crate::endpoint::{Endpoint, Envelope, RequestCtx};
use crate::http::body::{self, Body};
use crate::http::error::{Answer, ErrorResponse};
use crate::http::BoxFuture;
use crate::oauth::code::{put_payload, CodePayload};
use crate::oauth::error::OAuthError;
use crate::oauth::TokenService;
use crate::store::{SignInKind, StoreError, UserId};
use request::{error_redirect, AuthRequest};
use session::Session;

pub const AUTHORIZE_PATH: &str = "/oauth/authorize";
pub const LOGIN_PATH: &str = "/oauth/authorize/login";
pub const CONSENT_PATH: &str = "/oauth/authorize/consent";
pub const USERINFO_PATH: &str = "/oauth/userinfo";
pub const LOGOUT_PATH: &str = "/oauth/logout";

/// What the hosted pages' forms may post.
const MAX_FORM: usize = 16 * 1024;

/// Why a sign-in request gets no page or redirect of its own.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("method not allowed")]
    Method,
    #[error("the form's CSRF token does not match this browser")]
    Csrf,
    #[error("the form is too large or not a form")]
    Form,
    #[error("sign-in failed: {0}")]
    OAuth(#[from] OAuthError),
}

impl ErrorResponse for SignInError {
    fn status(&self) -> StatusCode {
        match self {
            SignInError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            SignInError::Method => StatusCode::METHOD_NOT_ALLOWED,
            SignInError::Csrf => StatusCode::FORBIDDEN,
            SignInError::Form => StatusCode::BAD_REQUEST,
            SignInError::OAuth(e) => e.status(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            SignInError::Store(_) => "store_unavailable",
            SignInError::Method => "method_not_allowed",
            SignInError::Csrf => "csrf",
            SignInError::Form => "bad_form",
            SignInError::OAuth(e) => e.code(),
        }
    }

    fn response(&self) -> Response<Body> {
        match self {
            SignInError::OAuth(e) => e.response(),
            _ => {
                let why = match self {
                    SignInError::Store(_) => "The sign-in service is unavailable; try again.",
                    SignInError::Csrf => {
                        "This form has expired or was sent from another site. Go back and try again."
                    }
                    _ => "The request could not be understood.",
                };
                let mut resp = page::error("Sign in", why);
                *resp.status_mut() = self.status();
                resp
            }
        }
    }

    fn logged(&self) -> bool {
        matches!(self, SignInError::Store(_)) || matches!(self, SignInError::OAuth(e) if e.logged())
    }
}

/// Every sign-in path. Mounted before the token endpoints: `POST /oauth/authorize` stays
/// the draft-10 password dialect (a token endpoint), `GET` is the code flow.
pub struct SignInEndpoint(pub Arc<TokenService>);

impl Endpoint for SignInEndpoint {
    fn matches(&self, method: &Method, path: &str, _config: &Config) -> bool {
        (path == AUTHORIZE_PATH && method == Method::GET)
            || path.starts_with("/oauth/authorize/")
            || path == LOGOUT_PATH
            || path == USERINFO_PATH
    }

    fn envelope(&self) -> Envelope {
        Envelope {
            cors_methods: None,
            no_store: true,
        }
    }

    fn call(self: Arc<Self>, req: Request<Incoming>, ctx: RequestCtx) -> BoxFuture<Answer> {
        Box::pin(async move {
            let cfg = ctx.generation.config.clone();
            let answer = match (req.method().clone(), ctx.path.as_str()) {
                (Method::GET, AUTHORIZE_PATH) => self.authorize(&cfg, req).await,
                (Method::GET, page::CSS_PATH) => Ok(css(&cfg)),
                (Method::POST, LOGIN_PATH) => self.login(&cfg, req, &ctx).await,
                (Method::POST, CONSENT_PATH) => self.consent(&cfg, req).await,
                (Method::GET, LOGOUT_PATH) => self.logout(&cfg, req).await,
                (Method::GET | Method::POST, USERINFO_PATH) => self.userinfo(req, &ctx).await,
                _ => Err(SignInError::Method),
            };
            Ok(answer?)
        })
    }
}

fn issuer(service: &TokenService) -> &str {
    service.keys.issuer()
}

/// The operator's CSS, read when asked (it is small and rarely asked for: browsers cache
/// it for the page's life).
fn css(cfg: &Config) -> Response<Body> {
    let text = cfg
        .login
        .css_file
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    let mut resp = Response::new(body::full(text));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css"));
    resp
}

impl SignInEndpoint {
    async fn authorize(
        &self,
        cfg: &Config,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, SignInError> {
        let query = req.uri().query().unwrap_or("");
        let ar = match request::parse(&*self.0.store, query).await {
            Ok(ar) => ar,
            Err(invalid) => return Ok(invalid.response(issuer(&self.0), &cfg.login.title)),
        };
        // RFC 8707 §2: a resource this gateway issues no tokens for is refused now, not
        // after the user has signed in for nothing.
        if ar.resource.iter().any(|r| {
            !cfg.routes
                .iter()
                .any(|route| route.audience.as_deref() == Some(r))
        }) {
            return Ok(error_redirect(
                &ar.redirect_uri,
                ar.state.as_deref(),
                issuer(&self.0),
                "invalid_target",
                "the resource is not one this server issues tokens for",
            ));
        }
        let session = session::current(&*self.0.store, cfg, req.headers()).await?;
        let session = session.filter(|s| !needs_login(&ar, s));
        match session {
            Some(s) => self.after_sign_in(cfg, &ar, &s, req.headers(), None).await,
            None if ar.prompt_none => Ok(error_redirect(
                &ar.redirect_uri,
                ar.state.as_deref(),
                issuer(&self.0),
                "login_required",
                "no one is signed in",
            )),
            None => Ok(self.login_page(cfg, &ar, req.headers(), None)),
        }
    }

    fn login_page(
        &self,
        cfg: &Config,
        ar: &AuthRequest,
        headers: &http::HeaderMap,
        error: Option<&str>,
    ) -> Response<Body> {
        let (csrf, set) = session::csrf(cfg, headers);
        let mut resp = page::login(&cfg.login, &ar.raw, &csrf, ar.login_hint.as_deref(), error);
        if let Some(set) = set {
            session::set_cookie(resp.headers_mut(), set);
        }
        resp
    }

    /// Signed in: consent when the client is third-party, else the code.
    async fn after_sign_in(
        &self,
        cfg: &Config,
        ar: &AuthRequest,
        s: &Session,
        headers: &http::HeaderMap,
        set_session: Option<HeaderValue>,
    ) -> Result<Response<Body>, SignInError> {
        let mut resp = if ar.client.first_party {
            self.code_redirect(cfg, ar, s).await?
        } else if ar.prompt_none {
            error_redirect(
                &ar.redirect_uri,
                ar.state.as_deref(),
                issuer(&self.0),
                "consent_required",
                "this client needs the user's consent",
            )
        } else {
            let (csrf, set) = session::csrf(cfg, headers);
            let mut resp = page::consent(&cfg.login, &ar.client.id, &ar.scope, &ar.raw, &csrf);
            if let Some(set) = set {
                session::set_cookie(resp.headers_mut(), set);
            }
            resp
        };
        if let Some(set) = set_session {
            session::set_cookie(resp.headers_mut(), set);
        }
        Ok(resp)
    }

    /// Issues the code and sends the browser back to the client.
    async fn code_redirect(
        &self,
        cfg: &Config,
        ar: &AuthRequest,
        s: &Session,
    ) -> Result<Response<Body>, SignInError> {
        let code = random_token();
        let payload = CodePayload {
            client_id: ar.client.id.clone(),
            redirect_uri: ar.redirect_uri.clone(),
            code_challenge: ar.code_challenge.clone(),
            nonce: ar.nonce.clone(),
            scope: ar.scope.clone(),
            resource: ar.resource.clone(),
            dpop_jkt: ar.dpop_jkt.clone(),
            user_id: s.payload.user_id,
            auth_time: s.payload.auth_time,
            session: Some(s.hash.clone()),
            issued_family: None,
            issued_jti: None,
        };
        let expires_at = Utc::now()
            + ChronoDuration::from_std(cfg.login.code_ttl).unwrap_or(ChronoDuration::seconds(60));
        put_payload(
            &*self.0.store,
            SignInKind::Code,
            &sha256_hex(&code),
            &payload,
            expires_at,
            None,
        )
        .await?;
        let mut params = vec![("code", code.as_str())];
        if let Some(st) = &ar.state {
            params.push(("state", st));
        }
        params.push(("iss", issuer(&self.0)));
        Ok(redirect::see_other(&redirect::with_params(
            &ar.redirect_uri,
            &params,
        )))
    }

    async fn login(
        &self,
        cfg: &Config,
        req: Request<Incoming>,
        ctx: &RequestCtx,
    ) -> Result<Response<Body>, SignInError> {
        let (parts, body) = req.into_parts();
        let form = read_form(body).await?;
        if !session::csrf_matches(cfg, &parts.headers, form.get("csrf")) {
            metrics::counter!("tollgate_logins_total", "outcome" => "csrf").increment(1);
            return Err(SignInError::Csrf);
        }
        let ar = match request::parse(&*self.0.store, form.get("request").unwrap_or("")).await {
            Ok(ar) => ar,
            Err(invalid) => return Ok(invalid.response(issuer(&self.0), &cfg.login.title)),
        };
        let (username, password) = match (form.get("username"), form.get("password")) {
            (Some(u), Some(p)) if u.len() <= 320 => (u, p),
            _ => {
                return Ok(self.login_page(
                    cfg,
                    &ar,
                    &parts.headers,
                    Some("Enter your username and password."),
                ))
            }
        };
        let ip = crate::http::client_addr::client_addr(
            &parts.headers,
            ctx.conn.peer.ip(),
            &cfg.trusted_proxies,
        );
        let user = match self
            .0
            .check_password(&ar.client, username, false, password, ip)
            .await
        {
            Ok(u) => u,
            Err(OAuthError::BadCredentials) => {
                metrics::counter!("tollgate_logins_total", "outcome" => "failure").increment(1);
                // One message: never which of the two was wrong.
                let mut resp = self.login_page(
                    cfg,
                    &ar,
                    &parts.headers,
                    Some("The username or password is incorrect."),
                );
                *resp.status_mut() = StatusCode::UNAUTHORIZED;
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"FormBased realm="tollgate""#),
                );
                return Ok(resp);
            }
            Err(OAuthError::Throttled { retry_after }) => {
                metrics::counter!("tollgate_logins_total", "outcome" => "throttled").increment(1);
                let mut resp = self.login_page(
                    cfg,
                    &ar,
                    &parts.headers,
                    Some("Too many attempts. Wait a moment and try again."),
                );
                *resp.status_mut() = StatusCode::TOO_MANY_REQUESTS;
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
                return Ok(resp);
            }
            Err(e) => return Err(e.into()),
        };
        metrics::counter!("tollgate_logins_total", "outcome" => "success").increment(1);
        crate::audit::event("sign_in", crate::audit::Outcome::Success)
            .user(user.id)
            .client(&ar.client.id)
            .peer(ip)
            .field("via", "login_page")
            .emit();
        // A new session replaces whatever the browser had (no session fixation).
        let (s, set) = session::start(&*self.0.store, cfg, user.id.0).await?;
        self.after_sign_in(cfg, &ar, &s, &parts.headers, Some(set))
            .await
    }

    async fn consent(
        &self,
        cfg: &Config,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, SignInError> {
        let (parts, body) = req.into_parts();
        let form = read_form(body).await?;
        if !session::csrf_matches(cfg, &parts.headers, form.get("csrf")) {
            return Err(SignInError::Csrf);
        }
        let ar = match request::parse(&*self.0.store, form.get("request").unwrap_or("")).await {
            Ok(ar) => ar,
            Err(invalid) => return Ok(invalid.response(issuer(&self.0), &cfg.login.title)),
        };
        let Some(s) = session::current(&*self.0.store, cfg, &parts.headers).await? else {
            return Ok(self.login_page(cfg, &ar, &parts.headers, None));
        };
        match form.get("consent") {
            Some("allow") => {
                crate::audit::event("consent", crate::audit::Outcome::Success)
                    .user(UserId(s.payload.user_id))
                    .client(&ar.client.id)
                    .emit();
                self.code_redirect(cfg, &ar, &s).await
            }
            _ => Ok(error_redirect(
                &ar.redirect_uri,
                ar.state.as_deref(),
                issuer(&self.0),
                "access_denied",
                "the user declined",
            )),
        }
    }

    /// RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): the session ends,
    /// the refresh tokens issued under it are revoked, and the browser goes to the
    /// client's registered `post_logout_redirect_uri` with `state`, or to a signed-out
    /// page.
    async fn logout(
        &self,
        cfg: &Config,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, SignInError> {
        let query: Vec<(String, String)> =
            form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let clear = session::end(&*self.0.store, cfg, req.headers()).await?;
        // The client whose list is consulted: `client_id`, or the `aud` of the hint. The
        // hint's signature is not needed for that: it only picks which registered list a
        // URI must be on, and the URI is followed only when it is on it exactly.
        let client_id = get("client_id")
            .map(str::to_owned)
            .or_else(|| get("id_token_hint").and_then(hint_audience));
        let target = match (get("post_logout_redirect_uri"), client_id) {
            (Some(uri), Some(id)) => match self.0.store.client_by_id(&id).await? {
                Some(c) if c.post_logout_redirect_uris.iter().any(|r| r == uri) => Some(uri),
                _ => None,
            },
            _ => None,
        };
        let mut resp = match target {
            Some(uri) => {
                let params: Vec<(&str, &str)> =
                    get("state").map(|s| ("state", s)).into_iter().collect();
                redirect::see_other(&redirect::with_params(uri, &params))
            }
            None => page::signed_out(&cfg.login),
        };
        session::set_cookie(resp.headers_mut(), clear);
        Ok(resp)
    }

    /// `GET|POST /oauth/userinfo` (OpenID Connect Core §5.3) with an access token of this
    /// gateway that was issued with `openid`.
    async fn userinfo(
        &self,
        req: Request<Incoming>,
        ctx: &RequestCtx,
    ) -> Result<Response<Body>, SignInError> {
        let token = crate::authn::source::bearer(req.headers()).unwrap_or("");
        let refuse = || {
            let mut resp = body::json_error(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "a valid access token with the openid scope is required",
            );
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer realm="tollgate", error="invalid_token""#),
            );
            resp
        };
        if token.is_empty() {
            return Ok(refuse());
        }
        let identity = match ctx.authenticator.authenticate(token).await {
            Ok(id) if id.self_issued && id.scopes.iter().any(|s| s == "openid") => id,
            Ok(_)
            | Err(crate::authn::AuthnError::Invalid(_) | crate::authn::AuthnError::Proof { .. }) => {
                return Ok(refuse())
            }
            Err(crate::authn::AuthnError::Unavailable(why)) => {
                return Err(SignInError::Store(StoreError::Unavailable(why)))
            }
        };
        let Some(user) = identity
            .user_id
            .parse::<i64>()
            .ok()
            .map(UserId)
            .map(|id| self.0.store.user_by_id(id))
        else {
            return Ok(refuse());
        };
        let Some(user) = user.await? else {
            return Ok(refuse());
        };
        let mut claims = serde_json::json!({ "sub": user.id.to_string() });
        if identity.scopes.iter().any(|s| s == "email") {
            claims["email"] = serde_json::json!(user.email);
            claims["email_verified"] = serde_json::json!(false);
        }
        if identity.scopes.iter().any(|s| s == "profile") {
            claims["preferred_username"] = serde_json::json!(user.username);
            claims["role"] = serde_json::json!(user.role);
        }
        Ok(body::json(StatusCode::OK, &claims))
    }
}

/// Whether the session is too old for the request (`prompt=login`, `max_age`).
fn needs_login(ar: &AuthRequest, s: &Session) -> bool {
    let age = Utc::now().timestamp() - s.payload.auth_time;
    ar.prompt_login || ar.max_age.is_some_and(|max| age > max)
}

/// The unverified `aud` of an ID token hint (see `logout`).
fn hint_audience(token: &str) -> Option<String> {
    use base64::Engine;
    let claims = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims)
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    match &v["aud"] {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(a) => a.first()?.as_str().map(str::to_owned),
        _ => None,
    }
}

/// A posted form (`application/x-www-form-urlencoded`), small.
struct Form(Vec<(String, String)>);

impl Form {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
}

async fn read_form(body: Incoming) -> Result<Form, SignInError> {
    let bytes = crate::http::body::read_small(body, MAX_FORM)
        .await
        .map_err(|_| SignInError::Form)?;
    Ok(Form(form_urlencoded::parse(&bytes).into_owned().collect()))
}
