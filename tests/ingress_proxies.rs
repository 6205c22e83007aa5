//! Real nginx (`auth_request` + `auth_request_set`), Caddy (`forward_auth` +
//! `copy_headers`), Traefik 3 (`forwardAuth` + `authResponseHeaders`) and Envoy
//! (`ext_authz` HTTP service + `allowed_upstream_headers`) in front of a test upstream,
//! asking Tollgate's forward-auth endpoint. The ingress configs are the files in
//! docs/ingress/, exactly as documented. Skipped, with a printed reason, when the
//! ingress binary is not installed.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::authn::{spawn, tokens_yaml, Kit};
use common::ingress::{
    snippet_with, start_caddy, start_envoy, start_envoy_with, start_nginx, start_nginx_cached,
    start_traefik, Proc,
};
use common::{client, complete_yaml, TestGateway, Upstream};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// Routes here only carry policy: the ingress does the proxying.
fn routes_yaml(up: &Upstream) -> String {
    format!(
        r#"
routes:
  - {{ name: public, path: /public, upstream: "{u}" }}
  - {{ name: orders, path: /api/orders, upstream: "{u}", auth: {{ mode: required, scopes: ["orders:read"] }} }}
  - {{ name: limited, path: /limited, upstream: "{u}", auth: required, rate_limit: {{ requests: 2, per: 1h, key: user }} }}
  - {{ name: api, path: /api, upstream: "{u}", auth: required }}
"#,
        u = up.url()
    )
}

async fn gateway(up: &Upstream) -> (TestGateway, Kit) {
    spawn(&routes_yaml(up)).await
}

/// A path the ingress sends through Tollgate, which refuses it anonymously: proxies that
/// load their routes after they listen are ready once it stops answering 404.
const PROBE: &str = "/api/_ingress_ready";

async fn exercise(ingress: &Proc, kit: &Kit, up: &Upstream, name: &str) {
    let c = client();
    // No token: 401 with the challenge passed through.
    let resp = c.get(ingress.url("/api/x")).send().await.unwrap();
    assert_eq!(resp.status(), 401, "{name}");
    let www = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(www.as_deref(), Some(r#"Bearer realm="tollgate""#), "{name}");
    assert!(
        up.requests().is_empty(),
        "{name}: nothing reached the upstream"
    );

    // A valid token: the upstream sees the identity headers (and not the spoofed ones).
    let token = kit.token(json!({}));
    let resp = c
        .get(ingress.url("/api/orders/7?x=1"))
        .bearer_auth(&token)
        .header("X-User-Id", "admin")
        .header("X_User_Id", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{name}");
    let seen = up.last();
    assert_eq!(seen.path, "/api/orders/7", "{name}");
    assert_eq!(
        seen.headers.get("x-user-id"),
        Some(&vec!["157".to_string()]),
        "{name}"
    );
    assert_eq!(
        seen.header("x-user-email"),
        Some("ann@example.com"),
        "{name}"
    );
    assert_eq!(
        seen.header("x-user-scopes"),
        Some("orders:read profile"),
        "{name}"
    );
    assert_eq!(seen.header("x-user-alias"), Some("ann-at-desk"), "{name}");
    assert!(
        !seen.headers.contains_key("x_user_id"),
        "{name}: {:?}",
        seen.headers
    );

    // Public route: spoofed identity headers never reach the upstream.
    let resp = c
        .get(ingress.url("/public/page"))
        .header("X-User-Id", "admin")
        .header("X_User_Id", "admin")
        .header("X-User-Role", "admin")
        .header("x.user.id", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{name}");
    let seen = up.last();
    assert_eq!(seen.path, "/public/page");
    // Absent, or overwritten with an empty value (the Caddy snippet): never the spoof.
    for h in ["x-user-id", "x_user_id", "x-user-role", "x.user.id"] {
        let values = seen.headers.get(h).cloned().unwrap_or_default();
        assert!(
            values.iter().all(|v| v.is_empty()),
            "{name}: spoofed {h} reached the upstream: {:?}",
            seen.headers
        );
    }

    // Bad token: 401 invalid_token; missing scope: 403.
    let resp = c
        .get(ingress.url("/api/x"))
        .bearer_auth("garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "{name}");
    let resp = c
        .get(ingress.url("/api/orders"))
        .bearer_auth(kit.token(json!({"scope": "profile"})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403, "{name}");
    assert_eq!(
        up.requests().len(),
        2,
        "{name}: only the allowed requests went through"
    );
}

#[tokio::test]
async fn nginx_auth_request_with_the_documented_snippet() {
    let up = Upstream::start().await;
    let (gw, kit) = gateway(&up).await;
    let tollgate = gw.base.trim_start_matches("http://").to_string();
    let upstream = up.addr.to_string();
    let Some(nginx) = tokio::task::spawn_blocking(move || start_nginx(&tollgate, &upstream))
        .await
        .unwrap()
    else {
        return;
    };
    exercise(&nginx, &kit, &up, "nginx").await;
}

#[tokio::test]
async fn caddy_forward_auth_with_the_documented_snippet() {
    let up = Upstream::start().await;
    let (gw, kit) = gateway(&up).await;
    let tollgate = gw.base.trim_start_matches("http://").to_string();
    let upstream = up.addr.to_string();
    let Some(caddy) = tokio::task::spawn_blocking(move || start_caddy(&tollgate, &upstream))
        .await
        .unwrap()
    else {
        return;
    };
    exercise(&caddy, &kit, &up, "caddy").await;
}

#[tokio::test]
async fn traefik_forward_auth_with_the_documented_config() {
    let up = Upstream::start().await;
    let (gw, kit) = gateway(&up).await;
    let tollgate = gw.base.trim_start_matches("http://").to_string();
    let upstream = up.addr.to_string();
    let Some(traefik) =
        tokio::task::spawn_blocking(move || start_traefik(&tollgate, &upstream, PROBE))
            .await
            .unwrap()
    else {
        return;
    };
    exercise(&traefik, &kit, &up, "traefik").await;
}

#[tokio::test]
async fn envoy_ext_authz_with_the_documented_config() {
    let up = Upstream::start().await;
    let (gw, kit) = gateway(&up).await;
    let tollgate = gw.base.trim_start_matches("http://").to_string();
    let upstream = up.addr.to_string();
    let Some(envoy) = tokio::task::spawn_blocking(move || start_envoy(&tollgate, &upstream, PROBE))
        .await
        .unwrap()
    else {
        return;
    };
    exercise(&envoy, &kit, &up, "envoy").await;
    exercise_envoy(&envoy, &kit, &up, "envoy http").await;
}

/// Envoy with `ext_authz` `grpc_service` asking Tollgate's `listen.ext_authz` port
/// (docs/ingress/envoy-grpc.yaml).
#[tokio::test]
async fn envoy_ext_authz_grpc_with_the_documented_config() {
    let up = Upstream::start().await;
    let yaml = format!(
        "listen:\n  http: 127.0.0.1:0\n  admin: 127.0.0.1:0\n  ext_authz: 127.0.0.1:0\n{}",
        routes_yaml(&up)
    );
    let (gw, kit) = spawn(&yaml).await;
    let tollgate = gw.gateway.ext_authz_addr.unwrap().to_string();
    let upstream = up.addr.to_string();
    let Some(envoy) = tokio::task::spawn_blocking(move || {
        start_envoy_with("envoy-grpc.yaml", &tollgate, &upstream, PROBE)
    })
    .await
    .unwrap() else {
        return;
    };
    exercise(&envoy, &kit, &up, "envoy grpc").await;
    exercise_envoy(&envoy, &kit, &up, "envoy grpc").await;
}

/// What Envoy in front adds to [`exercise`]: a body passes through untouched, a rate limit
/// answers 429, a WebSocket is decided once (on its upgrade).
async fn exercise_envoy(envoy: &Proc, kit: &Kit, up: &Upstream, name: &str) {
    let c = client();
    let token = kit.token(json!({"sub": format!("body-{name}")}));
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let resp = c
        .post(envoy.url("/api/upload"))
        .bearer_auth(&token)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{name}");
    let seen = up.last();
    assert_eq!(seen.method, "POST", "{name}");
    assert_eq!(
        seen.body_len,
        body.len() as u64,
        "{name}: the body arrived whole"
    );

    // The rate limit, counted by the caller on each decision.
    let ann = kit.token(json!({"sub": format!("limit-{name}")}));
    for _ in 0..2 {
        let resp = c
            .get(envoy.url("/limited/x"))
            .bearer_auth(&ann)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{name}");
    }
    let before = up.requests().len();
    let resp = c
        .get(envoy.url("/limited/x"))
        .bearer_auth(&ann)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429, "{name}");
    assert!(resp.headers().contains_key("retry-after"), "{name}");
    assert_eq!(
        up.requests().len(),
        before,
        "{name}: a limited request never passes"
    );

    // A WebSocket: the upgrade is the one decision; messages then flow. The route's
    // budget of two is spent by one upgrade each, not by messages.
    let ws_token = kit.token(json!({"sub": format!("ws-{name}")}));
    let url = envoy.url("/limited/ws").replace("http://", "ws://");
    for _ in 0..2 {
        let mut req = url.as_str().into_client_request().unwrap();
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {ws_token}").parse().unwrap(),
        );
        let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
        assert_eq!(resp.status(), 101, "{name}");
        for i in 0..3 {
            ws.send(Message::Text(format!("m{i}"))).await.unwrap();
            let back = ws.next().await.unwrap().unwrap();
            assert_eq!(back.into_text().unwrap(), format!("m{i}"), "{name}");
        }
        ws.close(None).await.unwrap();
    }
    let mut req = url.as_str().into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {ws_token}").parse().unwrap(),
    );
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 429, "{name}")
        }
        other => panic!("{name}: a third upgrade must be refused: {other:?}"),
    }
}

/// Tollgate's port down: Envoy refuses (`failure_mode_allow: false`), for both services.
#[tokio::test]
async fn envoy_denies_when_tollgate_cannot_be_asked() {
    let up = Upstream::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap().to_string();
    drop(closed);
    for file in ["envoy.yaml", "envoy-grpc.yaml"] {
        let (dead, upstream) = (dead.clone(), up.addr.to_string());
        let Some(envoy) =
            tokio::task::spawn_blocking(move || start_envoy_with(file, &dead, &upstream, PROBE))
                .await
                .unwrap()
        else {
            return;
        };
        for path in ["/api/x", "/public/x"] {
            let resp = client()
                .get(envoy.url(path))
                .bearer_auth("anything")
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 403, "{file} {path}");
        }
        assert!(up.requests().is_empty(), "{file}: nothing passed");
    }
}

/// The response headers each documented config tells its proxy to copy onto the request.
fn copied_headers(file: &str) -> BTreeSet<String> {
    let filled = [
        ("listen", "127.0.0.1:1"),
        ("tollgate", "127.0.0.1:2"),
        ("upstream", "127.0.0.1:3"),
        ("listen_host", "127.0.0.1"),
        ("listen_port", "1"),
        ("tollgate_host", "127.0.0.1"),
        ("tollgate_port", "2"),
        ("upstream_host", "127.0.0.1"),
        ("upstream_port", "3"),
    ];
    let text = snippet_with(file, &filled);
    let lower = |s: &str| s.trim().to_ascii_lowercase();
    match file {
        // auth_request_set $x $upstream_http_x_user_id;
        "nginx.conf" => text
            .split("$upstream_http_")
            .skip(1)
            .map(|rest| lower(&rest[..rest.find(';').unwrap()]).replace('_', "-"))
            .collect(),
        "Caddyfile" => text
            .lines()
            .find_map(|l| l.trim().strip_prefix("copy_headers "))
            .unwrap()
            .split_whitespace()
            .map(lower)
            .collect(),
        "traefik.yml" => {
            let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
            v["http"]["middlewares"]["tollgate"]["forwardAuth"]["authResponseHeaders"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|h| lower(h.as_str().unwrap()))
                .collect()
        }
        "envoy.yaml" => {
            let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
            fn find<'a>(v: &'a serde_yaml::Value, key: &str) -> Option<&'a serde_yaml::Value> {
                match v {
                    serde_yaml::Value::Mapping(m) => m.iter().find_map(|(k, v)| {
                        if k.as_str() == Some(key) {
                            Some(v)
                        } else {
                            find(v, key)
                        }
                    }),
                    serde_yaml::Value::Sequence(s) => s.iter().find_map(|v| find(v, key)),
                    _ => None,
                }
            }
            find(&v, "allowed_upstream_headers").unwrap()["patterns"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|p| lower(p["exact"].as_str().unwrap()))
                .collect()
        }
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn every_documented_config_copies_exactly_the_identity_headers_tollgate_answers() {
    let up = Upstream::start().await;
    let (gw, kit) = gateway(&up).await;
    // What Tollgate answers: one header per identity field (the defaults of
    // identity_headers; signed_jwt is off), each present on a 200.
    let names = tollgate::config::raw::IdentityHeaders::default();
    let identity: BTreeSet<String> = [
        &names.user_id,
        &names.email,
        &names.role,
        &names.scopes,
        &names.client_id,
        &names.alias,
    ]
    .into_iter()
    .map(|n| n.to_ascii_lowercase())
    .collect();
    let resp = client()
        .get(gw.url("/auth/verify"))
        .header("X-Forwarded-Method", "GET")
        .header("X-Forwarded-Uri", "/api/orders/1")
        .bearer_auth(kit.token(json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    for h in &identity {
        assert!(resp.headers().contains_key(h.as_str()), "{h} not answered");
    }
    for file in ["nginx.conf", "Caddyfile", "traefik.yml", "envoy.yaml"] {
        assert_eq!(copied_headers(file), identity, "docs/ingress/{file}");
    }
}

#[tokio::test]
async fn nginx_auth_cache_reuses_an_allow_only_as_long_as_tollgate_says() {
    let up = Upstream::start().await;
    let yaml = format!("forward_auth:\n  cache_ttl: 3s\n{}", routes_yaml(&up));
    let (gw, kit) = spawn(&yaml).await;
    let tollgate = gw.base.trim_start_matches("http://").to_string();
    let upstream = up.addr.to_string();
    let Some(nginx) = tokio::task::spawn_blocking(move || start_nginx_cached(&tollgate, &upstream))
        .await
        .unwrap()
    else {
        return;
    };
    let c = client();
    let get = |path: &str, token: Option<&str>| {
        let mut req = c.get(nginx.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };

    // An allow is cached: revoked at Tollgate, the token still passes at once…
    let token = kit.token(json!({"jti": "cached-allow"}));
    let first = Instant::now();
    assert_eq!(get("/api/x", Some(&token)).await.unwrap().status(), 200);
    kit.revoke("cached-allow");
    assert_eq!(
        get("/api/x", Some(&token)).await.unwrap().status(),
        200,
        "the decision is reused within cache_ttl"
    );
    // …but only for cache_ttl (3 s), not for the 5 minutes nginx was told as its bound.
    loop {
        let status = get("/api/x", Some(&token)).await.unwrap().status();
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            first.elapsed() < Duration::from_secs(15),
            "the cached allow outlived cache_ttl"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        first.elapsed() >= Duration::from_secs(1),
        "the revocation took effect at once: the allow was not cached at all"
    );

    // Another caller's credentials never get a cached identity.
    let other = kit.token(json!({"sub": "158", "email": "bob@example.com"}));
    assert_eq!(get("/api/x", Some(&other)).await.unwrap().status(), 200);
    assert_eq!(up.last().header("x-user-id"), Some("158"));

    // A denial is never cached, though nginx was told to keep 401s: once the route is
    // public, the same anonymous request passes at once.
    assert_eq!(get("/api/open", None).await.unwrap().status(), 401);
    let open = format!(
        "forward_auth:\n  cache_ttl: 3s\nroutes:\n  - {{ name: open, path: /api/open, upstream: \"{}\" }}\n{}",
        up.url(),
        routes_yaml(&up).trim_start().trim_start_matches("routes:\n")
    );
    let text = complete_yaml(
        &format!("{}{open}", tokens_yaml(gw.dir.path())),
        gw.dir.path(),
    );
    std::fs::write(&gw.config_path, text).unwrap();
    gw.gateway.app.reload().unwrap();
    assert_eq!(get("/api/open", None).await.unwrap().status(), 200);
}
