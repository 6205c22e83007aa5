//! RFC 7009 revocation and RFC 7662 introspection, for access and refresh tokens.

mod common;

use common::client;
use common::oauth::{TokenGateway, BASIC_CLIENT, JSON_CLIENT, RESOURCE_SERVER};
use serde_json::Value;

async fn revoke(gw: &TokenGateway, creds: (&str, &str), token: &str) -> reqwest::Response {
    client()
        .post(gw.url("/oauth/revoke"))
        .basic_auth(creds.0, Some(creds.1))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
}

async fn introspect(gw: &TokenGateway, token: &str) -> Value {
    let resp = client()
        .post(gw.url("/oauth/introspect"))
        .basic_auth(RESOURCE_SERVER.0, Some(RESOURCE_SERVER.1))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    resp.json().await.unwrap()
}

#[tokio::test]
async fn introspection_of_access_and_refresh_tokens() {
    let gw = TokenGateway::start("").await;
    let body = gw.password_token("john_doe", "john_doe_secret").await;
    let access = body["access_token"].as_str().unwrap();
    let refresh = body["refresh_token"].as_str().unwrap();
    let a = introspect(&gw, access).await;
    assert_eq!(a["active"], true);
    assert_eq!(a["token_type"], "access_token");
    assert_eq!(a["client_id"], BASIC_CLIENT.0);
    assert_eq!(a["email"], "john_doe@domain.com");
    let r = introspect(&gw, refresh).await;
    assert_eq!(r["active"], true);
    assert_eq!(r["token_type"], "refresh_token");
    assert_eq!(r["sub"], a["sub"]);
    assert_eq!(
        introspect(&gw, "garbage").await,
        serde_json::json!({"active": false})
    );
    assert_eq!(
        introspect(&gw, "a.b.c").await,
        serde_json::json!({"active": false})
    );
}

#[tokio::test]
async fn introspection_requires_a_confidential_client() {
    let gw = TokenGateway::start("").await;
    let resp = client()
        .post(gw.url("/oauth/introspect"))
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = client()
        .post(gw.url("/oauth/introspect"))
        .form(&[("token", "x"), ("client_id", common::oauth::DRAFT10_CLIENT)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "public clients may not introspect");
    let resp = client()
        .post(gw.url("/oauth/introspect"))
        .basic_auth(RESOURCE_SERVER.0, Some("wrong"))
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
}

#[tokio::test]
async fn revoking_a_jwt_access_token_stops_it() {
    let gw = TokenGateway::start("").await;
    let body = gw.password_token("john_doe", "john_doe_secret").await;
    let access = body["access_token"].as_str().unwrap();
    assert_eq!(
        common::bearer_status(&gw.url("/api/v1/users/me"), access).await,
        200
    );
    // Another client cannot revoke it (200 regardless, nothing revoked).
    let resp = revoke(&gw, JSON_CLIENT, access).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        common::bearer_status(&gw.url("/api/v1/users/me"), access).await,
        200
    );
    // Its own client can.
    let resp = revoke(&gw, BASIC_CLIENT, access).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert_eq!(
        common::bearer_status(&gw.url("/api/v1/users/me"), access).await,
        401
    );
    assert_eq!(introspect(&gw, access).await["active"], false);
    // The jti is recorded in the store, so other replicas learn of it.
    let jtis = gw.store.revoked_jtis().await.unwrap();
    assert_eq!(jtis.len(), 1);
}

#[tokio::test]
async fn revoking_a_refresh_token_revokes_its_family() {
    let gw = TokenGateway::start("").await;
    let body = gw.password_token("john_doe", "john_doe_secret").await;
    let r1 = body["refresh_token"].as_str().unwrap();
    let (_, next) = gw.refresh(r1).await;
    let r2 = next["refresh_token"].as_str().unwrap();
    let resp = revoke(&gw, BASIC_CLIENT, r2).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(gw.refresh(r2).await.0, 400);
    assert_eq!(introspect(&gw, r2).await["active"], false);
}

#[tokio::test]
async fn revoking_an_opaque_access_token() {
    let gw = TokenGateway::start_with("  access:\n    format: opaque\n", "").await;
    let body = gw.password_token("john_doe", "john_doe_secret").await;
    let access = body["access_token"].as_str().unwrap();
    assert_eq!(introspect(&gw, access).await["active"], true);
    assert_eq!(
        common::bearer_status(&gw.url("/api/v1/users/me"), access).await,
        200
    );
    let resp = client()
        .post(gw.url("/oauth/revoke"))
        .basic_auth(BASIC_CLIENT.0, Some(BASIC_CLIENT.1))
        .form(&[("token", access), ("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        common::bearer_status(&gw.url("/api/v1/users/me"), access).await,
        401
    );
    assert_eq!(introspect(&gw, access).await["active"], false);
}

#[tokio::test]
async fn revocation_requires_client_authentication_and_a_token() {
    let gw = TokenGateway::start("").await;
    let resp = client()
        .post(gw.url("/oauth/revoke"))
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = revoke(&gw, (BASIC_CLIENT.0, "wrong"), "x").await;
    assert_eq!(resp.status(), 401);
    let resp = client()
        .post(gw.url("/oauth/revoke"))
        .basic_auth(BASIC_CLIENT.0, Some(BASIC_CLIENT.1))
        .form(&[("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // Unknown tokens: 200, per RFC 7009 §2.2.
    assert_eq!(
        revoke(&gw, BASIC_CLIENT, "never-issued").await.status(),
        200
    );
}
