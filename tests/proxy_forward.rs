//! Forwarding: headers both ways, request ids, X-Forwarded-*, strip_prefix, streaming
//! bodies, upstream failures, round robin, ejection, retries.

mod common;

use std::time::Duration;

use common::{client, spawn_proxy_only, Upstream};

fn route_yaml(up: &Upstream) -> String {
    format!(
        r#"
routes:
  - name: api
    path: /api
    upstream: {u}
  - name: strip
    path: /svc
    strip_prefix: true
    upstream: {u}/base
"#,
        u = up.url()
    )
}

#[tokio::test]
async fn forwards_and_sets_proxy_headers() {
    let up = Upstream::start().await;
    let gw = spawn_proxy_only(&route_yaml(&up)).await;
    let resp = client()
        .get(gw.url("/api/orders/7?x=1"))
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "secret-hop")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-proto", "https")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let rid = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(rid.len(), 36, "a generated UUID request id is echoed");
    let seen = up.last();
    assert_eq!(seen.path, "/api/orders/7");
    assert_eq!(seen.query.as_deref(), Some("x=1"));
    assert_eq!(seen.header("x-request-id"), Some(rid.as_str()));
    // Untrusted peer: inbound X-Forwarded-* replaced, not appended to.
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-forwarded-host"), Some("127.0.0.1"));
    assert!(
        seen.header("x-hop").is_none(),
        "headers named in Connection are hop-by-hop"
    );
    assert!(seen.header("proxy-authorization").is_none());
    assert!(seen
        .header("connection")
        .is_none_or(|c| !c.contains("x-hop")));
}

#[tokio::test]
async fn trusted_proxies_keep_inbound_forwarded_headers() {
    let up = Upstream::start().await;
    let gw = spawn_proxy_only(&format!(
        "trusted_proxies: [127.0.0.0/8]\n{}",
        route_yaml(&up)
    ))
    .await;
    client()
        .get(gw.url("/api"))
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "shop.example")
        .send()
        .await
        .unwrap();
    let seen = up.last();
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert_eq!(seen.header("x-forwarded-host"), Some("shop.example"));
}

#[tokio::test]
async fn request_id_kept_when_sane_replaced_otherwise() {
    let up = Upstream::start().await;
    let gw = spawn_proxy_only(&route_yaml(&up)).await;
    let r = client()
        .get(gw.url("/api"))
        .header("x-request-id", "trace-42.a:b_c")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-42.a:b_c");
    assert_eq!(up.last().header("x-request-id"), Some("trace-42.a:b_c"));
    let r = client()
        .get(gw.url("/api"))
        .header("x-request-id", "<script>")
        .send()
        .await
        .unwrap();
    assert_ne!(r.headers()["x-request-id"], "<script>");
    assert_eq!(r.headers()["x-request-id"].len(), 36);
}

#[tokio::test]
async fn strip_prefix_and_base_path() {
    let up = Upstream::start().await;
    let gw = spawn_proxy_only(&route_yaml(&up)).await;
    client().get(gw.url("/svc/items?q=1")).send().await.unwrap();
    assert_eq!(up.last().path, "/base/items");
    client().get(gw.url("/svc")).send().await.unwrap();
    assert_eq!(up.last().path, "/base");
}

#[tokio::test]
async fn no_route_is_404_json() {
    let up = Upstream::start().await;
    let gw = spawn_proxy_only(&route_yaml(&up)).await;
    let r = client().get(gw.url("/apix")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    assert!(r.headers().contains_key("x-request-id"));
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
    assert!(body["error_description"].is_string());
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn upstream_down_is_502_and_slow_is_504() {
    // A port that was just free: nothing listens there.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let up = Upstream::start().await;
    let gw = spawn_proxy_only(&format!(
        r#"
routes:
  - name: dead
    path: /dead
    upstream: http://{dead}
  - name: slow
    path: /delay
    upstream: {{ targets: ["{u}"], timeout: 300ms }}
"#,
        u = up.url()
    ))
    .await;
    let r = client().get(gw.url("/dead")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "bad_gateway");
    assert!(
        !body["error_description"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1"),
        "5xx bodies stay generic"
    );

    let r = client().get(gw.url("/delay/3000")).send().await.unwrap();
    assert_eq!(r.status(), 504);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "gateway_timeout");
}

#[tokio::test]
async fn round_robin_and_passive_ejection_with_retries() {
    let a = Upstream::start_named("a").await;
    let b = Upstream::start_named("b").await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gw = spawn_proxy_only(&format!(
        r#"
routes:
  - name: rr
    path: /rr
    upstream: {{ targets: ["{a}", "{b}"] }}
  - name: ej
    path: /ej
    upstream: {{ targets: ["http://{dead}", "{a}"], eject_after: 2, eject_for: 60s, retries: 1 }}
  - name: noretry
    path: /nr
    upstream: {{ targets: ["http://{dead}"], retries: 3 }}
"#,
        a = a.url(),
        b = b.url()
    ))
    .await;
    let c = client();
    for _ in 0..10 {
        assert_eq!(c.get(gw.url("/rr")).send().await.unwrap().status(), 200);
    }
    assert_eq!(a.requests().len(), 5);
    assert_eq!(b.requests().len(), 5);

    // GETs without a body are retried on the next target: every one succeeds even though
    // half the targets are dead, and after two failures the dead one is ejected.
    let before = a.requests().len();
    for _ in 0..10 {
        assert_eq!(c.get(gw.url("/ej")).send().await.unwrap().status(), 200);
    }
    assert_eq!(a.requests().len() - before, 10);
    let metrics = common::scrape(&gw.admin).await;
    assert!(
        metrics.contains("tollgate_upstream_ejections_total"),
        "{metrics}"
    );

    // A POST with a body is never retried.
    let before = a.requests().len();
    let r = c.post(gw.url("/ej")).body("payload").send().await.unwrap();
    assert!(r.status() == 200 || r.status() == 502);
    assert!(a.requests().len() - before <= 1);
}

#[tokio::test]
async fn non_idempotent_requests_are_not_retried() {
    let a = Upstream::start_named("a").await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gw = spawn_proxy_only(&format!(
        "routes:\n  - name: m\n    path: /m\n    upstream: {{ targets: [\"http://{dead}\", \"{a}\"], retries: 2, eject_after: 100 }}\n",
        a = a.url()
    ))
    .await;
    let c = client();
    let mut statuses = vec![];
    for _ in 0..4 {
        statuses.push(
            c.post(gw.url("/m"))
                .body("x")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    // Round robin alternates: the POSTs that hit the dead target fail with 502 instead of
    // being replayed on the live one.
    assert_eq!(
        statuses.iter().filter(|s| **s == 502).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(a.requests().len(), 2);
}

/// A raw HTTP/1.1 upstream: answers each request on a connection with `ok`, keep-alive,
/// and, when `close_after_answer`, closes the connection right after the answer (as an
/// upstream whose keep-alive timeout just ran out does). Counts connections and requests.
async fn raw_upstream(
    close_after_answer: bool,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let conns = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let reqs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (c2, r2) = (conns.clone(), reqs.clone());
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            c2.fetch_add(1, Ordering::SeqCst);
            let r2 = r2.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // One request: the head, then `Content-Length` bytes of body.
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    while buf.len() < head_end + len {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..head_end + len);
                    r2.fetch_add(1, Ordering::SeqCst);
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if s.write_all(answer).await.is_err() {
                        return;
                    }
                    if close_after_answer {
                        return;
                    }
                }
            });
        }
    });
    (addr, conns, reqs)
}

/// Sequential requests reuse one upstream connection.
#[tokio::test]
async fn upstream_connections_are_reused() {
    use std::sync::atomic::Ordering;
    let (addr, conns, reqs) = raw_upstream(false).await;
    let gw = spawn_proxy_only(&format!(
        "routes:\n  - {{ name: r, path: /r, upstream: \"http://{addr}\" }}\n"
    ))
    .await;
    let c = client();
    for _ in 0..20 {
        let resp = c.get(gw.url("/r")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "ok");
    }
    assert_eq!(reqs.load(Ordering::SeqCst), 20);
    // One per serving worker at most (each worker keeps its own idle connections).
    assert!(conns.load(Ordering::SeqCst) <= 2, "{conns:?}");
}

/// An idle upstream connection that the upstream closed is not where a request is lost:
/// a request it never carried goes out on a new connection, even a POST, which the retry
/// loop never repeats. Each request reaches the upstream exactly once.
#[tokio::test]
async fn a_request_never_sent_on_a_closed_idle_connection_is_sent_on_another() {
    use std::sync::atomic::Ordering;
    let (addr, conns, reqs) = raw_upstream(true).await;
    let gw = spawn_proxy_only(&format!(
        "routes:\n  - {{ name: r, path: /r, upstream: \"http://{addr}\" }}\n"
    ))
    .await;
    let c = client();
    for i in 0..30 {
        let resp = c
            .post(gw.url("/r"))
            .body(format!("request {i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "request {i}");
    }
    assert_eq!(reqs.load(Ordering::SeqCst), 30, "each POST exactly once");
    assert_eq!(
        conns.load(Ordering::SeqCst),
        30,
        "one connection per request"
    );
}

#[tokio::test]
async fn body_limit_413_for_declared_and_streamed_bodies() {
    let up = Upstream::start().await;
    let gw = spawn_proxy_only(&format!(
        "routes:\n  - name: small\n    path: /small\n    max_body_bytes: 1000\n    upstream: {}\n",
        up.url()
    ))
    .await;
    let c = client();
    let r = c
        .post(gw.url("/small"))
        .body(vec![0u8; 1001])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "request_too_large");
    assert!(
        up.requests().is_empty(),
        "a declared oversize body never reaches the upstream"
    );

    // Chunked, no Content-Length: cut off as soon as the limit is passed.
    let chunks =
        futures_util::stream::iter((0..20).map(|_| Ok::<_, std::io::Error>(vec![0u8; 100])));
    let r = c
        .post(gw.url("/small"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);

    let r = c
        .post(gw.url("/small"))
        .body(vec![0u8; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.last().body_len, 1000);
}

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_upload_and_download_stream_with_flat_memory() {
    let up = Upstream::start().await;
    let gw = spawn_proxy_only(&format!(
        "routes:\n  - name: big\n    path: /\n    max_body_bytes: 2000000000\n    upstream: {}\n",
        up.url()
    ))
    .await;
    const CHUNK: usize = 1 << 20;
    const CHUNKS: usize = 1024;
    let before = rss_kib();
    let chunk = bytes::Bytes::from(vec![7u8; CHUNK]);
    let stream = futures_util::stream::iter(
        (0..CHUNKS).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
    );
    let r = client()
        .post(gw.url("/upload"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.last().body_len, (CHUNK * CHUNKS) as u64);
    let grown = rss_kib().saturating_sub(before);
    assert!(
        grown < 128 * 1024,
        "RSS grew by {grown} KiB while streaming 1 GiB"
    );

    // Download: 64 MiB streamed back chunk by chunk.
    use futures_util::StreamExt;
    let r = client().get(gw.url("/stream/65536")).send().await.unwrap();
    let mut total = 0usize;
    let mut s = r.bytes_stream();
    while let Some(c) = s.next().await {
        total += c.unwrap().len();
    }
    assert_eq!(total, 65536 * 1024);
}

#[tokio::test]
async fn websocket_upgrade_passes_through() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let up = Upstream::start().await;
    let gw = spawn_proxy_only(&format!(
        "routes:\n  - name: ws\n    path: /ws\n    upstream: {}\n",
        up.url()
    ))
    .await;
    let url = format!("ws://{}/ws", gw.gateway.http_addr.unwrap());
    let (mut ws, resp) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(resp.status(), 101);
    ws.send(Message::Text("ping".into())).await.unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(msg.into_text().unwrap(), "ping");
}

#[tokio::test]
async fn h2c_prior_knowledge() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let up = Upstream::start().await;
    let gw = spawn_proxy_only(&route_yaml(&up)).await;
    let c: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let resp = c.get(gw.url("/api/h2").parse().unwrap()).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["path"], "/api/h2");
}
