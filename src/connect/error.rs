//! How a provider-connect request fails (rendered by `App::handle`, `http::error`). Failures before
//! Tollgate knows a safe integrator URL are JSON errors and are never redirected; failures
//! after it (see [`CallbackFailure`]) go back to the integrator as `status=error`.
//! 5xx bodies stay generic; details go to the log.

use http::{Response, StatusCode};

use crate::http::body::{json_error, Body};
use crate::http::error::ErrorResponse;
use crate::proxy::error::GatewayError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("no access token")]
    Unauthenticated,
    #[error("invalid access token: {0}")]
    InvalidToken(String),
    #[error("token check unavailable: {0}")]
    AuthUnavailable(String),
    #[error("missing parameter {0}")]
    MissingParam(&'static str),
    #[error("redirect_uri is not allowed for this provider")]
    RedirectNotAllowed,
    #[error("unknown, expired or already used state")]
    InvalidState,
    #[error("provider linking is not available: {0}")]
    NotConfigured(String),
    #[error("no such user, or not visible to the caller")]
    NotFound,
    #[error("no such linked provider")]
    NoSuchIdentity,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ConnectError {
    /// The proxy's error for the same failure, so the answers (and `WWW-Authenticate`)
    /// are the ones a proxied route gives.
    fn as_gateway(&self) -> Option<GatewayError> {
        match self {
            ConnectError::Unauthenticated => Some(GatewayError::Unauthenticated),
            ConnectError::InvalidToken(why) => Some(GatewayError::InvalidToken(why.clone())),
            ConnectError::AuthUnavailable(why) => Some(GatewayError::AuthUnavailable(why.clone())),
            _ => None,
        }
    }
}

impl ErrorResponse for ConnectError {
    fn status(&self) -> StatusCode {
        match self {
            ConnectError::Unauthenticated | ConnectError::InvalidToken(_) => {
                StatusCode::UNAUTHORIZED
            }
            ConnectError::MissingParam(_)
            | ConnectError::RedirectNotAllowed
            | ConnectError::InvalidState => StatusCode::BAD_REQUEST,
            ConnectError::NotFound | ConnectError::NoSuchIdentity => StatusCode::NOT_FOUND,
            ConnectError::AuthUnavailable(_)
            | ConnectError::NotConfigured(_)
            | ConnectError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ConnectError::Unauthenticated => "unauthenticated",
            ConnectError::InvalidToken(_) => "invalid_token",
            ConnectError::AuthUnavailable(_) => "auth_unavailable",
            ConnectError::MissingParam(_) => "invalid_request",
            ConnectError::RedirectNotAllowed => "invalid_redirect_uri",
            ConnectError::InvalidState => "invalid_state",
            ConnectError::NotConfigured(_) => "not_configured",
            ConnectError::NotFound => "not_found",
            ConnectError::NoSuchIdentity => "no_such_identity",
            ConnectError::Store(_) => "store_unavailable",
        }
    }

    fn response(&self) -> Response<Body> {
        if let Some(g) = self.as_gateway() {
            return g.response();
        }
        let status = self.status();
        match self {
            ConnectError::MissingParam(name) => json_error(
                status,
                "invalid_request",
                &format!("the `{name}` parameter is required"),
            ),
            ConnectError::RedirectNotAllowed => json_error(
                status,
                "invalid_redirect_uri",
                "redirect_uri is not in this provider's allowed_redirect_uris",
            ),
            ConnectError::InvalidState => json_error(
                status,
                "invalid_state",
                "the state parameter is unknown, expired or already used; start again from the dialog",
            ),
            ConnectError::NotConfigured(_) => json_error(
                status,
                "temporarily_unavailable",
                "provider linking is not configured on this server",
            ),
            // The users API's words, so a probe cannot tell the two APIs' 404s apart.
            ConnectError::NotFound => json_error(status, "not_found", "No such user"),
            ConnectError::NoSuchIdentity => {
                json_error(status, "not_found", "No such linked provider")
            }
            _ => json_error(
                status,
                "temporarily_unavailable",
                "the request could not be completed; try again",
            ),
        }
    }
}

/// Why a callback sent the browser back with `status=error`. The codes are the `error`
/// values integrators see; they name the failure without any provider text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackFailure {
    /// The user declined at the provider, or the provider reported another RFC 6749
    /// §4.1.2.1 error; its code is passed through when it is one of the standard ones.
    Provider(&'static str),
    ExpiredState,
    MissingCode,
    TokenExchangeFailed,
    UserinfoFailed,
    AlreadyLinked,
    /// The callback arrived in a browser other than the one that opened the dialog.
    BrowserMismatch,
    ServerError,
}

impl CallbackFailure {
    pub fn code(self) -> &'static str {
        match self {
            CallbackFailure::Provider(code) => code,
            CallbackFailure::ExpiredState => "expired_state",
            CallbackFailure::MissingCode => "invalid_request",
            CallbackFailure::TokenExchangeFailed => "token_exchange_failed",
            CallbackFailure::UserinfoFailed => "userinfo_failed",
            CallbackFailure::AlreadyLinked => "already_linked",
            CallbackFailure::BrowserMismatch => "browser_mismatch",
            CallbackFailure::ServerError => "server_error",
        }
    }

    /// A provider's `error` value as one of the codes RFC 6749 defines, else
    /// `provider_error`: arbitrary provider text is never reflected to the integrator.
    pub fn from_provider(error: &str) -> CallbackFailure {
        const KNOWN: [&str; 7] = [
            "access_denied",
            "invalid_request",
            "unauthorized_client",
            "unsupported_response_type",
            "invalid_scope",
            "server_error",
            "temporarily_unavailable",
        ];
        CallbackFailure::Provider(
            KNOWN
                .iter()
                .find(|k| **k == error)
                .copied()
                .unwrap_or("provider_error"),
        )
    }
}
