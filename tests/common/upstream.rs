//! A real upstream HTTP server on 127.0.0.1 that records every request it receives.
//!
//! Paths ending with: `/status/N` answers N; `/delay/MS` answers after MS milliseconds;
//! `/stream/N` streams N chunks of 1 KiB; `/ws` accepts a WebSocket and echoes messages.
//! Everything else answers 200 with a JSON echo of the request (method, path, query,
//! headers) and the body's byte count, read frame by frame without buffering it.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: BTreeMap<String, Vec<String>>,
    pub body_len: u64,
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
}

impl UpstreamRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .and_then(|v| v.first())
            .map(String::as_str)
    }
}

#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<UpstreamRequest>>>,
    /// Marks which upstream answered (for round-robin tests).
    pub name: String,
    shutdown: Arc<tokio::sync::Notify>,
    secure: bool,
    /// TLS handshakes that failed (a TLS upstream only).
    pub handshake_failures: Arc<std::sync::atomic::AtomicUsize>,
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

impl Upstream {
    pub async fn start() -> Upstream {
        Self::start_named("upstream").await
    }

    pub async fn start_named(name: &str) -> Upstream {
        Self::start_with(name, None).await
    }

    /// An upstream that speaks TLS with `tls` (HTTP/1.1 or HTTP/2 by ALPN or prior
    /// knowledge); its `url()` is `https://127.0.0.1:PORT`.
    pub async fn start_tls(name: &str, tls: Arc<rustls::ServerConfig>) -> Upstream {
        Self::start_with(name, Some(tokio_rustls::TlsAcceptor::from(tls))).await
    }

    async fn start_with(name: &str, tls: Option<tokio_rustls::TlsAcceptor>) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Upstream {
            addr,
            log: Arc::default(),
            name: name.to_string(),
            shutdown: Arc::default(),
            secure: tls.is_some(),
            handshake_failures: Arc::default(),
        };
        let up2 = up.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = up2.shutdown.notified() => break,
                    r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                };
                let up3 = up2.clone();
                let tls = tls.clone();
                let failures = up2.handshake_failures.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let up = up3.clone();
                        async move { Ok::<_, Infallible>(up.handle(req).await) }
                    });
                    let builder = auto::Builder::new(TokioExecutor::new());
                    match tls {
                        None => {
                            let _ = builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                                .await;
                        }
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(s) => {
                                let _ = builder
                                    .serve_connection_with_upgrades(TokioIo::new(s), svc)
                                    .await;
                            }
                            Err(_) => {
                                failures.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            }
                        },
                    }
                });
            }
        });
        up
    }

    /// Stops accepting new connections (existing ones finish).
    pub fn stop(&self) {
        self.shutdown.notify_waiters();
    }

    pub fn url(&self) -> String {
        if self.secure {
            format!("https://{}", self.addr)
        } else {
            format!("http://{}", self.addr)
        }
    }

    pub fn requests(&self) -> Vec<UpstreamRequest> {
        self.log.lock().unwrap().clone()
    }

    pub fn last(&self) -> UpstreamRequest {
        self.requests()
            .last()
            .cloned()
            .expect("the upstream saw no request")
    }

    async fn handle(&self, mut req: Request<Incoming>) -> Response<Body> {
        let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in req.headers() {
            headers
                .entry(k.as_str().to_string())
                .or_default()
                .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
        }
        let method = req.method().to_string();
        let version = format!("{:?}", req.version());
        let path = req.uri().path().to_string();
        let query = req.uri().query().map(str::to_owned);

        if path.ends_with("/ws") {
            let on_upgrade = hyper::upgrade::on(&mut req);
            let key = req.headers().get("sec-websocket-key").cloned();
            self.record(method, path, query, headers, 0, version);
            tokio::spawn(async move {
                if let Ok(upgraded) = on_upgrade.await {
                    let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                        TokioIo::new(upgraded),
                        tokio_tungstenite::tungstenite::protocol::Role::Server,
                        None,
                    )
                    .await;
                    let (mut tx, mut rx) = ws.split();
                    while let Some(Ok(msg)) = rx.next().await {
                        if (msg.is_text() || msg.is_binary()) && tx.send(msg).await.is_err() {
                            break;
                        }
                    }
                }
            });
            let accept = key
                .map(|k| tokio_tungstenite::tungstenite::handshake::derive_accept_key(k.as_bytes()))
                .unwrap_or_default();
            return Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-accept", accept)
                .body(full(Bytes::new()))
                .unwrap();
        }

        // Count the body frame by frame: a 1 GiB upload never sits in memory here.
        let mut body = req.into_body();
        let mut body_len = 0u64;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    if let Some(d) = f.data_ref() {
                        body_len += d.len() as u64;
                    }
                }
                Err(_) => break,
            }
        }
        self.record(
            method.clone(),
            path.clone(),
            query.clone(),
            headers.clone(),
            body_len,
            version.clone(),
        );

        if let Some(code) = path.rsplit_once("/status/").map(|(_, c)| c) {
            let code: u16 = code.parse().unwrap_or(500);
            return Response::builder()
                .status(code)
                .body(full(Bytes::from_static(b"status")))
                .unwrap();
        }
        if let Some(ms) = path.rsplit_once("/delay/").map(|(_, c)| c) {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
        }
        if let Some(n) = path.rsplit_once("/stream/").map(|(_, c)| c) {
            let n: usize = n.parse().unwrap_or(1);
            let chunks = futures_util::stream::iter(
                (0..n).map(|_| Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'x'; 1024])))),
            );
            return Response::builder()
                .header("content-type", "application/octet-stream")
                .body(BodyExt::boxed(StreamBody::new(chunks)))
                .unwrap();
        }
        let echo = serde_json::json!({
            "upstream": self.name,
            "method": method,
            "path": path,
            "query": query,
            "headers": headers,
            "body_len": body_len,
            "version": version,
        });
        Response::builder()
            .header("content-type", "application/json")
            .header("x-upstream", self.name.clone())
            .body(full(Bytes::from(serde_json::to_vec(&echo).unwrap())))
            .unwrap()
    }

    fn record(
        &self,
        method: String,
        path: String,
        query: Option<String>,
        headers: BTreeMap<String, Vec<String>>,
        body_len: u64,
        version: String,
    ) {
        self.log.lock().unwrap().push(UpstreamRequest {
            method,
            path,
            query,
            headers,
            body_len,
            version,
        });
    }
}

fn full(b: Bytes) -> Body {
    BodyExt::boxed(Full::new(b))
}

/// An upstream that reads each request head to its end and closes the connection without
/// answering: a request written and then lost (a pod killed mid-request, or an idle
/// connection closed as the request was sent). Returns its address and the heads it
/// read, lowercased; a head is recorded before its connection is closed.
pub async fn head_then_close() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let Some(head) = read_head(&mut s).await else {
                    return;
                };
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).to_ascii_lowercase());
            });
        }
    });
    (addr, heads)
}

/// Reads from `s` until the end of a request head (`\r\n\r\n`); what was read, or
/// `None` if the peer closed or failed first.
pub async fn read_head(s: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    Some(head)
}
