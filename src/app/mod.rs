//! The gateway as one value: [`App`] holds what every request reads (the live
//! configuration generation, upstream clients, rate limiters, the authenticator, the
//! endpoints Tollgate serves itself) and reloads it; `dispatch` is where each request
//! enters, `envelope` what every answer Tollgate gives itself passes through, `gateway`
//! binds the listeners and starts serving, and `wiring` builds the [`Services`] from the
//! configuration.

mod dispatch;
mod envelope;
mod gateway;
pub mod wiring;

pub use gateway::{Gateway, StartError};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::{Request, Response};
use hyper::body::Incoming;

use crate::authn::{Authenticator, RejectAll};
use crate::config::{Config, ConfigError};
use crate::endpoint::Endpoint;
use crate::http::body::Body;
use crate::http::{BoxFuture, ConnInfo, Handler, ReadinessCheck};
use crate::proxy::forward::ClientCache;
use crate::proxy::ratelimit::RateLimiters;
use crate::proxy::{Generation, Proxy};

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
    fn new(config: Arc<Config>, services: Services, worker_count: usize) -> App {
        let clients = ClientCache::new(worker_count);
        let limiters = RateLimiters::new();
        let generation = Generation::build_with(config, &clients, &limiters);
        App {
            generation: ArcSwap::from_pointee(generation),
            clients,
            limiters,
            proxy: Proxy {
                authenticator: services.authenticator,
            },
            endpoints: services.endpoints,
            readiness: services.readiness,
            loaded: AtomicBool::new(true),
        }
    }

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
        App::handle(self, req, conn)
    }

    fn readiness(self: Arc<Self>) -> BoxFuture<Result<(), String>> {
        Box::pin(async move { App::readiness(&self).await })
    }
}
