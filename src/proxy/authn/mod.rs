//! Authentication: turn the token a request carries into an [`Identity`], or refuse it.
//!
//! Stages follow one contract (after Ory Oathkeeper's pipeline): an authenticator either
//! accepts the token, says it is not responsible (try the next), or rejects it outright.
//! The proxy pipeline only sees the [`Authenticator`] trait, so token kinds plug in
//! without touching the data path.

pub mod source;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Who is calling, as established from a token. Injected upstream as identity headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// `sub`: the user id (or the client id for client_credentials tokens).
    pub user_id: String,
    pub email: Option<String>,
    pub role: Option<String>,
    pub scopes: Vec<String>,
    pub client_id: Option<String>,
    pub alias: Option<String>,
    /// Expiry as UNIX seconds, when the token has one.
    pub expires_at: Option<u64>,
    /// `jti` or another id under which the token can be revoked.
    pub token_id: Option<String>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthnError {
    /// The token is malformed, forged, expired, revoked or unknown.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The token could not be checked right now (introspection server down); never a 200.
    #[error("token check unavailable: {0}")]
    Unavailable(String),
}

pub type AuthnFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Arc<Identity>, AuthnError>> + Send + 'a>>;

/// Validates a bearer token.
pub trait Authenticator: Send + Sync {
    fn authenticate<'a>(&'a self, token: &'a str) -> AuthnFuture<'a>;
}

/// The authenticator in force when no token validation is configured: every token is
/// refused, so a `required` route fails closed.
pub struct RejectAll;

impl Authenticator for RejectAll {
    fn authenticate<'a>(&'a self, _token: &'a str) -> AuthnFuture<'a> {
        Box::pin(async {
            Err(AuthnError::Invalid(
                "no token validation is configured".into(),
            ))
        })
    }
}
