//! Self-issued JWTs: the token service's [`KeySet`] is the verifier (algorithm pinned by
//! `kid`, `typ`, `exp`, `iss`, `aud`), adapted to the proxy's [`JwtVerifier`] trait; and
//! the same key set signs the internal identity JWT.

use std::sync::Arc;

use super::claims::Claims;
use super::signed::InternalSigner;
use super::verifier::{JwtVerifier, VerifyError, VerifyFuture};
use crate::keys::{AccessClaims, KeyError, KeySet};

impl JwtVerifier for KeySet {
    fn verify<'a>(&'a self, token: &'a str) -> VerifyFuture<'a> {
        let r = KeySet::verify(self, token)
            .map(claims_of)
            .map_err(|e| match e {
                KeyError::UnknownKid => VerifyError::UnknownKid,
                KeyError::MalformedHeader => VerifyError::Malformed,
                other => VerifyError::Rejected(other.to_string()),
            });
        Box::pin(std::future::ready(r))
    }
}

fn claims_of(c: AccessClaims) -> Claims {
    Claims {
        sub: Some(c.sub),
        exp: Some(c.exp.max(0) as u64),
        jti: Some(c.jti),
        iss: Some(c.iss),
        aud: Some(serde_json::Value::from(c.aud.values())),
        cnf: c.cnf,
        email: c.email,
        role: c.role,
        scope: Some(serde_json::Value::String(c.scope)),
        client_id: c.client_id,
        alias: c.alias,
        ..Claims::default()
    }
}

/// Signs internal identity JWTs with the token service's active key. The audience is not
/// the access-token audience, so an internal JWT is never accepted as an access token.
pub struct KeySetSigner {
    pub keys: Arc<KeySet>,
    pub audience: String,
}

impl InternalSigner for KeySetSigner {
    fn sign(&self, id: &super::Identity, iat: u64, exp: u64) -> Result<String, String> {
        let claims = AccessClaims {
            sub: id.user_id.clone(),
            iss: self.keys.issuer().to_owned(),
            aud: self.audience.clone().into(),
            exp: exp as i64,
            iat: iat as i64,
            nbf: None,
            jti: uuid::Uuid::new_v4().to_string(),
            scope: id.scopes.join(" "),
            client_id: id.client_id.clone(),
            email: id.email.clone(),
            role: id.role.clone(),
            alias: id.alias.clone(),
            cnf: None,
        };
        self.keys.sign(&claims).map_err(|e| e.to_string())
    }
}
