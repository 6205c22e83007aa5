//! Listeners: accept loop, per-connection limits, graceful shutdown.
//!
//! The loop follows hyper-util's `server_graceful` example: `auto::Builder` (HTTP/1.1 and
//! HTTP/2, h2c by prior knowledge on plain sockets, ALPN on TLS), a `select!` between the
//! connection and the shutdown signal, and a bounded drain. Accept errors are logged and
//! survived. Limits enforced here: max connections (over it, closed at once), TLS
//! handshake and request-head timeouts (slowloris), head size and header count (431, by
//! hyper), and an idle timeout for connections that move no bytes.

pub mod activity;
pub mod admin;
pub mod tls;
pub mod workers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::App;
use crate::config::raw::Limits;
use crate::proxy::ConnInfo;
use activity::ActivityIo;

/// Shared by every listener of one process: the shutdown signal, the connection tracker
/// the drain waits on, and the connection limit.
#[derive(Clone)]
pub struct ServerShared {
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
    pub connections: Arc<Semaphore>,
    pub limits: Limits,
}

impl ServerShared {
    pub fn new(limits: Limits) -> Self {
        ServerShared {
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            connections: Arc::new(Semaphore::new(limits.max_connections)),
            limits,
        }
    }

    /// Stops accepting, then waits up to `grace` for open connections to finish their
    /// in-flight requests. Returns false when the grace period ran out first.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.shutdown.cancel();
        self.tracker.close();
        tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
    }
}

fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes as u32)
        .max_concurrent_streams(256);
    b
}

/// Accepts on `listener` until shutdown. `tls` turns it into the HTTPS listener.
pub async fn serve(
    listener: TcpListener,
    tls: Option<tls::TlsAcceptorSource>,
    app: Arc<App>,
    shared: ServerShared,
) {
    let scheme: &'static str = if tls.is_some() { "https" } else { "http" };
    let builder = Arc::new(builder(&shared.limits));
    loop {
        let (stream, peer) = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: log, back off a moment, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let permit = match shared.connections.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                metrics::counter!("tollgate_connections_rejected_total").increment(1);
                tracing::warn!(%peer, max = shared.limits.max_connections, "connection limit reached; closing new connection");
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let builder = builder.clone();
        let shared2 = shared.clone();
        let tls = tls.clone();
        shared.tracker.spawn(async move {
            let _permit = permit;
            metrics::gauge!("tollgate_connections_active").increment(1.0);
            let conn = ConnInfo { peer, scheme };
            let (io, activity) = ActivityIo::new(stream);
            match tls {
                None => serve_conn(TokioIo::new(io), activity, app, builder, conn, shared2).await,
                Some(tls) => {
                    let accept = tls.acceptor().accept(io);
                    match tokio::time::timeout(shared2.limits.header_read_timeout, accept).await {
                        Ok(Ok(tls_stream)) => {
                            serve_conn(
                                TokioIo::new(tls_stream),
                                activity,
                                app,
                                builder,
                                conn,
                                shared2,
                            )
                            .await
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            metrics::gauge!("tollgate_connections_active").decrement(1.0);
        });
    }
}

async fn serve_conn<I>(
    io: TokioIo<I>,
    activity: activity::Activity,
    app: Arc<App>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    conn_info: ConnInfo,
    shared: ServerShared,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        let app = app.clone();
        // Boxed per request: hyper allocates room for the in-flight future once per
        // connection and keeps it for the connection's life, so the unboxed request future
        // (3,448 bytes, measured) would sit in every idle keep-alive connection.
        Box::pin(async move { Ok::<_, std::convert::Infallible>(app.handle(req, conn_info).await) })
    });
    let conn = builder.serve_connection_with_upgrades(io, svc);
    tokio::pin!(conn);
    let idle = shared.limits.idle_timeout;
    // Checked twice per idle period: a connection is closed after between 1× and 1.5×
    // `idle_timeout` without a byte moving. Closing is graceful, so a request in flight
    // (say, waiting on a slow upstream) still gets its response.
    let mut tick = tokio::time::interval(idle / 2);
    tick.tick().await;
    let mut quiet_ticks = 0u8;
    let mut closing = false;
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(peer = %conn_info.peer, error = %e, "connection ended with error");
                }
                break;
            }
            _ = shared.shutdown.cancelled(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = tick.tick(), if !closing => {
                if activity.take() {
                    quiet_ticks = 0;
                } else {
                    quiet_ticks += 1;
                    if quiet_ticks >= 2 {
                        tracing::debug!(peer = %conn_info.peer, "closing idle connection");
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
            }
        }
    }
}

/// Binds a listener; port 0 picks a free port (tests).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}
