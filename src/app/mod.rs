//! Wires the pieces: listeners, the proxy pipeline, the endpoints Tollgate serves itself,
//! live reload, and shutdown. `Gateway::start` is what `tollgate serve` and the
//! integration tests both run.

pub mod wiring;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;

use crate::authn::{Authenticator, RejectAll};
use crate::config::{Config, ConfigError};
use crate::endpoint::{Endpoint, RequestCtx};
use crate::http::body::Body;
use crate::http::cors;
use crate::http::error::ErrorResponse;
use crate::http::{BoxFuture, ConnInfo, Handler, ReadinessCheck};
use crate::proxy::error::GatewayError;
use crate::proxy::forward::ClientCache;
use crate::proxy::headers::{self, X_REQUEST_ID};
use crate::proxy::ratelimit::RateLimiters;
use crate::proxy::{self, Generation, Outcome, Proxy};
use crate::server::workers::{self, Workers};
use crate::server::{self, tls, ServerShared};
use crate::telemetry::{trace, RequestMetrics};
use tracing::Instrument;

/// Request metrics of the endpoints Tollgate serves itself (route label `tollgate`) and
/// of requests no route matched (`-`).
static ENDPOINT_METRICS: OnceLock<Arc<RequestMetrics>> = OnceLock::new();
static NO_ROUTE_METRICS: OnceLock<Arc<RequestMetrics>> = OnceLock::new();

fn endpoint_metrics() -> &'static Arc<RequestMetrics> {
    ENDPOINT_METRICS.get_or_init(|| {
        Arc::new(RequestMetrics::new(metrics::SharedString::const_str(
            "tollgate",
        )))
    })
}

fn no_route_metrics() -> &'static Arc<RequestMetrics> {
    NO_ROUTE_METRICS
        .get_or_init(|| Arc::new(RequestMetrics::new(metrics::SharedString::const_str("-"))))
}

/// The metrics of the gateway's own parts, at 0 before their first event (see
/// `telemetry::at_zero` for why). Parts built elsewhere register their own where they are
/// built: each route and rate limit in `Generation::build_with`, the upstream counters
/// with the `ClientCache`, the connection counters with the server, authenticators,
/// the token service, users API, provider connect and ext_authz with themselves.
fn register_metrics() {
    crate::telemetry::at_zero(|| {
        crate::telemetry::RELOAD_RESULTS.into_iter().flat_map(|r| {
            [
                metrics::counter!("tollgate_config_reloads_total", "result" => r),
                metrics::counter!("tollgate_tls_reloads_total", "result" => r),
            ]
        })
    });
    endpoint_metrics();
    no_route_metrics();
    crate::proxy::authz::register_metrics();
    crate::authn::binding::register_metrics();
    crate::forward_auth::register_metrics();
    crate::audit::register_metrics();
}

/// A request whose body length two parsers could disagree on (RFC 9112 §6.1, §6.3):
/// `Transfer-Encoding` together with `Content-Length`, more than one `Transfer-Encoding`
/// or `Content-Length` field, a length that is not plain digits, or any coding but a lone
/// `chunked`.
fn ambiguous_framing(h: &http::HeaderMap) -> bool {
    // `Content-Length` must be one field of digits only (`5, 5` and `+5` are refused,
    // whatever the HTTP parser made of them).
    let mut cl = h.get_all(http::header::CONTENT_LENGTH).iter();
    if let Some(first) = cl.next() {
        let digits = !first.is_empty() && first.as_bytes().iter().all(u8::is_ascii_digit);
        if !digits || cl.next().is_some() {
            return true;
        }
    }
    let mut te = h.get_all(http::header::TRANSFER_ENCODING).iter();
    match te.next() {
        None => false,
        Some(first) => {
            h.contains_key(http::header::CONTENT_LENGTH)
                || te.next().is_some()
                || !first
                    .as_bytes()
                    .trim_ascii()
                    .eq_ignore_ascii_case(b"chunked")
        }
    }
}

/// An endpoint's answer inside its [`Envelope`]: the CORS preflight, failures rendered,
/// `no-store` and the CORS headers, so no endpoint repeats them.
async fn call_endpoint(
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
fn log_failure(e: &dyn ErrorResponse, request_id: &HeaderValue) {
    if e.logged() {
        tracing::warn!(request_id = ?request_id, error = e.code(), detail = %e, "request failed");
    } else {
        tracing::debug!(request_id = ?request_id, error = e.code(), "request refused");
    }
}

/// The one place a failure of any module becomes an HTTP answer.
fn rescue(e: &dyn ErrorResponse, request_id: &HeaderValue) -> Response<Body> {
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

/// The longest `/readyz` waits on any one check.
pub const READINESS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// What the token service and friends contribute to the gateway.
pub struct Services {
    pub endpoints: Vec<Arc<dyn Endpoint>>,
    pub authenticator: Arc<dyn Authenticator>,
    pub readiness: Vec<Arc<dyn ReadinessCheck>>,
}

impl Services {
    /// Only the proxy and forward-auth: every token is refused, so `required` routes
    /// fail closed.
    pub fn proxy_only() -> Self {
        Services {
            endpoints: vec![Arc::new(crate::forward_auth::ForwardAuthEndpoint)],
            authenticator: Arc::new(RejectAll),
            readiness: Vec::new(),
        }
    }
}

/// The shared state of a running gateway.
pub struct App {
    generation: ArcSwap<Generation>,
    clients: ClientCache,
    limiters: RateLimiters,
    proxy: Proxy,
    endpoints: Vec<Arc<dyn Endpoint>>,
    readiness: Vec<Arc<dyn ReadinessCheck>>,
    loaded: AtomicBool,
}

impl App {
    pub fn generation(&self) -> Arc<Generation> {
        self.generation.load_full()
    }

    pub fn authenticator(&self) -> &Arc<dyn Authenticator> {
        &self.proxy.authenticator
    }

    pub async fn readiness(&self) -> Result<(), String> {
        if !self.loaded.load(Ordering::Relaxed) {
            return Err("configuration not loaded".into());
        }
        // Each check bounds its own wait; this bound holds even for one that forgets, so
        // `/readyz` always answers and an orchestrator can act on it.
        for r in &self.readiness {
            match tokio::time::timeout(READINESS_TIMEOUT, r.check()).await {
                Ok(result) => result?,
                Err(_) => return Err(format!("no answer within {READINESS_TIMEOUT:?}")),
            }
        }
        Ok(())
    }

    /// Re-reads the configuration file and swaps it in whole. On error the running
    /// configuration stays and the error (naming key and line) is returned and logged.
    pub fn reload(&self) -> Result<(), ConfigError> {
        let current = self.generation.load();
        let Some(path) = current.config.source_path.clone() else {
            return Ok(());
        };
        match Config::load(&path) {
            Ok(cfg) => {
                if cfg.listen.http != current.config.listen.http
                    || cfg.listen.https != current.config.listen.https
                    || cfg.listen.admin != current.config.listen.admin
                    || cfg.store.url != current.config.store.url
                {
                    tracing::warn!(
                        "listen addresses and store.url take effect only after a restart"
                    );
                }
                if cfg.telemetry != current.config.telemetry {
                    tracing::warn!("telemetry.tracing takes effect only after a restart");
                }
                if cfg.audit != current.config.audit {
                    if let Err(e) = crate::audit::install(&cfg.audit) {
                        tracing::error!(error = %e, "audit.destination cannot be opened; the audit log stays where it was");
                    }
                }
                let rt = Generation::build_with(Arc::new(cfg), &self.clients, &self.limiters);
                let routes = rt.routes.routes().len();
                self.generation.store(Arc::new(rt));
                crate::audit::event("config_reload", crate::audit::Outcome::Success)
                    .field("routes", routes)
                    .emit();
                metrics::counter!("tollgate_config_reloads_total", "result" => "success")
                    .increment(1);
                tracing::info!(routes, "configuration reloaded");
                Ok(())
            }
            Err(e) => {
                crate::audit::event("config_reload", crate::audit::Outcome::Failure)
                    .reason("invalid_config")
                    .field("problems", e.problems.len())
                    .emit();
                metrics::counter!("tollgate_config_reloads_total", "result" => "failure")
                    .increment(1);
                tracing::error!(error = %e, "configuration reload rejected; the previous configuration stays live");
                Err(e)
            }
        }
    }

    /// Every request enters here: request id, endpoints, the proxy pipeline, and the
    /// metrics and access log on the way out.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>, conn: ConnInfo) -> Response<Body> {
        let request_id = headers::request_id(req.headers());
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
            return self
                .handle_traced(req, conn, rt, client, request_id, None)
                .await;
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
        let trace_id = trace::trace_id(&span);
        self.handle_traced(req, conn, rt, client, request_id, trace_id)
            .instrument(span)
            .await
    }

    /// [`App::handle`] inside the request's span (`trace_id` is set when tracing is on),
    /// with the generation the request keeps to its end.
    async fn handle_traced(
        self: Arc<Self>,
        req: Request<Incoming>,
        conn: ConnInfo,
        rt: Arc<Generation>,
        client: std::net::IpAddr,
        request_id: HeaderValue,
        trace_id: Option<String>,
    ) -> Response<Body> {
        let started = Instant::now();
        let method = req.method().clone();
        let log_path = rt
            .config
            .log
            .access_log
            .then(|| req.uri().path().to_owned());
        let mut outcome = Outcome { route: None };
        let grpc = proxy::grpc::is_grpc(req.headers());
        let peer = conn.peer;

        // Framing hyper reads one way and some upstream or cache may read another (a
        // smuggling vector) is refused before anything else, and the connection closed.
        if ambiguous_framing(req.headers()) {
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
                    trace_id: trace_id.clone(),
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
                            .handle(&rt, req, norm, conn, &request_id, &mut outcome)
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
        if trace_id.is_some() {
            let span = tracing::Span::current();
            span.record("http.response.status_code", status);
            span.record("http.route", route.route());
            span.record("otel.name", format!("{method} {}", route.route()).as_str());
            if status >= 500 {
                span.record("otel.status_code", "error");
            }
        }
        if let Some(path) = log_path {
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

/// What a gRPC ext_authz check reads from the gateway.
impl crate::ext_authz::Decider for App {
    fn generation(&self) -> Arc<Generation> {
        App::generation(self)
    }

    fn authenticator(&self) -> Arc<dyn Authenticator> {
        self.proxy.authenticator.clone()
    }
}

/// The server's view of the gateway.
impl Handler for App {
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        conn: ConnInfo,
    ) -> BoxFuture<Response<Body>> {
        Box::pin(App::handle(self, req, conn))
    }

    fn readiness(self: Arc<Self>) -> BoxFuture<Result<(), String>> {
        Box::pin(async move { App::readiness(&self).await })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("cannot watch files for reload: {0}")]
    Watch(#[from] notify::Error),
    #[error("{0}")]
    Services(String),
    #[error("cannot start the serving threads: {0}")]
    Workers(std::io::Error),
}

/// The TLS acceptor of `tls`, its certificate and client CA re-read when their files
/// change (a bad new file keeps the old one, logged and counted).
fn start_tls(
    tls_cfg: &crate::config::raw::Tls,
    watches: &mut Vec<crate::config::reload::FileWatch>,
) -> Result<tls::TlsAcceptorSource, StartError> {
    let cert = tls::ReloadingCert::load(&tls_cfg.cert, &tls_cfg.key)?;
    // Client certificates: required unless the operator chose optional.
    let client_ca = match &tls_cfg.client_ca {
        Some(ca) => Some(server::client_cert::ReloadingClientVerifier::load(
            ca,
            tls_cfg.client_auth != Some(crate::config::raw::ClientAuth::Optional),
        )?),
        None => None,
    };
    let source = tls::TlsAcceptorSource::new(cert.clone(), client_ca.clone())?;
    let mut files: Vec<_> = cert.paths().map(|p| p.to_path_buf()).to_vec();
    files.extend(client_ca.iter().map(|v| v.path().to_path_buf()));
    let (watch, mut rx) = crate::config::reload::watch_files(&files)?;
    watches.push(watch);
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            if let Some(v) = &client_ca {
                if let Err(e) = v.reload() {
                    tracing::error!(error = %e, "client CA reload failed; the previous bundle stays");
                }
            }
            match cert.reload() {
                Ok(()) => {
                    metrics::counter!("tollgate_tls_reloads_total", "result" => "success")
                        .increment(1);
                    tracing::info!("TLS certificate reloaded");
                }
                Err(e) => {
                    metrics::counter!("tollgate_tls_reloads_total", "result" => "failure")
                        .increment(1);
                    tracing::error!(error = %e, "TLS certificate reload failed; the previous certificate stays");
                }
            }
        }
    });
    Ok(source)
}

/// A running gateway: its bound addresses and the handle to stop it.
pub struct Gateway {
    pub app: Arc<App>,
    pub http_addr: Option<SocketAddr>,
    pub https_addr: Option<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
    pub ext_authz_addr: Option<SocketAddr>,
    shared: ServerShared,
    _watches: Vec<crate::config::reload::FileWatch>,
    /// Declared last so the serving threads stop after everything above is dropped.
    _workers: Workers,
}

impl Gateway {
    /// Binds every listener, starts serving, and watches the config (and TLS files) for
    /// changes.
    pub async fn start(config: Config, services: Services) -> Result<Gateway, StartError> {
        register_metrics();
        let config = Arc::new(config);
        let worker_count = workers::resolve(config.listen.workers);
        let clients = ClientCache::new(worker_count);
        let limiters = RateLimiters::new();
        let generation = Generation::build_with(config.clone(), &clients, &limiters);
        let app = Arc::new(App {
            generation: ArcSwap::from_pointee(generation),
            clients,
            limiters,
            proxy: Proxy {
                authenticator: services.authenticator,
            },
            endpoints: services.endpoints,
            readiness: services.readiness,
            loaded: AtomicBool::new(true),
        });
        let shared = ServerShared::new(config.limits.clone());
        let mut watches = Vec::new();
        let workers = Workers::start(worker_count).map_err(StartError::Workers)?;
        // Every worker accepts on its own duplicate of the listening socket.
        let serve_on_workers = |l: tokio::net::TcpListener,
                                tls: Option<tls::TlsAcceptorSource>,
                                handler: Arc<dyn crate::http::Handler>|
         -> Result<(), StartError> {
            let addr = l.local_addr().map_err(StartError::Workers)?;
            let std = l.into_std().map_err(StartError::Workers)?;
            let mut copies = Vec::with_capacity(workers.len());
            for _ in 0..workers.len() {
                copies.push(Some(
                    std.try_clone()
                        .map_err(|source| StartError::Bind { addr, source })?,
                ));
            }
            workers.spawn_each(|i| {
                let std = copies[i].take().expect("one copy per worker");
                let (handler, shared, tls) = (handler.clone(), shared.clone(), tls.clone());
                async move {
                    match tokio::net::TcpListener::from_std(std) {
                        Ok(l) => server::serve(l, tls, handler, shared).await,
                        Err(e) => tracing::error!(error = %e, "worker cannot use the listener"),
                    }
                }
            });
            Ok(())
        };

        let bind = |addr: SocketAddr| async move {
            server::bind(addr)
                .await
                .map_err(|source| StartError::Bind { addr, source })
        };
        let mut http_addr = None;
        if let Some(addr) = config.listen.http {
            let l = bind(addr).await?;
            http_addr = l.local_addr().ok();
            serve_on_workers(l, None, app.clone())?;
        }
        // One TLS acceptor (certificate, client CA, both reloaded when their files change)
        // for every listener that speaks TLS: `https`, and `ext_authz` when `tls` is set.
        let tls_source = match &config.tls {
            Some(tls_cfg) if config.listen.https.is_some() || config.listen.ext_authz.is_some() => {
                Some(start_tls(tls_cfg, &mut watches)?)
            }
            _ => None,
        };
        let mut https_addr = None;
        if let (Some(addr), Some(source)) = (config.listen.https, &tls_source) {
            let l = bind(addr).await?;
            https_addr = l.local_addr().ok();
            serve_on_workers(l, Some(source.clone()), app.clone())?;
        }
        // Envoy's ext_authz: TLS as above when the `tls` section is there, h2c otherwise.
        let mut ext_authz_addr = None;
        if let Some(addr) = config.listen.ext_authz {
            let l = bind(addr).await?;
            ext_authz_addr = l.local_addr().ok();
            serve_on_workers(
                l,
                tls_source.clone(),
                crate::ext_authz::ExtAuthzHandler::new(app.clone()),
            )?;
        }
        let mut admin_addr = None;
        if let Some(addr) = config.listen.admin {
            let l = bind(addr).await?;
            admin_addr = l.local_addr().ok();
            tokio::spawn(server::admin::serve(l, app.clone(), shared.clone()));
        }
        if let Some(path) = &config.source_path {
            let (watch, mut rx) = crate::config::reload::watch_files(std::slice::from_ref(path))?;
            watches.push(watch);
            let app2 = app.clone();
            tokio::spawn(async move {
                while rx.recv().await.is_some() {
                    let _ = app2.reload();
                }
            });
        }
        let show = |a: Option<SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
        tracing::info!(
            http = show(http_addr),
            https = show(https_addr),
            admin = show(admin_addr),
            ext_authz = show(ext_authz_addr),
            routes = config.routes.len(),
            "listening"
        );
        Ok(Gateway {
            app,
            http_addr,
            https_addr,
            admin_addr,
            ext_authz_addr,
            shared,
            _watches: watches,
            _workers: workers,
        })
    }

    /// Stops accepting and waits up to `grace` for in-flight requests. Returns false if
    /// the grace period ran out with connections still open.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.shared.drain(grace).await
    }
}
