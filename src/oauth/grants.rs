//! The grants: password (RFC 6749 §4.3), refresh_token with rotation and reuse
//! detection (§6, OAuth 2.0 Security BCP §4.14), and client_credentials (§4.4).

use std::net::IpAddr;

use chrono::{Duration as ChronoDuration, Utc};
use http::{Request, Response};
use hyper::body::Incoming;

use super::bind::Bind;
use super::clients::allows;
use super::error::OAuthError;
use super::issue::Grantee;
use super::request::{client_credentials, query_grant_type, read_params, Params};
use super::throttle::Refusal;
use super::TokenService;
use crate::audit::{self, Outcome};
use crate::config::dialect::{Dialect, GrantType};
use crate::config::Config;
use crate::crypto::{sha256_hex, PasswordError};
use crate::http::body::Body;
use crate::store::{Client, TokenKind, TokenRecord, User};

/// Longest `username` / `email_address` looked up.
const MAX_IDENTIFIER_LEN: usize = 320;
/// Longest `useralias` carried in a token.
const MAX_ALIAS_LEN: usize = 256;

const BAD_REFRESH: &str = "The refresh token is invalid, expired or revoked";

impl TokenService {
    /// One token-endpoint request, start to finish. `grant` is reported for metrics.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn token_request(
        &self,
        cfg: &Config,
        dialect: &Dialect,
        req: Request<Incoming>,
        client_ip: IpAddr,
        conn: &crate::http::ConnInfo,
        binding: Option<&crate::authn::binding::Binding>,
        grant_label: &mut &'static str,
    ) -> Result<Response<Body>, OAuthError> {
        let (parts, body) = req.into_parts();
        let query_grant = query_grant_type(parts.uri.query())?;
        let params = read_params(&parts.headers, body).await?;
        let grant_name = match (params.get("grant_type"), query_grant.as_deref()) {
            (Some(b), Some(q)) if b != q => {
                return Err(OAuthError::InvalidRequest(
                    "grant_type is given twice with different values",
                ))
            }
            (Some(b), _) => Some(b),
            (None, q) => q,
        };
        let grant = match grant_name {
            Some(g) => GrantType::parse(g).ok_or(OAuthError::UnsupportedGrantType)?,
            None => dialect
                .implied_grant
                .ok_or(OAuthError::InvalidRequest("grant_type is required"))?,
        };
        *grant_label = grant.as_str();
        let creds = client_credentials(&parts.headers, &params)?;
        let client = self
            .authenticate_client(&creds, dialect, conn.client_cert.as_deref())
            .await?;
        if !allows(&client, grant) {
            return Err(OAuthError::UnauthorizedClient);
        }
        // After client authentication: a proof is recorded as used only for a request
        // that could be answered.
        let bind = Bind::of(cfg, binding, &parts, conn, params.resources()).await?;
        let issued = match grant {
            GrantType::Password => {
                // Who still uses the legacy grant (RFC 9700 forbids it), by client and
                // endpoint: the migration's to-do list.
                metrics::counter!(
                    "tollgate_password_grants_total",
                    "client" => client.id.clone(),
                    "dialect" => dialect.name.clone()
                )
                .increment(1);
                self.password_grant(cfg, dialect, &client, &params, client_ip, &bind)
                    .await?
            }
            GrantType::AuthorizationCode => self.code_grant(cfg, &client, &params, &bind).await?,
            GrantType::RefreshToken => self.refresh_grant(cfg, &client, &params, &bind).await?,
            GrantType::ClientCredentials => {
                if !client.is_confidential() {
                    return Err(OAuthError::UnauthorizedClient);
                }
                let scope = resolve_scope(&client.scopes, params.get("scope"))?;
                let g = Grantee {
                    user: None,
                    client_id: &client.id,
                    scope,
                    alias: None,
                    nonce: None,
                    auth_time: None,
                    resource: bind.resources(None)?,
                    granted_resource: None,
                    cnf: bind.cnf.clone(),
                    bind_refresh: false,
                };
                self.issue(cfg, &g, None).await?
            }
        };
        Ok(issued.into_response(dialect, query_grant.is_some()))
    }

    async fn password_grant(
        &self,
        cfg: &Config,
        dialect: &Dialect,
        client: &Client,
        params: &Params,
        client_ip: IpAddr,
        bind: &Bind,
    ) -> Result<super::issue::Issued, OAuthError> {
        let (ident, by_email) = match (params.get("username"), params.get("email_address")) {
            (Some(u), None) => (u, false),
            (None, Some(e)) => (e, true),
            (Some(_), Some(_)) => {
                return Err(OAuthError::InvalidRequest(
                    "Give exactly one of username or email_address",
                ))
            }
            (None, None) => {
                return Err(OAuthError::InvalidRequest(
                    "username or email_address is required",
                ))
            }
        };
        let password = params
            .get("password")
            .ok_or(OAuthError::InvalidRequest("password is required"))?;
        if ident.len() > MAX_IDENTIFIER_LEN {
            return Err(OAuthError::InvalidRequest(
                "username or email_address is too long",
            ));
        }
        let alias = match params.get("useralias") {
            Some(a) if a.len() > MAX_ALIAS_LEN || a.chars().any(char::is_control) => {
                return Err(OAuthError::InvalidRequest(
                    "useralias is too long or holds control characters",
                ))
            }
            a => a.map(str::to_owned),
        };
        let scope = resolve_scope(&client.scopes, params.get("scope"))?;
        let user = self
            .check_password(client, ident, by_email, password, client_ip)
            .await?;
        let family =
            allows(client, GrantType::RefreshToken).then(|| uuid::Uuid::new_v4().to_string());
        let g = Grantee {
            user: Some(&user),
            client_id: &client.id,
            scope,
            alias,
            nonce: None,
            auth_time: None,
            resource: bind.resources(None)?,
            granted_resource: None,
            cnf: bind.cnf.clone(),
            bind_refresh: bind.binds_refresh(client),
        };
        let issued = self.issue(cfg, &g, family.as_deref()).await?;
        audit::event("sign_in", Outcome::Success)
            .user(user.id)
            .client(&client.id)
            .peer(client_ip)
            // The legacy endpoint it came through: who still sends passwords.
            .field("dialect", dialect.name.as_str())
            .emit();
        Ok(issued)
    }

    /// A username (or email) and password, checked the one way the password grant and
    /// the hosted login page share: throttled per account and per address before the
    /// store or the hasher is touched; an unknown user costs a dummy verification and
    /// gets the same answer as a wrong password; every failure audited and counted.
    pub(crate) async fn check_password(
        &self,
        client: &Client,
        ident: &str,
        by_email: bool,
        password: &str,
        client_ip: IpAddr,
    ) -> Result<User, OAuthError> {
        // Throttle before anything touches the store or the password hasher.
        match self.throttle.check(ident, client_ip).await {
            Ok(()) => {}
            Err(Refusal::Throttled(t)) => {
                audit::event("sign_in_throttled", Outcome::Failure)
                    .reason(t.label())
                    .client(&client.id)
                    .peer(client_ip)
                    .emit();
                metrics::counter!("tollgate_login_throttled_total", "limit" => t.label())
                    .increment(1);
                tracing::info!(limit = t.label(), "password attempt throttled");
                return Err(OAuthError::Throttled {
                    retry_after: t.retry_after_secs(),
                });
            }
            Err(Refusal::Unavailable(e)) => return Err(e.into()),
        }

        let user = self.find_user(ident, by_email).await?;
        let busy = |e: PasswordError| match e {
            PasswordError::Busy => OAuthError::Unavailable("password hashing busy".into()),
            other => OAuthError::Server(other.to_string()),
        };
        let user = match user {
            Some(u) => {
                let v = self
                    .hasher
                    .verify(password, &u.password_hash)
                    .await
                    .map_err(busy)?;
                if !v.is_match() {
                    return Err(sign_in_failed(client, client_ip, Some(u.id)));
                }
                if v.needs_rehash() {
                    self.rehash(&u, password).await;
                }
                u
            }
            None => {
                // Same cost as a wrong password, so timing does not reveal who exists.
                self.hasher.verify_dummy(password).await.map_err(busy)?;
                return Err(sign_in_failed(client, client_ip, None));
            }
        };
        Ok(user)
    }

    /// `email_address` looks up by email; `username` by username, then by email when it
    /// looks like one (the `?grant_type=password` dialect sends emails as `username`).
    async fn find_user(&self, ident: &str, by_email: bool) -> Result<Option<User>, OAuthError> {
        if by_email {
            return Ok(self.store.user_by_email(ident).await?);
        }
        if let Some(u) = self.store.user_by_username(ident).await? {
            return Ok(Some(u));
        }
        if ident.contains('@') {
            return Ok(self.store.user_by_email(ident).await?);
        }
        Ok(None)
    }

    /// Upgrades an imported bcrypt (or weaker argon2) hash after a successful login. A
    /// failure here must not fail the login; it is retried next time.
    async fn rehash(&self, user: &User, password: &str) {
        match self.hasher.hash(password).await {
            Ok(h) => match self.store.set_password_hash(user.id, &h).await {
                Ok(()) => tracing::info!(user_id = %user.id, "password hash upgraded to argon2id"),
                Err(e) => {
                    tracing::warn!(user_id = %user.id, error = %e, "cannot store the upgraded password hash")
                }
            },
            Err(e) => tracing::warn!(user_id = %user.id, error = %e, "cannot rehash password"),
        }
    }

    async fn refresh_grant(
        &self,
        cfg: &Config,
        client: &Client,
        params: &Params,
        bind: &Bind,
    ) -> Result<super::issue::Issued, OAuthError> {
        let presented = params
            .get("refresh_token")
            .ok_or(OAuthError::InvalidRequest("refresh_token is required"))?;
        let hash = sha256_hex(presented);
        let now = Utc::now();
        let rec = self
            .store
            .token_by_hash(TokenKind::Refresh, &hash)
            .await?
            .ok_or(OAuthError::InvalidGrant(BAD_REFRESH))?;
        if rec.client_id.as_deref() != Some(client.id.as_str())
            || rec.revoked_at.is_some()
            || rec.expires_at <= now
        {
            return Err(OAuthError::InvalidGrant(BAD_REFRESH));
        }
        // Inside `tokens.refresh.reuse_grace` (two tabs refreshing at once) a just-rotated
        // token is honoured again, and each such use starts its own branch of the family.
        let grace = ChronoDuration::from_std(cfg.tokens.refresh.reuse_grace).unwrap_or_default();
        let rotated_since = (grace > ChronoDuration::zero()).then(|| now - grace);
        if let Some(at) = rec.rotated_at {
            if rotated_since.is_none_or(|since| at < since) {
                return Err(self.reused(&rec).await);
            }
        }
        // A public client's DPoP-bound refresh token needs a proof by the same key.
        if !bind.matches_refresh(rec.cnf.as_deref()) {
            return Err(OAuthError::InvalidGrant(
                "the refresh token is bound to another DPoP key",
            ));
        }
        let granted_resources: Vec<String> =
            rec.audience.split_whitespace().map(str::to_owned).collect();
        let scope = match params.get("scope") {
            Some(s) => {
                let granted: Vec<String> =
                    rec.scope.split_whitespace().map(str::to_owned).collect();
                resolve_scope(&granted, Some(s))?
            }
            None => rec.scope.clone(),
        };
        let user = match rec.user_id {
            Some(id) => Some(
                self.store
                    .user_by_id(id)
                    .await?
                    .ok_or(OAuthError::InvalidGrant(BAD_REFRESH))?,
            ),
            None => None,
        };
        let g = Grantee {
            user: user.as_ref(),
            client_id: &client.id,
            scope,
            alias: rec.alias.clone(),
            nonce: None,
            auth_time: None,
            // A refresh keeps or narrows the resources, never widens them.
            resource: bind.resources(Some(&granted_resources))?,
            granted_resource: Some(granted_resources.clone()),
            cnf: bind.cnf.clone(),
            bind_refresh: bind.binds_refresh(client),
        };
        let Some(issued) = self
            .issue_rotated(cfg, &g, &hash, &rec.family_id, rotated_since)
            .await?
        else {
            // A concurrent refresh rotated it first (or the family was just revoked).
            return Err(self.reused(&rec).await);
        };
        audit::event("refresh_rotated", Outcome::Success)
            .user_opt(rec.user_id)
            .client(&client.id)
            .field("family_id", rec.family_id.as_str())
            .emit();
        Ok(issued)
    }

    /// A rotated refresh token came back outside the grace window: it is treated as
    /// stolen and the whole family is revoked, so neither the thief nor the victim keeps
    /// access. The answer is `invalid_grant`, or the store's error if revoking failed.
    async fn reused(&self, rec: &TokenRecord) -> OAuthError {
        let n = match self.store.revoke_family(&rec.family_id, Utc::now()).await {
            Ok(n) => n,
            Err(e) => return e.into(),
        };
        audit::event("refresh_reuse", Outcome::Failure)
            .reason("family_revoked")
            .user_opt(rec.user_id)
            .client_opt(rec.client_id.as_deref())
            .field("family_id", rec.family_id.as_str())
            .field("revoked_tokens", n)
            .emit();
        metrics::counter!("tollgate_refresh_reuse_total").increment(1);
        tracing::warn!(
            client_id = rec.client_id.as_deref().unwrap_or("-"),
            revoked = n,
            "rotated refresh token presented again; its family is revoked"
        );
        OAuthError::InvalidGrant(BAD_REFRESH)
    }
}

/// Counts and logs a failed sign-in. The name tried is not logged: users sometimes type
/// their password into it.
fn sign_in_failed(client: &Client, ip: IpAddr, user: Option<crate::store::UserId>) -> OAuthError {
    audit::event("sign_in", Outcome::Failure)
        .reason("bad_credentials")
        .user_opt(user)
        .client(&client.id)
        .peer(ip)
        .emit();
    metrics::counter!("tollgate_login_failures_total").increment(1);
    tracing::info!(client_id = %client.id, ip = %ip, "sign-in failed: wrong username or password");
    OAuthError::BadCredentials
}

/// The scope of a new token: the requested scopes, each of which must be allowed, or all
/// allowed scopes when none is requested.
pub(crate) fn resolve_scope(
    allowed: &[String],
    requested: Option<&str>,
) -> Result<String, OAuthError> {
    match requested {
        None => Ok(allowed.join(" ")),
        Some(req) => {
            let mut out: Vec<&str> = Vec::new();
            for s in req.split_whitespace() {
                if !allowed.iter().any(|a| a == s) {
                    return Err(OAuthError::InvalidScope);
                }
                if !out.contains(&s) {
                    out.push(s);
                }
            }
            Ok(out.join(" "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::resolve_scope;

    #[test]
    fn scope_is_a_subset_of_what_is_allowed() {
        let allowed = vec!["read".to_string(), "write".to_string()];
        assert_eq!(resolve_scope(&allowed, None).unwrap(), "read write");
        assert_eq!(
            resolve_scope(&allowed, Some("write read write")).unwrap(),
            "write read"
        );
        assert!(resolve_scope(&allowed, Some("admin")).is_err());
        assert!(resolve_scope(&[], Some("read")).is_err());
    }
}
