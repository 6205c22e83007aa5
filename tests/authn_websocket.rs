//! Long-lived connections do not outlive their token: a WebSocket opened with a token is
//! closed when the token expires or is revoked (unless the route opts out).

mod common;

use std::time::{Duration, Instant};

use common::authn::{now, spawn, Kit};
use common::{TestGateway, Upstream};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn setup() -> (TestGateway, Kit, Upstream) {
    let up = Upstream::start().await;
    let yaml = format!(
        r#"
routes:
  - {{ name: ws, path: /ws, upstream: "{u}", auth: required }}
  - {{ name: keep, path: /keep, upstream: "{u}/ws", strip_prefix: true, auth: required, close_on_token_expiry: false }}
"#,
        u = up.url()
    );
    let (gw, kit) = spawn(&yaml).await;
    (gw, kit, up)
}

async fn open(gw: &TestGateway, path: &str, token: &str) -> Ws {
    let url = format!("{}{}", gw.base.replace("http://", "ws://"), path);
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.status(), 101);
    ws
}

async fn echo(ws: &mut Ws, text: &str) {
    ws.send(Message::Text(text.into())).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("echo in time")
        .expect("stream open")
        .expect("message");
    assert_eq!(got.into_text().unwrap(), text);
}

/// Waits (bounded) for the connection to end; returns how long it took.
async fn closed_within(ws: &mut Ws, limit: Duration) -> Duration {
    let started = Instant::now();
    let ended = tokio::time::timeout(limit, async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the connection is still open after {limit:?}"
    );
    started.elapsed()
}

#[tokio::test]
async fn websocket_closes_when_its_token_expires() {
    let (gw, kit, _up) = setup().await;
    let token = kit.token(json!({"exp": now() + 3}));
    let mut ws = open(&gw, "/ws", &token).await;
    echo(&mut ws, "hello").await;
    let took = closed_within(&mut ws, Duration::from_secs(10)).await;
    assert!(took <= Duration::from_secs(4), "closed after {took:?}");
}

#[tokio::test]
async fn websocket_closes_when_its_token_is_revoked() {
    let (gw, kit, _up) = setup().await;
    let jti = uuid::Uuid::new_v4().to_string();
    let token = kit.token(json!({"jti": jti}));
    let mut ws = open(&gw, "/ws", &token).await;
    echo(&mut ws, "before").await;
    kit.revoke(&jti);
    let took = closed_within(&mut ws, Duration::from_secs(5)).await;
    assert!(
        took < Duration::from_secs(1),
        "closed {took:?} after the revocation"
    );
}

#[tokio::test]
async fn route_can_keep_connections_open() {
    let (gw, kit, _up) = setup().await;
    let jti = uuid::Uuid::new_v4().to_string();
    let token = kit.token(json!({"jti": jti}));
    let mut ws = open(&gw, "/keep", &token).await;
    kit.revoke(&jti);
    echo(&mut ws, "still here").await;
    // New connections with the revoked token are refused, though.
    let url = format!("{}/keep", gw.base.replace("http://", "ws://"));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 401),
        other => panic!("expected 401, got {other}"),
    }
}
