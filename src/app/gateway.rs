//! Starting a gateway: its listeners bound and served on the worker threads, the TLS
//! acceptor shared by every listener that speaks TLS, and the file watches that reload the
//! configuration and certificates. `Gateway::start` is what `tollgate serve` and the
//! integration tests both run.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::{App, Services};
use crate::config::reload::FileWatch;
use crate::config::Config;
use crate::http::Handler;
use crate::server::workers::{self, Workers};
use crate::server::{self, tls, ServerShared};

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
    super::envelope::endpoint_metrics();
    super::envelope::no_route_metrics();
    crate::proxy::authz::register_metrics();
    crate::authn::binding::register_metrics();
    crate::forward_auth::register_metrics();
    crate::audit::register_metrics();
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
    #[error("cannot start the serving threads: {0}")]
    Workers(std::io::Error),
}

/// The TLS acceptor of `tls`, its certificate and client CA re-read when their files
/// change (a bad new file keeps the old one, logged and counted).
fn start_tls(
    tls_cfg: &crate::config::raw::Tls,
    watches: &mut Vec<FileWatch>,
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
    _watches: Vec<FileWatch>,
    /// Declared last so the serving threads stop after everything above is dropped.
    serving: Serving,
}

impl Gateway {
    /// Binds every listener, starts serving, and watches the config (and TLS files) for
    /// changes.
    pub async fn start(config: Config, services: Services) -> Result<Gateway, StartError> {
        register_metrics();
        let config = Arc::new(config);
        let worker_count = workers::resolve(config.listen.workers);
        let app = Arc::new(App::new(config.clone(), services, worker_count));
        let serving = Serving {
            shared: ServerShared::new(config.limits.clone()),
            workers: Workers::start(worker_count).map_err(StartError::Workers)?,
        };
        let mut watches = Vec::new();
        let listen = &config.listen;

        let http_addr = match listen.http {
            Some(addr) => Some(serving.listen(addr, None, app.clone()).await?),
            None => None,
        };
        // One TLS acceptor (certificate, client CA, both reloaded when their files change)
        // for every listener that speaks TLS: `https`, and `ext_authz` when `tls` is set.
        let tls_source = match &config.tls {
            Some(tls_cfg) if listen.https.is_some() || listen.ext_authz.is_some() => {
                Some(start_tls(tls_cfg, &mut watches)?)
            }
            _ => None,
        };
        let https_addr = match (listen.https, &tls_source) {
            (Some(addr), Some(source)) => Some(
                serving
                    .listen(addr, Some(source.clone()), app.clone())
                    .await?,
            ),
            _ => None,
        };
        // Envoy's ext_authz: TLS as above when the `tls` section is there, h2c otherwise.
        let ext_authz_addr = match listen.ext_authz {
            Some(addr) => {
                let handler = crate::ext_authz::ExtAuthzHandler::new(app.clone());
                Some(serving.listen(addr, tls_source.clone(), handler).await?)
            }
            None => None,
        };
        // The admin port is small and rare: one task on the main runtime, not the workers.
        let admin_addr = match listen.admin {
            Some(addr) => {
                let l = bind(addr).await?;
                let bound = l.local_addr().ok();
                tokio::spawn(server::admin::serve(l, app.clone(), serving.shared.clone()));
                bound
            }
            None => None,
        };
        if let Some(path) = &config.source_path {
            watches.push(watch_config(&app, path)?);
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
            _watches: watches,
            serving,
        })
    }

    /// Stops accepting and waits up to `grace` for in-flight requests. Returns false if
    /// the grace period ran out with connections still open.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.serving.shared.drain(grace).await
    }
}

/// The serving threads and what their connections share (limits, the drain on shutdown).
struct Serving {
    shared: ServerShared,
    /// Last, so the threads stop after the shared state they serve with is released.
    workers: Workers,
}

impl Serving {
    /// Binds `addr` and serves it with `handler` on every worker, each accepting on its
    /// own duplicate of the listening socket; returns the address bound.
    async fn listen(
        &self,
        addr: SocketAddr,
        tls: Option<tls::TlsAcceptorSource>,
        handler: Arc<dyn Handler>,
    ) -> Result<SocketAddr, StartError> {
        let listener = bind(addr).await?;
        let bound = listener.local_addr().map_err(StartError::Workers)?;
        let std = listener.into_std().map_err(StartError::Workers)?;
        let mut copies = Vec::with_capacity(self.workers.len());
        for _ in 0..self.workers.len() {
            copies.push(Some(
                std.try_clone()
                    .map_err(|source| StartError::Bind { addr, source })?,
            ));
        }
        self.workers.spawn_each(|i| {
            let std = copies[i].take().expect("one copy per worker");
            let (handler, shared, tls) = (handler.clone(), self.shared.clone(), tls.clone());
            async move {
                match tokio::net::TcpListener::from_std(std) {
                    Ok(l) => server::serve(l, tls, handler, shared).await,
                    Err(e) => tracing::error!(error = %e, "worker cannot use the listener"),
                }
            }
        });
        Ok(bound)
    }
}

async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, StartError> {
    server::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

/// Reloads the configuration whenever its file changes (`App::reload` keeps the running
/// one when the new file is invalid).
fn watch_config(app: &Arc<App>, path: &Path) -> Result<FileWatch, StartError> {
    let (watch, mut rx) = crate::config::reload::watch_files(&[path.to_path_buf()])?;
    let app = app.clone();
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            let _ = app.reload();
        }
    });
    Ok(watch)
}
