//! Builds the proxy's authenticator from the configuration and what the rest of the
//! gateway provides (the token service's key set, the store, the revocation feed).

use std::sync::Arc;

use super::composite::CompositeAuthenticator;
use super::jwks::ForeignIssuer;
use super::jwt::{JwtAuthenticator, DEFAULT_CACHE_ENTRIES};
use super::opaque::{OpaqueAuthenticator, RemoteIntrospection, StoreTokens, TokenLookup};
use super::signed::IdentitySigner;
use super::verifier::JwtVerifier;
use crate::config::Config;
use crate::revocation::RevocationList;
use crate::store::Store;

/// What the gateway hands to bearer validation.
#[derive(Default)]
pub struct AuthnParts {
    /// Verifies self-issued JWTs (the token service's key set).
    pub local_jwt: Option<Arc<dyn JwtVerifier>>,
    /// Own opaque tokens are looked up here.
    pub store: Option<Arc<dyn Store>>,
    /// Shared revocation list; a fresh one when absent.
    pub revocations: Option<Arc<RevocationList>>,
    /// Signs the internal identity JWT when `identity_headers.signed_jwt` is set.
    pub signer: Option<Arc<dyn IdentitySigner>>,
}

impl AuthnParts {
    /// Self-issued JWTs verified with `keys`, which also sign the internal identity JWT
    /// (used only when `identity_headers.signed_jwt` is set).
    pub fn with_keys(keys: Arc<crate::keys::KeySet>) -> Self {
        let signer = super::signed::JwtIdentitySigner::new(super::self_issued::KeySetSigner {
            keys: keys.clone(),
            audience: super::signed::INTERNAL_AUDIENCE.to_string(),
        });
        AuthnParts {
            local_jwt: Some(keys),
            signer: Some(Arc::new(signer)),
            ..AuthnParts::default()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    MissingSecret(#[from] super::opaque::MissingSecret),
    #[error("cannot load revocations: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("cannot build the HTTP client for token checks: {0}")]
    Client(String),
}

/// The client used for JWKS and introspection calls.
pub fn http_client() -> Result<reqwest::Client, SetupError> {
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(2))
        .timeout(std::time::Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| SetupError::Client(e.to_string()))
}

/// The composite authenticator for `config`.
pub fn build(config: &Config, parts: AuthnParts) -> Result<CompositeAuthenticator, SetupError> {
    let revocations = parts.revocations.unwrap_or_default();
    let client = http_client()?;

    let mut jwt = JwtAuthenticator::new(revocations.clone(), DEFAULT_CACHE_ENTRIES);
    if let Some(local) = parts.local_jwt {
        jwt = jwt.with_local_issuer(config.tokens.issuer.clone(), local);
    }
    for issuer in &config.jwt_issuers {
        jwt = jwt.with_issuer(
            issuer.issuer.clone(),
            Arc::new(ForeignIssuer::from_config(issuer, client.clone())),
        );
    }

    let mut lookups: Vec<Arc<dyn TokenLookup>> = Vec::new();
    let default_cache = crate::config::raw::IntrospectionCache::default();
    if let Some(store) = parts.store {
        lookups.push(Arc::new(StoreTokens::new(
            store,
            default_cache.ttl,
            default_cache.negative_ttl,
            config.tokens.audience.clone(),
        )));
    }
    let mut max_entries = default_cache.max_entries;
    for c in &config.introspection {
        max_entries = max_entries.max(c.cache.max_entries);
        lookups.push(Arc::new(RemoteIntrospection::from_config(
            c,
            client.clone(),
        )?));
    }
    if !config.introspection.is_empty() {
        max_entries = config
            .introspection
            .iter()
            .map(|c| c.cache.max_entries)
            .max()
            .unwrap_or(max_entries);
    }
    let opaque = OpaqueAuthenticator::new(lookups, max_entries, revocations.clone());

    let binding = super::binding::Binding::from_config(config);
    let mut auth = CompositeAuthenticator::new(revocations, binding)
        .with_jwt(jwt)
        .with_opaque(opaque);
    if let (Some(signer), Some(_)) = (parts.signer, &config.identity.signed_jwt) {
        auth = auth.with_signer(signer);
    }
    Ok(auth)
}
