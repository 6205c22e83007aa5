//! Connection and request limits: 431 for oversized heads, slowloris and idle timeouts,
//! the connection cap.

mod common;

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{spawn_proxy_only, Upstream};

async fn gateway(limits: &str) -> (Upstream, common::TestGateway) {
    let up = Upstream::start().await;
    let gw = spawn_proxy_only(&format!(
        "limits:\n{limits}\nroutes:\n  - name: all\n    path: /\n    upstream: {}\n",
        up.url()
    ))
    .await;
    (up, gw)
}

async fn connect(gw: &common::TestGateway) -> TcpStream {
    TcpStream::connect(gw.gateway.http_addr.unwrap())
        .await
        .unwrap()
}

async fn send(gw: &common::TestGateway, head: &str) -> String {
    let mut s = connect(gw).await;
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn oversized_head_and_too_many_headers_get_431() {
    let (up, gw) = gateway("  max_header_bytes: 8192\n  max_headers: 20").await;
    let big = "a".repeat(10_000);
    let out = send(
        &gw,
        &format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n"),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    let many: String = (0..30).map(|i| format!("X-H{i}: v\r\n")).collect();
    let out = send(&gw, &format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n")).await;
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    assert!(up.requests().is_empty());
    let ok: String = (0..5).map(|i| format!("X-H{i}: v\r\n")).collect();
    let out = send(
        &gw,
        &format!("GET / HTTP/1.1\r\nHost: x\r\n{ok}Connection: close\r\n\r\n"),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

#[tokio::test]
async fn slowloris_head_is_cut_off() {
    let (_up, gw) = gateway("  header_read_timeout: 300ms").await;
    let mut s = connect(&gw).await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    assert!(r.is_ok(), "the gateway closed the connection");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// The real slowloris keeps the connection busy: one byte of the head every 50 ms. Bytes
/// moving must not reset the clock (the idle timeout is far away here): the head has
/// `header_read_timeout` in all, then the connection is closed and nothing reaches the
/// upstream.
#[tokio::test]
async fn trickled_head_is_cut_off_by_the_header_read_timeout() {
    let (up, gw) = gateway("  header_read_timeout: 500ms\n  idle_timeout: 60s").await;
    let mut s = connect(&gw).await;
    s.set_nodelay(true).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let started = Instant::now();
    // At most 200 bytes (10 s); the gateway must close long before.
    let mut closed = false;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if s.write_all(b"a").await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await {
            // EOF, a reset, or an error answer: the gateway gave up on this head.
            Ok(_) => {
                closed = true;
                break;
            }
            Err(_) => continue,
        }
    }
    assert!(closed, "a head trickled for 10 s was never cut off");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "closed before header_read_timeout: {:?}",
        started.elapsed()
    );
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn idle_keepalive_connection_is_closed() {
    let (_up, gw) = gateway("  idle_timeout: 400ms\n  header_read_timeout: 30s").await;
    let mut s = connect(&gw).await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Now idle: the gateway closes within ~1.5 x idle_timeout; read returns EOF.
    let started = Instant::now();
    let mut rest = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
    assert!(r.is_ok(), "idle connection was closed");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once() {
    let (_up, gw) = gateway("  max_connections: 2").await;
    let addr = gw.gateway.http_addr.unwrap();
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 65536];
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    let mut third = TcpStream::connect(addr).await.unwrap();
    let _ = third.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut buf = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut buf)).await;
    assert!(
        matches!(r, Ok(Ok(0)) | Ok(Err(_))),
        "third connection closed without an answer"
    );
    drop(held);
    // Capacity comes back once the held connections close.
    common::wait_until(Duration::from_secs(5), "a slot frees up", || async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let _ = s
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut out)).await;
        out.starts_with(b"HTTP/1.1 200")
    })
    .await;
}

/// A connection that never sends a byte is closed after `header_read_timeout`, before
/// any HTTP state is allocated for it.
#[tokio::test]
async fn silent_connection_is_closed_after_header_read_timeout() {
    let (_up, gw) = gateway("  header_read_timeout: 300ms").await;
    let mut s = connect(&gw).await;
    let started = Instant::now();
    let mut buf = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    assert!(r.is_ok(), "the gateway closed the connection");
    assert!(buf.is_empty());
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// The protocol is told from the first bytes; a request whose first byte arrives alone
/// (here `P`, which could begin the HTTP/2 preface) is still served as HTTP/1.1.
#[tokio::test]
async fn request_split_after_its_first_byte_is_served() {
    let (up, gw) = gateway("  header_read_timeout: 10s").await;
    for (first, rest) in [
        (
            "P",
            "OST /split HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
        ),
        (
            "G",
            "ET /split HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ),
        (
            "PRI",
            " /split HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ),
    ] {
        let mut s = connect(&gw).await;
        s.set_nodelay(true).unwrap();
        s.write_all(first.as_bytes()).await.unwrap();
        s.flush().await.unwrap();
        s.write_all(rest.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
        let out = String::from_utf8_lossy(&out);
        if first == "PRI" {
            // An HTTP/1.1 request with the method PRI: answered (hyper refuses the odd
            // method or the route forwards it), never left hanging.
            assert!(out.starts_with("HTTP/1.1 "), "{first}: {out}");
        } else {
            assert!(out.starts_with("HTTP/1.1 200"), "{first}: {out}");
        }
    }
    assert!(up.requests().iter().any(|r| r.path == "/split"));
}

/// The header read timeout is for heads alone: an answer that takes longer than it (a
/// slow upstream) is not cut, the connection serves its next request, and only then,
/// with no further head, is it closed (HTTP/1.1 keep-alive, as hyper's own timer did).
#[tokio::test]
async fn a_slow_answer_is_not_a_late_head() {
    use http_body_util::BodyExt;
    let (up, gw) = gateway("  header_read_timeout: 200ms\n  idle_timeout: 60s").await;
    let io = hyper_util::rt::TokioIo::new(connect(&gw).await);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    let conn = tokio::spawn(conn);
    for path in ["/delay/700", "/again"] {
        let req = http::Request::get(path)
            .header("host", "x")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        resp.into_body().collect().await.unwrap();
    }
    assert_eq!(up.requests().len(), 2, "both on one connection");
    let waited = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), conn)
        .await
        .expect("the gateway closes a connection that sends no next head")
        .unwrap()
        .ok();
    assert!(
        waited.elapsed() >= Duration::from_millis(200),
        "closed before header_read_timeout: {:?}",
        waited.elapsed()
    );
}
