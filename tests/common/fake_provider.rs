//! A fake OAuth 2.0 provider on 127.0.0.1 for the provider-connect tests, and the tiny
//! integrator page the browser lands on at the end.
//!
//! The provider behaves like a strict real one: `/authorize` redirects straight back to
//! the `redirect_uri` it was given with a one-time code (or `error=access_denied` when told
//! to deny); `/token` accepts the code once, only with the same `redirect_uri`, the right
//! client credentials and a `code_verifier` whose S256 matches the challenge sent to
//! `/authorize`; `/userinfo` answers for the access token it issued. Every request URL and
//! every call count is recorded so tests can assert what the provider saw.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

type Handler = Arc<
    dyn Fn(Request<Incoming>) -> futures_util::future::BoxFuture<'static, Response<Full<Bytes>>>
        + Send
        + Sync,
>;

/// Serves `handler` on a fresh 127.0.0.1 port until the process ends.
async fn serve(handler: Handler) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let h = handler.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let h = h.clone();
                    async move { Ok::<_, Infallible>(h(req).await) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// How the provider behaves for the next requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Grant,
    /// `/authorize` sends the user back with `error=access_denied`.
    Deny,
    /// `/token` answers 500.
    FailToken,
    /// `/userinfo` answers 401.
    FailUserinfo,
    /// `/token` answers form-encoded, as GitHub does to clients that do not ask for JSON
    /// (and as this one does even to those that do).
    FormEncodedToken,
    /// `/token` answers only after 30 s (longer than any test's `provider_timeout`).
    SlowToken,
}

struct PendingCode {
    challenge: String,
    redirect_uri: String,
    client_id: String,
}

#[derive(Default)]
struct State {
    mode: Mode,
    user_id: String,
    email: String,
    codes: HashMap<String, PendingCode>,
    access_tokens: HashMap<String, (String, String)>,
    /// Every request line (path + query) the provider received, for leak checks.
    seen: Vec<String>,
    /// Form bodies posted to `/token`.
    token_forms: Vec<HashMap<String, String>>,
    /// Why the last `/token` call was refused, if it was.
    last_token_error: Option<String>,
    /// (path, traceparent) of every request that carried a `traceparent`.
    traceparents: Vec<(String, String)>,
}

#[derive(Clone)]
pub struct FakeProvider {
    pub addr: SocketAddr,
    pub client_id: String,
    pub client_secret: String,
    state: Arc<Mutex<State>>,
    pub authorize_calls: Arc<AtomicUsize>,
    pub token_calls: Arc<AtomicUsize>,
    pub userinfo_calls: Arc<AtomicUsize>,
}

impl FakeProvider {
    pub async fn start(client_id: &str, client_secret: &str) -> FakeProvider {
        let state = Arc::new(Mutex::new(State {
            user_id: "fb-1001".into(),
            email: "linked@example.com".into(),
            ..Default::default()
        }));
        let mut fp = FakeProvider {
            addr: ([127, 0, 0, 1], 0).into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            state,
            authorize_calls: Arc::default(),
            token_calls: Arc::default(),
            userinfo_calls: Arc::default(),
        };
        let me = fp.clone();
        fp.addr = serve(Arc::new(move |req| {
            let me = me.clone();
            Box::pin(async move { me.handle(req).await })
        }))
        .await;
        fp
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = mode;
    }

    /// The provider account the next grants are for.
    pub fn set_user(&self, id: &str, email: &str) {
        let mut s = self.state.lock().unwrap();
        s.user_id = id.into();
        s.email = email.into();
    }

    pub fn seen(&self) -> Vec<String> {
        self.state.lock().unwrap().seen.clone()
    }

    pub fn token_forms(&self) -> Vec<HashMap<String, String>> {
        self.state.lock().unwrap().token_forms.clone()
    }

    /// (path, traceparent) of every request that carried a `traceparent`.
    pub fn traceparents(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().traceparents.clone()
    }

    pub fn last_token_error(&self) -> Option<String> {
        self.state.lock().unwrap().last_token_error.clone()
    }

    /// The access tokens this provider has issued.
    pub fn issued_access_tokens(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .access_tokens
            .keys()
            .cloned()
            .collect()
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        {
            let mut state = self.state.lock().unwrap();
            state.seen.push(format!("{path}?{query}"));
            if let Some(tp) = req
                .headers()
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
            {
                state.traceparents.push((path.clone(), tp.to_string()));
            }
        }
        match path.as_str() {
            "/authorize" => self.authorize(&query),
            "/token" => {
                let body = req.into_body().collect().await.unwrap().to_bytes();
                if self.state.lock().unwrap().mode == Mode::SlowToken {
                    self.token_calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                }
                self.token(&body)
            }
            "/userinfo" => self.userinfo(req.headers()),
            _ => text(StatusCode::NOT_FOUND, "not found"),
        }
    }

    fn authorize(&self, query: &str) -> Response<Full<Bytes>> {
        self.authorize_calls.fetch_add(1, Ordering::SeqCst);
        let q: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let (Some(redirect_uri), Some(state)) = (q.get("redirect_uri"), q.get("state")) else {
            return text(
                StatusCode::BAD_REQUEST,
                "redirect_uri and state are required",
            );
        };
        if q.get("client_id") != Some(&self.client_id)
            || q.get("response_type").map(String::as_str) != Some("code")
            || q.get("code_challenge_method").map(String::as_str) != Some("S256")
        {
            return text(
                StatusCode::BAD_REQUEST,
                "bad client_id, response_type or code_challenge_method",
            );
        }
        let mut s = self.state.lock().unwrap();
        let mut back = url::Url::parse(redirect_uri).unwrap();
        if s.mode == Mode::Deny {
            back.query_pairs_mut()
                .append_pair("error", "access_denied")
                .append_pair("error_description", "The user denied your request.")
                .append_pair("state", state);
        } else {
            let code = random();
            s.codes.insert(
                code.clone(),
                PendingCode {
                    challenge: q.get("code_challenge").cloned().unwrap_or_default(),
                    redirect_uri: redirect_uri.clone(),
                    client_id: self.client_id.clone(),
                },
            );
            back.query_pairs_mut()
                .append_pair("code", &code)
                .append_pair("state", state);
        }
        let mut resp = text(StatusCode::FOUND, "");
        resp.headers_mut()
            .insert(header::LOCATION, back.as_str().parse().unwrap());
        resp
    }

    fn token(&self, body: &[u8]) -> Response<Full<Bytes>> {
        self.token_calls.fetch_add(1, Ordering::SeqCst);
        let form: HashMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
        let mut s = self.state.lock().unwrap();
        s.token_forms.push(form.clone());
        if s.mode == Mode::FailToken {
            return json(
                StatusCode::INTERNAL_SERVER_ERROR,
                serde_json::json!({"error": "server_error"}),
            );
        }
        let refuse = |s: &mut State, why: &str| {
            s.last_token_error = Some(why.to_string());
            json(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": "invalid_grant", "error_description": why}),
            )
        };
        if form.get("grant_type").map(String::as_str) != Some("authorization_code") {
            return refuse(&mut s, "grant_type");
        }
        if form.get("client_id") != Some(&self.client_id)
            || form.get("client_secret") != Some(&self.client_secret)
        {
            return refuse(&mut s, "client authentication");
        }
        // A code is good once, whatever happens next.
        let Some(pending) = form.get("code").and_then(|c| s.codes.remove(c)) else {
            return refuse(&mut s, "unknown or used code");
        };
        if form.get("redirect_uri") != Some(&pending.redirect_uri)
            || pending.client_id != self.client_id
        {
            return refuse(&mut s, "redirect_uri differs from the authorize request");
        }
        let verifier = form.get("code_verifier").cloned().unwrap_or_default();
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(verifier.as_bytes()));
        if verifier.len() < 43 || challenge != pending.challenge {
            return refuse(&mut s, "PKCE verifier does not match the challenge");
        }
        let access = format!("prov-at-{}", random());
        let who = (s.user_id.clone(), s.email.clone());
        s.access_tokens.insert(access.clone(), who);
        s.last_token_error = None;
        if s.mode == Mode::FormEncodedToken {
            let body = form_urlencoded::Serializer::new(String::new())
                .append_pair("access_token", &access)
                .append_pair("scope", "read:user,user:email")
                .append_pair("token_type", "bearer")
                .finish();
            let mut resp = text(StatusCode::OK, &body);
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                "application/x-www-form-urlencoded".parse().unwrap(),
            );
            return resp;
        }
        json(
            StatusCode::OK,
            serde_json::json!({
                "access_token": access,
                "token_type": "bearer",
                "expires_in": 5183944,
                "refresh_token": format!("prov-rt-{}", random()),
            }),
        )
    }

    fn userinfo(&self, headers: &http::HeaderMap) -> Response<Full<Bytes>> {
        self.userinfo_calls.fetch_add(1, Ordering::SeqCst);
        let s = self.state.lock().unwrap();
        if s.mode == Mode::FailUserinfo {
            return json(
                StatusCode::UNAUTHORIZED,
                serde_json::json!({"error": "invalid_token"}),
            );
        }
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        match s.access_tokens.get(token) {
            // Facebook-shaped: `id` and `email`.
            Some((id, email)) => json(
                StatusCode::OK,
                serde_json::json!({"id": id, "name": "Test User", "email": email}),
            ),
            None => json(
                StatusCode::UNAUTHORIZED,
                serde_json::json!({"error": "invalid_token"}),
            ),
        }
    }
}

/// The integrator's landing page: shows the outcome from its query in the DOM, and
/// records every `path?query` it was called with (browsers also ask for /favicon.ico).
#[derive(Clone)]
pub struct Integrator {
    pub addr: SocketAddr,
    hits: Arc<Mutex<Vec<String>>>,
}

impl Integrator {
    pub async fn start() -> Integrator {
        let hits: Arc<Mutex<Vec<String>>> = Arc::default();
        let h2 = hits.clone();
        let addr = serve(Arc::new(move |req: Request<Incoming>| {
            let hits = h2.clone();
            Box::pin(async move {
                let query = req.uri().query().unwrap_or("").to_string();
                hits.lock()
                    .unwrap()
                    .push(format!("{}?{query}", req.uri().path()));
                let q: HashMap<String, String> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
                let esc = |s: Option<&String>| {
                    s.map(|s| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;"))
                        .unwrap_or_default()
                };
                let html = format!(
                    "<html><body><h1>Integrator</h1><p id=\"status\">{}</p><p id=\"error\">{}</p><p id=\"provider\">{}</p></body></html>",
                    esc(q.get("status")),
                    esc(q.get("error")),
                    esc(q.get("provider"))
                );
                let mut resp = Response::new(Full::new(Bytes::from(html)));
                resp.headers_mut()
                    .insert(header::CONTENT_TYPE, "text/html; charset=utf-8".parse().unwrap());
                resp
            })
        }))
        .await;
        Integrator { addr, hits }
    }

    /// The integrator URL the gateway is allowed to send the browser back to.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn hits(&self) -> Vec<String> {
        self.hits.lock().unwrap().clone()
    }
}

fn random() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp
}

fn json(status: StatusCode, v: serde_json::Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(v.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    resp
}
