//! Faults around the gateway, each failing closed: a store that hangs or goes away
//! (`/readyz` answers within its timeout, self-issued JWT routes keep serving, the token
//! endpoint fails with a clear 503); an introspection or JWKS server that is down, slow or
//! answers garbage (never a 200 for a token it could not check); an upstream that is
//! down, slow or resets mid-response (502/504, a cut body is never passed off as whole);
//! a bad target ejected and taken back once it recovers; SIGTERM under load.

mod common;

use std::time::{Duration, Instant};

use common::authn::{claims, other_rsa_pair, sign, spawn};
use common::idp::{Idp, JwksAnswer, Mode, CLIENT_ID, CLIENT_SECRET};
use common::oauth::TokenGateway;
use common::process::GatewayProcess;
use common::relay::Relay;
use common::{bearer_status, client, spawn_proxy_only, wait_until, TestGateway, Upstream};
use serde_json::json;
use tokio::io::AsyncWriteExt;

/// A token gateway whose PostgreSQL connections go through a relay the test can freeze or
/// cut, a required route in front of an upstream, and a signed-in user's access token.
struct StoreBehindRelay {
    relay: Relay,
    up: Upstream,
    gw: TokenGateway,
    /// The password grant's answer, and its access token.
    token: serde_json::Value,
    access: String,
}

impl StoreBehindRelay {
    async fn start(url: &str) -> StoreBehindRelay {
        let mut parsed = url::Url::parse(url).unwrap();
        let target = format!(
            "{}:{}",
            parsed.host_str().unwrap(),
            parsed.port().unwrap_or(5432)
        );
        let relay = Relay::start(target.parse().unwrap()).await;
        parsed.set_port(Some(relay.addr.port())).unwrap();
        let up = Upstream::start().await;
        let gw = TokenGateway::start_on(
            Some(parsed.as_str()),
            "",
            &format!(
                "routes:\n  - {{ name: api, path: /api, upstream: \"{}\", auth: required }}\n",
                up.url()
            ),
        )
        .await;
        let token = gw.password_token("john_doe", "john_doe_secret").await;
        let access = token["access_token"].as_str().unwrap().to_string();
        StoreBehindRelay {
            relay,
            up,
            gw,
            token,
            access,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_store_is_reported_not_waited_on() {
    common::pg::with_database("faults_hang", |url| async move {
        let StoreBehindRelay {
            relay,
            up: _up,
            gw,
            access,
            ..
        } = StoreBehindRelay::start(&url).await;
        let c = client();
        let ready = |c: reqwest::Client, url: String| async move {
            c.get(url).send().await.unwrap().status().as_u16()
        };
        assert_eq!(ready(c.clone(), format!("{}/readyz", gw.admin)).await, 200);

        relay.freeze();
        let started = Instant::now();
        let status = ready(c.clone(), format!("{}/readyz", gw.admin)).await;
        let took = started.elapsed();
        assert_eq!(status, 503, "a hanging store is not ready");
        assert!(
            took < Duration::from_secs(6),
            "/readyz must answer within its timeout, took {took:?}"
        );

        // Self-issued JWTs need no store: the data path keeps serving.
        let s = c
            .get(gw.url("/api/x"))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(s, 200);

        // The token endpoint answers 503, not a hang.
        let started = Instant::now();
        let r = c
            .post(gw.url("/oauth/token"))
            .basic_auth(
                common::oauth::BASIC_CLIENT.0,
                Some(common::oauth::BASIC_CLIENT.1),
            )
            .form(&[
                ("grant_type", "password"),
                ("username", "john_doe"),
                ("password", "john_doe_secret"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            503,
            "store hanging: {}",
            r.text().await.unwrap()
        );
        assert!(started.elapsed() < Duration::from_secs(15));

        relay.thaw();
        common::wait_until(Duration::from_secs(20), "ready again", || {
            ready(c.clone(), format!("{}/readyz", gw.admin)).then_some_200()
        })
        .await;
        drop(gw);
    })
    .await;
}

trait ThenSome200 {
    fn then_some_200(self) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>;
}

impl<F: std::future::Future<Output = u16> + Send + 'static> ThenSome200 for F {
    fn then_some_200(self) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>> {
        Box::pin(async move { self.await == 200 })
    }
}

/// Introspection answering garbage: a body that is not JSON, JSON of the wrong shape,
/// `active` as a string, an active answer without a subject. None of them lets the token
/// through, and none is cached as a success.
#[tokio::test]
async fn introspection_answering_garbage_fails_closed() {
    let up = Upstream::start().await;
    let idp = Idp::start().await;
    std::env::set_var("FAULTS_INTROSPECT_SECRET", CLIENT_SECRET);
    let yaml = format!(
        r#"
introspection:
  - name: corp
    url: {url}
    client_id: {CLIENT_ID}
    client_secret_env: FAULTS_INTROSPECT_SECRET
    timeout: 500ms
    cache: {{ ttl: 60s, negative_ttl: 1ms, max_entries: 1000 }}
routes:
  - {{ name: api, path: /api, upstream: "{u}", auth: required }}
"#,
        url = idp.introspect_url(),
        u = up.url()
    );
    let (gw, kit) = spawn(&yaml).await;
    let exp = common::authn::now() + 600;
    for (i, body) in [
        "<html>502 Bad Gateway</html>".to_string(),
        "{\"active\": tru".to_string(),
        "[]".to_string(),
        "null".to_string(),
        json!({"active": "true", "sub": "u1", "exp": exp}).to_string(),
        json!({"active": 1, "sub": "u1", "exp": exp}).to_string(),
        json!({"active": true, "exp": exp}).to_string(),
        json!({"active": true, "sub": "u1", "exp": "never"}).to_string(),
        json!({"active": true, "sub": ["u1"], "exp": exp}).to_string(),
    ]
    .into_iter()
    .enumerate()
    {
        idp.set_raw(&body);
        let token = format!("opaque-garbage-{i}");
        let s = bearer_status(&gw.url("/api/x"), &token).await;
        assert!(s == 401 || s == 503, "answer {body:?} gave {s}");
        // Not cached as a success: asked again, refused again.
        let s = bearer_status(&gw.url("/api/x"), &token).await;
        assert!(
            s == 401 || s == 503,
            "answer {body:?} gave {s} the second time"
        );
    }
    assert!(up.requests().is_empty(), "nothing reached the upstream");
    // Self-issued JWTs are verified locally and keep serving.
    assert_eq!(
        bearer_status(&gw.url("/api/x"), &kit.token(json!({}))).await,
        200
    );
    // A well-formed answer works again.
    idp.set_mode(Mode::Up);
    idp.add_token(
        "opaque-good",
        json!({"active": true, "sub": "u1", "exp": exp}),
    );
    assert_eq!(bearer_status(&gw.url("/api/x"), "opaque-good").await, 200);
}

const FOREIGN: &str = "https://idp.example.test/";

fn foreign_jwk(kid: &str) -> serde_json::Value {
    common::authn::other_rsa_jwk(kid)
}

fn foreign_token(kid: &str) -> String {
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    h.kid = Some(kid.into());
    sign(
        &h,
        &claims(json!({"iss": FOREIGN, "aud": "my-api", "sub": "ext-1"})),
        &jsonwebtoken::EncodingKey::from_rsa_pem(other_rsa_pair().0.as_bytes()).unwrap(),
    )
}

async fn jwks_gateway(jwks_url: &str, up: &Upstream) -> (TestGateway, common::authn::Kit) {
    spawn(&format!(
        r#"
jwt_issuers:
  - issuer: "{FOREIGN}"
    jwks_url: {jwks_url}
    audience: my-api
    refetch_interval: 1ms
routes:
  - {{ name: api, path: /api, upstream: "{u}", auth: required }}
"#,
        u = up.url()
    ))
    .await
}

/// A JWKS server that is down, answers an error, or answers garbage: foreign JWTs get 503
/// (the keys are unknown, not the token bad), never 200, and self-issued JWTs keep
/// serving throughout.
#[tokio::test]
async fn jwks_down_or_garbage_fails_closed_for_foreign_jwts_only() {
    let up = Upstream::start().await;
    // Down: nothing listens on the JWKS port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap();
    drop(closed);
    let (gw, kit) = jwks_gateway(&format!("http://{dead}/jwks.json"), &up).await;
    assert_eq!(
        bearer_status(&gw.url("/api/x"), &foreign_token("k1")).await,
        503
    );
    assert_eq!(
        bearer_status(&gw.url("/api/x"), &kit.token(json!({}))).await,
        200
    );
    drop(gw);

    let idp = Idp::start().await;
    *idp.jwks.lock().unwrap() = json!({"keys": [foreign_jwk("k1")]});
    let (gw, kit) = jwks_gateway(&idp.jwks_url(), &up).await;
    let before = up.requests().len();
    for answer in [
        JwksAnswer::Status(500),
        JwksAnswer::Status(404),
        JwksAnswer::Body("<html>oops</html>".into()),
        JwksAnswer::Body("{\"keys\": [".into()),
        JwksAnswer::Body("{}".into()),
        JwksAnswer::Body(json!({"keys": "k1"}).to_string()),
        JwksAnswer::Body(json!({"keys": [{"kty": "RSA", "kid": "k1", "n": "!!", "e": "AQAB"}]}).to_string()),
        // The right kid with the wrong key material: the signature cannot verify.
        JwksAnswer::Body(json!({"keys": [{"kty": "RSA", "kid": "k1", "alg": "RS256", "n": common::authn::b64(&[0xc5; 256]), "e": "AQAB"}]}).to_string()),
    ] {
        idp.set_jwks_answer(answer.clone());
        let s = bearer_status(&gw.url("/api/x"), &foreign_token("k1")).await;
        assert!(s == 503 || s == 401, "JWKS answer {answer:?} gave {s}");
        assert_eq!(
            bearer_status(&gw.url("/api/x"), &kit.token(json!({}))).await,
            200,
            "self-issued tokens keep serving while the JWKS answers {answer:?}"
        );
    }
    assert_eq!(
        up.requests().len(),
        before + 8,
        "only the self-issued requests reached the upstream"
    );
    // The last answer held a usable key under `k1`, only not the right one: `k1` tokens
    // stay refused until a refetch, which a token with a new `kid` brings once the JWKS
    // is sound again.
    idp.set_jwks_answer(JwksAnswer::Keys);
    assert_eq!(
        bearer_status(&gw.url("/api/x"), &foreign_token("k1")).await,
        401
    );
    *idp.jwks.lock().unwrap() = json!({"keys": [foreign_jwk("k1"), foreign_jwk("k2")]});
    assert_eq!(
        bearer_status(&gw.url("/api/x"), &foreign_token("k2")).await,
        200
    );
    assert_eq!(
        bearer_status(&gw.url("/api/x"), &foreign_token("k1")).await,
        200
    );
}

/// Keys fetched once keep verifying while a later refetch (a token with a new `kid`)
/// finds the JWKS server answering garbage: the good key set is not replaced by an empty
/// one.
#[tokio::test]
async fn a_garbage_refetch_does_not_drop_the_keys_already_known() {
    let up = Upstream::start().await;
    let idp = Idp::start().await;
    *idp.jwks.lock().unwrap() = json!({"keys": [foreign_jwk("k1")]});
    let (gw, _kit) = jwks_gateway(&idp.jwks_url(), &up).await;
    assert_eq!(
        bearer_status(&gw.url("/api/x"), &foreign_token("k1")).await,
        200
    );
    for garbage in ["{}", "{\"keys\": []}", "{\"keys\": [{\"kty\": \"none\"}]}"] {
        idp.set_jwks_answer(JwksAnswer::Body(garbage.into()));
        let fetches = idp.jwks_fetches.load(std::sync::atomic::Ordering::SeqCst);
        // An unknown kid makes the gateway refetch, and the refetch brings nothing usable.
        let s = bearer_status(&gw.url("/api/x"), &foreign_token("k-new")).await;
        assert!(s == 401 || s == 503, "{garbage}: {s}");
        assert!(idp.jwks_fetches.load(std::sync::atomic::Ordering::SeqCst) > fetches);
        assert_eq!(
            bearer_status(&gw.url("/api/x"), &foreign_token("k1")).await,
            200,
            "{garbage}: the known key still verifies"
        );
    }
}

/// A JWKS server that never answers: the foreign token waits for the fetch timeout and
/// gets 503, while self-issued tokens are served meanwhile, unblocked by the pending
/// fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_jwks_server_is_503_for_foreign_tokens_and_blocks_nothing_else() {
    let up = Upstream::start().await;
    let idp = Idp::start().await;
    *idp.jwks.lock().unwrap() = json!({"keys": [foreign_jwk("k1")]});
    idp.set_jwks_answer(JwksAnswer::Slow);
    // A relay that holds the connection without answering: slower than any timeout.
    let relay = Relay::start(idp.addr).await;
    relay.freeze();
    let (gw, kit) = jwks_gateway(&format!("http://{}/jwks.json", relay.addr), &up).await;
    let gw = std::sync::Arc::new(gw);
    let gw2 = gw.clone();
    let started = Instant::now();
    let foreign =
        tokio::spawn(async move { bearer_status(&gw2.url("/api/x"), &foreign_token("k1")).await });
    wait_until(
        Duration::from_secs(10),
        "the JWKS fetch is pending",
        || async { relay.accepted() > 0 },
    )
    .await;
    assert_eq!(
        bearer_status(&gw.url("/api/x"), &kit.token(json!({}))).await,
        200
    );
    assert!(
        !foreign.is_finished(),
        "the foreign token waits on the fetch"
    );
    assert_eq!(foreign.await.unwrap(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "the fetch is bounded by its timeout"
    );
    assert_eq!(
        up.requests().len(),
        1,
        "only the self-issued request passed"
    );
}

/// An upstream that resets the connection before answering is a 502; one that resets
/// after sending part of a response never has the cut body passed off as complete (the
/// client sees the response fail); the gateway keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_resetting_mid_response_is_never_a_whole_response() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Some(head) = common::upstream::read_head(&mut s).await else {
                    return;
                };
                let text = String::from_utf8_lossy(&head).into_owned();
                let partial: &[u8] = if text.starts_with("GET /cut/length") {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\npartial body"
                } else if text.starts_with("GET /cut/chunked") {
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nc\r\npartial body\r\n"
                } else if text.starts_with("GET /cut/head") {
                    b"HTTP/1.1 200 OK\r\nContent-Ty"
                } else {
                    b""
                };
                let _ = s.write_all(partial).await;
                let _ = s.flush().await;
                // Zero linger: closing sends RST, not FIN.
                let _ = s.set_zero_linger();
                drop(s);
            });
        }
    });
    let good = Upstream::start().await;
    let gw = spawn_proxy_only(&format!(
        "routes:\n  - {{ name: cut, path: /cut, upstream: \"http://{addr}\" }}\n  - {{ name: good, path: /good, upstream: \"{}\" }}\n",
        good.url()
    ))
    .await;
    let c = client();
    for path in ["/cut/now", "/cut/head"] {
        let r = c.get(gw.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 502, "{path}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"], "bad_gateway", "{path}");
    }
    for path in ["/cut/length", "/cut/chunked"] {
        match c.get(gw.url(path)).send().await {
            // The head came through; the body must then fail, not end cleanly.
            Ok(r) => {
                assert_eq!(r.status(), 200, "{path}");
                let body = r.bytes().await;
                assert!(
                    body.is_err(),
                    "{path}: a cut body was passed on as complete: {body:?}"
                );
            }
            Err(e) => assert!(!e.is_timeout(), "{path}: {e}"),
        }
    }
    assert_eq!(c.get(gw.url("/good")).send().await.unwrap().status(), 200);
}

/// A target that goes down is ejected after `eject_after` failures (requests keep
/// succeeding on the other target), and once it is back it is taken into the rotation
/// again after `eject_for`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_target_is_ejected_then_taken_back_once_it_recovers() {
    let a = Upstream::start_named("a").await;
    let b = Upstream::start_named("b").await;
    let relay = Relay::start(b.addr).await;
    relay.cut();
    let gw = spawn_proxy_only(&format!(
        "routes:\n  - name: ej\n    path: /ej\n    upstream: {{ targets: [\"http://{r}\", \"{a}\"], eject_after: 2, eject_for: 1s, retries: 1 }}\n",
        r = relay.addr,
        a = a.url()
    ))
    .await;
    let c = client();
    // The down target is retried on the other one: every request succeeds.
    for _ in 0..20 {
        assert_eq!(c.get(gw.url("/ej/x")).send().await.unwrap().status(), 200);
    }
    // Round robin without ejection would have sent it ten; ejected, it saw a handful
    // (two to eject it, then at most one probe per `eject_for`).
    let tried = relay.accepted();
    assert!(
        (2..10).contains(&tried),
        "the down target was tried {tried} times in 20 requests"
    );
    assert!(b.requests().is_empty());
    assert_eq!(a.requests().len(), 20);

    // Back up: once `eject_for` has passed, it serves its share again.
    relay.restore();
    wait_until(
        Duration::from_secs(15),
        "the recovered target serves again",
        || async {
            c.get(gw.url("/ej/y")).send().await.unwrap().status() == 200 && !b.requests().is_empty()
        },
    )
    .await;
    let (a0, b0) = (a.requests().len(), b.requests().len());
    for _ in 0..10 {
        assert_eq!(c.get(gw.url("/ej/z")).send().await.unwrap().status(), 200);
    }
    assert_eq!(a.requests().len() - a0, 5, "round robin again");
    assert_eq!(b.requests().len() - b0, 5, "round robin again");
}

/// SIGTERM while requests are in flight: every one of them completes with 200, the
/// listener stops taking new connections at once, and the process exits 0 afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_finishes_every_in_flight_request_and_refuses_new_ones() {
    const N: usize = 12;
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tollgate.yaml");
    std::fs::write(
        &path,
        format!(
            "listen:\n  http: 127.0.0.1:0\n  admin: 127.0.0.1:0\nstore:\n  url: sqlite://{}/t.db\nlimits:\n  shutdown_grace: 30s\nroutes:\n  - name: api\n    path: /api\n    upstream: {{ targets: [\"{}\"], timeout: 30s }}\n",
            dir.path().display(),
            up.url()
        ),
    )
    .unwrap();
    let mut gw = GatewayProcess::start(&path, &[]);
    let addr = gw.http.trim_start_matches("http://").to_string();
    // Each in-flight request on its own connection, and each a streamed upload too: the
    // gateway must wait for bodies still arriving, not only for upstream answers.
    let mut in_flight = Vec::new();
    for i in 0..N {
        let url = format!("{}/api/delay/3000?n={i}", gw.http);
        in_flight.push(tokio::spawn(async move {
            let c = client();
            let r = c.get(url).send().await?;
            let status = r.status().as_u16();
            let body = r.bytes().await?;
            Ok::<_, reqwest::Error>((status, body.len()))
        }));
    }
    let up2 = up.clone();
    wait_until(
        Duration::from_secs(20),
        "every request reached the upstream",
        || {
            let up = up2.clone();
            async move { up.requests().len() == N }
        },
    )
    .await;
    gw.signal("TERM");
    // New connections are refused while the in-flight ones drain.
    wait_until(
        Duration::from_secs(5),
        "new connections are refused",
        || {
            let addr = addr.clone();
            async move { tokio::net::TcpStream::connect(&addr).await.is_err() }
        },
    )
    .await;
    assert!(
        gw.child.try_wait().unwrap().is_none(),
        "still draining when the listener closed"
    );
    for (i, t) in in_flight.into_iter().enumerate() {
        let (status, len) = t
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("in-flight request {i} failed: {e}"));
        assert_eq!(status, 200, "in-flight request {i}");
        assert!(len > 0, "in-flight request {i} got its body");
    }
    let code = tokio::task::spawn_blocking(move || gw.wait_exit(Duration::from_secs(15)))
        .await
        .unwrap();
    assert_eq!(code, Some(0));
    assert_eq!(up.requests().len(), N, "no request was replayed");
}

/// A store that is gone (connections closed, new ones refused), not merely slow: the
/// token endpoint answers 503 with an OAuth error body, self-issued JWT routes keep
/// serving, and both recover when the store is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_is_a_clear_503_and_jwt_routes_keep_serving() {
    common::pg::with_database("faults_down", |url| async move {
        let StoreBehindRelay {
            relay,
            up: _up,
            gw,
            token,
            access,
        } = StoreBehindRelay::start(&url).await;
        let c = client();
        let password_grant = || {
            c.post(gw.url("/oauth/token"))
                .basic_auth(
                    common::oauth::BASIC_CLIENT.0,
                    Some(common::oauth::BASIC_CLIENT.1),
                )
                .form(&[
                    ("grant_type", "password"),
                    ("username", "john_doe"),
                    ("password", "john_doe_secret"),
                ])
                .send()
        };

        relay.cut();
        let r = password_grant().await.unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["cache-control"], "no-store");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"], "temporarily_unavailable", "{body}");
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{body}"
        );
        let refresh = gw.refresh(token["refresh_token"].as_str().unwrap()).await;
        assert_eq!(refresh.0, 503, "{:?}", refresh.1);
        let s = c
            .get(gw.url("/api/x"))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(s, 200, "self-issued JWTs need no store");
        let ready = c.get(format!("{}/readyz", gw.admin)).send().await.unwrap();
        assert_eq!(ready.status(), 503);

        relay.restore();
        wait_until(
            Duration::from_secs(20),
            "the token endpoint recovers",
            || async { password_grant().await.unwrap().status() == 200 },
        )
        .await;
        // The refresh token refused during the outage was not consumed by it.
        let (s, body) = gw.refresh(token["refresh_token"].as_str().unwrap()).await;
        assert_eq!(s, 200, "{body}");
    })
    .await;
}
