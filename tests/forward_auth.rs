//! The forward-auth decision endpoint asked directly, as Traefik ForwardAuth and Envoy
//! ext_authz (HTTP) ask it: `X-Forwarded-*` or `X-Original-*` describe the request.

mod common;

use common::authn::{spawn, Kit};
use common::{client, TestGateway, Upstream};
use serde_json::json;

async fn setup() -> (TestGateway, Kit, Upstream) {
    let up = Upstream::start().await;
    let yaml = format!(
        r#"
forward_auth:
  path: /_auth
routes:
  - {{ name: public, path: /public, upstream: "{u}" }}
  - {{ name: admin-host, host: admin.example.com, path: /, upstream: "{u}", auth: {{ mode: required, roles: [admin] }} }}
  - {{ name: writes, path: /api, methods: [POST], upstream: "{u}", auth: {{ mode: required, scopes: ["write"] }} }}
  - {{ name: api, path: /api, upstream: "{u}", auth: required }}
  - {{ name: legacy, path: /legacy, upstream: "{u}", auth: required, token_sources: ["query:oauth_token"] }}
"#,
        u = up.url()
    );
    let (gw, kit) = spawn(&yaml).await;
    (gw, kit, up)
}

fn ask(gw: &TestGateway, method: &str, uri: &str, host: &str) -> reqwest::RequestBuilder {
    client()
        .get(gw.url("/_auth"))
        .header("X-Forwarded-Method", method)
        .header("X-Forwarded-Uri", uri)
        .header("X-Forwarded-Host", host)
}

#[tokio::test]
async fn allow_answers_200_with_identity_headers() {
    let (gw, kit, up) = setup().await;
    let resp = ask(&gw, "GET", "/api/orders/1", "api.example.com")
        .bearer_auth(kit.token(json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers();
    assert_eq!(h["x-user-id"], "157");
    assert_eq!(h["x-user-email"], "ann@example.com");
    assert_eq!(h["x-user-scopes"], "orders:read profile");
    assert!(up.requests().is_empty(), "forward-auth never proxies");
}

#[tokio::test]
async fn deny_answers_401_or_403_as_on_proxied_routes() {
    let (gw, kit, _up) = setup().await;
    let resp = ask(&gw, "GET", "/api/x", "a").send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["www-authenticate"],
        r#"Bearer realm="tollgate""#
    );

    let resp = ask(&gw, "GET", "/api/x", "a")
        .bearer_auth("junk")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("invalid_token"));

    // The method decides the route: POST needs the write scope.
    let token = kit.token(json!({}));
    let resp = ask(&gw, "POST", "/api/x", "a")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("insufficient_scope"));
    let resp = ask(&gw, "GET", "/api/x", "a")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // The host decides the route: admin.example.com needs the admin role.
    let resp = ask(&gw, "GET", "/anything", "admin.example.com:443")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // No route covers it: refused, not waved through.
    let resp = ask(&gw, "GET", "/nowhere", "other.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

#[tokio::test]
async fn public_route_allows_with_empty_identity_headers() {
    let (gw, _kit, _up) = setup().await;
    let resp = ask(&gw, "GET", "/public/x", "a")
        .header("X-User-Id", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["x-user-id"],
        "",
        "the answer never echoes a spoofed value"
    );
}

#[tokio::test]
async fn nginx_style_original_headers_and_query_tokens() {
    let (gw, kit, _up) = setup().await;
    let token = kit.token(json!({}));
    let resp = client()
        .get(gw.url("/_auth"))
        .header("X-Original-Method", "GET")
        .header("X-Original-URI", format!("/legacy/a?oauth_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-user-id"], "157");
    // Paths are normalised exactly as for proxied requests.
    let resp = client()
        .get(gw.url("/_auth"))
        .header("X-Original-URI", "/public/../api/x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // Without a URI there is nothing to decide about.
    let resp = client().get(gw.url("/_auth")).send().await.unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn envoy_style_path_prefix_and_ingress_nginx_original_url() {
    let (gw, kit, _up) = setup().await;
    let token = kit.token(json!({}));
    // Envoy ext_authz (HTTP service): path_prefix + original path, original method and Host.
    let resp = client()
        .post(gw.url("/_auth/api/orders?x=1"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403, "POST /api needs the write scope");
    let resp = client()
        .get(gw.url("/_auth/api/orders"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-user-id"], "157");
    let resp = client()
        .get(gw.url("/_auth/anything"))
        .header("host", "admin.example.com")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403, "the Host picks the admin route");
    // `/_authx` is not the endpoint (segment boundary): no route covers it, so 404.
    let resp = client().get(gw.url("/_authx")).send().await.unwrap();
    assert_eq!(resp.status(), 404);

    // ingress-nginx sends X-Original-URL (absolute): its host picks the route.
    let resp = client()
        .get(gw.url("/_auth"))
        .header("X-Original-Method", "GET")
        .header("X-Original-URL", "https://admin.example.com/dashboard")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

/// `Cache-Control` on a decision (and nginx's `X-Accel-Expires`), as seconds.
fn reuse_headers(resp: &reqwest::Response) -> (String, Option<String>) {
    let h = resp.headers();
    (
        h.get("cache-control")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default(),
        h.get("x-accel-expires")
            .map(|v| v.to_str().unwrap().to_string()),
    )
}

#[tokio::test]
async fn an_allow_may_be_reused_for_cache_ttl_but_never_beyond_the_token() {
    let (gw, kit, _up) = setup().await;
    // The default cache_ttl (5s) against a token with minutes left.
    let resp = ask(&gw, "GET", "/api/x", "a")
        .bearer_auth(kit.token(json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        reuse_headers(&resp),
        ("private, max-age=5".into(), Some("5".into()))
    );

    // A token with 3 seconds left: never reused after it expires.
    let resp = ask(&gw, "GET", "/api/x", "a")
        .bearer_auth(kit.token(json!({"exp": common::authn::now() + 3})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (cc, accel) = reuse_headers(&resp);
    let n: u64 = cc
        .strip_prefix("private, max-age=")
        .unwrap_or_else(|| panic!("{cc}"))
        .parse()
        .unwrap();
    assert!(n <= 3, "{cc}");
    assert_eq!(accel, Some(n.to_string()));

    // A public route without a token depends on no token: the plain ttl.
    let resp = ask(&gw, "GET", "/public/x", "a").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(reuse_headers(&resp).0, "private, max-age=5");
}

#[tokio::test]
async fn denials_are_never_stored() {
    let (gw, kit, _up) = setup().await;
    let no_token = ask(&gw, "GET", "/api/x", "a").send().await.unwrap();
    let bad_token = ask(&gw, "GET", "/api/x", "a")
        .bearer_auth("junk")
        .send()
        .await
        .unwrap();
    let no_scope = ask(&gw, "POST", "/api/x", "a")
        .bearer_auth(kit.token(json!({})))
        .send()
        .await
        .unwrap();
    let no_route = ask(&gw, "GET", "/nowhere", "a").send().await.unwrap();
    for (resp, status) in [
        (no_token, 401),
        (bad_token, 401),
        (no_scope, 403),
        (no_route, 403),
    ] {
        assert_eq!(resp.status(), status);
        assert_eq!(reuse_headers(&resp), ("no-store".into(), None), "{status}");
    }
}

#[tokio::test]
async fn cache_ttl_is_configurable_and_zero_disables_reuse() {
    let up = Upstream::start().await;
    for (ttl, expect) in [("1h", "private, max-age=300"), ("0s", "private, max-age=0")] {
        let yaml = format!(
            "forward_auth:\n  path: /_auth\n  cache_ttl: {ttl}\nroutes:\n  - {{ name: api, path: /api, upstream: \"{}\", auth: required }}\n",
            up.url()
        );
        let (gw, kit) = spawn(&yaml).await;
        // The test token lives 300 s: a 1h ttl is cut to the token's life.
        let resp = ask(&gw, "GET", "/api/x", "a")
            .bearer_auth(kit.token(json!({"exp": common::authn::now() + 300})))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let cc = reuse_headers(&resp).0;
        if ttl == "1h" {
            // One second may pass between minting and checking.
            assert!(cc == expect || cc == "private, max-age=299", "{ttl}: {cc}");
        } else {
            assert_eq!(cc, expect, "{ttl}");
        }
    }
}

/// A route's rate limit holds on forward-auth decisions as on proxied requests, counted by
/// the caller; a limited route's allows are never reusable by the ingress (a cached allow
/// would skip the count), and a refusal is 429 with `Retry-After`.
#[tokio::test]
async fn a_rate_limited_route_is_counted_on_each_decision_and_never_cached() {
    let up = Upstream::start().await;
    let yaml = format!(
        r#"
forward_auth:
  path: /_auth
  cache_ttl: 30s
routes:
  - {{ name: limited, path: /limited, upstream: "{u}", auth: required, rate_limit: {{ requests: 2, per: 1h, key: user }} }}
  - {{ name: api, path: /api, upstream: "{u}", auth: required }}
"#,
        u = up.url()
    );
    let (gw, kit) = spawn(&yaml).await;
    let ann = kit.token(json!({}));
    for _ in 0..2 {
        let resp = ask(&gw, "GET", "/limited/x", "api.example.com")
            .bearer_auth(&ann)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["cache-control"], "private, max-age=0");
        assert!(resp.headers().contains_key("ratelimit-policy"));
    }
    let resp = ask(&gw, "GET", "/limited/x", "api.example.com")
        .bearer_auth(&ann)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    // Another caller has a budget of their own.
    let bob = kit.token(json!({"sub": "158"}));
    let resp = ask(&gw, "GET", "/limited/x", "api.example.com")
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // A route without a limit keeps its reusable allows.
    let resp = ask(&gw, "GET", "/api/x", "api.example.com")
        .bearer_auth(&ann)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_ne!(resp.headers()["cache-control"], "private, max-age=0");
    assert!(up.requests().is_empty(), "forward-auth never proxies");
}
