//! Heap allocations per proxied request, counted by a counting global allocator.
//!
//! The gateway, a small upstream and one keep-alive client run in this process, so the
//! count covers all three; the same client sending the same requests straight to the
//! upstream is counted too, and the difference is the gateway's share. (The upstream
//! parses the few headers the gateway adds, so the difference slightly over-counts.)
//!
//! `cargo bench --bench allocations` prints allocations and bytes per request for a public
//! route and a JWT route (one token, cached after its first request).

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tollgate::authn::AuthnParts;
use tollgate::config::Config;
use tollgate::keys::{AccessClaims, KeySet};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const WARMUP: usize = 2_000;
/// Requests counted per route; `BENCH_ALLOC_REQUESTS` sets another number (fewer under
/// valgrind's dhat, which shows where each allocation comes from).
fn requests() -> u64 {
    std::env::var("BENCH_ALLOC_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

/// An upstream answering every request with ~100 bytes, as the bench/run upstream does.
async fn upstream() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = service_fn(|_req| async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                        &[b'x'; 100],
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

/// (allocations, bytes) per request of `REQUESTS` sequential GETs on one connection.
async fn count(addr: std::net::SocketAddr, path: &str, token: Option<&str>) -> (f64, f64) {
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    let auth = token.map(|t| format!("Bearer {t}"));
    let one = async |send: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>| {
        let mut req = hyper::Request::get(path).header("host", "bench.local");
        if let Some(a) = &auth {
            req = req.header("authorization", a.as_str());
        }
        send.ready().await.unwrap();
        let resp = send
            .send_request(req.body(Empty::new()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        resp.into_body().collect().await.unwrap();
    };
    for _ in 0..WARMUP {
        one(&mut send).await;
    }
    let (a0, b0) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    for _ in 0..requests() {
        one(&mut send).await;
    }
    let (a1, b1) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    (
        (a1 - a0) as f64 / requests() as f64,
        (b1 - b0) as f64 / requests() as f64,
    )
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing to run.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let up = upstream().await;
        let dir = tempfile::tempdir().unwrap();
        let yaml = format!(
            "listen:\n  http: 127.0.0.1:0\n  admin: 127.0.0.1:0\n  workers: 1\n\
             store:\n  url: sqlite://{dir}/db\n\
             log:\n  level: warn\n  access_log: false\n\
             tokens:\n  issuer: https://bench.local\n  audience: bench\n\
             routes:\n\
             \x20 - {{ name: public, path: /public, upstream: \"http://{up}\", auth: none }}\n\
             \x20 - {{ name: jwt, path: /jwt, upstream: \"http://{up}\", auth: required }}\n",
            dir = dir.path().display(),
        );
        let cfg = Config::from_yaml_with_env(&yaml, None).unwrap_or_else(|e| panic!("{e}"));
        let keys = Arc::new(KeySet::load(&cfg.tokens, &dir.path().join("keys")).unwrap());
        let now = chrono::Utc::now().timestamp();
        let token = keys
            .sign(&AccessClaims {
                sub: "7d0c6a8e-5b7e-4c1f-9d38-2a1f0c6e9b11".into(),
                iss: cfg.tokens.issuer.clone(),
                aud: cfg.tokens.audience.clone().into(),
                exp: now + 3600,
                iat: now,
                nbf: None,
                jti: "bench-jti".into(),
                scope: "read write".into(),
                client_id: Some("web".into()),
                email: Some("user@example.com".into()),
                role: Some("default".into()),
                alias: None,
                cnf: None,
            })
            .unwrap();
        let services =
            tollgate::app::wiring::proxy_with(&cfg, AuthnParts::with_keys(keys)).unwrap();
        let gw = tollgate::app::Gateway::start(cfg, services).await.unwrap();
        let gw_addr = gw.http_addr.unwrap();

        let direct = count(up, "/public/x", None).await;
        let public = count(gw_addr, "/public/x", None).await;
        let jwt = count(gw_addr, "/jwt/x", Some(&token)).await;
        println!(
            "allocations per request ({} sequential GETs on one connection, after {WARMUP}):",
            requests()
        );
        println!(
            "  client + upstream alone:  {:6.1} allocations, {:8.0} bytes",
            direct.0, direct.1
        );
        for (name, (a, b)) in [("public route", public), ("JWT route", jwt)] {
            println!(
                "  {name:<13} gateway:   {:6.1} allocations, {:8.0} bytes (all: {:.1}, {:.0})",
                a - direct.0,
                b - direct.1,
                a,
                b
            );
        }
    });
}
