//! Bearer validation of JWTs on proxied routes: every bad-token class is refused with the
//! right status, good tokens open their routes with identity headers, revocation wins
//! over the cache, and the signature is checked once per token.

mod common;

use common::authn::{b64, claims, other_rsa_pair, rsa_pair, sign, spawn, Kit};
use common::{client, TestGateway, Upstream};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::json;

fn routes(up: &Upstream) -> String {
    format!(
        r#"
routes:
  - name: public
    path: /public
    upstream: {u}
  - name: optional
    path: /optional
    upstream: {u}
    auth: optional
  - name: orders
    path: /api/orders
    upstream: {u}
    auth: {{ mode: required, scopes: ["orders:read"] }}
  - name: admin
    path: /admin
    upstream: {u}
    auth: {{ mode: required, roles: [admin] }}
  - name: legacy
    path: /legacy
    upstream: {u}
    auth: required
    token_sources: ["query:oauth_token", "cookie:session"]
  - name: no-authz
    path: /hidden
    upstream: {u}
    auth: required
    forward_authorization: false
  - name: api
    path: /api
    upstream: {u}
    auth: required
"#,
        u = up.url()
    )
}

async fn setup() -> (TestGateway, Kit, Upstream) {
    let up = Upstream::start().await;
    let (gw, kit) = spawn(&routes(&up)).await;
    (gw, kit, up)
}

async fn get(gw: &TestGateway, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = client().get(gw.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

fn www(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

async fn assert_invalid(gw: &TestGateway, token: &str, what: &str) {
    let resp = get(gw, "/api/x", Some(token)).await;
    assert_eq!(resp.status(), 401, "{what}");
    let w = www(&resp);
    assert!(w.starts_with(r#"Bearer realm="tollgate""#), "{what}: {w}");
    assert!(w.contains(r#"error="invalid_token""#), "{what}: {w}");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_token", "{what}");
    // The reason stays in the log; the body never echoes the token.
    assert!(!body.to_string().contains(token), "{what}");
}

#[tokio::test]
async fn missing_token_is_401_with_bearer_challenge() {
    let (gw, _kit, up) = setup().await;
    let resp = get(&gw, "/api/x", None).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(www(&resp), r#"Bearer realm="tollgate""#);
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn valid_token_opens_route_with_identity_headers() {
    let (gw, kit, up) = setup().await;
    let token = kit.token(json!({}));
    let resp = get(&gw, "/api/orders/7", Some(&token)).await;
    assert_eq!(resp.status(), 200);
    let seen = up.last();
    assert_eq!(seen.header("x-user-id"), Some("157"));
    assert_eq!(seen.header("x-user-email"), Some("ann@example.com"));
    assert_eq!(seen.header("x-user-role"), Some("default"));
    assert_eq!(seen.header("x-user-scopes"), Some("orders:read profile"));
    assert_eq!(seen.header("x-user-alias"), Some("ann-at-desk"));
    // Authorization is not forwarded unless the route opts in (an upstream that gets the
    // bearer token could replay it); `hostile_headers` covers the opt-in.
    assert_eq!(seen.header("authorization"), None);
}

#[tokio::test]
async fn every_bad_token_class_is_401_invalid_token() {
    let (gw, kit, up) = setup().await;
    let key = EncodingKey::from_rsa_pem(rsa_pair().0.as_bytes()).unwrap();
    let good_header = kit.header(Algorithm::RS256);

    assert_invalid(&gw, "not-a-jwt.at.all", "malformed (opaque, unknown)").await;
    assert_invalid(&gw, "eyJhbGciOiJSUzI1NiJ9.%%%.sig", "malformed JWT").await;

    // Bad signature: the right kid, a different key.
    let forged = sign(
        &good_header,
        &claims(json!({})),
        &EncodingKey::from_rsa_pem(other_rsa_pair().0.as_bytes()).unwrap(),
    );
    assert_invalid(&gw, &forged, "bad signature").await;

    // Tampered payload, original signature.
    let good = kit.token(json!({}));
    let parts: Vec<&str> = good.split('.').collect();
    let tampered_payload = b64(claims(json!({"role": "admin"})).to_string().as_bytes());
    let tampered = format!("{}.{}.{}", parts[0], tampered_payload, parts[2]);
    assert_invalid(&gw, &tampered, "tampered payload").await;

    // alg none.
    let none_header = b64(json!({"alg": "none", "kid": kit.kid(), "typ": "at+jwt"})
        .to_string()
        .as_bytes());
    let none_payload = b64(claims(json!({})).to_string().as_bytes());
    assert_invalid(&gw, &format!("{none_header}.{none_payload}."), "alg none").await;

    // HS/RS confusion: HS256 keyed with the public RSA key, under the RSA key's kid.
    let mut hs = kit.header(Algorithm::HS256);
    hs.kid = Some(kit.kid());
    let confused = sign(
        &hs,
        &claims(json!({})),
        &EncodingKey::from_secret(rsa_pair().1.as_bytes()),
    );
    assert_invalid(&gw, &confused, "HS/RS confusion").await;

    // Unknown kid, and no kid.
    let mut unknown = good_header.clone();
    unknown.kid = Some("no-such-kid".into());
    assert_invalid(
        &gw,
        &sign(&unknown, &claims(json!({})), &key),
        "unknown kid",
    )
    .await;
    let mut no_kid = good_header.clone();
    no_kid.kid = None;
    assert_invalid(&gw, &sign(&no_kid, &claims(json!({})), &key), "no kid").await;

    // Expired (beyond the leeway), not yet valid, no exp.
    assert_invalid(
        &gw,
        &kit.token(json!({"exp": common::authn::now() - 120})),
        "expired",
    )
    .await;
    assert_invalid(&gw, &kit.token(json!({"exp": null})), "no exp").await;

    // Wrong issuer (unknown to the gateway) and wrong audience.
    assert_invalid(
        &gw,
        &kit.token(json!({"iss": "https://evil.example"})),
        "wrong iss",
    )
    .await;
    assert_invalid(&gw, &kit.token(json!({"aud": "someone-else"})), "wrong aud").await;

    assert!(
        up.requests().is_empty(),
        "no bad token reached the upstream"
    );
}

#[tokio::test]
async fn revoked_token_is_refused_even_when_cached() {
    let (gw, kit, _up) = setup().await;
    let jti = uuid::Uuid::new_v4().to_string();
    let token = kit.token(json!({ "jti": jti }));
    assert_eq!(get(&gw, "/api/x", Some(&token)).await.status(), 200);
    assert_eq!(get(&gw, "/api/x", Some(&token)).await.status(), 200);
    kit.revoke(&jti);
    assert_invalid(&gw, &token, "revoked").await;
    // Other tokens of the same user are unaffected.
    assert_eq!(
        get(&gw, "/api/x", Some(&kit.token(json!({}))))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn missing_scope_or_role_is_403_insufficient_scope() {
    let (gw, kit, up) = setup().await;
    let token = kit.token(json!({"scope": "profile"}));
    let resp = get(&gw, "/api/orders", Some(&token)).await;
    assert_eq!(resp.status(), 403);
    assert!(www(&resp).contains(r#"error="insufficient_scope""#));
    let resp = get(&gw, "/admin", Some(&kit.token(json!({})))).await;
    assert_eq!(resp.status(), 403);
    assert!(www(&resp).contains(r#"error="insufficient_scope""#));
    assert!(up.requests().is_empty());
    let admin = kit.token(json!({"role": "admin"}));
    assert_eq!(get(&gw, "/admin", Some(&admin)).await.status(), 200);
}

#[tokio::test]
async fn optional_and_public_routes() {
    let (gw, kit, up) = setup().await;
    assert_eq!(get(&gw, "/optional", None).await.status(), 200);
    assert_eq!(up.last().header("x-user-id"), None);
    assert_eq!(
        get(&gw, "/optional", Some(&kit.token(json!({}))))
            .await
            .status(),
        200
    );
    assert_eq!(up.last().header("x-user-id"), Some("157"));
    // A bad token on an optional route is still refused, not silently anonymous.
    assert_eq!(get(&gw, "/optional", Some("garbage")).await.status(), 401);
    // A public route never looks at the token.
    assert_eq!(get(&gw, "/public", Some("garbage")).await.status(), 200);
    assert_eq!(up.last().header("x-user-id"), None);
}

#[tokio::test]
async fn query_and_cookie_token_sources() {
    let (gw, kit, up) = setup().await;
    let token = kit.token(json!({}));
    let resp = client()
        .get(gw.url(&format!("/legacy/a?x=1&oauth_token={token}&y=2")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = up.last();
    assert_eq!(seen.header("x-user-id"), Some("157"));
    assert_eq!(
        seen.query.as_deref(),
        Some("x=1&y=2"),
        "the query token is removed"
    );
    let resp = client()
        .get(gw.url("/legacy/b"))
        .header("cookie", format!("theme=dark; session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The header source is not listed for this route.
    assert_eq!(get(&gw, "/legacy/c", Some(&token)).await.status(), 401);
}

#[tokio::test]
async fn spoofed_identity_headers_never_reach_the_upstream() {
    let (gw, kit, up) = setup().await;
    for (path, token) in [("/public/x", None), ("/api/x", Some(kit.token(json!({}))))] {
        let mut req = client()
            .get(gw.url(path))
            .header("X-User-Id", "admin")
            .header("X_User_Id", "admin")
            .header("x.user.role", "admin")
            .header("X-User-Role", "admin");
        if let Some(t) = &token {
            req = req.bearer_auth(t);
        }
        assert_eq!(req.send().await.unwrap().status(), 200, "{path}");
        let seen = up.last();
        let ids = seen.headers.get("x-user-id").cloned().unwrap_or_default();
        assert!(!ids.iter().any(|v| v == "admin"), "{path}: {ids:?}");
        assert!(!seen.headers.contains_key("x_user_id"), "{path}");
        assert!(!seen.headers.contains_key("x.user.role"), "{path}");
        let roles = seen.headers.get("x-user-role").cloned().unwrap_or_default();
        assert!(!roles.iter().any(|v| v == "admin"), "{path}: {roles:?}");
        if token.is_some() {
            assert_eq!(ids, vec!["157".to_string()]);
        } else {
            assert!(ids.is_empty());
        }
    }
}

#[tokio::test]
async fn authorization_is_stripped_when_the_route_says_so() {
    let (gw, kit, up) = setup().await;
    let token = kit.token(json!({}));
    assert_eq!(get(&gw, "/hidden/x", Some(&token)).await.status(), 200);
    let seen = up.last();
    assert_eq!(seen.header("authorization"), None);
    assert_eq!(seen.header("x-user-id"), Some("157"));
}

#[tokio::test]
async fn signature_is_checked_once_per_token() {
    let (gw, kit, _up) = setup().await;
    let token = kit.token(json!({}));
    let hits = r#"tollgate_token_cache_total{cache="jwt",result="hit"}"#;
    let before = common::metric(&gw.admin, hits).await;
    for _ in 0..5 {
        assert_eq!(get(&gw, "/api/x", Some(&token)).await.status(), 200);
    }
    let after = common::metric(&gw.admin, hits).await;
    // Other tests in this binary run concurrently, so at least 4 hits were added.
    assert!(after - before >= 4.0, "hits went {before} -> {after}");
}
