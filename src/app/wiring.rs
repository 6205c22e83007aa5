//! Wiring, in one place: opens the store and the signing keys, builds the token service,
//! the users API, provider connect, forward-auth and the authenticator the proxy uses,
//! and hands them to `Gateway::start` as [`Services`]. `tollgate serve`, `demo` and the
//! integration tests all start the gateway through [`build`].

use std::sync::Arc;

use super::Services;
use crate::authn::{self, AuthnParts};
use crate::config::Config;
use crate::crypto::PasswordHasherPool;
use crate::endpoint::Endpoint;
use crate::http::ReadinessCheck;
use crate::keys::{default_key_dir, KeySet};
use crate::oauth::TokenService;
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
    let mut services = proxy_with(config, token_service_parts(&tokens))?;
    // The token service's and users API's endpoints are asked first.
    services.endpoints.splice(0..0, tokens.endpoints);
    // Provider connect: dialog, callback and the identities API, on the same store.
    services.endpoints.extend(crate::connect::endpoints(
        config,
        crate::connect::ConnectStores::from_store(tokens.store.clone()),
    ));
    services.readiness.push(tokens.readiness);
    Ok(services)
}

/// The proxy and forward-auth with bearer validation built from `parts`, and no token
/// service: the seam for tests that hold the key set and the revocation list themselves.
/// [`build`] adds the rest to it.
pub fn proxy_with(config: &Config, parts: AuthnParts) -> Result<Services, WiringError> {
    Ok(Services {
        endpoints: vec![Arc::new(crate::forward_auth::ForwardAuthEndpoint)],
        authenticator: Arc::new(authn::build(config, parts)?),
        readiness: Vec::new(),
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
    crate::users::register_metrics();
    Ok(Mounted {
        readiness: Arc::new(crate::store::StoreReadiness(store.clone())),
        service,
        store,
        endpoints,
    })
}

/// What bearer validation takes from the token service: its key set, its store, and its
/// revocation list (which follows the store's revocation events).
fn token_service_parts(tokens: &Mounted) -> AuthnParts {
    let mut parts = AuthnParts::with_keys(tokens.service.keys.clone());
    parts.store = Some(tokens.store.clone());
    parts.revocations = Some(tokens.service.revocations.clone());
    parts
}
