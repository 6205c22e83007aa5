//! Routing and path normalisation as seen from outside: the path that is matched is the
//! path that is forwarded, encoded tricks never escape a route, spoofed identity headers
//! never reach an upstream, and `required` routes fail closed without token validation.

mod common;

use common::{client, spawn_proxy_only, Upstream};

async fn setup() -> (Upstream, Upstream, common::TestGateway) {
    let public = Upstream::start_named("public").await;
    let admin = Upstream::start_named("admin").await;
    let gw = spawn_proxy_only(&format!(
        r#"
routes:
  - name: public
    path: /public
    upstream: {p}
  - name: admin
    path: /admin
    auth: required
    upstream: {a}
  - name: host-only
    host: "*.example.com"
    path: /public
    upstream: {a}
  - name: get-only
    path: /ro
    methods: [GET]
    upstream: {p}
"#,
        p = public.url(),
        a = admin.url()
    ))
    .await;
    (public, admin, gw)
}

/// Sends a raw request line so the client does not normalise the path first.
async fn raw_get(gw: &common::TestGateway, target: &str, extra: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(gw.gateway.http_addr.unwrap())
        .await
        .unwrap();
    s.write_all(
        format!("GET {target} HTTP/1.1\r\nHost: gw.test\r\n{extra}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    (status, out)
}

#[tokio::test]
async fn encoded_traversal_never_escapes_its_route() {
    let (public, admin, gw) = setup().await;
    for target in [
        "/public/..%2Fadmin/secret",
        "/public/%2e%2e/admin/secret",
        "/public/%2E%2E%2Fadmin/secret",
        "/public/..%5Cadmin/secret",
        "/public/./../admin/secret",
        "//admin//secret",
    ] {
        let (status, _) = raw_get(&gw, target, "").await;
        // Normalised to /admin/secret: it is the admin route, and that one needs a token.
        assert_eq!(status, 401, "{target}");
    }
    assert!(
        admin.requests().is_empty(),
        "nothing reached the protected upstream"
    );
    assert!(public.requests().is_empty());

    let (status, _) = raw_get(&gw, "/public/a/../b//c/./d", "").await;
    assert_eq!(status, 200);
    assert_eq!(
        public.last().path,
        "/public/b/c/d",
        "the forwarded path is the matched path"
    );
    let (status, _) = raw_get(&gw, "/a%00b", "").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn segment_boundaries_hosts_and_methods() {
    let (public, admin, gw) = setup().await;
    let c = client();
    assert_eq!(
        c.get(gw.url("/publicity")).send().await.unwrap().status(),
        404
    );
    assert_eq!(c.get(gw.url("/public")).send().await.unwrap().status(), 200);
    let (status, _) = raw_get(&gw, "/public/x", "").await;
    assert_eq!(status, 200);
    assert_eq!(public.requests().len(), 2);
    // Wildcard host narrows: api.example.com goes to the host-specific route.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(gw.gateway.http_addr.unwrap())
        .await
        .unwrap();
    s.write_all(
        b"GET /public/y HTTP/1.1\r\nHost: api.example.com:8080\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"));
    assert_eq!(admin.last().path, "/public/y");
    assert_eq!(c.get(gw.url("/ro")).send().await.unwrap().status(), 200);
    assert_eq!(c.head(gw.url("/ro")).send().await.unwrap().status(), 200);
    assert_eq!(c.post(gw.url("/ro")).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn spoofed_identity_headers_never_reach_upstream() {
    let (public, _admin, gw) = setup().await;
    let (status, _) = raw_get(
        &gw,
        "/public/me",
        "X-User-Id: 1\r\nX_User_Id: 1\r\nx.user.role: admin\r\nX-User-Email: a@b\r\nX-Client-Id: c\r\nX-User-Scopes: all\r\nX-User-Alias: z\r\n",
    )
    .await;
    assert_eq!(status, 200);
    let seen = public.last();
    for h in [
        "x-user-id",
        "x_user_id",
        "x.user.role",
        "x-user-email",
        "x-client-id",
        "x-user-scopes",
        "x-user-alias",
    ] {
        assert!(
            seen.header(h).is_none(),
            "{h} reached the upstream: {:?}",
            seen.headers
        );
    }
}

#[tokio::test]
async fn required_route_without_validation_fails_closed() {
    let (_public, admin, gw) = setup().await;
    let c = client();
    let r = c.get(gw.url("/admin")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        r#"Bearer realm="tollgate""#
    );
    let r = c
        .get(gw.url("/admin"))
        .bearer_auth("anything")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains(r#"error="invalid_token""#));
    assert!(admin.requests().is_empty());
}

/// Sends `head` as it is and returns (status, upstream-bound answer text).
async fn raw(gw: &common::TestGateway, head: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(gw.gateway.http_addr.unwrap())
        .await
        .unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    (status, out)
}

#[tokio::test]
async fn host_rules_of_rfc_9112() {
    let (public, admin, gw) = setup().await;
    // HTTP/1.1 without Host: refused, nothing forwarded.
    let (status, out) = raw(&gw, "GET /public/x HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status, 400, "{out}");
    let (status, _) = raw(
        &gw,
        "GET http://api.example.com/public/x HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 400, "absolute form needs its Host too");
    let (status, _) = raw(
        &gw,
        "GET /public/x HTTP/1.1\r\nHost: gw.test\r\nHost: api.example.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 400, "two Host headers");
    assert!(public.requests().is_empty() && admin.requests().is_empty());
    // HTTP/1.0 predates Host: routed as host-less.
    let (status, out) = raw(&gw, "GET /public/x HTTP/1.0\r\n\r\n").await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(public.requests().len(), 1);

    // Absolute form: the authority wins over Host, for the route and for the
    // X-Forwarded-Host the upstream gets.
    let (status, _) = raw(
        &gw,
        "GET http://api.example.com/public/a HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    let seen = admin.last();
    assert_eq!(seen.path, "/public/a");
    assert_eq!(seen.header("x-forwarded-host"), Some("api.example.com"));
    let (status, _) = raw(
        &gw,
        "GET http://other.test:8080/public/b HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    let seen = public.last();
    assert_eq!(seen.path, "/public/b");
    assert_eq!(seen.header("x-forwarded-host"), Some("other.test"));

    // A port, a trailing dot and upper case all name the route's host.
    for host in [
        "api.example.com:8080",
        "api.example.com.",
        "api.example.com.:8080",
        "API.Example.COM",
    ] {
        let before = admin.requests().len();
        let (status, _) = raw(
            &gw,
            &format!("GET /public/h HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert_eq!(status, 200, "{host}");
        assert_eq!(
            admin.requests().len(),
            before + 1,
            "{host} is the host route's"
        );
    }
}
