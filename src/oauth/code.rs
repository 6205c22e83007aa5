//! The authorization_code grant (RFC 6749 §4.1.3) with PKCE (RFC 7636, S256 only), and
//! what the browser flow keeps in the store for it: the code (`signin/` issues it) and the
//! browser session it was issued under, both by the SHA-256 of their value only.
//!
//! Threat model: a stolen code is useless without the verifier; a code is bound to its
//! client, redirect URI and challenge; a code presented a second time (the attacker's or
//! the victim's copy) is refused and revokes what its first redemption issued (RFC 6749
//! §4.1.2); a code lives `login.code_ttl` (60 s by default).

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::clients::allows;
use super::error::OAuthError;
use super::issue::{Grantee, Issued};
use super::request::Params;
use super::TokenService;
use crate::config::dialect::GrantType;
use crate::config::Config;
use crate::crypto::{constant_time_eq, sha256_hex};
use crate::store::{Client, SignInKind, SignInRecord, Store, StoreError, UserId};

const BAD_CODE: &str = "The authorization code is invalid, expired or already used";

/// What a code is bound to and carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodePayload {
    pub client_id: String,
    pub redirect_uri: String,
    /// BASE64URL(SHA-256(code_verifier)).
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub scope: String,
    /// RFC 8707 resource indicators asked for.
    #[serde(default)]
    pub resource: Vec<String>,
    /// RFC 9449 §10: the thumbprint of the DPoP key the redemption must prove.
    #[serde(default)]
    pub dpop_jkt: Option<String>,
    pub user_id: i64,
    pub auth_time: i64,
    /// The hash of the browser session the code was issued under.
    pub session: Option<String>,
    /// What the redemption issued, revoked if the code comes back.
    #[serde(default)]
    pub issued_family: Option<String>,
    #[serde(default)]
    pub issued_jti: Option<String>,
}

/// A browser session: who signed in, when, and the refresh families issued under it
/// (revoked at logout).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionPayload {
    pub user_id: i64,
    pub auth_time: i64,
    pub last_seen: i64,
    #[serde(default)]
    pub families: Vec<String>,
}

fn payload_of<T: serde::de::DeserializeOwned>(r: &SignInRecord) -> Result<T, OAuthError> {
    serde_json::from_str(&r.payload)
        .map_err(|e| OAuthError::Server(format!("stored sign-in state unreadable: {e}")))
}

/// Writes a payload back under its hash, keeping expiry and use.
pub async fn put_payload<T: Serialize>(
    store: &dyn Store,
    kind: SignInKind,
    hash: &str,
    payload: &T,
    expires_at: DateTime<Utc>,
    used_at: Option<DateTime<Utc>>,
) -> Result<(), StoreError> {
    let payload = serde_json::to_string(payload)
        .map_err(|e| StoreError::Other(format!("sign-in state: {e}")))?;
    store
        .put_signin(
            kind,
            hash,
            SignInRecord {
                payload,
                expires_at,
                used_at,
            },
        )
        .await
}

/// Whether `verifier` (43–128 unreserved characters) hashes to `challenge`.
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    well_formed && constant_time_eq(computed.as_bytes(), challenge.as_bytes())
}

impl TokenService {
    /// `grant_type=authorization_code`.
    pub(super) async fn code_grant(
        &self,
        cfg: &Config,
        client: &Client,
        params: &Params,
        bind: &super::bind::Bind,
    ) -> Result<Issued, OAuthError> {
        let code = params
            .get("code")
            .ok_or(OAuthError::InvalidRequest("code is required"))?;
        let hash = sha256_hex(code);
        let Some(record) = self.store.signin_by_hash(SignInKind::Code, &hash).await? else {
            return Err(OAuthError::InvalidGrant(BAD_CODE));
        };
        let mut payload: CodePayload = payload_of(&record)?;
        let now = Utc::now();
        if record.used_at.is_some() {
            self.code_replayed(&payload).await;
            return Err(OAuthError::InvalidGrant(BAD_CODE));
        }
        if record.expires_at <= now || payload.client_id != client.id {
            return Err(OAuthError::InvalidGrant(BAD_CODE));
        }
        // RFC 6749 §4.1.3: the same redirect_uri as the authorization request, exactly.
        if params.get("redirect_uri") != Some(payload.redirect_uri.as_str()) {
            return Err(OAuthError::InvalidGrant(
                "redirect_uri does not match the authorization request",
            ));
        }
        let verifier = params
            .get("code_verifier")
            .ok_or(OAuthError::InvalidRequest("code_verifier is required"))?;
        if !pkce_matches(verifier, &payload.code_challenge) {
            return Err(OAuthError::InvalidGrant("code_verifier does not match"));
        }
        // A code bound to a DPoP key (`dpop_jkt`) is redeemed only with a proof by it.
        if let Some(jkt) = &payload.dpop_jkt {
            let proved = matches!(&bind.cnf, Some(crate::authn::Confirmation::Jkt(k))
                if crate::crypto::constant_time_eq(k.as_bytes(), jkt.as_bytes()));
            if !proved {
                return Err(OAuthError::InvalidGrant(
                    "the code is bound to a DPoP key this request does not prove",
                ));
            }
        }
        // Single use: of two concurrent redemptions exactly one gets here.
        if !self.store.use_signin(SignInKind::Code, &hash, now).await? {
            self.code_replayed(&payload).await;
            return Err(OAuthError::InvalidGrant(BAD_CODE));
        }
        let user = self
            .store
            .user_by_id(UserId(payload.user_id))
            .await?
            .ok_or(OAuthError::InvalidGrant(BAD_CODE))?;
        let family =
            allows(client, GrantType::RefreshToken).then(|| uuid::Uuid::new_v4().to_string());
        let g = Grantee {
            user: Some(&user),
            client_id: &client.id,
            scope: payload.scope.clone(),
            alias: None,
            nonce: payload.nonce.clone(),
            auth_time: Some(payload.auth_time),
            resource: bind.resources(Some(&payload.resource))?,
            granted_resource: None,
            cnf: bind.cnf.clone(),
            bind_refresh: bind.binds_refresh(client),
        };
        let issued = self.issue(cfg, &g, family.as_deref()).await?;
        payload.issued_family = family.clone();
        payload.issued_jti = Some(issued.jti.clone());
        put_payload(
            &*self.store,
            SignInKind::Code,
            &hash,
            &payload,
            record.expires_at,
            Some(now),
        )
        .await?;
        if let (Some(session), Some(family)) = (&payload.session, family) {
            self.record_session_family(session, family).await;
        }
        crate::audit::event("code_redeemed", crate::audit::Outcome::Success)
            .user(user.id)
            .client(&client.id)
            .emit();
        Ok(issued)
    }

    /// A code presented again: what it issued is revoked (the refresh family and the
    /// access token), whoever holds it.
    async fn code_replayed(&self, payload: &CodePayload) {
        crate::audit::event("code_replayed", crate::audit::Outcome::Failure)
            .client(&payload.client_id)
            .emit();
        let now = Utc::now();
        if let Some(family) = &payload.issued_family {
            if let Err(e) = self.store.revoke_family(family, now).await {
                tracing::warn!(error = %e, "revoking the tokens of a replayed code failed");
            }
        }
        if let Some(jti) = &payload.issued_jti {
            let until = now + chrono::Duration::days(1);
            if let Err(e) = self.store.revoke_jti(jti, until).await {
                tracing::warn!(error = %e, "revoking the access token of a replayed code failed");
            }
            // In force on this gateway now, before the store's event comes back.
            self.revocations.apply(crate::revocation::Revoked::Jti {
                jti: jti.clone(),
                expires_at: u64::try_from(until.timestamp()).unwrap_or(0),
            });
        }
    }

    /// Notes a refresh family issued under a browser session, so logout revokes it.
    async fn record_session_family(&self, session: &str, family: String) {
        let Ok(Some(rec)) = self
            .store
            .signin_by_hash(SignInKind::Session, session)
            .await
        else {
            return;
        };
        let Ok(mut s) = payload_of::<SessionPayload>(&rec) else {
            return;
        };
        s.families.push(family);
        if let Err(e) = put_payload(
            &*self.store,
            SignInKind::Session,
            session,
            &s,
            rec.expires_at,
            rec.used_at,
        )
        .await
        {
            tracing::warn!(error = %e, "recording a session's refresh family failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::pkce_matches;

    #[test]
    fn pkce_s256_as_rfc_7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_matches(verifier, challenge));
        assert!(!pkce_matches(
            verifier,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"
        ));
        // Too short, or with characters outside the unreserved set.
        assert!(!pkce_matches("abc", challenge));
        assert!(!pkce_matches(&format!("{verifier}+"), challenge));
    }
}
