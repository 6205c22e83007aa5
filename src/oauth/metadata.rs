//! Discovery: `/.well-known/jwks.json`, `/.well-known/oauth-authorization-server`
//! (RFC 8414) and `/.well-known/openid-configuration` (the same document, for clients
//! that only know OIDC discovery).

use serde_json::{json, Value};

use super::TokenService;
use crate::config::dialect::GrantType;
use crate::config::Config;
use crate::keys::alg_name;
use crate::store::StoreError;

pub const JWKS_PATH: &str = "/.well-known/jwks.json";
pub const AS_METADATA_PATH: &str = "/.well-known/oauth-authorization-server";
pub const OIDC_METADATA_PATH: &str = "/.well-known/openid-configuration";
pub const REVOKE_PATH: &str = "/oauth/revoke";
pub const INTROSPECT_PATH: &str = "/oauth/introspect";

impl TokenService {
    /// The grants some client can use, in a fixed order: the code flow and refresh
    /// always (the sign-in endpoints are always served and registration creates such
    /// clients), then whatever a stored client or a dialect's implied client has.
    pub(super) async fn enabled_grants(
        &self,
        cfg: &Config,
    ) -> Result<Vec<&'static str>, StoreError> {
        let stored = self.store.client_grants().await?;
        let implied = cfg.dialects.iter().any(|(_, d)| d.implied_client.is_some());
        Ok(GrantType::ALL_ADVERTISED
            .iter()
            .filter(|g| {
                matches!(g, GrantType::AuthorizationCode | GrantType::RefreshToken)
                    || stored.iter().any(|s| s == g.as_str())
                    || (implied && **g == GrantType::Password)
                    || cfg
                        .dialects
                        .iter()
                        .any(|(_, d)| d.implied_grant == Some(**g))
            })
            .map(|g| g.as_str())
            .collect())
    }

    /// RFC 9728 §2: one route's protected resource metadata.
    pub(super) fn resource_metadata(&self, route: &crate::config::RouteSpec) -> Value {
        use crate::config::raw::SenderConstraint;
        let Some(res) = &route.resource else {
            return Value::Null;
        };
        let mut doc = json!({
            "resource": res.id,
            "authorization_servers": [self.keys.issuer()],
            "bearer_methods_supported": ["header"],
            "resource_signing_alg_values_supported": [alg_name(self.keys.alg())],
            "dpop_signing_alg_values_supported": crate::authn::dpop::ALGS,
            "dpop_bound_access_tokens_required": route.sender_constraint == SenderConstraint::Dpop,
            "tls_client_certificate_bound_access_tokens": route.sender_constraint == SenderConstraint::Mtls,
        });
        if !res.scopes_supported.is_empty() {
            doc["scopes_supported"] = json!(res.scopes_supported);
        }
        if let Some(d) = &res.documentation {
            doc["resource_documentation"] = json!(d);
        }
        doc
    }

    pub(super) fn metadata(&self, cfg: &Config, grants: &[&str]) -> Value {
        let issuer = self.keys.issuer().trim_end_matches('/');
        let paths = || cfg.dialects.iter().map(|(path, _)| path.as_str());
        let token_path = paths()
            .find(|p| *p == "/oauth/token")
            .or_else(|| paths().next())
            .unwrap_or("/oauth/token");
        let mut doc = json!({
            "issuer": self.keys.issuer(),
            "token_endpoint": format!("{issuer}{token_path}"),
            "jwks_uri": format!("{issuer}{JWKS_PATH}"),
            "revocation_endpoint": format!("{issuer}{REVOKE_PATH}"),
            "introspection_endpoint": format!("{issuer}{INTROSPECT_PATH}"),
            "authorization_endpoint": format!("{issuer}{}", crate::signin::AUTHORIZE_PATH),
            "userinfo_endpoint": format!("{issuer}{}", crate::signin::USERINFO_PATH),
            "end_session_endpoint": format!("{issuer}{}", crate::signin::LOGOUT_PATH),
            "grant_types_supported": grants,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": true,
            "scopes_supported": ["openid", "profile", "email"],
            "prompt_values_supported": ["none", "login"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none", "tls_client_auth", "self_signed_tls_client_auth"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "token_endpoint_auth_signing_alg_values_supported": [alg_name(self.keys.alg())],
            "id_token_signing_alg_values_supported": [alg_name(self.keys.alg())],
            "subject_types_supported": ["public"],
            "dpop_signing_alg_values_supported": crate::authn::dpop::ALGS,
            "tls_client_certificate_bound_access_tokens": true,
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "azp", "amr", "jti", "scope", "client_id", "email", "email_verified", "preferred_username", "role", "alias", "cnf"],
        });
        if cfg.client_registration != crate::config::raw::ClientRegistration::Closed {
            doc["registration_endpoint"] =
                json!(format!("{issuer}{}", super::register::REGISTER_PATH));
        }
        doc
    }
}
