//! Helpers for bearer-validation tests: a gateway whose authenticator the test can reach
//! (to revoke tokens), signing keys made by the test, and tokens minted with them,
//! including deliberately broken ones.

use std::sync::{Arc, OnceLock};

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tollgate::authn::AuthnParts;
use tollgate::config::raw::SigningAlg;
use tollgate::config::Config;
use tollgate::keys::KeySet;
use tollgate::revocation::RevocationList;

use super::{complete_yaml, TestGateway};

pub const ISSUER: &str = "https://tollgate.test";
pub const AUDIENCE: &str = "tollgate";

/// One RSA key pair per test binary (generation is the slow part).
pub fn rsa_pair() -> &'static (String, String) {
    static PAIR: OnceLock<(String, String)> = OnceLock::new();
    PAIR.get_or_init(|| {
        let k = tollgate::keys::generate(SigningAlg::RS256).unwrap();
        (k.private_pem.to_string(), k.public_pem.unwrap())
    })
}

/// A second, unrelated RSA key pair (for forged signatures).
pub fn other_rsa_pair() -> &'static (String, String) {
    static PAIR: OnceLock<(String, String)> = OnceLock::new();
    PAIR.get_or_init(|| {
        let k = tollgate::keys::generate(SigningAlg::RS256).unwrap();
        (k.private_pem.to_string(), k.public_pem.unwrap())
    })
}

/// The `tokens:` section for the test key written into `dir`.
pub fn tokens_yaml(dir: &std::path::Path) -> String {
    let key = dir.join("signing.pem");
    std::fs::write(&key, &rsa_pair().0).unwrap();
    format!(
        "tokens:\n  issuer: {ISSUER}\n  audience: {AUDIENCE}\n  signing:\n    alg: RS256\n    key_file: {}\n",
        key.display()
    )
}

/// What a test holds on to besides the gateway.
pub struct Kit {
    pub keys: Arc<KeySet>,
    pub revocations: Arc<RevocationList>,
}

impl Kit {
    pub fn kid(&self) -> String {
        self.keys.kid().to_string()
    }

    /// A valid access token with `overrides` merged into the default claims (a `null`
    /// value removes the claim).
    pub fn token(&self, overrides: Value) -> String {
        let header = self.header(Algorithm::RS256);
        sign(
            &header,
            &claims(overrides),
            &EncodingKey::from_rsa_pem(rsa_pair().0.as_bytes()).unwrap(),
        )
    }

    pub fn header(&self, alg: Algorithm) -> Header {
        let mut h = Header::new(alg);
        h.kid = Some(self.kid());
        h.typ = Some("at+jwt".into());
        h
    }

    pub fn revoke(&self, jti: &str) {
        self.revocations.apply(tollgate::revocation::Revoked::Jti {
            jti: jti.into(),
            expires_at: now() + 3600,
        });
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn claims(overrides: Value) -> Value {
    let mut c = json!({
        "sub": "157",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "exp": now() + 300,
        "iat": now(),
        "jti": uuid::Uuid::new_v4().to_string(),
        "scope": "orders:read profile",
        "email": "ann@example.com",
        "role": "default",
        "alias": "ann-at-desk",
    });
    if let Value::Object(o) = overrides {
        for (k, v) in o {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(&k);
            } else {
                c[k] = v;
            }
        }
    }
    c
}

pub fn sign(header: &Header, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(header, claims, key).unwrap()
}

/// base64url without padding.
/// The public JWK of [`other_rsa_pair`] under `kid`: the key a foreign issuer serves.
pub fn other_rsa_jwk(kid: &str) -> Value {
    let (_, der) = pem_rfc7468::decode_vec(other_rsa_pair().1.as_bytes()).unwrap();
    let public = aws_lc_rs::rsa::PublicKey::from_der(&der).unwrap();
    serde_json::json!({
        "kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
        "n": b64(public.modulus().big_endian_without_leading_zero()),
        "e": b64(public.exponent().big_endian_without_leading_zero()),
    })
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Starts a gateway through `app::wiring::proxy_with` (the proxy and forward-auth, no token
/// service), with the revocation list and the key set in the test's hands. `yaml` gets the test `tokens:` section prepended.
pub async fn spawn(yaml: &str) -> (TestGateway, Kit) {
    spawn_with(yaml, AuthnParts::default()).await
}

/// Like [`spawn`], with extra parts (a store, a signer…).
pub async fn spawn_with(yaml: &str, mut parts: AuthnParts) -> (TestGateway, Kit) {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("tollgate.yaml");
    let text = format!("{}{}", tokens_yaml(dir.path()), yaml);
    std::fs::write(&config_path, complete_yaml(&text, dir.path())).unwrap();
    let cfg = Config::load(&config_path).unwrap_or_else(|e| panic!("{e}"));
    let keys = Arc::new(KeySet::load(&cfg.tokens, &dir.path().join("keys")).unwrap());
    let revocations = RevocationList::new();
    let with_keys = AuthnParts::with_keys(keys.clone());
    parts.local_jwt = with_keys.local_jwt;
    if parts.signer.is_none() {
        parts.signer = with_keys.signer;
    }
    parts.revocations = Some(revocations.clone());
    let services = tollgate::app::wiring::proxy_with(&cfg, parts).unwrap();
    (
        super::start(cfg, services, dir, config_path).await,
        Kit { keys, revocations },
    )
}
