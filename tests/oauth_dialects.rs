//! One test per legacy reference document: the document's exact request (headers, body
//! encoding, query) against a real gateway, and the exact response shape and status.

mod common;

use common::oauth::{
    assert_keys, assert_no_store, TokenGateway, BASIC_CLIENT, DRAFT10_CLIENT, JSON_CLIENT,
};
use common::{client, Upstream};
use serde_json::Value;

fn jwt_header(token: &str) -> jsonwebtoken::Header {
    jsonwebtoken::decode_header(token).expect("the access token is a JWT")
}

/// Reference 000: draft-10 sign-in, `POST /oauth/authorize` with a JSON password grant
/// and a public client_id (no secret).
#[tokio::test]
async fn ref_000_draft10_sign_in() {
    let gw = TokenGateway::start("").await;
    let resp = client()
        .post(gw.url("/oauth/authorize"))
        .header("Accept", "application/json")
        .header("Content-Type", "application/json")
        .header("Host", "example.org")
        .header("Cookie", "")
        .body(r#"{"username":"user_1","password":"password","grant_type":"password","client_id":"1bv9sh664cowghktxwn307wpeghj8e1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_no_store(&resp);
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    assert!(resp.headers().contains_key("x-request-id"));
    let body: Value = resp.json().await.unwrap();
    assert!(body["access_token"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(body["token_type"], "bearer");

    // Failure: 400/401 OAuth error JSON.
    let resp = client()
        .post(gw.url("/oauth/authorize"))
        .header("Content-Type", "application/json")
        .body(format!(r#"{{"username":"user_1","password":"wrong","grant_type":"password","client_id":"{DRAFT10_CLIENT}"}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
    assert_keys(&body, &["error", "error_description"]);
}

/// Reference 001: form-encoded password grant with HTTP Basic client authentication, by
/// username and by email_address.
#[tokio::test]
async fn ref_001_form_and_basic() {
    let gw = TokenGateway::start("").await;
    for body in [
        "grant_type=password&username=john_doe&password=john_doe_secret",
        "grant_type=password&email_address=john_doe@domain.com&password=john_doe_secret",
    ] {
        // What `curl -d … --user 138:e8b9…` sends.
        let resp = client()
            .post(gw.url("/v2/marketing/oauth/token"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .basic_auth(BASIC_CLIENT.0, Some(BASIC_CLIENT.1))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{body}");
        assert_no_store(&resp);
        let json: Value = resp.json().await.unwrap();
        assert_keys(
            &json,
            &["access_token", "expires_in", "token_type", "refresh_token"],
        );
        assert_eq!(json["token_type"], "bearer");
        assert_eq!(json["expires_in"], 3600);
        assert!(json["refresh_token"].as_str().unwrap().len() >= 32);
    }
}

/// Reference 002: signInWithPassword, JSON username/password, no client; RS256 JWT with
/// kid, `token_type: "Bearer"`, `expires_in: 3600`, and `useralias` injected upstream.
#[tokio::test]
async fn ref_002_sign_in_with_password() {
    let up = Upstream::start().await;
    let gw = TokenGateway::start(&format!(
        "routes:\n  - name: api\n    path: /api/orders\n    upstream: {}\n    auth: required\n",
        up.url()
    ))
    .await;
    let resp = client()
        .post(gw.url("/user-management-services-ws/oauth2/002/signInWithPassword"))
        .header("Content-Type", "application/json")
        .body("{\n  \"username\": \"customerUsername\",\n  \"password\": \"customerPassword\"\n}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_no_store(&resp);
    let body: Value = resp.json().await.unwrap();
    assert_keys(
        &body,
        &[
            "access_token",
            "refresh_token",
            "scope",
            "token_type",
            "expires_in",
        ],
    );
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert!(body["scope"].is_string());
    let h = jwt_header(body["access_token"].as_str().unwrap());
    assert_eq!(h.alg, jsonwebtoken::Algorithm::RS256);
    assert!(h.kid.is_some());

    // useralias is carried in the token and injected upstream.
    let resp = client()
        .post(gw.url("/user-management-services-ws/oauth2/002/signInWithPassword"))
        .header("Content-Type", "application/json")
        .body(r#"{"username":"customerUsername","password":"customerPassword","useralias":"agent-007"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap();
    let resp = client()
        .get(gw.url("/api/orders/1"))
        .bearer_auth(token)
        .header("X-User-Alias", "spoofed")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = up.last();
    assert_eq!(seen.header("x-user-alias"), Some("agent-007"));
    assert_eq!(seen.header("x-user-email"), Some("customer@example.com"));
    assert_eq!(seen.header("x-client-id"), Some("web"));

    // Failure: 403 access_denied with the legacy description.
    let resp = client()
        .post(gw.url("/user-management-services-ws/oauth2/002/signInWithPassword"))
        .header("Content-Type", "application/json")
        .body(r#"{"username":"customerUsername","password":"nope"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_no_store(&resp);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"error":"access_denied","error_description":"Invalid username / password combination"})
    );

    // Failure: 400 for a missing field.
    let resp = client()
        .post(gw.url("/user-management-services-ws/oauth2/002/signInWithPassword"))
        .header("Content-Type", "application/json")
        .body(r#"{"username":"customerUsername"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
}

/// Reference 004: `?grant_type=password` and `?grant_type=refresh_token` with JSON
/// bodies carrying the client credentials; `created_at` and `user_id` in the answer.
#[tokio::test]
async fn ref_004_query_grant_with_json() {
    let gw = TokenGateway::start_with("  access:\n    ttl: 2h\n", "").await;
    let user_id = gw
        .store
        .user_by_email("person1@example.com")
        .await
        .unwrap()
        .unwrap()
        .id
        .0;
    let resp = client()
        .post(gw.url("/oauth/token?grant_type=password"))
        .header("Accept", "application/json")
        .header("Content-Type", "application/json")
        .body(format!(
            "{{\n  \"username\": \"person1@example.com\",\n  \"password\": \"password\",\n  \"client_id\": \"{}\",\n  \"client_secret\": \"{}\"\n}}",
            JSON_CLIENT.0, JSON_CLIENT.1
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_no_store(&resp);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let body: Value = resp.json().await.unwrap();
    assert_keys(
        &body,
        &[
            "access_token",
            "token_type",
            "expires_in",
            "refresh_token",
            "created_at",
            "user_id",
        ],
    );
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 7200);
    assert_eq!(body["user_id"], user_id);
    let created = body["created_at"].as_i64().unwrap();
    assert!((created - chrono::Utc::now().timestamp()).abs() < 60);
    assert!(jwt_header(body["access_token"].as_str().unwrap())
        .kid
        .is_some());

    let resp = client()
        .post(gw.url("/oauth/token?grant_type=refresh_token"))
        .header("Accept", "application/json")
        .header("Content-Type", "application/json")
        .body(format!(
            "{{\n  \"refresh_token\": \"{}\",\n  \"client_id\": \"{}\",\n  \"client_secret\": \"{}\"\n}}",
            body["refresh_token"].as_str().unwrap(),
            JSON_CLIENT.0,
            JSON_CLIENT.1
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let refreshed: Value = resp.json().await.unwrap();
    assert_keys(
        &refreshed,
        &[
            "access_token",
            "token_type",
            "expires_in",
            "refresh_token",
            "created_at",
            "user_id",
        ],
    );
    assert_eq!(refreshed["user_id"], user_id);
    assert_ne!(refreshed["refresh_token"], body["refresh_token"], "rotated");
}

/// Reference 004, users API: `POST /api/v1/users` and `GET /api/v1/users/{id}?null=`.
#[tokio::test]
async fn ref_004_users_api() {
    let gw = TokenGateway::start("").await;
    let resp = client()
        .post(gw.url("/api/v1/users"))
        .header("Accept", "application/json")
        .header("Content-Type", "application/json")
        .body("{\n  \"user\": {\n    \"email\": \"user@example.com\",\n    \"password\": \"password\"\n  }\n}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let created: Value = resp.json().await.unwrap();
    assert_keys(
        &created,
        &["id", "email", "created_at", "updated_at", "role"],
    );
    assert_eq!(created["email"], "user@example.com");
    assert_eq!(created["role"], "default");
    let ts = created["created_at"].as_str().unwrap();
    assert_eq!(ts.len(), "2018-01-24T09:50:01.704Z".len(), "{ts}");
    assert!(ts.ends_with('Z') && ts.as_bytes()[19] == b'.');

    // The new user signs in (004 dialect) and reads themself by id.
    let token = gw.password_token("user@example.com", "password").await;
    let id = created["id"].as_i64().unwrap();
    let resp = client()
        .get(gw.url(&format!("/api/v1/users/{id}?null=")))
        .header("Accept", "application/json")
        .header("Content-Type", "application/json")
        .bearer_auth(token["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let shown: Value = resp.json().await.unwrap();
    assert_eq!(shown, created);
}
