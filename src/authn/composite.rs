//! The authenticator the proxy runs: JWT-shaped tokens go to JWT validation (self-issued
//! or a configured foreign issuer), everything else to opaque-token lookup (own store,
//! then the introspection endpoints). One place also answers "tell me when this token is
//! revoked" for long-lived connections.

use std::sync::Arc;

use super::binding::Binding;
use super::jwt::{looks_like_jwt, JwtAuthenticator, KnownToken};
use super::opaque::OpaqueAuthenticator;
use super::request::TokenRequest;
use super::signed::IdentitySigner;
use super::{Authenticator, AuthnError, AuthnFuture, Identity};
use crate::revocation::{RevocationList, RevokedFuture};

pub struct CompositeAuthenticator {
    pub(super) jwt: Option<JwtAuthenticator>,
    pub(super) opaque: Option<Arc<OpaqueAuthenticator>>,
    pub(super) revocations: Arc<RevocationList>,
    pub(super) signer: Option<Arc<dyn IdentitySigner>>,
    /// Audience and sender-constraint checks (DPoP proofs, certificates).
    pub(super) binding: Binding,
}

/// Whether the JWT cache may hold `token`. Only verified JWTs are cached, and a cache hit
/// compares the whole token: a prefix check is enough here (`looks_like_jwt` would scan
/// every byte of a ~700 byte token on every request; BENCHMARKS.md, "Per-stage budget").
fn may_be_cached(token: &[u8]) -> bool {
    token.starts_with(b"eyJ")
}

impl CompositeAuthenticator {
    pub fn new(revocations: Arc<RevocationList>, binding: Binding) -> Self {
        CompositeAuthenticator {
            jwt: None,
            opaque: None,
            revocations,
            signer: None,
            binding,
        }
    }

    /// A cached identity for the token, checked against its request, without waiting.
    fn cached_for(&self, req: &TokenRequest<'_>) -> Option<Result<Arc<Identity>, AuthnError>> {
        if !may_be_cached(req.token.as_bytes()) {
            return None;
        }
        let id = match self.jwt.as_ref()?.cached(req.token)? {
            Ok(id) => id,
            Err(e) => return Some(Err(e)),
        };
        if let Err(e) = self.binding.check_now(&id, req)? {
            return Some(Err(e));
        }
        Some(match &self.signer {
            Some(s) => s.attach(id),
            None => Ok(id),
        })
    }

    pub fn with_jwt(mut self, jwt: JwtAuthenticator) -> Self {
        self.jwt = (!jwt.is_empty()).then_some(jwt);
        self
    }

    pub fn with_opaque(mut self, opaque: Arc<OpaqueAuthenticator>) -> Self {
        self.opaque = (!opaque.is_empty()).then_some(opaque);
        self
    }

    /// Adds a signed internal JWT to every identity (`identity_headers.signed_jwt`).
    pub fn with_signer(mut self, signer: Arc<dyn IdentitySigner>) -> Self {
        self.signer = Some(signer);
        self
    }

    pub fn revocations(&self) -> &Arc<RevocationList> {
        &self.revocations
    }

    async fn check(&self, token: &str) -> Result<Arc<Identity>, AuthnError> {
        let id = if looks_like_jwt(token) {
            match &self.jwt {
                Some(j) => j.authenticate(token).await?,
                None => return Err(AuthnError::Invalid("no JWT issuer is configured".into())),
            }
        } else {
            match &self.opaque {
                Some(o) => o.authenticate(token).await?,
                None => return Err(AuthnError::Invalid("opaque tokens are not accepted".into())),
            }
        };
        match &self.signer {
            Some(s) => s.attach(id),
            None => Ok(id),
        }
    }
}

impl Authenticator for CompositeAuthenticator {
    /// A plain bearer token at the gateway's own endpoints: the request-aware check with
    /// nothing but the token, so a bound token (its proof cannot come along) and one of
    /// the gateway's own tokens issued for another resource are refused.
    fn authenticate<'a>(&'a self, token: &'a str) -> AuthnFuture<'a> {
        Box::pin(async move {
            let id = self.check(token).await?;
            self.binding
                .check(&id, &TokenRequest::bearer(token))
                .await?;
            Ok(id)
        })
    }

    fn authenticate_now(&self, token: &str) -> Option<Result<Arc<Identity>, AuthnError>> {
        self.cached_for(&TokenRequest::bearer(token))
    }

    fn binding(&self) -> Option<&Binding> {
        Some(&self.binding)
    }

    fn inspect<'a>(&'a self, token: &'a str) -> AuthnFuture<'a> {
        Box::pin(self.check(token))
    }

    fn authenticate_request<'a>(&'a self, req: &'a TokenRequest<'a>) -> AuthnFuture<'a> {
        Box::pin(async move {
            let id = self.check(req.token).await?;
            self.binding.check(&id, req).await?;
            Ok(id)
        })
    }

    fn authenticate_request_now(
        &self,
        req: &TokenRequest<'_>,
    ) -> Option<Result<Arc<Identity>, AuthnError>> {
        self.cached_for(req)
    }

    fn revoked(&self, id: &Identity) -> Option<RevokedFuture> {
        id.token_id.as_deref().map(|j| self.revocations.revoked(j))
    }

    fn known_token(&self, token: &[u8]) -> Option<KnownToken> {
        if !may_be_cached(token) {
            return None;
        }
        self.jwt.as_ref()?.known(token)
    }
}
