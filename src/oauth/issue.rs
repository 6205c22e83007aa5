//! Minting access and refresh tokens, and the token response in each dialect's shape.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use http::{Response, StatusCode};
use serde_json::{json, Map, Value};

use super::error::OAuthError;
use super::TokenService;
use crate::authn::Confirmation;
use crate::config::dialect::Dialect;
use crate::config::raw::AccessFormat;
use crate::config::Config;
use crate::crypto::{random_token, sha256_hex};
use crate::http::body::{self, Body};
use crate::keys::{AccessClaims, Audience};
use crate::store::{TokenKind, TokenRecord, User};

/// Who a token is issued to and with what.
pub(super) struct Grantee<'a> {
    /// `None` for client_credentials.
    pub user: Option<&'a User>,
    pub client_id: &'a str,
    pub scope: String,
    pub alias: Option<String>,
    /// With `openid` in the scope (authorization code flow only): the ID token's `nonce`
    /// and the sign-in time it reports.
    pub nonce: Option<String>,
    pub auth_time: Option<i64>,
    /// RFC 8707 resources: the access token's `aud` (empty: the gateway's own audience).
    pub resource: Vec<String>,
    /// The resources of the grant itself, kept with the refresh token so a later refresh
    /// may name any of them (`None`: the same as `resource`).
    pub granted_resource: Option<Vec<String>>,
    /// What the access token is bound to (DPoP key, client certificate).
    pub cnf: Option<Confirmation>,
    /// Whether the refresh token is bound too: a public client's, to its DPoP key
    /// (RFC 9449 §5); a confidential client's refresh is bound by its authentication.
    pub bind_refresh: bool,
}

impl Grantee<'_> {
    /// `token_type` in the response: `DPoP` for a DPoP-bound token.
    fn dpop_bound(&self) -> bool {
        matches!(self.cnf, Some(Confirmation::Jkt(_)))
    }
}

/// Tokens just issued.
pub(super) struct Issued {
    pub access_token: String,
    pub expires_in: u64,
    pub refresh_token: Option<String>,
    pub scope: String,
    pub created_at: DateTime<Utc>,
    pub user_id: Option<i64>,
    /// The access token's `jti` (revoked when its code is replayed).
    pub jti: String,
    /// OpenID Connect: present when the grant asked for `openid`.
    pub id_token: Option<String>,
    /// DPoP-bound: `token_type` is `DPoP` (RFC 9449 §5).
    pub dpop: bool,
}

fn chrono_dur(d: std::time::Duration) -> ChronoDuration {
    ChronoDuration::from_std(d).unwrap_or(ChronoDuration::days(365 * 100))
}

/// A new refresh token and its store record (which holds only the hash).
fn refresh_record(
    cfg: &Config,
    g: &Grantee<'_>,
    family: &str,
    now: DateTime<Utc>,
) -> (String, TokenRecord) {
    let token = random_token();
    let record = TokenRecord {
        token_hash: sha256_hex(&token),
        family_id: family.to_string(),
        user_id: g.user.map(|u| u.id),
        client_id: Some(g.client_id.to_string()),
        scope: g.scope.clone(),
        alias: g.alias.clone(),
        expires_at: now + chrono_dur(cfg.tokens.refresh.ttl),
        created_at: now,
        rotated_at: None,
        revoked_at: None,
        audience: g.granted_resource.as_ref().unwrap_or(&g.resource).join(" "),
        cnf: g
            .cnf
            .as_ref()
            .filter(|_| g.bind_refresh)
            .map(|c| c.to_claim().to_string()),
    };
    (token, record)
}

impl TokenService {
    /// Issues an access token and, when `refresh_family` is given, a refresh token in
    /// that rotation family. Only hashes of the tokens reach the store.
    pub(super) async fn issue(
        &self,
        cfg: &Config,
        g: &Grantee<'_>,
        refresh_family: Option<&str>,
    ) -> Result<Issued, OAuthError> {
        let now = Utc::now();
        let (access_token, jti) = self.mint_access(cfg, g, now).await?;
        let refresh_token = match refresh_family {
            Some(family) => {
                let (token, record) = refresh_record(cfg, g, family, now);
                self.store.insert_token(TokenKind::Refresh, record).await?;
                Some(token)
            }
            None => None,
        };
        let mut issued = Issued::new(cfg, g, access_token, refresh_token, now, jti);
        if g.user.is_some() && g.scope.split(' ').any(|s| s == "openid") {
            issued.id_token = Some(
                self.mint_id_token(cfg, g, &issued.access_token, now)
                    .await?,
            );
        }
        Ok(issued)
    }

    /// Issues the tokens of one refresh: an access token, and a refresh token that
    /// replaces `parent` in its family. The rotation is the last write, all or nothing:
    /// if it fails, `parent` is untouched and the client may retry with it. `None` when
    /// `parent` is no longer live (a concurrent refresh won, or its family was revoked).
    pub(super) async fn issue_rotated(
        &self,
        cfg: &Config,
        g: &Grantee<'_>,
        parent: &str,
        family: &str,
        rotated_since: Option<DateTime<Utc>>,
    ) -> Result<Option<Issued>, OAuthError> {
        let now = Utc::now();
        let (access_token, jti) = self.mint_access(cfg, g, now).await?;
        let (token, record) = refresh_record(cfg, g, family, now);
        if !self
            .store
            .rotate_refresh(parent, now, rotated_since, record)
            .await?
        {
            return Ok(None);
        }
        Ok(Some(Issued::new(
            cfg,
            g,
            access_token,
            Some(token),
            now,
            jti,
        )))
    }

    /// A new access token: a signed JWT, or an opaque token whose hash is stored.
    async fn mint_access(
        &self,
        cfg: &Config,
        g: &Grantee<'_>,
        now: DateTime<Utc>,
    ) -> Result<(String, String), OAuthError> {
        let exp = now + chrono_dur(cfg.tokens.access.ttl);
        let jti = uuid::Uuid::new_v4().to_string();
        let token = match cfg.tokens.access.format {
            AccessFormat::Jwt => {
                let claims = AccessClaims {
                    sub: match g.user {
                        Some(u) => u.id.to_string(),
                        None => g.client_id.to_string(),
                    },
                    iss: self.keys.issuer().to_string(),
                    aud: if g.resource.is_empty() {
                        self.keys.audience().into()
                    } else {
                        Audience::of(g.resource.clone())
                    },
                    exp: exp.timestamp(),
                    iat: now.timestamp(),
                    nbf: None,
                    jti: jti.clone(),
                    scope: g.scope.clone(),
                    client_id: Some(g.client_id.to_string()),
                    email: g.user.map(|u| u.email.clone()),
                    role: g.user.map(|u| u.role.clone()),
                    alias: g.alias.clone(),
                    cnf: g.cnf.as_ref().map(Confirmation::to_claim),
                };
                // Off the serving thread: an RS256 signature takes about a millisecond,
                // which on the event loop would delay every proxied request queued behind
                // it (the login flood benchmark).
                let keys = self.keys.clone();
                tokio::task::spawn_blocking(move || keys.sign(&claims))
                    .await
                    .map_err(|e| OAuthError::Server(format!("signing task failed: {e}")))?
                    .map_err(|e| OAuthError::Server(e.to_string()))?
            }
            AccessFormat::Opaque => {
                // Stored before a refresh rotation commits: if the rotation then fails,
                // this token was never handed out and only its hash remains until expiry.
                let token = random_token();
                self.store
                    .insert_token(
                        TokenKind::OpaqueAccess,
                        TokenRecord {
                            token_hash: sha256_hex(&token),
                            family_id: jti.clone(),
                            user_id: g.user.map(|u| u.id),
                            client_id: Some(g.client_id.to_string()),
                            scope: g.scope.clone(),
                            alias: g.alias.clone(),
                            expires_at: exp,
                            created_at: now,
                            rotated_at: None,
                            revoked_at: None,
                            audience: g.resource.join(" "),
                            cnf: g.cnf.as_ref().map(|c| c.to_claim().to_string()),
                        },
                    )
                    .await?;
                token
            }
        };
        Ok((token, jti))
    }

    /// The OpenID Connect ID token (Core §2): who signed in, for which client, when and
    /// how, bound to the request's `nonce` and to the access token (`at_hash`).
    async fn mint_id_token(
        &self,
        cfg: &Config,
        g: &Grantee<'_>,
        access_token: &str,
        now: DateTime<Utc>,
    ) -> Result<String, OAuthError> {
        use base64::Engine;
        use sha2::Digest;
        let user = g
            .user
            .ok_or(OAuthError::Server("an ID token needs a user".into()))?;
        // at_hash: the left half of the access token's hash (SHA-256 for RS256, ES256 and
        // EdDSA alike: each signs with a 256-bit hash here).
        let digest = sha2::Sha256::digest(access_token.as_bytes());
        let at_hash = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16]);
        let mut claims = json!({
            "iss": self.keys.issuer(),
            "sub": user.id.to_string(),
            "aud": g.client_id,
            "azp": g.client_id,
            "exp": (now + chrono_dur(cfg.tokens.access.ttl)).timestamp(),
            "iat": now.timestamp(),
            "auth_time": g.auth_time.unwrap_or(now.timestamp()),
            "at_hash": at_hash,
            "amr": ["pwd"],
        });
        if let Some(n) = &g.nonce {
            claims["nonce"] = json!(n);
        }
        if g.scope.split(' ').any(|s| s == "email") {
            claims["email"] = json!(user.email);
            claims["email_verified"] = json!(false);
        }
        if g.scope.split(' ').any(|s| s == "profile") {
            if let Some(u) = &user.username {
                claims["preferred_username"] = json!(u);
            }
        }
        let keys = self.keys.clone();
        tokio::task::spawn_blocking(move || keys.sign_json(&claims, "JWT"))
            .await
            .map_err(|e| OAuthError::Server(format!("signing task failed: {e}")))?
            .map_err(|e| OAuthError::Server(e.to_string()))
    }
}

impl Issued {
    fn new(
        cfg: &Config,
        g: &Grantee<'_>,
        access_token: String,
        refresh_token: Option<String>,
        now: DateTime<Utc>,
        jti: String,
    ) -> Issued {
        Issued {
            access_token,
            expires_in: cfg.tokens.access.ttl.as_secs(),
            refresh_token,
            scope: g.scope.clone(),
            created_at: now,
            user_id: g.user.map(|u| u.id.0),
            jti,
            id_token: None,
            dpop: g.dpop_bound(),
        }
    }

    /// The 200 answer as the dialect spells it: RFC 6749 §5.1 fields, `token_type` per
    /// the endpoint, `scope` always for signInWithPassword (else when not empty), and
    /// `created_at`/`user_id` for clients of the `?grant_type=` dialect.
    pub(super) fn into_response(self, dialect: &Dialect, grant_in_query: bool) -> Response<Body> {
        let mut m = Map::new();
        m.insert("access_token".into(), json!(self.access_token));
        if self.dpop {
            m.insert("token_type".into(), json!("DPoP"));
        } else {
            m.insert("token_type".into(), json!(dialect.token_type));
        }
        m.insert("expires_in".into(), json!(self.expires_in));
        if let Some(r) = self.refresh_token {
            m.insert("refresh_token".into(), json!(r));
        }
        if let Some(t) = self.id_token {
            m.insert("id_token".into(), json!(t));
        }
        if !self.scope.is_empty() || dialect.always_names_scope() {
            m.insert("scope".into(), json!(self.scope));
        }
        if grant_in_query {
            m.insert("created_at".into(), json!(self.created_at.timestamp()));
            if let Some(id) = self.user_id {
                m.insert("user_id".into(), json!(id));
            }
        }
        body::json(StatusCode::OK, &Value::Object(m))
    }
}
