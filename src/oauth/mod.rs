//! The token service: every `token_endpoints` path with its legacy dialect, the
//! password / refresh_token / client_credentials grants, RFC 7009 revocation, RFC 7662
//! introspection, and the discovery documents and JWKS.
//!
//! Threat model: online password guessing (throttled per account and per IP before any
//! hash is computed), user enumeration (unknown users cost a dummy verification and get
//! the same answer as a wrong password), stolen refresh tokens (rotated on every use; a
//! rotated token presented again revokes its whole family), token theft from storage
//! (refresh and opaque tokens are stored only as SHA-256 hashes), client impersonation
//! (secrets compared in constant time or by the password hasher), and leaks through
//! logs or caches (no token, password or secret is logged; every answer is `no-store`).
//!
//! Where `impl TokenService` lives, in the order a token request meets it:
//! - `endpoints.rs`: the `Endpoint`s mounted before the routes (token, revoke, introspect,
//!   discovery and JWKS, RFC 9728 resource metadata, registration);
//! - `request.rs`: the parameters and client credentials, in every dialect's encoding;
//! - `clients.rs`: client authentication (secret, certificate, public), `allows`;
//! - `bind.rs`: what the new tokens are bound to (DPoP proof, certificate) and for
//!   (RFC 8707 resources);
//! - `grants.rs`: `token_request` and the password, refresh and client credentials grants;
//!   `code.rs`: the authorization code grant (and the code and session payloads);
//! - `issue.rs`: minting access, refresh and ID tokens, and the response in the dialect's
//!   shape; `error.rs`: every failure in the dialect's words;
//! - `revoke.rs`, `introspect.rs`: RFC 7009 and RFC 7662;
//! - `metadata.rs`: the discovery documents; `register.rs`: RFC 7591/7592;
//! - `throttle.rs`: login throttling.
//!
//! The dialect a request is answered in is decided once, in `config/dialect.rs`, when the
//! configuration is loaded (`Config::dialects`); `endpoints.rs` looks it up by path.

mod bind;
mod clients;
pub mod code;
mod endpoints;
pub mod error;
mod grants;
mod introspect;
mod issue;
mod metadata;
pub mod register;
pub mod request;
mod revoke;
pub mod throttle;

use std::sync::Arc;

pub use endpoints::{
    IntrospectEndpoint, MetadataEndpoint, RegisterEndpoint, ResourceMetadataEndpoint,
    RevokeEndpoint, TokenEndpoint,
};
pub(crate) use grants::resolve_scope as grants_scope;

use crate::config::Config;
use crate::crypto::PasswordHasherPool;
use crate::endpoint::Endpoint;
use crate::keys::KeySet;
use crate::revocation::RevocationList;
use crate::store::Store;
use throttle::Throttle;

/// Shared state of the token service.
pub struct TokenService {
    pub store: Arc<dyn Store>,
    pub keys: Arc<KeySet>,
    pub hasher: PasswordHasherPool,
    /// Login throttling: in memory, or in the store when it is shared by replicas.
    pub throttle: Arc<dyn Throttle>,
    /// The process's one in-memory revocation list, shared with the proxy's
    /// authenticator: the revoke endpoint applies to it directly.
    pub revocations: Arc<RevocationList>,
}

/// The token service's counters at 0 from the start: each grant's `issued`, sign-in
/// failures and both throttle limits, refresh-token reuse, revocations and introspections
/// by result. Failed token requests appear by their error code with the first one.
fn register_metrics(config: &Config) {
    use crate::config::dialect::GrantType;
    // The hosted login page's outcomes, and the legacy password grant per endpoint: its
    // implied client, or `-` (a series per client appears with that client's first grant).
    crate::telemetry::at_zero(|| {
        ["success", "failure", "throttled", "csrf"]
            .map(|outcome| metrics::counter!("tollgate_logins_total", "outcome" => outcome))
            .into_iter()
            .chain(config.dialects.iter().map(|(_, d)| {
                metrics::counter!(
                    "tollgate_password_grants_total",
                    "client" => d.implied_client.clone().unwrap_or_else(|| "-".into()),
                    "dialect" => d.name.clone()
                )
            }))
            .collect::<Vec<_>>()
    });
    crate::telemetry::at_zero(|| {
        GrantType::ALL
            .map(|g| {
                metrics::counter!("tollgate_token_requests_total", "grant" => g.as_str(), "result" => "issued")
            })
            .into_iter()
            .chain(throttle::Throttled::labels().map(|limit| {
                metrics::counter!("tollgate_login_throttled_total", "limit" => limit)
            }))
            .chain(["revoked", "ignored"].map(|result| {
                metrics::counter!("tollgate_token_revocations_total", "result" => result)
            }))
            .chain(["true", "false"].map(|active| {
                metrics::counter!("tollgate_token_introspections_total", "active" => active)
            }))
            .chain([
                metrics::counter!("tollgate_login_failures_total"),
                metrics::counter!("tollgate_refresh_reuse_total"),
            ])
    });
}

impl TokenService {
    /// Builds the service; loads the revoked `jti`s from the store and follows its
    /// revocation events.
    pub async fn new(
        config: &Config,
        store: Arc<dyn Store>,
        keys: Arc<KeySet>,
        hasher: PasswordHasherPool,
    ) -> Result<Arc<TokenService>, crate::store::StoreError> {
        register_metrics(config);
        let revocations = RevocationList::new();
        revocations
            .follow_store(store.clone(), config.tokens.access.ttl)
            .await?;
        Ok(Arc::new(TokenService {
            throttle: throttle::for_store(
                &config.tokens.login_throttle,
                &config.store.url,
                store.clone(),
            ),
            store,
            keys,
            hasher,
            revocations,
        }))
    }

    /// The endpoints this service answers, to mount before the route table.
    pub fn endpoints(self: &Arc<Self>) -> Vec<Arc<dyn Endpoint>> {
        vec![
            // Before the token endpoints: `GET /oauth/authorize` is the code flow, while
            // `POST /oauth/authorize` stays a token endpoint (the draft-10 dialect).
            Arc::new(crate::signin::SignInEndpoint(self.clone())),
            Arc::new(TokenEndpoint(self.clone())),
            Arc::new(RevokeEndpoint(self.clone())),
            Arc::new(IntrospectEndpoint(self.clone())),
            Arc::new(MetadataEndpoint(self.clone())),
            Arc::new(ResourceMetadataEndpoint(self.clone())),
            Arc::new(RegisterEndpoint(self.clone(), Default::default())),
        ]
    }
}
