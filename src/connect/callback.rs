//! `GET /{provider}/oauth_code`: the provider sends the browser back here. Consume the
//! state, exchange the code (with the PKCE verifier), read who the provider user is, link
//! them, and send the browser back to the integrator with the outcome.
//!
//! Nothing changes unless every step succeeds: the only write before the link is the
//! deletion of the state, which is what makes a replay fail. The state is taken before
//! anything else so that a callback which fails half-way can never be retried with it.

use http::{HeaderMap, Response};

use super::binding;
use super::dialog::resolve;
use super::error::{CallbackFailure, ConnectError};
use super::exchange::ExchangeError;
use super::{query_param, redirect, sha256_hex, Connect};
use crate::config::Config;
use crate::http::body::Body;
use crate::http::redirect::with_params;
use crate::store::{LinkedIdentity, StoreError};

/// Longest `state` looked up; ours are 43 characters.
const MAX_STATE: usize = 128;

impl Connect {
    pub async fn callback(
        &self,
        config: &Config,
        provider_name: &str,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<Response<Body>, ConnectError> {
        let provider = resolve(config, provider_name)?;
        let state = query_param(query, "state")
            .filter(|s| !s.is_empty() && s.len() <= MAX_STATE)
            .ok_or(ConnectError::InvalidState)?;
        let state_hash = sha256_hex(&state);
        let st = self
            .stores
            .states
            .take_connect_state(&state_hash)
            .await?
            .ok_or_else(|| {
                metrics::counter!(
                    "tollgate_provider_connect_total",
                    "provider" => provider.name.clone(),
                    "outcome" => "invalid_state"
                )
                .increment(1);
                ConnectError::InvalidState
            })?;
        if st.provider != provider.name {
            return Err(ConnectError::InvalidState);
        }
        // Checked again: the allow-list may have changed since the dialog.
        let integrator = provider
            .allow_redirect(&st.redirect_uri)
            .ok_or(ConnectError::RedirectNotAllowed)?;
        let back = |outcome: Result<(), CallbackFailure>| {
            let code = match outcome {
                Ok(()) => "connected",
                Err(f) => f.code(),
            };
            metrics::counter!(
                "tollgate_provider_connect_total",
                "provider" => provider.name.clone(),
                "outcome" => code
            )
            .increment(1);
            let params: Vec<(&str, &str)> = match outcome {
                Ok(()) => vec![("status", "connected"), ("provider", &provider.name)],
                Err(_) => vec![
                    ("status", "error"),
                    ("error", code),
                    ("provider", &provider.name),
                ],
            };
            let mut resp = redirect(&with_params(&integrator, &params));
            let secure = provider.callback_url.starts_with("https://");
            resp.headers_mut().append(
                http::header::SET_COOKIE,
                binding::clear_cookie(&st.state_hash, &provider.name, secure),
            );
            resp
        };

        if st.expires_at <= chrono::Utc::now() {
            return Ok(back(Err(CallbackFailure::ExpiredState)));
        }
        if let Some(err) = query_param(query, "error") {
            tracing::info!(provider = %provider.name, user_id = %st.user_id, "provider reported an error on the callback");
            return Ok(back(Err(CallbackFailure::from_provider(&err))));
        }
        let Some(code) = query_param(query, "code").filter(|c| !c.is_empty()) else {
            return Ok(back(Err(CallbackFailure::MissingCode)));
        };

        let browser = binding::from_request(headers, &st.state_hash);
        let outcome = self.finish(&provider, &st, browser, &code).await;
        match outcome {
            Ok(()) => {
                crate::audit::event("provider_linked", crate::audit::Outcome::Success)
                    .user(st.user_id)
                    .field("provider", provider.name.as_str())
                    .emit();
                tracing::info!(provider = %provider.name, user_id = %st.user_id, "provider account linked")
            }
            Err(f) => {
                crate::audit::event("provider_linked", crate::audit::Outcome::Failure)
                    .reason(f.code())
                    .user(st.user_id)
                    .field("provider", provider.name.as_str())
                    .emit();
                tracing::warn!(provider = %provider.name, user_id = %st.user_id, error = f.code(), "provider linking failed")
            }
        }
        Ok(back(outcome))
    }

    /// Code → tokens → userinfo → encrypted link.
    async fn finish(
        &self,
        provider: &crate::config::provider::ResolvedProvider,
        st: &crate::store::ConnectState,
        browser: Option<&str>,
        code: &str,
    ) -> Result<(), CallbackFailure> {
        let cipher = self.cipher().map_err(|e| {
            tracing::error!(error = %e, "provider linking refused at callback");
            CallbackFailure::ServerError
        })?;
        // No cookie: this browser did not start the dialog (see binding.rs).
        let browser = browser.ok_or(CallbackFailure::BrowserMismatch)?;
        let verifier = cipher
            .open_text(
                &st.pkce_verifier,
                &binding::verifier_aad(&st.state_hash, browser),
            )
            .map_err(|_| {
                tracing::warn!(
                    provider = %provider.name,
                    "PKCE verifier does not open: another browser's cookie (or the key changed)"
                );
                CallbackFailure::BrowserMismatch
            })?;
        let tokens = self
            .client
            .exchange_code(provider, code, &provider.callback_url, &verifier)
            .await
            .map_err(|e| {
                tracing::warn!(provider = %provider.name, error = %e, "provider token exchange failed");
                match e {
                    ExchangeError::Secret(_) => CallbackFailure::ServerError,
                    _ => CallbackFailure::TokenExchangeFailed,
                }
            })?;
        let user = self
            .client
            .userinfo(provider, &tokens.access_token)
            .await
            .map_err(|e| {
                tracing::warn!(provider = %provider.name, error = %e, "provider userinfo failed");
                CallbackFailure::UserinfoFailed
            })?;
        let plain = zeroize::Zeroizing::new(
            serde_json::to_string(&tokens).map_err(|_| CallbackFailure::ServerError)?,
        );
        let sealed = cipher.seal(plain.as_bytes(), &identity_aad(&provider.name, &user.id));
        let link = LinkedIdentity {
            user_id: st.user_id,
            provider: provider.name.clone(),
            provider_user_id: user.id,
            email: user.email,
            tokens_encrypted: sealed,
            created_at: chrono::Utc::now(),
        };
        match self.stores.identities.link_identity(link).await {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict(_)) => Err(CallbackFailure::AlreadyLinked),
            Err(e) => {
                tracing::error!(error = %e, "store failed while linking a provider account");
                Err(CallbackFailure::ServerError)
            }
        }
    }
}

/// Associated data binding stored provider tokens to their row.
pub fn identity_aad(provider: &str, provider_user_id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(provider.len() + provider_user_id.len() + 1);
    aad.extend_from_slice(provider.as_bytes());
    aad.push(0);
    aad.extend_from_slice(provider_user_id.as_bytes());
    aad
}
