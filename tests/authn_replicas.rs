//! Two gateway processes (the real binary) on one PostgreSQL database: a token revoked
//! on one replica stops working on the other within one second, although the other had
//! it cached. Skipped when TOLLGATE_TEST_POSTGRES_URL is unset.

mod common;

use std::time::{Duration, Instant};

use common::process::GatewayProcess;
use common::{bearer_status, client, Upstream};
use tollgate::config::raw::SigningAlg;

const CLIENT: (&str, &str) = ("replica-client", "replica-secret-0123456789abcdef");

async fn token(base: &str) -> String {
    let resp = client()
        .post(format!("{base}/oauth/token"))
        .basic_auth(CLIENT.0, Some(CLIENT.1))
        .form(&[
            ("grant_type", "password"),
            ("username", "replica-user"),
            ("password", "replica-password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_string()
}

async fn revoke(base: &str, token: &str) {
    let resp = client()
        .post(format!("{base}/oauth/revoke"))
        .basic_auth(CLIENT.0, Some(CLIENT.1))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

/// Polls `base` until the token is refused; returns how long that took (panics after 5 s).
async fn refused_after(base: &str, token: &str) -> Duration {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        if bearer_status(&format!("{}/api/x", base), token).await == 401 {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{base} still accepts the revoked token after 5 s");
}

async fn run(url: String, format: &str) {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key = tollgate::keys::generate(SigningAlg::RS256).unwrap();
    let key_path = dir.path().join("signing.pem");
    std::fs::write(&key_path, key.private_pem.as_bytes()).unwrap();
    let yaml = format!(
        r#"
listen: {{ http: 127.0.0.1:0, admin: 127.0.0.1:0 }}
store: {{ url: "{url}" }}
log: {{ access_log: false }}
tokens:
  issuer: http://tollgate.test
  audience: tollgate
  access: {{ format: {format} }}
  signing: {{ alg: RS256, key_file: "{key}" }}
routes:
  - {{ name: api, path: /api, upstream: "{u}", auth: required }}
"#,
        key = key_path.display(),
        u = up.url()
    );
    let config = dir.path().join("tollgate.yaml");
    std::fs::write(&config, yaml).unwrap();

    let a = GatewayProcess::start(&config, &[]);
    let store = tollgate::store::connect(&url).await.unwrap();
    let (user, email) = ("replica-user", "replica@example.com");
    common::seed::user(&*store, Some(user), email, "replica-password", "default").await;
    let grants = ["password", "refresh_token"];
    common::seed::client(&*store, CLIENT.0, Some(CLIENT.1), &grants, &[]).await;
    let b = GatewayProcess::start(&config, &[]);

    let t = token(&a.http).await;
    for base in [&a.http, &b.http, &a.http, &b.http] {
        assert_eq!(
            bearer_status(&format!("{}/api/x", base), &t).await,
            200,
            "{base} accepts the token (and caches it)"
        );
    }
    revoke(&a.http, &t).await;
    assert_eq!(
        bearer_status(&format!("{}/api/x", &a.http), &t).await,
        401,
        "the revoking replica refuses at once"
    );
    let took = refused_after(&b.http, &t).await;
    assert!(
        took < Duration::from_secs(1),
        "the other replica took {took:?}"
    );
    // A fresh token still works on both.
    let t2 = token(&b.http).await;
    assert_eq!(bearer_status(&format!("{}/api/x", &a.http), &t2).await, 200);
    assert_eq!(bearer_status(&format!("{}/api/x", &b.http), &t2).await, 200);
}

/// Runs the scenario in a database of its own.
async fn with_database(format: &'static str) {
    common::pg::with_database("tollgate_authn", |url| run(url, format)).await;
}

#[tokio::test]
async fn jwt_revoked_on_one_replica_is_refused_by_the_other_within_a_second() {
    with_database("jwt").await;
}

#[tokio::test]
async fn opaque_token_revoked_on_one_replica_is_refused_by_the_other_within_a_second() {
    with_database("opaque").await;
}
