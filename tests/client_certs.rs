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
    setup_with(client_auth, "").await
}

/// `extra` is more top-level YAML (forward-auth, trusted proxies).
async fn setup_with(client_auth: &str, extra: &str) -> Setup {
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
         \x20 - name: open\n    path: /\n    upstream: {}\n{extra}",
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

fn percent(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn ask_about_mtls(s: &Setup) -> reqwest::RequestBuilder {
    common::client()
        .get(s.gw.url("/_auth"))
        .header("X-Forwarded-Method", "GET")
        .header("X-Forwarded-Uri", "/mtls/orders")
}

/// The regression: forward-auth once skipped `require_client_cert` and allowed a route
/// that requires a certificate to a caller with none. It is the proxy's one admission
/// decision now, so it answers 403, and a certificate header from a peer that is not a
/// trusted proxy is not a certificate.
#[tokio::test]
async fn forward_auth_refuses_a_route_that_requires_a_certificate_when_there_is_none() {
    let s = setup_with(
        "optional",
        "forward_auth:\n  path: /_auth\n  client_cert_header: x-forwarded-client-cert\ntrusted_proxies: [10.0.0.0/8]\n",
    )
    .await;
    let resp = ask_about_mtls(&s).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "access_denied");
    // Envoy's path-prefix shape too.
    let resp = common::client()
        .get(s.gw.url("/_auth/mtls/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    // 127.0.0.1 is not a trusted proxy: whatever certificate it reports is ignored.
    let alice = s.clients.client("alice");
    let hash = hex::encode(Sha256::digest(alice.der.as_ref()));
    for (name, value) in [
        ("x-forwarded-client-cert", format!("Hash={hash}")),
        ("ssl-client-cert", percent(&alice.cert_pem)),
        ("x-forwarded-tls-client-cert", percent(&alice.cert_pem)),
    ] {
        let resp = ask_about_mtls(&s).header(name, value).send().await.unwrap();
        assert_eq!(resp.status(), 403, "{name} from an untrusted peer");
    }
    // Routes without the requirement still answer.
    let resp = common::client()
        .get(s.gw.url("/_auth"))
        .header("X-Forwarded-Uri", "/other")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

/// Behind a trusted proxy, the certificate it reports in the header the operator named
/// (`forward_auth.client_cert_header`: Envoy `Hash=`/`Cert=`, nginx's escaped PEM,
/// Traefik's base64 DER) satisfies the route and is answered as identity headers; one it
/// cannot read is no certificate, and another header, which that proxy would pass through
/// from the client, is never read.
#[tokio::test]
async fn forward_auth_believes_only_the_named_header_of_a_trusted_proxy() {
    let alice_ca = Ca::new("any CA");
    let alice = alice_ca.client("alice");
    let hash = hex::encode(Sha256::digest(alice.der.as_ref()));
    let bare: String = alice
        .cert_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let xfcc_hash = format!("Hash={hash};Subject=\"CN=alice\"");
    let xfcc_cert = format!("Hash={hash};Cert=\"{}\"", percent(&alice.cert_pem));
    let cases = [
        ("x-forwarded-client-cert", vec![xfcc_hash, xfcc_cert]),
        ("ssl-client-cert", vec![percent(&alice.cert_pem)]),
        ("x-forwarded-tls-client-cert", vec![percent(&bare)]),
    ];
    for (header, values) in cases {
        let s = setup_with(
            "optional",
            &format!(
                "forward_auth:\n  path: /_auth\n  client_cert_header: {header}\ntrusted_proxies: [127.0.0.1/32]\n"
            ),
        )
        .await;
        for value in &values {
            let resp = ask_about_mtls(&s)
                .header(header, value)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{header}: {value}");
            assert_eq!(resp.headers()["x-client-cert-sha256"], hash.as_str());
            let got = resp.headers()["x-client-cert-subject"].to_str().unwrap();
            assert!(got.contains("CN=alice"), "{header}: {got}");
        }
        // The other forms are a client's, passed through by this proxy.
        for (other, other_values) in &cases_values(&hash, &alice.cert_pem, &bare) {
            if *other == header {
                continue;
            }
            let resp = ask_about_mtls(&s)
                .header(*other, &other_values[0])
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 403, "{other} read while {header} is named");
        }
        for garbage in [
            "Hash=00",
            "Cert=\"-----BEGIN%20CERTIFICATE-----\"",
            "By=x",
            "%%%",
        ] {
            let resp = ask_about_mtls(&s)
                .header(header, garbage)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 403, "{header}: {garbage}");
        }
    }
}

fn cases_values(hash: &str, pem: &str, bare: &str) -> Vec<(&'static str, Vec<String>)> {
    vec![
        ("x-forwarded-client-cert", vec![format!("Hash={hash}")]),
        ("ssl-client-cert", vec![percent(pem)]),
        ("x-forwarded-tls-client-cert", vec![percent(bare)]),
    ]
}

/// On the proxy the certificate is the handshake's: a client's certificate headers never
/// reach the upstream, even from a trusted proxy's address.
#[tokio::test]
async fn the_proxy_strips_certificate_headers_from_clients() {
    let s = setup_with("optional", "trusted_proxies: [127.0.0.1/32]\n").await;
    let resp = common::client()
        .get(s.gw.url("/other"))
        .header("x-forwarded-client-cert", "Hash=00")
        .header("ssl-client-cert", "x")
        .header("X-Forwarded-Tls-Client-Cert", "x")
        .header("X_Forwarded_Client_Cert", "x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = s.up.last();
    for h in [
        "x-forwarded-client-cert",
        "ssl-client-cert",
        "x-forwarded-tls-client-cert",
        "x_forwarded_client_cert",
    ] {
        assert!(!seen.headers.contains_key(h), "{h}: {:?}", seen.headers);
    }
    // And a trusted proxy's report does not satisfy a proxied route: only a handshake does.
    let resp = common::client()
        .get(s.gw.url("/mtls"))
        .header("x-forwarded-client-cert", "Hash=00")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}
