//! Client certificates on the HTTPS listener: `tls.client_ca` with `client_auth:
//! optional | required`, routes that require a verified certificate, and the subject and
//! SHA-256 thumbprint injected as identity headers (inbound copies always stripped).

mod common;

use std::sync::Arc;

use common::pki::{self, Ca};
use common::{spawn_proxy_only, Upstream};
use sha2::{Digest, Sha256};

struct Setup {
    gw: common::TestGateway,
    up: Upstream,
    server_ca: Ca,
    clients: Ca,
    _dir: tempfile::TempDir,
}

async fn setup(client_auth: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = Ca::new("gateway CA");
    let clients = Ca::new("clients CA");
    let (cert, key) = server_ca.server().write(dir.path(), "tls");
    let client_ca = clients.write(dir.path(), "clients");
    let up = Upstream::start().await;
    let gw = spawn_proxy_only(&format!(
        "listen:\n  http: 127.0.0.1:0\n  https: 127.0.0.1:0\n  admin: 127.0.0.1:0\n\
         tls:\n  cert: {}\n  key: {}\n  client_ca: {}\n  client_auth: {client_auth}\n\
         identity_headers:\n  client_cert_subject: X-Client-Cert-Subject\n  client_cert_sha256: X-Client-Cert-Sha256\n\
         routes:\n  - name: mtls\n    path: /mtls\n    upstream: {}\n    require_client_cert: true\n\
         \x20 - name: open\n    path: /\n    upstream: {}\n",
        cert.display(),
        key.display(),
        client_ca.display(),
        up.url(),
        up.url(),
    ))
    .await;
    Setup {
        gw,
        up,
        server_ca,
        clients,
        _dir: dir,
    }
}

fn client(s: &Setup, cert: Option<&pki::Issued>) -> reqwest::Client {
    let cfg = pki::client_config(&s.server_ca, cert, &[b"h2", b"http/1.1"]);
    reqwest::Client::builder()
        .use_preconfigured_tls(Arc::unwrap_or_clone(cfg))
        .no_proxy()
        .build()
        .unwrap()
}

fn https(s: &Setup, path: &str) -> String {
    format!("https://{}{path}", s.gw.gateway.https_addr.unwrap())
}

#[tokio::test]
async fn a_verified_certificate_reaches_the_upstream_as_subject_and_thumbprint() {
    let s = setup("optional").await;
    let alice = s.clients.client("alice");
    let resp = client(&s, Some(&alice))
        .get(https(&s, "/mtls/orders"))
        .header("X-Client-Cert-Subject", "CN=admin")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = s.up.last();
    let subject = seen.header("x-client-cert-subject").unwrap();
    assert!(subject.contains("CN=alice"), "{subject}");
    assert!(subject.contains("O=Tollgate Tests"), "{subject}");
    assert_eq!(
        seen.header("x-client-cert-sha256").unwrap(),
        hex::encode(Sha256::digest(alice.der.as_ref()))
    );
    assert_eq!(
        seen.headers["x-client-cert-subject"].len(),
        1,
        "the spoofed copy is gone"
    );
}

#[tokio::test]
async fn with_optional_client_auth_a_route_that_requires_a_certificate_refuses_requests_without() {
    let s = setup("optional").await;
    let anonymous = client(&s, None);
    let resp = anonymous.get(https(&s, "/mtls")).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "access_denied");

    // Other routes serve, and a spoofed certificate header never passes.
    let resp = anonymous
        .get(https(&s, "/other"))
        .header("X-Client-Cert-Subject", "CN=admin")
        .header("X-Client-Cert-Sha256", "00")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = s.up.last();
    assert!(seen.header("x-client-cert-subject").is_none());
    assert!(seen.header("x-client-cert-sha256").is_none());

    // Plain HTTP has no client certificate either.
    let resp = common::client()
        .get(s.gw.url("/mtls"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

#[tokio::test]
async fn a_certificate_from_an_unknown_ca_fails_the_handshake_even_when_optional() {
    let s = setup("optional").await;
    let mallory = Ca::new("unknown CA").client("mallory");
    let err = client(&s, Some(&mallory))
        .get(https(&s, "/other"))
        .send()
        .await;
    assert!(err.is_err(), "{err:?}");
    assert!(s.up.requests().is_empty());
}

#[tokio::test]
async fn with_required_client_auth_a_client_without_a_certificate_cannot_connect() {
    let s = setup("required").await;
    let err = client(&s, None).get(https(&s, "/other")).send().await;
    assert!(err.is_err(), "{err:?}");
    let bob = s.clients.client("bob");
    let resp = client(&s, Some(&bob))
        .get(https(&s, "/other"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn requiring_a_client_certificate_without_a_client_ca_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "routes:\n  - name: mtls\n    path: /\n    upstream: http://127.0.0.1:1\n    require_client_cert: true\n";
    let err = tollgate::config::Config::from_yaml_with_env(
        &common::complete_yaml(yaml, dir.path()),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("require_client_cert"), "{err}");
}
