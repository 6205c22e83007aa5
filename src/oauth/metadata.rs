//! Discovery: `/.well-known/jwks.json`, `/.well-known/oauth-authorization-server`
//! (RFC 8414) and `/.well-known/openid-configuration` (the same document, for clients
//! that only know OIDC discovery).

use serde_json::{json, Value};

use super::TokenService;
use crate::config::Config;
use crate::keys::alg_name;

pub const JWKS_PATH: &str = "/.well-known/jwks.json";
pub const AS_METADATA_PATH: &str = "/.well-known/oauth-authorization-server";
pub const OIDC_METADATA_PATH: &str = "/.well-known/openid-configuration";
pub const REVOKE_PATH: &str = "/oauth/revoke";
pub const INTROSPECT_PATH: &str = "/oauth/introspect";

impl TokenService {
    pub(super) fn metadata(&self, cfg: &Config) -> Value {
        let issuer = self.keys.issuer().trim_end_matches('/');
        let paths = || cfg.dialects.iter().map(|(path, _)| path.as_str());
        let token_path = paths()
            .find(|p| *p == "/oauth/token")
            .or_else(|| paths().next())
            .unwrap_or("/oauth/token");
        json!({
            "issuer": self.keys.issuer(),
            "token_endpoint": format!("{issuer}{token_path}"),
            "jwks_uri": format!("{issuer}{JWKS_PATH}"),
            "revocation_endpoint": format!("{issuer}{REVOKE_PATH}"),
            "introspection_endpoint": format!("{issuer}{INTROSPECT_PATH}"),
            "authorization_endpoint": format!("{issuer}{}", crate::signin::AUTHORIZE_PATH),
            "userinfo_endpoint": format!("{issuer}{}", crate::signin::USERINFO_PATH),
            "end_session_endpoint": format!("{issuer}{}", crate::signin::LOGOUT_PATH),
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials", "password"],
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": true,
            "scopes_supported": ["openid", "profile", "email"],
            "prompt_values_supported": ["none", "login"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "token_endpoint_auth_signing_alg_values_supported": [alg_name(self.keys.alg())],
            "id_token_signing_alg_values_supported": [alg_name(self.keys.alg())],
            "subject_types_supported": ["public"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "azp", "amr", "jti", "scope", "client_id", "email", "email_verified", "preferred_username", "role", "alias"],
        })
    }
}
