//! JWT signature and registered-claim checks against a set of keys, each pinned to one
//! algorithm by its `kid`.
//!
//! Threat model: a forged or replayed token. Defences, all fail closed:
//! - `alg: none` never parses (jsonwebtoken has no such algorithm);
//! - the algorithm comes from the key the `kid` names, never from the token header, so an
//!   HS256 token "signed" with an RSA public key (HS/RS confusion) is refused;
//! - a missing or unknown `kid` is refused (the foreign-issuer wrapper may refetch once);
//! - `exp` is required, `exp`/`nbf` are checked with a small leeway, `iss` must match, and
//!   `aud` must contain the expected audience when one is configured.
//!
//! The token service's own key set (`keys/`) plugs in through the same [`JwtVerifier`]
//! trait, so the proxy never cares whose keys they are.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::claims::Claims;

/// Leeway for `exp` and `nbf`: clocks drift, but not by minutes.
pub use crate::keys::LEEWAY_SECS;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("malformed token")]
    Malformed,
    #[error("no key with this kid")]
    UnknownKid,
    #[error("token rejected: {0}")]
    Rejected(String),
    /// The keys could not be fetched (foreign issuer's JWKS unreachable).
    #[error("keys unavailable: {0}")]
    KeysUnavailable(String),
}

pub type VerifyFuture<'a> = Pin<Box<dyn Future<Output = Result<Claims, VerifyError>> + Send + 'a>>;

/// Verifies a JWT completely (signature, algorithm pinned by kid, exp/nbf, iss, aud) and
/// returns its claims.
pub trait JwtVerifier: Send + Sync {
    fn verify<'a>(&'a self, token: &'a str) -> VerifyFuture<'a>;
}

struct PinnedKey {
    key: DecodingKey,
    validation: Validation,
}

/// Keys by `kid`, for one issuer and audience.
pub struct KeySetVerifier {
    keys: HashMap<String, PinnedKey>,
    issuer: String,
    audience: Option<String>,
}

impl KeySetVerifier {
    pub fn new(issuer: impl Into<String>, audience: Option<String>) -> Self {
        KeySetVerifier {
            keys: HashMap::new(),
            issuer: issuer.into(),
            audience,
        }
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = LEEWAY_SECS;
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "iss"]);
        v.set_issuer(&[&self.issuer]);
        match &self.audience {
            Some(a) => v.set_audience(&[a]),
            None => v.validate_aud = false,
        }
        v
    }

    /// Adds a key under `kid`, accepted only with `alg`.
    pub fn add_key(&mut self, kid: impl Into<String>, alg: Algorithm, key: DecodingKey) {
        let validation = self.validation(alg);
        self.keys.insert(kid.into(), PinnedKey { key, validation });
    }

    /// Adds every usable signing key of a JWKS; returns how many were taken. Keys without
    /// a `kid`, symmetric keys (a JWKS is public) and unknown algorithms are skipped.
    pub fn add_jwks(&mut self, jwks: &serde_json::Value) -> usize {
        let Some(keys) = jwks.get("keys").and_then(|k| k.as_array()) else {
            return 0;
        };
        let mut n = 0;
        for raw in keys {
            // One odd key must not spoil the set, so each is parsed on its own.
            let Ok(jwk) = serde_json::from_value::<Jwk>(raw.clone()) else {
                continue;
            };
            if raw
                .get("use")
                .and_then(|u| u.as_str())
                .is_some_and(|u| u != "sig")
            {
                continue;
            }
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            let Some(alg) = jwk_algorithm(&jwk) else {
                continue;
            };
            if let Ok(key) = DecodingKey::from_jwk(&jwk) {
                self.add_key(kid, alg, key);
                n += 1;
            }
        }
        n
    }

    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The whole check, synchronously (CPU only).
    pub fn verify_now(&self, token: &str) -> Result<Claims, VerifyError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
        let kid = header.kid.as_deref().ok_or(VerifyError::UnknownKid)?;
        let pinned = self.keys.get(kid).ok_or(VerifyError::UnknownKid)?;
        let data = jsonwebtoken::decode::<Claims>(token, &pinned.key, &pinned.validation)
            .map_err(|e| VerifyError::Rejected(e.to_string()))?;
        Ok(data.claims)
    }
}

/// The algorithm a JWK may be used with: its `alg`, else the one its key type implies.
fn jwk_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    let implied = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
        AlgorithmParameters::OctetKey(_) => return None,
    };
    match jwk.common.key_algorithm.map(|a| a.to_string()) {
        None => Some(implied),
        Some(a) => {
            let alg: Algorithm = a.parse().ok()?;
            // The declared algorithm must belong to the key's family.
            let same_family = matches!(
                (alg, implied),
                (
                    Algorithm::RS256
                        | Algorithm::RS384
                        | Algorithm::RS512
                        | Algorithm::PS256
                        | Algorithm::PS384
                        | Algorithm::PS512,
                    Algorithm::RS256
                ) | (Algorithm::ES256, Algorithm::ES256)
                    | (Algorithm::ES384, Algorithm::ES384)
                    | (Algorithm::EdDSA, Algorithm::EdDSA)
            );
            same_family.then_some(alg)
        }
    }
}

impl JwtVerifier for KeySetVerifier {
    fn verify<'a>(&'a self, token: &'a str) -> VerifyFuture<'a> {
        let r = self.verify_now(token);
        Box::pin(std::future::ready(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn jwks_keys_are_pinned_and_filtered() {
        let mut set = KeySetVerifier::new("iss", None);
        let n = set.add_jwks(&json!({"keys": [
            // Usable: EC P-256 with kid.
            {"kty": "EC", "crv": "P-256", "kid": "ec",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            // Symmetric keys never come from a JWKS.
            {"kty": "oct", "kid": "hs", "k": "c2VjcmV0"},
            // No kid.
            {"kty": "EC", "crv": "P-256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            // Encryption key.
            {"kty": "EC", "crv": "P-256", "kid": "enc", "use": "enc",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            // Declared algorithm from another family.
            {"kty": "EC", "crv": "P-256", "kid": "liar", "alg": "HS256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            "not even an object"
        ]}));
        assert_eq!(n, 1);
        assert!(set.has_kid("ec"));
        assert!(!set.has_kid("hs") && !set.has_kid("enc") && !set.has_kid("liar"));
    }

    #[test]
    fn malformed_and_unknown_kid() {
        let set = KeySetVerifier::new("iss", None);
        assert_eq!(
            set.verify_now("nonsense").err(),
            Some(VerifyError::Malformed)
        );
        // {"alg":"none"} is not an algorithm jsonwebtoken knows: malformed, never accepted.
        assert_eq!(
            set.verify_now("eyJhbGciOiJub25lIn0.e30.").err(),
            Some(VerifyError::Malformed)
        );
        // {"alg":"RS256","kid":"x"}
        let t = "eyJhbGciOiJSUzI1NiIsImtpZCI6IngifQ.e30.c2ln";
        assert_eq!(set.verify_now(t).err(), Some(VerifyError::UnknownKid));
    }
}
