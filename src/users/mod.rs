//! The users API: `POST /api/v1/users` (registration per `users_api.registration`),
//! `GET /api/v1/users/{id}` and `GET /api/v1/users/me`, in the legacy wire format.
//!
//! Threat model: account enumeration and privilege escalation. A user may read only
//! their own record unless their *current* role (read from the store, not the token) is
//! `admin`; anything else is the same 404 as a missing user, so ids cannot be probed.
//! Registration never takes a role from the request. Passwords are hashed on the
//! bounded pool and never echoed, logged or returned.

pub mod access;
mod error;
pub mod model;

use std::sync::Arc;

use http::{HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::authn::source::bearer;
use crate::authn::{Authenticator, AuthnError, Identity};
use crate::config::raw::Registration;
use crate::config::Config;
use crate::endpoint::{Endpoint, Envelope, RequestCtx};
use crate::http::body::{self, Body};
use crate::http::error::Answer;
use crate::http::BoxFuture;
use crate::oauth::TokenService;
use crate::proxy::error::GatewayError;
use crate::store::{NewUser, StoreError, UserId};
pub use error::UsersError;
use model::{validate, CreateUserRequest, UserView};

pub const USERS_PATH: &str = "/api/v1/users";

/// The role new users get, and the one the legacy API shows.
pub const DEFAULT_ROLE: &str = "default";
pub const ADMIN_ROLE: &str = "admin";

pub struct UsersEndpoint(pub Arc<TokenService>);

/// `tollgate_users_created_total` at 0 from the start.
pub fn register_metrics() {
    crate::telemetry::at_zero(|| [metrics::counter!("tollgate_users_created_total")]);
}

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

    fn envelope(&self) -> Envelope {
        Envelope::API
    }

    fn call(self: Arc<Self>, req: Request<Incoming>, ctx: RequestCtx) -> BoxFuture<Answer> {
        Box::pin(async move {
            let cfg = &ctx.generation.config;
            let authn = &*ctx.authenticator;
            let resp = match (target(&ctx.path), req.method().clone()) {
                (Some(Target::Collection), Method::POST) => self.create(authn, cfg, req).await,
                (Some(Target::Me), Method::GET | Method::HEAD) => {
                    self.show(authn, req.headers(), None).await
                }
                (Some(Target::Id(id)), Method::GET | Method::HEAD) => {
                    self.show(authn, req.headers(), Some(id)).await
                }
                (Some(Target::Collection), _) => Err(UsersError::MethodNotAllowed("POST, OPTIONS")),
                _ => Err(UsersError::MethodNotAllowed("GET, HEAD, OPTIONS")),
            };
            Ok(resp?)
        })
    }
}

impl UsersEndpoint {
    /// The caller, as the gateway's authenticator (the one the proxy runs) sees the
    /// bearer token. Only tokens this gateway issued speak for one of its users.
    async fn caller(
        &self,
        authn: &dyn Authenticator,
        headers: &HeaderMap,
    ) -> Result<Arc<Identity>, UsersError> {
        let Some(token) = bearer(headers) else {
            return Err(GatewayError::Unauthenticated.into());
        };
        let id = authn.authenticate(token).await.map_err(|e| match e {
            AuthnError::Invalid(why) => GatewayError::InvalidToken(why),
            AuthnError::Proof { error, .. } => GatewayError::InvalidToken(error.to_string()),
            AuthnError::Unavailable(why) => GatewayError::AuthUnavailable(why),
        })?;
        if !id.self_issued {
            return Err(
                GatewayError::InvalidToken("token not issued by this gateway".into()).into(),
            );
        }
        Ok(id)
    }

    async fn show(
        &self,
        authn: &dyn Authenticator,
        headers: &HeaderMap,
        id: Option<Option<i64>>,
    ) -> Result<Response<Body>, UsersError> {
        let caller = self.caller(authn, headers).await?;
        let me = access::caller_user(&caller);
        let wanted = match id {
            None => me,
            Some(id) => id.map(UserId),
        };
        let wanted = wanted.ok_or(UsersError::NotFound)?;
        if me != Some(wanted) && !access::is_admin(&*self.0.store, &caller).await? {
            return Err(UsersError::NotFound);
        }
        match self.0.store.user_by_id(wanted).await? {
            Some(u) => Ok(body::json(StatusCode::OK, &UserView::from(&u))),
            None => Err(UsersError::NotFound),
        }
    }

    async fn create(
        &self,
        authn: &dyn Authenticator,
        cfg: &Config,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, UsersError> {
        let mut actor = None;
        match cfg.users_api.registration {
            Registration::Open => {}
            Registration::Closed => return Err(UsersError::RegistrationClosed),
            Registration::Admin => {
                let caller = self.caller(authn, req.headers()).await?;
                if !access::is_admin(&*self.0.store, &caller).await? {
                    crate::audit::event("user_created", crate::audit::Outcome::Failure)
                        .reason("not_admin")
                        .field("actor_id", caller.user_id.as_str())
                        .emit();
                    return Err(UsersError::NotAdmin);
                }
                actor = Some(caller.user_id.clone());
            }
        }
        let bytes = body::read_small(req.into_body(), crate::oauth::request::MAX_BODY_BYTES)
            .await
            .map_err(|_| UsersError::BodyTooLarge)?;
        let parsed: CreateUserRequest =
            serde_json::from_slice(&bytes).map_err(|_| UsersError::NotJson)?;
        let valid = validate(parsed.user)
            .map_err(|errors| UsersError::Fields(StatusCode::UNPROCESSABLE_ENTITY, errors))?;
        // Cheap check first, so a duplicate costs no hash; the unique index still decides.
        if self.0.store.user_by_email(&valid.email).await?.is_some() {
            return Err(UsersError::taken("email"));
        }
        let hash = self.0.hasher.hash(valid.password.expose()).await?;
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
                Ok(body::json(StatusCode::OK, &UserView::from(&u)))
            }
            Err(StoreError::Conflict(crate::store::Unique::Username)) => {
                Err(UsersError::taken("username"))
            }
            Err(StoreError::Conflict(_)) => Err(UsersError::taken("email")),
            Err(e) => Err(e.into()),
        }
    }
}
