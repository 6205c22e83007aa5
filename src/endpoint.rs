//! The endpoints Tollgate answers itself (token service, users API, JWKS, forward-auth,
//! provider connect): the one contract they implement, and what each request hands them.
//! `App::handle` consults them before the route table, so a catch-all route cannot shadow
//! them. They depend on this module, never on `app`, which wires them.

use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response};
use hyper::body::Incoming;

use crate::config::Config;
use crate::http::body::Body;
use crate::http::{BoxFuture, ConnInfo};
use crate::proxy::authn::Authenticator;
use crate::proxy::Generation;

/// Per-request facts handed to an [`Endpoint`].
#[derive(Clone)]
pub struct RequestCtx {
    pub conn: ConnInfo,
    pub request_id: HeaderValue,
    /// The configuration generation the request started with.
    pub generation: Arc<Generation>,
    /// Bearer validation, as on proxied routes.
    pub authenticator: Arc<dyn Authenticator>,
    /// The request path, normalised once by `App::handle` (`http::path`).
    pub path: String,
}

/// An endpoint Tollgate answers itself.
pub trait Endpoint: Send + Sync {
    /// Whether this endpoint serves `path` (already normalised).
    fn matches(&self, method: &Method, path: &str, config: &Config) -> bool;
    fn call(self: Arc<Self>, req: Request<Incoming>, ctx: RequestCtx) -> BoxFuture<Response<Body>>;
}
