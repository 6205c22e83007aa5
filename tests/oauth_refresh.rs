//! Refresh tokens: rotated on every use; a rotated token presented again revokes the
//! whole family, except inside `tokens.refresh.reuse_grace`.

mod common;

use common::client;
use common::oauth::{TokenGateway, BASIC_CLIENT, JSON_CLIENT};
use serde_json::Value;

fn s(v: &Value, k: &str) -> String {
    v[k].as_str()
        .unwrap_or_else(|| panic!("{k} in {v}"))
        .to_string()
}

#[tokio::test]
async fn rotation_and_reuse_revokes_the_family() {
    let gw = TokenGateway::start("").await;
    let first = gw.password_token("john_doe", "john_doe_secret").await;
    let r1 = s(&first, "refresh_token");

    let (status, second) = gw.refresh(&r1).await;
    assert_eq!(status, 200);
    let r2 = s(&second, "refresh_token");
    assert_ne!(r1, r2, "a new refresh token on every use");

    let (status, third) = gw.refresh(&r2).await;
    assert_eq!(status, 200);
    let r3 = s(&third, "refresh_token");

    // r1 was rotated long ago: presenting it again is reuse.
    let (status, err) = gw.refresh(&r1).await;
    assert_eq!(status, 400);
    assert_eq!(err["error"], "invalid_grant");
    // ... and the whole family is gone, including the newest token.
    let (status, err) = gw.refresh(&r3).await;
    assert_eq!(status, 400);
    assert_eq!(err["error"], "invalid_grant");

    // Another login starts a new, unaffected family.
    let fresh = gw.password_token("john_doe", "john_doe_secret").await;
    assert_eq!(gw.refresh(&s(&fresh, "refresh_token")).await.0, 200);
}

#[tokio::test]
async fn reuse_inside_the_grace_window_is_honoured() {
    let gw = TokenGateway::start_with("  refresh:\n    reuse_grace: 1h\n", "").await;
    let first = gw.password_token("john_doe", "john_doe_secret").await;
    let r1 = s(&first, "refresh_token");
    let (a, tab_a) = gw.refresh(&r1).await;
    let (b, tab_b) = gw.refresh(&r1).await;
    assert_eq!(
        (a, b),
        (200, 200),
        "two tabs refreshing at once both succeed"
    );
    assert_ne!(s(&tab_a, "refresh_token"), s(&tab_b, "refresh_token"));
    assert_eq!(gw.refresh(&s(&tab_a, "refresh_token")).await.0, 200);
    assert_eq!(gw.refresh(&s(&tab_b, "refresh_token")).await.0, 200);
}

#[tokio::test]
async fn refresh_tokens_are_bound_to_their_client_and_unguessable() {
    let gw = TokenGateway::start("").await;
    let first = gw.password_token("john_doe", "john_doe_secret").await;
    let r1 = s(&first, "refresh_token");
    // Another client presents it.
    let resp = client()
        .post(gw.url("/oauth/token?grant_type=refresh_token"))
        .json(&serde_json::json!({"refresh_token": r1, "client_id": JSON_CLIENT.0, "client_secret": JSON_CLIENT.1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"],
        "invalid_grant"
    );
    // Unknown or missing token.
    assert_eq!(gw.refresh("not-a-token").await.0, 400);
    let resp = client()
        .post(gw.url("/oauth/token"))
        .basic_auth(BASIC_CLIENT.0, Some(BASIC_CLIENT.1))
        .form(&[("grant_type", "refresh_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"],
        "invalid_request"
    );
    // The rightful client still can.
    assert_eq!(gw.refresh(&r1).await.0, 200);
}

#[tokio::test]
async fn refresh_tokens_are_stored_only_as_hashes() {
    let gw = TokenGateway::start("").await;
    let first = gw.password_token("john_doe", "john_doe_secret").await;
    let r1 = s(&first, "refresh_token");
    let db = std::fs::read(gw.dir.path().join("tollgate.db")).unwrap();
    let wal = std::fs::read(gw.dir.path().join("tollgate.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(
            !bytes.windows(r1.len()).any(|w| w == r1.as_bytes()),
            "raw refresh token on disk"
        );
    }
    let rec = gw
        .store
        .token_by_hash(
            tollgate::store::TokenKind::Refresh,
            &tollgate::crypto::sha256_hex(&r1),
        )
        .await
        .unwrap();
    assert!(rec.is_some(), "found by its SHA-256");
}

#[tokio::test]
async fn sign_in_with_password_refreshes_with_its_implied_client() {
    let gw = TokenGateway::start("").await;
    let resp = client()
        .post(gw.url("/user-management-services-ws/oauth2/002/signInWithPassword"))
        .json(&serde_json::json!({"username": "customerUsername", "password": "customerPassword", "useralias": "desk-2"}))
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    let resp = client()
        .post(gw.url("/user-management-services-ws/oauth2/002/signInWithPassword"))
        .json(&serde_json::json!({"grant_type": "refresh_token", "refresh_token": s(&body, "refresh_token")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    let token = s(&body, "access_token");
    let payload = token.split('.').nth(1).unwrap();
    use base64::Engine;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["alias"], "desk-2", "the alias survives a refresh");
}
