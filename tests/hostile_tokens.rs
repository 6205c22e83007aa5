//! Hostile bearer tokens against a `required` route: every forgery, confusion and malformed
//! shape an attacker tries is a 401 (never a 5xx, never a pass), nothing reaches the
//! upstream, and no token header makes Tollgate fetch anything.

mod common;

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::authn::{b64, claims, now, rsa_pair, sign, spawn, Kit};
use common::idp::Idp;
use common::{client, TestGateway, Upstream};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const FOREIGN: &str = "https://idp.hostile.test/";

async fn setup() -> (TestGateway, Kit, Upstream, Idp) {
    let up = Upstream::start().await;
    let idp = Idp::start().await;
    *idp.jwks.lock().unwrap() = json!({"keys": [foreign_jwk("f1")]});
    let yaml = format!(
        r#"
jwt_issuers:
  - issuer: "{FOREIGN}"
    jwks_url: {jwks}
    audience: my-api
    refetch_interval: 1h
routes:
  - {{ name: api, path: /api, upstream: "{u}", auth: required }}
"#,
        jwks = idp.jwks_url(),
        u = up.url()
    );
    let (gw, kit) = spawn(&yaml).await;
    (gw, kit, up, idp)
}

fn foreign_jwk(kid: &str) -> Value {
    common::authn::other_rsa_jwk(kid)
}

fn foreign_token(overrides: Value) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("f1".into());
    let mut c = claims(json!({"iss": FOREIGN, "aud": "my-api", "sub": "ext-1"}));
    for (k, v) in overrides.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    sign(
        &h,
        &c,
        &EncodingKey::from_rsa_pem(common::authn::other_rsa_pair().0.as_bytes()).unwrap(),
    )
}

/// Signs raw header and claims JSON with the gateway's own key, bypassing the encoder's
/// typing, so claims of the wrong JSON type reach the gateway as an attacker would send them.
fn own_raw(header: &Value, claims_json: &str) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims_json.as_bytes())
    );
    let key = EncodingKey::from_rsa_pem(rsa_pair().0.as_bytes()).unwrap();
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::RS256).unwrap();
    format!("{input}.{sig}")
}

async fn status_with(gw: &TestGateway, authorization: &[u8]) -> u16 {
    client()
        .get(gw.url("/api/x"))
        .header(
            "authorization",
            reqwest::header::HeaderValue::from_bytes(authorization).unwrap(),
        )
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn refused(gw: &TestGateway, token: &str, what: &str) {
    let s = status_with(gw, format!("Bearer {token}").as_bytes()).await;
    assert_eq!(s, 401, "{what}: expected 401, got {s}");
}

#[tokio::test]
async fn alg_none_in_every_spelling_and_key_confusions() {
    let (gw, kit, up, _idp) = setup().await;
    let payload = b64(claims(json!({})).to_string().as_bytes());
    for alg in ["none", "None", "NONE", "nOnE", "", "null"] {
        let h = b64(json!({"alg": alg, "kid": kit.kid(), "typ": "at+jwt"})
            .to_string()
            .as_bytes());
        refused(&gw, &format!("{h}.{payload}."), &format!("alg {alg:?}")).await;
        refused(
            &gw,
            &format!("{h}.{payload}"),
            &format!("alg {alg:?}, 2 parts"),
        )
        .await;
        refused(
            &gw,
            &format!("{h}.{payload}.c2ln"),
            &format!("alg {alg:?} with a signature"),
        )
        .await;
    }
    let h = b64(json!({"kid": kit.kid()}).to_string().as_bytes());
    refused(&gw, &format!("{h}.{payload}."), "no alg at all").await;

    // HS256/HS512 keyed with the RSA public key (PEM and DER bytes), under our kid.
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let confused = sign(
            &kit.header(alg),
            &claims(json!({})),
            &EncodingKey::from_secret(rsa_pair().1.as_bytes()),
        );
        refused(&gw, &confused, &format!("{alg:?} with the public key")).await;
    }

    // ES256 under our kid with the all-zero signature (r = s = 0, "psychic signatures"),
    // and PS256 (another RSA padding) under our RS256 kid.
    let es = b64(json!({"alg": "ES256", "kid": kit.kid(), "typ": "at+jwt"})
        .to_string()
        .as_bytes());
    refused(
        &gw,
        &format!("{es}.{payload}.{}", b64(&[0u8; 64])),
        "ES256 r=s=0",
    )
    .await;
    let ps = own_raw(
        &json!({"alg": "PS256", "kid": kit.kid(), "typ": "at+jwt"}),
        &claims(json!({})).to_string(),
    );
    refused(&gw, &ps, "PS256 header over an RS256 signature").await;
    assert!(up.requests().is_empty(), "no forged token reached upstream");
}

#[tokio::test]
async fn hostile_kids_and_key_url_headers() {
    let (gw, kit, up, idp) = setup().await;
    let key = EncodingKey::from_rsa_pem(rsa_pair().0.as_bytes()).unwrap();
    let fetches_before = idp.jwks_fetches.load(Ordering::SeqCst);
    for kid in [
        "no-such-kid".to_string(),
        "../../../../etc/passwd".to_string(),
        "/dev/zero".to_string(),
        "' OR '1'='1' --".to_string(),
        "\"; DROP TABLE users; --".to_string(),
        "k".repeat(10 * 1024),
        "\u{0}".to_string(),
    ] {
        let mut h = kit.header(Algorithm::RS256);
        h.kid = Some(kid.clone());
        refused(
            &gw,
            &sign(&h, &claims(json!({})), &key),
            &format!("kid {:?}", &kid[..kid.len().min(20)]),
        )
        .await;
    }

    // Key-location headers point at a listener the test owns; the gateway never calls it,
    // and a token signed by a key only those headers name is refused.
    let trap = TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let trap_url = format!("http://{}/jwks.json", trap.local_addr().unwrap());
    let other = EncodingKey::from_rsa_pem(common::authn::other_rsa_pair().0.as_bytes()).unwrap();
    let mut h = kit.header(Algorithm::RS256);
    h.jku = Some(trap_url.clone());
    h.x5u = Some(trap_url.clone());
    h.jwk = Some(serde_json::from_value(foreign_jwk(&kit.kid())).unwrap());
    h.x5c = Some(vec!["MIIB".into()]);
    refused(
        &gw,
        &sign(&h, &claims(json!({})), &other),
        "signed by a key named only in jku/jwk/x5u",
    )
    .await;
    // With the right key, those headers are ignored, not trusted and not fetched.
    let ok = sign(&h, &claims(json!({})), &key);
    assert_eq!(
        status_with(&gw, format!("Bearer {ok}").as_bytes()).await,
        200
    );
    assert!(
        trap.accept().is_err(),
        "the gateway connected to a URL from a token header"
    );
    assert_eq!(
        idp.jwks_fetches.load(Ordering::SeqCst),
        fetches_before,
        "own tokens never fetch a JWKS"
    );
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn registered_claims_of_the_wrong_type_or_range_are_refused() {
    let (gw, kit, up, _idp) = setup().await;
    let header = json!({"alg": "RS256", "kid": kit.kid(), "typ": "at+jwt"});
    let n = now();
    let good = claims(json!({}));
    // Sanity: the raw signer makes tokens the gateway accepts.
    assert_eq!(
        status_with(
            &gw,
            format!("Bearer {}", own_raw(&header, &good.to_string())).as_bytes()
        )
        .await,
        200
    );
    let exp_later = n + 300;
    let cases: Vec<(&str, String)> = vec![
        ("exp string", format!("\"{exp_later}\"")),
        ("exp float", format!("{exp_later}.5")),
        ("exp negative", "-1".into()),
        ("exp absurd", "1e300".into()),
        ("exp beyond u64", "184467440737095516150".into()),
        ("exp bool", "true".into()),
        ("exp object", "{\"n\":1}".into()),
        ("exp array", format!("[{exp_later}]")),
        ("exp null", "null".into()),
    ];
    for (what, exp) in &cases {
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove("exp");
        let text = c.to_string();
        let text = format!("{},\"exp\":{exp}}}", &text[..text.len() - 1]);
        refused(&gw, &own_raw(&header, &text), what).await;
    }
    for (what, nbf) in [
        ("nbf string", format!("\"{}\"", n - 10)),
        ("nbf float", format!("{}.5", n - 10)),
        ("nbf in the future", format!("{}", n + 3600)),
        ("nbf object", "{}".into()),
    ] {
        let text = good.to_string();
        let text = format!("{},\"nbf\":{nbf}}}", &text[..text.len() - 1]);
        refused(&gw, &own_raw(&header, &text), what).await;
    }
    for (what, iat) in [
        ("iat string", format!("\"{n}\"")),
        ("iat object", "{}".into()),
    ] {
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove("iat");
        let text = c.to_string();
        let text = format!("{},\"iat\":{iat}}}", &text[..text.len() - 1]);
        refused(&gw, &own_raw(&header, &text), what).await;
    }

    // Foreign JWTs, through the encoder (which keeps whatever JSON it is given).
    for (what, over) in [
        ("foreign exp string", json!({"exp": exp_later.to_string()})),
        ("foreign exp float", json!({"exp": exp_later as f64 + 0.5})),
        ("foreign exp negative", json!({"exp": -1})),
        ("foreign exp absurd", json!({"exp": 1e300})),
        ("foreign nbf string", json!({"nbf": (n - 10).to_string()})),
        ("foreign nbf future", json!({"nbf": n + 3600})),
        ("foreign iat string", json!({"iat": n.to_string()})),
        ("foreign no exp", json!({"exp": null})),
        ("foreign wrong aud", json!({"aud": "other-api"})),
        (
            "foreign wrong iss",
            json!({"iss": "https://idp.evil.test/"}),
        ),
    ] {
        refused(&gw, &foreign_token(over), what).await;
    }
    assert_eq!(
        status_with(
            &gw,
            format!("Bearer {}", foreign_token(json!({}))).as_bytes()
        )
        .await,
        200,
        "a well-formed foreign token passes"
    );
    assert_eq!(up.requests().len(), 2, "only the two good tokens passed");
}

#[tokio::test]
async fn malformed_token_shapes_are_401_never_5xx() {
    let (gw, kit, up, _idp) = setup().await;
    let good = kit.token(json!({}));
    let parts: Vec<&str> = good.split('.').collect();
    let nested = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", good.as_bytes()[..good.len() - 10].to_vec()),
        ("header only", parts[0].as_bytes().to_vec()),
        ("four segments", format!("{good}.e30").into_bytes()),
        ("five segments", format!("{good}.e30.e30").into_bytes()),
        (
            "64 KiB",
            format!("{}.{}.{}", parts[0], "A".repeat(64 * 1024), parts[2]).into_bytes(),
        ),
        (
            "not base64",
            format!("{}.!!!@@@.{}", parts[0], parts[2]).into_bytes(),
        ),
        (
            "padded base64",
            format!("{}==.{}.{}", parts[0], parts[1], parts[2]).into_bytes(),
        ),
        ("non-UTF-8 bytes", {
            let mut v = b"eyJ\xff\xfe.".to_vec();
            v.extend_from_slice(parts[1].as_bytes());
            v
        }),
        (
            "payload not JSON",
            format!("{}.{}.{}", parts[0], b64(b"\xff\x00garbage"), parts[2]).into_bytes(),
        ),
        (
            "deeply nested JSON",
            format!("{}.{}.{}", parts[0], b64(nested.as_bytes()), parts[2]).into_bytes(),
        ),
        (
            "deeply nested header",
            format!("{}.{}.{}", b64(nested.as_bytes()), parts[1], parts[2]).into_bytes(),
        ),
        ("empty", Vec::new()),
        ("dots only", b"..".to_vec()),
    ];
    for (what, token) in cases {
        let mut value = b"Bearer ".to_vec();
        value.extend_from_slice(&token);
        let s = status_with(&gw, &value).await;
        // A 64 KiB header may also be refused before authentication, as too large.
        assert!(
            s == 401 || (what == "64 KiB" && s == 431),
            "{what}: expected 401, got {s}"
        );
    }
    for scheme in [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer  ",
        "bearer",
        "Token abc",
    ] {
        let s = status_with(&gw, scheme.as_bytes()).await;
        assert_eq!(s, 401, "{scheme:?}");
    }
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn other_token_types_are_not_access_tokens() {
    let (gw, kit, up, _idp) = setup().await;
    let key = EncodingKey::from_rsa_pem(rsa_pair().0.as_bytes()).unwrap();
    for typ in [
        "JWT+id",
        "id_token",
        "refresh+jwt",
        "logout+jwt",
        "dpop+jwt",
    ] {
        let mut h = kit.header(Algorithm::RS256);
        h.typ = Some(typ.into());
        refused(
            &gw,
            &sign(&h, &claims(json!({})), &key),
            &format!("typ {typ}"),
        )
        .await;
    }
    // Revoked.
    let jti = "hostile-revoked";
    let t = kit.token(json!({"jti": jti}));
    assert_eq!(
        status_with(&gw, format!("Bearer {t}").as_bytes()).await,
        200
    );
    kit.revoke(jti);
    refused(&gw, &t, "revoked").await;
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn random_kid_flood_does_not_refetch_without_bound() {
    let (gw, _kit, up, idp) = setup().await;
    let before = idp.jwks_fetches.load(Ordering::SeqCst);
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for t in 0..8 {
        let url = gw.url("/api/x");
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let c = client();
            for i in 0..40 {
                let mut h = Header::new(Algorithm::RS256);
                h.kid = Some(format!("flood-{t}-{i}-{}", uuid::Uuid::new_v4()));
                let token = sign(
                    &h,
                    &claims(json!({"iss": FOREIGN, "aud": "my-api"})),
                    &EncodingKey::from_rsa_pem(common::authn::other_rsa_pair().0.as_bytes())
                        .unwrap(),
                );
                let s = c
                    .get(&url)
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap()
                    .status();
                assert_eq!(s, 401);
                done.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(done.load(Ordering::SeqCst), 320);
    let fetched = idp.jwks_fetches.load(Ordering::SeqCst) - before;
    assert!(
        fetched <= 1,
        "320 random kids caused {fetched} JWKS fetches (refetch_interval is 1h)"
    );
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn refresh_and_access_tokens_are_not_interchangeable() {
    let gw = common::oauth::TokenGateway::start(&format!(
        "routes:\n  - {{ name: api, path: /api, upstream: \"{}\", auth: required }}\n",
        Upstream::start().await.url()
    ))
    .await;
    gw.user(
        "hostile",
        "hostile@example.com",
        "correct horse battery",
        "default",
    )
    .await;
    let tok = gw.password_token("hostile", "correct horse battery").await;
    let access = tok["access_token"].as_str().unwrap().to_string();
    let refresh = tok["refresh_token"].as_str().unwrap().to_string();
    let s = client()
        .get(gw.url("/api/x"))
        .bearer_auth(&refresh)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s, 401, "a refresh token is not an access token");
    let (s, body) = gw.refresh(&access).await;
    assert_eq!(s, 400, "an access token is not a refresh token: {body}");
    assert_eq!(body["error"], "invalid_grant");
}
