//! Tokens issued by the token service open proxied routes through the real
//! `app::wiring::build` wiring: JWT and opaque access tokens, client_credentials, and
//! revocation through `POST /oauth/revoke` taking effect at once (SQLite), even for
//! tokens whose validation is cached.

mod common;

use common::oauth::{TokenGateway, BASIC_CLIENT, RESOURCE_SERVER};
use common::{bearer_status, client, Upstream};
use serde_json::Value;

fn routes(up: &Upstream) -> String {
    format!(
        "routes:\n  - {{ name: api, path: /api, upstream: \"{u}\", auth: required }}\n  - {{ name: writes, path: /w, upstream: \"{u}\", auth: {{ mode: required, scopes: [write] }} }}\n",
        u = up.url()
    )
}

async fn revoke(gw: &TokenGateway, token: &str) {
    let resp = client()
        .post(gw.url("/oauth/revoke"))
        .basic_auth(BASIC_CLIENT.0, Some(BASIC_CLIENT.1))
        .form(&[("token", token), ("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn jwt_access_token_opens_route_and_revocation_is_immediate() {
    let up = Upstream::start().await;
    let gw = TokenGateway::start(&routes(&up)).await;
    let body = gw.password_token("john_doe", "john_doe_secret").await;
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(bearer_status(&gw.url("/api/x"), token).await, 200);
    assert_eq!(bearer_status(&gw.url("/api/x"), token).await, 200);
    let seen = up.last();
    assert_eq!(seen.header("x-user-email"), Some("john_doe@domain.com"));
    assert_eq!(seen.header("x-client-id"), Some(BASIC_CLIENT.0));
    revoke(&gw, token).await;
    assert_eq!(bearer_status(&gw.url("/api/x"), token).await, 401);
}

#[tokio::test]
async fn opaque_access_token_opens_route_and_revocation_is_immediate() {
    let up = Upstream::start().await;
    let gw = TokenGateway::start_with("  access:\n    format: opaque\n", &routes(&up)).await;
    let body = gw.password_token("user_1", "password").await;
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(token.matches('.').count(), 0, "an opaque token");
    assert_eq!(bearer_status(&gw.url("/api/x"), token).await, 200);
    assert_eq!(bearer_status(&gw.url("/api/x"), token).await, 200);
    let seen = up.last();
    assert_eq!(seen.header("x-user-email"), Some("person1@example.com"));
    assert_eq!(seen.header("x-user-role"), Some("default"));
    revoke(&gw, token).await;
    // The store announces the revocation; the cached lookup is evicted.
    common::wait_until(
        std::time::Duration::from_secs(1),
        "revocation to apply",
        || async { bearer_status(&gw.url("/api/x"), token).await == 401 },
    )
    .await;
    assert_eq!(
        bearer_status(&gw.url("/api/x"), "never-issued-opaque-token").await,
        401
    );
}

#[tokio::test]
async fn client_credentials_token_carries_its_scopes() {
    let up = Upstream::start().await;
    let gw = TokenGateway::start(&routes(&up)).await;
    let resp = client()
        .post(gw.url("/oauth/token"))
        .basic_auth(RESOURCE_SERVER.0, Some(RESOURCE_SERVER.1))
        .form(&[("grant_type", "client_credentials"), ("scope", "write")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(bearer_status(&gw.url("/w/x"), token).await, 200);
    let seen = up.last();
    assert_eq!(seen.header("x-client-id"), Some(RESOURCE_SERVER.0));
    assert_eq!(seen.header("x-user-scopes"), Some("write"));
}
