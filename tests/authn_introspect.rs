//! Opaque tokens checked by RFC 7662 introspection: cached results re-checked on every
//! hit, one call for N concurrent requests, a short negative cache, and an introspection
//! server that is down or slow never turning into a 200.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::authn::{now, spawn, Kit};
use common::idp::{Idp, Mode, CLIENT_ID, CLIENT_SECRET};
use common::{bearer_status, client, wait_until, TestGateway, Upstream};
use serde_json::json;

async fn setup(name: &str, extra: &str) -> (TestGateway, Kit, Upstream, Idp) {
    let up = Upstream::start().await;
    let idp = Idp::start().await;
    let var = format!("AUTHN_TEST_INTROSPECT_SECRET_{}", name.to_ascii_uppercase());
    std::env::set_var(&var, CLIENT_SECRET);
    let yaml = format!(
        r#"
introspection:
  - name: corp
    url: {url}
    client_id: {CLIENT_ID}
    client_secret_env: {var}
    timeout: 500ms
    cache: {{ ttl: 60s, negative_ttl: 1s, max_entries: 1000 }}
{extra}
routes:
  - name: orders
    path: /api/orders
    upstream: {u}
    auth: {{ mode: required, scopes: ["orders:read"] }}
  - name: api
    path: /api
    upstream: {u}
    auth: required
"#,
        url = idp.introspect_url(),
        u = up.url()
    );
    let (gw, kit) = spawn(&yaml).await;
    (gw, kit, up, idp)
}

fn active(sub: &str, scope: &str) -> serde_json::Value {
    json!({"active": true, "sub": sub, "scope": scope, "client_id": "web", "exp": now() + 600, "jti": uuid::Uuid::new_v4().to_string()})
}

#[tokio::test]
async fn active_token_is_introspected_once_then_cached() {
    let (gw, _kit, up, idp) = setup("cached", "").await;
    idp.add_token("opaque-aaa", active("42", "orders:read"));
    assert_eq!(
        bearer_status(&gw.url("/api/orders"), "opaque-aaa").await,
        200
    );
    let seen = up.last();
    assert_eq!(seen.header("x-user-id"), Some("42"));
    assert_eq!(seen.header("x-user-scopes"), Some("orders:read"));
    assert_eq!(seen.header("x-client-id"), Some("web"));
    for _ in 0..5 {
        assert_eq!(
            bearer_status(&gw.url("/api/orders"), "opaque-aaa").await,
            200
        );
    }
    assert_eq!(idp.calls(), 1);
}

#[tokio::test]
async fn concurrent_misses_cause_exactly_one_introspection() {
    let (gw, _kit, _up, idp) = setup("coalesce", "").await;
    idp.add_token("opaque-burst", active("7", "orders:read"));
    idp.delay_ms.store(300, Ordering::SeqCst);
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let url = gw.url("/api/x");
        tasks.push(tokio::spawn(async move {
            client()
                .get(url)
                .bearer_auth("opaque-burst")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(idp.calls(), 1, "40 concurrent requests, one introspection");
}

#[tokio::test]
async fn inactive_token_is_401_and_negatively_cached_briefly() {
    let (gw, _kit, up, idp) = setup("negative", "").await;
    assert_eq!(
        bearer_status(&gw.url("/api/x"), "opaque-unknown").await,
        401
    );
    assert_eq!(
        bearer_status(&gw.url("/api/x"), "opaque-unknown").await,
        401
    );
    assert_eq!(idp.calls(), 1, "the negative answer is cached");
    // The negative cache is short: once it lapses the token is asked about again, and a
    // token that became active meanwhile works.
    idp.add_token("opaque-unknown", active("9", ""));
    wait_until(
        Duration::from_secs(5),
        "negative cache to lapse",
        || async { bearer_status(&gw.url("/api/x"), "opaque-unknown").await == 200 },
    )
    .await;
    assert!(up.requests().len() == 1);
}

#[tokio::test]
async fn scope_exp_and_revocation_are_rechecked_on_every_hit() {
    let (gw, kit, _up, idp) = setup("recheck", "").await;
    let mut answer = active("5", "profile");
    let jti = uuid::Uuid::new_v4().to_string();
    answer["jti"] = json!(jti);
    answer["exp"] = json!(now() + 2);
    idp.add_token("opaque-short", answer);
    assert_eq!(bearer_status(&gw.url("/api/x"), "opaque-short").await, 200);
    // Cached, but this route needs a scope the token lacks.
    assert_eq!(
        bearer_status(&gw.url("/api/orders"), "opaque-short").await,
        403
    );
    assert_eq!(idp.calls(), 1);
    // The cache never outlives the token's exp.
    wait_until(
        Duration::from_secs(6),
        "token expiry to be enforced",
        || async { bearer_status(&gw.url("/api/x"), "opaque-short").await == 401 },
    )
    .await;

    let mut answer = active("6", "");
    let jti = uuid::Uuid::new_v4().to_string();
    answer["jti"] = json!(jti);
    idp.add_token("opaque-revoked", answer);
    assert_eq!(
        bearer_status(&gw.url("/api/x"), "opaque-revoked").await,
        200
    );
    kit.revoke(&jti);
    assert_eq!(
        bearer_status(&gw.url("/api/x"), "opaque-revoked").await,
        401
    );
}

#[tokio::test]
async fn audience_is_checked_when_configured() {
    let up = Upstream::start().await;
    let idp = Idp::start().await;
    std::env::set_var("AUTHN_TEST_INTROSPECT_SECRET_AUD", CLIENT_SECRET);
    let yaml = format!(
        r#"
introspection:
  - name: corp
    url: {url}
    client_id: {CLIENT_ID}
    client_secret_env: AUTHN_TEST_INTROSPECT_SECRET_AUD
    audience: my-api
routes:
  - {{ name: api, path: /api, upstream: "{u}", auth: required }}
"#,
        url = idp.introspect_url(),
        u = up.url()
    );
    let (gw, _kit) = spawn(&yaml).await;
    let mut mine = active("1", "");
    mine["aud"] = json!(["other", "my-api"]);
    idp.add_token("opaque-mine", mine);
    let mut theirs = active("2", "");
    theirs["aud"] = json!("other-api");
    idp.add_token("opaque-theirs", theirs);
    assert_eq!(bearer_status(&gw.url("/api/x"), "opaque-mine").await, 200);
    assert_eq!(bearer_status(&gw.url("/api/x"), "opaque-theirs").await, 401);
}

#[tokio::test]
async fn introspection_down_is_503_for_new_tokens_while_cached_ones_keep_working() {
    let (gw, _kit, up, idp) = setup("down", "").await;
    idp.add_token("opaque-known", active("11", ""));
    idp.add_token("opaque-new", active("12", ""));
    assert_eq!(bearer_status(&gw.url("/api/x"), "opaque-known").await, 200);
    let before = up.requests().len();

    idp.set_mode(Mode::Failing);
    let resp = client()
        .get(gw.url("/api/x"))
        .bearer_auth("opaque-new")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
    // Errors are not cached: the next request asks again (and fails again).
    let calls = idp.calls();
    assert_eq!(bearer_status(&gw.url("/api/x"), "opaque-new").await, 503);
    assert_eq!(idp.calls(), calls + 1);

    idp.set_mode(Mode::Slow);
    let started = std::time::Instant::now();
    assert_eq!(bearer_status(&gw.url("/api/x"), "opaque-new").await, 503);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the configured timeout applies"
    );

    // The cached positive result keeps serving throughout.
    assert_eq!(bearer_status(&gw.url("/api/x"), "opaque-known").await, 200);
    assert_eq!(
        up.requests().len(),
        before + 1,
        "only the cached token reached the upstream"
    );

    idp.set_mode(Mode::Up);
    assert_eq!(bearer_status(&gw.url("/api/x"), "opaque-new").await, 200);
}

#[tokio::test]
async fn unreachable_introspection_endpoint_is_503() {
    let up = Upstream::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let yaml = format!(
        r#"
introspection:
  - {{ name: gone, url: "http://{addr}/introspect", client_id: x, timeout: 500ms }}
routes:
  - {{ name: api, path: /api, upstream: "{u}", auth: required }}
"#,
        u = up.url()
    );
    let (gw, _kit) = spawn(&yaml).await;
    assert_eq!(
        bearer_status(&gw.url("/api/x"), "opaque-anything").await,
        503
    );
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn cache_metrics_are_exported() {
    let (gw, _kit, _up, idp) = setup("metrics", "").await;
    idp.add_token("opaque-m", active("3", ""));
    assert_eq!(bearer_status(&gw.url("/api/x"), "opaque-m").await, 200);
    assert_eq!(bearer_status(&gw.url("/api/x"), "opaque-m").await, 200);
    let hits = common::metric(
        &gw.admin,
        r#"tollgate_introspection_cache_total{result="hit"}"#,
    )
    .await;
    let misses = common::metric(
        &gw.admin,
        r#"tollgate_introspection_cache_total{result="miss"}"#,
    )
    .await;
    let outcomes = common::metric(
        &gw.admin,
        r#"tollgate_auth_outcomes_total{outcome="authenticated"}"#,
    )
    .await;
    assert!(
        hits >= 1.0 && misses >= 1.0 && outcomes >= 2.0,
        "{hits} {misses} {outcomes}"
    );
}
