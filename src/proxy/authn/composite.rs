//! The authenticator the proxy runs: JWT-shaped tokens go to JWT validation (self-issued
//! or a configured foreign issuer), everything else to opaque-token lookup (own store,
//! then the introspection endpoints). One place also answers "tell me when this token is
//! revoked" for long-lived connections.

use std::sync::Arc;

use super::jwt::{looks_like_jwt, JwtAuthenticator};
use super::opaque::OpaqueAuthenticator;
use super::signed::IdentitySigner;
use super::{Authenticator, AuthnError, AuthnFuture, Identity};
use crate::revocation::{RevocationList, RevokedFuture};

pub struct CompositeAuthenticator {
    pub(super) jwt: Option<JwtAuthenticator>,
    pub(super) opaque: Option<Arc<OpaqueAuthenticator>>,
    pub(super) revocations: Arc<RevocationList>,
    pub(super) signer: Option<Arc<dyn IdentitySigner>>,
}

impl CompositeAuthenticator {
    pub fn new(revocations: Arc<RevocationList>) -> Self {
        CompositeAuthenticator {
            jwt: None,
            opaque: None,
            revocations,
            signer: None,
        }
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
    fn authenticate<'a>(&'a self, token: &'a str) -> AuthnFuture<'a> {
        Box::pin(self.check(token))
    }

    fn authenticate_now(&self, token: &str) -> Option<Result<Arc<Identity>, AuthnError>> {
        if !looks_like_jwt(token) {
            return None;
        }
        let id = match self.jwt.as_ref()?.cached(token)? {
            Ok(id) => id,
            Err(e) => return Some(Err(e)),
        };
        Some(match &self.signer {
            Some(s) => s.attach(id),
            None => Ok(id),
        })
    }

    fn revoked(&self, id: &Identity) -> Option<RevokedFuture> {
        id.token_id.as_deref().map(|j| self.revocations.revoked(j))
    }
}
