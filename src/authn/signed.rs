//! The optional signed internal JWT (`identity_headers.signed_jwt`): for upstreams that
//! verify who the caller is instead of trusting plain identity headers.
//!
//! Threat model: a workload inside the network that can reach the upstream directly and
//! forge `X-User-Id`. The internal JWT is signed with Tollgate's key (published in its
//! JWKS), short-lived, and scoped to an internal audience so it is useless as an access
//! token at Tollgate itself. Signing is done once per identity and reused for a while, so
//! an RSA signature does not land on every request.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use moka::sync::Cache;
use serde::Serialize;

use super::claims::now_unix;
use super::{AuthnError, Identity};

/// Lifetime of an internal JWT; it is reused for at most half of that.
pub const INTERNAL_TTL: Duration = Duration::from_secs(120);

/// Audience of the internal identity JWT unless configured otherwise.
pub const INTERNAL_AUDIENCE: &str = "tollgate-upstream";

/// Adds a signed internal JWT to an identity.
pub trait IdentitySigner: Send + Sync {
    fn attach(&self, id: Arc<Identity>) -> Result<Arc<Identity>, AuthnError>;
}

/// Produces the signed internal JWT for an identity, valid from `iat` to `exp`.
pub trait InternalSigner: Send + Sync {
    fn sign(&self, id: &Identity, iat: u64, exp: u64) -> Result<String, String>;
}

#[derive(Serialize)]
struct InternalClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
    #[serde(skip_serializing_if = "String::is_empty")]
    scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    alias: Option<&'a str>,
}

/// Signs with a bare key (for upstreams given that key's public half directly).
pub struct KeySigner {
    key: EncodingKey,
    header: Header,
    issuer: String,
    audience: String,
}

impl KeySigner {
    pub fn new(
        key: EncodingKey,
        alg: Algorithm,
        kid: Option<String>,
        issuer: String,
        audience: String,
    ) -> Self {
        let mut header = Header::new(alg);
        header.kid = kid;
        KeySigner {
            key,
            header,
            issuer,
            audience,
        }
    }
}

impl InternalSigner for KeySigner {
    fn sign(&self, id: &Identity, iat: u64, exp: u64) -> Result<String, String> {
        let claims = InternalClaims {
            iss: &self.issuer,
            aud: &self.audience,
            sub: &id.user_id,
            iat,
            exp,
            email: id.email.as_deref(),
            role: id.role.as_deref(),
            scope: id.scopes.join(" "),
            client_id: id.client_id.as_deref(),
            alias: id.alias.as_deref(),
        };
        jsonwebtoken::encode(&self.header, &claims, &self.key).map_err(|e| e.to_string())
    }
}

type SignedKey = (String, Option<String>, Option<u64>);

/// Attaches internal JWTs, reusing one per identity for half its lifetime.
pub struct JwtIdentitySigner {
    signer: Box<dyn InternalSigner>,
    signed: Cache<SignedKey, Arc<Identity>>,
}

impl JwtIdentitySigner {
    pub fn new(signer: impl InternalSigner + 'static) -> Self {
        JwtIdentitySigner {
            signer: Box::new(signer),
            signed: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(INTERNAL_TTL / 2)
                .build(),
        }
    }
}

impl IdentitySigner for JwtIdentitySigner {
    fn attach(&self, id: Arc<Identity>) -> Result<Arc<Identity>, AuthnError> {
        let key = (id.user_id.clone(), id.token_id.clone(), id.expires_at);
        if let Some(s) = self.signed.get(&key) {
            if s.scopes == id.scopes && s.role == id.role {
                return Ok(s);
            }
        }
        let now = now_unix();
        let mut exp = now + INTERNAL_TTL.as_secs();
        if let Some(t) = id.expires_at {
            exp = exp.min(t);
        }
        let jwt = self.signer.sign(&id, now, exp).map_err(|e| {
            AuthnError::Unavailable(format!("cannot sign the internal identity token: {e}"))
        })?;
        let mut with = (*id).clone();
        with.signed_jwt = Some(Arc::from(jwt));
        // The header values are made again, with the signed token among them.
        with.header_values = Default::default();
        let with = Arc::new(with);
        self.signed.insert(key, with.clone());
        Ok(with)
    }
}
