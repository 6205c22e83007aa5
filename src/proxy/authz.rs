//! The route policy: `none`, `optional`, `required`, plus required scopes and roles.
//! Exactly one decision per request; errors map to 401/403 in `error.rs`.

use crate::http::error::ErrorResponse;
use std::sync::Arc;

use super::error::GatewayError;
use crate::authn::{Authenticator, AuthnError, Identity, TokenRequest};
use crate::config::raw::AuthMode;
use crate::config::AuthPolicy;

/// Every outcome `decide` counts in `tollgate_auth_outcomes_total`, at 0 from the start:
/// the two passes and the code of each refusal `decide_inner` and `authorize` can make.
pub fn register_metrics() {
    let refusals = [
        GatewayError::Unauthenticated,
        GatewayError::InvalidToken(String::new()),
        GatewayError::InsufficientScope,
        GatewayError::AuthUnavailable(String::new()),
    ];
    crate::telemetry::at_zero(|| {
        ["authenticated", "anonymous"]
            .into_iter()
            .chain(refusals.iter().map(|e| e.code()))
            .map(|outcome| metrics::counter!("tollgate_auth_outcomes_total", "outcome" => outcome))
            .collect::<Vec<_>>()
    });
}

/// Applies `policy` to the token the request carried (if any).
///
/// - `none`: the token is not looked at; no identity.
/// - `optional`: no token passes anonymously; a token must be valid.
/// - `required`: a valid token is needed.
///
/// Scopes and roles, when listed, must all be held (scopes) / one must match (roles).
pub async fn decide(
    policy: &AuthPolicy,
    token: Option<&TokenRequest<'_>>,
    authenticator: &dyn Authenticator,
) -> Result<Option<Arc<Identity>>, GatewayError> {
    let result = decide_inner(policy, token, authenticator).await;
    let outcome = match &result {
        Ok(Some(_)) => "authenticated",
        Ok(None) if policy.mode == AuthMode::None => return result,
        Ok(None) => "anonymous",
        Err(e) => e.code(),
    };
    crate::telemetry::trace::record("tollgate.auth", outcome);
    if outcome == "authenticated" {
        // The common case on every protected request: its handle is kept.
        static AUTHENTICATED: std::sync::OnceLock<metrics::Counter> = std::sync::OnceLock::new();
        AUTHENTICATED
            .get_or_init(|| {
                crate::telemetry::metrics(); // the recorder exists before the handle is kept
                metrics::counter!("tollgate_auth_outcomes_total", "outcome" => "authenticated")
            })
            .increment(1);
    } else {
        metrics::counter!("tollgate_auth_outcomes_total", "outcome" => outcome).increment(1);
    }
    result
}

async fn decide_inner(
    policy: &AuthPolicy,
    token: Option<&TokenRequest<'_>>,
    authenticator: &dyn Authenticator,
) -> Result<Option<Arc<Identity>>, GatewayError> {
    let token = match (policy.mode, token) {
        (AuthMode::None, _) => return Ok(None),
        (AuthMode::Optional, None) => return Ok(None),
        (AuthMode::Required, None) => return Err(GatewayError::Unauthenticated),
        (_, Some(t)) => t,
    };
    // A cached token is answered without the boxed future of a full check.
    let result = match authenticator.authenticate_request_now(token) {
        Some(r) => r,
        None => authenticator.authenticate_request(token).await,
    };
    let identity = result.map_err(|e| match e {
        AuthnError::Invalid(why) => {
            // The reason is for operators; the client only learns `invalid_token`.
            tracing::debug!(reason = %why, "bearer token refused");
            GatewayError::InvalidToken(why)
        }
        AuthnError::Unavailable(why) => GatewayError::AuthUnavailable(why),
        AuthnError::Proof { error, nonce } => {
            tracing::debug!(reason = %error, "DPoP proof refused");
            GatewayError::DpopProof { error, nonce }
        }
    })?;
    authorize(policy, &identity)?;
    Ok(Some(identity))
}

/// Scope and role checks for an authenticated identity.
pub fn authorize(policy: &AuthPolicy, identity: &Identity) -> Result<(), GatewayError> {
    if !policy
        .scopes
        .iter()
        .all(|s| identity.scopes.iter().any(|have| have == s))
    {
        return Err(GatewayError::InsufficientScope);
    }
    if !policy.roles.is_empty()
        && !identity
            .role
            .as_ref()
            .is_some_and(|r| policy.roles.iter().any(|want| want == r))
    {
        return Err(GatewayError::InsufficientScope);
    }
    Ok(())
}
