//! The one contract every module's error type implements, so that `App::handle` is the
//! one place a failure becomes an HTTP answer and the one place 5xx failures are logged.
//! Each module keeps its own error enum (`GatewayError`, `OAuthError`, `UsersError`,
//! `ConnectError`, `ForwardAuthError`) with typed variants; none is matched by its text.

use std::fmt;

use http::{Response, StatusCode};

use crate::http::body::Body;

/// A failure that knows its answer.
pub trait ErrorResponse: fmt::Display + Send + 'static {
    fn status(&self) -> StatusCode;
    /// A short, stable label of the failure for logs and metrics (never client input).
    fn code(&self) -> &'static str;
    /// The answer the client sees: status, headers and body. 5xx bodies stay generic;
    /// the detail is in `Display`, which only the log sees.
    fn response(&self) -> Response<Body>;
    /// Whether `App::handle` logs this failure. By default every 5xx is; a failure that
    /// is logged where it happens, rate-limited, says no.
    fn logged(&self) -> bool {
        self.status().is_server_error()
    }
}

/// Any module's failure on its way to `App::handle`, which renders it.
pub struct Failure(Box<dyn ErrorResponse>);

impl<E: ErrorResponse> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(Box::new(e))
    }
}

impl std::ops::Deref for Failure {
    type Target = dyn ErrorResponse;
    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Failure({}: {})", self.0.code(), self.0)
    }
}

/// What an endpoint answers: a response, or the failure `App::handle` turns into one.
pub type Answer = Result<Response<Body>, Failure>;
