//! Foreign JWTs (`jwt_issuers`): verified locally against the issuer's JWKS, fetched and
//! cached, refetched on an unknown `kid` at most once per `refetch_interval`.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::authn::{claims, now, other_rsa_pair, sign, spawn};
use common::idp::Idp;
use common::{bearer_status, wait_until, TestGateway, Upstream};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

const FOREIGN: &str = "https://idp.example.test/";

fn jwk(kid: &str) -> serde_json::Value {
    common::authn::other_rsa_jwk(kid)
}

fn foreign_token(kid: &str, overrides: serde_json::Value) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid.into());
    let mut c = claims(json!({"iss": FOREIGN, "aud": "my-api", "sub": "ext-1"}));
    for (k, v) in overrides.as_object().unwrap() {
        c[k] = v.clone();
    }
    sign(
        &h,
        &c,
        &EncodingKey::from_rsa_pem(other_rsa_pair().0.as_bytes()).unwrap(),
    )
}

async fn setup(interval: &str) -> (TestGateway, Upstream, Idp) {
    let up = Upstream::start().await;
    let idp = Idp::start().await;
    *idp.jwks.lock().unwrap() = json!({"keys": [jwk("k1")]});
    let yaml = format!(
        r#"
jwt_issuers:
  - issuer: "{FOREIGN}"
    jwks_url: {jwks}
    audience: my-api
    refetch_interval: {interval}
routes:
  - {{ name: api, path: /api, upstream: "{u}", auth: required }}
"#,
        jwks = idp.jwks_url(),
        u = up.url()
    );
    let (gw, _kit) = spawn(&yaml).await;
    (gw, up, idp)
}

#[tokio::test]
async fn foreign_token_verified_against_fetched_jwks() {
    let (gw, up, idp) = setup("30s").await;
    assert_eq!(
        bearer_status(&gw.url("/api/x"), &foreign_token("k1", json!({}))).await,
        200
    );
    assert_eq!(up.last().header("x-user-id"), Some("ext-1"));
    assert_eq!(
        bearer_status(&gw.url("/api/x"), &foreign_token("k1", json!({}))).await,
        200
    );
    assert_eq!(
        idp.jwks_fetches.load(Ordering::SeqCst),
        1,
        "the JWKS is cached"
    );
    // The foreign issuer's audience and expiry are enforced.
    assert_eq!(
        bearer_status(
            &gw.url("/api/x"),
            &foreign_token("k1", json!({"aud": "tollgate"}))
        )
        .await,
        401
    );
    assert_eq!(
        bearer_status(
            &gw.url("/api/x"),
            &foreign_token("k1", json!({"exp": now() - 120}))
        )
        .await,
        401
    );
    // A token claiming our own issuer but signed by the foreign key is refused.
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("k1".into());
    let spoof = sign(
        &h,
        &claims(json!({})),
        &EncodingKey::from_rsa_pem(other_rsa_pair().0.as_bytes()).unwrap(),
    );
    assert_eq!(bearer_status(&gw.url("/api/x"), &spoof).await, 401);
}

#[tokio::test]
async fn unknown_kid_refetches_at_most_once_per_interval() {
    let (gw, _up, idp) = setup("1s").await;
    assert_eq!(
        bearer_status(&gw.url("/api/x"), &foreign_token("k1", json!({}))).await,
        200
    );
    assert_eq!(idp.jwks_fetches.load(Ordering::SeqCst), 1);
    // The issuer rotates to k2. Within the interval, unknown kids do not refetch, however
    // many arrive.
    *idp.jwks.lock().unwrap() = json!({"keys": [jwk("k1"), jwk("k2")]});
    for i in 0..20 {
        assert_eq!(
            bearer_status(
                &gw.url("/api/x"),
                &foreign_token(&format!("random-{i}"), json!({}))
            )
            .await,
            401
        );
    }
    assert_eq!(idp.jwks_fetches.load(Ordering::SeqCst), 1);
    // Once the interval has passed, one unknown kid triggers one refetch and k2 works.
    wait_until(
        Duration::from_secs(5),
        "k2 to be accepted after a refetch",
        || async { bearer_status(&gw.url("/api/x"), &foreign_token("k2", json!({}))).await == 200 },
    )
    .await;
    assert_eq!(idp.jwks_fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn unreachable_jwks_is_503_not_200() {
    let up = Upstream::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let yaml = format!(
        r#"
jwt_issuers:
  - {{ issuer: "{FOREIGN}", jwks_url: "http://{addr}/jwks.json", audience: my-api }}
routes:
  - {{ name: api, path: /api, upstream: "{u}", auth: required }}
"#,
        u = up.url()
    );
    let (gw, _kit) = spawn(&yaml).await;
    assert_eq!(
        bearer_status(&gw.url("/api/x"), &foreign_token("k1", json!({}))).await,
        503
    );
    // Within the refetch interval the keys are still unknown: 503 again, not 401.
    assert_eq!(
        bearer_status(&gw.url("/api/x"), &foreign_token("k1", json!({}))).await,
        503
    );
    assert!(up.requests().is_empty());
}
