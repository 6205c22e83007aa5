//! HTTPS upstreams: the upstream's certificate is verified against the route's CA bundle,
//! for the target's host or `tls.server_name`; a wrong CA, an expired certificate, a name
//! the certificate does not carry, a CA certificate served as the server's, or an upstream
//! that wants a client certificate Tollgate does not have each fail closed (502) with a log
//! line that says which and what to do; the client certificate is re-read when its files
//! change.

mod common;

use std::time::Duration;

use common::logs::{self, Logs};
use common::pki::{self, Ca};
use common::{spawn_proxy_only, wait_until, Upstream};

async fn tls_upstream(cert: &pki::Issued, client_ca: Option<&Ca>) -> Upstream {
    Upstream::start_tls(
        "tls",
        pki::server_config(cert, client_ca, &[b"h2", b"http/1.1"]),
    )
    .await
}

fn route(target: &str, tls: &str) -> String {
    format!(
        "routes:\n  - name: api\n    path: /\n    upstream:\n      targets: [{target}]\n      retries: 0\n      tls: {{ {tls} }}\n"
    )
}

/// The one `upstream TLS handshake failed` line about `up`, which must name `problem` and
/// say each of `words`.
fn assert_logged(logs: &Logs, up: &Upstream, problem: &str, words: &[&str]) {
    let lines = logs.lines_with(&up.url());
    let line = match &lines[..] {
        [line] => line,
        _ => panic!("one log line about {}: {lines:#?}", up.url()),
    };
    assert!(line.contains("upstream TLS handshake failed: "), "{line}");
    assert!(line.contains(&format!("problem=\"{problem}\"")), "{line}");
    for w in words {
        assert!(line.contains(w), "{w:?} not in: {line}");
    }
}

async fn status(gw: &common::TestGateway, path: &str) -> u16 {
    common::client()
        .get(gw.url(path))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn the_right_ca_verifies_the_upstream_and_the_request_goes_through() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("upstream CA");
    let up = tls_upstream(&ca.server(), None).await;
    let ca_file = ca.write(dir.path(), "ca");
    let gw = spawn_proxy_only(&route(
        &up.url(),
        &format!("ca_file: {}", ca_file.display()),
    ))
    .await;
    let resp = common::client()
        .get(gw.url("/orders?x=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = up.last();
    assert_eq!(seen.path, "/orders");
    assert_eq!(seen.query.as_deref(), Some("x=1"));
    // `auto` over TLS: the upstream's ALPN chose HTTP/2.
    assert_eq!(seen.version, "HTTP/2.0");
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_a_502_and_nothing_is_sent() {
    let logs = logs::capture();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("upstream CA");
    let other = Ca::new("some other CA");
    let up = tls_upstream(&ca.server(), None).await;
    let ca_file = other.write(dir.path(), "other");
    let gw = spawn_proxy_only(&route(
        &up.url(),
        &format!("ca_file: {}", ca_file.display()),
    ))
    .await;
    let resp = common::client().get(gw.url("/x")).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "bad_gateway");
    assert!(
        up.requests().is_empty(),
        "no request may reach an unverified upstream"
    );
    let tls_errors =
        common::metric(&gw.admin, "tollgate_upstream_errors_total{kind=\"tls\"}").await;
    assert!(
        tls_errors >= 1.0,
        "TLS failures are counted apart: {tls_errors}"
    );
    assert_logged(
        &logs,
        &up,
        "certificate_unknown_issuer",
        &["not signed by a CA Tollgate trusts", "tls.ca_file"],
    );
}

#[tokio::test]
async fn an_expired_upstream_certificate_is_a_502() {
    let logs = logs::capture();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("upstream CA");
    let up = tls_upstream(&ca.expired_server(), None).await;
    let ca_file = ca.write(dir.path(), "ca");
    let gw = spawn_proxy_only(&route(
        &up.url(),
        &format!("ca_file: {}", ca_file.display()),
    ))
    .await;
    assert_eq!(status(&gw, "/x").await, 502);
    assert!(up.requests().is_empty());
    assert_logged(
        &logs,
        &up,
        "certificate_expired",
        &[
            "expired at 2021-01-01T00:00:00Z",
            "renew it on the upstream",
        ],
    );
}

#[tokio::test]
async fn a_ca_certificate_served_as_the_upstreams_own_is_a_502_that_says_so() {
    let logs = logs::capture();
    let dir = tempfile::tempdir().unwrap();
    // The operator made a CA, trusted it, and served the CA certificate itself.
    let served = pki::ca_as_server();
    let up = tls_upstream(&served, None).await;
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &served.cert_pem).unwrap();
    let gw = spawn_proxy_only(&route(
        &up.url(),
        &format!("ca_file: {}", ca_file.display()),
    ))
    .await;
    assert_eq!(status(&gw, "/x").await, 502);
    assert!(up.requests().is_empty());
    assert_logged(
        &logs,
        &up,
        "ca_certificate_as_server_certificate",
        &[
            "the upstream's certificate is a CA certificate (basicConstraints CA:TRUE)",
            "issue a leaf certificate",
        ],
    );
}

#[tokio::test]
async fn server_name_replaces_the_target_host_for_sni_and_verification() {
    let logs = logs::capture();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("upstream CA");
    let up = tls_upstream(&ca.server(), None).await;
    let ca_file = ca.write(dir.path(), "ca");
    // The certificate names localhost and 127.0.0.1, not this name.
    let gw = spawn_proxy_only(&route(
        &up.url(),
        &format!("ca_file: {}, server_name: api.internal", ca_file.display()),
    ))
    .await;
    assert_eq!(status(&gw, "/x").await, 502);
    assert_logged(
        &logs,
        &up,
        "certificate_name_mismatch",
        &[
            "not valid for api.internal (it names localhost, 127.0.0.1)",
            "server_name",
        ],
    );
    let gw = spawn_proxy_only(&route(
        &up.url(),
        &format!("ca_file: {}, server_name: localhost", ca_file.display()),
    ))
    .await;
    assert_eq!(status(&gw, "/x").await, 200);
}

#[tokio::test]
async fn an_upstream_that_requires_a_client_certificate_gets_one_or_the_request_fails() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("upstream CA");
    let clients = Ca::new("gateway clients CA");
    let up = tls_upstream(&ca.server(), Some(&clients)).await;
    let ca_file = ca.write(dir.path(), "ca");

    // Without a client certificate the upstream refuses the handshake.
    let gw = spawn_proxy_only(&route(
        &up.url(),
        &format!("ca_file: {}", ca_file.display()),
    ))
    .await;
    assert_eq!(status(&gw, "/x").await, 502);
    assert!(up.requests().is_empty());

    // With one, it answers.
    let (cert, key) = clients.client("tollgate-gateway").write(dir.path(), "gw");
    let gw = spawn_proxy_only(&route(
        &up.url(),
        &format!(
            "ca_file: {}, client_cert: {}, client_key: {}",
            ca_file.display(),
            cert.display(),
            key.display()
        ),
    ))
    .await;
    assert_eq!(status(&gw, "/x").await, 200);
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn the_client_certificate_is_reloaded_when_its_files_change() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("upstream CA");
    let clients = Ca::new("gateway clients CA");
    let stranger = Ca::new("unknown CA");
    let up = tls_upstream(&ca.server(), Some(&clients)).await;
    let ca_file = ca.write(dir.path(), "ca");
    // First a certificate the upstream does not accept.
    let (cert, key) = stranger.client("tollgate-gateway").write(dir.path(), "gw");
    let gw = spawn_proxy_only(&route(
        &up.url(),
        &format!(
            "ca_file: {}, client_cert: {}, client_key: {}",
            ca_file.display(),
            cert.display(),
            key.display()
        ),
    ))
    .await;
    assert_eq!(status(&gw, "/x").await, 502);

    // Rotate it, as cert-manager would: write then rename.
    let good = clients.client("tollgate-gateway");
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let (c2, k2) = good.write(&tmp, "gw");
    std::fs::rename(&k2, &key).unwrap();
    std::fs::rename(&c2, &cert).unwrap();
    wait_until(
        Duration::from_secs(10),
        "the new client certificate is used",
        || async { status(&gw, "/x").await == 200 },
    )
    .await;
}

#[tokio::test]
async fn tls_settings_on_plain_targets_and_mixed_schemes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca_file = Ca::new("x").write(dir.path(), "ca");
    let bad = [
        route(
            "http://127.0.0.1:1",
            &format!("ca_file: {}", ca_file.display()),
        ),
        "routes:\n  - name: api\n    path: /\n    upstream: { targets: [http://127.0.0.1:1, https://127.0.0.1:2] }\n".to_string(),
        route("https://127.0.0.1:1", "client_cert: /nonexistent.crt"),
        route(
            "https://127.0.0.1:1",
            &format!("ca_file: {}", dir.path().join("missing.pem").display()),
        ),
    ];
    for yaml in bad {
        let full = common::complete_yaml(&yaml, dir.path());
        let err = tollgate::config::Config::from_yaml_with_env(&full, None)
            .expect_err(&yaml)
            .to_string();
        assert!(err.contains("routes[0]"), "{err}");
    }
    // An https:// target without a tls section is fine: the system's CA store verifies it.
    let ok = "routes:\n  - name: api\n    path: /\n    upstream: https://api.example.com\n";
    tollgate::config::Config::from_yaml_with_env(&common::complete_yaml(ok, dir.path()), None)
        .unwrap();
}
