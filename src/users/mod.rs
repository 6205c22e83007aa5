//! The users API: `POST /api/v1/users` (registration per `users_api.registration`),
//! `GET /api/v1/users/{id}` and `GET /api/v1/users/me`, in the legacy wire format.
//!
//! Threat model: account enumeration and privilege escalation. A user may read only
//! their own record unless their *current* role (read from the store, not the token) is
//! `admin`; anything else is the same 404 as a missing user, so ids cannot be probed.
//! Registration never takes a role from the request. Passwords are hashed on the
//! bounded pool and never echoed, logged or returned.

pub mod access;
pub mod model;

use std::sync::Arc;

use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use crate::config::raw::Registration;
use crate::config::Config;
use crate::crypto::PasswordError;
use crate::endpoint::{Endpoint, RequestCtx};
use crate::http::body::{self, json_error, Body};
use crate::http::cors;
use crate::http::BoxFuture;
use crate::oauth::request::read_body;
use crate::oauth::TokenService;
use crate::proxy::authn::source::bearer;
use crate::proxy::authn::{Authenticator, AuthnError, Identity};
use crate::proxy::error::GatewayError;
use crate::store::{NewUser, StoreError, UserId};
use model::{validate, CreateUserRequest, UserView};

pub const USERS_PATH: &str = "/api/v1/users";

/// The role new users get, and the one the legacy API shows.
pub const DEFAULT_ROLE: &str = "default";
pub const ADMIN_ROLE: &str = "admin";

pub struct UsersEndpoint(pub Arc<TokenService>);

enum Target {
    Collection,
    Me,
    Id(Option<i64>),
}

fn target(path: &str) -> Option<Target> {
    let rest = path.strip_prefix(USERS_PATH)?;
    match rest {
        "" | "/" => Some(Target::Collection),
        "/me" => Some(Target::Me),
        r => {
            let id = r.strip_prefix('/')?;
            if id.contains('/') {
                return None;
            }
            Some(Target::Id(id.parse::<i64>().ok()))
        }
    }
}

impl Endpoint for UsersEndpoint {
    fn matches(&self, _method: &Method, path: &str, _config: &Config) -> bool {
        target(path).is_some()
    }

    fn call(self: Arc<Self>, req: Request<Incoming>, ctx: RequestCtx) -> BoxFuture<Response<Body>> {
        Box::pin(async move {
            let cfg = ctx.generation.config.clone();
            let headers = req.headers().clone();
            if req.method() == Method::OPTIONS {
                return cors::preflight(&headers, &cfg.cors.allow_origins);
            }
            let authn = &*ctx.authenticator;
            let resp = match (target(&ctx.path), req.method().clone()) {
                (Some(Target::Collection), Method::POST) => self.create(authn, &cfg, req).await,
                (Some(Target::Me), Method::GET | Method::HEAD) => {
                    self.show(authn, &headers, None).await
                }
                (Some(Target::Id(id)), Method::GET | Method::HEAD) => {
                    self.show(authn, &headers, Some(id)).await
                }
                (Some(Target::Collection), _) => method_not_allowed("POST, OPTIONS"),
                _ => method_not_allowed("GET, HEAD, OPTIONS"),
            };
            cors::finish(resp, &headers, &cfg.cors.allow_origins)
        })
    }
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "Method not allowed",
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

fn not_found() -> Response<Body> {
    json_error(StatusCode::NOT_FOUND, "not_found", "No such user")
}

fn unavailable(detail: &dyn std::fmt::Display) -> Response<Body> {
    tracing::warn!(error = %detail, "users API: store or hasher unavailable");
    json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        "The service is temporarily unavailable; try again",
    )
}

fn field_errors(status: StatusCode, errors: &model::FieldErrors) -> Response<Body> {
    body::json(status, &json!({ "errors": errors }))
}

impl UsersEndpoint {
    /// The caller, as the gateway's authenticator (the one the proxy runs) sees the
    /// bearer token, or the 401/503 to answer with. Only tokens this gateway issued
    /// speak for one of its users.
    async fn caller(
        &self,
        authn: &dyn Authenticator,
        headers: &HeaderMap,
    ) -> Result<Arc<Identity>, Response<Body>> {
        let Some(token) = bearer(headers) else {
            return Err(GatewayError::Unauthenticated.into_response());
        };
        let id = authn.authenticate(token).await.map_err(|e| match e {
            AuthnError::Invalid(why) => GatewayError::InvalidToken(why).into_response(),
            AuthnError::Unavailable(why) => GatewayError::AuthUnavailable(why).into_response(),
        })?;
        if !id.self_issued {
            return Err(
                GatewayError::InvalidToken("token not issued by this gateway".into())
                    .into_response(),
            );
        }
        Ok(id)
    }

    async fn show(
        &self,
        authn: &dyn Authenticator,
        headers: &HeaderMap,
        id: Option<Option<i64>>,
    ) -> Response<Body> {
        let caller = match self.caller(authn, headers).await {
            Ok(c) => c,
            Err(r) => return r,
        };
        let me = access::caller_user(&caller);
        let wanted = match id {
            None => me,
            Some(id) => id.map(UserId),
        };
        let Some(wanted) = wanted else {
            return not_found();
        };
        if me != Some(wanted) {
            match access::is_admin(&*self.0.store, &caller).await {
                Ok(true) => {}
                Ok(false) => return not_found(),
                Err(e) => return unavailable(&e),
            }
        }
        match self.0.store.user_by_id(wanted).await {
            Ok(Some(u)) => body::json(StatusCode::OK, &UserView::from(&u)),
            Ok(None) => not_found(),
            Err(e) => unavailable(&e),
        }
    }

    async fn create(
        &self,
        authn: &dyn Authenticator,
        cfg: &Config,
        req: Request<Incoming>,
    ) -> Response<Body> {
        let mut actor = None;
        match cfg.users_api.registration {
            Registration::Open => {}
            Registration::Closed => {
                return json_error(
                    StatusCode::FORBIDDEN,
                    "registration_closed",
                    "Registration is closed",
                );
            }
            Registration::Admin => {
                let caller = match self.caller(authn, req.headers()).await {
                    Ok(c) => c,
                    Err(r) => return r,
                };
                match access::is_admin(&*self.0.store, &caller).await {
                    Ok(true) => actor = Some(caller.user_id.clone()),
                    Ok(false) => {
                        crate::audit::event("user_created", crate::audit::Outcome::Failure)
                            .reason("not_admin")
                            .field("actor_id", caller.user_id.as_str())
                            .emit();
                        return json_error(
                            StatusCode::FORBIDDEN,
                            "forbidden",
                            "Only an admin may create users",
                        );
                    }
                    Err(e) => return unavailable(&e),
                }
            }
        }
        let bytes = match read_body(req.into_body()).await {
            Ok(b) => b,
            Err(_) => {
                return json_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "invalid_request",
                    "The request body is too large",
                )
            }
        };
        let parsed: CreateUserRequest = match serde_json::from_slice(&bytes) {
            Ok(p) => p,
            Err(_) => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "The request body must be a JSON object",
                )
            }
        };
        let valid = match validate(parsed.user) {
            Ok(v) => v,
            Err(errors) => return field_errors(StatusCode::UNPROCESSABLE_ENTITY, &errors),
        };
        let taken = || {
            let mut e = model::FieldErrors::new();
            e.insert("email", vec!["has already been taken".into()]);
            field_errors(StatusCode::CONFLICT, &e)
        };
        // Cheap check first, so a duplicate costs no hash; the unique index still decides.
        match self.0.store.user_by_email(&valid.email).await {
            Ok(Some(_)) => return taken(),
            Ok(None) => {}
            Err(e) => return unavailable(&e),
        }
        let hash = match self.0.hasher.hash(valid.password.expose()).await {
            Ok(h) => h,
            Err(e @ PasswordError::Busy) => return unavailable(&e),
            Err(e) => {
                tracing::warn!(error = %e, "users API: cannot hash password");
                return json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "An unexpected error happened",
                );
            }
        };
        let new = NewUser {
            username: valid.username,
            email: valid.email,
            password_hash: hash,
            role: DEFAULT_ROLE.into(),
        };
        match self.0.store.create_user(new).await {
            Ok(u) => {
                crate::audit::event("user_created", crate::audit::Outcome::Success)
                    .user(u.id)
                    .field("actor_id", actor)
                    .field("role", u.role.as_str())
                    .emit();
                metrics::counter!("tollgate_users_created_total").increment(1);
                body::json(StatusCode::OK, &UserView::from(&u))
            }
            Err(StoreError::Conflict(crate::store::Unique::Username)) => {
                let mut e = model::FieldErrors::new();
                e.insert("username", vec!["has already been taken".into()]);
                field_errors(StatusCode::CONFLICT, &e)
            }
            Err(StoreError::Conflict(_)) => taken(),
            Err(e) => unavailable(&e),
        }
    }
}
