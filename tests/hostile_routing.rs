//! Routing tricks: no spelling of a path reaches a `required` route's resource through a
//! `none` route. A property test generates paths from every encoding trick (`..`,
//! `%2e%2e`, `%2f`, `%5c`, `\`, `%00`, `%23`, `//`, `;` parameters, double encoding,
//! case) and sends them on raw sockets (an HTTP client library would normalise them
//! first); whatever an unauthenticated request makes the shared upstream see, read the way
//! a typical upstream reads a path, is never under the protected prefix.

mod common;

use std::time::Duration;

use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{spawn_proxy_only, Upstream};

async fn gateway() -> (Upstream, common::TestGateway) {
    let up = Upstream::start().await;
    // One upstream behind both routes: the common set-up, and the one where a routing
    // mistake would be a bypass.
    let gw = spawn_proxy_only(&format!(
        r#"routes:
  - {{ name: public, path: /, upstream: "{u}" }}
  - {{ name: pub, path: /pub, upstream: "{u}" }}
  - {{ name: admin, path: /api, upstream: "{u}", auth: required }}
  - {{ name: secret, path: /pub/secret, upstream: "{u}", auth: required }}
  - {{ name: admin-host, host: admin.example.com, path: /, upstream: "{u}", auth: required }}
"#,
        u = up.url()
    ))
    .await;
    (up, gw)
}

async fn raw(gw: &common::TestGateway, head: &str) -> String {
    let mut s = TcpStream::connect(gw.gateway.http_addr.unwrap())
        .await
        .unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// How a typical upstream reads a path: `;` parameters dropped (servlet containers), then
/// percent-decoded once, `\` as `/`, empty and dot segments resolved.
fn as_upstream_reads(path: &str) -> String {
    // Servlet containers drop `;` parameters before decoding, so `%3B` stays a character.
    let without_params: Vec<&str> = path
        .split('/')
        .map(|seg| seg.split(';').next().unwrap_or(""))
        .collect();
    let decoded = percent_encoding::percent_decode_str(&without_params.join("/"))
        .decode_utf8_lossy()
        .replace('\\', "/");
    let mut out: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

fn protected(p: &str) -> bool {
    let under = |prefix: &str| p == prefix || p.starts_with(&format!("{prefix}/"));
    under("/api") || under("/pub/secret")
}

const PIECES: &[&str] = &[
    "api",
    "pub",
    "secret",
    "x",
    "..",
    ".",
    "",
    "%2e%2e",
    "%2E%2E",
    "%2e",
    ".%2e",
    "%2e.",
    "%2f",
    "%2F",
    "%5c",
    "%5C",
    "\\",
    "..\\",
    "%00",
    "%23",
    "#",
    ";x=1",
    "api;x=1",
    "..;",
    "secret;jsessionid=1",
    "%252e%252e",
    "%252f",
    "%2fapi",
    "%5capi",
    "%61pi",
    "a%70i",
    "%3b",
    "?",
    "%3f",
    "%20",
    "api%20",
    "api.",
    "api%2f",
    "*",
];

fn path_strategy() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["/", "//", "/./", "/pub/", "/%2e/", "\\"]),
        prop::collection::vec(prop::sample::select(PIECES.to_vec()), 1..7),
        prop::sample::select(vec!["", "/", "?a=1", "/..", "/%2e%2e"]),
    )
        .prop_map(|(start, segs, end)| format!("{start}{}{end}", segs.join("/")))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]
    #[test]
    fn no_spelling_reaches_a_protected_resource_unauthenticated(
        paths in prop::collection::vec(path_strategy(), 8)
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (up, gw) = SHARED.get().await;
            for path in &paths {
                let before = up.requests().len();
                let resp = raw(gw, &format!("GET {path} HTTP/1.1\r\nHost: public.example.com\r\nConnection: close\r\n\r\n")).await;
                let status: u16 = resp.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                prop_assert!(status != 0 && status < 500, "{path:?}: {resp}");
                for seen in &up.requests()[before..] {
                    let read = as_upstream_reads(&seen.path);
                    prop_assert!(
                        !protected(&read),
                        "{path:?} reached the upstream unauthenticated as {:?} (read as {read:?})",
                        seen.path
                    );
                }
            }
            Ok(())
        })?;
    }
}

/// One gateway for every proptest case, built on the first use. Each case runs on a
/// runtime of its own, so the gateway lives on a thread that keeps its runtime.
struct Shared(std::sync::OnceLock<(Upstream, common::TestGateway)>);
static SHARED: Shared = Shared(std::sync::OnceLock::new());

impl Shared {
    async fn get(&self) -> &(Upstream, common::TestGateway) {
        self.0.get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Runtime::new().unwrap();
                rt.block_on(async move {
                    tx.send(gateway().await).unwrap();
                    std::future::pending::<()>().await;
                });
            });
            rx.recv().unwrap()
        })
    }
}

#[tokio::test]
async fn known_bypasses_are_refused_or_authenticated() {
    let (up, gw) = gateway().await;
    for path in [
        "/pub/../api/x",
        "/pub/%2e%2e/api/x",
        "/pub/%2E%2e/api",
        "/pub/..%2fapi",
        "/pub/..%5capi",
        "/pub\\..\\api",
        "//api",
        "///api/x",
        "/./api",
        "/api;jsessionid=1/x",
        "/api;x",
        "/pub/secret;x=1",
        "/pub;x/secret",
        "/pub/./secret",
        "/pub//secret",
        "/%2fapi",
    ] {
        let resp = raw(
            &gw,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(resp.starts_with("HTTP/1.1 401"), "{path}: {resp}");
    }
    for path in ["/pub/%00/../api", "/api%00", "/%00"] {
        let resp = raw(
            &gw,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(resp.starts_with("HTTP/1.1 400"), "{path}: {resp}");
    }
    assert!(up.requests().is_empty(), "{:?}", up.requests());
}

#[tokio::test]
async fn host_tricks_never_pick_the_public_route_for_a_protected_host() {
    let (up, gw) = gateway().await;
    // Absolute form names the host that counts (RFC 9112 §3.2.2), whatever Host says.
    let resp = raw(
        &gw,
        "GET http://admin.example.com/x HTTP/1.1\r\nHost: public.example.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 401"), "{resp}");
    // Two Host headers are a 400 (RFC 9112 §3.2), in either order.
    for (a, b) in [
        ("public.example.com", "admin.example.com"),
        ("admin.example.com", "public.example.com"),
    ] {
        let resp = raw(
            &gw,
            &format!("GET /x HTTP/1.1\r\nHost: {a}\r\nHost: {b}\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    }
    // Case and a trailing dot or port name the same host.
    for host in [
        "ADMIN.example.com",
        "admin.example.com:8080",
        "admin.example.com.",
    ] {
        let resp = raw(
            &gw,
            &format!("GET /x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(resp.starts_with("HTTP/1.1 401"), "{host}: {resp}");
    }
    // HTTP/2: `:authority` decides; a different Host header is not consulted, and the
    // upstream never sees the client's host claims as its own Host.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .no_proxy()
        .build()
        .unwrap();
    let url = format!(
        "http://admin.example.com:{}/x",
        gw.gateway.http_addr.unwrap().port()
    );
    let r = h2
        .get(&url)
        .header("host", "public.example.com")
        .send_with_resolve(&gw)
        .await;
    assert_eq!(r, 401);
    assert!(up.requests().is_empty(), "{:?}", up.requests());
}

/// Sends to the gateway's loopback address whatever host the URL names.
trait SendWithResolve {
    async fn send_with_resolve(self, gw: &common::TestGateway) -> u16;
}

impl SendWithResolve for reqwest::RequestBuilder {
    async fn send_with_resolve(self, gw: &common::TestGateway) -> u16 {
        let (client, req) = self.build_split();
        let req = req.unwrap();
        let host = req.url().host_str().unwrap().to_string();
        let c = reqwest::Client::builder()
            .http2_prior_knowledge()
            .no_proxy()
            .resolve(&host, gw.gateway.http_addr.unwrap())
            .build()
            .unwrap();
        drop(client);
        c.execute(req).await.unwrap().status().as_u16()
    }
}
