//! Envoy's external authorization over gRPC (`listen.ext_authz`):
//! `envoy.service.auth.v3.Authorization/Check`, as Envoy Gateway, Istio, kgateway,
//! Cilium, Contour and the Gateway API `ExternalAuth` filter (`protocol: GRPC`) call it.
//!
//! A `CheckRequest` becomes a [`RequestView`] (`request.rs`) and gets the one admission
//! decision the proxy and HTTP forward-auth make (`proxy::admission`); `response.rs`
//! writes the answer:
//! - allow: `OK`; the identity headers to set upstream, overwriting any client copy; every
//!   identity header this caller has no value for to remove; the rate-limit headers for the
//!   client's answer;
//! - deny: `UNAUTHENTICATED` (401) or `PERMISSION_DENIED` (403, 429, and 404/413/400 as
//!   403/413/400) with the proxy's own answer as `denied_response`;
//! - cannot decide (introspection or the store down for an uncached token, a fail-closed
//!   rate-limit store): `UNAVAILABLE` with a 503, never `OK`.
//!
//! Threat model: whoever can reach this port can describe any request and read the
//! identity it would get, so it belongs on a network only the ingress reaches (a
//! NetworkPolicy in Kubernetes; see docs/ingress.md). The check itself trusts nothing a
//! client could have put in the request: the route is matched from the request Envoy
//! describes (or named by the route's own `context_extensions`, which only Envoy's
//! configuration sets), and a client certificate is read only from Envoy's
//! `source.certificate`, never from a header.

mod request;
mod response;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use tonic::codec::ProstCodec;

pub use response::Prepared;
use wire::{CheckRequest, CheckResponse};

use crate::authn::Authenticator;
use crate::http::body::{self, Body};
use crate::http::{BoxFuture, ConnInfo, Handler};
use crate::proxy::admission::{self, RouteBy};
use crate::proxy::Generation;

/// The context extension naming the route whose policy applies.
pub const ROUTE_EXTENSION: &str = "tollgate_route";

/// What a check needs from the running gateway: the configuration generation in force and
/// the token validation (`App` in `app/`).
pub trait Decider: Send + Sync + 'static {
    fn generation(&self) -> Arc<Generation>;
    fn authenticator(&self) -> Arc<dyn Authenticator>;
}

/// The outcome label of `tollgate_ext_authz_decisions_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allow,
    Deny,
    Unavailable,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::Allow, Outcome::Deny, Outcome::Unavailable];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::Unavailable => "unavailable",
        }
    }
}

/// Every outcome's counter exists at 0 from the start.
pub fn register_metrics() {
    crate::telemetry::at_zero(|| decisions().clone());
}

/// `tollgate_ext_authz_decisions_total` by outcome, in the order of [`Outcome::ALL`]:
/// resolved once, so counting a check hashes no labels.
fn decisions() -> &'static [metrics::Counter; 3] {
    static COUNTERS: std::sync::OnceLock<[metrics::Counter; 3]> = std::sync::OnceLock::new();
    COUNTERS.get_or_init(|| {
        // The recorder first: a handle made before it would count nowhere.
        crate::telemetry::metrics();
        Outcome::ALL.map(
            |o| metrics::counter!("tollgate_ext_authz_decisions_total", "outcome" => o.label()),
        )
    })
}

impl Outcome {
    fn count(self) {
        decisions()[self as usize].increment(1);
    }
}

/// Decides one check.
pub async fn check(
    rt: &Generation,
    authenticator: &dyn Authenticator,
    req: &CheckRequest,
    grpc_peer: SocketAddr,
) -> CheckResponse {
    let described = match request::Described::read(req, grpc_peer) {
        Ok(d) => d,
        Err(why) => {
            tracing::warn!(reason = why, "ext_authz check request refused");
            Outcome::Deny.count();
            return response::malformed(why);
        }
    };
    let view = described.view();
    let by = match described.route_name() {
        Some(name) => RouteBy::Name(name),
        None => RouteBy::Match,
    };
    let (outcome, resp) = match admission::admit(rt, authenticator, &view, by).await {
        Ok(admitted) => (
            Outcome::Allow,
            response::allow(rt, &admitted, view.headers, described.client_cert()),
        ),
        Err(refusal) => {
            if let (RouteBy::Name(name), None) = (by, refusal.route) {
                // Envoy's configuration names a route this configuration does not have:
                // an operator's mistake, denied until it is fixed.
                tracing::warn!(
                    route = name,
                    "ext_authz: context extension tollgate_route names no route; denied"
                );
            }
            response::deny(refusal.error).await
        }
    };
    outcome.count();
    resp
}

/// The one method served: `envoy.service.auth.v3.Authorization/Check`.
const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

/// `Check` as tonic's unary service: the request decoded into [`wire::CheckRequest`],
/// the answer [`wire::CheckResponse`].
struct Checker {
    decider: Arc<dyn Decider>,
    grpc_peer: SocketAddr,
}

impl tonic::server::UnaryService<CheckRequest> for Checker {
    type Response = CheckResponse;
    type Future = BoxFuture<Result<tonic::Response<CheckResponse>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<CheckRequest>) -> Self::Future {
        let (decider, grpc_peer) = (self.decider.clone(), self.grpc_peer);
        Box::pin(async move {
            let rt = decider.generation();
            let authenticator = decider.authenticator();
            let answer = check(&rt, &*authenticator, request.get_ref(), grpc_peer).await;
            Ok(tonic::Response::new(answer))
        })
    }
}

/// The listener's handler: tonic's gRPC framing (`server::Grpc`: message decoding, size
/// limit, status trailers) over the server's own connections, so the listener keeps the
/// server's connection limits, TLS, timeouts and graceful shutdown.
pub struct ExtAuthzHandler {
    decider: Arc<dyn Decider>,
}

impl ExtAuthzHandler {
    pub fn new(decider: Arc<dyn Decider>) -> Arc<Self> {
        register_metrics();
        Arc::new(ExtAuthzHandler { decider })
    }
}

impl Handler for ExtAuthzHandler {
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        conn: ConnInfo,
    ) -> BoxFuture<Response<Body>> {
        Box::pin(async move {
            if req.uri().path() != CHECK_PATH {
                // What a generated server answers for a method it does not have.
                let mut resp = Response::new(body::empty());
                resp.headers_mut().insert(
                    tonic::Status::GRPC_STATUS,
                    (tonic::Code::Unimplemented as i32).into(),
                );
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    tonic::metadata::GRPC_CONTENT_TYPE,
                );
                return resp;
            }
            let checker = Checker {
                decider: self.decider.clone(),
                grpc_peer: conn.peer,
            };
            let mut grpc =
                tonic::server::Grpc::new(ProstCodec::<CheckResponse, CheckRequest>::default());
            grpc.unary(checker, req).await.map(body::boxed)
        })
    }

    fn readiness(self: Arc<Self>) -> BoxFuture<Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}
