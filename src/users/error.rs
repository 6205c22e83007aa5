//! How a users-API request fails, in the legacy API's words. A caller the proxy would
//! refuse gets the proxy's answer (`GatewayError`); a user the caller may not see is the
//! same 404 as one that does not exist.

use http::{header, HeaderValue, Response, StatusCode};
use serde_json::json;

use super::model::FieldErrors;
use crate::crypto::PasswordError;
use crate::http::body::{self, json_error, Body};
use crate::http::error::ErrorResponse;
use crate::proxy::error::GatewayError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    /// No token, or one that is invalid, foreign, or cannot be checked now.
    #[error(transparent)]
    Caller(#[from] GatewayError),
    /// Missing, or not visible to the caller.
    #[error("no such user")]
    NotFound,
    /// The methods the path allows.
    #[error("method not allowed")]
    MethodNotAllowed(&'static str),
    #[error("registration is closed")]
    RegistrationClosed,
    #[error("only an admin may create users")]
    NotAdmin,
    #[error("request body too large")]
    BodyTooLarge,
    #[error("request body is not a JSON object")]
    NotJson,
    /// Per-field problems, in the legacy `{"errors": {field: [message]}}` shape.
    #[error("invalid fields")]
    Fields(StatusCode, FieldErrors),
    /// The store or the password pool cannot serve now.
    #[error("store or hasher unavailable: {0}")]
    Unavailable(String),
    #[error("server error: {0}")]
    Server(String),
}

impl UsersError {
    /// `field` "has already been taken" (409).
    pub fn taken(field: &'static str) -> UsersError {
        let mut e = FieldErrors::new();
        e.insert(field, vec!["has already been taken".into()]);
        UsersError::Fields(StatusCode::CONFLICT, e)
    }
}

impl From<StoreError> for UsersError {
    fn from(e: StoreError) -> Self {
        UsersError::Unavailable(e.to_string())
    }
}

impl From<PasswordError> for UsersError {
    fn from(e: PasswordError) -> Self {
        match e {
            PasswordError::Busy => UsersError::Unavailable(e.to_string()),
            other => UsersError::Server(other.to_string()),
        }
    }
}

impl ErrorResponse for UsersError {
    fn status(&self) -> StatusCode {
        match self {
            UsersError::Caller(g) => g.status(),
            UsersError::NotFound => StatusCode::NOT_FOUND,
            UsersError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            UsersError::RegistrationClosed | UsersError::NotAdmin => StatusCode::FORBIDDEN,
            UsersError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            UsersError::NotJson => StatusCode::BAD_REQUEST,
            UsersError::Fields(status, _) => *status,
            UsersError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            UsersError::Server(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            UsersError::Caller(g) => g.code(),
            UsersError::NotFound => "not_found",
            UsersError::MethodNotAllowed(_) => "method_not_allowed",
            UsersError::RegistrationClosed => "registration_closed",
            UsersError::NotAdmin => "forbidden",
            UsersError::BodyTooLarge => "request_too_large",
            UsersError::NotJson => "invalid_request",
            UsersError::Fields(..) => "invalid_fields",
            UsersError::Unavailable(_) => "unavailable",
            UsersError::Server(_) => "server_error",
        }
    }

    fn response(&self) -> Response<Body> {
        let status = self.status();
        let (error, description) = match self {
            UsersError::Caller(g) => return g.response(),
            UsersError::Fields(_, errors) => {
                return body::json(status, &json!({ "errors": errors }));
            }
            UsersError::NotFound => ("not_found", "No such user"),
            UsersError::MethodNotAllowed(_) => ("method_not_allowed", "Method not allowed"),
            UsersError::RegistrationClosed => ("registration_closed", "Registration is closed"),
            UsersError::NotAdmin => ("forbidden", "Only an admin may create users"),
            UsersError::BodyTooLarge => ("invalid_request", "The request body is too large"),
            UsersError::NotJson => ("invalid_request", "The request body must be a JSON object"),
            UsersError::Unavailable(_) => (
                "temporarily_unavailable",
                "The service is temporarily unavailable; try again",
            ),
            UsersError::Server(_) => ("server_error", "An unexpected error happened"),
        };
        let mut resp = json_error(status, error, description);
        if let UsersError::MethodNotAllowed(allow) = self {
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        resp
    }
}
