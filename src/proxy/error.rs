//! The one place a gateway failure becomes an HTTP answer. 5xx bodies stay generic
//! (details go to the log); every 401 carries `WWW-Authenticate`.

use http::{header, HeaderValue, Response, StatusCode};

use crate::http::body::{json_error, Body};
use crate::http::error::ErrorResponse;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("no route matches the request")]
    NoRoute,
    #[error("malformed request path")]
    BadPath,
    /// A request head that is well-formed HTTP but ambiguous (two `Host` headers).
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("request body larger than {0} bytes")]
    BodyTooLarge(u64),
    #[error("upstream unreachable: {0}")]
    UpstreamUnreachable(String),
    #[error("upstream did not answer within {0:?}")]
    UpstreamTimeout(std::time::Duration),
    #[error("authentication required")]
    Unauthenticated,
    #[error("invalid token: {0}")]
    InvalidToken(String),
    #[error("insufficient scope")]
    InsufficientScope,
    #[error("token could not be checked: {0}")]
    AuthUnavailable(String),
    #[error("rate limit exceeded")]
    RateLimited {
        headers: crate::proxy::ratelimit::RateLimitHeaders,
        retry_after: u64,
    },
    #[error("rate-limit store unavailable and on_error is fail_closed")]
    RateLimitUnavailable,
    #[error("the route requires a verified client certificate")]
    ClientCertRequired,
    /// A DPoP proof missing, invalid, reused, or without the current server nonce.
    #[error("{error}")]
    DpopProof {
        error: crate::authn::dpop::DpopError,
        nonce: Option<String>,
    },
    /// A refusal on a route with its own challenges (protected resource, DPoP).
    #[error("{error}")]
    Challenged {
        error: Box<GatewayError>,
        challenge: std::sync::Arc<super::challenge::RouteChallenge>,
    },
}

impl GatewayError {
    /// Adds the route's challenge parameters to a refusal that carries a challenge.
    pub fn on_route(
        self,
        challenge: Option<&std::sync::Arc<super::challenge::RouteChallenge>>,
    ) -> GatewayError {
        match (challenge, &self) {
            (
                Some(c),
                GatewayError::Unauthenticated
                | GatewayError::InvalidToken(_)
                | GatewayError::InsufficientScope
                | GatewayError::DpopProof { .. },
            ) => GatewayError::Challenged {
                error: Box::new(self),
                challenge: c.clone(),
            },
            _ => self,
        }
    }
}

impl ErrorResponse for GatewayError {
    fn status(&self) -> StatusCode {
        match self {
            GatewayError::NoRoute => StatusCode::NOT_FOUND,
            GatewayError::BadPath | GatewayError::BadRequest(_) => StatusCode::BAD_REQUEST,
            GatewayError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::UpstreamUnreachable(_) => StatusCode::BAD_GATEWAY,
            GatewayError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::Unauthenticated
            | GatewayError::InvalidToken(_)
            | GatewayError::DpopProof { .. } => StatusCode::UNAUTHORIZED,
            GatewayError::Challenged { error, .. } => error.status(),
            GatewayError::InsufficientScope | GatewayError::ClientCertRequired => {
                StatusCode::FORBIDDEN
            }
            GatewayError::AuthUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::RateLimitUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Metric label for the kind of failure.
    fn code(&self) -> &'static str {
        match self {
            GatewayError::NoRoute => "no_route",
            GatewayError::BadPath => "bad_path",
            GatewayError::BadRequest(_) => "bad_request",
            GatewayError::BodyTooLarge(_) => "body_too_large",
            GatewayError::UpstreamUnreachable(_) => "unreachable",
            GatewayError::UpstreamTimeout(_) => "timeout",
            GatewayError::Unauthenticated => "unauthenticated",
            GatewayError::InvalidToken(_) => "invalid_token",
            GatewayError::InsufficientScope => "insufficient_scope",
            GatewayError::AuthUnavailable(_) => "auth_unavailable",
            GatewayError::RateLimited { .. } => "rate_limited",
            GatewayError::RateLimitUnavailable => "rate_limit_unavailable",
            GatewayError::ClientCertRequired => "client_cert_required",
            GatewayError::DpopProof { error, .. } => error.code(),
            GatewayError::Challenged { error, .. } => error.code(),
        }
    }

    fn response(&self) -> Response<Body> {
        let status = self.status();
        let dpop_description;
        let (error, description, www) = match self {
            GatewayError::Challenged { error, challenge } => {
                let mut resp = error.response();
                challenge.apply(error, &mut resp);
                return resp;
            }
            GatewayError::DpopProof { error, .. } => {
                dpop_description = error.to_string();
                (
                    error.code(),
                    dpop_description.as_str(),
                    HeaderValue::from_str(&format!(
                        r#"DPoP realm="tollgate", error="{}", algs="{}""#,
                        error.code(),
                        crate::authn::dpop::ALGS.join(" ")
                    ))
                    .ok(),
                )
            }
            GatewayError::NoRoute => ("not_found", "no route matches this request", None),
            GatewayError::BadPath => ("invalid_request", "the request path is malformed", None),
            GatewayError::BadRequest(why) => ("invalid_request", *why, None),
            GatewayError::BodyTooLarge(_) => (
                "request_too_large",
                "the request body is larger than this route allows",
                None,
            ),
            GatewayError::UpstreamUnreachable(_) => (
                "bad_gateway",
                "the upstream service could not be reached",
                None,
            ),
            GatewayError::UpstreamTimeout(_) => (
                "gateway_timeout",
                "the upstream service did not answer in time",
                None,
            ),
            GatewayError::Unauthenticated => (
                "unauthorized",
                "a bearer token is required",
                Some(HeaderValue::from_static(r#"Bearer realm="tollgate""#)),
            ),
            GatewayError::InvalidToken(_) => (
                "invalid_token",
                "the access token is invalid, expired or revoked",
                Some(HeaderValue::from_static(
                    r#"Bearer realm="tollgate", error="invalid_token", error_description="the access token is invalid, expired or revoked""#,
                )),
            ),
            GatewayError::InsufficientScope => (
                "insufficient_scope",
                "the access token lacks the scope or role this route requires",
                Some(HeaderValue::from_static(
                    r#"Bearer realm="tollgate", error="insufficient_scope""#,
                )),
            ),
            GatewayError::AuthUnavailable(_) => (
                "temporarily_unavailable",
                "the token could not be checked; try again",
                None,
            ),
            GatewayError::RateLimited { .. } => (
                "rate_limited",
                "too many requests; retry after the time in Retry-After",
                None,
            ),
            GatewayError::RateLimitUnavailable => (
                "temporarily_unavailable",
                "the request could not be counted against its rate limit; try again",
                None,
            ),
            GatewayError::ClientCertRequired => (
                "access_denied",
                "this route requires a verified TLS client certificate",
                None,
            ),
        };
        let mut resp = json_error(status, error, description);
        if let Some(w) = www {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, w);
        }
        match self {
            GatewayError::RateLimited {
                headers,
                retry_after,
            } => {
                headers.apply(resp.headers_mut());
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            GatewayError::RateLimitUnavailable => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            GatewayError::DpopProof {
                nonce: Some(nonce), ..
            } => {
                if let Some(v) = crate::authn::binding::nonce_header(nonce) {
                    resp.headers_mut().insert("dpop-nonce", v);
                }
            }
            _ => {}
        }
        resp
    }

    /// A store outage under `fail_closed` is logged by the limiter, once a second.
    fn logged(&self) -> bool {
        self.status().is_server_error() && !matches!(self, GatewayError::RateLimitUnavailable)
    }
}
