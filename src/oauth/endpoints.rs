//! The token service's [`Endpoint`]s: how each path is recognised, and the envelope
//! (`no-store`, CORS) `App::handle` wraps around their answers.

use std::sync::Arc;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::error::OAuthError;
use super::metadata::{
    AS_METADATA_PATH, INTROSPECT_PATH, JWKS_PATH, OIDC_METADATA_PATH, REVOKE_PATH,
};
use super::TokenService;
use crate::config::dialect;
use crate::config::Config;
use crate::endpoint::{Endpoint, Envelope, RequestCtx};
use crate::http::body::{self, Body};
use crate::http::cors;
use crate::http::error::{Answer, ErrorResponse};
use crate::http::BoxFuture;

/// The token endpoint, at every `token_endpoints` path.
pub struct TokenEndpoint(pub Arc<TokenService>);

impl Endpoint for TokenEndpoint {
    fn matches(&self, _method: &Method, path: &str, config: &Config) -> bool {
        dialect::is_token_path(config, path)
    }

    fn envelope(&self) -> Envelope {
        Envelope::API
    }

    fn call(self: Arc<Self>, req: Request<Incoming>, ctx: RequestCtx) -> BoxFuture<Answer> {
        Box::pin(async move {
            let cfg = ctx.generation.config.clone();
            let dialect = dialect::find(&cfg, &ctx.path).unwrap_or_default();
            // The address the request's audit events name too.
            let ip = ctx.client;
            let mut grant = "unknown";
            let result = if req.method() == Method::POST {
                self.0
                    .token_request(
                        &cfg,
                        &dialect,
                        req,
                        ip,
                        &ctx.conn,
                        ctx.authenticator.binding(),
                        &mut grant,
                    )
                    .await
            } else {
                Err(OAuthError::MethodNotAllowed)
            };
            let label = match &result {
                Ok(_) => "issued",
                Err(e) => e.code(),
            };
            metrics::counter!("tollgate_token_requests_total", "grant" => grant, "result" => label)
                .increment(1);
            result.map_err(|e| e.in_dialect(&dialect).into())
        })
    }
}

/// A POST-only endpoint in the default dialect: 405 for other methods.
async fn post_only<Fut>(
    req: Request<Incoming>,
    handle: impl FnOnce(Request<Incoming>) -> Fut,
) -> Answer
where
    Fut: std::future::Future<Output = Result<Response<Body>, OAuthError>>,
{
    match *req.method() {
        Method::POST => Ok(handle(req).await?),
        _ => Err(OAuthError::MethodNotAllowed.into()),
    }
}

/// `POST /oauth/revoke`.
pub struct RevokeEndpoint(pub Arc<TokenService>);

impl Endpoint for RevokeEndpoint {
    fn matches(&self, _method: &Method, path: &str, _config: &Config) -> bool {
        path == REVOKE_PATH
    }

    fn envelope(&self) -> Envelope {
        Envelope::API
    }

    fn call(self: Arc<Self>, req: Request<Incoming>, ctx: RequestCtx) -> BoxFuture<Answer> {
        let cert = ctx.conn.client_cert.clone();
        Box::pin(post_only(req, move |req| async move {
            self.0.revoke_request(req, cert.as_deref()).await
        }))
    }
}

/// `POST /oauth/introspect`.
pub struct IntrospectEndpoint(pub Arc<TokenService>);

impl Endpoint for IntrospectEndpoint {
    fn matches(&self, _method: &Method, path: &str, _config: &Config) -> bool {
        path == INTROSPECT_PATH
    }

    fn envelope(&self) -> Envelope {
        Envelope::API
    }

    fn call(self: Arc<Self>, req: Request<Incoming>, ctx: RequestCtx) -> BoxFuture<Answer> {
        let authenticator = ctx.authenticator;
        let cert = ctx.conn.client_cert.clone();
        Box::pin(post_only(req, move |req| async move {
            self.0
                .introspect_request(&*authenticator, req, cert.as_deref())
                .await
        }))
    }
}

/// JWKS and the discovery documents: public, cacheable for a few minutes.
pub struct MetadataEndpoint(pub Arc<TokenService>);

impl Endpoint for MetadataEndpoint {
    fn matches(&self, _method: &Method, path: &str, _config: &Config) -> bool {
        matches!(path, JWKS_PATH | AS_METADATA_PATH | OIDC_METADATA_PATH)
    }

    /// Public documents: CORS, but cacheable.
    fn envelope(&self) -> Envelope {
        Envelope {
            cors_methods: Some(cors::ALLOW_METHODS),
            no_store: false,
        }
    }

    fn call(self: Arc<Self>, req: Request<Incoming>, ctx: RequestCtx) -> BoxFuture<Answer> {
        Box::pin(async move {
            if req.method() != Method::GET && req.method() != Method::HEAD {
                return Err(MetadataError::MethodNotAllowed.into());
            }
            let mut resp = if ctx.path == JWKS_PATH {
                body::json(StatusCode::OK, self.0.keys.jwks())
            } else {
                let cfg = &ctx.generation.config;
                let grants = self
                    .0
                    .enabled_grants(cfg)
                    .await
                    .map_err(MetadataError::Store)?;
                body::json(StatusCode::OK, &self.0.metadata(cfg, &grants))
            };
            resp.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            );
            Ok(resp)
        })
    }
}

/// The one way a metadata request fails.
#[derive(Debug, thiserror::Error)]
enum MetadataError {
    #[error("method not allowed")]
    MethodNotAllowed,
    /// No route publishes metadata for the resource path asked.
    #[error("no such protected resource")]
    NoResource,
    /// The grants in use are read from the store.
    #[error("store unavailable: {0}")]
    Store(#[from] crate::store::StoreError),
}

impl ErrorResponse for MetadataError {
    fn status(&self) -> StatusCode {
        match self {
            MetadataError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            MetadataError::NoResource => StatusCode::NOT_FOUND,
            MetadataError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            MetadataError::MethodNotAllowed => "method_not_allowed",
            MetadataError::NoResource => "not_found",
            MetadataError::Store(_) => "store_unavailable",
        }
    }
    fn response(&self) -> Response<Body> {
        if let MetadataError::NoResource = self {
            return body::json_error(
                self.status(),
                "not_found",
                "no protected resource is described at this path",
            );
        }
        if let MetadataError::Store(_) = self {
            return body::json_error(
                self.status(),
                "temporarily_unavailable",
                "Try again shortly",
            );
        }
        let mut r = body::json_error(self.status(), "invalid_request", "Use GET");
        r.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, OPTIONS"),
        );
        r
    }
}

/// `POST /oauth/register` (RFC 7591) and `GET /oauth/register/{client_id}` (RFC 7592).
pub struct RegisterEndpoint(pub Arc<TokenService>, pub super::register::Registrations);

impl Endpoint for RegisterEndpoint {
    fn matches(&self, _method: &Method, path: &str, _config: &Config) -> bool {
        path == super::register::REGISTER_PATH
            || path
                .strip_prefix(super::register::REGISTER_PATH)
                .is_some_and(|rest| rest.starts_with('/'))
    }

    fn envelope(&self) -> Envelope {
        Envelope::API
    }

    fn call(self: Arc<Self>, req: Request<Incoming>, ctx: RequestCtx) -> BoxFuture<Answer> {
        Box::pin(async move {
            let cfg = ctx.generation.config.clone();
            Ok(self
                .0
                .registration(&cfg, &self.1, req, ctx.client, &ctx.path)
                .await?)
        })
    }
}

/// `GET /.well-known/oauth-protected-resource[/path]` (RFC 9728): the metadata of the
/// route whose `resource.id` has that path.
pub struct ResourceMetadataEndpoint(pub Arc<TokenService>);

impl Endpoint for ResourceMetadataEndpoint {
    fn matches(&self, _method: &Method, path: &str, _config: &Config) -> bool {
        crate::proxy::challenge::metadata_suffix(path).is_some()
    }

    fn envelope(&self) -> Envelope {
        Envelope {
            cors_methods: Some(cors::ALLOW_METHODS),
            no_store: false,
        }
    }

    fn call(self: Arc<Self>, req: Request<Incoming>, ctx: RequestCtx) -> BoxFuture<Answer> {
        Box::pin(async move {
            if req.method() != Method::GET && req.method() != Method::HEAD {
                return Err(MetadataError::MethodNotAllowed.into());
            }
            let cfg = &ctx.generation.config;
            let suffix = crate::proxy::challenge::metadata_suffix(&ctx.path).unwrap_or_default();
            let Some(route) = cfg.routes.iter().find(|r| {
                r.resource.as_ref().is_some_and(|res| {
                    crate::proxy::challenge::resource_path(&res.id).as_deref() == Some(suffix)
                })
            }) else {
                return Err(MetadataError::NoResource.into());
            };
            let mut resp = body::json(StatusCode::OK, &self.0.resource_metadata(route));
            resp.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            );
            Ok(resp)
        })
    }
}
