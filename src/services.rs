//! Builds what the gateway serves besides proxying: the token service, users API,
//! provider connect, forward-auth, and the authenticator the proxy uses. Called once at
//! start by `tollgate serve` (and `demo`, and the integration tests).

use crate::app::Services;
use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum ServicesError {
    #[error("{0}")]
    Store(String),
    #[error("{0}")]
    Keys(String),
    #[error("{0}")]
    Other(String),
}

/// Everything `config` asks for, wired together.
pub async fn build(config: &Config) -> Result<Services, ServicesError> {
    let mut services = Services::proxy_only();
    // Bearer validation and forward-auth: self-issued JWTs checked with the token
    // service's key set; the store (own opaque tokens, revocations) joins through
    // `AuthnParts` once it is built here.
    let keys = std::sync::Arc::new(
        crate::keys::KeySet::load(&config.tokens, &crate::keys::default_key_dir(&config.store.url))
            .map_err(|e| ServicesError::Keys(e.to_string()))?,
    );
    let authn = crate::proxy::authn::build(config, crate::proxy::authn::AuthnParts::with_keys(keys))
        .map_err(|e| ServicesError::Other(e.to_string()))?;
    services.authenticator = std::sync::Arc::new(authn);
    services
        .endpoints
        .push(std::sync::Arc::new(crate::proxy::forward_auth::ForwardAuthEndpoint));
    Ok(services)
}
