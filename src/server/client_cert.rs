//! Client certificates on the HTTPS listener (`tls.client_ca`, `tls.client_auth`).
//!
//! Threat model: a client claims an identity it does not hold. rustls verifies the chain
//! against `client_ca` during the handshake (signature, validity, `clientAuth` usage);
//! only a verified certificate yields a [`ClientCert`], and only what the handshake
//! verified is exposed: the subject as the certificate states it and the SHA-256 of its
//! DER encoding. With `client_auth: required` a handshake without a valid certificate
//! fails; with `optional` a client may present none, but one it presents must verify.
//! The CA bundle is re-read when its file changes; a bad new file keeps the old one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use sha2::{Digest, Sha256};

use super::tls::TlsError;
pub use crate::http::ClientCert;

impl ClientCert {
    /// The facts of a certificate the handshake has verified.
    pub fn from_verified(der: &CertificateDer<'_>) -> ClientCert {
        ClientCert::from_der(der.as_ref()).unwrap_or_else(|| ClientCert {
            // rustls has parsed and verified it, so this does not happen; an empty subject
            // still leaves the thumbprint, which is what pins a certificate.
            subject: String::new(),
            sha256: Sha256::digest(der.as_ref()).into(),
        })
    }

    /// The thumbprint as lower-case hex (what `openssl x509 -fingerprint -sha256` prints,
    /// without the colons).
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }
}

fn build(path: &Path, required: bool) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = WebPkiClientVerifier::builder_with_provider(
        Arc::new(super::tls::load_ca_bundle(path)?),
        provider,
    );
    let builder = if required {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    builder.build().map_err(|e| TlsError::Config(e.to_string()))
}

/// Verifies client certificates against the current `client_ca` bundle.
#[derive(Debug)]
pub struct ReloadingClientVerifier {
    current: ArcSwap<Arc<dyn ClientCertVerifier>>,
    path: PathBuf,
    required: bool,
}

impl ReloadingClientVerifier {
    pub fn load(path: &Path, required: bool) -> Result<Arc<Self>, TlsError> {
        Ok(Arc::new(ReloadingClientVerifier {
            current: ArcSwap::from_pointee(build(path, required)?),
            path: path.to_path_buf(),
            required,
        }))
    }

    /// Re-reads the CA bundle; on failure the current one stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        self.current
            .store(Arc::new(build(&self.path, self.required)?));
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl ClientCertVerifier for ReloadingClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.required
    }

    /// No CA hints: the hint list would have to outlive a reload. Clients send the
    /// certificate they are configured with either way.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current
            .load()
            .verify_client_cert(end_entity, intermediates, now)
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
