//! Client authentication for the token, revoke and introspect endpoints.
//!
//! Confidential clients prove themselves with their secret (HTTP Basic or body), or with
//! the TLS client certificate of the connection (RFC 8705 §2: `tls_client_auth`, a
//! certificate from `tls.client_ca` with the registered subject; or
//! `self_signed_tls_client_auth`, the registered certificate), public clients are named
//! by `client_id` alone. A dialect's implied client (`client: web`) is
//! used when the request names none; when the operator names an implied client that is
//! not in the store, it acts as a public client limited to the password and
//! refresh_token grants, since the operator declared that endpoint client-less.

use chrono::Utc;

use super::error::OAuthError;
use super::request::ClientCredentials;
use super::TokenService;
use crate::audit::{self, Outcome};
use crate::config::dialect::{Dialect, GrantType};
use crate::crypto::{constant_time_eq, sha256_hex, PasswordError};
use crate::http::ClientCert;
use crate::store::Client;

impl TokenService {
    /// Reads a revocation or introspection request (RFC 7009 / RFC 7662: form
    /// parameters, default dialect) and authenticates its client. Also says whether the
    /// client authenticated with HTTP Basic, for the shape of a later `invalid_client`.
    pub(super) async fn client_request(
        &self,
        req: http::Request<hyper::body::Incoming>,
        cert: Option<&ClientCert>,
    ) -> Result<(super::request::Params, Client, bool), OAuthError> {
        let (parts, body) = req.into_parts();
        let params = super::request::read_params(&parts.headers, body).await?;
        let creds = super::request::client_credentials(&parts.headers, &params)?;
        let client = self
            .authenticate_client(&creds, &Dialect::default(), cert)
            .await?;
        Ok((params, client, creds.via_basic))
    }

    /// The client making the request. `InvalidClient` for an unknown client, a wrong or
    /// missing secret, or a secret offered for a public client.
    pub(super) async fn authenticate_client(
        &self,
        creds: &ClientCredentials,
        dialect: &Dialect,
        cert: Option<&ClientCert>,
    ) -> Result<Client, OAuthError> {
        let named = creds.id.as_deref();
        let refused = |reason: &'static str, id: Option<&str>| {
            audit::event("client_auth", Outcome::Failure)
                .reason(reason)
                .client_opt(id)
                .emit();
            OAuthError::InvalidClient {
                basic: creds.via_basic,
            }
        };
        let Some(id) = named.or(dialect.implied_client.as_deref()) else {
            return Err(refused("no_client", None));
        };
        let client = match self.store.client_by_id(id).await? {
            Some(c) => c,
            None if dialect.implied_client.as_deref() == Some(id) && creds.secret.is_none() => {
                Client {
                    id: id.to_string(),
                    secret_hash: None,
                    grants: vec![
                        GrantType::Password.as_str().into(),
                        GrantType::RefreshToken.as_str().into(),
                    ],
                    scopes: Vec::new(),
                    created_at: Utc::now(),
                    ..Default::default()
                }
            }
            None => return Err(refused("unknown_client", Some(id))),
        };
        let offered = creds
            .secret
            .as_deref()
            .map(String::as_str)
            .filter(|s| !s.is_empty());
        if let Some(tls) = &client.tls_auth {
            // The certificate is the credential: a secret beside it is a confused request.
            return match (cert, offered) {
                (Some(c), None) if tls.accepts(c) => Ok(client),
                (None, _) => Err(refused("missing_certificate", Some(id))),
                _ => Err(refused("wrong_certificate", Some(id))),
            };
        }
        match (&client.secret_hash, offered) {
            (Some(stored), Some(given)) => {
                if self.secret_matches(stored, given).await? {
                    Ok(client)
                } else {
                    Err(refused("bad_secret", Some(id)))
                }
            }
            (Some(_), None) => Err(refused("missing_secret", Some(id))),
            (None, None) => Ok(client),
            // A secret for a public client means a confused or forged request: refuse.
            (None, Some(_)) => Err(refused("secret_for_public_client", Some(id))),
        }
    }

    /// Client secrets are stored as a password hash (argon2/bcrypt PHC string) or as a
    /// SHA-256 hex digest; both are compared without leaking where they differ.
    async fn secret_matches(&self, stored: &str, given: &str) -> Result<bool, OAuthError> {
        if stored.starts_with('$') {
            match self.hasher.verify(given, stored).await {
                Ok(v) => Ok(v.is_match()),
                Err(PasswordError::Busy) => {
                    Err(OAuthError::Unavailable("password hashing busy".into()))
                }
                Err(e) => Err(OAuthError::Server(e.to_string())),
            }
        } else {
            Ok(constant_time_eq(
                sha256_hex(given).as_bytes(),
                stored.to_ascii_lowercase().as_bytes(),
            ))
        }
    }
}

pub(super) fn allows(client: &Client, grant: GrantType) -> bool {
    client.grants.iter().any(|g| g == grant.as_str())
}
