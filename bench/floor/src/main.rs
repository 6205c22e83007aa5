//! The hyper floor: the least a hyper 1 reverse proxy does per request. bench/run measures
//! it as the `floor` configuration and bench/callgrind counts its instructions, beside
//! Tollgate and in the same run, so that every figure of Tollgate's has the cost of hyper
//! itself next to it (issue 23).
//!
//! ```text
//! tollgate-floor LISTEN UPSTREAM [WORKERS] [--contract[=jwt|public]]
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
//!
//! `--contract` (or `--contract=jwt`) adds the header edits that SPEC.md requires of a
//! gateway on a JWT route, `--contract=public` those of a public route (the "contract
//! floor", [`contract`]): what the floor costs once the work every proxied request must do
//! to its head is done too, with the cheapest calls `http`'s `HeaderMap` offers.
//! Tollgate's instructions above it are what route matching, the token check, policy,
//! metrics and Tollgate's structure cost.

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

const USAGE: &str = "usage: tollgate-floor LISTEN UPSTREAM [WORKERS] [--contract[=jwt|public]]";

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
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut contract = None;
    for arg in args.iter().filter(|a| a.starts_with("--contract")) {
        contract = match arg.as_str() {
            "--contract" | "--contract=jwt" => Some(contract::Route::Jwt),
            "--contract=public" => Some(contract::Route::Public),
            other => {
                eprintln!("tollgate-floor: unknown option {other:?}\n{USAGE}");
                return ExitCode::from(64);
            }
        };
    }
    args.retain(|a| !a.starts_with("--contract"));
    let (listen, upstream, workers) = match parse(&args) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("tollgate-floor: {e}\n{USAGE}");
            return ExitCode::from(64);
        }
    };
    match run(listen, upstream, workers, contract) {
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
fn run(
    listen: SocketAddr,
    upstream: SocketAddr,
    workers: usize,
    contract: Option<contract::Route>,
) -> std::io::Result<()> {
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
                        Ok(l) => accept(l, upstream, contract).await,
                        Err(e) => eprintln!("tollgate-floor: worker {index}: {e}"),
                    }
                })
            })?;
        threads.push(thread);
    }
    eprintln!(
        "tollgate-floor: listening on {}, upstream {upstream}, {workers} workers{}",
        listener.local_addr()?,
        match contract {
            Some(contract::Route::Jwt) => ", the contract's header edits (JWT route)",
            Some(contract::Route::Public) => ", the contract's header edits (public route)",
            None => "",
        }
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

async fn accept(listener: TcpListener, upstream: SocketAddr, contract: Option<contract::Route>) {
    let upstream_host = HeaderValue::from_str(&upstream.to_string()).ok();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: say so, back off a moment, keep serving.
                eprintln!("tollgate-floor: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let edits = match (contract, &upstream_host) {
            (Some(route), Some(host)) => {
                Some(Arc::new(contract::Edits::new(route, peer, host.clone())))
            }
            _ => None,
        };
        tokio::spawn(serve(stream, upstream, edits));
    }
}

/// One client connection, with its own upstream connection.
async fn serve(stream: TcpStream, upstream: SocketAddr, edits: Option<Arc<contract::Edits>>) {
    let slot = Upstream::default();
    let service =
        hyper::service::service_fn(move |req| forward(req, upstream, slot.clone(), edits.clone()));
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
    edits: Option<Arc<contract::Edits>>,
) -> Result<Response<Body>, Infallible> {
    // The contract's edits: the received head kept for a retry, the head rewritten, and the
    // answer's head rewritten on the way back.
    let mut request_id = None;
    let _retry_copy = match &edits {
        None => {
            req.headers_mut()
                .insert(ADDED_NAME.clone(), ADDED_VALUE.clone());
            None
        }
        Some(edits) => {
            let copy = req.headers().clone();
            let id = contract::request_id();
            edits.request(req.headers_mut(), &id);
            request_id = Some(id);
            Some(copy)
        }
    };
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
        Ok(mut response) => {
            if let Some(id) = request_id {
                contract::response(response.headers_mut(), id);
            }
            Ok(response.map(Either::Left))
        }
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

/// The header edits SPEC.md requires of a gateway on a JWT route (or a public one, without
/// the identity's four fields and `Authorization`), as Tollgate makes them for bench/run's
/// routes (the upstream sees exactly these names), each done the
/// cheapest way `HeaderMap` allows: one pass over the received fields for hop-by-hop and
/// spoofed identity names (removing only what is there), `Authorization` removed, the four
/// identity fields, `X-Forwarded-For/-Proto/-Host` and `X-Request-Id` inserted into room
/// reserved once, `Host` replaced by the upstream's; on the answer, one pass for hop-by-hop
/// names (`Connection` removed) and `X-Request-Id` inserted. The received head is copied
/// for a retry (a GET may be sent again, `retries: 1` by default) and the copy dropped.
/// Values that depend only on the identity or the peer are made once, as Tollgate caches
/// them; the request id is a counter, formatted.
mod contract {
    use std::cell::Cell;
    use std::net::SocketAddr;

    use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};

    static USER_ID: HeaderName = HeaderName::from_static("x-user-id");
    static USER_EMAIL: HeaderName = HeaderName::from_static("x-user-email");
    static USER_ROLE: HeaderName = HeaderName::from_static("x-user-role");
    static CLIENT_ID: HeaderName = HeaderName::from_static("x-client-id");
    static FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
    static FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
    static FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
    static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

    /// The names a client must not send on: hop-by-hop fields and the identity's.
    fn refused(name: &str) -> bool {
        matches!(
            name,
            "connection"
                | "keep-alive"
                | "proxy-connection"
                | "te"
                | "trailer"
                | "transfer-encoding"
                | "upgrade"
                | "proxy-authorization"
                | "x-user-id"
                | "x-user-email"
                | "x-user-role"
                | "x-client-id"
        )
    }

    /// Which of bench/run's routes the edits are those of.
    #[derive(Clone, Copy, PartialEq)]
    pub enum Route {
        /// `auth: required`: the identity's fields in, `Authorization` out.
        Jwt,
        /// `auth: none`.
        Public,
    }

    /// One pass over the fields, then only what is there removed (allocates only when
    /// there is something to remove).
    fn strip_refused(headers: &mut HeaderMap) {
        let refused: Vec<HeaderName> = headers
            .keys()
            .filter(|n| refused(n.as_str()))
            .cloned()
            .collect();
        for name in refused {
            headers.remove(name);
        }
    }

    /// One connection's values: the route, the peer's address and the upstream's `Host`.
    pub struct Edits {
        route: Route,
        forwarded_for: HeaderValue,
        host: HeaderValue,
    }

    impl Edits {
        pub fn new(route: Route, peer: SocketAddr, host: HeaderValue) -> Edits {
            let forwarded_for = HeaderValue::from_str(&peer.ip().to_string())
                .expect("an address is a valid header value");
            Edits {
                route,
                forwarded_for,
                host,
            }
        }

        pub fn request(&self, headers: &mut HeaderMap, request_id: &HeaderValue) {
            strip_refused(headers);
            let forwarded_host = headers.get(header::HOST).cloned();
            if self.route == Route::Jwt {
                headers.remove(header::AUTHORIZATION);
                headers.reserve(8);
                headers.insert(USER_ID.clone(), HeaderValue::from_static("1"));
                headers.insert(
                    USER_EMAIL.clone(),
                    HeaderValue::from_static("bench@example.com"),
                );
                headers.insert(USER_ROLE.clone(), HeaderValue::from_static("default"));
                headers.insert(CLIENT_ID.clone(), HeaderValue::from_static("web"));
            } else {
                headers.reserve(4);
            }
            headers.insert(FORWARDED_FOR.clone(), self.forwarded_for.clone());
            headers.insert(FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
            if let Some(host) = forwarded_host {
                headers.insert(FORWARDED_HOST.clone(), host);
            }
            headers.insert(REQUEST_ID.clone(), request_id.clone());
            headers.insert(header::HOST, self.host.clone());
        }
    }

    pub fn response(headers: &mut HeaderMap, request_id: HeaderValue) {
        strip_refused(headers);
        headers.insert(REQUEST_ID.clone(), request_id);
    }

    thread_local! {
        static NEXT: Cell<u64> = const { Cell::new(0) };
    }

    /// A request id as long as a UUID's text: a per-thread counter in hexadecimal, written
    /// digit by digit (`format!` with padding costs several times the rest of the edits).
    pub fn request_id() -> HeaderValue {
        let mut n = NEXT.with(|c| {
            let n = c.get().wrapping_add(1);
            c.set(n);
            n
        });
        let mut text = [b'0'; 36];
        for byte in text.iter_mut().rev() {
            *byte = b"0123456789abcdef"[(n & 0xf) as usize];
            n >>= 4;
            if n == 0 {
                break;
            }
        }
        HeaderValue::from_bytes(&text).expect("hexadecimal is a valid header value")
    }
}
