//! OAuth 2.0 error responses (RFC 6749 §5.2) and the dialect overrides: a configured
//! `invalid_credentials_status` (403 `access_denied` for signInWithPassword), and
//! `WWW-Authenticate: Basic` on `invalid_client` when the client tried HTTP Basic.
//! Descriptions are fixed strings: nothing a client sent, and no secret, is echoed back.

use http::{header, HeaderValue, Response, StatusCode};

use crate::config::dialect::Dialect;
use crate::http::body::{json_error, Body};
use crate::http::error::ErrorResponse;
use crate::store::StoreError;

/// The challenge on every 401 from the token endpoints.
pub const BASIC_CHALLENGE: &str = r#"Basic realm="tollgate", charset="UTF-8""#;

/// What the description of bad user credentials says, in every dialect.
pub const BAD_CREDENTIALS: &str = "Invalid username / password combination";

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// A parameter is missing, repeated, malformed, or conflicts with another.
    #[error("invalid_request: {0}")]
    InvalidRequest(&'static str),
    /// Unknown client, wrong secret, or no client named. `basic`: the client tried HTTP
    /// Basic, so the answer must carry `WWW-Authenticate: Basic`.
    #[error("invalid_client")]
    InvalidClient { basic: bool },
    /// Wrong username or password (the dialect may override status and code).
    #[error("bad credentials")]
    BadCredentials,
    /// A refresh token that is unknown, expired, revoked, reused or issued to another client.
    #[error("invalid_grant: {0}")]
    InvalidGrant(&'static str),
    #[error("unauthorized_client")]
    UnauthorizedClient,
    #[error("unsupported_grant_type")]
    UnsupportedGrantType,
    #[error("invalid_scope")]
    InvalidScope,
    /// RFC 8707: a `resource` this server issues no tokens for, or one the grant does not
    /// cover.
    #[error("invalid_target")]
    InvalidTarget,
    /// RFC 9449 §5: the `DPoP` proof of a token request is invalid, reused, or lacks the
    /// server nonce (the nonce to use, sent in `DPoP-Nonce`).
    #[error("{error}")]
    DpopProof {
        error: crate::authn::dpop::DpopError,
        nonce: Option<String>,
    },
    /// Too many password attempts; retry after this many seconds.
    #[error("throttled")]
    Throttled { retry_after: u64 },
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("server error: {0}")]
    Server(String),
}

impl From<crate::authn::AuthnError> for OAuthError {
    fn from(e: crate::authn::AuthnError) -> Self {
        use crate::authn::{dpop::DpopError, AuthnError};
        match e {
            AuthnError::Proof { error, nonce } => OAuthError::DpopProof { error, nonce },
            AuthnError::Unavailable(m) => OAuthError::Unavailable(m),
            AuthnError::Invalid(_) => OAuthError::DpopProof {
                error: DpopError::Invalid("the DPoP proof was refused"),
                nonce: None,
            },
        }
    }
}

impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => OAuthError::Unavailable(m),
            other => OAuthError::Server(other.to_string()),
        }
    }
}

impl OAuthError {
    /// The metric label of this failure.
    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(_) => "invalid_request",
            OAuthError::InvalidClient { .. } => "invalid_client",
            OAuthError::BadCredentials => "bad_credentials",
            OAuthError::InvalidGrant(_) => "invalid_grant",
            OAuthError::UnauthorizedClient => "unauthorized_client",
            OAuthError::UnsupportedGrantType => "unsupported_grant_type",
            OAuthError::InvalidScope => "invalid_scope",
            OAuthError::InvalidTarget => "invalid_target",
            OAuthError::DpopProof { error, .. } => error.code(),
            OAuthError::Throttled { .. } => "throttled",
            OAuthError::MethodNotAllowed => "method_not_allowed",
            OAuthError::Unavailable(_) => "unavailable",
            OAuthError::Server(_) => "server_error",
        }
    }

    /// This error answered in `dialect`'s words.
    pub fn in_dialect(self, dialect: &Dialect) -> InDialect {
        InDialect {
            error: self,
            credentials_status: dialect.invalid_credentials_status,
        }
    }

    /// Status, `error` code and description, with bad credentials answered with
    /// `credentials_status` when a dialect sets one.
    fn parts(
        &self,
        credentials_status: Option<StatusCode>,
    ) -> (StatusCode, &'static str, &'static str) {
        match self {
            OAuthError::InvalidRequest(d) => (StatusCode::BAD_REQUEST, "invalid_request", d),
            OAuthError::InvalidClient { .. } => (
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "Client authentication failed",
            ),
            OAuthError::BadCredentials => match credentials_status {
                Some(StatusCode::FORBIDDEN) => {
                    (StatusCode::FORBIDDEN, "access_denied", BAD_CREDENTIALS)
                }
                Some(s) => (s, "invalid_grant", BAD_CREDENTIALS),
                None => (StatusCode::BAD_REQUEST, "invalid_grant", BAD_CREDENTIALS),
            },
            OAuthError::InvalidGrant(d) => (StatusCode::BAD_REQUEST, "invalid_grant", d),
            OAuthError::UnauthorizedClient => (
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                "The client is not allowed to use this grant type",
            ),
            OAuthError::UnsupportedGrantType => (
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "The grant type is not supported",
            ),
            OAuthError::InvalidScope => (
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                "The requested scope exceeds what the client may ask for",
            ),
            OAuthError::InvalidTarget => (
                StatusCode::BAD_REQUEST,
                "invalid_target",
                "The resource is unknown, or not one this grant covers",
            ),
            OAuthError::DpopProof { error, .. } => (
                StatusCode::BAD_REQUEST,
                error.code(),
                match error {
                    crate::authn::dpop::DpopError::UseNonce => {
                        "Authorization server requires nonce in DPoP proof"
                    }
                    crate::authn::dpop::DpopError::Invalid(why) => why,
                },
            ),
            OAuthError::Throttled { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "slow_down",
                "Too many sign-in attempts; try again later",
            ),
            OAuthError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request",
                "Use POST",
            ),
            OAuthError::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "The service is temporarily unavailable; try again",
            ),
            OAuthError::Server(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "An unexpected error happened",
            ),
        }
    }

    fn render(&self, credentials_status: Option<StatusCode>) -> Response<Body> {
        let (status, error, description) = self.parts(credentials_status);
        let mut resp = json_error(status, error, description);
        let h = resp.headers_mut();
        match self {
            OAuthError::DpopProof {
                nonce: Some(nonce), ..
            } => {
                if let Some(v) = crate::authn::binding::nonce_header(nonce) {
                    h.insert("dpop-nonce", v);
                }
            }
            OAuthError::InvalidClient { basic: true } => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(BASIC_CHALLENGE),
                );
            }
            OAuthError::Throttled { retry_after } => {
                h.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from((*retry_after).max(1)),
                );
            }
            OAuthError::MethodNotAllowed => {
                h.insert(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"));
            }
            _ => {}
        }
        // Every 401 names a scheme (RFC 7235 §3.1), whatever status a dialect maps to it:
        // HTTP Basic is how clients authenticate at the token endpoint.
        if status == StatusCode::UNAUTHORIZED {
            h.entry(header::WWW_AUTHENTICATE)
                .or_insert(HeaderValue::from_static(BASIC_CHALLENGE));
        }
        resp
    }
}

/// Outside the token endpoint (revoke, introspect) the default dialect's words.
impl ErrorResponse for OAuthError {
    fn status(&self) -> StatusCode {
        self.parts(None).0
    }
    fn code(&self) -> &'static str {
        OAuthError::code(self)
    }
    fn response(&self) -> Response<Body> {
        self.render(None)
    }
}

/// An [`OAuthError`] as the token endpoint of one dialect answers it.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct InDialect {
    pub error: OAuthError,
    credentials_status: Option<StatusCode>,
}

impl ErrorResponse for InDialect {
    fn status(&self) -> StatusCode {
        self.error.parts(self.credentials_status).0
    }
    fn code(&self) -> &'static str {
        self.error.code()
    }
    fn response(&self) -> Response<Body> {
        self.error.render(self.credentials_status)
    }
}
