//! HTTP plumbing every feature shares and none owns: body helpers, path normalisation,
//! the client's address behind trusted proxies, CORS, cookies, which fields a head carries, the facts of the connection a request came on, and the two contracts the
//! server needs from whatever it serves ([`Handler`], and the readiness it reports).
//! Nothing here knows about routes, tokens or users; the server (`server/`) depends on
//! this module and on nothing above it.

pub mod body;
pub mod client_addr;
pub mod cookie;
pub mod cors;
pub mod error;
pub mod forwarded_cert;
pub mod framing;
pub mod head;
pub mod host;
pub mod path;
pub mod redirect;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use ::http::{Request, Response};
use hyper::body::Incoming;

use body::Body;

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// `make()`'s future in a box allocated first, so that the future can be built where it
/// will live. `Box::pin(make())` builds it on the stack and copies it into the box: a
/// request's future is several KiB, and that copy was the largest `memcpy` of a proxied
/// request (BENCHMARKS.md, "Twelfth round").
#[inline(always)]
pub fn boxed_in_place<F, T>(make: impl FnOnce() -> F) -> BoxFuture<T>
where
    F: Future<Output = T> + Send + 'static,
{
    let boxed: Box<F> = Box::write(Box::<F>::new_uninit(), make());
    Box::into_pin(boxed)
}

/// Facts about the downstream connection a request arrived on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub scheme: &'static str,
    /// The client certificate the TLS handshake verified (`tls.client_ca`).
    pub client_cert: Option<Arc<ClientCert>>,
}

/// The verified certificate a client presented, as routes and identity headers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// The subject distinguished name, RFC 4514 form (`CN=alice,O=Example`).
    pub subject: String,
    /// SHA-256 of the certificate's DER encoding.
    pub sha256: [u8; 32],
}

/// What the server serves: every request of the public listeners, and `/readyz` of the
/// admin port. `App` is the one implementation; the server knows nothing else of it.
pub trait Handler: Send + Sync + 'static {
    fn handle(self: Arc<Self>, req: Request<Incoming>, conn: ConnInfo)
        -> BoxFuture<Response<Body>>;
    /// `Ok` while the gateway can serve; the reason otherwise. Must answer in bounded time.
    fn readiness(self: Arc<Self>) -> BoxFuture<Result<(), String>>;
}

/// Something `/readyz` must find healthy (the store, for one).
pub trait ReadinessCheck: Send + Sync {
    fn check(&self) -> BoxFuture<Result<(), String>>;
}
