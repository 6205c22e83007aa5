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
    let tokens = crate::oauth::mount(config).await.map_err(|e| match e {
        crate::oauth::MountError::Store(e) => ServicesError::Store(e.to_string()),
        crate::oauth::MountError::Keys(e) => ServicesError::Keys(e.to_string()),
    })?;
    // Bearer validation on proxied routes and forward-auth (proxy/authn): self-issued
    // tokens with the token service's keys and store, foreign ones per `jwt_issuers` and
    // `introspection`; revocations followed from the store's events.
    let authenticator = crate::proxy::authn::build_with_token_service(config, &tokens)
        .await
        .map_err(|e| ServicesError::Other(e.to_string()))?;
    let mut endpoints = tokens.endpoints;
    endpoints.push(std::sync::Arc::new(
        crate::proxy::forward_auth::ForwardAuthEndpoint,
    ));
    // Provider connect: dialog, callback and the identities API, on the same store.
    endpoints.extend(crate::connect::endpoints(
        config,
        crate::connect::ConnectStores::from_store(tokens.store.clone()),
    ));
    Ok(Services {
        endpoints,
        authenticator,
        readiness: vec![tokens.readiness],
    })
}
