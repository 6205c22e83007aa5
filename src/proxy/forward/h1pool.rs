//! Plain-HTTP/1.1 upstream connections over hyper's low-level `client::conn::http1`,
//! pooled per serving worker, for `http://` targets that never speak HTTP/2.
//!
//! hyper-util's pooled client does the same job for every kind of upstream, and pays for
//! its generality on each request: a checkout through a shared pool with waiters, a
//! oneshot channel, an absolute URI rewritten to origin form, a spawned task per new
//! connection checked through an executor. Here a worker takes an idle connection from
//! its own list for the target (newest first; the list is found when the configuration
//! is built, not per request), sends, and the connection goes back when the response
//! body has been read to its end. What the pooled client guarantees is kept: a request that a
//! closing connection never sent is sent again on another connection, idle connections
//! are bounded per target and not used after [`IDLE_TIMEOUT`] (they are closed when the
//! pool next touches that target's list, or by the upstream's own keep-alive timeout,
//! whichever comes first), and upgrades (WebSocket) work.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;

use crate::http::body::{Body, BoxError};

/// How long an idle connection is kept (hyper-util's pooled client's default too).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Why a request could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum H1Error {
    #[error("connect: {0}")]
    Connect(#[source] std::io::Error),
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

/// The target lists by authority, looked up only when a configuration is built: a
/// request reaches its list through its target (`Target::clients`), never by a lookup
/// keyed by the target (BENCHMARKS.md, "Per-stage budget").
type Lists = HashMap<http::uri::Authority, Arc<TargetPool>>;

/// One worker's idle connections, per target authority. Shared across reloads (by
/// `ClientCache`), so a target that stays in the configuration keeps its warm
/// connections.
pub struct H1Pool {
    connect_timeout: Duration,
    max_idle: usize,
    lists: Mutex<Lists>,
}

impl H1Pool {
    pub fn new(connect_timeout: Duration, max_idle: usize) -> Arc<H1Pool> {
        Arc::new(H1Pool {
            connect_timeout,
            max_idle,
            lists: Mutex::new(Lists::default()),
        })
    }

    /// The pool of one target on this worker, made on first use.
    pub fn target(&self, authority: &http::uri::Authority) -> Arc<TargetPool> {
        let mut lists = self.lists.lock().expect("pool lock");
        lists
            .entry(authority.clone())
            .or_insert_with(|| {
                Arc::new(TargetPool {
                    authority: authority.clone(),
                    connect_timeout: self.connect_timeout,
                    max_idle: self.max_idle,
                    idle: Mutex::new(Vec::new()),
                })
            })
            .clone()
    }
}

/// One target's connections on one worker: the idle ones, oldest first.
pub struct TargetPool {
    authority: http::uri::Authority,
    connect_timeout: Duration,
    max_idle: usize,
    idle: Mutex<Vec<Idle>>,
}

impl TargetPool {
    /// Sends `req` (origin-form URI, `Host` set) to this target.
    pub async fn send(self: &Arc<Self>, mut req: Request<Body>) -> Result<Response<Body>, H1Error> {
        // Idle connections first; one the upstream closed meanwhile hands the request
        // back unsent, and the next one is tried.
        while let Some(mut sender) = self.take() {
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok(self.finish(sender, resp)),
                Err(mut e) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(e.into_error().into()),
                },
            }
        }
        // Boxed: connecting (DNS, TCP, handshake) is the rare case, and its future is
        // large; inline, every request's future would carry room for it and be copied
        // whole each time it is moved (BENCHMARKS.md, "Per-stage budget").
        let mut sender = Box::pin(self.connect()).await?;
        let resp = sender.send_request(req).await?;
        Ok(self.finish(sender, resp))
    }

    fn take(&self) -> Option<SendRequest<Body>> {
        let mut list = self.idle.lock().expect("pool lock");
        let now = Instant::now();
        while let Some(i) = list.pop() {
            if !i.sender.is_closed() && now.duration_since(i.since) < IDLE_TIMEOUT {
                return Some(i.sender);
            }
        }
        None
    }

    fn put(&self, sender: SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        let mut list = self.idle.lock().expect("pool lock");
        let now = Instant::now();
        let usable = |i: &Idle| !i.sender.is_closed() && now.duration_since(i.since) < IDLE_TIMEOUT;
        // The list is oldest first (`take` pops the newest), and the oldest expires
        // first: while the first is usable and there is room, nothing in the list has
        // expired and it is not walked on every return. One the upstream closed further
        // in (its socket already gone) is dropped by `take` or by the next walk.
        if list.len() >= self.max_idle || list.first().is_some_and(|i| !usable(i)) {
            list.retain(usable);
        }
        if list.len() < self.max_idle {
            list.push(Idle { sender, since: now });
        }
    }

    async fn connect(&self) -> Result<SendRequest<Body>, H1Error> {
        let port = self.authority.port_u16().unwrap_or(80);
        let host = self
            .authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let stream = match tokio::time::timeout(
            self.connect_timeout,
            tokio::net::TcpStream::connect((host, port)),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(H1Error::Connect(e)),
            Err(_) => return Err(H1Error::ConnectTimeout(self.connect_timeout)),
        };
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await?;
        // On a serving worker this runs on the worker's own event loop.
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended with error");
            }
        });
        Ok(sender)
    }

    /// The response, its body returning the connection to the pool once read to its end.
    fn finish(
        self: &Arc<Self>,
        sender: SendRequest<Body>,
        resp: Response<Incoming>,
    ) -> Response<Body> {
        let (parts, body) = resp.into_parts();
        if parts.status == http::StatusCode::SWITCHING_PROTOCOLS {
            // The connection now belongs to the tunnel.
            return Response::from_parts(parts, crate::http::body::boxed(body));
        }
        let body = Returning {
            inner: body,
            back: Some((Arc::downgrade(self), sender)),
            ended: false,
        };
        Response::from_parts(parts, crate::http::body::boxed(body))
    }
}

pin_project_lite::pin_project! {
    /// A response body that hands its connection back when it has been read to its end
    /// (also when it is dropped already ended, as an empty body often is).
    struct Returning {
        #[pin]
        inner: Incoming,
        back: Option<(Weak<TargetPool>, SendRequest<Body>)>,
        ended: bool,
    }

    impl PinnedDrop for Returning {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if *this.ended || this.inner.is_end_stream() {
                if let Some((pool, sender)) = this.back.take() {
                    if let Some(pool) = pool.upgrade() {
                        pool.put(sender);
                    }
                }
            }
        }
    }
}

impl HttpBody for Returning {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Err(e))) => {
                // A broken body leaves the connection unusable.
                this.back.take();
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(Some(Ok(f))) => Poll::Ready(Some(Ok(f))),
            Poll::Ready(None) => {
                *this.ended = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
