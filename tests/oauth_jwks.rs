//! Issued tokens verify with a standard JWT library against the JWKS the gateway serves;
//! discovery documents; opaque access tokens.

mod common;

use common::oauth::{TokenGateway, BASIC_CLIENT};
use common::{client, Upstream};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, DecodingKey, Validation};
use serde_json::Value;

async fn jwks(gw: &TokenGateway) -> JwkSet {
    let resp = client()
        .get(gw.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// Verifies `token` the way a third-party resource server would.
fn verify_with_jwks(set: &JwkSet, token: &str) -> Value {
    let header = decode_header(token).unwrap();
    let kid = header.kid.expect("kid in every JWT header");
    let jwk = set.find(&kid).expect("kid published in the JWKS");
    let key = DecodingKey::from_jwk(jwk).unwrap();
    let mut v = Validation::new(header.alg);
    v.set_issuer(&["http://tollgate.test"]);
    v.set_audience(&["tollgate"]);
    decode::<Value>(token, &key, &v).expect("verifies").claims
}

#[tokio::test]
async fn rs256_tokens_verify_against_the_served_jwks() {
    let gw = TokenGateway::start("").await;
    let set = jwks(&gw).await;
    assert_eq!(set.keys.len(), 1);
    let body = gw.password_token("john_doe", "john_doe_secret").await;
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(
        decode_header(token).unwrap().alg,
        jsonwebtoken::Algorithm::RS256
    );
    let claims = verify_with_jwks(&set, token);
    let user = gw
        .store
        .user_by_username("john_doe")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claims["sub"], user.id.0.to_string());
    assert_eq!(claims["email"], "john_doe@domain.com");
    assert_eq!(claims["role"], "default");
    assert_eq!(claims["client_id"], BASIC_CLIENT.0);
    for k in ["iss", "aud", "exp", "iat", "jti", "scope"] {
        assert!(claims.get(k).is_some(), "claim {k}");
    }
}

#[tokio::test]
async fn es256_eddsa_and_hs512_keys_from_files() {
    for alg in ["ES256", "EdDSA", "HS512"] {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("signing.key");
        let bytes = match alg {
            "HS512" => "0123456789abcdef0123456789abcdef0123456789abcdef".to_string(),
            a => {
                let g = tollgate::keys::generate(match a {
                    "ES256" => tollgate::config::raw::SigningAlg::ES256,
                    _ => tollgate::config::raw::SigningAlg::EdDSA,
                })
                .unwrap();
                g.private_pem.to_string()
            }
        };
        std::fs::write(&key_file, bytes).unwrap();
        let gw = TokenGateway::start_with(
            &format!(
                "  signing:\n    alg: {alg}\n    key_file: {}\n",
                key_file.display()
            ),
            "",
        )
        .await;
        let body = gw.password_token("john_doe", "john_doe_secret").await;
        let token = body["access_token"].as_str().unwrap();
        let set = jwks(&gw).await;
        if alg == "HS512" {
            assert!(set.keys.is_empty(), "HMAC secrets are never published");
            assert_eq!(
                decode_header(token).unwrap().alg,
                jsonwebtoken::Algorithm::HS512
            );
        } else {
            let claims = verify_with_jwks(&set, token);
            assert_eq!(claims["email"], "john_doe@domain.com", "{alg}");
        }
        // The gateway accepts its own token on the users API either way.
        let resp = client()
            .get(gw.url("/api/v1/users/me"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{alg}");
    }
}

#[tokio::test]
async fn discovery_documents_point_at_the_endpoints() {
    let gw = TokenGateway::start("").await;
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let resp = client().get(gw.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let doc: Value = resp.json().await.unwrap();
        assert_eq!(doc["issuer"], "http://tollgate.test");
        assert_eq!(doc["token_endpoint"], "http://tollgate.test/oauth/token");
        assert_eq!(
            doc["jwks_uri"],
            "http://tollgate.test/.well-known/jwks.json"
        );
        assert_eq!(
            doc["revocation_endpoint"],
            "http://tollgate.test/oauth/revoke"
        );
        assert_eq!(
            doc["introspection_endpoint"],
            "http://tollgate.test/oauth/introspect"
        );
        assert!(doc["grant_types_supported"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == "client_credentials"));
    }
}

#[tokio::test]
async fn opaque_access_tokens_work_and_are_stored_hashed() {
    let up = Upstream::start().await;
    let gw = TokenGateway::start_with(
        "  access:\n    format: opaque\n",
        &format!(
            "routes:\n  - name: api\n    path: /api/orders\n    upstream: {}\n    auth: required\n",
            up.url()
        ),
    )
    .await;
    let body = gw.password_token("john_doe", "john_doe_secret").await;
    let token = body["access_token"].as_str().unwrap();
    assert!(!token.contains('.'), "opaque, not a JWT");
    let resp = client()
        .get(gw.url("/api/orders"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        up.last().header("x-user-email"),
        Some("john_doe@domain.com")
    );
    let db = std::fs::read(gw.dir.path().join("tollgate.db")).unwrap();
    let wal = std::fs::read(gw.dir.path().join("tollgate.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(!bytes.windows(token.len()).any(|w| w == token.as_bytes()));
    }
    let resp = client()
        .get(gw.url("/api/orders"))
        .bearer_auth("forged")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn forged_and_foreign_tokens_are_refused_on_required_routes() {
    let up = Upstream::start().await;
    let gw = TokenGateway::start(&format!(
        "routes:\n  - name: api\n    path: /api/orders\n    upstream: {}\n    auth: required\n",
        up.url()
    ))
    .await;
    let body = gw.password_token("john_doe", "john_doe_secret").await;
    let token = body["access_token"].as_str().unwrap().to_string();
    // Flip one character of the signature.
    let mut forged = token.clone().into_bytes();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let resp = client()
        .get(gw.url("/api/orders"))
        .bearer_auth(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = client()
        .get(gw.url("/api/orders"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
