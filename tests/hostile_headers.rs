//! Hostile request headers: identity headers spoofed in every spelling and repeated;
//! `Connection:` lists that name what Tollgate injects; forwarding headers from untrusted
//! clients; claims built to split or bloat headers; `Authorization` only where a route
//! opts in.

mod common;

use common::authn::{spawn, Kit};
use common::{client, TestGateway, Upstream};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn setup() -> (TestGateway, Kit, Upstream) {
    let up = Upstream::start().await;
    let (gw, kit) = spawn(&format!(
        r#"
identity_headers:
  signed_jwt: X-Identity-Token
routes:
  - {{ name: public, path: /public, upstream: "{u}" }}
  - {{ name: api, path: /api, upstream: "{u}", auth: required }}
  - {{ name: admin, path: /admin, upstream: "{u}", auth: {{ mode: required, roles: [admin] }} }}
  - {{ name: passthrough, path: /pass, upstream: "{u}", auth: required, forward_authorization: true }}
"#,
        u = up.url()
    ))
    .await;
    (gw, kit, up)
}

/// Sends a raw request head (so header names keep their exact spelling and repeats).
async fn raw(gw: &TestGateway, head: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(gw.gateway.http_addr.unwrap())
        .await
        .unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

const IDENTITY: &[&str] = &[
    "x-user-id",
    "x-user-email",
    "x-user-role",
    "x-user-scopes",
    "x-client-id",
    "x-user-alias",
    "x-identity-token",
];

fn spellings(name: &str) -> Vec<String> {
    vec![
        name.to_string(),
        name.to_ascii_uppercase(),
        name.replace('-', "_"),
        name.replace('-', "."),
        name.replace('-', "_").to_ascii_uppercase(),
        // Title case as browsers and curl send.
        name.split('-')
            .map(|p| {
                let mut c = p.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("-"),
    ]
}

#[tokio::test]
async fn identity_headers_spoofed_in_every_spelling_never_arrive() {
    let (gw, kit, up) = setup().await;
    let token = kit.token(json!({}));
    for (path, auth) in [("/public/x", None), ("/api/x", Some(&token))] {
        let mut head = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
        if let Some(t) = auth {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        for name in IDENTITY {
            for s in spellings(name) {
                // Twice each: a repeated header must not leave one copy behind.
                head.push_str(&format!("{s}: spoofed\r\n{s}: spoofed-again\r\n"));
            }
        }
        head.push_str("\r\n");
        let resp = raw(&gw, &head).await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{path}: {resp}");
        let seen = up.last();
        for (k, values) in &seen.headers {
            assert!(
                !values.iter().any(|v| v.starts_with("spoofed")),
                "{path}: {k}: {values:?}"
            );
        }
        if auth.is_some() {
            assert_eq!(
                seen.headers.get("x-user-id").unwrap(),
                &vec!["157".to_string()]
            );
        }
    }
}

#[tokio::test]
async fn a_connection_list_never_removes_what_tollgate_injects() {
    let (gw, kit, up) = setup().await;
    let token = kit.token(json!({}));
    let head = format!(
        "GET /api/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close, X-User-Id, x_user_role, X-User-Scopes, X-Request-Id, X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, X-Identity-Token, Keep-Alive\r\nX-Request-Id: req-conn-1\r\nX-Hop: 1\r\n\r\n"
    );
    let resp = raw(&gw, &head).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let seen = up.last();
    for h in [
        "x-user-id",
        "x-user-role",
        "x-user-scopes",
        "x-request-id",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-identity-token",
    ] {
        assert!(
            seen.header(h).is_some(),
            "{h} was removed: {:?}",
            seen.headers
        );
    }
    assert_eq!(seen.header("x-user-id"), Some("157"));
    assert!(seen
        .header("connection")
        .is_none_or(|c| !c.contains("X-User-Id")));
}

#[tokio::test]
async fn hop_by_hop_request_headers_are_dropped() {
    let (gw, _kit, up) = setup().await;
    let head = "GET /public/x HTTP/1.1\r\nHost: x\r\nConnection: close, X-Hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\nTE: gzip\r\nProxy-Connection: keep-alive\r\nUpgrade: h2c\r\nTrailer: X-T\r\n\r\n";
    let resp = raw(&gw, head).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let seen = up.last();
    for h in [
        "x-hop",
        "keep-alive",
        "te",
        "proxy-connection",
        "upgrade",
        "trailer",
    ] {
        assert!(seen.header(h).is_none(), "{h} was forwarded");
    }
}

#[tokio::test]
async fn forwarding_headers_from_untrusted_clients_decide_nothing() {
    let (gw, kit, up) = setup().await;
    // A public path dressed up with every rewrite header a proxy might honour, naming the
    // admin route: the gateway routes and authorizes by the real request line.
    for h in [
        "X-Original-URL: /admin/x",
        "X-Rewrite-URL: /admin/x",
        "X-Forwarded-Uri: /admin/x",
        "X-Forwarded-Prefix: /admin",
        "X-Forwarded-Host: admin.example.com",
        "X-Forwarded-Proto: https",
        "X-Forwarded-For: 10.0.0.1",
        "X-Real-IP: 10.0.0.1",
        "Forwarded: for=10.0.0.1;host=admin.example.com;proto=https",
    ] {
        let resp = raw(
            &gw,
            &format!("GET /public/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{h}\r\n\r\n"),
        )
        .await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{h}: {resp}");
        let seen = up.last();
        assert_eq!(seen.path, "/public/x", "{h}");
        assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"), "{h}");
        assert_eq!(seen.header("x-forwarded-proto"), Some("http"), "{h}");
        assert_eq!(seen.header("x-forwarded-host"), Some("x"), "{h}");
        assert!(seen.header("forwarded").is_none(), "{h}");
    }
    // And on the protected side, they never stand in for a token or a role.
    let user = kit.token(json!({"role": "default"}));
    let resp = raw(
        &gw,
        &format!("GET /admin/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {user}\r\nX-Original-URL: /public/x\r\nX-Forwarded-Uri: /public/x\r\n\r\n"),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
}

#[tokio::test]
async fn claims_with_control_characters_or_huge_values_never_split_headers() {
    let (gw, kit, up) = setup().await;
    for (what, claims) in [
        (
            "CRLF",
            json!({"email": "a@b\r\nX-Injected: 1", "role": "x\r\n\r\nGET / HTTP/1.1"}),
        ),
        ("LF", json!({"email": "a@b\nX-Injected: 1"})),
        ("NUL", json!({"alias": "ann\u{0}X-Injected: 1"})),
        ("5 KiB", json!({"alias": "a".repeat(5 * 1024)})),
        ("scopes CRLF", json!({"scope": "read\r\nX-Injected: 1"})),
    ] {
        let token = kit.token(claims);
        let r = client()
            .get(gw.url("/api/x"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{what}");
        let seen = up.last();
        assert!(seen.header("x-injected").is_none(), "{what}: header split");
        for (k, values) in &seen.headers {
            for v in values {
                assert!(
                    !v.contains('\r') && !v.contains('\n') && !v.contains('\0'),
                    "{what}: {k} carries a control character"
                );
                assert!(
                    v.len() <= 4096 || k == "x-identity-token",
                    "{what}: {k} is {} bytes",
                    v.len()
                );
            }
        }
        assert_eq!(seen.header("x-user-id"), Some("157"), "{what}");
    }
}

#[tokio::test]
async fn authorization_reaches_the_upstream_only_where_a_route_opts_in() {
    let (gw, kit, up) = setup().await;
    let token = kit.token(json!({}));
    for (path, forwarded) in [("/api/x", false), ("/pass/x", true), ("/public/x", false)] {
        let r = client()
            .get(gw.url(path))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(
            up.last().header("authorization").is_some(),
            forwarded,
            "{path}"
        );
    }
}

/// A retry's head is rewritten from the received one as the first attempt's was: the
/// same identity, request id and forwarding headers, spoofed identity headers stripped,
/// `Authorization` kept back, and the next target's `Host`.
#[tokio::test]
async fn a_retried_request_carries_the_same_rewritten_head() {
    let up = Upstream::start().await;
    let (lost, heads) = common::upstream::head_then_close().await;
    let (gw, kit) = spawn(&format!(
        r#"
routes:
  - name: retry
    path: /retry
    auth: required
    upstream: {{ targets: ["http://{lost}", "{u}"], retries: 1, eject_after: 100 }}
"#,
        u = up.url()
    ))
    .await;
    let token = kit.token(json!({}));
    for i in 0..4 {
        let rid = format!("retry-{i}");
        let r = client()
            .get(gw.url(&format!("/retry/{i}")))
            .bearer_auth(&token)
            .header("x-request-id", &rid)
            .header("x-user-id", "spoofed")
            .header("X_User_Role", "spoofed")
            .header("x-forwarded-for", "6.6.6.6")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "request {i}");
        assert_eq!(r.headers()["x-request-id"], rid.as_str());
        let seen = up.last();
        assert_eq!(seen.path, format!("/retry/{i}"));
        assert_eq!(seen.header("x-user-id"), Some("157"), "request {i}");
        assert_eq!(seen.header("x-request-id"), Some(rid.as_str()));
        assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
        assert_eq!(
            seen.header("host"),
            Some(up.url().trim_start_matches("http://"))
        );
        assert!(seen.header("authorization").is_none());
        for (k, values) in &seen.headers {
            assert!(!values.iter().any(|v| v == "spoofed"), "{k}: {values:?}");
        }
    }
    // Round robin takes the next target for each attempt: every request went first to the
    // target that loses it after it was written, then again to the other.
    let lost_heads = heads.lock().unwrap().clone();
    assert_eq!(lost_heads.len(), 4, "{lost_heads:?}");
    assert_eq!(up.requests().len(), 4);
    for head in &lost_heads {
        assert!(head.contains("\r\nx-user-id: 157\r\n"), "{head}");
        assert!(!head.contains("spoofed"), "{head}");
        assert!(!head.contains("authorization"), "{head}");
    }
}
