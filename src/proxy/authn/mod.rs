//! Authentication: turn the token a request carries into an [`Identity`], or refuse it.
//!
//! The proxy pipeline only sees the [`Authenticator`] trait, so token kinds plug in
//! without touching the data path. [`CompositeAuthenticator`] picks exactly one
//! authenticator by the token's shape (JWT-shaped: the self-issued or a foreign issuer's
//! verifier, chosen by the unverified `iss`; anything else: introspection), and that one's
//! answer is final: a refusal is never retried elsewhere, so no token kind can be used to
//! reach a laxer check.

pub mod claims;
pub mod composite;
pub mod jwks;
pub mod jwt;
pub mod lifetime;
pub mod opaque;
pub mod self_issued;
pub mod setup;
pub mod signed;
pub mod source;
pub mod verifier;

pub use composite::CompositeAuthenticator;
pub use setup::{build, AuthnParts};

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::revocation::RevokedFuture;

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
    /// The signed internal JWT for `identity_headers.signed_jwt`, when configured.
    pub signed_jwt: Option<Arc<str>>,
    /// Issued by this gateway (its signing keys or its store), so `user_id` names one of
    /// its own users; a foreign issuer's `sub` must never be read as one.
    pub self_issued: bool,
    /// The identity headers' values, made on the first request that injects them and
    /// kept with the (cached) identity: later requests copy a reference, not the text.
    pub header_values: crate::proxy::identity::CachedValues,
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

    /// The answer when it needs no waiting (a cached token), so the caller can skip the
    /// future of [`Self::authenticate`]; `None` means "call `authenticate`". Must agree
    /// with what `authenticate` would answer.
    fn authenticate_now(&self, _token: &str) -> Option<Result<Arc<Identity>, AuthnError>> {
        None
    }

    /// A future that resolves when the token behind `identity` is revoked, so a
    /// long-lived connection opened with it can be closed. `None`: revocation is not
    /// tracked for it.
    fn revoked(&self, _identity: &Identity) -> Option<RevokedFuture> {
        None
    }
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
