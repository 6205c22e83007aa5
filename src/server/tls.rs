//! TLS termination with rustls: TLS 1.2 and 1.3 only, ALPN `h2` then `http/1.1`, and a
//! certificate that is reloaded when its files change. Each handshake reads the current
//! certificate through an `ArcSwap`, so a reload affects new connections only and never
//! drops an open one. A bad new file is logged and the old certificate stays in use.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use tokio_rustls::TlsAcceptor;

use super::client_cert::ReloadingClientVerifier;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: no certificate found in the PEM file")]
    NoCert(PathBuf),
    #[error("{0}: no private key found in the PEM file")]
    NoKey(PathBuf),
    #[error("{path}: unsupported private key: {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// A PEM bundle of CA certificates as a root store: the upstream CA bundle and the
/// listener's `client_ca` both load through here. A file without one usable certificate
/// is an error, never an empty (trust-nothing or trust-anything) store.
pub fn load_ca_bundle(path: &Path) -> Result<RootCertStore, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TlsError::NoCert(path.to_path_buf()));
    }
    Ok(store)
}

/// Loads a certificate chain and key from PEM files.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| TlsError::Read {
            path: p.to_path_buf(),
            source,
        })
    };
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCert(cert.to_path_buf()));
    }
    let key_der =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoKey(key.to_path_buf()))?;
    let signing_key =
        rustls::crypto::ring::sign::any_supported_type(&key_der).map_err(|e| TlsError::BadKey {
            path: key.to_path_buf(),
            reason: e.to_string(),
        })?;
    Ok(CertifiedKey::new(certs, signing_key))
}

/// Serves whatever certificate is current.
#[derive(Debug)]
pub struct ReloadingCert {
    current: ArcSwap<CertifiedKey>,
    cert_path: PathBuf,
    key_path: PathBuf,
}

impl ReloadingCert {
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Self>, TlsError> {
        let ck = load_certified_key(cert, key)?;
        Ok(Arc::new(ReloadingCert {
            current: ArcSwap::from_pointee(ck),
            cert_path: cert.to_path_buf(),
            key_path: key.to_path_buf(),
        }))
    }

    /// Re-reads the files; on failure the current certificate stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let ck = load_certified_key(&self.cert_path, &self.key_path)?;
        self.current.store(Arc::new(ck));
        Ok(())
    }

    pub fn paths(&self) -> [&Path; 2] {
        [&self.cert_path, &self.key_path]
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// A cheap handle that builds acceptors over the reloading certificate.
#[derive(Clone)]
pub struct TlsAcceptorSource {
    acceptor: TlsAcceptor,
    pub cert: Arc<ReloadingCert>,
    /// Present when the listener asks for client certificates (`tls.client_ca`).
    pub client_ca: Option<Arc<ReloadingClientVerifier>>,
}

impl TlsAcceptorSource {
    pub fn new(
        cert: Arc<ReloadingCert>,
        client_ca: Option<Arc<ReloadingClientVerifier>>,
    ) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match &client_ca {
            Some(v) => builder.with_client_cert_verifier(v.clone()),
            None => builder.with_no_client_auth(),
        };
        let mut cfg = builder.with_cert_resolver(cert.clone());
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsAcceptorSource {
            acceptor: TlsAcceptor::from(Arc::new(cfg)),
            cert,
            client_ca,
        })
    }

    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }
}
