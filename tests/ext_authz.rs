//! The Envoy ext_authz gRPC server (`listen.ext_authz`) asked directly with the generated
//! client, as Envoy asks it: the request from `attributes.request.http` (headers in
//! `headers` or in `header_map`), the route by match or by `context_extensions`, and the
//! answer Envoy applies (identity headers set or removed, the proxy's denials, UNAVAILABLE
//! when no decision can be made). tests/ingress_proxies.rs runs the same through a real
//! Envoy.

mod common;

use std::collections::HashMap;

use common::authn::{spawn, Kit};
use common::{scrape, TestGateway, Upstream};
use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse, HttpResponse};
use envoy_types::pb::envoy::config::core::v3::{
    address, Address, HeaderMap as PbHeaderMap, HeaderValue as PbHeaderValue, SocketAddress,
};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use serde_json::json;

const OK: i32 = 0;
const PERMISSION_DENIED: i32 = 7;
const UNAVAILABLE: i32 = 14;
const UNAUTHENTICATED: i32 = 16;

async fn setup(extra: &str) -> (TestGateway, Kit, Upstream) {
    let up = Upstream::start().await;
    std::env::set_var("EXT_AUTHZ_TEST_INTROSPECT_SECRET", "s3cret");
    let yaml = format!(
        r#"
listen:
  http: 127.0.0.1:0
  admin: 127.0.0.1:0
  ext_authz: 127.0.0.1:0
introspection:
  - name: down
    url: http://127.0.0.1:1/introspect
    client_id: tollgate
    client_secret_env: EXT_AUTHZ_TEST_INTROSPECT_SECRET
    timeout: 500ms
routes:
  - {{ name: public, path: /public, upstream: "{u}" }}
  - {{ name: orders, path: /api/orders, upstream: "{u}", auth: {{ mode: required, scopes: ["orders:read"] }} }}
  - {{ name: limited, path: /limited, upstream: "{u}", auth: required, rate_limit: {{ requests: 1, per: 1h, key: user }} }}
  - {{ name: legacy, path: /legacy, upstream: "{u}", auth: required, token_sources: ["query:oauth_token"] }}
  - {{ name: keep-auth, path: /keep, upstream: "{u}", auth: required, forward_authorization: true }}
  - {{ name: api, path: /api, upstream: "{u}", auth: required }}
{extra}"#,
        u = up.url()
    );
    let (gw, kit) = spawn(&yaml).await;
    (gw, kit, up)
}

async fn client(gw: &TestGateway) -> AuthorizationClient<tonic::transport::Channel> {
    let addr = gw.gateway.ext_authz_addr.expect("ext_authz listens");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    AuthorizationClient::new(channel)
}

/// A check as Envoy sends it (merged `headers`).
fn check(method: &str, path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    let mut h: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    h.insert(":authority".into(), "api.example.com".into());
    h.insert(":path".into(), path.into());
    h.insert(":method".into(), method.into());
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                address: Some(Address {
                    address: Some(address::Address::SocketAddress(SocketAddress {
                        address: "192.0.2.7".into(),
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            }),
            request: Some(Request {
                http: Some(HttpRequest {
                    method: method.into(),
                    path: path.into(),
                    host: "api.example.com".into(),
                    scheme: "https".into(),
                    headers: h,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

fn with_route(mut c: CheckRequest, route: &str) -> CheckRequest {
    c.attributes
        .as_mut()
        .unwrap()
        .context_extensions
        .insert("tollgate_route".into(), route.into());
    c
}

async fn ask(gw: &TestGateway, c: CheckRequest) -> CheckResponse {
    client(gw).await.check(c).await.unwrap().into_inner()
}

fn code(r: &CheckResponse) -> i32 {
    r.status.as_ref().map(|s| s.code).unwrap_or(OK)
}

/// The allow's headers to set upstream, by name.
fn set(r: &CheckResponse) -> HashMap<String, String> {
    match &r.http_response {
        Some(HttpResponse::OkResponse(ok)) => ok
            .headers
            .iter()
            .filter_map(|o| o.header.as_ref())
            .map(|h| (h.key.clone(), h.value.clone()))
            .collect(),
        other => panic!("not an allow: {other:?}"),
    }
}

fn ok(r: &CheckResponse) -> &envoy_types::ext_authz::v3::pb::OkHttpResponse {
    match &r.http_response {
        Some(HttpResponse::OkResponse(ok)) => ok,
        other => panic!("not an allow: {other:?}"),
    }
}

/// The denial's status, headers and body.
fn denied(r: &CheckResponse) -> (i32, HashMap<String, String>, serde_json::Value) {
    match &r.http_response {
        Some(HttpResponse::DeniedResponse(d)) => (
            d.status.as_ref().unwrap().code,
            d.headers
                .iter()
                .filter_map(|o| o.header.as_ref())
                .map(|h| (h.key.clone(), h.value.clone()))
                .collect(),
            serde_json::from_str(&d.body).unwrap(),
        ),
        other => panic!("not a denial: {other:?}"),
    }
}

#[tokio::test]
async fn a_valid_token_is_allowed_with_the_identity_headers_and_spoofs_removed() {
    let (gw, kit, up) = setup("").await;
    let token = kit.token(json!({}));
    let r = ask(
        &gw,
        check(
            "GET",
            "/api/orders/7?x=1",
            &[
                ("authorization", &format!("Bearer {token}")),
                ("x-user-id", "admin"),
                ("x.user.role", "admin"),
            ],
        ),
    )
    .await;
    assert_eq!(code(&r), OK);
    let headers = set(&r);
    assert_eq!(headers["x-user-id"], "157", "overwrites the client's copy");
    assert_eq!(headers["x-user-email"], "ann@example.com");
    assert_eq!(headers["x-user-scopes"], "orders:read profile");
    let allow = ok(&r);
    for h in &allow.headers {
        // Overwrite, never append next to a client's copy.
        assert_eq!(h.append_action, 2, "{h:?}");
    }
    // Identity headers this caller has no value for are removed; so is the credential,
    // as the proxy removes it (`forward_authorization: false`).
    for name in [
        "x-user-id",
        "x-user-email",
        "x-user-role",
        "x-user-scopes",
        "x-client-id",
        "x-user-alias",
    ] {
        assert!(
            headers.contains_key(name) != allow.headers_to_remove.iter().any(|r| r == name),
            "{name} is either set or removed: {headers:?} {:?}",
            allow.headers_to_remove
        );
    }
    assert!(allow
        .headers_to_remove
        .contains(&"authorization".to_string()));
    assert!(
        allow.headers_to_remove.contains(&"x.user.role".to_string()),
        "a look-alike copy is removed: {:?}",
        allow.headers_to_remove
    );
    assert!(up.requests().is_empty(), "a check never proxies");

    // Public route: allowed anonymously, every identity header removed.
    let r = ask(&gw, check("GET", "/public/x", &[("x-user-id", "admin")])).await;
    assert_eq!(code(&r), OK);
    assert!(set(&r).is_empty());
    let removed: Vec<&str> = ok(&r)
        .headers_to_remove
        .iter()
        .map(String::as_str)
        .collect();
    for h in [
        "x-user-id",
        "x-user-email",
        "x-user-role",
        "x-user-scopes",
        "x-client-id",
        "x-user-alias",
    ] {
        assert!(removed.contains(&h), "{h}: {removed:?}");
    }

    // forward_authorization: true keeps the credential.
    let r = ask(
        &gw,
        check(
            "GET",
            "/keep",
            &[("authorization", &format!("Bearer {token}"))],
        ),
    )
    .await;
    assert_eq!(code(&r), OK);
    assert!(!ok(&r)
        .headers_to_remove
        .contains(&"authorization".to_string()));
}

#[tokio::test]
async fn headers_are_read_from_header_map_too() {
    let (gw, kit, _up) = setup("").await;
    let token = kit.token(json!({}));
    let mut c = check("GET", "/api/x", &[]);
    let http = c
        .attributes
        .as_mut()
        .unwrap()
        .request
        .as_mut()
        .unwrap()
        .http
        .as_mut()
        .unwrap();
    http.headers.clear();
    http.header_map = Some(PbHeaderMap {
        headers: vec![
            PbHeaderValue {
                key: ":authority".into(),
                raw_value: b"api.example.com".to_vec(),
                ..Default::default()
            },
            PbHeaderValue {
                key: "authorization".into(),
                raw_value: format!("Bearer {token}").into_bytes(),
                ..Default::default()
            },
        ],
    });
    let r = ask(&gw, c).await;
    assert_eq!(code(&r), OK, "{r:?}");
    assert_eq!(set(&r)["x-user-id"], "157");
}

#[tokio::test]
async fn denials_carry_the_proxys_status_challenge_and_body() {
    let (gw, kit, _up) = setup("").await;
    // No token: UNAUTHENTICATED, 401 with the challenge.
    let r = ask(&gw, check("GET", "/api/x", &[])).await;
    assert_eq!(code(&r), UNAUTHENTICATED);
    let (status, headers, body) = denied(&r);
    assert_eq!(status, 401);
    assert_eq!(headers["www-authenticate"], r#"Bearer realm="tollgate""#);
    assert_eq!(body["error"], "unauthorized");
    // A bad token: 401 invalid_token.
    let expired = kit.token(json!({"exp": 1000}));
    let r = ask(
        &gw,
        check(
            "GET",
            "/api/x",
            &[("authorization", &format!("Bearer {expired}"))],
        ),
    )
    .await;
    assert_eq!(code(&r), UNAUTHENTICATED);
    let (status, headers, _) = denied(&r);
    assert_eq!(status, 401);
    assert!(headers["www-authenticate"].contains("invalid_token"));
    // Missing scope: PERMISSION_DENIED, 403 insufficient_scope.
    let weak = kit.token(json!({"scope": "profile"}));
    let r = ask(
        &gw,
        check(
            "GET",
            "/api/orders",
            &[("authorization", &format!("Bearer {weak}"))],
        ),
    )
    .await;
    assert_eq!(code(&r), PERMISSION_DENIED);
    let (status, headers, _) = denied(&r);
    assert_eq!(status, 403);
    assert!(headers["www-authenticate"].contains("insufficient_scope"));
    // A request no route covers is refused, as in HTTP forward-auth.
    let r = ask(&gw, check("GET", "/nowhere", &[])).await;
    assert_eq!(code(&r), PERMISSION_DENIED);
    assert_eq!(denied(&r).0, 403);
}

#[tokio::test]
async fn the_route_named_in_context_extensions_decides_and_an_unknown_name_denies() {
    let (gw, kit, _up) = setup("").await;
    // /public would be anonymous; the extension names the orders route instead.
    let r = ask(&gw, with_route(check("GET", "/public/x", &[]), "orders")).await;
    assert_eq!(code(&r), UNAUTHENTICATED);
    let token = kit.token(json!({}));
    let r = ask(
        &gw,
        with_route(
            check(
                "GET",
                "/anything",
                &[("authorization", &format!("Bearer {token}"))],
            ),
            "orders",
        ),
    )
    .await;
    assert_eq!(code(&r), OK);
    let r = ask(
        &gw,
        with_route(check("GET", "/public/x", &[]), "no-such-route"),
    )
    .await;
    assert_eq!(code(&r), PERMISSION_DENIED);
    assert_eq!(denied(&r).0, 403);
}

#[tokio::test]
async fn rate_limits_answer_429_and_allows_carry_their_headers() {
    let (gw, kit, _up) = setup("").await;
    let token = kit.token(json!({}));
    let auth = format!("Bearer {token}");
    let r = ask(&gw, check("GET", "/limited", &[("authorization", &auth)])).await;
    assert_eq!(code(&r), OK);
    let to_client: Vec<&str> = ok(&r)
        .response_headers_to_add
        .iter()
        .filter_map(|o| o.header.as_ref())
        .map(|h| h.key.as_str())
        .collect();
    assert!(to_client.contains(&"ratelimit-policy"), "{to_client:?}");
    let r = ask(&gw, check("GET", "/limited", &[("authorization", &auth)])).await;
    assert_eq!(code(&r), PERMISSION_DENIED);
    let (status, headers, _) = denied(&r);
    assert_eq!(status, 429);
    assert!(headers.contains_key("retry-after"), "{headers:?}");
}

#[tokio::test]
async fn a_query_token_is_removed_before_the_upstream() {
    let (gw, kit, _up) = setup("").await;
    let token = kit.token(json!({}));
    let r = ask(
        &gw,
        check("GET", &format!("/legacy/x?a=1&oauth_token={token}"), &[]),
    )
    .await;
    assert_eq!(code(&r), OK);
    assert_eq!(ok(&r).query_parameters_to_remove, vec!["oauth_token"]);
}

#[tokio::test]
async fn no_decision_is_unavailable_counted_and_never_ok() {
    let (gw, _kit, _up) = setup("").await;
    // An opaque token goes to introspection, which is down.
    let r = ask(
        &gw,
        check(
            "GET",
            "/api/x",
            &[("authorization", "Bearer opaque-token-1")],
        ),
    )
    .await;
    assert_eq!(code(&r), UNAVAILABLE);
    assert_eq!(denied(&r).0, 503);
    // The metrics registry is the process's, shared with the other tests here.
    let text = scrape(&gw.admin).await;
    let count: u64 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix(r#"tollgate_ext_authz_decisions_total{outcome="unavailable"} "#)
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(count >= 1, "{text}");
}

#[tokio::test]
async fn decision_counters_exist_before_the_first_check() {
    let (gw, _kit, _up) = setup("").await;
    let text = scrape(&gw.admin).await;
    for outcome in ["allow", "deny", "unavailable"] {
        assert!(
            text.contains(&format!(
                "tollgate_ext_authz_decisions_total{{outcome=\"{outcome}\"}}"
            )),
            "{outcome}: {text}"
        );
    }
}

#[tokio::test]
async fn a_check_that_describes_no_request_is_refused() {
    let (gw, _kit, _up) = setup("").await;
    let r = ask(&gw, CheckRequest { attributes: None }).await;
    assert_ne!(code(&r), OK);
    assert_eq!(denied(&r).0, 400);
    let r = ask(&gw, check("GET", "/api/../../etc", &[])).await;
    assert_ne!(code(&r), OK);
}

#[tokio::test]
async fn a_client_certificate_from_envoy_satisfies_a_route_that_requires_one() {
    let (gw, _kit, _up) = setup(
        "  - { name: mtls, path: /mtls, upstream: \"http://127.0.0.1:1\", require_client_cert: true }\n",
    )
    .await;
    let r = ask(&gw, check("GET", "/mtls", &[])).await;
    assert_eq!(code(&r), PERMISSION_DENIED);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["client".into()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "alice");
    let cert = params.self_signed(&key).unwrap();
    let mut c = check("GET", "/mtls", &[]);
    c.attributes
        .as_mut()
        .unwrap()
        .source
        .as_mut()
        .unwrap()
        .certificate =
        percent_encoding::utf8_percent_encode(&cert.pem(), percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    let r = ask(&gw, c).await;
    assert_eq!(code(&r), OK, "{r:?}");
}

/// With the `tls` section, the ext_authz port speaks TLS (ALPN h2) with the gateway's
/// certificate; a plain h2c client gets no answer.
#[tokio::test]
async fn with_tls_configured_the_port_speaks_tls() {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let dir = tempfile::tempdir().unwrap();
    let ca = common::pki::Ca::new("gateway CA");
    let (cert, key) = ca.server().write(dir.path(), "tls");
    let (gw, kit) = spawn(&format!(
        "listen:\n  http: 127.0.0.1:0\n  admin: 127.0.0.1:0\n  ext_authz: 127.0.0.1:0\n\
         tls:\n  cert: {}\n  key: {}\n\
         routes:\n  - {{ name: api, path: /api, upstream: \"http://127.0.0.1:1\", auth: required }}\n",
        cert.display(),
        key.display()
    ))
    .await;
    let addr = gw.gateway.ext_authz_addr.unwrap();
    let tls = common::pki::client_config(&ca, None, &[]);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(std::sync::Arc::unwrap_or_clone(tls))
        .https_only()
        .enable_http2()
        .build();
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(connector);
    let mut grpc = AuthorizationClient::with_origin(
        client,
        format!("https://localhost:{}", addr.port())
            .parse()
            .unwrap(),
    );
    let token = kit.token(json!({}));
    let r = grpc
        .check(check(
            "GET",
            "/api/x",
            &[("authorization", &format!("Bearer {token}"))],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r), OK);
    assert_eq!(set(&r)["x-user-id"], "157");

    // h2c to a TLS port is not a check.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(std::time::Duration::from_secs(2))
        .timeout(std::time::Duration::from_secs(2))
        .connect()
        .await;
    if let Ok(channel) = plain {
        let err = AuthorizationClient::new(channel)
            .check(check("GET", "/api/x", &[]))
            .await;
        assert!(err.is_err(), "{err:?}");
    }
}

/// A DPoP-bound token in a check: the proof is checked against the request Envoy
/// describes (its method, scheme, `host` and path), single use.
#[tokio::test]
async fn a_dpop_bound_token_needs_its_proof_for_the_described_request() {
    let (gw, kit, _up) = setup("").await;
    let key = common::dpop::DpopKey::new();
    let token = kit.token(json!({ "cnf": { "jkt": key.jkt() } }));
    let htu = "https://api.example.com/api/things";
    let with = |proof: &str| {
        check(
            "GET",
            "/api/things?page=2",
            &[("authorization", &format!("DPoP {token}")), ("dpop", proof)],
        )
    };
    let proof = key.proof("GET", htu, Some(&token));
    assert_eq!(code(&ask(&gw, with(&proof)).await), OK);
    // Used once: the same proof again is refused, in the DPoP scheme.
    let r = ask(&gw, with(&proof)).await;
    assert_eq!(code(&r), UNAUTHENTICATED);
    let (_, headers, _) = denied(&r);
    assert!(
        headers
            .get("www-authenticate")
            .is_some_and(|w| w.contains("invalid_dpop_proof")),
        "{headers:?}"
    );
    // A proof for another URL, and the bound token as Bearer: refused.
    let other = key.proof("GET", "https://api.example.com/api/other", Some(&token));
    assert_eq!(code(&ask(&gw, with(&other)).await), UNAUTHENTICATED);
    let bearer = check(
        "GET",
        "/api/things",
        &[("authorization", &format!("Bearer {token}"))],
    );
    assert_eq!(code(&ask(&gw, bearer).await), UNAUTHENTICATED);
}
