//! Every request enters at [`App::handle`]: its request id and client address, the span,
//! the framing and host checks, then an endpoint Tollgate serves itself or the proxy
//! pipeline, and the metrics and access log on the way out.

use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;

use super::envelope::{call_endpoint, endpoint_metrics, log_failure, no_route_metrics, rescue};
use super::App;
use crate::endpoint::RequestCtx;
use crate::http::body::Body;
use crate::http::head::Fields;
use crate::http::{boxed_in_place, BoxFuture, ConnInfo};
use crate::proxy::error::GatewayError;
use crate::proxy::headers::{self, X_REQUEST_ID};
use crate::proxy::{self, Generation, Outcome};
use crate::telemetry::trace;

impl App {
    /// Every request enters here: request id, endpoints, the proxy pipeline, and the
    /// metrics and access log on the way out. What needs no waiting is done here, and the
    /// request's future is made in its box (`boxed_in_place`): an `async fn` here would be
    /// one more layer of several KiB that every request builds and copies, and a future
    /// built before its box is copied into it (BENCHMARKS.md, "Per-stage budget" and
    /// "Twelfth round"). hyper keeps the box for the request's life.
    pub fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        conn: ConnInfo,
    ) -> BoxFuture<Response<Body>> {
        // Which of the fields looked up below are in the head at all: a lookup of one
        // that is not costs a hash and a probe for nothing (`http::head`).
        let fields = Fields::of(req.headers());
        let request_id = if fields.may_have(Fields::X_REQUEST_ID) {
            headers::request_id(req.headers())
        } else {
            headers::new_request_id()
        };
        let rt = self.generation.load_full();
        // The one client address (`http::client_addr`) that the login throttle, the audit
        // events, the access log and the request span name; rate limits and
        // `X-Forwarded-For` decide it by the same function from the same head.
        let client = crate::http::client_addr::client_addr(
            req.headers(),
            conn.peer.ip(),
            &rt.config.trusted_proxies,
        );
        if !trace::on() {
            return boxed_in_place(|| {
                self.handle_traced(req, fields, conn, rt, client, request_id)
            });
        }
        // The request's span; everything below runs inside it.
        let span = trace::request_span(
            req.method(),
            req.uri().path(),
            req.headers(),
            conn.peer.ip(),
            client,
            &rt.config.trusted_proxies,
            request_id.to_str().unwrap_or("-"),
        );
        boxed_in_place(|| {
            span.instrument_request(self.handle_traced(req, fields, conn, rt, client, request_id))
        })
    }

    /// [`App::handle`] inside the request's span when tracing is on, with the generation
    /// the request keeps to its end. The trace id is read from the span only where it is
    /// written (an endpoint's audit events, the access log): reading it costs more than a
    /// proxied request's own header rewrite.
    async fn handle_traced(
        self: Arc<Self>,
        req: Request<Incoming>,
        fields: Fields,
        conn: ConnInfo,
        rt: Arc<Generation>,
        client: std::net::IpAddr,
        request_id: HeaderValue,
    ) -> Response<Body> {
        let started = Instant::now();
        let method = req.method().clone();
        let log_path = rt
            .config
            .log
            .access_log
            .then(|| req.uri().path().to_owned());
        let mut outcome = Outcome { route: None };
        let grpc = fields.may_have(Fields::CONTENT_TYPE) && proxy::grpc::is_grpc(req.headers());
        let peer = conn.peer;

        // Framing hyper reads one way and some upstream or cache may read another (a
        // smuggling vector) is refused before anything else, and the connection closed.
        if fields.may_have(Fields::CONTENT_LENGTH | Fields::TRANSFER_ENCODING)
            && crate::http::framing::ambiguous(req.headers())
        {
            let mut resp = crate::http::body::json_error(
                http::StatusCode::BAD_REQUEST,
                "invalid_request",
                "ambiguous message framing (Transfer-Encoding with Content-Length, or not just chunked)",
            );
            resp.headers_mut()
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            resp.headers_mut().insert(&X_REQUEST_ID, request_id.clone());
            return resp;
        }

        // The one normalisation of the path: endpoints and the proxy get it handed down.
        let norm = crate::http::path::normalize_path(req.uri().path())
            .ok()
            .map(std::borrow::Cow::into_owned);
        // Which site is meant (RFC 9112 §3.2) is settled before an endpoint or a route
        // is chosen: an HTTP/1.1 request without `Host`, or any with two, goes no further.
        let host = crate::http::host::check(&req);
        let endpoint = norm.as_deref().filter(|_| host.is_ok()).and_then(|p| {
            self.endpoints
                .iter()
                .find(|e| e.matches(&method, p, &rt.config))
                .cloned()
        });
        let mut resp = match (host, endpoint) {
            (Err(e), _) => rescue(&GatewayError::BadRequest(e.0), &request_id),
            (Ok(()), Some(ep)) => {
                outcome.route = Some(endpoint_metrics().clone());
                // Endpoints are where security events happen: they belong to this request.
                let scope = crate::audit::RequestScope {
                    peer_ip: client,
                    request_id: request_id.to_str().unwrap_or("-").to_owned(),
                    trace_id: trace::trace_id(),
                };
                let ctx = RequestCtx {
                    conn,
                    client,
                    request_id: request_id.clone(),
                    generation: rt.clone(),
                    authenticator: self.proxy.authenticator.clone(),
                    path: norm.unwrap_or_default(),
                };
                crate::audit::scope(scope, call_endpoint(ep, req, ctx)).await
            }
            (Ok(()), None) => {
                let result = match norm {
                    Some(norm) => {
                        self.proxy
                            .handle(&rt, req, fields, norm, conn, &request_id, &mut outcome)
                            .await
                    }
                    None => Err(GatewayError::BadPath),
                };
                match result {
                    Ok(r) => r,
                    // A gRPC client reads its failure from the trailers-only answer.
                    Err(e) if grpc => {
                        log_failure(&e, &request_id);
                        proxy::grpc::error_response(&e)
                    }
                    Err(e) => rescue(&e, &request_id),
                }
            }
        };
        resp.headers_mut().insert(&X_REQUEST_ID, request_id.clone());

        let status = resp.status().as_u16();
        let elapsed = started.elapsed();
        let route = outcome.route.unwrap_or_else(|| no_route_metrics().clone());
        route.record(proxy::method_class(&method), status, elapsed);
        if trace::on() {
            let span = trace::current_request();
            span.add("http.response.status_code", i64::from(status));
            span.add("http.route", route.route_value().clone());
            // "GET api", as the conventions name a server span; not `format!`, which
            // costs more than the copies.
            let mut name = String::with_capacity(method.as_str().len() + 1 + route.route().len());
            name.push_str(method.as_str());
            name.push(' ');
            name.push_str(route.route());
            span.set_name(name);
            if status >= 500 {
                span.set_error();
            }
        }
        if let Some(path) = log_path {
            let trace_id = trace::trace_id();
            // Path only: the query may carry a token (`oauth_token=`), so it is never logged.
            tracing::info!(
                target: "tollgate::access",
                route = route.route(),
                method = %method,
                path,
                status,
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                request_id = request_id.to_str().unwrap_or("-"),
                trace_id = trace_id.as_deref(),
                client = %client,
                peer = %peer,
            );
        }
        resp
    }
}
