//! A DPoP client key: proofs as a client library makes them (RFC 9449 §4), with
//! whatever a hostile test needs to change.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{jwk::Jwk, Algorithm, EncodingKey};
use p256::pkcs8::EncodePrivateKey;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub struct DpopKey {
    enc: EncodingKey,
    pub jwk: Value,
}

impl DpopKey {
    pub fn new() -> DpopKey {
        let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let der = secret.to_pkcs8_der().unwrap();
        let enc = EncodingKey::from_ec_der(der.as_bytes());
        let jwk =
            serde_json::to_value(Jwk::from_encoding_key(&enc, Algorithm::ES256).unwrap()).unwrap();
        DpopKey { enc, jwk }
    }

    /// RFC 7638 thumbprint: what `cnf.jkt` must be.
    pub fn jkt(&self) -> String {
        let j = &self.jwk;
        let canon = format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            j["crv"].as_str().unwrap(),
            j["x"].as_str().unwrap(),
            j["y"].as_str().unwrap()
        );
        URL_SAFE_NO_PAD.encode(Sha256::digest(canon.as_bytes()))
    }

    /// A fresh proof for `method` `url`, bound to `token` when given.
    pub fn proof(&self, method: &str, url: &str, token: Option<&str>) -> String {
        let mut claims = json!({
            "jti": uuid::Uuid::new_v4().to_string(),
            "htm": method,
            "htu": url,
            "iat": chrono::Utc::now().timestamp(),
        });
        if let Some(t) = token {
            claims["ath"] = json!(URL_SAFE_NO_PAD.encode(Sha256::digest(t.as_bytes())));
        }
        self.sign(
            json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk}),
            claims,
        )
    }

    /// Signs any header and claims with this key.
    pub fn sign(&self, header: Value, claims: Value) -> String {
        let h = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap());
        let c = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
        let input = format!("{h}.{c}");
        let sig =
            jsonwebtoken::crypto::sign(input.as_bytes(), &self.enc, Algorithm::ES256).unwrap();
        format!("{input}.{sig}")
    }
}
