//! `GET /{provider}/oauth_dialog`: check who is asking and where they want to go back to,
//! remember both server-side under a fresh `state`, and send the browser to the
//! provider's consent page.
//!
//! Order of checks (each fails before anything is stored): the token (401), the
//! integrator `redirect_uri` against the allow-list (400, never redirected), then that
//! linking can finish at all (encryption key, client secret: 503). Only then is a state
//! row written. The provider-facing URL carries `state` and the PKCE challenge, never the
//! user's token. A cookie binds the dialog to this browser (see `binding.rs`).

use http::{HeaderMap, Response};

use super::binding;
use super::error::ConnectError;
use super::{
    authenticate, bearer, pkce_challenge, query_param, random_token, redirect, sha256_hex,
    user_id_of, Connect,
};
use crate::authn::Authenticator;
use crate::config::provider::ResolvedProvider;
use crate::config::Config;
use crate::http::body::Body;
use crate::store::ConnectState;

impl Connect {
    pub async fn dialog(
        &self,
        config: &Config,
        authn: &dyn Authenticator,
        provider_name: &str,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<Response<Body>, ConnectError> {
        let provider = resolve(config, provider_name)?;

        // The header wins over the legacy query parameter when both are present.
        let query_token = query_param(query, "oauth_token");
        let token = bearer(headers).or(query_token.as_deref());
        let identity = authenticate(authn, token).await?;
        let user_id = user_id_of(&identity)?;

        let requested =
            query_param(query, "redirect_uri").ok_or(ConnectError::MissingParam("redirect_uri"))?;
        let integrator = provider
            .allow_redirect(&requested)
            .ok_or(ConnectError::RedirectNotAllowed)?;

        // A token can outlive its user; linking a deleted user would only fail later.
        if self.stores.users.user_by_id(user_id).await?.is_none() {
            return Err(ConnectError::InvalidToken(
                "the token's user no longer exists".into(),
            ));
        }
        let cipher = self.cipher()?;
        provider
            .client_secret()
            .map_err(ConnectError::NotConfigured)?;

        let state = random_token();
        let verifier = random_token();
        let browser = random_token();
        let state_hash = sha256_hex(&state);
        let cookie = binding::set_cookie(
            &state_hash,
            &browser,
            &provider.name,
            config.connect.state_ttl.as_secs(),
            provider.callback_url.starts_with("https://"),
        );
        let ttl = chrono::Duration::from_std(config.connect.state_ttl)
            .unwrap_or(chrono::Duration::minutes(10));
        self.stores
            .states
            .put_connect_state(ConnectState {
                pkce_verifier: cipher
                    .seal_text(&verifier, &binding::verifier_aad(&state_hash, &browser)),
                state_hash,
                user_id,
                provider: provider.name.clone(),
                redirect_uri: integrator.to_string(),
                expires_at: chrono::Utc::now() + ttl,
            })
            .await?;

        let callback = provider.callback_url.clone();
        let mut authorize = provider.authorize_url.clone();
        {
            let mut q = authorize.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &provider.client_id)
                .append_pair("redirect_uri", &callback);
            if !provider.scope.is_empty() {
                q.append_pair("scope", &provider.scope.join(" "));
            }
            q.append_pair("state", &state)
                .append_pair("code_challenge", &pkce_challenge(&verifier))
                .append_pair("code_challenge_method", "S256");
        }
        tracing::info!(provider = %provider.name, user_id = %user_id, "provider dialog started");
        let mut resp = redirect(authorize.as_str());
        resp.headers_mut().append(http::header::SET_COOKIE, cookie);
        Ok(resp)
    }
}

/// The live config's provider entry, resolved when the configuration loaded.
pub(super) fn resolve(config: &Config, name: &str) -> Result<ResolvedProvider, ConnectError> {
    config
        .connect_providers
        .get(name)
        .cloned()
        .ok_or(ConnectError::NotFound)
}
