//! A fake identity provider on 127.0.0.1: an RFC 7662 introspection endpoint and a JWKS
//! endpoint, both counting their calls, with switchable failure modes.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::Value;
use tokio::net::TcpListener;

pub const CLIENT_ID: &str = "tollgate";
pub const CLIENT_SECRET: &str = "s3cret";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Mode {
    Up = 0,
    /// Answers 500.
    Failing = 1,
    /// Answers after 5 s (past any test timeout).
    Slow = 2,
    /// Answers 200 with whatever [`Idp::set_raw`] set, JSON or not.
    Raw = 3,
}

/// What the JWKS endpoint answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwksAnswer {
    /// The keys in [`Idp::jwks`].
    Keys,
    /// This status with an empty JSON object.
    Status(u16),
    /// 200 with this body, JSON or not.
    Body(String),
    /// The keys, after 5 s.
    Slow,
}

#[derive(Clone)]
pub struct Idp {
    pub addr: SocketAddr,
    pub introspections: Arc<AtomicUsize>,
    pub jwks_fetches: Arc<AtomicUsize>,
    /// token → introspection answer.
    pub tokens: Arc<Mutex<HashMap<String, Value>>>,
    pub jwks: Arc<Mutex<Value>>,
    mode: Arc<AtomicU8>,
    /// Delay before each introspection answer, in ms.
    pub delay_ms: Arc<AtomicUsize>,
    /// The `traceparent` of every request that carried one.
    pub traceparents: Arc<Mutex<Vec<String>>>,
    raw: Arc<Mutex<String>>,
    jwks_answer: Arc<Mutex<JwksAnswer>>,
}

impl Idp {
    pub async fn start() -> Idp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let idp = Idp {
            addr: listener.local_addr().unwrap(),
            introspections: Arc::default(),
            jwks_fetches: Arc::default(),
            tokens: Arc::default(),
            jwks: Arc::new(Mutex::new(serde_json::json!({"keys": []}))),
            mode: Arc::default(),
            delay_ms: Arc::default(),
            traceparents: Arc::default(),
            raw: Arc::default(),
            jwks_answer: Arc::new(Mutex::new(JwksAnswer::Keys)),
        };
        let me = idp.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let me = me.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let me = me.clone();
                        async move { Ok::<_, Infallible>(me.handle(req).await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        idp
    }

    pub fn introspect_url(&self) -> String {
        format!("http://{}/introspect", self.addr)
    }

    pub fn jwks_url(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }

    pub fn set_mode(&self, m: Mode) {
        self.mode.store(m as u8, Ordering::SeqCst);
    }

    /// Switches introspection to [`Mode::Raw`] answering `body`.
    pub fn set_raw(&self, body: &str) {
        *self.raw.lock().unwrap() = body.to_string();
        self.set_mode(Mode::Raw);
    }

    pub fn set_jwks_answer(&self, answer: JwksAnswer) {
        *self.jwks_answer.lock().unwrap() = answer;
    }

    pub fn add_token(&self, token: &str, answer: Value) {
        self.tokens.lock().unwrap().insert(token.into(), answer);
    }

    pub fn calls(&self) -> usize {
        self.introspections.load(Ordering::SeqCst)
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_string();
        if let Some(tp) = req
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
        {
            self.traceparents.lock().unwrap().push(tp.to_string());
        }
        if path == "/jwks.json" {
            self.jwks_fetches.fetch_add(1, Ordering::SeqCst);
            let answer = self.jwks_answer.lock().unwrap().clone();
            return match answer {
                JwksAnswer::Keys => json(StatusCode::OK, self.jwks.lock().unwrap().to_string()),
                JwksAnswer::Status(code) => json(StatusCode::from_u16(code).unwrap(), "{}".into()),
                JwksAnswer::Body(body) => json(StatusCode::OK, body),
                JwksAnswer::Slow => {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    json(StatusCode::OK, self.jwks.lock().unwrap().to_string())
                }
            };
        }
        self.introspections.fetch_add(1, Ordering::SeqCst);
        let authorized = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .is_some_and(|d| d == format!("{CLIENT_ID}:{CLIENT_SECRET}").as_bytes());
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let token = form_urlencoded::parse(&body)
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay as u64)).await;
        }
        match self.mode.load(Ordering::SeqCst) {
            1 => return json(StatusCode::INTERNAL_SERVER_ERROR, "{}".into()),
            2 => {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            3 => return json(StatusCode::OK, self.raw.lock().unwrap().clone()),
            _ => {}
        }
        if !authorized {
            return json(
                StatusCode::UNAUTHORIZED,
                r#"{"error":"invalid_client"}"#.into(),
            );
        }
        let answer = self
            .tokens
            .lock()
            .unwrap()
            .get(&token)
            .cloned()
            .unwrap_or_else(|| serde_json::json!({"active": false}));
        json(StatusCode::OK, answer.to_string())
    }
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}
