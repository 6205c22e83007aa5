//! `upstream.protocol`: h1, h2 (over TLS), h2c (cleartext, prior knowledge) and auto (ALPN
//! over TLS, HTTP/1.1 on plain). An HTTP/1.1 client's request may go out over HTTP/2 and
//! its response come back over HTTP/1.1, bodies streamed both ways.

mod common;

use common::pki::{self, Ca};
use common::{spawn_proxy_only, Upstream};

/// Starts a gateway in front of `up` with `protocol` and returns the HTTP version the
/// upstream saw for one HTTP/1.1 request.
async fn version_seen(up: &Upstream, protocol: &str, tls: Option<&std::path::Path>) -> String {
    let tls = tls
        .map(|ca| format!("\n      tls: {{ ca_file: {} }}", ca.display()))
        .unwrap_or_default();
    let gw = spawn_proxy_only(&format!(
        "routes:\n  - name: api\n    path: /\n    upstream:\n      targets: [{}]\n      protocol: {protocol}{tls}\n",
        up.url()
    ))
    .await;
    let resp = common::client().get(gw.url("/v")).send().await.unwrap();
    assert_eq!(resp.status(), 200, "protocol {protocol}");
    assert_eq!(resp.version(), http::Version::HTTP_11);
    let seen = up.last();
    // Over HTTP/2 the authority travels as `:authority` only: a second `host` header
    // makes servers such as nginx answer 400. Over HTTP/1.1 `Host` names the target.
    if seen.version == "HTTP/2.0" {
        assert!(seen.header("host").is_none(), "{:?}", seen.headers);
    } else {
        assert_eq!(seen.header("host"), Some(up.addr.to_string().as_str()));
    }
    seen.version
}

#[tokio::test]
async fn over_tls_the_protocol_setting_and_alpn_decide_the_version() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("upstream CA");
    let ca_file = ca.write(dir.path(), "ca");
    let cert = ca.server();
    let both = Upstream::start_tls(
        "both",
        pki::server_config(&cert, None, &[b"h2", b"http/1.1"]),
    )
    .await;
    let h1_only = Upstream::start_tls("h1", pki::server_config(&cert, None, &[b"http/1.1"])).await;

    assert_eq!(version_seen(&both, "h2", Some(&ca_file)).await, "HTTP/2.0");
    assert_eq!(
        version_seen(&both, "auto", Some(&ca_file)).await,
        "HTTP/2.0"
    );
    assert_eq!(version_seen(&both, "h1", Some(&ca_file)).await, "HTTP/1.1");
    // auto falls back to HTTP/1.1 when the upstream's ALPN offers nothing else.
    assert_eq!(
        version_seen(&h1_only, "auto", Some(&ca_file)).await,
        "HTTP/1.1"
    );
}

#[tokio::test]
async fn on_plain_targets_h2c_speaks_http2_by_prior_knowledge_and_auto_speaks_http11() {
    let up = Upstream::start().await;
    assert_eq!(version_seen(&up, "h2c", None).await, "HTTP/2.0");
    assert_eq!(version_seen(&up, "auto", None).await, "HTTP/1.1");
    assert_eq!(version_seen(&up, "h1", None).await, "HTTP/1.1");
}

#[tokio::test]
async fn bodies_stream_both_ways_over_an_h2c_upstream_and_concurrent_calls_multiplex() {
    let up = Upstream::start().await;
    let gw = spawn_proxy_only(&format!(
        "routes:\n  - name: api\n    path: /\n    upstream: {{ targets: [{}], protocol: h2c }}\n",
        up.url()
    ))
    .await;
    let client = common::client();
    // Upload: counted by the upstream frame by frame.
    let resp = client
        .post(gw.url("/upload"))
        .body(vec![b'a'; 300_000])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.last().body_len, 300_000);
    // Download: a streamed response without Content-Length comes back whole.
    let resp = client.get(gw.url("/stream/64")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().len(), 64 * 1024);
    // Concurrent calls multiplex; all arrive as HTTP/2.
    let calls = (0..20).map(|i| {
        let c = client.clone();
        let url = gw.url(&format!("/c/{i}"));
        async move { c.get(url).send().await.unwrap().status() }
    });
    for s in futures_util::future::join_all(calls).await {
        assert_eq!(s, 200);
    }
    assert!(up.requests().iter().all(|r| r.version == "HTTP/2.0"));
}

#[tokio::test]
async fn a_protocol_that_does_not_fit_the_scheme_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (target, protocol) in [("http://127.0.0.1:1", "h2"), ("https://127.0.0.1:1", "h2c")] {
        let yaml = format!(
            "routes:\n  - name: api\n    path: /\n    upstream: {{ targets: [{target}], protocol: {protocol} }}\n"
        );
        let err = tollgate::config::Config::from_yaml_with_env(
            &common::complete_yaml(&yaml, dir.path()),
            None,
        )
        .expect_err(&yaml)
        .to_string();
        assert!(err.contains("upstream.protocol"), "{err}");
    }
}
