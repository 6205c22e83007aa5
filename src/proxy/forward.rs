//! The pooled upstream client: target choice (round robin with passive ejection), URI
//! rewrite, streaming bodies both ways, retries for idempotent body-less requests,
//! connect and response timeouts, and WebSocket upgrades.

use std::collections::HashMap;
use std::ops::Not;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::request::Parts;
use http::{Method, Request, Response, StatusCode, Uri};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_rustls::{
    DefaultServerNameResolver, FixedServerNameResolver, HttpsConnector, ResolveServerName,
};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::error::GatewayError;
use super::headers::remove_hop_by_hop;
use super::upstream_tls::{tls_failure, UpstreamTls};
use crate::config::raw::UpstreamProtocol;
use crate::config::{TargetSpec, UpstreamSpec, UpstreamTlsSpec};
use crate::http::body::{self, Body, BoxError};

pub type HttpClient = Client<HttpsConnector<HttpConnector>, Body>;

/// What makes two upstreams' connections interchangeable: they share client pools when
/// these agree.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    connect_timeout: Duration,
    protocol: UpstreamProtocol,
    /// `None` for `http://` targets.
    tls: Option<UpstreamTlsSpec>,
}

/// Upstream clients shared across config reloads, one set per [`ClientKey`] (connect
/// timeout, protocol, TLS settings), so a reload keeps the warm connection pools. Each set
/// has one client per serving worker plus one for every other thread: a worker's upstream
/// connections then live on its own event loop and its pool is never contended (see
/// `server::workers`).
pub struct ClientCache {
    slots: usize,
    clients: Mutex<HashMap<ClientKey, ClientSet>>,
}

struct ClientSet {
    clients: WorkerClients,
    /// Re-reads the CA bundle and client certificate when their files change.
    _watch: Option<crate::config::reload::FileWatch>,
}

/// Idle upstream connections kept per target and worker (like nginx's `keepalive 128`):
/// a burst of concurrent requests opens as many upstream connections as it needs, but
/// only this many stay open afterwards, so a burst does not leave thousands of idle
/// upstream connections (and their buffers) behind.
const MAX_IDLE_PER_TARGET: usize = 128;

/// One client per serving worker; index 0 serves threads that are not workers.
pub type WorkerClients = Arc<[HttpClient]>;

impl Default for ClientCache {
    fn default() -> Self {
        ClientCache::new(0)
    }
}

impl ClientCache {
    /// A cache for `workers` serving workers.
    pub fn new(workers: usize) -> Self {
        ClientCache {
            slots: workers + 1,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The clients for an upstream with these settings, made on first use.
    pub fn get(&self, spec: &UpstreamSpec) -> WorkerClients {
        let key = ClientKey {
            connect_timeout: spec.connect_timeout,
            protocol: spec.protocol,
            tls: spec.tls.clone(),
        };
        let mut map = self.clients.lock().expect("client cache lock");
        if let Some(set) = map.get(&key) {
            return set.clients.clone();
        }
        let set = self.make(&key);
        let clients = set.clients.clone();
        map.insert(key, set);
        clients
    }

    fn make(&self, key: &ClientKey) -> ClientSet {
        let (tls_config, server_name, watch) = match &key.tls {
            None => (UpstreamTls::unused(), None, None),
            Some(spec) => match UpstreamTls::new(spec, key.protocol) {
                Ok(tls) => {
                    let tls = Arc::new(tls);
                    let watch = watch_tls_files(spec, &tls);
                    (tls.config.clone(), tls.server_name.clone(), watch)
                }
                Err(e) => {
                    // Fail closed: this upstream's handshakes verify nothing.
                    tracing::error!(error = %e, "upstream TLS settings not usable; its requests will fail");
                    (UpstreamTls::unused(), None, None)
                }
            },
        };
        let h2_only = matches!(key.protocol, UpstreamProtocol::H2 | UpstreamProtocol::H2c);
        let clients = (0..self.slots)
            .map(|_| {
                let mut conn = HttpConnector::new();
                conn.set_connect_timeout(Some(key.connect_timeout));
                conn.set_nodelay(true);
                // The TLS layer checks the scheme: plain for http://, TLS for https://.
                conn.enforce_http(false);
                let resolver: Arc<dyn ResolveServerName + Send + Sync> = match &server_name {
                    Some(n) => Arc::new(FixedServerNameResolver::new(n.clone())),
                    None => Arc::new(DefaultServerNameResolver::default()),
                };
                let https =
                    HttpsConnector::new(conn, tls_config.clone(), key.tls.is_some(), resolver);
                let mut builder = Client::builder(TokioExecutor::new());
                builder
                    .pool_idle_timeout(Duration::from_secs(90))
                    .pool_max_idle_per_host(MAX_IDLE_PER_TARGET)
                    .pool_timer(TokioTimer::new());
                if h2_only {
                    builder.http2_only(true);
                }
                builder.build(https)
            })
            .collect();
        ClientSet {
            clients,
            _watch: watch,
        }
    }
}

/// Watches an upstream's CA bundle and client certificate files, reloading them on change.
/// Only inside a tokio runtime (`check` and `route` build none and need no reload).
fn watch_tls_files(
    spec: &UpstreamTlsSpec,
    tls: &Arc<UpstreamTls>,
) -> Option<crate::config::reload::FileWatch> {
    let files = UpstreamTls::watched_files(spec);
    if files.is_empty() || tokio::runtime::Handle::try_current().is_err() {
        return None;
    }
    match crate::config::reload::watch_files(&files) {
        Ok((watch, mut rx)) => {
            let tls = tls.clone();
            tokio::spawn(async move {
                while rx.recv().await.is_some() {
                    tls.reload();
                }
            });
            Some(watch)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch upstream TLS files; changes need a restart");
            None
        }
    }
}

/// The client of the calling thread's worker.
fn client_for_this_thread(clients: &WorkerClients) -> &HttpClient {
    let slot = crate::server::workers::current().map_or(0, |w| w + 1);
    clients.get(slot).unwrap_or(&clients[0])
}

fn now_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_millis() as u64
}

struct Target {
    spec: TargetSpec,
    /// The `Host` header sent to this target, made once instead of per request; `None`
    /// when the connection may be HTTP/2, where `:authority` (from the URI) carries it and
    /// a second `host` is refused by some servers (nginx answers 400). The pooled client
    /// adds `Host` itself on HTTP/1.1 connections.
    host: Option<http::HeaderValue>,
    consecutive_failures: AtomicU32,
    ejected_until_ms: AtomicU64,
}

/// One route's upstream: its targets and the shared client.
pub struct Upstream {
    targets: Vec<Target>,
    next: AtomicUsize,
    clients: WorkerClients,
    timeout: Duration,
    retries: u32,
    eject_after: u32,
    eject_for: Duration,
}

/// What `forward` needs to know beyond the request itself.
pub struct ForwardRequest {
    pub parts: Parts,
    pub body: Body,
    /// The normalised path to send (after `strip_prefix`), without query.
    pub path: String,
    /// The query to send (after removing a query token), without `?`.
    pub query: Option<String>,
    /// Present when the client asked for a protocol upgrade (WebSocket).
    pub upgrade: Option<hyper::upgrade::OnUpgrade>,
    /// Close an upgraded connection at this instant (token expiry); `None` keeps it open.
    pub close_at: Option<tokio::time::Instant>,
    /// Close an upgraded connection when this resolves (the token was revoked).
    pub close_on: Option<crate::revocation::RevokedFuture>,
}

impl Upstream {
    pub fn new(spec: &UpstreamSpec, clients: &ClientCache) -> Self {
        Upstream {
            targets: spec
                .targets
                .iter()
                .map(|t| Target {
                    host: may_be_http2(spec).not().then(|| host_header(t)),
                    spec: t.clone(),
                    consecutive_failures: AtomicU32::new(0),
                    ejected_until_ms: AtomicU64::new(0),
                })
                .collect(),
            next: AtomicUsize::new(0),
            clients: clients.get(spec),
            timeout: spec.timeout,
            retries: spec.retries,
            eject_after: spec.eject_after,
            eject_for: spec.eject_for,
        }
    }

    /// Round robin over targets that are not ejected; when all are ejected, plain round
    /// robin (trying is better than refusing outright).
    fn pick(&self) -> &Target {
        let n = self.targets.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        if n == 1 {
            return &self.targets[0];
        }
        let now = now_ms();
        for i in 0..n {
            let t = &self.targets[(start + i) % n];
            if t.ejected_until_ms.load(Ordering::Relaxed) <= now {
                return t;
            }
        }
        &self.targets[start % n]
    }

    fn record(&self, t: &Target, ok: bool) {
        if ok {
            if t.consecutive_failures.load(Ordering::Relaxed) != 0 {
                t.consecutive_failures.store(0, Ordering::Relaxed);
            }
            return;
        }
        let failures = t.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= self.eject_after && self.targets.len() > 1 {
            t.ejected_until_ms.store(
                now_ms() + self.eject_for.as_millis() as u64,
                Ordering::Relaxed,
            );
            t.consecutive_failures.store(0, Ordering::Relaxed);
            tracing::warn!(target = %t.spec, for_ms = self.eject_for.as_millis() as u64, "upstream target ejected after consecutive failures");
            metrics::counter!("tollgate_upstream_ejections_total").increment(1);
        }
    }

    fn uri_for(t: &TargetSpec, path: &str, query: Option<&str>) -> Result<Uri, GatewayError> {
        let mut s = String::with_capacity(
            t.authority.as_str().len()
                + t.base_path.len()
                + path.len()
                + 16
                + query.map_or(0, |q| q.len() + 1),
        );
        s.push_str(t.scheme.as_str());
        s.push_str("://");
        s.push_str(t.authority.as_str());
        s.push_str(&t.base_path);
        if t.base_path.is_empty() || path != "/" {
            s.push_str(path);
        }
        if let Some(q) = query {
            s.push('?');
            s.push_str(q);
        }
        Uri::try_from(s).map_err(|_| GatewayError::BadPath)
    }

    /// Sends the request upstream and returns the upstream's response head with its body
    /// streaming behind it.
    pub async fn forward(&self, req: ForwardRequest) -> Result<Response<Body>, GatewayError> {
        let ForwardRequest {
            mut parts,
            body,
            path,
            query,
            upgrade,
            close_at,
            close_on,
        } = req;
        // Hop-by-hop request headers were removed by the pipeline before it injected its
        // own (`proxy::handle`), so a `Connection:` list cannot name what it added; it
        // kept `te: trailers`, which gRPC servers require.
        parts.headers.remove(http::header::HOST);
        parts.version = http::Version::HTTP_11;
        // A gRPC deadline shorter than the route's timeout bounds the wait too.
        let timeout = match super::grpc::timeout(&parts.headers) {
            Some(t) if t < self.timeout => t,
            _ => self.timeout,
        };

        let retryable = is_idempotent(&parts.method)
            && HttpBody::is_end_stream(&body)
            && upgrade.is_none()
            && self.retries > 0;
        let attempts = if retryable { 1 + self.retries } else { 1 };
        let mut body = Some(body);
        let mut last_err = GatewayError::UpstreamUnreachable("no attempt made".into());
        for attempt in 0..attempts {
            let target = self.pick();
            let uri = Self::uri_for(&target.spec, &path, query.as_deref())?;
            let mut builder = Request::builder()
                .method(parts.method.clone())
                .uri(uri)
                .version(http::Version::HTTP_11);
            let last = attempt + 1 == attempts;
            // The last attempt moves the headers; earlier ones (body-less by construction)
            // copy them.
            let mut headers = if last {
                std::mem::take(&mut parts.headers)
            } else {
                parts.headers.clone()
            };
            if let Some(host) = &target.host {
                headers.insert(http::header::HOST, host.clone());
            }
            *builder.headers_mut().expect("builder ok") = headers;
            let b = if last {
                body.take().unwrap_or_else(body::empty)
            } else {
                body::empty()
            };
            let upstream_req = builder.body(b).map_err(|_| GatewayError::BadPath)?;
            match tokio::time::timeout(
                timeout,
                client_for_this_thread(&self.clients).request(upstream_req),
            )
            .await
            {
                Ok(Ok(mut resp)) => {
                    self.record(target, true);
                    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                        if let Some(down) = upgrade {
                            let up = hyper::upgrade::on(&mut resp);
                            tokio::spawn(tunnel(down, up, close_at, close_on));
                            let (mut rparts, _) = resp.into_parts();
                            remove_hop_by_hop(&mut rparts.headers, true);
                            return Ok(Response::from_parts(rparts, body::empty()));
                        }
                    }
                    let (mut rparts, rbody) = resp.into_parts();
                    remove_hop_by_hop(&mut rparts.headers, false);
                    return Ok(Response::from_parts(rparts, body::boxed(rbody)));
                }
                Ok(Err(e)) => {
                    if let Some(limit) = body_too_large(&e) {
                        return Err(GatewayError::BodyTooLarge(limit));
                    }
                    self.record(target, false);
                    if let Some(why) = tls_failure(&e) {
                        tracing::warn!(target = %target.spec, attempt, error = %why, "upstream TLS handshake failed: certificate not verified or handshake refused");
                        metrics::counter!("tollgate_upstream_errors_total", "kind" => "tls")
                            .increment(1);
                    } else {
                        tracing::warn!(target = %target.spec, attempt, error = %error_chain(&e), "upstream request failed");
                        metrics::counter!("tollgate_upstream_errors_total", "kind" => "unreachable")
                            .increment(1);
                    }
                    last_err = GatewayError::UpstreamUnreachable(error_chain(&e));
                }
                Err(_) => {
                    self.record(target, false);
                    tracing::warn!(target = %target.spec, timeout_ms = timeout.as_millis() as u64, "upstream timed out");
                    metrics::counter!("tollgate_upstream_errors_total", "kind" => "timeout")
                        .increment(1);
                    return Err(GatewayError::UpstreamTimeout(timeout));
                }
            }
        }
        Err(last_err)
    }
}

/// Whether the upstream's connections may speak HTTP/2: always for h2 and h2c, and for
/// auto over TLS when ALPN picks it.
fn may_be_http2(spec: &UpstreamSpec) -> bool {
    match spec.protocol {
        UpstreamProtocol::H1 => false,
        UpstreamProtocol::H2 | UpstreamProtocol::H2c => true,
        UpstreamProtocol::Auto => spec.tls.is_some(),
    }
}

/// The `Host` header for a target, exactly as the pooled client would write it when the
/// request has none: the host, plus the port unless it is the scheme's default. Made once
/// per target because the client formats (and allocates) it on every request otherwise.
fn host_header(t: &TargetSpec) -> http::HeaderValue {
    let host = t.authority.host();
    let secure = matches!(t.scheme.as_str(), "https" | "wss");
    let value = match t.authority.port_u16() {
        Some(443) if secure => host.to_string(),
        Some(80) if !secure => host.to_string(),
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    http::HeaderValue::from_maybe_shared(Bytes::from(value))
        .expect("an authority is a valid header value")
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// Pipes an upgraded connection both ways until either side closes, `close_at` passes
/// (the token expired) or `close_on` resolves (the token was revoked).
async fn tunnel(
    down: hyper::upgrade::OnUpgrade,
    up: hyper::upgrade::OnUpgrade,
    close_at: Option<tokio::time::Instant>,
    close_on: Option<crate::revocation::RevokedFuture>,
) {
    let (down, up) = match tokio::try_join!(down, up) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let mut down = TokioIo::new(down);
    let mut up = TokioIo::new(up);
    let copy = tokio::io::copy_bidirectional(&mut down, &mut up);
    let expired = async {
        match close_at {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    let revoked = async {
        match close_on {
            Some(f) => f.await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = copy => {}
        _ = expired => tracing::info!("upgraded connection closed: its token expired"),
        _ = revoked => tracing::info!("upgraded connection closed: its token was revoked"),
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn body_too_large(e: &(dyn std::error::Error + 'static)) -> Option<u64> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(b) = c.downcast_ref::<BodyTooLarge>() {
            return Some(b.0);
        }
        cur = c.source();
    }
    None
}

/// The error a [`LimitedBody`] yields once more than its limit has passed through.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds {0} bytes")]
pub struct BodyTooLarge(pub u64);

pin_project_lite::pin_project! {
    /// Streams the inbound body unchanged, failing as soon as it exceeds the route's limit
    /// (for bodies without a `Content-Length`, which are checked up front instead).
    pub struct LimitedBody {
        #[pin]
        inner: Incoming,
        seen: u64,
        limit: u64,
    }
}

impl LimitedBody {
    pub fn new(inner: Incoming, limit: u64) -> Self {
        LimitedBody {
            inner,
            seen: 0,
            limit,
        }
    }
}

impl HttpBody for LimitedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    *this.seen += d.len() as u64;
                    if *this.seen > *this.limit {
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge(*this.limit)))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => Poll::Ready(None),
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

#[cfg(test)]
mod host_header_tests {
    use super::*;

    fn target(s: &str) -> TargetSpec {
        let uri: Uri = s.parse().unwrap();
        TargetSpec {
            scheme: uri.scheme().unwrap().clone(),
            authority: uri.authority().unwrap().clone(),
            base_path: String::new(),
        }
    }

    #[test]
    fn host_header_matches_what_the_client_would_send() {
        for (uri, want) in [
            ("http://127.0.0.1:3000", "127.0.0.1:3000"),
            ("http://127.0.0.1:80", "127.0.0.1"),
            ("http://app.internal", "app.internal"),
            ("https://app.internal:443", "app.internal"),
            ("https://app.internal:80", "app.internal:80"),
            ("http://app.internal:443", "app.internal:443"),
            ("http://[::1]:8080", "[::1]:8080"),
            ("http://user@app.internal:81", "app.internal:81"),
        ] {
            assert_eq!(host_header(&target(uri)), want, "{uri}");
        }
    }
}
