//! The optional signed internal JWT (`identity_headers.signed_jwt`): upstreams that verify
//! get a short-lived token signed with Tollgate's key, for an internal audience, which is
//! never accepted as an access token itself.

mod common;

use common::authn::{rsa_pair, spawn, AUDIENCE, ISSUER};
use common::{client, Upstream};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::json;

#[tokio::test]
async fn upstream_receives_a_verifiable_internal_jwt() {
    let up = Upstream::start().await;
    let yaml = format!(
        r#"
identity_headers:
  signed_jwt: X-Identity-Token
routes:
  - {{ name: api, path: /api, upstream: "{u}", auth: required }}
  - {{ name: public, path: /public, upstream: "{u}" }}
"#,
        u = up.url()
    );
    let (gw, kit) = spawn(&yaml).await;
    let token = kit.token(json!({}));
    let resp = client()
        .get(gw.url("/api/x"))
        .bearer_auth(&token)
        .header("X-Identity-Token", "forged")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let internal = up.last().header("x-identity-token").unwrap().to_string();
    assert_ne!(internal, "forged");

    let mut v = Validation::new(Algorithm::RS256);
    v.set_issuer(&[ISSUER]);
    v.set_audience(&["tollgate-upstream"]);
    let key = DecodingKey::from_rsa_pem(rsa_pair().1.as_bytes()).unwrap();
    let claims = jsonwebtoken::decode::<serde_json::Value>(&internal, &key, &v)
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], "157");
    assert_eq!(claims["email"], "ann@example.com");
    assert_eq!(claims["alias"], "ann-at-desk");
    let exp = claims["exp"].as_u64().unwrap();
    assert!(exp <= common::authn::now() + 120, "short-lived");

    // It is not an access token: its audience is not ours.
    assert_ne!(claims["aud"], AUDIENCE);
    let resp = client()
        .get(gw.url("/api/x"))
        .bearer_auth(&internal)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // A public route strips a spoofed copy and adds none.
    let resp = client()
        .get(gw.url("/public"))
        .header("X-Identity-Token", "forged")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.last().header("x-identity-token"), None);
}
