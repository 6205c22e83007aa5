//! Error paths of the token endpoint: RFC 6749 §5.2 codes and the dialect overrides,
//! client authentication failures, throttling, cache and CORS headers.

mod common;

use common::client;
use common::oauth::{assert_keys, assert_no_store, TokenGateway, BASIC_CLIENT, JSON_CLIENT};
use serde_json::Value;

async fn form(gw: &TokenGateway, basic: Option<(&str, &str)>, body: &str) -> reqwest::Response {
    let mut req = client()
        .post(gw.url("/oauth/token"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body.to_string());
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    req.send().await.unwrap()
}

async fn error_of(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    assert_no_store(&resp);
    let body: Value = resp.json().await.unwrap();
    assert_keys(&body, &["error", "error_description"]);
    (status, body["error"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn invalid_request_for_missing_both_or_neither_identifier() {
    let gw = TokenGateway::start("").await;
    let b = Some(BASIC_CLIENT);
    for body in [
        "grant_type=password&username=john_doe",
        "grant_type=password&password=john_doe_secret",
        "grant_type=password&username=john_doe&email_address=john_doe@domain.com&password=john_doe_secret",
        "username=john_doe&password=john_doe_secret",
        "grant_type=password&username=john_doe&username=x&password=john_doe_secret",
    ] {
        assert_eq!(error_of(form(&gw, b, body).await).await, (400, "invalid_request".into()), "{body}");
    }
}

#[tokio::test]
async fn unsupported_grant_type() {
    let gw = TokenGateway::start("").await;
    let r = form(&gw, Some(BASIC_CLIENT), "grant_type=implicit&code=x").await;
    assert_eq!(error_of(r).await, (400, "unsupported_grant_type".into()));
    // The query and the body disagree.
    let r = client()
        .post(gw.url("/oauth/token?grant_type=refresh_token"))
        .basic_auth(BASIC_CLIENT.0, Some(BASIC_CLIENT.1))
        .form(&[("grant_type", "password")])
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await, (400, "invalid_request".into()));
}

#[tokio::test]
async fn invalid_client_via_basic_is_401_with_www_authenticate_basic() {
    let gw = TokenGateway::start("").await;
    let body = "grant_type=password&username=john_doe&password=john_doe_secret";
    for creds in [(BASIC_CLIENT.0, "wrong-secret"), ("999", BASIC_CLIENT.1)] {
        let r = form(&gw, Some(creds), body).await;
        let www = r
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string());
        assert_eq!(error_of(r).await, (401, "invalid_client".into()));
        assert!(www.unwrap().starts_with("Basic"), "WWW-Authenticate: Basic");
    }
    // Garbage in the Basic header.
    let r = client()
        .post(gw.url("/oauth/token"))
        .header("Authorization", "Basic %%%")
        .form(&[("grant_type", "password")])
        .send()
        .await
        .unwrap();
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    assert_eq!(error_of(r).await, (401, "invalid_client".into()));
}

#[tokio::test]
async fn invalid_client_via_body_or_none() {
    let gw = TokenGateway::start("").await;
    // No client at all on an endpoint without an implied client.
    let r = form(
        &gw,
        None,
        "grant_type=password&username=john_doe&password=john_doe_secret",
    )
    .await;
    // Every 401 names a scheme, Basic or not (RFC 7235 §3.1).
    assert_eq!(
        r.headers().get("www-authenticate").unwrap(),
        r#"Basic realm="tollgate", charset="UTF-8""#
    );
    assert_eq!(error_of(r).await, (401, "invalid_client".into()));
    // Wrong secret in a JSON body.
    let r = client()
        .post(gw.url("/oauth/token?grant_type=password"))
        .json(&serde_json::json!({
            "username": "person1@example.com", "password": "password",
            "client_id": JSON_CLIENT.0, "client_secret": "nope"
        }))
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("www-authenticate").is_some());
    assert_eq!(error_of(r).await, (401, "invalid_client".into()));
    // A confidential client that leaves out its secret.
    let r = form(
        &gw,
        None,
        &format!(
            "grant_type=password&username=john_doe&password=john_doe_secret&client_id={}",
            BASIC_CLIENT.0
        ),
    )
    .await;
    assert_eq!(error_of(r).await, (401, "invalid_client".into()));
    // Basic and body secret together.
    let r = form(
        &gw,
        Some(BASIC_CLIENT),
        "grant_type=password&username=john_doe&password=x&client_secret=y",
    )
    .await;
    assert_eq!(error_of(r).await, (400, "invalid_request".into()));
}

#[tokio::test]
async fn wrong_password_and_unknown_user_look_the_same() {
    let gw = TokenGateway::start("").await;
    let a = form(
        &gw,
        Some(BASIC_CLIENT),
        "grant_type=password&username=john_doe&password=wrong",
    )
    .await;
    let a_status = a.status();
    let a_body: Value = a.json().await.unwrap();
    let b = form(
        &gw,
        Some(BASIC_CLIENT),
        "grant_type=password&username=nobody&password=wrong",
    )
    .await;
    assert_eq!(b.status(), a_status);
    assert_eq!(b.json::<Value>().await.unwrap(), a_body);
    assert_eq!(a_status, 400);
    assert_eq!(a_body["error"], "invalid_grant");
}

#[tokio::test]
async fn grants_the_client_is_not_allowed_are_refused() {
    let gw = TokenGateway::start("").await;
    // BASIC_CLIENT has password + refresh_token only.
    let r = form(&gw, Some(BASIC_CLIENT), "grant_type=client_credentials").await;
    assert_eq!(error_of(r).await, (400, "unauthorized_client".into()));
    // A public client may never use client_credentials.
    gw.client("public-cc", None, &["client_credentials"], &[])
        .await;
    let r = form(
        &gw,
        None,
        "grant_type=client_credentials&client_id=public-cc",
    )
    .await;
    assert_eq!(error_of(r).await, (400, "unauthorized_client".into()));
    // Scope beyond the client's.
    let r = form(
        &gw,
        Some(BASIC_CLIENT),
        "grant_type=password&username=john_doe&password=john_doe_secret&scope=admin",
    )
    .await;
    assert_eq!(error_of(r).await, (400, "invalid_scope".into()));
}

#[tokio::test]
async fn throttled_attempts_get_429_with_retry_after_and_are_counted() {
    let gw = TokenGateway::start_with(
        "  login_throttle:\n    per_account: 3\n    per_ip: 1000\n",
        "",
    )
    .await;
    let body = "grant_type=password&username=john_doe&password=wrong";
    for _ in 0..3 {
        let r = form(&gw, Some(BASIC_CLIENT), body).await;
        assert_eq!(r.status(), 400);
    }
    // Now even the right password is refused without being checked.
    let r = form(
        &gw,
        Some(BASIC_CLIENT),
        "grant_type=password&username=JOHN_DOE&password=john_doe_secret",
    )
    .await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert_no_store(&r);
    // Another account from the same IP still works.
    let r = form(
        &gw,
        Some(BASIC_CLIENT),
        "grant_type=password&email_address=person1@example.com&password=password",
    )
    .await;
    assert_eq!(r.status(), 200);
    let metrics = common::scrape(&gw.admin).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tollgate_login_throttled_total") && l.contains("account")),
        "throttling is counted"
    );
}

#[tokio::test]
async fn throttling_per_ip_spans_accounts() {
    let gw = TokenGateway::start_with(
        "  login_throttle:\n    per_account: 1000\n    per_ip: 2\n",
        "",
    )
    .await;
    for user in ["a", "b"] {
        let r = form(
            &gw,
            Some(BASIC_CLIENT),
            &format!("grant_type=password&username={user}&password=x"),
        )
        .await;
        assert_eq!(r.status(), 400);
    }
    let r = form(
        &gw,
        Some(BASIC_CLIENT),
        "grant_type=password&username=c&password=x",
    )
    .await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn cors_preflight_and_headers_on_token_and_users_endpoints() {
    let gw = TokenGateway::start("cors:\n  allow_origins: [\"https://app.example.com\"]\n").await;
    for path in [
        "/oauth/token",
        "/api/v1/users",
        "/user-management-services-ws/oauth2/002/signInWithPassword",
    ] {
        let r = client()
            .request(reqwest::Method::OPTIONS, gw.url(path))
            .header("Origin", "https://app.example.com")
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "content-type")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204, "{path}");
        assert_eq!(
            r.headers()["access-control-allow-origin"],
            "https://app.example.com"
        );
        assert!(r.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST"));
        assert_eq!(r.headers()["access-control-allow-headers"], "content-type");
        // Another origin gets no CORS grant.
        let r = client()
            .request(reqwest::Method::OPTIONS, gw.url(path))
            .header("Origin", "https://evil.example")
            .header("Access-Control-Request-Method", "POST")
            .send()
            .await
            .unwrap();
        assert!(r.headers().get("access-control-allow-origin").is_none());
    }
    let r = client()
        .post(gw.url("/oauth/token"))
        .header("Origin", "https://app.example.com")
        .basic_auth(BASIC_CLIENT.0, Some(BASIC_CLIENT.1))
        .form(&[
            ("grant_type", "password"),
            ("username", "john_doe"),
            ("password", "john_doe_secret"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_no_store(&r);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
}

/// Failures leave through the same envelope as answers: a browser can read why.
#[tokio::test]
async fn failures_carry_cors_and_no_store() {
    let gw = TokenGateway::start("cors:\n  allow_origins: [\"https://app.example.com\"]\n").await;
    let origin = "https://app.example.com";
    let token_failure = client()
        .post(gw.url("/oauth/token"))
        .header("Origin", origin)
        .basic_auth(BASIC_CLIENT.0, Some("wrong-secret"))
        .form(&[
            ("grant_type", "password"),
            ("username", "a"),
            ("password", "b"),
        ])
        .send()
        .await
        .unwrap();
    let users_failure = client()
        .get(gw.url("/api/v1/users/me"))
        .header("Origin", origin)
        .send()
        .await
        .unwrap();
    let wrong_method = client()
        .delete(gw.url("/oauth/revoke"))
        .header("Origin", origin)
        .send()
        .await
        .unwrap();
    for (r, status) in [
        (token_failure, 401),
        (users_failure, 401),
        (wrong_method, 405),
    ] {
        assert_eq!(r.status(), status);
        assert_no_store(&r);
        assert_eq!(r.headers()["access-control-allow-origin"], origin);
        if status == 401 {
            assert!(r.headers().contains_key("www-authenticate"));
        }
    }
}

#[tokio::test]
async fn only_post_and_bodies_within_limits() {
    let gw = TokenGateway::start("").await;
    let r = client().get(gw.url("/oauth/token")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert!(r.headers()["allow"].to_str().unwrap().contains("POST"));
    let huge = format!("grant_type=password&username={}", "a".repeat(100_000));
    let r = form(&gw, Some(BASIC_CLIENT), &huge).await;
    assert_eq!(error_of(r).await, (400, "invalid_request".into()));
    // Bad JSON.
    let r = client()
        .post(gw.url("/oauth/token"))
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await, (400, "invalid_request".into()));
}

#[tokio::test]
async fn client_credentials_for_confidential_clients() {
    let gw = TokenGateway::start("").await;
    let r = client()
        .post(gw.url("/oauth/token"))
        .basic_auth(
            common::oauth::RESOURCE_SERVER.0,
            Some(common::oauth::RESOURCE_SERVER.1),
        )
        .form(&[("grant_type", "client_credentials"), ("scope", "read")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_keys(
        &body,
        &["access_token", "token_type", "expires_in", "scope"],
    );
    assert_eq!(body["scope"], "read");
}

#[tokio::test]
async fn argon2_hashed_client_secrets_verify() {
    // `tollgate clients create --secret-stdin` stores an argon2id hash of the secret.
    let gw = TokenGateway::start("").await;
    let hash = gw.hasher.hash("cli-made-secret-123").await.unwrap();
    gw.store
        .create_client(tollgate::store::Client {
            id: "cli-client".into(),
            secret_hash: Some(hash),
            grants: vec!["password".into()],
            scopes: vec![],
            created_at: chrono::Utc::now(),
            ..Default::default()
        })
        .await
        .unwrap();
    let body = "grant_type=password&username=john_doe&password=john_doe_secret";
    let r = form(&gw, Some(("cli-client", "cli-made-secret-123")), body).await;
    assert_eq!(r.status(), 200);
    let r = form(&gw, Some(("cli-client", "cli-made-secret-124")), body).await;
    assert_eq!(error_of(r).await, (401, "invalid_client".into()));
}

#[tokio::test]
async fn a_dialect_that_maps_bad_credentials_to_401_still_challenges() {
    let gw = TokenGateway::start(
        "token_endpoints:\n  - path: /legacy/token\n    grant: password\n    client: web\n    invalid_credentials_status: 401\n",
    )
    .await;
    let r = client()
        .post(gw.url("/legacy/token"))
        .json(&serde_json::json!({"username": "john_doe", "password": "wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers().get("www-authenticate").is_some(),
        "every 401 carries WWW-Authenticate"
    );
}
