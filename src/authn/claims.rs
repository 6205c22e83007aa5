//! The claims a validated token carries, and how they become an [`Identity`].
//!
//! Tokens come in several dialects (self-issued JWTs, foreign JWTs, RFC 7662
//! introspection answers, own opaque tokens), so the reader is lenient about shapes that
//! mean the same thing (`scope` as a string or list, `scp`, a numeric `sub`) and strict
//! about nothing here: signature, `exp`, `iss` and `aud` are checked before claims are
//! read.

use serde::Deserialize;
use serde_json::Value;

use super::Identity;
pub use crate::clock::now_unix;

/// The registered and Tollgate-specific claims of an access token.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Claims {
    #[serde(default, deserialize_with = "string_or_number")]
    pub sub: Option<String>,
    #[serde(default)]
    pub exp: Option<u64>,
    /// Read only so that an `iat`/`nbf` of the wrong JSON type fails to parse (the
    /// verifier checks `nbf`'s value); a number is all they may be.
    #[serde(default)]
    pub iat: Option<u64>,
    #[serde(default)]
    pub nbf: Option<u64>,
    #[serde(default)]
    pub jti: Option<String>,
    #[serde(default)]
    pub iss: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub scope: Option<Value>,
    #[serde(default)]
    pub scp: Option<Value>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub azp: Option<String>,
    #[serde(default)]
    pub alias: Option<String>,
    #[serde(default)]
    pub useralias: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    /// A string or a list of strings.
    #[serde(default)]
    pub aud: Option<Value>,
    /// The confirmation of a sender-constrained token (`jkt`, `x5t#S256`).
    #[serde(default)]
    pub cnf: Option<Value>,
}

fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

/// Scopes from a space-separated string or a list of strings.
pub fn scopes_of(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => s.split_ascii_whitespace().map(str::to_owned).collect(),
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

impl Claims {
    pub fn scopes(&self) -> Vec<String> {
        self.scope
            .as_ref()
            .or(self.scp.as_ref())
            .map(scopes_of)
            .unwrap_or_default()
    }

    /// The identity these claims describe. A token without a subject names its client
    /// (client_credentials); one with neither is refused by the caller.
    pub fn into_identity(self) -> Option<Identity> {
        let scopes = self.scopes();
        let audiences = self.aud.as_ref().map(scopes_of).unwrap_or_default();
        let cnf = self.cnf.as_ref().and_then(super::Confirmation::from_claim);
        let client_id = self.client_id.or(self.azp);
        let user_id = self
            .sub
            .or_else(|| self.username.clone())
            .or_else(|| client_id.clone())?;
        Some(Identity {
            user_id,
            email: self.email,
            role: self.role,
            scopes,
            client_id,
            alias: self.alias.or(self.useralias),
            expires_at: self.exp,
            token_id: self.jti,
            signed_jwt: None,
            self_issued: false,
            header_values: Default::default(),
            audiences,
            cnf,
        })
    }
}

/// Cache key for a token: SHA-256 over the token and a context (the introspection
/// endpoint), so the raw token is never held as a key.
pub fn cache_key(token: &str, context: &str) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(token.as_bytes());
    if !context.is_empty() {
        h.update([0u8]);
        h.update(context.as_bytes());
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialect_shapes() {
        let c: Claims = serde_json::from_value(serde_json::json!({
            "sub": 157, "scope": "read write", "useralias": "bob", "jti": "j1", "exp": 5
        }))
        .unwrap();
        let id = c.into_identity().unwrap();
        assert_eq!(id.user_id, "157");
        assert_eq!(id.scopes, vec!["read", "write"]);
        assert_eq!(id.alias.as_deref(), Some("bob"));
        let c: Claims =
            serde_json::from_value(serde_json::json!({"client_id": "svc", "scp": ["a"]})).unwrap();
        let id = c.into_identity().unwrap();
        assert_eq!(id.user_id, "svc");
        assert_eq!(id.scopes, vec!["a"]);
        assert!(Claims::default().into_identity().is_none());
    }

    #[test]
    fn cache_key_separates_context() {
        assert_ne!(cache_key("t", "a"), cache_key("t", "b"));
        assert_eq!(cache_key("t", ""), {
            use sha2::Digest;
            let d: [u8; 32] = sha2::Sha256::digest(b"t").into();
            d
        });
    }
}
