//! Key material: parsing PEM files into signing and verification keys, generating new
//! ones, and describing public keys as JWKs with their RFC 7638 thumbprints.
//!
//! Everything here handles private keys, so nothing is ever logged or put in an error
//! message except file paths and algorithm names.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use rand::rngs::OsRng;
use rand::RngCore;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::KeyError;
use crate::config::raw::SigningAlg;

/// HS512 secrets shorter than this are refused: an HMAC key must be as strong as its hash.
pub const MIN_HMAC_SECRET_BYTES: usize = 32;

/// A key that verifies tokens; `encoding` is present for keys we can also sign with.
pub struct KeyMaterial {
    pub alg: SigningAlg,
    pub kid: String,
    pub encoding: Option<EncodingKey>,
    pub decoding: DecodingKey,
    /// The public JWK (without `kid`, `alg`, `use`); `None` for HMAC secrets, which are
    /// never published.
    pub public_jwk: Option<Value>,
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .field("can_sign", &self.encoding.is_some())
            .finish_non_exhaustive()
    }
}

pub fn jwt_alg(alg: SigningAlg) -> Algorithm {
    match alg {
        SigningAlg::RS256 => Algorithm::RS256,
        SigningAlg::ES256 => Algorithm::ES256,
        SigningAlg::EdDSA => Algorithm::EdDSA,
        SigningAlg::HS512 => Algorithm::HS512,
    }
}

pub fn alg_name(alg: SigningAlg) -> &'static str {
    match alg {
        SigningAlg::RS256 => "RS256",
        SigningAlg::ES256 => "ES256",
        SigningAlg::EdDSA => "EdDSA",
        SigningAlg::HS512 => "HS512",
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// RFC 7638: SHA-256 over the required members in lexicographic order, no whitespace.
/// `serde_json::Value` objects keep keys sorted, so serialising the map gives exactly that.
pub fn thumbprint(jwk: &Value) -> String {
    let required: &[&str] = match jwk["kty"].as_str() {
        Some("RSA") => &["e", "kty", "n"],
        Some("EC") => &["crv", "kty", "x", "y"],
        Some("OKP") => &["crv", "kty", "x"],
        _ => &["kty"],
    };
    let mut m = serde_json::Map::new();
    for k in required {
        m.insert((*k).to_string(), jwk[*k].clone());
    }
    let canonical = serde_json::to_string(&Value::Object(m)).expect("json serialises");
    b64(&Sha256::digest(canonical.as_bytes()))
}

/// Reads a key file. `expected` is the configured algorithm for the active key; previous
/// keys pass `None` and their algorithm is read from the file.
pub fn load_file(path: &Path, expected: Option<SigningAlg>) -> Result<KeyMaterial, KeyError> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| KeyError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?);
    let key = parse(&bytes, expected).map_err(|reason| KeyError::Parse {
        path: path.display().to_string(),
        reason,
    })?;
    if let Some(want) = expected {
        if key.alg != want {
            return Err(KeyError::Parse {
                path: path.display().to_string(),
                reason: format!(
                    "holds a {} key but tokens.signing.alg is {}",
                    alg_name(key.alg),
                    alg_name(want)
                ),
            });
        }
    }
    Ok(key)
}

/// Parses PEM (PKCS#8, PKCS#1, SEC1 or SubjectPublicKeyInfo) or, for HS512, a raw secret.
pub fn parse(bytes: &[u8], expected: Option<SigningAlg>) -> Result<KeyMaterial, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "is not a text file".to_string());
    let is_pem = text
        .as_ref()
        .map(|t| t.contains("-----BEGIN"))
        .unwrap_or(false);
    if !is_pem {
        if expected.is_some() && expected != Some(SigningAlg::HS512) {
            return Err("is not a PEM file".into());
        }
        return hmac_key(trim_ascii(bytes));
    }
    let pem = text.expect("checked above");
    if pem.contains("PUBLIC KEY-----") {
        return public_pem(pem);
    }
    if let Some(k) = rsa_private(pem) {
        return k;
    }
    if let Some(k) = ec_private(pem) {
        return k;
    }
    if let Some(k) = ed_private(pem) {
        return k;
    }
    Err("holds no RSA, P-256 or Ed25519 private key".into())
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map(|e| e + 1)
        .unwrap_or(start);
    &b[start..end]
}

fn hmac_key(secret: &[u8]) -> Result<KeyMaterial, String> {
    if secret.len() < MIN_HMAC_SECRET_BYTES {
        return Err(format!(
            "HS512 secret is shorter than {MIN_HMAC_SECRET_BYTES} bytes"
        ));
    }
    // The kid must not reveal the secret: a domain-separated hash of a ≥256-bit secret.
    let mut h = Sha256::new();
    h.update(b"tollgate hs512 kid\0");
    h.update(secret);
    let kid = b64(&h.finalize()[..16]);
    Ok(KeyMaterial {
        alg: SigningAlg::HS512,
        kid,
        encoding: Some(EncodingKey::from_secret(secret)),
        decoding: DecodingKey::from_secret(secret),
        public_jwk: None,
    })
}

fn rsa_jwk(n: &[u8], e: &[u8]) -> Value {
    json!({"kty": "RSA", "n": b64(n), "e": b64(e)})
}

fn finish(
    alg: SigningAlg,
    jwk: Value,
    encoding: Option<EncodingKey>,
) -> Result<KeyMaterial, String> {
    let decoding =
        DecodingKey::from_jwk(&serde_json::from_value(jwk.clone()).map_err(|e| e.to_string())?)
            .map_err(|e| format!("unusable public key: {e}"))?;
    Ok(KeyMaterial {
        alg,
        kid: thumbprint(&jwk),
        encoding,
        decoding,
        public_jwk: Some(jwk),
    })
}

/// An RSA private key (PKCS#8 or PKCS#1 PEM). RSA is done by aws-lc (constant-time
/// signing; the `rsa` crate's is not, RUSTSEC-2023-0071): the key is parsed and checked
/// by it here, and jsonwebtoken's `aws_lc_rs` backend signs with it.
fn rsa_private(pem: &str) -> Option<Result<KeyMaterial, String>> {
    use aws_lc_rs::rsa::KeyPair;
    use aws_lc_rs::signature::KeyPair as _;
    let (label, der) = pem_rfc7468::decode_vec(pem.as_bytes()).ok()?;
    let der = Zeroizing::new(der);
    let parsed = match label {
        "RSA PRIVATE KEY" => KeyPair::from_der(&der),
        "PRIVATE KEY" if pkcs8_is_rsa(&der) => KeyPair::from_pkcs8(&der),
        _ => return None,
    };
    Some((|| {
        // aws-lc takes 2048 to 8192 bits; anything else, or a key whose parts do not
        // agree, is refused by it.
        let key = parsed.map_err(|_| {
            "is not a usable RSA key (RSA keys must be 2048 to 8192 bits)".to_string()
        })?;
        let encoding = EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| e.to_string())?;
        let public = key.public_key();
        let jwk = rsa_jwk(
            public.modulus().big_endian_without_leading_zero(),
            public.exponent().big_endian_without_leading_zero(),
        );
        finish(SigningAlg::RS256, jwk, Some(encoding))
    })())
}

/// Whether a PKCS#8 document holds an RSA key (algorithm rsaEncryption), so that an RSA
/// key aws-lc refuses is reported as such rather than as "no key".
fn pkcs8_is_rsa(der: &[u8]) -> bool {
    const RSA_ENCRYPTION: p256::pkcs8::ObjectIdentifier =
        p256::pkcs8::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
    p256::pkcs8::PrivateKeyInfo::try_from(der).is_ok_and(|k| k.algorithm.oid == RSA_ENCRYPTION)
}

fn ec_jwk(pk: &p256::PublicKey) -> Value {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let p = pk.to_encoded_point(false);
    json!({
        "kty": "EC",
        "crv": "P-256",
        "x": b64(p.x().expect("uncompressed point")),
        "y": b64(p.y().expect("uncompressed point")),
    })
}

fn ec_private(pem: &str) -> Option<Result<KeyMaterial, String>> {
    use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
    let key = p256::SecretKey::from_pkcs8_pem(pem)
        .or_else(|_| p256::SecretKey::from_sec1_pem(pem))
        .ok()?;
    Some((|| {
        let der = key.to_pkcs8_der().map_err(|e| e.to_string())?;
        finish(
            SigningAlg::ES256,
            ec_jwk(&key.public_key()),
            Some(EncodingKey::from_ec_der(der.as_bytes())),
        )
    })())
}

fn ed_jwk(pk: &ed25519_dalek::VerifyingKey) -> Value {
    json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pk.as_bytes())})
}

fn ed_private(pem: &str) -> Option<Result<KeyMaterial, String>> {
    use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
    let key = ed25519_dalek::SigningKey::from_pkcs8_pem(pem).ok()?;
    Some((|| {
        let der = key.to_pkcs8_der().map_err(|e| e.to_string())?;
        finish(
            SigningAlg::EdDSA,
            ed_jwk(&key.verifying_key()),
            Some(EncodingKey::from_ed_der(der.as_bytes())),
        )
    })())
}

fn public_pem(pem: &str) -> Result<KeyMaterial, String> {
    use p256::pkcs8::DecodePublicKey;
    if let Some(k) = pem_rfc7468::decode_vec(pem.as_bytes())
        .ok()
        .filter(|(label, _)| matches!(*label, "PUBLIC KEY" | "RSA PUBLIC KEY"))
        .and_then(|(_, der)| aws_lc_rs::rsa::PublicKey::from_der(&der).ok())
    {
        return finish(
            SigningAlg::RS256,
            rsa_jwk(
                k.modulus().big_endian_without_leading_zero(),
                k.exponent().big_endian_without_leading_zero(),
            ),
            None,
        );
    }
    if let Ok(k) = p256::PublicKey::from_public_key_pem(pem) {
        return finish(SigningAlg::ES256, ec_jwk(&k), None);
    }
    if let Ok(k) = ed25519_dalek::VerifyingKey::from_public_key_pem(pem) {
        return finish(SigningAlg::EdDSA, ed_jwk(&k), None);
    }
    Err("holds no RSA, P-256 or Ed25519 public key".into())
}

/// A freshly generated key: the private key as PKCS#8 PEM (or the HS512 secret), and the
/// public key as SubjectPublicKeyInfo PEM (none for HS512).
pub struct GeneratedKey {
    pub private_pem: Zeroizing<String>,
    pub public_pem: Option<String>,
}

pub fn generate(alg: SigningAlg) -> Result<GeneratedKey, KeyError> {
    let gen_err = |e: &dyn std::fmt::Display| KeyError::Generate(e.to_string());
    match alg {
        SigningAlg::RS256 => {
            use aws_lc_rs::encoding::AsDer;
            use aws_lc_rs::signature::KeyPair as _;
            use pem_rfc7468::LineEnding;
            let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(|e| gen_err(&e))?;
            let private_der = key.as_der().map_err(|e| gen_err(&e))?;
            let public_der = key.public_key().as_der().map_err(|e| gen_err(&e))?;
            let pem = |label, der: &[u8]| {
                pem_rfc7468::encode_string(label, LineEnding::LF, der).map_err(|e| gen_err(&e))
            };
            Ok(GeneratedKey {
                private_pem: Zeroizing::new(pem("PRIVATE KEY", private_der.as_ref())?),
                public_pem: Some(pem("PUBLIC KEY", public_der.as_ref())?),
            })
        }
        SigningAlg::ES256 => {
            use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
            let key = p256::SecretKey::random(&mut OsRng);
            let private_pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| gen_err(&e))?;
            let public_pem = key
                .public_key()
                .to_public_key_pem(LineEnding::LF)
                .map_err(|e| gen_err(&e))?;
            Ok(GeneratedKey {
                private_pem: Zeroizing::new(private_pem.to_string()),
                public_pem: Some(public_pem),
            })
        }
        SigningAlg::EdDSA => {
            use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
            use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
            let key = ed25519_dalek::SigningKey::generate(&mut OsRng);
            let private_pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| gen_err(&e))?;
            let public_pem = key
                .verifying_key()
                .to_public_key_pem(LineEnding::LF)
                .map_err(|e| gen_err(&e))?;
            Ok(GeneratedKey {
                private_pem: Zeroizing::new(private_pem.to_string()),
                public_pem: Some(public_pem),
            })
        }
        SigningAlg::HS512 => {
            let mut secret = Zeroizing::new([0u8; 64]);
            OsRng.fill_bytes(&mut secret[..]);
            Ok(GeneratedKey {
                private_pem: Zeroizing::new(format!("{}\n", hex::encode(&secret[..]))),
                public_pem: None,
            })
        }
    }
}

/// Writes a file readable by its owner only, refusing to replace an existing one.
pub fn write_private(path: &Path, contents: &str) -> Result<(), KeyError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |e: std::io::Error| KeyError::Write {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    f.write_all(contents.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)
}
