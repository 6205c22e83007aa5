//! Validation of the access tokens Tollgate issued itself: JWTs through
//! [`KeySet::verify`] plus the revoked-`jti` set, opaque tokens through the store (by
//! SHA-256 hash). Used by the users API, and as the proxy's authenticator when no other
//! is configured.

use std::sync::Arc;

use chrono::Utc;

use super::revocation::RevokedJtis;
use crate::crypto::sha256_hex;
use crate::keys::{AccessClaims, KeySet};
use crate::proxy::authn::{Authenticator, AuthnError, AuthnFuture, Identity};
use crate::store::{Store, StoreError, TokenKind, UserId};

#[derive(Debug, thiserror::Error)]
pub enum BearerError {
    #[error("invalid token: {0}")]
    Invalid(&'static str),
    #[error("token check unavailable: {0}")]
    Unavailable(String),
}

impl From<StoreError> for BearerError {
    fn from(e: StoreError) -> Self {
        BearerError::Unavailable(e.to_string())
    }
}

pub struct BearerValidator {
    keys: Arc<KeySet>,
    store: Arc<dyn Store>,
    revoked: Arc<RevokedJtis>,
}

/// A JWT has exactly two dots; our opaque tokens (URL-safe base64) have none.
pub fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}

impl BearerValidator {
    pub fn new(keys: Arc<KeySet>, store: Arc<dyn Store>, revoked: Arc<RevokedJtis>) -> Self {
        BearerValidator {
            keys,
            store,
            revoked,
        }
    }

    /// The claims of a live access token, or why it is not one.
    pub async fn validate(&self, token: &str) -> Result<AccessClaims, BearerError> {
        if looks_like_jwt(token) {
            let claims = self
                .keys
                .verify(token)
                .map_err(|_| BearerError::Invalid("token does not verify"))?;
            if self.revoked.contains(&claims.jti) {
                return Err(BearerError::Invalid("token revoked"));
            }
            return Ok(claims);
        }
        if token.is_empty() || token.len() > 512 {
            return Err(BearerError::Invalid("malformed token"));
        }
        let rec = self
            .store
            .token_by_hash(TokenKind::OpaqueAccess, &sha256_hex(token))
            .await?
            .ok_or(BearerError::Invalid("unknown token"))?;
        let now = Utc::now();
        if rec.revoked_at.is_some() || rec.expires_at <= now {
            return Err(BearerError::Invalid("token expired or revoked"));
        }
        let user = match rec.user_id {
            Some(id) => Some(
                self.store
                    .user_by_id(id)
                    .await?
                    .ok_or(BearerError::Invalid("user no longer exists"))?,
            ),
            None => None,
        };
        Ok(AccessClaims {
            sub: match &user {
                Some(u) => u.id.to_string(),
                None => rec.client_id.clone().unwrap_or_default(),
            },
            iss: self.keys.issuer().to_string(),
            aud: self.keys.audience().to_string(),
            exp: rec.expires_at.timestamp(),
            iat: rec.created_at.timestamp(),
            jti: rec.family_id,
            scope: rec.scope,
            client_id: rec.client_id,
            email: user.as_ref().map(|u| u.email.clone()),
            role: user.map(|u| u.role),
            alias: rec.alias,
        })
    }

    /// The user a token speaks for. client_credentials tokens speak for a client and
    /// carry no `email`; every user has one.
    pub fn user_id(claims: &AccessClaims) -> Option<UserId> {
        claims.email.as_ref()?;
        claims.sub.parse::<i64>().ok().map(UserId)
    }
}

/// The proxy-facing view of the same check.
impl Authenticator for BearerValidator {
    fn authenticate<'a>(&'a self, token: &'a str) -> AuthnFuture<'a> {
        Box::pin(async move {
            let c = self.validate(token).await.map_err(|e| match e {
                BearerError::Invalid(why) => AuthnError::Invalid(why.into()),
                BearerError::Unavailable(why) => AuthnError::Unavailable(why),
            })?;
            Ok(Arc::new(Identity {
                user_id: c.sub,
                email: c.email,
                role: c.role,
                scopes: c.scope.split_whitespace().map(str::to_owned).collect(),
                client_id: c.client_id,
                alias: c.alias,
                expires_at: u64::try_from(c.exp).ok(),
                token_id: Some(c.jti),
                signed_jwt: None,
            }))
        })
    }
}
