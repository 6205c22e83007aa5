//! Agents and sender-constrained tokens over real sockets: RFC 9728 protected resource
//! metadata and its challenge, RFC 7591 registration, RFC 8707 resource indicators, DPoP
//! (RFC 9449) at the token endpoint and on routes, and the hostile cases of each.

mod common;

use common::dpop::DpopKey;
use common::oauth::{TokenGateway, RESOURCE_SERVER};
use common::Upstream;
use serde_json::{json, Value};

const MCP: &str = "https://api.test/mcp";
const OTHER: &str = "https://api.test/other";

async fn gateway(extra: &str) -> (TokenGateway, Upstream) {
    gateway_on(None, extra).await
}

/// As `gateway`, on the store at `store_url` (default: SQLite in the gateway's temp dir).
async fn gateway_on(store_url: Option<&str>, extra: &str) -> (TokenGateway, Upstream) {
    let up = Upstream::start().await;
    let tg = TokenGateway::start_on(store_url, "", &format!(
        "client_registration: open\nroutes:\n\
         - name: mcp\n  path: /mcp\n  upstream: {u}\n  auth: required\n  resource:\n    id: {MCP}\n    scopes_supported: [read]\n    documentation: https://example.com/docs\n\
         - name: other\n  path: /other\n  upstream: {u}\n  auth: required\n  audience: {OTHER}\n\
         - name: plain\n  path: /plain\n  upstream: {u}\n  auth: required\n\
         - name: dpop-only\n  path: /dpop-only\n  upstream: {u}\n  auth: required\n  sender_constraint: dpop\n{extra}",
        u = up.url()
    ))
    .await;
    (tg, up)
}

/// client_credentials as the resource server client, with `resource` and a DPoP proof
/// when given.
async fn cc_token(tg: &TokenGateway, resources: &[&str], proof: Option<String>) -> (u16, Value) {
    let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
    for r in resources {
        form.push(("resource", r));
    }
    let mut req = common::client()
        .post(tg.url("/oauth/token"))
        .basic_auth(RESOURCE_SERVER.0, Some(RESOURCE_SERVER.1))
        .form(&form);
    if let Some(p) = proof {
        req = req.header("DPoP", p);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

use common::jwt_claims as claims;

/// A client credentials token bound to `key` (a DPoP proof at the token endpoint).
async fn dpop_token(tg: &TokenGateway, key: &DpopKey) -> String {
    let (status, body) = cc_token(
        tg,
        &[],
        Some(key.proof("POST", &tg.url("/oauth/token"), None)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

async fn get(
    tg: &TokenGateway,
    path: &str,
    auth: Option<String>,
    dpop: Option<String>,
) -> reqwest::Response {
    let mut req = common::client().get(tg.url(path));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    if let Some(p) = dpop {
        req = req.header("DPoP", p);
    }
    req.send().await.unwrap()
}

fn www(resp: &reqwest::Response) -> Vec<String> {
    resp.headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_protected_resource_publishes_metadata_and_names_it_in_its_challenge() {
    let (tg, _up) = gateway("").await;
    let resp = get(&tg, "/mcp", None, None).await;
    assert_eq!(resp.status(), 401);
    let challenges = www(&resp);
    assert!(
        challenges.iter().any(|c| c.starts_with("Bearer ")
            && c.contains(
                r#"resource_metadata="https://api.test/.well-known/oauth-protected-resource/mcp""#
            )),
        "{challenges:?}"
    );
    // The metadata document, at the path-suffixed well-known URI.
    let doc: Value = common::client()
        .get(tg.url("/.well-known/oauth-protected-resource/mcp"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["resource"], MCP);
    assert_eq!(
        doc["authorization_servers"],
        json!(["http://tollgate.test"])
    );
    assert_eq!(doc["scopes_supported"], json!(["read"]));
    assert_eq!(doc["resource_documentation"], "https://example.com/docs");
    assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
    assert!(doc["dpop_signing_alg_values_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("ES256")));
    // No resource at a path: 404; a route without `resource` keeps the plain challenge.
    let resp = common::client()
        .get(tg.url("/.well-known/oauth-protected-resource/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let plain = get(&tg, "/plain", None, None).await;
    assert_eq!(www(&plain), vec![r#"Bearer realm="tollgate""#.to_string()]);
    // The authorization server says where to register and what DPoP it takes.
    let as_meta: Value = common::client()
        .get(tg.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        as_meta["registration_endpoint"],
        "http://tollgate.test/oauth/register"
    );
    assert!(as_meta["dpop_signing_alg_values_supported"].is_array());
    assert_eq!(as_meta["tls_client_certificate_bound_access_tokens"], true);
}

#[tokio::test]
async fn the_challenge_comes_through_forward_auth_too() {
    let (tg, _up) = gateway("forward_auth:\n  path: /auth/verify\n").await;
    let resp = common::client()
        .get(tg.url("/auth/verify"))
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-uri", "/mcp")
        .header("x-forwarded-host", "api.test")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(
        www(&resp).iter().any(|c| c.contains("resource_metadata=")),
        "{:?}",
        www(&resp)
    );
}

#[tokio::test]
async fn resource_indicators_set_the_audience_and_routes_refuse_other_audiences() {
    let (tg, up) = gateway("").await;
    let (status, body) = cc_token(&tg, &[MCP], None).await;
    assert_eq!(status, 200, "{body}");
    let mcp_token = body["access_token"].as_str().unwrap().to_string();
    assert_eq!(claims(&mcp_token)["aud"], MCP);
    let bearer = |t: &str| Some(format!("Bearer {t}"));
    assert_eq!(
        get(&tg, "/mcp", bearer(&mcp_token), None).await.status(),
        200
    );
    assert_eq!(up.last().header("x-user-id"), Some(RESOURCE_SERVER.0));
    // A token for resource A on resource B, and on a route that takes the gateway's own
    // audience: refused.
    let resp = get(&tg, "/other", bearer(&mcp_token), None).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(
        get(&tg, "/plain", bearer(&mcp_token), None).await.status(),
        401
    );
    // The gateway's own audience is not the resource's.
    let (_, plain) = cc_token(&tg, &[], None).await;
    let plain_token = plain["access_token"].as_str().unwrap();
    assert_eq!(claims(plain_token)["aud"], "tollgate");
    assert_eq!(
        get(&tg, "/plain", bearer(plain_token), None).await.status(),
        200
    );
    assert_eq!(
        get(&tg, "/mcp", bearer(plain_token), None).await.status(),
        401
    );
    // Two resources: an array, accepted at both.
    let (_, both) = cc_token(&tg, &[MCP, OTHER], None).await;
    let both_token = both["access_token"].as_str().unwrap();
    assert_eq!(claims(both_token)["aud"], json!([MCP, OTHER]));
    assert_eq!(
        get(&tg, "/mcp", bearer(both_token), None).await.status(),
        200
    );
    assert_eq!(
        get(&tg, "/other", bearer(both_token), None).await.status(),
        200
    );
    // A resource no route serves: invalid_target.
    let (status, body) = cc_token(&tg, &["https://elsewhere.test/"], None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target"))
    );
    // Introspection reports the audience.
    let intro: Value = common::client()
        .post(tg.url("/oauth/introspect"))
        .basic_auth(RESOURCE_SERVER.0, Some(RESOURCE_SERVER.1))
        .form(&[("token", mcp_token.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(intro["active"], true);
    assert_eq!(intro["aud"], MCP);
}

#[tokio::test]
async fn a_refresh_keeps_or_narrows_the_resources_never_widens_them() {
    let (tg, _up) = gateway("").await;
    let token = |form: Vec<(&'static str, String)>| {
        let url = tg.url("/oauth/token");
        async move {
            let resp = common::client()
                .post(url)
                .basic_auth(
                    common::oauth::BASIC_CLIENT.0,
                    Some(common::oauth::BASIC_CLIENT.1),
                )
                .form(&form)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let (s, first) = token(vec![
        ("grant_type", "password".into()),
        ("username", "user_1".into()),
        ("password", "password".into()),
        ("resource", MCP.into()),
        ("resource", OTHER.into()),
    ])
    .await;
    assert_eq!(s, 200, "{first}");
    let refresh = first["refresh_token"].as_str().unwrap().to_string();
    // Narrowed to one.
    let (s, narrowed) = token(vec![
        ("grant_type", "refresh_token".into()),
        ("refresh_token", refresh),
        ("resource", OTHER.into()),
    ])
    .await;
    assert_eq!(s, 200, "{narrowed}");
    assert_eq!(
        claims(narrowed["access_token"].as_str().unwrap())["aud"],
        OTHER
    );
    // Kept when not named.
    let next = narrowed["refresh_token"].as_str().unwrap().to_string();
    let (s, kept) = token(vec![
        ("grant_type", "refresh_token".into()),
        ("refresh_token", next),
    ])
    .await;
    assert_eq!(s, 200, "{kept}");
    assert_eq!(
        claims(kept["access_token"].as_str().unwrap())["aud"],
        json!([MCP, OTHER])
    );
    // Widened to a resource the grant never had: refused.
    let (_, plain) = token(vec![
        ("grant_type", "password".into()),
        ("username", "user_1".into()),
        ("password", "password".into()),
        ("resource", MCP.into()),
    ])
    .await;
    let (s, wide) = token(vec![
        ("grant_type", "refresh_token".into()),
        (
            "refresh_token",
            plain["refresh_token"].as_str().unwrap().into(),
        ),
        ("resource", OTHER.into()),
    ])
    .await;
    assert_eq!((s, wide["error"].as_str()), (400, Some("invalid_target")));
}

#[tokio::test]
async fn dpop_binds_the_token_and_every_request_must_prove_the_key() {
    let (tg, up) = gateway("").await;
    let key = DpopKey::new();
    let token_url = tg.url("/oauth/token");
    let (status, body) = cc_token(&tg, &[], Some(key.proof("POST", &token_url, None))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    let token = body["access_token"].as_str().unwrap().to_string();
    assert_eq!(claims(&token)["cnf"]["jkt"], key.jkt());

    let url = tg.url("/plain");
    let dpop_auth = Some(format!("DPoP {token}"));
    let proof = key.proof("GET", &url, Some(&token));
    let resp = get(&tg, "/plain", dpop_auth.clone(), Some(proof.clone())).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(up.last().header("x-user-id"), Some(RESOURCE_SERVER.0));

    let refused = |resp: &reqwest::Response, code: &str| {
        assert_eq!(resp.status(), 401, "{code}");
        let c = www(resp);
        assert!(c.iter().any(|c| c.contains(code)), "{code}: {c:?}");
    };
    // The same proof again: replay.
    let resp = get(&tg, "/plain", dpop_auth.clone(), Some(proof)).await;
    refused(&resp, "invalid_dpop_proof");
    // A bound token sent as Bearer, with or without a proof.
    let resp = get(&tg, "/plain", Some(format!("Bearer {token}")), None).await;
    refused(&resp, "invalid_token");
    // No proof at all.
    let resp = get(&tg, "/plain", dpop_auth.clone(), None).await;
    refused(&resp, "invalid_dpop_proof");
    // A proof for another method, another URL, another token.
    for p in [
        key.proof("POST", &url, Some(&token)),
        key.proof("GET", &tg.url("/mcp"), Some(&token)),
        key.proof("GET", &url, Some("another-token")),
    ] {
        refused(
            &get(&tg, "/plain", dpop_auth.clone(), Some(p)).await,
            "invalid_dpop_proof",
        );
    }
    // A proof by another key.
    let thief = DpopKey::new();
    refused(
        &get(
            &tg,
            "/plain",
            dpop_auth.clone(),
            Some(thief.proof("GET", &url, Some(&token))),
        )
        .await,
        "invalid_dpop_proof",
    );
    // iat outside the window, either way; alg none; a private key in the header.
    let now = chrono::Utc::now().timestamp();
    let ath = {
        use base64::Engine;
        use sha2::Digest;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(token.as_bytes()))
    };
    for (header, iat) in [
        (
            json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.jwk}),
            now - 600,
        ),
        (
            json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.jwk}),
            now + 600,
        ),
        (
            json!({"typ": "dpop+jwt", "alg": "none", "jwk": key.jwk}),
            now,
        ),
        (
            json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": key.jwk}),
            now,
        ),
        (
            json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": {"kty": "EC", "crv": "P-256", "x": key.jwk["x"], "y": key.jwk["y"], "d": "AAAA"}}),
            now,
        ),
    ] {
        let p = key.sign(
            header,
            json!({"jti": uuid::Uuid::new_v4().to_string(), "htm": "GET", "htu": url, "iat": iat, "ath": ath}),
        );
        refused(
            &get(&tg, "/plain", dpop_auth.clone(), Some(p)).await,
            "invalid_dpop_proof",
        );
    }
    // Two DPoP headers.
    let resp = common::client()
        .get(&url)
        .header("authorization", format!("DPoP {token}"))
        .header("DPoP", key.proof("GET", &url, Some(&token)))
        .header("DPoP", key.proof("GET", &url, Some(&token)))
        .send()
        .await
        .unwrap();
    refused(&resp, "invalid_dpop_proof");
    // Introspection shows the binding.
    let intro: Value = common::client()
        .post(tg.url("/oauth/introspect"))
        .basic_auth(RESOURCE_SERVER.0, Some(RESOURCE_SERVER.1))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(intro["active"], true);
    assert_eq!(intro["cnf"]["jkt"], key.jkt());
    // A token endpoint proof replayed: refused there too.
    let p = key.proof("POST", &token_url, None);
    assert_eq!(cc_token(&tg, &[], Some(p.clone())).await.0, 200);
    let (status, body) = cc_token(&tg, &[], Some(p)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_dpop_proof"))
    );
}

#[tokio::test]
async fn a_dpop_route_refuses_bearer_tokens_and_says_so_in_the_dpop_scheme() {
    let (tg, _up) = gateway("").await;
    let (_, plain) = cc_token(&tg, &[], None).await;
    let bearer = plain["access_token"].as_str().unwrap();
    let resp = get(&tg, "/dpop-only", Some(format!("Bearer {bearer}")), None).await;
    assert_eq!(resp.status(), 401);
    let c = www(&resp);
    assert!(c.iter().all(|c| c.starts_with("DPoP ")), "{c:?}");
    assert!(c.iter().any(|c| c.contains("algs=")), "{c:?}");
    // The same route with a DPoP-bound token and its proof.
    let key = DpopKey::new();
    let token = &dpop_token(&tg, &key).await;
    let url = tg.url("/dpop-only");
    let resp = get(
        &tg,
        "/dpop-only",
        Some(format!("DPoP {token}")),
        Some(key.proof("GET", &url, Some(token))),
    )
    .await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn required_nonces_are_asked_for_and_then_accepted() {
    let (tg, _up) = gateway("dpop:\n  nonce: true\n").await;
    let key = DpopKey::new();
    let token_url = tg.url("/oauth/token");
    let (status, body) = cc_token(&tg, &[], Some(key.proof("POST", &token_url, None))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("use_dpop_nonce"))
    );
    // The nonce comes in DPoP-Nonce; a proof carrying it passes.
    let resp = common::client()
        .post(&token_url)
        .basic_auth(RESOURCE_SERVER.0, Some(RESOURCE_SERVER.1))
        .header("DPoP", key.proof("POST", &token_url, None))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    let nonce = resp.headers()["dpop-nonce"].to_str().unwrap().to_string();
    let p = key.sign(
        json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.jwk}),
        json!({"jti": "n-1", "htm": "POST", "htu": token_url, "iat": chrono::Utc::now().timestamp(), "nonce": nonce}),
    );
    let (status, body) = cc_token(&tg, &[], Some(p)).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_proof_used_on_one_replica_is_refused_on_another_sharing_redis() {
    let Ok(redis) = std::env::var("TOLLGATE_TEST_REDIS_URL") else {
        eprintln!("SKIP: TOLLGATE_TEST_REDIS_URL is not set");
        return;
    };
    let prefix = format!("tg-test-dpop-{}:", uuid::Uuid::new_v4());
    let shared = format!(
        "rate_limit_store:\n  url: {redis}\n  prefix: \"{prefix}\"\ndpop:\n  replay_store: redis\n"
    );
    // Both replicas on one store (and so one set of signing keys, generated beside it).
    // The store is named explicitly: `rate_limit_store` holds the word `store:`.
    let shared_dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}/tollgate.db", shared_dir.path().display());
    let (a, up) = gateway_on(Some(&store_url), &shared).await;
    // Replica B: the same store, keys and routes; its own process state.
    let b = common::spawn_gateway(&format!(
        "store:\n  url: {store_url}\ntokens:\n  issuer: http://tollgate.test\n  audience: tollgate\n{shared}\
         routes:\n- name: plain\n  path: /plain\n  upstream: {}\n  auth: required\n",
        up.url()
    ))
    .await;
    let key = DpopKey::new();
    let token = &dpop_token(&a, &key).await;
    // A load balancer sends both replicas the same Host: the proof names it.
    let host = "api.test";
    let proof = key.proof("GET", &format!("http://{host}/plain"), Some(token));
    let send = |base: String, proof: String| async move {
        common::client()
            .get(format!("{base}/plain"))
            .header("host", host)
            .header("authorization", format!("DPoP {token}"))
            .header("DPoP", proof)
            .send()
            .await
            .unwrap()
    };
    // Replica B accepts a fresh proof (it knows the key and the token)...
    let fresh = key.proof("GET", &format!("http://{host}/plain"), Some(token));
    assert_eq!(send(b.base.clone(), fresh).await.status(), 200);
    // ...and a proof first used on replica A is refused on B.
    assert_eq!(send(a.base.clone(), proof.clone()).await.status(), 200);
    let resp = send(b.base.clone(), proof).await;
    assert_eq!(resp.status(), 401);
    assert!(
        www(&resp).iter().any(|c| c.contains("invalid_dpop_proof")),
        "{:?}",
        www(&resp)
    );
}

#[tokio::test]
async fn registration_creates_public_clients_with_safe_redirects_only() {
    let (tg, _up) = gateway("").await;
    let register = |body: Value| {
        let url = tg.url("/oauth/register");
        async move {
            let resp = common::client().post(url).json(&body).send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let (s, c) = register(json!({
        "redirect_uris": ["http://127.0.0.1:53123/callback", "https://app.example.com/cb"],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "client_name": "agent",
        "scope": "openid read"
    }))
    .await;
    assert_eq!(s, 201, "{c}");
    let id = c["client_id"].as_str().unwrap();
    assert_eq!(c["token_endpoint_auth_method"], "none");
    assert!(c.get("client_secret").is_none());
    let stored = tg.store.client_by_id(id).await.unwrap().unwrap();
    assert!(
        !stored.first_party,
        "registered clients are asked for consent"
    );
    assert_eq!(stored.grants, ["authorization_code", "refresh_token"]);
    assert_ne!(
        stored.registration_token_hash.as_deref(),
        c["registration_access_token"].as_str()
    );
    // RFC 7592 read with the registration access token; refused without it.
    let read = common::client()
        .get(
            c["registration_client_uri"]
                .as_str()
                .unwrap()
                .replace("http://tollgate.test", &tg.base),
        )
        .bearer_auth(c["registration_access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let read = common::client()
        .get(tg.url(&format!("/oauth/register/{id}")))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 401);
    // A confidential registration gets a secret.
    let (s, c) = register(json!({"redirect_uris": ["https://app.example.com/cb"]})).await;
    assert_eq!(s, 201, "{c}");
    assert!(c["client_secret"].is_string());
    // Hostile redirect URIs and grants.
    for uri in [
        "javascript:alert(1)",
        "https://app.example.com/cb#frag",
        "http://app.example.com/cb",
        "https://user:pw@app.example.com/cb",
        "https://*.example.com/cb",
    ] {
        let (s, e) =
            register(json!({"redirect_uris": [uri], "token_endpoint_auth_method": "none"})).await;
        assert_eq!(
            (s, e["error"].as_str()),
            (400, Some("invalid_redirect_uri")),
            "{uri}"
        );
    }
    let (s, e) = register(
        json!({"redirect_uris": ["https://a.example.com/cb"], "grant_types": ["password"]}),
    )
    .await;
    assert_eq!(
        (s, e["error"].as_str()),
        (400, Some("invalid_client_metadata"))
    );
    let (s, e) = register(json!({"redirect_uris": ["https://a.example.com/cb"], "grant_types": ["client_credentials"]})).await;
    assert_eq!(
        (s, e["error"].as_str()),
        (400, Some("invalid_client_metadata"))
    );
}

#[tokio::test]
async fn registration_is_closed_by_default_and_can_demand_an_initial_token() {
    let tg = TokenGateway::start("").await;
    let resp = common::client()
        .post(tg.url("/oauth/register"))
        .json(&json!({"redirect_uris": ["https://a.example.com/cb"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let meta: Value = common::client()
        .get(tg.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(meta.get("registration_endpoint").is_none());

    std::env::set_var("TG_TEST_REGISTRATION_TOKEN", "initial-token-0123456789");
    let tg = TokenGateway::start(
        "client_registration: initial_token\nclient_registration_token_env: TG_TEST_REGISTRATION_TOKEN\n",
    )
    .await;
    let body = json!({"redirect_uris": ["https://a.example.com/cb"], "token_endpoint_auth_method": "none"});
    let resp = common::client()
        .post(tg.url("/oauth/register"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = common::client()
        .post(tg.url("/oauth/register"))
        .bearer_auth("initial-token-0123456789")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
}

#[tokio::test]
async fn registrations_are_rate_limited_per_address() {
    let (tg, _up) = gateway("").await;
    let body = json!({"redirect_uris": ["https://a.example.com/cb"], "token_endpoint_auth_method": "none"});
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let resp = common::client()
            .post(tg.url("/oauth/register"))
            .json(&body)
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(*statuses.last().unwrap(), 429);
}

/// A gateway with an HTTPS listener that asks for client certificates (optional), and a
/// client for it holding `cert`.
struct Mtls {
    tg: TokenGateway,
    server_ca: common::pki::Ca,
    clients: common::pki::Ca,
    _dir: tempfile::TempDir,
    _up: Upstream,
}

impl Mtls {
    async fn start() -> Mtls {
        let dir = tempfile::tempdir().unwrap();
        let server_ca = common::pki::Ca::new("gateway CA");
        let clients = common::pki::Ca::new("clients CA");
        let (cert, key) = server_ca.server().write(dir.path(), "tls");
        let client_ca = clients.write(dir.path(), "clients");
        let up = Upstream::start().await;
        let tg = TokenGateway::start(&format!(
            "listen:\n  http: 127.0.0.1:0\n  https: 127.0.0.1:0\n  admin: 127.0.0.1:0\n\
             tls:\n  cert: {}\n  key: {}\n  client_ca: {}\n  client_auth: optional\n\
             routes:\n- name: plain\n  path: /plain\n  upstream: {u}\n  auth: required\n\
             - name: mtls-only\n  path: /mtls-only\n  upstream: {u}\n  auth: required\n  sender_constraint: mtls\n",
            cert.display(),
            key.display(),
            client_ca.display(),
            u = up.url()
        ))
        .await;
        Mtls {
            tg,
            server_ca,
            clients,
            _dir: dir,
            _up: up,
        }
    }

    fn client(&self, cert: Option<&common::pki::Issued>) -> reqwest::Client {
        let cfg = common::pki::client_config(&self.server_ca, cert, &[b"http/1.1"]);
        reqwest::Client::builder()
            .use_preconfigured_tls(std::sync::Arc::unwrap_or_clone(cfg))
            .no_proxy()
            .build()
            .unwrap()
    }

    fn https(&self, path: &str) -> String {
        format!("https://{}{path}", self.tg.gateway.https_addr.unwrap())
    }

    async fn token(&self, cert: Option<&common::pki::Issued>) -> Value {
        self.client(cert)
            .post(self.https("/oauth/token"))
            .basic_auth(RESOURCE_SERVER.0, Some(RESOURCE_SERVER.1))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn a_token_issued_over_mtls_is_bound_to_that_certificate() {
    use sha2::Digest;
    let m = Mtls::start().await;
    let alice = m.clients.client("alice");
    let mallory = m.clients.client("mallory");
    let body = m.token(Some(&alice)).await;
    let token = body["access_token"].as_str().unwrap().to_string();
    let thumb = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(alice.der.as_ref()))
    };
    assert_eq!(claims(&token)["cnf"]["x5t#S256"], thumb.as_str());
    assert_eq!(body["token_type"], "bearer", "RFC 8705 tokens stay Bearer");
    let call = |cert: Option<&common::pki::Issued>, path: &str| {
        let req = m.client(cert).get(m.https(path)).bearer_auth(&token);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(call(Some(&alice), "/plain").await, 200);
    assert_eq!(call(Some(&alice), "/mtls-only").await, 200);
    // Another certificate, or none (also over plain HTTP): refused.
    assert_eq!(call(Some(&mallory), "/plain").await, 401);
    assert_eq!(call(None, "/plain").await, 401);
    let resp = common::client()
        .get(m.tg.url("/plain"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // An unbound token (issued without a certificate) on an mtls route: refused.
    let unbound = m.token(None).await;
    let unbound = unbound["access_token"].as_str().unwrap();
    assert!(claims(unbound).get("cnf").is_none());
    let status = m
        .client(Some(&alice))
        .get(m.https("/mtls-only"))
        .bearer_auth(unbound)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_sender_constraint_holds_through_forward_auth() {
    // A client's own x-forwarded-client-cert (not a trusted proxy's) proves nothing, and
    // a bearer token does not pass a dpop route through forward-auth either.
    let (tg, _up) = gateway(
        "forward_auth:\n  path: /auth/verify\n  client_cert_header: x-forwarded-client-cert\ntrusted_proxies: [10.0.0.1]\n",
    )
    .await;
    let (_, plain) = cc_token(&tg, &[], None).await;
    let token = plain["access_token"].as_str().unwrap();
    let resp = common::client()
        .get(tg.url("/auth/verify"))
        .bearer_auth(token)
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-uri", "/dpop-only")
        .header("x-forwarded-host", "api.test")
        .header("x-forwarded-client-cert", "Hash=00ff")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn clients_authenticate_with_their_certificate_instead_of_a_secret() {
    let m = Mtls::start().await;
    let alice = m.clients.client("alice");
    let mallory = m.clients.client("mallory");
    let alice_cert = tollgate::http::ClientCert::from_pem_or_base64(&alice.cert_pem).unwrap();
    for (id, auth) in [
        (
            "by-subject",
            tollgate::store::TlsClientAuth::SubjectDn(alice_cert.subject.clone()),
        ),
        (
            "self-signed",
            tollgate::store::TlsClientAuth::SelfSigned({
                use base64::Engine;
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(alice_cert.sha256)
            }),
        ),
    ] {
        m.tg.store
            .create_client(tollgate::store::Client {
                id: id.into(),
                grants: vec!["client_credentials".into()],
                scopes: vec!["read".into()],
                tls_auth: Some(auth),
                ..Default::default()
            })
            .await
            .unwrap();
        let ask = |cert: Option<&common::pki::Issued>, secret: Option<&str>| {
            let mut form = vec![("grant_type", "client_credentials"), ("client_id", id)];
            if let Some(s) = secret {
                form.push(("client_secret", s));
            }
            let req = m.client(cert).post(m.https("/oauth/token")).form(&form);
            async move {
                let resp = req.send().await.unwrap();
                (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
            }
        };
        let (status, body) = ask(Some(&alice), None).await;
        assert_eq!(status, 200, "{id}: {body}");
        // Issued over that connection: bound to the certificate too.
        assert!(claims(body["access_token"].as_str().unwrap())["cnf"]["x5t#S256"].is_string());
        for (cert, secret) in [
            (Some(&mallory), None),
            (None, None),
            (Some(&alice), Some("a-guess")),
        ] {
            let (status, body) = ask(cert, secret).await;
            assert_eq!(
                (status, body["error"].as_str()),
                (401, Some("invalid_client")),
                "{id}"
            );
        }
    }
}

#[tokio::test]
async fn a_public_clients_refresh_token_is_bound_to_its_dpop_key() {
    let (tg, _up) = gateway("").await;
    let key = DpopKey::new();
    let token_url = tg.url("/oauth/token");
    let post = |form: Vec<(&'static str, String)>, proof: Option<String>| {
        let mut req = common::client().post(&token_url).form(&form);
        if let Some(p) = proof {
            req = req.header("DPoP", p);
        }
        async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let (s, first) = post(
        vec![
            ("grant_type", "password".into()),
            ("client_id", common::oauth::DRAFT10_CLIENT.into()),
            ("username", "user_1".into()),
            ("password", "password".into()),
        ],
        Some(key.proof("POST", &token_url, None)),
    )
    .await;
    assert_eq!(s, 200, "{first}");
    assert_eq!(first["token_type"], "DPoP");
    let refresh = first["refresh_token"].as_str().unwrap().to_string();
    let form = || {
        vec![
            ("grant_type", "refresh_token"),
            ("client_id", common::oauth::DRAFT10_CLIENT),
            ("refresh_token", refresh.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect::<Vec<_>>()
    };
    // Without a proof, or with another key's: refused (and the token is not spent).
    let (s, body) = post(form(), None).await;
    assert_eq!((s, body["error"].as_str()), (400, Some("invalid_grant")));
    let thief = DpopKey::new();
    let (s, body) = post(form(), Some(thief.proof("POST", &token_url, None))).await;
    assert_eq!((s, body["error"].as_str()), (400, Some("invalid_grant")));
    // With the key: a new DPoP-bound pair.
    let (s, body) = post(form(), Some(key.proof("POST", &token_url, None))).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        claims(body["access_token"].as_str().unwrap())["cnf"]["jkt"],
        key.jkt()
    );
}

#[tokio::test]
async fn dpop_through_forward_auth_checks_the_forwarded_method_and_uri() {
    let (tg, _up) =
        gateway("forward_auth:\n  path: /auth/verify\ntrusted_proxies: [127.0.0.1]\n").await;
    let key = DpopKey::new();
    let token = &dpop_token(&tg, &key).await;
    // The client called https://api.test/plain/x through the ingress.
    let ask = |proof: String| {
        common::client()
            .get(tg.url("/auth/verify"))
            .header("authorization", format!("DPoP {token}"))
            .header("dpop", proof)
            .header("x-forwarded-method", "GET")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "api.test")
            .header("x-forwarded-uri", "/plain/x?q=1")
            .send()
    };
    let good = key.proof("GET", "https://api.test/plain/x", Some(token));
    assert_eq!(ask(good).await.unwrap().status(), 200);
    // A proof for the URI the ingress was asked, not the one the client used: refused.
    let wrong = key.proof("GET", &tg.url("/auth/verify"), Some(token));
    assert_eq!(ask(wrong).await.unwrap().status(), 401);
    let wrong_method = key.proof("POST", "https://api.test/plain/x", Some(token));
    assert_eq!(ask(wrong_method).await.unwrap().status(), 401);
}

#[tokio::test]
async fn a_bound_route_takes_either_binding_and_no_bearer_token() {
    // `extra` lands after the route list: this continues it with one more route.
    let (tg, _up) = gateway(
        "- name: bound\n  path: /bound\n  upstream: http://127.0.0.1:9\n  auth: required\n  sender_constraint: bound\n",
    )
    .await;
    let (_, plain) = cc_token(&tg, &[], None).await;
    let resp = get(
        &tg,
        "/bound",
        Some(format!(
            "Bearer {}",
            plain["access_token"].as_str().unwrap()
        )),
        None,
    )
    .await;
    assert_eq!(resp.status(), 401);
    let c = www(&resp);
    assert!(
        c.iter().any(|c| c.starts_with("Bearer ")) && c.iter().any(|c| c.starts_with("DPoP ")),
        "{c:?}"
    );
    let key = DpopKey::new();
    let token = &dpop_token(&tg, &key).await;
    let url = tg.url("/bound");
    // The upstream is down (port 9): a DPoP-bound token gets past admission to a 502.
    let resp = get(
        &tg,
        "/bound",
        Some(format!("DPoP {token}")),
        Some(key.proof("GET", &url, Some(token))),
    )
    .await;
    assert_eq!(resp.status(), 502);
}

#[tokio::test]
async fn behind_a_trusted_load_balancer_the_proof_names_the_uri_the_client_used() {
    let (tg, _up) = gateway("trusted_proxies: [127.0.0.1]\n").await;
    let key = DpopKey::new();
    let token = &dpop_token(&tg, &key).await;
    // The load balancer terminated TLS for https://api.test and says so.
    let ask = |proof: String| {
        common::client()
            .get(tg.url("/plain"))
            .header("authorization", format!("DPoP {token}"))
            .header("dpop", proof)
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "api.test")
            .send()
    };
    let proof = key.proof("GET", "https://api.test/plain", Some(token));
    assert_eq!(ask(proof).await.unwrap().status(), 200);
    // A proof for the gateway's own address is not the URI the client used.
    let proof = key.proof("GET", &tg.url("/plain"), Some(token));
    assert_eq!(ask(proof).await.unwrap().status(), 401);
}
