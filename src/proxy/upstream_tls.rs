//! TLS from Tollgate to `https://` upstreams (rustls).
//!
//! Threat model: someone between Tollgate and the upstream (another tenant on the network,
//! a hijacked DNS name) impersonates the upstream to read identity headers and request
//! bodies, or a client certificate is taken to mean more than it should. So: the server
//! certificate is always verified, against the machine's CA store or the route's own
//! `ca_file`, for the target's host or the configured `server_name`; there is no switch to
//! turn verification off. A CA file or client certificate that cannot be loaded leaves the
//! upstream with no trust anchor or no certificate, so requests fail (502), never pass
//! unverified. CA bundle and client certificate are re-read when their files change (an
//! `ArcSwap` each, read on every handshake), so rotating them needs no restart; a bad new
//! file is logged and the previous one stays.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::raw::{TlsVersion, UpstreamProtocol};
use crate::config::UpstreamTlsSpec;
use crate::server::tls::{load_ca_bundle, load_certified_key, TlsError};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The machine's CA store, read once per process (it takes milliseconds and does not change
/// under a running process in any way we could notice).
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "reading the system CA store");
            }
            let mut store = RootCertStore::empty();
            let (added, ignored) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::error!("the system CA store holds no usable certificate; https:// upstreams without tls.ca_file will fail verification");
            }
            tracing::debug!(added, ignored, "system CA store loaded");
            Arc::new(store)
        })
        .clone()
}

fn verifier_for(roots: Arc<RootCertStore>) -> Result<Arc<WebPkiServerVerifier>, TlsError> {
    WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))
}

/// Verifies upstream certificates against the current CA bundle.
#[derive(Debug)]
struct ReloadingVerifier {
    current: ArcSwap<WebPkiServerVerifier>,
    ca_file: Option<PathBuf>,
}

impl ReloadingVerifier {
    fn load(ca_file: Option<&PathBuf>) -> Self {
        let roots = match ca_file {
            None => system_roots(),
            Some(p) => match load_ca_bundle(p) {
                Ok(r) => Arc::new(r),
                Err(e) => {
                    // Fail closed: no trust anchor means every handshake fails.
                    tracing::error!(error = %e, "upstream CA bundle not loaded; its upstream's requests will fail");
                    Arc::new(RootCertStore::empty())
                }
            },
        };
        // An empty store makes the builder refuse; the stand-in verifies nothing.
        let verifier = verifier_for(roots).unwrap_or_else(|_| unreachable_verifier());
        ReloadingVerifier {
            current: ArcSwap::new(verifier),
            ca_file: ca_file.cloned(),
        }
    }

    fn reload(&self) -> Result<(), TlsError> {
        if let Some(p) = &self.ca_file {
            let v = verifier_for(Arc::new(load_ca_bundle(p)?))?;
            self.current.store(v);
        }
        Ok(())
    }
}

/// A verifier whose only trust anchor is a certificate made here and thrown away, so
/// nothing verifies: what an upstream gets when its CA bundle cannot be loaded.
fn unreachable_verifier() -> Arc<WebPkiServerVerifier> {
    static V: OnceLock<Arc<WebPkiServerVerifier>> = OnceLock::new();
    V.get_or_init(|| {
        let mut store = RootCertStore::empty();
        // A syntactically valid trust anchor with a random subject and key.
        let anchor = rustls::pki_types::TrustAnchor {
            subject: rustls::pki_types::Der::from_slice(&[0x30, 0x00]),
            subject_public_key_info: rustls::pki_types::Der::from_slice(&[0x30, 0x00]),
            name_constraints: None,
        };
        store.roots.push(anchor.to_owned());
        WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider())
            .build()
            .expect("a store with one anchor builds")
    })
    .clone()
}

impl ServerCertVerifier for ReloadingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.current.load().verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current
            .load()
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current
            .load()
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current.load().supported_verify_schemes()
    }
}

/// Presents the current client certificate, if any.
#[derive(Debug)]
struct ReloadingClientCert {
    current: ArcSwap<Option<Arc<CertifiedKey>>>,
    files: Option<(PathBuf, PathBuf)>,
}

impl ReloadingClientCert {
    fn load(files: Option<&(PathBuf, PathBuf)>) -> Self {
        let current = match files {
            None => None,
            Some((c, k)) => match load_certified_key(c, k) {
                Ok(ck) => Some(Arc::new(ck)),
                Err(e) => {
                    tracing::error!(error = %e, "upstream client certificate not loaded; upstreams that require one will refuse the handshake");
                    None
                }
            },
        };
        ReloadingClientCert {
            current: ArcSwap::from_pointee(current),
            files: files.cloned(),
        }
    }

    fn reload(&self) -> Result<(), TlsError> {
        if let Some((c, k)) = &self.files {
            let ck = load_certified_key(c, k)?;
            self.current.store(Arc::new(Some(Arc::new(ck))));
        }
        Ok(())
    }
}

impl ResolvesClientCert for ReloadingClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.current.load().as_ref().clone()
    }

    fn has_certs(&self) -> bool {
        self.current.load().is_some()
    }
}

/// The client side of TLS for one set of upstream settings.
pub struct UpstreamTls {
    pub config: Arc<rustls::ClientConfig>,
    /// The name verified instead of the target's host (`tls.server_name`).
    pub server_name: Option<ServerName<'static>>,
    verifier: Arc<ReloadingVerifier>,
    client_cert: Arc<ReloadingClientCert>,
}

impl UpstreamTls {
    /// Builds the rustls client configuration for `spec`, offering the ALPN protocols
    /// `protocol` allows.
    pub fn new(spec: &UpstreamTlsSpec, protocol: UpstreamProtocol) -> Result<Self, TlsError> {
        let verifier = Arc::new(ReloadingVerifier::load(spec.ca_file.as_ref()));
        let client_cert = Arc::new(ReloadingClientCert::load(spec.client_cert.as_ref()));
        let versions: &[&'static rustls::SupportedProtocolVersion] = match spec.min_version {
            TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .map_err(|e| TlsError::Config(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_client_cert_resolver(client_cert.clone());
        config.alpn_protocols = match protocol {
            UpstreamProtocol::H1 => vec![b"http/1.1".to_vec()],
            UpstreamProtocol::H2 | UpstreamProtocol::H2c => vec![b"h2".to_vec()],
            UpstreamProtocol::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        };
        let server_name = match &spec.server_name {
            Some(n) => Some(
                ServerName::try_from(n.clone())
                    .map_err(|_| TlsError::Config(format!("`{n}` is not a server name")))?,
            ),
            None => None,
        };
        Ok(UpstreamTls {
            config: Arc::new(config),
            server_name,
            verifier,
            client_cert,
        })
    }

    /// A configuration for pools that only ever reach `http://` targets: the connector
    /// needs one, and it is never used.
    pub fn unused() -> Arc<rustls::ClientConfig> {
        static CFG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
        CFG.get_or_init(|| {
            Arc::new(
                rustls::ClientConfig::builder_with_provider(provider())
                    .with_safe_default_protocol_versions()
                    .expect("default versions")
                    .dangerous()
                    .with_custom_certificate_verifier(unreachable_verifier())
                    .with_no_client_auth(),
            )
        })
        .clone()
    }

    /// The files whose change should trigger [`UpstreamTls::reload`].
    pub fn watched_files(spec: &UpstreamTlsSpec) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = spec.ca_file.iter().cloned().collect();
        if let Some((c, k)) = &spec.client_cert {
            files.push(c.clone());
            files.push(k.clone());
        }
        files
    }

    /// Re-reads the CA bundle and the client certificate; what fails to load keeps its
    /// previous value.
    pub fn reload(&self) {
        let mut results = Vec::with_capacity(2);
        if self.verifier.ca_file.is_some() {
            results.push(("CA bundle", self.verifier.reload()));
        }
        if self.client_cert.files.is_some() {
            results.push(("client certificate", self.client_cert.reload()));
        }
        for (what, result) in results {
            match result {
                Ok(()) => {
                    metrics::counter!("tollgate_upstream_tls_reloads_total", "result" => "success")
                        .increment(1);
                    tracing::info!("upstream TLS {what} reloaded");
                }
                Err(e) => {
                    metrics::counter!("tollgate_upstream_tls_reloads_total", "result" => "failure")
                        .increment(1);
                    tracing::error!(error = %e, "upstream TLS {what} reload failed; the previous one stays");
                }
            }
        }
    }
}

/// Whether `e` (a client error and its sources) is a TLS failure, and its description:
/// a certificate the upstream presented that does not verify, or a handshake the upstream
/// refused (e.g. it wanted a client certificate).
pub fn tls_failure(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(r) = c.downcast_ref::<rustls::Error>() {
            return Some(r.to_string());
        }
        // An `io::Error` hides what it wraps from `source()`; the connector nests two.
        let mut io = c.downcast_ref::<std::io::Error>();
        while let Some(inner) = io.and_then(|e| e.get_ref()) {
            if let Some(r) = inner.downcast_ref::<rustls::Error>() {
                return Some(r.to_string());
            }
            io = inner.downcast_ref::<std::io::Error>();
        }
        cur = c.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unloadable_ca_bundle_verifies_nothing() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let missing = PathBuf::from("/nonexistent/ca.pem");
        let v = ReloadingVerifier::load(Some(&missing));
        let name = ServerName::try_from("localhost").unwrap();
        let r = v.verify_server_cert(cert.der(), &[], &name, &[], UnixTime::now());
        assert!(r.is_err(), "{r:?}");
        // And a failed reload keeps failing closed.
        assert!(v.reload().is_err());
        assert!(v
            .verify_server_cert(cert.der(), &[], &name, &[], UnixTime::now())
            .is_err());
    }
}
