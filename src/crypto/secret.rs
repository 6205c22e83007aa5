//! A string that holds a secret (password, client secret, refresh token).
//!
//! Threat model: secrets leaking through logs, error messages or `{:?}` of a larger
//! struct, and lingering in freed memory. `Secret` prints as `[REDACTED]` in both
//! `Debug` and `Display`, is never serialized, and zeroes its buffer when dropped.
//! Reading the value takes an explicit `expose()`, which is easy to grep for.

use std::fmt;

use serde::{Deserialize, Deserializer};
use zeroize::{Zeroize, ZeroizeOnDrop};

#[derive(Clone, Default, Zeroize, ZeroizeOnDrop)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret in the clear. Keep the borrow short and never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Length in bytes (useful for policy checks without exposing the value).
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// Equality in constant time, so comparing a presented secret leaks nothing by timing.
impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        super::token::constant_time_eq(self.0.as_bytes(), other.0.as_bytes())
    }
}

impl Eq for Secret {}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// Request bodies and config files carry secrets as plain strings.
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_are_redacted() {
        let s = Secret::new("hunter22");
        assert_eq!(format!("{s:?}"), "Secret([REDACTED])");
        assert_eq!(format!("{s}"), "[REDACTED]");
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Login {
            user: String,
            password: Secret,
        }
        let l = Login {
            user: "a".into(),
            password: s.clone(),
        };
        assert!(!format!("{l:?}").contains("hunter22"));
        assert_eq!(s.expose(), "hunter22");
        assert_eq!(s.len(), 8);
    }

    #[test]
    fn equality_compares_content() {
        assert_eq!(Secret::new("abc"), Secret::from("abc"));
        assert_ne!(Secret::new("abc"), Secret::from("abd"));
        assert_ne!(Secret::new("abc"), Secret::from("abcd"));
    }

    #[test]
    fn zeroize_clears_the_value() {
        let mut s = Secret::new("hunter22");
        s.zeroize();
        assert!(s.is_empty());
    }

    #[test]
    fn deserializes_from_a_plain_string() {
        let s: Secret = serde_json::from_str("\"p@ss\"").unwrap();
        assert_eq!(s.expose(), "p@ss");
    }
}
