//! The users API: registration policies, validation (422), duplicates (409), and who may
//! read which user (401/404, no leaking of existence).

mod common;

use common::client;
use common::oauth::{TokenGateway, RESOURCE_SERVER};
use serde_json::{json, Value};

async fn register(gw: &TokenGateway, body: Value, token: Option<&str>) -> (u16, Value) {
    let mut req = client().post(gw.url("/api/v1/users")).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

async fn get(
    gw: &TokenGateway,
    path: &str,
    token: Option<&str>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = client().get(gw.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, resp.json().await.unwrap_or(Value::Null), headers)
}

async fn token_for(gw: &TokenGateway, user: &str, password: &str) -> String {
    gw.password_token(user, password).await["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn validation_errors_are_422_with_field_messages() {
    let gw = TokenGateway::start("").await;
    let (s, body) = register(
        &gw,
        json!({"user": {"email": "not-an-email", "password": "short"}}),
        None,
    )
    .await;
    assert_eq!(s, 422);
    assert_eq!(
        body,
        json!({"errors": {"email": ["is invalid"], "password": ["is too short (minimum is 8 characters)"]}})
    );
    let (s, body) = register(&gw, json!({}), None).await;
    assert_eq!(s, 422);
    assert_eq!(body["errors"]["email"], json!(["can't be blank"]));
    assert_eq!(body["errors"]["password"], json!(["can't be blank"]));
    let resp = client()
        .post(gw.url("/api/v1/users"))
        .header("Content-Type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn duplicate_email_is_409_regardless_of_case() {
    let gw = TokenGateway::start("").await;
    let (s, _) = register(
        &gw,
        json!({"user": {"email": "dup@example.com", "password": "password"}}),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (s, body) = register(
        &gw,
        json!({"user": {"email": "DUP@example.com", "password": "password2"}}),
        None,
    )
    .await;
    assert_eq!(s, 409);
    assert_eq!(
        body,
        json!({"errors": {"email": ["has already been taken"]}})
    );
}

#[tokio::test]
async fn registration_never_takes_a_role_and_never_returns_the_password() {
    let gw = TokenGateway::start("").await;
    let (s, body) = register(
        &gw,
        json!({"user": {"email": "sneaky@example.com", "password": "password", "role": "admin"}}),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(body["role"], "default");
    assert!(!body.to_string().contains("password"));
}

#[tokio::test]
async fn users_see_themselves_only_and_others_get_404() {
    let gw = TokenGateway::start("").await;
    let me = gw
        .store
        .user_by_username("john_doe")
        .await
        .unwrap()
        .unwrap();
    let other = gw.store.user_by_username("user_1").await.unwrap().unwrap();
    let token = token_for(&gw, "john_doe", "john_doe_secret").await;

    let (s, body, _) = get(&gw, "/api/v1/users/me", Some(&token)).await;
    assert_eq!(s, 200);
    assert_eq!(body["id"], me.id.0);
    assert_eq!(body["email"], "john_doe@domain.com");
    let (s, body2, h) = get(&gw, &format!("/api/v1/users/{}", me.id.0), Some(&token)).await;
    assert_eq!(s, 200);
    assert_eq!(body2, body);
    assert_eq!(h["cache-control"], "no-store");

    // Another existing user and a missing one answer alike.
    let (s1, b1, _) = get(&gw, &format!("/api/v1/users/{}", other.id.0), Some(&token)).await;
    let (s2, b2, _) = get(&gw, "/api/v1/users/999999", Some(&token)).await;
    let (s3, b3, _) = get(&gw, "/api/v1/users/abc", Some(&token)).await;
    assert_eq!((s1, s2, s3), (404, 404, 404));
    assert_eq!(b1, b2);
    assert_eq!(b1, b3);
}

#[tokio::test]
async fn admins_may_read_anyone() {
    let gw = TokenGateway::start("").await;
    gw.user("boss", "boss@example.com", "boss-password", "admin")
        .await;
    let other = gw.store.user_by_username("user_1").await.unwrap().unwrap();
    let token = token_for(&gw, "boss", "boss-password").await;
    let (s, body, _) = get(&gw, &format!("/api/v1/users/{}", other.id.0), Some(&token)).await;
    assert_eq!(s, 200);
    assert_eq!(body["email"], "person1@example.com");
    let (s, _, _) = get(&gw, "/api/v1/users/999999", Some(&token)).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn missing_or_bad_tokens_are_401_with_www_authenticate() {
    let gw = TokenGateway::start("").await;
    let (s, _, h) = get(&gw, "/api/v1/users/me", None).await;
    assert_eq!(s, 401);
    assert!(h["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    let (s, _, h) = get(&gw, "/api/v1/users/1", Some("not.a.token")).await;
    assert_eq!(s, 401);
    assert!(h["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("invalid_token"));
    // A client_credentials token speaks for no user.
    let resp = client()
        .post(gw.url("/oauth/token"))
        .basic_auth(RESOURCE_SERVER.0, Some(RESOURCE_SERVER.1))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    let t: Value = resp.json().await.unwrap();
    let (s, _, _) = get(&gw, "/api/v1/users/me", t["access_token"].as_str()).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn admin_registration_policy() {
    let gw = TokenGateway::start("users_api:\n  registration: admin\n").await;
    let new = json!({"user": {"email": "new@example.com", "password": "password"}});
    let (s, _) = register(&gw, new.clone(), None).await;
    assert_eq!(s, 401);
    let plain = token_for(&gw, "john_doe", "john_doe_secret").await;
    let (s, body) = register(&gw, new.clone(), Some(&plain)).await;
    assert_eq!(s, 403);
    assert_eq!(body["error"], "forbidden");
    gw.user("boss", "boss@example.com", "boss-password", "admin")
        .await;
    let admin = token_for(&gw, "boss", "boss-password").await;
    let (s, body) = register(&gw, new, Some(&admin)).await;
    assert_eq!(s, 200);
    assert_eq!(body["role"], "default");
}

#[tokio::test]
async fn closed_registration_policy() {
    let gw = TokenGateway::start("users_api:\n  registration: closed\n").await;
    let (s, body) = register(
        &gw,
        json!({"user": {"email": "new@example.com", "password": "password"}}),
        None,
    )
    .await;
    assert_eq!(s, 403);
    assert_eq!(body["error"], "registration_closed");
    assert!(gw
        .store
        .user_by_email("new@example.com")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn wrong_methods_are_405() {
    let gw = TokenGateway::start("").await;
    let resp = client().get(gw.url("/api/v1/users")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    let resp = client()
        .delete(gw.url("/api/v1/users/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
}
