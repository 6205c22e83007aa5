//! The hyper floor: the least a hyper 1 reverse proxy does per request. bench/run measures
//! it as the `floor` configuration and bench/callgrind counts its instructions, beside
//! Tollgate and in the same run, so that every figure of Tollgate's has the cost of hyper
//! itself next to it (issue 23).
//!
//! ```text
//! tollgate-floor LISTEN UPSTREAM [WORKERS]
//! ```
//!
//! LISTEN and UPSTREAM are socket addresses (`127.0.0.1:18434`). The runtime has the shape
//! of Tollgate's serving workers (src/server/workers.rs): WORKERS threads (default 0, one
//! per core, as `listen.workers: 0`), each running its own current-thread tokio runtime
//! and accepting on its own duplicate of the listening socket, so a connection and its
//! upstream connection stay on one thread.
//!
//! Each client connection is served by hyper's HTTP/1.1 server (keep-alive). Its requests
//! go to UPSTREAM over one upstream connection of its own (`hyper::client::conn::http1`),
//! opened with its first request and opened again if the upstream closes it, with one
//! header added (`x-user-id: 1`, standing in for the identity a gateway injects); the
//! answer goes back as it came. Bodies stream both ways: nothing is buffered.
//!
//! What it leaves out is what a ratio to it measures: route matching, authentication,
//! header hygiene (no hop-by-hop removal, no `X-Forwarded-*`), timeouts and limits,
//! metrics, logs, the upstream pool, and jemalloc (the crate depends on hyper, hyper-util,
//! tokio, http-body-util and bytes only, so it runs on the system allocator).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

const USAGE: &str = "usage: tollgate-floor LISTEN UPSTREAM [WORKERS]";

/// The one header every forwarded request gets.
static ADDED_NAME: HeaderName = HeaderName::from_static("x-user-id");
static ADDED_VALUE: HeaderValue = HeaderValue::from_static("1");

/// The answer's body: the upstream's, streamed, or none (the floor's own 502).
type Body = Either<Incoming, Empty<Bytes>>;

/// A client connection's upstream connection: `None` until its first request, and taken
/// out while a request is being sent (HTTP/1.1 serves one request at a time, so the lock
/// is never contended).
type Upstream = Arc<Mutex<Option<SendRequest<Incoming>>>>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (listen, upstream, workers) = match parse(&args) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("tollgate-floor: {e}\n{USAGE}");
            return ExitCode::from(64);
        }
    };
    match run(listen, upstream, workers) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tollgate-floor: {e}");
            ExitCode::from(1)
        }
    }
}

fn parse(args: &[String]) -> Result<(SocketAddr, SocketAddr, usize), String> {
    let addr = |i: usize, what: &str| -> Result<SocketAddr, String> {
        let arg = args.get(i).ok_or(format!("{what} is missing"))?;
        arg.parse().map_err(|e| format!("{what} {arg:?}: {e}"))
    };
    if args.len() > 3 {
        return Err(format!("{} arguments, at most 3", args.len()));
    }
    let workers = match args.get(2) {
        None => 0,
        Some(n) => n.parse().map_err(|e| format!("WORKERS {n:?}: {e}"))?,
    };
    Ok((addr(0, "LISTEN")?, addr(1, "UPSTREAM")?, workers))
}

/// Binds LISTEN and serves it on the worker threads until the process is stopped.
fn run(listen: SocketAddr, upstream: SocketAddr, workers: usize) -> std::io::Result<()> {
    let workers = match workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let listener = bind(listen)?;
    let mut threads = Vec::with_capacity(workers);
    for index in 0..workers {
        let copy = listener.try_clone()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name(format!("floor-worker-{index}"))
            .spawn(move || {
                rt.block_on(async move {
                    match TcpListener::from_std(copy) {
                        Ok(l) => accept(l, upstream).await,
                        Err(e) => eprintln!("tollgate-floor: worker {index}: {e}"),
                    }
                })
            })?;
        threads.push(thread);
    }
    eprintln!(
        "tollgate-floor: listening on {}, upstream {upstream}, {workers} workers",
        listener.local_addr()?
    );
    for thread in threads {
        let _ = thread.join();
    }
    Ok(())
}

/// The listening socket as Tollgate binds it (src/server/mod.rs `bind`): SO_REUSEADDR and
/// a backlog of 4096. Made on a runtime of its own, then handed to the workers as a
/// standard (non-blocking) socket that each duplicates.
fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    rt.block_on(async {
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(4096)?.into_std()
    })
}

async fn accept(listener: TcpListener, upstream: SocketAddr) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and friends: say so, back off a moment, keep serving.
                eprintln!("tollgate-floor: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve(stream, upstream));
    }
}

/// One client connection, with its own upstream connection.
async fn serve(stream: TcpStream, upstream: SocketAddr) {
    let slot = Upstream::default();
    let service = hyper::service::service_fn(move |req| forward(req, upstream, slot.clone()));
    // Errors here are the client's (a reset, a malformed request): nothing to report.
    let _ = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// Adds the header and sends the request on the connection's upstream connection; the
/// upstream's answer, or 502 when there is none.
async fn forward(
    mut req: Request<Incoming>,
    upstream: SocketAddr,
    slot: Upstream,
) -> Result<Response<Body>, Infallible> {
    req.headers_mut()
        .insert(ADDED_NAME.clone(), ADDED_VALUE.clone());
    let mut taken = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
    if let Some(sender) = taken.as_mut() {
        if sender.ready().await.is_err() {
            // The upstream closed the connection.
            taken = None;
        }
    }
    let mut sender = match taken {
        Some(sender) => sender,
        None => match connect(upstream).await {
            Ok(sender) => sender,
            Err(e) => {
                eprintln!("tollgate-floor: upstream {upstream}: {e}");
                return Ok(bad_gateway());
            }
        },
    };
    let answer = sender.send_request(req);
    *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(sender);
    match answer.await {
        Ok(response) => Ok(response.map(Either::Left)),
        Err(e) => {
            eprintln!("tollgate-floor: upstream {upstream}: {e}");
            Ok(bad_gateway())
        }
    }
}

/// A new HTTP/1.1 connection to the upstream; its connection task runs beside the client
/// connection's on the same worker, and ends once the sender is dropped.
async fn connect(
    upstream: SocketAddr,
) -> Result<SendRequest<Incoming>, Box<dyn std::error::Error + Send + Sync>> {
    let stream = TcpStream::connect(upstream).await?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            eprintln!("tollgate-floor: upstream connection: {e}");
        }
    });
    Ok(sender)
}

fn bad_gateway() -> Response<Body> {
    let mut response = Response::new(Either::Right(Empty::new()));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}
