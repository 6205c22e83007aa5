//! DPoP proofs (RFC 9449 §4.3): the checks on the `DPoP` header's JWT, at the token
//! endpoint (binding a new token to the key) and on every request that presents a
//! DPoP-bound token (proving possession of that key).
//!
//! A proof is accepted only when all of these hold: three parts; header `typ` is
//! `dpop+jwt`; `alg` is an asymmetric algorithm Tollgate verifies (never `none` or an
//! HMAC); header `jwk` is a public key (no private members) whose type matches `alg`,
//! and the signature verifies with it; `jti` is present; `htm` is the request's method
//! and `htu` its URI without query and fragment; `iat` is within the proof window either
//! way; `ath` is the hash of the access token presented with it (resource requests);
//! `nonce` is a current server nonce when nonces are required. Single use of `jti` is
//! the caller's (`replay.rs`): it needs the thumbprint and the window this returns.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{jwk::Jwk, Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The algorithms a proof may be signed with, as discovery lists them
/// (`dpop_signing_alg_values_supported`).
pub const ALGS: [&str; 6] = ["ES256", "ES384", "EdDSA", "PS256", "RS256", "PS384"];

/// The longest `jti` kept for replay checks; longer ones are refused rather than stored.
const MAX_JTI: usize = 256;

/// JWK members that only a private key has (RFC 7518 §6.2.2, §6.3.2; RFC 8037 `d`;
/// symmetric `k`): a proof carrying one is refused.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// What the request the proof came with looks like.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// `htm`: the request's method.
    pub method: &'a str,
    /// `htu`: the URI as the client used it (scheme, authority, path); a query or
    /// fragment in it is ignored, as in the proof.
    pub uri: &'a str,
    /// The access token sent with the proof (resource requests): `ath` must be its hash.
    pub access_token: Option<&'a str>,
    /// The nonce the proof must carry, when the server requires nonces.
    pub nonce: Option<&'a str>,
    /// `iat` must be within this of `now`, either way.
    pub window: Duration,
    /// UNIX seconds.
    pub now: i64,
}

/// A verified proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// RFC 7638 SHA-256 thumbprint of the proof key, base64url: the token's `cnf.jkt`.
    pub jkt: String,
    pub jti: String,
    pub iat: i64,
}

/// Why a proof is refused; the message goes in `error_description`, never the proof.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpopError {
    #[error("invalid DPoP proof: {0}")]
    Invalid(&'static str),
    /// The proof lacks the current server nonce (`use_dpop_nonce`).
    #[error("a DPoP nonce is required")]
    UseNonce,
}

impl DpopError {
    /// The OAuth error code (RFC 9449 §7.1, §8).
    pub fn code(&self) -> &'static str {
        match self {
            DpopError::Invalid(_) => "invalid_dpop_proof",
            DpopError::UseNonce => "use_dpop_nonce",
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    jti: Option<String>,
    htm: Option<String>,
    htu: Option<String>,
    iat: Option<i64>,
    ath: Option<String>,
    nonce: Option<String>,
}

/// Checks one proof against the request it came with.
pub fn verify(proof: &str, expect: &Expect<'_>) -> Result<Proof, DpopError> {
    use DpopError::Invalid;
    let header_part = proof
        .split('.')
        .next()
        .filter(|_| proof.split('.').count() == 3)
        .ok_or(Invalid("not a compact JWS"))?;
    let header: Map<String, Value> = URL_SAFE_NO_PAD
        .decode(header_part)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(Invalid("unreadable header"))?;
    if header.get("typ").and_then(Value::as_str) != Some("dpop+jwt") {
        return Err(Invalid("typ must be dpop+jwt"));
    }
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .filter(|a| ALGS.contains(a))
        .and_then(|a| a.parse::<Algorithm>().ok())
        .ok_or(Invalid("alg is not an accepted asymmetric algorithm"))?;
    let jwk = header
        .get("jwk")
        .and_then(Value::as_object)
        .ok_or(Invalid("no jwk in the header"))?;
    if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
        return Err(Invalid("the jwk holds private key material"));
    }
    let jkt = thumbprint(jwk).ok_or(Invalid("the jwk is not a public EC, RSA or OKP key"))?;
    let key: Jwk = serde_json::from_value(Value::Object(jwk.clone()))
        .map_err(|_| Invalid("the jwk is not a public EC, RSA or OKP key"))?;
    let key = DecodingKey::from_jwk(&key).map_err(|_| Invalid("the jwk is unusable"))?;
    let mut validation = Validation::new(alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<Claims>(proof, &key, &validation)
        .map_err(|_| Invalid("the signature does not verify with the jwk"))?
        .claims;

    let jti = claims
        .jti
        .filter(|j| !j.is_empty() && j.len() <= MAX_JTI)
        .ok_or(Invalid("jti is missing"))?;
    if claims.htm.as_deref() != Some(expect.method) {
        return Err(Invalid("htm is not the request's method"));
    }
    match claims.htu.as_deref() {
        Some(htu) if same_uri(htu, expect.uri) => {}
        _ => return Err(Invalid("htu is not the request's URI")),
    }
    let iat = claims.iat.ok_or(Invalid("iat is missing"))?;
    if (expect.now - iat).unsigned_abs() > expect.window.as_secs() {
        return Err(Invalid("iat is outside the accepted window"));
    }
    if let Some(token) = expect.access_token {
        let want = URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()));
        match claims.ath.as_deref() {
            Some(ath) if crate::crypto::constant_time_eq(ath.as_bytes(), want.as_bytes()) => {}
            _ => return Err(Invalid("ath is not the hash of the access token")),
        }
    }
    if let Some(nonce) = expect.nonce {
        if claims.nonce.as_deref() != Some(nonce) {
            return Err(DpopError::UseNonce);
        }
    }
    Ok(Proof { jkt, jti, iat })
}

/// The RFC 7638 SHA-256 thumbprint of a public JWK (base64url), from its required
/// members in lexicographic order; `None` for any other key type or a missing member.
pub fn thumbprint(jwk: &Map<String, Value>) -> Option<String> {
    let s = |k: &str| jwk.get(k).and_then(Value::as_str);
    let members: &[&str] = match s("kty")? {
        "EC" if matches!(s("crv")?, "P-256" | "P-384" | "P-521") => &["crv", "kty", "x", "y"],
        "RSA" => &["e", "kty", "n"],
        "OKP" if s("crv")? == "Ed25519" => &["crv", "kty", "x"],
        _ => return None,
    };
    // The members are listed sorted; written with no whitespace, as RFC 7638 §3 requires.
    let mut json = String::from("{");
    for (i, m) in members.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        json.push_str(&format!("\"{m}\":{}", serde_json::to_string(s(m)?).ok()?));
    }
    json.push('}');
    Some(URL_SAFE_NO_PAD.encode(Sha256::digest(json.as_bytes())))
}

/// `htu` against the request URI: scheme and host case-insensitively, a default port
/// equal to none, the path exactly; query and fragment ignored (RFC 9449 §4.3).
fn same_uri(htu: &str, uri: &str) -> bool {
    match (url::Url::parse(htu), url::Url::parse(uri)) {
        (Ok(a), Ok(b)) => {
            a.scheme() == b.scheme()
                && a.host_str() == b.host_str()
                && a.port_or_known_default() == b.port_or_known_default()
                && a.path() == b.path()
        }
        _ => false,
    }
}

/// The thumbprint of a certificate for `cnf["x5t#S256"]` (RFC 8705 §3.1), from the
/// SHA-256 of its DER encoding.
pub fn cert_thumbprint_of(sha256: &[u8; 32]) -> String {
    URL_SAFE_NO_PAD.encode(sha256)
}

#[cfg(test)]
mod tests;
