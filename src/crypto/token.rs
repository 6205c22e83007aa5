//! Random tokens, their SHA-256 fingerprints, and constant-time comparison.
//!
//! Threat model: guessable tokens (so every token carries 256 bits from the OS RNG),
//! stolen database rows (so only `sha256_hex` of refresh and opaque tokens is stored;
//! a hash of a 256-bit random value cannot be reversed or brute-forced), and timing
//! side channels when comparing secrets (so comparisons go through `subtle`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Bytes of entropy in every generated token.
pub const TOKEN_BYTES: usize = 32;

/// A fresh token: 32 random bytes from the OS, URL-safe base64 without padding (43 chars).
pub fn random_token() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    OsRng.fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    zeroize::Zeroize::zeroize(&mut bytes);
    token
}

/// SHA-256 of `data`, lower-case hex: the form in which tokens are stored and looked up.
pub fn sha256_hex(data: impl AsRef<[u8]>) -> String {
    hex::encode(Sha256::digest(data.as_ref()))
}

/// Compares two secrets in time independent of where they differ. Only the length may
/// leak, which is public for every secret we compare (fixed-size hashes and tokens).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_url_safe_and_distinct() {
        let a = random_token();
        let b = random_token();
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), TOKEN_BYTES);
    }

    #[test]
    fn sha256_hex_matches_known_vector() {
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(sha256_hex(b"abc"), sha256_hex("abc"));
    }

    #[test]
    fn constant_time_eq_compares_content_and_length() {
        assert!(constant_time_eq(b"same", b"same"));
        assert!(!constant_time_eq(b"same", b"sane"));
        assert!(!constant_time_eq(b"same", b"same-but-longer"));
        assert!(constant_time_eq(b"", b""));
    }
}
