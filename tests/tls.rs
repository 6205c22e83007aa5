//! TLS termination: ALPN h2 and http/1.1, TLS 1.2+, and certificate reload without
//! restart and without dropping an open connection.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{spawn_proxy_only, Upstream};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};

struct Pem {
    cert: String,
    key: String,
    der: CertificateDer<'static>,
}

fn self_signed(cn: &str) -> Pem {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
        der: cert.der().clone(),
    }
}

fn tls_client(roots: &[&CertificateDer<'static>], alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add((*r).clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

async fn gateway_with(pem: &Pem) -> (Upstream, common::TestGateway) {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, &pem.cert).unwrap();
    std::fs::write(&key, &pem.key).unwrap();
    let gw = spawn_proxy_only(&format!(
        "listen:\n  http: 127.0.0.1:0\n  https: 127.0.0.1:0\n  admin: 127.0.0.1:0\ntls:\n  cert: {}\n  key: {}\nroutes:\n  - name: all\n    path: /\n    upstream: {}\n",
        cert.display(),
        key.display(),
        up.url()
    ))
    .await;
    // Keep the cert dir alive for the test's duration.
    std::mem::forget(dir);
    (up, gw)
}

#[tokio::test]
async fn alpn_negotiates_h2_and_http11_and_without_alpn_the_first_bytes_decide() {
    let pem = self_signed("first");
    let (up, gw) = gateway_with(&pem).await;
    let addr = gw.gateway.https_addr.unwrap();
    // Without ALPN the client may speak either protocol; the first bytes decide.
    for (alpn, want) in [
        (Some(&b"h2"[..]), http::Version::HTTP_2),
        (Some(&b"http/1.1"[..]), http::Version::HTTP_11),
        (None, http::Version::HTTP_2),
        (None, http::Version::HTTP_11),
    ] {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let offered: Vec<&[u8]> = alpn.into_iter().collect();
        let tls = tls_client(&[&pem.der], &offered)
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), alpn);
        let version = tls.get_ref().1.protocol_version().unwrap();
        assert!(matches!(
            version,
            rustls::ProtocolVersion::TLSv1_3 | rustls::ProtocolVersion::TLSv1_2
        ));
        let req = http::Request::get("https://localhost/tls-check")
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = if want == http::Version::HTTP_2 {
            let (mut send, conn) = hyper::client::conn::http2::handshake(
                hyper_util::rt::TokioExecutor::new(),
                TokioIo::new(tls),
            )
            .await
            .unwrap();
            tokio::spawn(conn);
            send.send_request(req).await.unwrap()
        } else {
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .unwrap();
            tokio::spawn(conn);
            let mut req = req;
            req.headers_mut()
                .insert("host", "localhost".parse().unwrap());
            send.send_request(req).await.unwrap()
        };
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), want);
    }
    let seen = up.last();
    assert_eq!(seen.path, "/tls-check");
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
}

#[tokio::test]
async fn certificate_reload_keeps_open_connections() {
    let first = self_signed("first");
    let second = self_signed("second");
    let (_up, gw) = gateway_with(&first).await;
    let addr = gw.gateway.https_addr.unwrap();
    let cert_path = {
        // The cert path is in the running config.
        let rt = gw.gateway.app.generation();
        rt.config.tls.as_ref().unwrap().clone()
    };

    // An open HTTP/1.1 keep-alive connection made with the first certificate.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tls_client(&[&first.der], &[b"http/1.1"])
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let get = || {
        http::Request::get("/one")
            .header("host", "localhost")
            .body(Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    assert_eq!(send.send_request(get()).await.unwrap().status(), 200);

    // Rotate: key first, then cert, as a cert manager would.
    std::fs::write(&cert_path.key, &second.key).unwrap();
    std::fs::write(&cert_path.cert, &second.cert).unwrap();

    // New handshakes see the new certificate soon.
    let second_der = second.der.clone();
    common::wait_until(
        Duration::from_secs(10),
        "the new certificate is served",
        || {
            let der = second_der.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                match tls_client(&[&der], &[b"http/1.1"])
                    .connect(ServerName::try_from("localhost").unwrap(), tcp)
                    .await
                {
                    Ok(s) => s.get_ref().1.peer_certificates().unwrap()[0] == der,
                    Err(_) => false,
                }
            }
        },
    )
    .await;

    // The connection opened before the reload still works.
    let resp = send.send_request(get()).await.unwrap();
    assert_eq!(resp.status(), 200);
    let _ = resp.into_body().collect().await.unwrap();
}

#[tokio::test]
async fn broken_certificate_file_keeps_the_old_one() {
    let first = self_signed("first");
    let (_up, gw) = gateway_with(&first).await;
    let addr = gw.gateway.https_addr.unwrap();
    let paths = gw.gateway.app.generation().config.tls.clone().unwrap();
    std::fs::write(&paths.cert, "not a certificate").unwrap();
    // Wait until the watcher has tried the broken file and refused it.
    let metrics_url = format!("{}/metrics", gw.admin);
    common::wait_until(
        Duration::from_secs(10),
        "the TLS reload failure is counted",
        || {
            let url = metrics_url.clone();
            async move {
                let text = common::client()
                    .get(url)
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                text.contains(r#"tollgate_tls_reloads_total{result="failure"}"#)
            }
        },
    )
    .await;
    // Every handshake still presents the first certificate.
    for _ in 0..3 {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let s = tls_client(&[&first.der], &[b"http/1.1"])
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        assert_eq!(s.get_ref().1.peer_certificates().unwrap()[0], first.der);
    }
}
