//! `POST /oauth/revoke` (RFC 7009) for access and refresh tokens.
//!
//! The client must authenticate (confidential) or name itself (public), and may only
//! revoke tokens issued to it. Any other token — unknown, expired, someone else's — gets
//! the same 200 as a successful revocation (RFC 7009 §2.2), so the endpoint cannot be
//! used to probe which tokens exist.

use chrono::{TimeZone, Utc};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::error::OAuthError;
use super::TokenService;
use crate::authn::jwt::looks_like_jwt;
use crate::crypto::sha256_hex;
use crate::http::body::{self, Body};
use crate::revocation::Revoked;
use crate::store::TokenKind;

impl TokenService {
    pub(super) async fn revoke_request(
        &self,
        req: Request<Incoming>,
        cert: Option<&crate::http::ClientCert>,
    ) -> Result<Response<Body>, OAuthError> {
        let (params, client, _) = self.client_request(req, cert).await?;
        let token = params
            .get("token")
            .ok_or(OAuthError::InvalidRequest("token is required"))?;
        let now = Utc::now();
        let mut revoked = false;
        if looks_like_jwt(token) {
            if let Ok(claims) = self.keys.verify(token) {
                if claims.client_id.as_deref() == Some(client.id.as_str()) {
                    let exp = Utc.timestamp_opt(claims.exp, 0).single().unwrap_or(now);
                    self.store.revoke_jti(&claims.jti, exp).await?;
                    // In force on this gateway now, before the store's event comes back.
                    self.revocations.apply(Revoked::Jti {
                        jti: claims.jti.clone(),
                        expires_at: u64::try_from(claims.exp).unwrap_or(0),
                    });
                    revoked = true;
                    crate::audit::event("token_revoked", crate::audit::Outcome::Success)
                        .user(&claims.sub)
                        .client(&client.id)
                        .field("token_kind", "access_token")
                        .emit();
                }
            }
        } else {
            let hash = sha256_hex(token);
            let refresh_first = params.get("token_type_hint") != Some("access_token");
            let kinds = if refresh_first {
                [TokenKind::Refresh, TokenKind::OpaqueAccess]
            } else {
                [TokenKind::OpaqueAccess, TokenKind::Refresh]
            };
            for kind in kinds {
                let Some(rec) = self.store.token_by_hash(kind, &hash).await? else {
                    continue;
                };
                if rec.client_id.as_deref() == Some(client.id.as_str()) {
                    match kind {
                        // A refresh token takes its whole rotation family with it.
                        TokenKind::Refresh => {
                            self.store.revoke_family(&rec.family_id, now).await?;
                        }
                        TokenKind::OpaqueAccess => {
                            self.store.revoke_token(kind, &hash, now).await?;
                        }
                    }
                    revoked = true;
                    crate::audit::event("token_revoked", crate::audit::Outcome::Success)
                        .user_opt(rec.user_id)
                        .client(&client.id)
                        .field(
                            "token_kind",
                            match kind {
                                TokenKind::Refresh => "refresh_token",
                                TokenKind::OpaqueAccess => "access_token",
                            },
                        )
                        .emit();
                }
                break;
            }
        }
        metrics::counter!("tollgate_token_revocations_total", "result" => if revoked { "revoked" } else { "ignored" })
            .increment(1);
        let mut resp = Response::new(body::empty());
        *resp.status_mut() = StatusCode::OK;
        Ok(resp)
    }
}
