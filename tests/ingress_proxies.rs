//! Real nginx (`auth_request` + `auth_request_set`) and real Caddy (`forward_auth` +
//! `copy_headers`) in front of a test upstream, asking Tollgate's forward-auth endpoint.
//! The ingress configs are the snippets in docs/ingress/, exactly as documented.
//! Skipped, with a printed reason, when the ingress binary is not installed.

mod common;

use common::authn::{spawn, Kit};
use common::ingress::{start_caddy, start_nginx, Proc};
use common::{client, TestGateway, Upstream};
use serde_json::json;

async fn gateway(up: &Upstream) -> (TestGateway, Kit) {
    // Routes here only carry policy: the ingress does the proxying.
    let yaml = format!(
        r#"
routes:
  - {{ name: public, path: /public, upstream: "{u}" }}
  - {{ name: orders, path: /api/orders, upstream: "{u}", auth: {{ mode: required, scopes: ["orders:read"] }} }}
  - {{ name: api, path: /api, upstream: "{u}", auth: required }}
"#,
        u = up.url()
    );
    spawn(&yaml).await
}

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
