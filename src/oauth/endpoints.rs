//! The token service's [`Endpoint`]s: how each path is recognised and how every answer
//! gets its `no-store` and CORS headers.

use std::sync::Arc;

use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::error::OAuthError;
use super::metadata::{
    AS_METADATA_PATH, INTROSPECT_PATH, JWKS_PATH, OIDC_METADATA_PATH, REVOKE_PATH,
};
use super::throttle::client_ip;
use super::TokenService;
use crate::config::dialect::{self, Dialect};
use crate::config::Config;
use crate::endpoint::{Endpoint, RequestCtx};
use crate::http::body::{self, Body};
use crate::http::cors;
use crate::http::BoxFuture;
use crate::proxy::headers::X_FORWARDED_FOR;

/// Finishes an answer: never cached, CORS per config.
fn finish(resp: Response<Body>, req_headers: &HeaderMap, cfg: &Config) -> Response<Body> {
    cors::finish(resp, req_headers, &cfg.cors.allow_origins)
}

fn log_failure(what: &'static str, e: &OAuthError) {
    match e {
        OAuthError::Server(detail) | OAuthError::Unavailable(detail) => {
            tracing::warn!(endpoint = what, error = e.code(), detail = %detail, "request failed")
        }
        _ => tracing::debug!(endpoint = what, error = e.code(), "request refused"),
    }
}

/// The token endpoint, at every `token_endpoints` path.
pub struct TokenEndpoint(pub Arc<TokenService>);

impl Endpoint for TokenEndpoint {
    fn matches(&self, _method: &Method, path: &str, config: &Config) -> bool {
        dialect::is_token_path(config, path)
    }

    fn call(self: Arc<Self>, req: Request<Incoming>, ctx: RequestCtx) -> BoxFuture<Response<Body>> {
        Box::pin(async move {
            let cfg = ctx.generation.config.clone();
            let headers = req.headers().clone();
            if req.method() == Method::OPTIONS {
                return cors::preflight(&headers, &cfg.cors.allow_origins);
            }
            let dialect = dialect::find(&cfg, &ctx.path).unwrap_or_default();
            let ip = client_ip(
                ctx.conn.peer.ip(),
                headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()),
                &cfg.trusted_proxies,
            );
            let mut grant = "unknown";
            let result = if req.method() == Method::POST {
                self.0
                    .token_request(&cfg, &dialect, req, ip, &mut grant)
                    .await
            } else {
                Err(OAuthError::MethodNotAllowed)
            };
            let resp = match result {
                Ok(r) => {
                    metrics::counter!("tollgate_token_requests_total", "grant" => grant, "result" => "issued")
                        .increment(1);
                    r
                }
                Err(e) => {
                    metrics::counter!("tollgate_token_requests_total", "grant" => grant, "result" => e.code())
                        .increment(1);
                    log_failure("token", &e);
                    e.into_response(&dialect)
                }
            };
            finish(resp, &headers, &cfg)
        })
    }
}

/// Answers a POST-only endpoint in the default dialect: CORS preflight, 405 for other
/// methods, errors logged and rendered, `no-store` and CORS on every answer.
async fn post_only<F, Fut>(
    what: &'static str,
    req: Request<Incoming>,
    ctx: RequestCtx,
    handle: F,
) -> Response<Body>
where
    F: FnOnce(Request<Incoming>) -> Fut,
    Fut: std::future::Future<Output = Result<Response<Body>, OAuthError>>,
{
    let cfg = ctx.generation.config.clone();
    let headers = req.headers().clone();
    let result = match *req.method() {
        Method::OPTIONS => return cors::preflight(&headers, &cfg.cors.allow_origins),
        Method::POST => handle(req).await,
        _ => Err(OAuthError::MethodNotAllowed),
    };
    let resp = result.unwrap_or_else(|e| {
        log_failure(what, &e);
        e.into_response(&Dialect::default())
    });
    finish(resp, &headers, &cfg)
}

/// `POST /oauth/revoke`.
pub struct RevokeEndpoint(pub Arc<TokenService>);

impl Endpoint for RevokeEndpoint {
    fn matches(&self, _method: &Method, path: &str, _config: &Config) -> bool {
        path == REVOKE_PATH
    }

    fn call(self: Arc<Self>, req: Request<Incoming>, ctx: RequestCtx) -> BoxFuture<Response<Body>> {
        Box::pin(post_only("revoke", req, ctx, move |req| async move {
            self.0.revoke_request(req).await
        }))
    }
}

/// `POST /oauth/introspect`.
pub struct IntrospectEndpoint(pub Arc<TokenService>);

impl Endpoint for IntrospectEndpoint {
    fn matches(&self, _method: &Method, path: &str, _config: &Config) -> bool {
        path == INTROSPECT_PATH
    }

    fn call(self: Arc<Self>, req: Request<Incoming>, ctx: RequestCtx) -> BoxFuture<Response<Body>> {
        let authenticator = ctx.authenticator.clone();
        Box::pin(post_only("introspect", req, ctx, move |req| async move {
            self.0.introspect_request(&*authenticator, req).await
        }))
    }
}

/// JWKS and the discovery documents: public, cacheable for a few minutes.
pub struct MetadataEndpoint(pub Arc<TokenService>);

impl Endpoint for MetadataEndpoint {
    fn matches(&self, _method: &Method, path: &str, _config: &Config) -> bool {
        matches!(path, JWKS_PATH | AS_METADATA_PATH | OIDC_METADATA_PATH)
    }

    fn call(self: Arc<Self>, req: Request<Incoming>, ctx: RequestCtx) -> BoxFuture<Response<Body>> {
        Box::pin(async move {
            let cfg = ctx.generation.config.clone();
            let headers = req.headers().clone();
            if req.method() == Method::OPTIONS {
                return cors::preflight(&headers, &cfg.cors.allow_origins);
            }
            let mut resp = if req.method() != Method::GET && req.method() != Method::HEAD {
                let mut r =
                    body::json_error(StatusCode::METHOD_NOT_ALLOWED, "invalid_request", "Use GET");
                r.headers_mut().insert(
                    header::ALLOW,
                    HeaderValue::from_static("GET, HEAD, OPTIONS"),
                );
                r
            } else if ctx.path == JWKS_PATH {
                body::json(StatusCode::OK, self.0.keys.jwks())
            } else {
                body::json(StatusCode::OK, &self.0.metadata(&cfg))
            };
            if resp.status() == StatusCode::OK {
                resp.headers_mut().insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=300"),
                );
            }
            cors::apply(&headers, &cfg.cors.allow_origins, &mut resp);
            resp
        })
    }
}
