//! Streaming responses (no Content-Length) are cut when the token that opened them
//! expires or is revoked; the client sees a truncated stream, not a clean end.

#[allow(unused_imports)] // shared helpers this test does not use
mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::authn::{now, spawn, Kit};
use common::{client, TestGateway};
use http_body_util::StreamBody;
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;

/// An upstream that sends one chunk every 100 ms, for at most 30 s.
async fn ticking_upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = service_fn(|_req| async {
                    let ticks = futures_util::stream::unfold(0u32, |n| async move {
                        if n >= 300 {
                            return None;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Some((
                            Ok::<_, Infallible>(Frame::data(Bytes::from(format!("tick {n}\n")))),
                            n + 1,
                        ))
                    });
                    Ok::<_, Infallible>(hyper::Response::new(StreamBody::new(ticks)))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

async fn setup() -> (TestGateway, Kit) {
    let addr = ticking_upstream().await;
    let yaml = format!(
        r#"
routes:
  - {{ name: feed, path: /feed, upstream: "http://{addr}", auth: required }}
  - {{ name: keep, path: /keep, upstream: "http://{addr}", auth: required, close_on_token_expiry: false }}
"#
    );
    spawn(&yaml).await
}

/// Reads the stream until it fails or ends; returns (chunks read, ended with an error,
/// elapsed). Stops reading after `limit`.
async fn drain(resp: reqwest::Response, limit: Duration) -> (usize, bool, Duration) {
    let started = Instant::now();
    let mut resp = resp;
    let mut n = 0;
    while started.elapsed() < limit {
        match tokio::time::timeout(Duration::from_secs(2), resp.chunk()).await {
            Ok(Ok(Some(_))) => n += 1,
            Ok(Ok(None)) => return (n, false, started.elapsed()),
            Ok(Err(_)) => return (n, true, started.elapsed()),
            Err(_) => panic!("the stream stalled"),
        }
    }
    (n, false, started.elapsed())
}

#[tokio::test]
async fn streaming_response_is_cut_when_its_token_expires() {
    let (gw, kit) = setup().await;
    let token = kit.token(json!({"exp": now() + 2}));
    let resp = client()
        .get(gw.url("/feed"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (chunks, cut, took) = drain(resp, Duration::from_secs(8)).await;
    assert!(chunks > 0, "the stream flowed before expiry");
    assert!(cut, "the stream ends with an error, not a clean end");
    assert!(took <= Duration::from_secs(3), "cut after {took:?}");
}

#[tokio::test]
async fn streaming_response_is_cut_when_its_token_is_revoked() {
    let (gw, kit) = setup().await;
    let jti = uuid::Uuid::new_v4().to_string();
    let token = kit.token(json!({"jti": jti}));
    let mut resp = client()
        .get(gw.url("/feed"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(resp.chunk().await.unwrap().is_some());
    kit.revoke(&jti);
    let (_, cut, took) = drain(resp, Duration::from_secs(5)).await;
    assert!(cut);
    assert!(
        took < Duration::from_secs(1),
        "cut {took:?} after the revocation"
    );
}

#[tokio::test]
async fn route_can_let_streams_run() {
    let (gw, kit) = setup().await;
    let jti = uuid::Uuid::new_v4().to_string();
    let token = kit.token(json!({"jti": jti}));
    let resp = client()
        .get(gw.url("/keep"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    kit.revoke(&jti);
    let (chunks, cut, _) = drain(resp, Duration::from_millis(1500)).await;
    assert!(!cut && chunks >= 5, "{chunks} chunks, cut: {cut}");
}
