//! Signing keys for the access tokens Tollgate issues, their rotation, and the JWKS.
//!
//! Threat model: a forged or altered token must never verify. So the algorithm is never
//! taken from the token: the `kid` picks one of our keys and that key's algorithm is the
//! only one accepted (no `none`, no HS/RS confusion where a public RSA key is used as an
//! HMAC secret); an unknown `kid` is refused; `exp`, `iss` and `aud` are required with a
//! small leeway; the header `typ` must say access token (`at+jwt`), so no other JWT we
//! might sign passes as one. HS512 secrets never appear in the JWKS, and the `kid` of an
//! HMAC key is a one-way hash of it. Private key material is never logged.

mod material;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jsonwebtoken::{decode, decode_header, encode, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub use material::{alg_name, generate, thumbprint, write_private, GeneratedKey, KeyMaterial};
use material::{jwt_alg, load_file};

use crate::config::raw::{SigningAlg, Tokens};

/// The JOSE `typ` of every access token we sign (RFC 9068).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// Clock skew tolerated on `exp`/`nbf`, in seconds: one figure for self-issued and
/// foreign JWTs (`proxy/authn/verifier.rs` uses it too).
pub const LEEWAY_SECS: u64 = 30;

/// Tokens longer than this are refused before any parsing.
const MAX_TOKEN_LEN: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("key file {path} {reason}")]
    Parse { path: String, reason: String },
    #[error("cannot write key file {path}: {reason}")]
    Write { path: String, reason: String },
    #[error("key generation failed: {0}")]
    Generate(String),
    #[error("cannot sign token: {0}")]
    Sign(String),
    /// Any other reason a presented token does not verify. The reason is for logs, not
    /// clients.
    #[error("token rejected: {0}")]
    Rejected(&'static str),
    /// The header names no key of ours (or no `kid` at all): a caller with other key sets
    /// may try those.
    #[error("token rejected: no key with this kid")]
    UnknownKid,
    /// The header does not parse.
    #[error("token rejected: malformed header")]
    MalformedHeader,
}

/// The claims of an access token Tollgate issues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user id, or the client id for client_credentials tokens.
    pub sub: String,
    pub iss: String,
    pub aud: Audience,
    pub exp: i64,
    pub iat: i64,
    /// Never issued; typed so that a `nbf` of the wrong JSON type fails to parse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub jti: String,
    /// Space-separated scopes.
    #[serde(default)]
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// signInWithPassword `useralias`: who acts under a shared account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// The key or certificate a sender-constrained token is bound to (RFC 9449 `jkt`,
    /// RFC 8705 `x5t#S256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Value>,
}

/// `aud`: one string (every token without RFC 8707 resources, byte for byte as before),
/// or a list when a token was issued for several resources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn values(&self) -> Vec<String> {
        match self {
            Audience::One(a) => vec![a.clone()],
            Audience::Many(v) => v.clone(),
        }
    }

    pub fn contains(&self, want: &str) -> bool {
        match self {
            Audience::One(a) => a == want,
            Audience::Many(v) => v.iter().any(|a| a == want),
        }
    }

    /// One value as a string, several as a list.
    pub fn of(mut values: Vec<String>) -> Audience {
        if values.len() == 1 {
            Audience::One(values.remove(0))
        } else {
            Audience::Many(values)
        }
    }
}

impl From<String> for Audience {
    fn from(a: String) -> Audience {
        Audience::One(a)
    }
}

impl From<&str> for Audience {
    fn from(a: &str) -> Audience {
        Audience::One(a.to_owned())
    }
}

/// The active signing key plus every key still accepted, indexed by `kid`.
pub struct KeySet {
    active: Arc<KeyMaterial>,
    by_kid: HashMap<String, Arc<KeyMaterial>>,
    issuer: String,
    audience: String,
    jwks: Value,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("active", &self.active.kid)
            .field("keys", &self.by_kid.len())
            .finish()
    }
}

/// Where generated keys live when `tokens.signing.key_file` is absent: next to the SQLite
/// database (`data/keys/` for the default `sqlite://data/tollgate.db`), else `data/keys/`.
pub fn default_key_dir(store_url: &str) -> PathBuf {
    let path = store_url
        .strip_prefix("sqlite://")
        .or_else(|| store_url.strip_prefix("sqlite:"))
        .map(|p| p.split('?').next().unwrap_or(p));
    match path.map(Path::new).and_then(Path::parent) {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join("keys"),
        Some(_) => PathBuf::from("keys"),
        None => PathBuf::from("data/keys"),
    }
}

impl KeySet {
    /// Loads the configured keys, or generates the local development key under `key_dir`
    /// on first start and reuses it afterwards.
    pub fn load(tokens: &Tokens, key_dir: &Path) -> Result<KeySet, KeyError> {
        let alg = tokens.signing.alg;
        let active = match &tokens.signing.key_file {
            Some(path) => load_file(path, Some(alg))?,
            None => load_or_generate(alg, key_dir)?,
        };
        if active.encoding.is_none() {
            return Err(KeyError::Parse {
                path: tokens
                    .signing
                    .key_file
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                reason: "holds a public key; the active signing key must be private".into(),
            });
        }
        let mut previous = Vec::new();
        for path in &tokens.signing.previous_key_files {
            previous.push(load_file(path, None)?);
        }
        Ok(Self::from_parts(
            active,
            previous,
            &tokens.issuer,
            &tokens.audience,
        ))
    }

    /// Builds a key set from parsed keys (used by `load` and tests).
    pub fn from_parts(
        active: KeyMaterial,
        previous: Vec<KeyMaterial>,
        issuer: &str,
        audience: &str,
    ) -> KeySet {
        let active = Arc::new(active);
        let mut by_kid = HashMap::new();
        let mut jwk_list = Vec::new();
        for k in std::iter::once(active.clone()).chain(previous.into_iter().map(Arc::new)) {
            if by_kid.contains_key(&k.kid) {
                continue;
            }
            if let Some(jwk) = &k.public_jwk {
                let mut jwk = jwk.clone();
                jwk["kid"] = json!(k.kid);
                jwk["alg"] = json!(alg_name(k.alg));
                jwk["use"] = json!("sig");
                jwk_list.push(jwk);
            }
            by_kid.insert(k.kid.clone(), k);
        }
        KeySet {
            active,
            by_kid,
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            jwks: json!({ "keys": jwk_list }),
        }
    }

    /// Parses key bytes (PEM or an HS512 secret); for tests and tools.
    pub fn parse_key(bytes: &[u8]) -> Result<KeyMaterial, String> {
        material::parse(bytes, None)
    }

    pub fn alg(&self) -> SigningAlg {
        self.active.alg
    }

    pub fn kid(&self) -> &str {
        &self.active.kid
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The public keys as a JWK Set (`/.well-known/jwks.json`).
    pub fn jwks(&self) -> &Value {
        &self.jwks
    }

    /// Signs access-token claims with the active key; the header carries its `kid`.
    pub fn sign(&self, claims: &AccessClaims) -> Result<String, KeyError> {
        let mut header = Header::new(jwt_alg(self.active.alg));
        header.kid = Some(self.active.kid.clone());
        header.typ = Some(ACCESS_TOKEN_TYP.into());
        let key = self
            .active
            .encoding
            .as_ref()
            .ok_or(KeyError::Sign("no private key".into()))?;
        encode(&header, claims, key).map_err(|e| KeyError::Sign(e.to_string()))
    }

    /// Signs any JSON claims (an ID token) with the active key, with header `typ`.
    pub fn sign_json(&self, claims: &Value, typ: &str) -> Result<String, KeyError> {
        let mut header = Header::new(jwt_alg(self.active.alg));
        header.kid = Some(self.active.kid.clone());
        header.typ = Some(typ.into());
        let key = self
            .active
            .encoding
            .as_ref()
            .ok_or(KeyError::Sign("no private key".into()))?;
        encode(&header, claims, key).map_err(|e| KeyError::Sign(e.to_string()))
    }

    /// The one verification entry point for access tokens we issued: algorithm pinned by
    /// the key the `kid` names, signature, `typ`, `exp` (required), `iss`, `aud` present
    /// and never the internal identity JWT's. Which audience a caller serves (the
    /// gateway's own, or a route's RFC 8707 resource) is checked by the caller
    /// (`authn::binding`): a token issued for a resource is a valid token of this
    /// issuer, just not one every route accepts.
    /// Revocation is not checked here; callers consult the revoked-`jti` set.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, KeyError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(KeyError::Rejected("token too long"));
        }
        let header = decode_header(token).map_err(|_| KeyError::MalformedHeader)?;
        let kid = header.kid.as_deref().ok_or(KeyError::UnknownKid)?;
        let key = self.by_kid.get(kid).ok_or(KeyError::UnknownKid)?;
        let alg = jwt_alg(key.alg);
        if header.alg != alg {
            return Err(KeyError::Rejected("algorithm does not match the key"));
        }
        if header.typ.as_deref() != Some(ACCESS_TOKEN_TYP) {
            return Err(KeyError::Rejected("not an access token"));
        }
        let mut v = Validation::new(alg);
        v.leeway = LEEWAY_SECS;
        v.validate_exp = true;
        // Tollgate never sets `nbf`, but a token that carries one is held to it.
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.set_issuer(&[&self.issuer]);
        v.validate_aud = false;
        let data = decode::<AccessClaims>(token, &key.decoding, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            KeyError::Rejected(match e.kind() {
                ErrorKind::ExpiredSignature => "expired",
                ErrorKind::InvalidSignature => "bad signature",
                ErrorKind::InvalidIssuer => "wrong issuer",
                ErrorKind::InvalidAudience => "wrong audience",
                ErrorKind::MissingRequiredClaim(_) => "missing claim",
                _ => "invalid token",
            })
        })?;
        if data
            .claims
            .aud
            .contains(crate::authn::signed::INTERNAL_AUDIENCE)
        {
            return Err(KeyError::Rejected("wrong audience"));
        }
        Ok(data.claims)
    }
}

fn load_or_generate(alg: SigningAlg, dir: &Path) -> Result<KeyMaterial, KeyError> {
    let file = dir.join(match alg {
        SigningAlg::HS512 => "signing-hs512.key".to_string(),
        a => format!("signing-{}.pem", alg_name(a).to_ascii_lowercase()),
    });
    if file.exists() {
        return load_file(&file, Some(alg));
    }
    std::fs::create_dir_all(dir).map_err(|e| KeyError::Write {
        path: dir.display().to_string(),
        reason: e.to_string(),
    })?;
    let generated = generate(alg)?;
    // Write under a unique name, then link it into place: the key file appears whole or
    // not at all, and when several processes start at once the first link wins and the
    // others load that key instead of each signing with their own.
    let tmp = dir.join(format!(".{}.tmp", uuid::Uuid::new_v4()));
    write_private(&tmp, &generated.private_pem)?;
    let linked = std::fs::hard_link(&tmp, &file);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => tracing::warn!(
            path = %file.display(),
            alg = alg_name(alg),
            "generated a signing key because tokens.signing.key_file is not set; this is for local use only, configure a key file in production"
        ),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(KeyError::Write {
                path: file.display().to_string(),
                reason: e.to_string(),
            })
        }
    }
    load_file(&file, Some(alg))
}

/// `tollgate keys generate`: writes `<kid>.pem` (private, mode 0600) and `<kid>.pub.pem`
/// into `out` and returns a JSON description (never the key itself).
pub fn generate_files(alg: SigningAlg, out: &Path) -> Result<Value, KeyError> {
    std::fs::create_dir_all(out).map_err(|e| KeyError::Write {
        path: out.display().to_string(),
        reason: e.to_string(),
    })?;
    let g = generate(alg)?;
    let key = material::parse(g.private_pem.as_bytes(), Some(alg)).map_err(KeyError::Generate)?;
    let private = out.join(format!("{}.pem", key.kid));
    write_private(&private, &g.private_pem)?;
    let mut desc = json!({
        "alg": alg_name(alg),
        "kid": key.kid,
        "key_file": private.display().to_string(),
    });
    if let Some(public) = &g.public_pem {
        let path = out.join(format!("{}.pub.pem", key.kid));
        std::fs::write(&path, public).map_err(|e| KeyError::Write {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        desc["public_key_file"] = json!(path.display().to_string());
    }
    Ok(desc)
}

/// `tollgate keys generate --alg ALG --out DIR`: prints what was written as JSON.
pub fn cli_generate(alg: &str, out: &Path) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let alg = match alg {
        "RS256" => SigningAlg::RS256,
        "ES256" => SigningAlg::ES256,
        "EdDSA" => SigningAlg::EdDSA,
        other => return Err(format!("--alg {other}: expected RS256, ES256 or EdDSA").into()),
    };
    let desc = generate_files(alg, out)?;
    println!("{}", serde_json::to_string_pretty(&desc)?);
    Ok(())
}

#[cfg(test)]
mod tests;
