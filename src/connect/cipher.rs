//! Encryption at rest for provider tokens and PKCE verifiers.
//!
//! Threat model: someone who reads the database (a backup, a replica, an SQL injection
//! elsewhere) must not obtain working Facebook/Google/GitHub tokens for Tollgate's users,
//! nor finish a dialog in flight. Defences: AES-256-GCM with a random 96-bit nonce per
//! message (prepended to the ciphertext); associated data binds each ciphertext to its row
//! (provider and provider user id, or the state hash), so a ciphertext moved to another
//! row fails to decrypt. The key lives outside the database, in the environment variable
//! named by `connect.encryption_key_env`; without a valid key linking is refused, never
//! done in plaintext. The key is zeroed on drop and never printed.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use rand::RngCore;
use zeroize::Zeroizing;

const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CipherError {
    #[error("connect.encryption_key_env is not set, so provider linking is disabled")]
    NotConfigured,
    #[error("environment variable {0} (connect.encryption_key_env) is not set")]
    MissingKey(String),
    #[error("environment variable {0} (connect.encryption_key_env) must hold 32 bytes as base64 or 64 hex digits")]
    BadKey(String),
    #[error("ciphertext is malformed or was not made with this key for this row")]
    Decrypt,
}

/// AES-256-GCM under the connect key.
pub struct TokenCipher {
    aead: Aes256Gcm,
}

impl std::fmt::Debug for TokenCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCipher(..)")
    }
}

impl TokenCipher {
    /// Reads the key from the variable `env` names.
    pub fn from_env(env: Option<&str>) -> Result<TokenCipher, CipherError> {
        let env = env.ok_or(CipherError::NotConfigured)?;
        let text = Zeroizing::new(
            std::env::var(env).map_err(|_| CipherError::MissingKey(env.to_string()))?,
        );
        let key = decode_key(text.trim()).ok_or_else(|| CipherError::BadKey(env.to_string()))?;
        Ok(TokenCipher::new(&key))
    }

    pub fn new(key: &[u8; 32]) -> TokenCipher {
        TokenCipher {
            aead: Aes256Gcm::new(key.into()),
        }
    }

    /// `nonce || ciphertext+tag`, bound to `aad`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = self
            .aead
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("AES-GCM encryption of a bounded message cannot fail");
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, CipherError> {
        if sealed.len() < NONCE_LEN + 16 {
            return Err(CipherError::Decrypt);
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        self.aead
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
            .map(Zeroizing::new)
            .map_err(|_| CipherError::Decrypt)
    }

    /// [`seal`](Self::seal) as base64url text, for string columns.
    pub fn seal_text(&self, plaintext: &str, aad: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(self.seal(plaintext.as_bytes(), aad))
    }

    pub fn open_text(&self, sealed: &str, aad: &[u8]) -> Result<Zeroizing<String>, CipherError> {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sealed)
            .map_err(|_| CipherError::Decrypt)?;
        let plain = self.open(&raw, aad)?;
        String::from_utf8(plain.to_vec())
            .map(Zeroizing::new)
            .map_err(|_| CipherError::Decrypt)
    }
}

/// 64 hex digits, or base64 (standard or URL-safe, padded or not) of exactly 32 bytes.
fn decode_key(text: &str) -> Option<Zeroizing<[u8; 32]>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let bytes = Zeroizing::new(
        if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).ok()?
        } else {
            [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
                .iter()
                .find_map(|e| e.decode(text).ok())?
        },
    );
    let mut key = Zeroizing::new([0u8; 32]);
    if bytes.len() != 32 {
        return None;
    }
    key.copy_from_slice(&bytes);
    Some(key)
}
