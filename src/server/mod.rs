//! Listeners: accept loop, per-connection limits, graceful shutdown.
//!
//! The loop follows hyper-util's `server_graceful` example: a `select!` between the
//! connection and the shutdown signal, and a bounded drain. HTTP/1.1 and HTTP/2 (h2c by
//! prior knowledge on plain sockets, ALPN on TLS) are told apart before hyper sees the
//! connection, so each is served by its own builder. Accept errors are logged and
//! survived. Limits enforced here: max connections (over it, closed at once), TLS
//! handshake and request-head timeouts (slowloris), head size and header count (431, by
//! hyper), and an idle timeout for connections that move no bytes.

pub mod activity;
pub mod admin;
pub mod client_cert;
mod heads;
pub mod tls;
mod woken;
pub mod workers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::pin::Pin;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::raw::Limits;
use crate::http::ConnInfo;
use crate::http::Handler;
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
        crate::telemetry::at_zero(|| {
            [
                metrics::counter!("tollgate_connections_rejected_total"),
                metrics::counter!("tollgate_connections_dropped_unread_total"),
            ]
        });
        metrics::gauge!("tollgate_connections_active").increment(0.0);
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

/// The protocol builders of one listener. HTTP/1.1 and HTTP/2 connections are served by
/// their own builder, so an idle HTTP/1.1 connection holds only HTTP/1.1 state; `auto`
/// serves the rare plain connection whose first bytes were too few to tell (see `sniff`).
struct Builders {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    auto: auto::Builder<TokioExecutor>,
}

impl Builders {
    fn new(limits: &Limits) -> Self {
        // No `header_read_timeout` here: the connection's watch keeps it (`heads.rs`).
        let mut http1 = http1::Builder::new();
        http1
            .max_buf_size(limits.max_header_bytes.max(8192))
            .max_headers(limits.max_headers)
            .keep_alive(true);
        // HTTP/2 abuse limits (tests/hostile_http2.rs), pinned rather than left to the
        // defaults so that a dependency upgrade cannot loosen them unnoticed:
        // - rapid reset (CVE-2023-44487): streams the client resets before they are
        //   served do not count against `max_concurrent_streams`; past 20 pending ones
        //   the connection gets GOAWAY (ENHANCE_YOUR_CALM);
        // - streams the gateway itself has to reset for the client's errors: past 1024
        //   the connection gets GOAWAY;
        // - CONTINUATION floods: the header block is capped by `max_header_list_size`,
        //   and the number of CONTINUATION frames along with it (a handful at 16 KiB).
        // A client that stops reading (a SETTINGS or PING flood whose ACKs it never
        // takes) makes the connection stop reading too; `serve_conn` drops it.
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(limits.max_header_bytes as u32)
            .max_concurrent_streams(256)
            .max_pending_accept_reset_streams(20)
            .max_local_error_reset_streams(1024);
        let mut auto = auto::Builder::new(TokioExecutor::new());
        // hyper keeps the header read timeout of these (rare) connections, which may turn
        // out to be HTTP/2: the watch's rule is for HTTP/1.1 alone.
        auto.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.max_header_bytes.max(8192))
            .max_headers(limits.max_headers)
            .keep_alive(true);
        auto.http2()
            .timer(TokioTimer::new())
            .max_header_list_size(limits.max_header_bytes as u32)
            .max_concurrent_streams(256)
            .max_pending_accept_reset_streams(20)
            .max_local_error_reset_streams(1024);
        Builders { http1, http2, auto }
    }
}

/// Which protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
    /// Too few bytes to tell yet: hyper-util's `auto` reads on until it can.
    Undecided,
}

const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Tells HTTP/1.1 from h2c (prior knowledge) by peeking at the first bytes without
/// consuming them. `None`: the client closed, sent nothing within `header_read_timeout`,
/// or shutdown began.
///
/// Why not `auto` for every connection: it reads the first bytes into its own buffer and
/// replays them, which makes hyper grow each connection's read buffer from 8 to 16 KiB,
/// and its connection type is sized for HTTP/2 even when the client speaks HTTP/1.1.
async fn sniff(stream: &TcpStream, shared: &ServerShared) -> Option<Protocol> {
    let mut buf = [0u8; 24];
    let peek = tokio::time::timeout(shared.limits.header_read_timeout, stream.peek(&mut buf));
    let n = tokio::select! {
        _ = shared.shutdown.cancelled() => return None,
        r = peek => match r {
            Ok(Ok(n)) if n > 0 => n,
            _ => return None,
        },
    };
    Some(classify(&buf[..n]))
}

/// The protocol the first bytes of a plain connection announce.
fn classify(first: &[u8]) -> Protocol {
    if !H2_PREFACE.starts_with(first) {
        Protocol::Http1
    } else if first.len() == H2_PREFACE.len() {
        Protocol::Http2
    } else {
        Protocol::Undecided
    }
}

/// Accepts on `listener` until shutdown. `tls` turns it into the HTTPS listener.
pub async fn serve(
    listener: TcpListener,
    tls: Option<tls::TlsAcceptorSource>,
    app: Arc<dyn Handler>,
    shared: ServerShared,
) {
    let scheme: &'static str = if tls.is_some() { "https" } else { "http" };
    let builders = Arc::new(Builders::new(&shared.limits));
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
        let builders = builders.clone();
        let shared2 = shared.clone();
        let tls = tls.clone();
        let fut = async move {
            let _permit = permit;
            metrics::gauge!("tollgate_connections_active").increment(1.0);
            let conn = ConnInfo {
                peer,
                scheme,
                client_cert: None,
            };
            match tls {
                None => {
                    if let Some(protocol) = sniff(&stream, &shared2).await {
                        let (io, activity) = ActivityIo::new(stream);
                        let io = TokioIo::new(io);
                        serve_conn(io, protocol, activity, app, &builders, conn, &shared2).await;
                    }
                }
                Some(tls) => {
                    // Boxed: a TLS connection's state (rustls' buffers and the handshake)
                    // is kilobytes; inline, it would size the task of every plain
                    // connection too.
                    Box::pin(serve_tls(stream, tls, app, &builders, conn, &shared2)).await
                }
            }
            metrics::gauge!("tollgate_connections_active").decrement(1.0);
        };
        shared.tracker.spawn(fut);
    }
}

async fn serve_tls(
    stream: TcpStream,
    tls: tls::TlsAcceptorSource,
    app: Arc<dyn Handler>,
    builders: &Builders,
    conn: ConnInfo,
    shared: &ServerShared,
) {
    let peer = conn.peer;
    let (io, activity) = ActivityIo::new(stream);
    let accept = tls.acceptor().accept(io);
    match tokio::time::timeout(shared.limits.header_read_timeout, accept).await {
        Ok(Ok(tls_stream)) => {
            // Present only when `tls.client_ca` asked and the handshake verified it.
            let client_cert = tls_stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|der| Arc::new(client_cert::ClientCert::from_verified(der)));
            let conn = ConnInfo {
                client_cert,
                ..conn
            };
            let protocol = match tls_stream.get_ref().1.alpn_protocol() {
                Some(b"h2") => Protocol::Http2,
                Some(_) => Protocol::Http1,
                // No ALPN: the client may still speak HTTP/2 by prior knowledge.
                None => Protocol::Undecided,
            };
            let io = TokioIo::new(tls_stream);
            serve_conn(io, protocol, activity, app, builders, conn, shared).await;
        }
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}

type ConnResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// A served connection in whichever protocol it speaks, boxed so that the connection's
/// task holds one pointer instead of the largest protocol's state.
enum Served<'a, I, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming>,
{
    Http1(Pin<Box<http1::UpgradeableConnection<I, S>>>),
    Http2(Pin<Box<http2::Connection<I, S, TokioExecutor>>>),
    Auto(Pin<Box<auto::UpgradeableConnection<'a, I, S, TokioExecutor>>>),
}

impl<I, S, B> Served<'_, I, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>
        + hyper::service::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<B>,
            Error = <S as hyper::service::HttpService<hyper::body::Incoming>>::Error,
            Future = <S as hyper::service::HttpService<hyper::body::Incoming>>::Future,
        >,
    <S as hyper::service::HttpService<hyper::body::Incoming>>::Error:
        Into<Box<dyn std::error::Error + Send + Sync>>,
    <S as hyper::service::HttpService<hyper::body::Incoming>>::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    fn graceful_shutdown(&mut self) {
        match self {
            Served::Http1(c) => c.as_mut().graceful_shutdown(),
            Served::Http2(c) => c.as_mut().graceful_shutdown(),
            Served::Auto(c) => c.as_mut().graceful_shutdown(),
        }
    }

    async fn run(&mut self) -> ConnResult {
        match self {
            Served::Http1(c) => c.as_mut().await.map_err(Into::into),
            Served::Http2(c) => c.as_mut().await.map_err(Into::into),
            Served::Auto(c) => c.as_mut().await,
        }
    }
}

async fn serve_conn<I>(
    io: TokioIo<I>,
    protocol: Protocol,
    activity: activity::Activity,
    app: Arc<dyn Handler>,
    builders: &Builders,
    conn_info: ConnInfo,
    shared: &ServerShared,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let peer = conn_info.peer;
    // The header read timeout of an HTTP/1.1 connection is the watch's (`heads.rs`);
    // every request's answer keeps it in flight until its body is done.
    let requests = Arc::new(heads::Requests::default());
    let head_timer = protocol == Protocol::Http1;
    let in_flight = requests.clone();
    let svc = service_fn(move |req| {
        let app = app.clone();
        let conn_info = conn_info.clone();
        let guard = head_timer.then(|| in_flight.begun());
        // `Handler::handle` answers with a boxed future: hyper allocates room for the
        // in-flight future once per connection and keeps it for the connection's life, so
        // an unboxed request future (several KiB, BENCHMARKS.md "Profile") would sit in
        // every idle keep-alive connection.
        let response = app.handle(req, conn_info);
        async move {
            let response = response.await;
            Ok::<_, std::convert::Infallible>(response.map(|b| heads::Tracked::new(b, guard)))
        }
    });
    let mut conn = match protocol {
        Protocol::Http1 => Served::Http1(Box::pin(
            builders.http1.serve_connection(io, svc).with_upgrades(),
        )),
        Protocol::Http2 => Served::Http2(Box::pin(builders.http2.serve_connection(io, svc))),
        Protocol::Undecided => Served::Auto(Box::pin(
            builders.auto.serve_connection_with_upgrades(io, svc),
        )),
    };
    let idle = shared.limits.idle_timeout;
    // Checked twice per idle period: a connection is closed after between 1× and 1.5×
    // `idle_timeout` without a byte moving. Closing is graceful, so a request in flight
    // (say, waiting on a slow upstream) still gets its response.
    //
    // A graceful close still has to write (HTTP/2's GOAWAY, the rest of a response). A
    // peer that stopped reading, say one that floods SETTINGS or pipelines requests and
    // never takes the answers, leaves that write pending forever and the connection with
    // it; so a closing connection that stays quiet for another idle period with its last
    // write still blocked is dropped.
    let mut tick = tokio::time::interval(idle / 2);
    tick.tick().await;
    let mut quiet_ticks = 0u8;
    let mut head_tick = tokio::time::interval(shared.limits.header_read_timeout / 2);
    // Ticks a stalled worker missed are not made up in a burst: two of them back to back
    // would count as a whole timeout of waiting for a head that may only just have begun.
    head_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    head_tick.tick().await;
    let mut head_wait = heads::HeadWait::default();
    let mut closing = false;
    loop {
        // The watch (shutdown, the idle tick) is polled only when one of them fired, not
        // on every wake the connection's own traffic causes (`woken.rs`).
        let event = {
            let watch = std::pin::pin!(async {
                tokio::select! {
                    biased;
                    _ = shared.shutdown.cancelled(), if !closing => Event::Shutdown,
                    _ = tick.tick() => Event::Tick,
                    _ = head_tick.tick(), if head_timer => Event::HeadTick,
                }
            });
            tokio::select! {
                biased;
                res = conn.run() => Event::Ended(res),
                event = woken::OnlyWhenWoken::new(watch) => event,
            }
        };
        match event {
            Event::Ended(res) => {
                if let Err(e) = res {
                    tracing::debug!(%peer, error = %e, "connection ended with error");
                }
                break;
            }
            Event::Shutdown => {
                conn.graceful_shutdown();
                closing = true;
                quiet_ticks = 0;
            }
            Event::HeadTick => {
                if head_wait.tick(&requests) {
                    // What hyper's own timer did: the connection is closed, not drained.
                    tracing::debug!(%peer, "closing a connection that sent no request head within header_read_timeout");
                    break;
                }
            }
            Event::Tick => {
                if activity.take() {
                    quiet_ticks = 0;
                    continue;
                }
                quiet_ticks = quiet_ticks.saturating_add(1);
                if quiet_ticks < 2 {
                    continue;
                }
                if !closing {
                    tracing::debug!(%peer, "closing idle connection");
                    conn.graceful_shutdown();
                    closing = true;
                    quiet_ticks = 0;
                } else if activity.write_blocked() {
                    tracing::debug!(%peer, "dropping a closing connection whose peer stopped reading");
                    metrics::counter!("tollgate_connections_dropped_unread_total").increment(1);
                    break;
                }
            }
        }
    }
}

/// What a connection's task woke for, when it woke for more than its traffic.
enum Event {
    /// The connection ended (with an error, if it failed).
    Ended(ConnResult),
    /// The gateway is shutting down.
    Shutdown,
    /// The idle tick.
    Tick,
    /// The header read timeout's tick (HTTP/1.1).
    HeadTick,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bytes_tell_http1_from_h2c() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Protocol::Http1);
        assert_eq!(classify(b"POST /x HTTP/1.1"), Protocol::Http1);
        assert_eq!(classify(b"G"), Protocol::Http1);
        assert_eq!(classify(H2_PREFACE), Protocol::Http2);
        // A prefix of the preface could still be either: hyper-util's `auto` decides.
        assert_eq!(classify(b"P"), Protocol::Undecided);
        assert_eq!(classify(b"PRI * HTTP/2.0\r\n"), Protocol::Undecided);
    }
}
