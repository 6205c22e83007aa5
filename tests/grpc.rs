//! gRPC end to end: a real tonic client calls a real tonic server through the gateway
//! (h2c both sides). Unary, server-streaming and bidirectional calls with a valid token;
//! without one the gateway answers UNAUTHENTICATED the gRPC way; the identity arrives as
//! metadata; the upstream's status travels back in trailers; `grpc-timeout` bounds the
//! wait (DEADLINE_EXCEEDED); an unreachable upstream is UNAVAILABLE; a streaming call is
//! cut when its token is revoked.

#![allow(clippy::result_large_err)] // tonic::Status is what gRPC calls return

mod common;

use std::convert::Infallible;
use std::pin::Pin;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use http::uri::PathAndQuery;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::net::TcpListener;
use tonic::codec::ProstCodec;
use tonic::{Code, Request, Response, Status, Streaming};

#[derive(Clone, PartialEq, prost::Message)]
pub struct Ping {
    #[prost(string, tag = "1")]
    pub text: String,
    #[prost(uint32, tag = "2")]
    pub count: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Pong {
    #[prost(string, tag = "1")]
    pub text: String,
    /// The `x-user-id` metadata the server received.
    #[prost(string, tag = "2")]
    pub user: String,
    /// The `te` header the server received.
    #[prost(string, tag = "3")]
    pub te: String,
}

type PongStream = Pin<Box<dyn Stream<Item = Result<Pong, Status>> + Send>>;

fn meta(req_meta: &tonic::metadata::MetadataMap, name: &str) -> String {
    req_meta
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// A gRPC server (h2c) with `test.Echo/{Unary,Slow,Count,Chat}`.
async fn grpc_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        let te = req
                            .headers()
                            .get("te")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        let mut grpc =
                            tonic::server::Grpc::new(ProstCodec::<Pong, Ping>::default());
                        let resp = match req.uri().path() {
                            "/test.Echo/Unary" | "/test.Echo/Slow" => {
                                let slow = req.uri().path().ends_with("Slow");
                                grpc.unary(
                                    tower::service_fn(move |r: Request<Ping>| {
                                        let te = te.clone();
                                        async move {
                                            if slow {
                                                tokio::time::sleep(Duration::from_secs(10)).await;
                                            }
                                            let user = meta(r.metadata(), "x-user-id");
                                            Ok::<_, Status>(Response::new(Pong {
                                                text: r.into_inner().text,
                                                user,
                                                te,
                                            }))
                                        }
                                    }),
                                    req,
                                )
                                .await
                            }
                            "/test.Echo/Count" => {
                                grpc.server_streaming(
                                    tower::service_fn(|r: Request<Ping>| async move {
                                        let user = meta(r.metadata(), "x-user-id");
                                        let ping = r.into_inner();
                                        let n = ping.count;
                                        // `count` messages 20 ms apart; a text of "fail" ends
                                        // with DATA_LOSS after them, carried in trailers.
                                        let fail = ping.text == "fail";
                                        let s = futures_util::stream::unfold(0u32, move |i| {
                                            let user = user.clone();
                                            async move {
                                                if i > n {
                                                    return None;
                                                }
                                                if i == n {
                                                    return fail.then(|| {
                                                        (
                                                            Err(Status::data_loss(
                                                                "lost after the stream",
                                                            )),
                                                            i + 1,
                                                        )
                                                    });
                                                }
                                                if i > 0 {
                                                    tokio::time::sleep(Duration::from_millis(20))
                                                        .await;
                                                }
                                                Some((
                                                    Ok(Pong {
                                                        text: i.to_string(),
                                                        user,
                                                        te: String::new(),
                                                    }),
                                                    i + 1,
                                                ))
                                            }
                                        });
                                        Ok::<_, Status>(Response::new(Box::pin(s) as PongStream))
                                    }),
                                    req,
                                )
                                .await
                            }
                            "/test.Echo/Chat" => {
                                grpc.streaming(
                                    tower::service_fn(|r: Request<Streaming<Ping>>| async move {
                                        let s = r.into_inner().map(|m| {
                                            m.map(|p| Pong {
                                                text: p.text.to_uppercase(),
                                                user: String::new(),
                                                te: String::new(),
                                            })
                                        });
                                        Ok::<_, Status>(Response::new(Box::pin(s) as PongStream))
                                    }),
                                    req,
                                )
                                .await
                            }
                            _ => http::Response::builder()
                                .header("grpc-status", "12")
                                .header("content-type", "application/grpc")
                                .body(tonic::body::empty_body())
                                .unwrap(),
                        };
                        Ok::<_, Infallible>(resp)
                    },
                );
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

type GrpcClient = tonic::client::Grpc<Client<HttpConnector, tonic::body::BoxBody>>;

/// A tonic client speaking h2c to `base` (`http://127.0.0.1:PORT`).
fn grpc_client(base: &str) -> GrpcClient {
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    tonic::client::Grpc::with_origin(client, base.parse().unwrap())
}

fn with_token<T>(msg: T, token: Option<&str>) -> Request<T> {
    let mut r = Request::new(msg);
    if let Some(t) = token {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    // A client may not choose its identity.
    r.metadata_mut()
        .insert("x-user-id", "admin".parse().unwrap());
    r
}

fn codec() -> ProstCodec<Ping, Pong> {
    ProstCodec::default()
}

fn ping(text: &str, count: u32) -> Ping {
    Ping {
        text: text.into(),
        count,
    }
}

async fn gateway() -> (common::TestGateway, common::authn::Kit) {
    let up = grpc_server().await;
    common::authn::spawn(&format!(
        "routes:\n  - name: grpc\n    path: /test.Echo\n    upstream: {{ targets: [http://{up}], protocol: h2c }}\n    auth: required\n  - name: grpc-down\n    path: /test.Down\n    upstream: {{ targets: [http://127.0.0.1:1], protocol: h2c, retries: 0 }}\n"
    ))
    .await
}

async fn unary(c: &mut GrpcClient, path: &'static str, req: Request<Ping>) -> Result<Pong, Status> {
    c.ready().await.unwrap();
    c.unary(req, PathAndQuery::from_static(path), codec())
        .await
        .map(Response::into_inner)
}

#[tokio::test]
async fn unary_calls_pass_with_a_token_and_are_refused_the_grpc_way_without() {
    let (gw, kit) = gateway().await;
    let mut c = grpc_client(&gw.base);
    let token = kit.token(json!({}));

    let pong = unary(
        &mut c,
        "/test.Echo/Unary",
        with_token(ping("hello", 0), Some(&token)),
    )
    .await
    .unwrap();
    assert_eq!(pong.text, "hello");
    assert_eq!(
        pong.user, "157",
        "the identity arrives as metadata, the spoofed one does not"
    );
    assert_eq!(pong.te, "trailers", "te: trailers reaches the upstream");

    let status = unary(&mut c, "/test.Echo/Unary", with_token(ping("x", 0), None))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(!status.message().is_empty());
    assert!(status
        .metadata()
        .get("www-authenticate")
        .is_some_and(|v| v.to_str().unwrap().starts_with("Bearer")));

    let status = unary(
        &mut c,
        "/test.Echo/Unary",
        with_token(ping("x", 0), Some("not.a.jwt")),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn a_missing_scope_is_permission_denied() {
    let up = grpc_server().await;
    let (gw, kit) = common::authn::spawn(&format!(
        "routes:\n  - name: grpc\n    path: /test.Echo\n    upstream: {{ targets: [http://{up}], protocol: h2c }}\n    auth: {{ mode: required, scopes: [billing:admin] }}\n"
    ))
    .await;
    let mut c = grpc_client(&gw.base);
    let status = unary(
        &mut c,
        "/test.Echo/Unary",
        with_token(ping("x", 0), Some(&kit.token(json!({})))),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn server_streaming_delivers_every_message_and_the_trailing_status() {
    let (gw, kit) = gateway().await;
    let mut c = grpc_client(&gw.base);
    let token = kit.token(json!({}));
    c.ready().await.unwrap();
    let mut stream = c
        .server_streaming(
            with_token(ping("ok", 5), Some(&token)),
            PathAndQuery::from_static("/test.Echo/Count"),
            codec(),
        )
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(m) = stream.message().await.unwrap() {
        assert_eq!(m.user, "157");
        got.push(m.text);
    }
    assert_eq!(got, ["0", "1", "2", "3", "4"]);

    // A status the upstream sends in trailers after the messages arrives intact.
    c.ready().await.unwrap();
    let mut stream = c
        .server_streaming(
            with_token(ping("fail", 2), Some(&token)),
            PathAndQuery::from_static("/test.Echo/Count"),
            codec(),
        )
        .await
        .unwrap()
        .into_inner();
    assert!(stream.message().await.unwrap().is_some());
    assert!(stream.message().await.unwrap().is_some());
    let status = stream.message().await.unwrap_err();
    assert_eq!(status.code(), Code::DataLoss);
    assert_eq!(status.message(), "lost after the stream");
}

#[tokio::test]
async fn bidirectional_streaming_echoes_each_message_as_it_comes() {
    let (gw, kit) = gateway().await;
    let mut c = grpc_client(&gw.base);
    let token = kit.token(json!({}));
    // The client sends one message, waits for its answer, then sends the next: only a
    // proxy that buffers nothing lets this finish.
    let (tx, rx) = tokio::sync::mpsc::channel::<Ping>(1);
    let outbound = tokio_stream_from(rx);
    c.ready().await.unwrap();
    tx.send(ping("one", 0)).await.unwrap();
    let mut inbound = c
        .streaming(
            with_token(outbound, Some(&token)),
            PathAndQuery::from_static("/test.Echo/Chat"),
            codec(),
        )
        .await
        .unwrap()
        .into_inner();
    for (send_next, want) in [
        (Some("two"), "ONE"),
        (Some("three"), "TWO"),
        (None, "THREE"),
    ] {
        let m = tokio::time::timeout(Duration::from_secs(10), inbound.message())
            .await
            .expect("an answer before the next message is sent")
            .unwrap()
            .unwrap();
        assert_eq!(m.text, want);
        match send_next {
            Some(t) => tx.send(ping(t, 0)).await.unwrap(),
            None => break,
        }
    }
    drop(tx);
    assert!(inbound.message().await.unwrap().is_none());

    // Without a token the call is refused before anything reaches the upstream.
    c.ready().await.unwrap();
    let status = c
        .streaming(
            with_token(futures_util::stream::iter(vec![ping("x", 0)]), None),
            PathAndQuery::from_static("/test.Echo/Chat"),
            codec(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

fn tokio_stream_from(mut rx: tokio::sync::mpsc::Receiver<Ping>) -> impl Stream<Item = Ping> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn grpc_timeout_bounds_the_wait_and_an_unreachable_upstream_is_unavailable() {
    let (gw, kit) = gateway().await;
    let mut c = grpc_client(&gw.base);
    let token = kit.token(json!({}));
    let mut req = with_token(ping("x", 0), Some(&token));
    req.set_timeout(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let status = unary(&mut c, "/test.Echo/Slow", req).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the route's 30 s timeout was not used"
    );

    let status = unary(&mut c, "/test.Down/Unary", with_token(ping("x", 0), None))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
}

#[tokio::test]
async fn a_streaming_call_is_cut_when_its_token_is_revoked() {
    let (gw, kit) = gateway().await;
    let mut c = grpc_client(&gw.base);
    let jti = "grpc-stream-token";
    let token = kit.token(json!({ "jti": jti }));
    c.ready().await.unwrap();
    let mut stream = c
        .server_streaming(
            with_token(ping("ok", 100_000), Some(&token)),
            PathAndQuery::from_static("/test.Echo/Count"),
            codec(),
        )
        .await
        .unwrap()
        .into_inner();
    assert!(stream.message().await.unwrap().is_some());
    kit.revoke(jti);
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return Ok(()),
                Err(s) => return Err(s),
            }
        }
    })
    .await
    .expect("the stream ends soon after revocation");
    assert!(ended.is_err(), "a cut stream must not look complete");
}
