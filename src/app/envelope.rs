//! What every answer Tollgate gives itself passes through: an endpoint's envelope (CORS
//! preflight, `no-store`, CORS headers), the one place a failure becomes a response, the
//! bearer challenge on every 401, and the request metrics of answers no route owns.

use std::sync::{Arc, OnceLock};

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;

use crate::endpoint::{Endpoint, RequestCtx};
use crate::http::body::Body;
use crate::http::cors;
use crate::http::error::ErrorResponse;
use crate::telemetry::RequestMetrics;

/// Request metrics of the endpoints Tollgate serves itself (route label `tollgate`) and
/// of requests no route matched (`-`).
static ENDPOINT_METRICS: OnceLock<Arc<RequestMetrics>> = OnceLock::new();
static NO_ROUTE_METRICS: OnceLock<Arc<RequestMetrics>> = OnceLock::new();

pub(super) fn endpoint_metrics() -> &'static Arc<RequestMetrics> {
    ENDPOINT_METRICS.get_or_init(|| {
        Arc::new(RequestMetrics::new(metrics::SharedString::const_str(
            "tollgate",
        )))
    })
}

pub(super) fn no_route_metrics() -> &'static Arc<RequestMetrics> {
    NO_ROUTE_METRICS
        .get_or_init(|| Arc::new(RequestMetrics::new(metrics::SharedString::const_str("-"))))
}

/// An endpoint's answer inside its [`Envelope`]: the CORS preflight, failures rendered,
/// `no-store` and the CORS headers, so no endpoint repeats them.
pub(super) async fn call_endpoint(
    ep: Arc<dyn Endpoint>,
    req: Request<Incoming>,
    ctx: RequestCtx,
) -> Response<Body> {
    let envelope = ep.envelope();
    let allow_origins = &ctx.generation.config.cors.allow_origins;
    let cors_request = envelope.cors_methods.map(|methods| {
        (
            methods,
            cors::RequestOrigin::of(req.headers(), allow_origins),
        )
    });
    if let Some((methods, origin)) = &cors_request {
        if req.method() == http::Method::OPTIONS {
            return cors::preflight(origin, methods, req.headers());
        }
    }
    let request_id = ctx.request_id.clone();
    let mut resp = match ep.call(req, ctx).await {
        Ok(r) => r,
        Err(e) => rescue(&*e, &request_id),
    };
    if envelope.no_store {
        cors::no_store(&mut resp);
    }
    if let Some((_, origin)) = cors_request {
        origin.apply(&mut resp);
    }
    challenge_every_401(&mut resp);
    resp
}

/// Logs a failure `App::handle` is about to answer: 5xx with the detail the client never
/// sees, the rest at debug.
pub(super) fn log_failure(e: &dyn ErrorResponse, request_id: &HeaderValue) {
    if e.logged() {
        tracing::warn!(request_id = ?request_id, error = e.code(), detail = %e, "request failed");
    } else {
        tracing::debug!(request_id = ?request_id, error = e.code(), "request refused");
    }
}

/// The one place a failure of any module becomes an HTTP answer.
pub(super) fn rescue(e: &dyn ErrorResponse, request_id: &HeaderValue) -> Response<Body> {
    log_failure(e, request_id);
    let mut resp = e.response();
    challenge_every_401(&mut resp);
    resp
}

/// Every 401 Tollgate answers itself names a scheme (RFC 7235 §3.1): endpoints that set
/// their own (the token endpoints' Basic) keep it; any other gets the bearer challenge.
fn challenge_every_401(resp: &mut Response<Body>) {
    if resp.status() == http::StatusCode::UNAUTHORIZED {
        resp.headers_mut()
            .entry(http::header::WWW_AUTHENTICATE)
            .or_insert(http::HeaderValue::from_static(r#"Bearer realm="tollgate""#));
    }
}
