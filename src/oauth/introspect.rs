//! `POST /oauth/introspect` (RFC 7662) for access and refresh tokens.
//!
//! Only confidential clients (resource servers) may introspect: a public client has no
//! secret, so letting it ask would let anyone test stolen tokens. An inactive answer is
//! just `{"active": false}`, whatever the reason.

use chrono::Utc;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Map, Value};

use super::error::OAuthError;
use super::TokenService;
use crate::authn::jwt::looks_like_jwt;
use crate::authn::{Authenticator, AuthnError};
use crate::crypto::sha256_hex;
use crate::http::body::{self, Body};
use crate::store::TokenKind;

impl TokenService {
    pub(super) async fn introspect_request(
        &self,
        authenticator: &dyn Authenticator,
        req: Request<Incoming>,
        cert: Option<&crate::http::ClientCert>,
    ) -> Result<Response<Body>, OAuthError> {
        let (params, client, via_basic) = self.client_request(req, cert).await?;
        if !client.is_confidential() {
            return Err(OAuthError::InvalidClient { basic: via_basic });
        }
        let token = params
            .get("token")
            .ok_or(OAuthError::InvalidRequest("token is required"))?;
        let answer = self.introspect(authenticator, token).await?;
        let active = answer
            .get("active")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        metrics::counter!("tollgate_token_introspections_total", "active" => if active { "true" } else { "false" })
            .increment(1);
        Ok(body::json(StatusCode::OK, &answer))
    }

    /// JWTs are checked by the gateway's authenticator (the proxy's own check: signature,
    /// expiry, revocation list); only this gateway's are introspected.
    async fn introspect(
        &self,
        authenticator: &dyn Authenticator,
        token: &str,
    ) -> Result<Value, OAuthError> {
        let inactive = json!({ "active": false });
        if looks_like_jwt(token) {
            // The token as its issuer sees it: a DPoP- or certificate-bound token, or one
            // issued for a resource, is active here though no proof comes with it.
            match authenticator.inspect(token).await {
                Ok(id) if id.self_issued => {}
                Err(AuthnError::Unavailable(e)) => return Err(OAuthError::Unavailable(e)),
                Ok(_) | Err(AuthnError::Invalid(_) | AuthnError::Proof { .. }) => {
                    return Ok(inactive)
                }
            }
            // Verified above; read again for the claims the answer shows (iat, aud).
            return Ok(match self.keys.verify(token) {
                Ok(c) => {
                    let mut m = Map::new();
                    m.insert("active".into(), json!(true));
                    m.insert("token_type".into(), json!("access_token"));
                    m.insert("scope".into(), json!(c.scope));
                    m.insert("client_id".into(), json!(c.client_id));
                    m.insert("sub".into(), json!(c.sub));
                    m.insert("exp".into(), json!(c.exp));
                    m.insert("iat".into(), json!(c.iat));
                    m.insert("iss".into(), json!(c.iss));
                    m.insert("aud".into(), json!(c.aud));
                    m.insert("jti".into(), json!(c.jti));
                    insert_opt(&mut m, "email", c.email);
                    insert_opt(&mut m, "role", c.role);
                    insert_opt(&mut m, "alias", c.alias);
                    if let Some(cnf) = c.cnf {
                        // RFC 9449 §6.2, RFC 8705 §3.2: the binding, for resource servers
                        // that introspect.
                        m.insert("cnf".into(), cnf);
                        m.insert("token_type".into(), json!("DPoP"));
                    }
                    Value::Object(m)
                }
                Err(_) => inactive,
            });
        }
        if token.len() > 512 {
            return Ok(inactive);
        }
        let hash = sha256_hex(token);
        let now = Utc::now();
        for (kind, type_name) in [
            (TokenKind::OpaqueAccess, "access_token"),
            (TokenKind::Refresh, "refresh_token"),
        ] {
            let Some(rec) = self.store.token_by_hash(kind, &hash).await? else {
                continue;
            };
            // A rotated refresh token is spent; only the newest one in a family is live.
            if rec.revoked_at.is_some() || rec.rotated_at.is_some() || rec.expires_at <= now {
                return Ok(inactive);
            }
            let mut m = Map::new();
            m.insert("active".into(), json!(true));
            m.insert("token_type".into(), json!(type_name));
            m.insert("scope".into(), json!(rec.scope));
            m.insert("client_id".into(), json!(rec.client_id));
            m.insert("exp".into(), json!(rec.expires_at.timestamp()));
            m.insert("iat".into(), json!(rec.created_at.timestamp()));
            m.insert("iss".into(), json!(self.keys.issuer()));
            match rec.user_id {
                Some(id) => {
                    m.insert("sub".into(), json!(id.to_string()));
                    if let Some(u) = self.store.user_by_id(id).await? {
                        m.insert("email".into(), json!(u.email));
                        m.insert("role".into(), json!(u.role));
                        if let Some(name) = u.username {
                            m.insert("username".into(), json!(name));
                        }
                    }
                }
                None => {
                    m.insert("sub".into(), json!(rec.client_id));
                }
            }
            if kind == TokenKind::OpaqueAccess {
                m.insert("jti".into(), json!(rec.family_id));
            }
            insert_opt(&mut m, "alias", rec.alias);
            return Ok(Value::Object(m));
        }
        Ok(inactive)
    }
}

fn insert_opt(m: &mut Map<String, Value>, k: &str, v: Option<String>) {
    if let Some(v) = v {
        m.insert(k.into(), json!(v));
    }
}
