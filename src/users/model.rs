//! The users API's wire types and input validation, shaped after the legacy API
//! (`{id,email,created_at,updated_at,role}`, Rails-style `{"errors":{field:[msg]}}`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::crypto::password::MAX_PASSWORD_BYTES;
use crate::crypto::Secret;
use crate::store::{User, UserId};

/// Shortest password accepted at registration, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest email address (RFC 5321 path limit).
const MAX_EMAIL_LEN: usize = 254;

/// A user as the API shows it: never the password hash.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct UserView {
    pub id: UserId,
    pub email: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub role: String,
}

/// `2018-01-24T09:50:01.704Z`: UTC, milliseconds, `Z`.
pub fn timestamp(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        UserView {
            id: u.id,
            email: u.email.clone(),
            username: u.username.clone(),
            created_at: timestamp(&u.created_at),
            updated_at: timestamp(&u.updated_at),
            role: u.role.clone(),
        }
    }
}

/// `POST /api/v1/users` body: `{"user": {"email": …, "password": …}}`.
#[derive(Debug, Deserialize, Default)]
pub struct CreateUserRequest {
    #[serde(default)]
    pub user: Option<NewUserFields>,
}

#[derive(Deserialize, Default)]
pub struct NewUserFields {
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
}

impl std::fmt::Debug for NewUserFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUserFields")
            .field("email", &self.email)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Field → messages, as in `{"errors": {"email": ["is invalid"]}}`.
pub type FieldErrors = BTreeMap<&'static str, Vec<String>>;

/// Validated registration input.
pub struct ValidUser {
    pub email: String,
    pub username: Option<String>,
    pub password: Secret,
}

pub fn validate(fields: Option<NewUserFields>) -> Result<ValidUser, FieldErrors> {
    let fields = fields.unwrap_or_default();
    let mut errors = FieldErrors::new();
    let email = fields
        .email
        .map(|e| e.trim().to_string())
        .unwrap_or_default();
    if email.is_empty() {
        errors
            .entry("email")
            .or_default()
            .push("can't be blank".into());
    } else if !is_plausible_email(&email) {
        errors.entry("email").or_default().push("is invalid".into());
    }
    let username = fields
        .username
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty());
    if let Some(u) = &username {
        if !is_valid_username(u) {
            errors
                .entry("username")
                .or_default()
                .push("is invalid".into());
        }
    }
    let password = fields.password.unwrap_or_default();
    if password.is_empty() {
        errors
            .entry("password")
            .or_default()
            .push("can't be blank".into());
    } else if password.expose().chars().count() < MIN_PASSWORD_CHARS {
        errors.entry("password").or_default().push(format!(
            "is too short (minimum is {MIN_PASSWORD_CHARS} characters)"
        ));
    } else if password.len() > MAX_PASSWORD_BYTES {
        errors.entry("password").or_default().push(format!(
            "is too long (maximum is {MAX_PASSWORD_BYTES} bytes)"
        ));
    }
    if errors.is_empty() {
        Ok(ValidUser {
            email,
            username,
            password,
        })
    } else {
        Err(errors)
    }
}

/// One `@`, a non-empty local part, a dotted domain, no spaces or control characters.
/// Deliverability is not ours to judge; this only refuses what cannot be an address.
pub fn is_plausible_email(e: &str) -> bool {
    if e.len() > MAX_EMAIL_LEN || e.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let Some((local, domain)) = e.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
}

/// At most 64 characters, no `@` (so it cannot pass for an email), no spaces.
pub fn is_valid_username(u: &str) -> bool {
    !u.is_empty()
        && u.len() <= 64
        && !u.contains('@')
        && !u.chars().any(|c| c.is_control() || c.is_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(email: &str, password: &str) -> Option<NewUserFields> {
        Some(NewUserFields {
            email: Some(email.into()),
            username: None,
            password: Some(Secret::new(password)),
        })
    }

    #[test]
    fn registration_input_is_checked_field_by_field() {
        assert!(validate(fields("user@example.com", "password")).is_ok());
        let e = validate(fields("not-an-email", "short")).err().unwrap();
        assert_eq!(e["email"], vec!["is invalid"]);
        assert_eq!(
            e["password"],
            vec!["is too short (minimum is 8 characters)"]
        );
        let e = validate(None).err().unwrap();
        assert_eq!(e["email"], vec!["can't be blank"]);
        assert!(
            validate(fields("a@b.c", "pässwörd")).is_ok(),
            "characters, not bytes"
        );
        assert!(validate(fields("a@@b.c", "password")).is_err());
        assert!(validate(fields("a@b", "password")).is_err());
    }

    #[test]
    fn timestamps_match_the_legacy_format() {
        let t = DateTime::parse_from_rfc3339("2018-01-24T09:50:01.704123Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(timestamp(&t), "2018-01-24T09:50:01.704Z");
    }
}
