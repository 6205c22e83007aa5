//! Wiring, in one place: opens the store and the signing keys, builds the token service,
//! the users API, provider connect, forward-auth and the authenticator the proxy uses,
//! and hands them to `Gateway::start` as [`Services`]. `tollgate serve`, `demo` and the
//! integration tests all start the gateway through [`build`].

use std::sync::Arc;

use super::Services;
use crate::config::Config;
use crate::crypto::PasswordHasherPool;
use crate::endpoint::Endpoint;
use crate::http::ReadinessCheck;
use crate::keys::{default_key_dir, KeySet};
use crate::oauth::TokenService;
use crate::proxy::authn::{self, AuthnParts};
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("signing keys: {0}")]
    Keys(#[from] crate::keys::KeyError),
    #[error("{0}")]
    Authn(#[from] authn::setup::SetupError),
}

/// Everything `config` asks for, wired together.
pub async fn build(config: &Config) -> Result<Services, WiringError> {
    let tokens = mount_token_service(config).await?;
    // Bearer validation on proxied routes and forward-auth (proxy/authn): self-issued
    // tokens with the token service's keys and store, foreign ones per `jwt_issuers` and
    // `introspection`; revocations followed from the store's events.
    let authenticator = authenticator_with_token_service(config, &tokens)?;
    let mut endpoints = tokens.endpoints;
    endpoints.push(Arc::new(crate::forward_auth::ForwardAuthEndpoint));
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

/// The token service and users API, ready to mount: the store they opened (for other
/// services to share), their endpoints, and the store's readiness check.
pub struct Mounted {
    pub service: Arc<TokenService>,
    pub store: Arc<dyn Store>,
    pub endpoints: Vec<Arc<dyn Endpoint>>,
    pub readiness: Arc<dyn ReadinessCheck>,
}

/// Opens the store (migrations run there), loads or generates the signing keys, and
/// builds every endpoint of the token service and the users API.
pub async fn mount_token_service(config: &Config) -> Result<Mounted, WiringError> {
    let store = crate::store::connect(&config.store.url).await?;
    let keys = Arc::new(KeySet::load(
        &config.tokens,
        &default_key_dir(&config.store.url),
    )?);
    let published: Vec<serde_json::Value> = keys.jwks()["keys"]
        .as_array()
        .map(|ks| ks.iter().map(|k| k["kid"].clone()).collect())
        .unwrap_or_default();
    crate::audit::event("signing_keys_loaded", crate::audit::Outcome::Success)
        .field("kid", keys.kid())
        .field("published_kids", published)
        .emit();
    let service =
        TokenService::new(config, store.clone(), keys, PasswordHasherPool::default()).await?;
    let mut endpoints = service.endpoints();
    endpoints.push(Arc::new(crate::users::UsersEndpoint(service.clone())));
    Ok(Mounted {
        readiness: Arc::new(crate::store::StoreReadiness(store.clone())),
        service,
        store,
        endpoints,
    })
}

/// The authenticator `tollgate serve` runs: [`build`] with the token service's key set,
/// store and revocation list (which follows the store's revocation events).
pub fn authenticator_with_token_service(
    config: &Config,
    tokens: &Mounted,
) -> Result<Arc<dyn authn::Authenticator>, authn::setup::SetupError> {
    let mut parts = AuthnParts::with_keys(tokens.service.keys.clone());
    parts.store = Some(tokens.store.clone());
    parts.revocations = Some(tokens.service.revocations.clone());
    Ok(Arc::new(authn::build(config, parts)?))
}
