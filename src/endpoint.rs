//! The endpoints Tollgate answers itself (token service, users API, JWKS, forward-auth,
//! provider connect): the one contract they implement, and what each request hands them.
//! `App::handle` consults them before the route table, so a catch-all route cannot shadow
//! them. They depend on this module, never on `app`, which wires them.

use std::sync::Arc;

use http::{HeaderValue, Method, Request};
use hyper::body::Incoming;

use crate::authn::Authenticator;
use crate::config::Config;
use crate::http::error::Answer;
use crate::http::{BoxFuture, ConnInfo};
use crate::proxy::Generation;

/// Per-request facts handed to an [`Endpoint`].
#[derive(Clone)]
pub struct RequestCtx {
    pub conn: ConnInfo,
    /// The client's address (`http::client_addr`), decided once in `App::handle`: what
    /// the login throttle counts, and what the request's audit events and access log name.
    pub client: std::net::IpAddr,
    pub request_id: HeaderValue,
    /// The configuration generation the request started with.
    pub generation: Arc<Generation>,
    /// Bearer validation, as on proxied routes.
    pub authenticator: Arc<dyn Authenticator>,
    /// The request path, normalised once by `App::handle` (`http::path`).
    pub path: String,
}

/// What `App::handle` wraps around every answer of an endpoint, so no endpoint repeats
/// the preamble. The default is nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Envelope {
    /// Browser-facing: `OPTIONS` is answered as a CORS preflight allowing these methods
    /// (the endpoint never sees it), and every answer, failures included, gets the CORS
    /// headers `cors.allow_origins` grants.
    pub cors_methods: Option<&'static str>,
    /// `Cache-Control: no-store` on every answer: tokens and personal data.
    pub no_store: bool,
}

impl Envelope {
    /// The token service and the users API: CORS, never cached.
    pub const API: Envelope = Envelope {
        cors_methods: Some(crate::http::cors::ALLOW_METHODS),
        no_store: true,
    };
}

/// An endpoint Tollgate answers itself. A failure is returned, not rendered: `App::handle`
/// turns it into the answer and logs it (`http::error`).
pub trait Endpoint: Send + Sync {
    /// Whether this endpoint serves `path` (already normalised).
    fn matches(&self, method: &Method, path: &str, config: &Config) -> bool;
    fn envelope(&self) -> Envelope {
        Envelope::default()
    }
    fn call(self: Arc<Self>, req: Request<Incoming>, ctx: RequestCtx) -> BoxFuture<Answer>;
}
