//! Authentication: turn the token a request carries into an [`Identity`], or refuse it.
//!
//! The proxy pipeline only sees the [`Authenticator`] trait, so token kinds plug in
//! without touching the data path. [`CompositeAuthenticator`] picks exactly one
//! authenticator by the token's shape (JWT-shaped: the self-issued or a foreign issuer's
//! verifier, chosen by the unverified `iss`; anything else: introspection), and that one's
//! answer is final: a refusal is never retried elsewhere, so no token kind can be used to
//! reach a laxer check.

pub mod binding;
pub mod claims;
pub mod composite;
pub mod dpop;
pub mod jwks;
pub mod jwt;
pub mod lifetime;
pub mod opaque;
pub mod replay;
pub mod request;
pub mod self_issued;
pub mod setup;
pub mod signed;
pub mod source;
pub mod verifier;

pub use composite::CompositeAuthenticator;
pub use request::{Scheme, TokenRequest};
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
    /// The token's `aud`, every value (RFC 8707: one per resource it was issued for).
    pub audiences: Vec<String>,
    /// The key or certificate the token is bound to (`cnf`), when it is.
    pub cnf: Option<Confirmation>,
}

/// A token's confirmation claim: whoever presents it must prove they hold this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmation {
    /// DPoP (RFC 9449): the JWK thumbprint of the proof key, `cnf.jkt`.
    Jkt(String),
    /// mTLS (RFC 8705): the SHA-256 thumbprint of the client certificate, `cnf["x5t#S256"]`.
    X5tS256(String),
}

impl Confirmation {
    /// From a `cnf` claim object; `None` when it names neither binding.
    pub fn from_claim(v: &serde_json::Value) -> Option<Confirmation> {
        if let Some(jkt) = v.get("jkt").and_then(|j| j.as_str()) {
            return Some(Confirmation::Jkt(jkt.to_owned()));
        }
        v.get("x5t#S256")
            .and_then(|t| t.as_str())
            .map(|t| Confirmation::X5tS256(t.to_owned()))
    }

    /// The `cnf` claim object.
    pub fn to_claim(&self) -> serde_json::Value {
        match self {
            Confirmation::Jkt(j) => serde_json::json!({ "jkt": j }),
            Confirmation::X5tS256(t) => serde_json::json!({ "x5t#S256": t }),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthnError {
    /// The token is malformed, forged, expired, revoked or unknown.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The token could not be checked right now (introspection server down); never a 200.
    #[error("token check unavailable: {0}")]
    Unavailable(String),
    /// The DPoP proof that must come with the token is missing, invalid or stale
    /// (`invalid_dpop_proof`), or lacks the server's current nonce (`use_dpop_nonce`,
    /// with the nonce to use).
    #[error("{error}")]
    Proof {
        error: dpop::DpopError,
        nonce: Option<String>,
    },
}

pub type AuthnFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Arc<Identity>, AuthnError>> + Send + 'a>>;

/// Validates a token: the one contract every caller uses.
///
/// [`Self::authenticate_request`] takes the request around the token (method, URI as the
/// client used it, the `DPoP` header, the client certificate, the audience the caller
/// serves) and is what the proxy, forward-auth and ext_authz call; it checks the
/// token's binding (DPoP proof, certificate) and audience. [`Self::authenticate`] is the
/// same decision for a plain bearer token at the gateway's own endpoints: a
/// sender-constrained token is refused there, because no proof can come with it.
pub trait Authenticator: Send + Sync {
    fn authenticate<'a>(&'a self, token: &'a str) -> AuthnFuture<'a>;

    /// The full check of a token with its request. The default, for authenticators that
    /// know no bindings, accepts only unbound tokens sent as Bearer that carry the
    /// audience the request asks for.
    fn authenticate_request<'a>(&'a self, req: &'a TokenRequest<'a>) -> AuthnFuture<'a> {
        Box::pin(async move {
            let id = self.authenticate(req.token).await?;
            binding::unbound_only(&id, req)?;
            Ok(id)
        })
    }

    /// The DPoP and audience checks in force, for the token endpoint's proofs; `None`
    /// when this authenticator knows no bindings.
    fn binding(&self) -> Option<&binding::Binding> {
        None
    }

    /// The token as its issuer sees it (valid, not revoked), whatever its binding or
    /// audience: for introspection, which describes a token rather than admits it.
    fn inspect<'a>(&'a self, token: &'a str) -> AuthnFuture<'a> {
        self.authenticate(token)
    }

    /// [`Self::authenticate_request`] when it needs no waiting (a cached, unbound token);
    /// `None` means "call `authenticate_request`".
    fn authenticate_request_now(
        &self,
        _req: &TokenRequest<'_>,
    ) -> Option<Result<Arc<Identity>, AuthnError>> {
        None
    }

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

    /// The text of a token this authenticator has verified and still caches, found by the
    /// bytes a request carries (`source::find_token`): a hit is that verified text, so
    /// the request's copy needs no UTF-8 check. Only a shortcut: `None` sends the token
    /// the usual way, as text.
    fn known_token(&self, _token: &[u8]) -> Option<jwt::KnownToken> {
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
