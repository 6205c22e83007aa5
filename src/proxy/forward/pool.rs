//! The upstream clients: pooled, shared across config reloads, one per serving worker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_rustls::{
    DefaultServerNameResolver, FixedServerNameResolver, HttpsConnector, ResolveServerName,
};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::raw::UpstreamProtocol;
use crate::config::{UpstreamSpec, UpstreamTlsSpec};
use crate::http::body::{Body, BoxError};
use crate::proxy::upstream_tls::UpstreamTls;

use super::h1pool::{H1Pool, TargetPool};

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

/// One client per serving worker; index 0 serves threads that are not workers. Plain
/// `http://` upstreams that never speak HTTP/2 get the leaner per-worker HTTP/1.1 pool
/// (`h1pool.rs`); the rest hyper-util's pooled client.
#[derive(Clone)]
pub enum WorkerClients {
    Pooled(Arc<[HttpClient]>),
    Http1(Arc<[Arc<H1Pool>]>),
}

impl WorkerClients {
    /// Whether requests carry an origin-form URI (path and query) rather than an
    /// absolute one.
    pub(super) fn origin_form(&self) -> bool {
        matches!(self, WorkerClients::Http1(_))
    }

    /// The clients of one target, per worker: resolved when the configuration is built,
    /// so a request finds its connections without a lookup keyed by the target.
    pub(super) fn for_target(&self, authority: &http::uri::Authority) -> TargetClients {
        match self {
            WorkerClients::Pooled(c) => TargetClients::Pooled(c.clone()),
            WorkerClients::Http1(p) => {
                TargetClients::Http1(p.iter().map(|pool| pool.target(authority)).collect())
            }
        }
    }
}

/// One target's clients, one per serving worker (index 0 serves threads that are not
/// workers), as [`WorkerClients`].
pub(super) enum TargetClients {
    Pooled(Arc<[HttpClient]>),
    Http1(Box<[Arc<TargetPool>]>),
}

impl TargetClients {
    /// Sends `req` to the target on the calling worker's connections.
    pub(super) async fn send(
        &self,
        req: http::Request<Body>,
    ) -> Result<http::Response<Body>, BoxError> {
        let slot = crate::server::workers::current().map_or(0, |w| w + 1);
        match self {
            TargetClients::Pooled(c) => {
                let client = c.get(slot).unwrap_or(&c[0]);
                match client.request(req).await {
                    Ok(resp) => Ok(resp.map(crate::http::body::boxed)),
                    Err(e) => Err(Box::new(e)),
                }
            }
            TargetClients::Http1(p) => {
                let pool = p.get(slot).unwrap_or(&p[0]);
                pool.send(req).await.map_err(|e| Box::new(e) as BoxError)
            }
        }
    }
}

impl Default for ClientCache {
    fn default() -> Self {
        ClientCache::new(0)
    }
}

impl ClientCache {
    /// A cache for `workers` serving workers.
    pub fn new(workers: usize) -> Self {
        super::register_metrics();
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
        if key.tls.is_none() && !h2_only {
            let pools = (0..self.slots)
                .map(|_| H1Pool::new(key.connect_timeout, MAX_IDLE_PER_TARGET))
                .collect();
            return ClientSet {
                clients: WorkerClients::Http1(pools),
                _watch: watch,
            };
        }
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
            clients: WorkerClients::Pooled(clients),
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
