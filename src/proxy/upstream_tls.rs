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

/// An upstream TLS failure as an operator can act on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFailure {
    /// A short stable name for the log's `problem` field.
    pub problem: &'static str,
    /// What went wrong and what to do, in plain words.
    pub advice: String,
    /// rustls's own description.
    pub detail: String,
}

/// Whether `e` (a client error and its sources) is a TLS failure, and what it means: a
/// certificate the upstream presented that does not verify, or a handshake the upstream
/// refused (e.g. it wanted a client certificate).
pub fn tls_failure(e: &(dyn std::error::Error + 'static)) -> Option<TlsFailure> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(r) = c.downcast_ref::<rustls::Error>() {
            return Some(explain(r));
        }
        // An `io::Error` hides what it wraps from `source()`; the connector nests two.
        let mut io = c.downcast_ref::<std::io::Error>();
        while let Some(inner) = io.and_then(|e| e.get_ref()) {
            if let Some(r) = inner.downcast_ref::<rustls::Error>() {
                return Some(explain(r));
            }
            io = inner.downcast_ref::<std::io::Error>();
        }
        cur = c.source();
    }
    None
}

/// A UNIX time as an operator reads it.
fn when(t: UnixTime) -> String {
    i64::try_from(t.as_secs())
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| format!("{} (UNIX seconds)", t.as_secs()))
}

/// A subject name as webpki reports it (`DnsName("api.internal")`, `IpAddress(10.0.0.7)`)
/// as an operator writes it.
fn plain_name(n: &str) -> &str {
    n.strip_prefix("DnsName(\"")
        .and_then(|r| r.strip_suffix("\")"))
        .or_else(|| {
            n.strip_prefix("IpAddress(")
                .and_then(|r| r.strip_suffix(')'))
        })
        .unwrap_or(n)
}

/// The plain-words reading of a rustls error met while connecting to an upstream.
pub fn explain(e: &rustls::Error) -> TlsFailure {
    use rustls::{AlertDescription, CertificateError};
    let (problem, advice) = match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::Other(o)
                if matches!(
                    o.0.downcast_ref::<webpki::Error>(),
                    Some(webpki::Error::CaUsedAsEndEntity)
                ) =>
            {
                (
                    "ca_certificate_as_server_certificate",
                    "the upstream's certificate is a CA certificate (basicConstraints CA:TRUE), \
                     not a server certificate; issue a leaf certificate (CA:FALSE, the \
                     upstream's name in subjectAltName) signed by that CA and serve it with \
                     its chain"
                        .to_owned(),
                )
            }
            CertificateError::Expired => (
                "certificate_expired",
                "the upstream's certificate (or one in its chain) has expired; renew it on \
                 the upstream"
                    .to_owned(),
            ),
            CertificateError::ExpiredContext { time, not_after } => (
                "certificate_expired",
                format!(
                    "the upstream's certificate (or one in its chain) expired at {} (it is now \
                     {}); renew it on the upstream",
                    when(*not_after),
                    when(*time)
                ),
            ),
            CertificateError::NotValidYet => (
                "certificate_not_yet_valid",
                "the upstream's certificate is not valid yet; check the clock of this host \
                 and the certificate's notBefore"
                    .to_owned(),
            ),
            CertificateError::NotValidYetContext { time, not_before } => (
                "certificate_not_yet_valid",
                format!(
                    "the upstream's certificate is valid only from {} (it is now {}); check \
                     the clock of this host and the certificate's notBefore",
                    when(*not_before),
                    when(*time)
                ),
            ),
            CertificateError::NotValidForName => (
                "certificate_name_mismatch",
                "the upstream's certificate does not name the host Tollgate connects to; add \
                 that name to its subjectAltName, or set the route's upstream.tls.server_name \
                 to a name it carries"
                    .to_owned(),
            ),
            CertificateError::NotValidForNameContext {
                expected,
                presented,
            } => (
                "certificate_name_mismatch",
                format!(
                    "the upstream's certificate is not valid for {} (it names {}); add that \
                     name to its subjectAltName, or set the route's upstream.tls.server_name \
                     to a name it carries",
                    expected.to_str(),
                    if presented.is_empty() {
                        "no DNS or IP name".to_owned()
                    } else {
                        presented
                            .iter()
                            .map(|n| plain_name(n))
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
            ),
            CertificateError::UnknownIssuer => (
                "certificate_unknown_issuer",
                "the upstream's certificate is not signed by a CA Tollgate trusts; set the \
                 route's upstream.tls.ca_file to the CA that issued it (or the system CA \
                 store must hold it), and have the upstream send its intermediate \
                 certificates too"
                    .to_owned(),
            ),
            CertificateError::BadSignature => (
                "certificate_bad_signature",
                "a signature in the upstream's certificate chain does not verify: the chain \
                 is not what its issuer signed; reinstall the certificate and its chain on \
                 the upstream"
                    .to_owned(),
            ),
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => (
                "certificate_wrong_purpose",
                "the upstream's certificate is not for TLS servers (its extendedKeyUsage lacks \
                 serverAuth); issue one with extendedKeyUsage=serverAuth"
                    .to_owned(),
            ),
            CertificateError::Revoked => (
                "certificate_revoked",
                "the upstream's certificate has been revoked; issue it a new one".to_owned(),
            ),
            _ => (
                "certificate_invalid",
                "the upstream's certificate did not verify; check it with `openssl s_client \
                 -connect HOST:PORT -showcerts` against the route's CA"
                    .to_owned(),
            ),
        },
        rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired | AlertDescription::BadCertificate,
        ) => (
            "upstream_wants_client_certificate",
            "the upstream refused the handshake for want of an acceptable client \
             certificate; set the route's upstream.tls.client_cert and client_key to one \
             its CA issued"
                .to_owned(),
        ),
        rustls::Error::AlertReceived(AlertDescription::HandshakeFailure) => (
            "handshake_refused",
            "the upstream refused the handshake: it may want a client certificate (set the \
             route's upstream.tls.client_cert and client_key) or share no cipher suite with \
             Tollgate (TLS 1.2 and 1.3, modern suites only)"
                .to_owned(),
        ),
        rustls::Error::AlertReceived(AlertDescription::ProtocolVersion)
        | rustls::Error::PeerIncompatible(_) => (
            "no_common_tls_parameters",
            "the upstream and Tollgate share no TLS version or cipher suite (Tollgate speaks \
             TLS 1.2 and 1.3 with modern suites only); enable TLS 1.2 or 1.3 on the upstream"
                .to_owned(),
        ),
        _ => (
            "handshake_failed",
            "the TLS handshake with the upstream failed; check that the target really \
             speaks TLS on that port"
                .to_owned(),
        ),
    };
    TlsFailure {
        problem,
        advice,
        detail: e.to_string(),
    }
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

    /// The error the verifier gives for `ee` (with the CA `anchor` trusted) for `name`.
    fn refusal(anchor: &rcgen::Certificate, ee: &rcgen::Certificate, name: &str) -> rustls::Error {
        let mut roots = RootCertStore::empty();
        roots.add(anchor.der().clone()).unwrap();
        let v = verifier_for(Arc::new(roots)).unwrap();
        let name = ServerName::try_from(name.to_owned()).unwrap();
        v.verify_server_cert(ee.der(), &[], &name, &[], UnixTime::now())
            .unwrap_err()
    }

    fn ca(cn: &str, names: Vec<String>) -> (rcgen::Certificate, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(names).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        (p.self_signed(&key).unwrap(), key)
    }

    fn leaf(
        issuer: &(rcgen::Certificate, rcgen::KeyPair),
        names: &[&str],
        expired: bool,
    ) -> rcgen::Certificate {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        p.is_ca = rcgen::IsCa::ExplicitNoCa;
        if expired {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        p.signed_by(&key, &issuer.0, &issuer.1).unwrap()
    }

    #[test]
    fn each_certificate_fault_is_named_with_what_to_do() {
        let issuer = ca("upstream CA", vec![]);
        // A CA certificate served as the server's own (its own anchor, right name).
        let self_ca = ca("localhost", vec!["localhost".into()]);
        let f = explain(&refusal(&self_ca.0, &self_ca.0, "localhost"));
        assert_eq!(f.problem, "ca_certificate_as_server_certificate", "{f:?}");
        assert!(f
            .advice
            .contains("is a CA certificate (basicConstraints CA:TRUE)"));
        assert!(f.advice.contains("issue a leaf certificate"));

        let f = explain(&refusal(
            &issuer.0,
            &leaf(&issuer, &["localhost"], true),
            "localhost",
        ));
        assert_eq!(f.problem, "certificate_expired", "{f:?}");
        assert!(
            f.advice.contains("expired at 2021-01-01T00:00:00Z"),
            "{f:?}"
        );
        assert!(f.advice.contains("renew it"));

        let f = explain(&refusal(
            &issuer.0,
            &leaf(&issuer, &["api.internal"], false),
            "localhost",
        ));
        assert_eq!(f.problem, "certificate_name_mismatch", "{f:?}");
        assert!(
            f.advice
                .contains("not valid for localhost (it names api.internal)"),
            "{f:?}"
        );
        assert!(f.advice.contains("server_name"));

        let stranger = ca("another CA", vec![]);
        let f = explain(&refusal(
            &stranger.0,
            &leaf(&issuer, &["localhost"], false),
            "localhost",
        ));
        assert_eq!(f.problem, "certificate_unknown_issuer", "{f:?}");
        assert!(f.advice.contains("not signed by a CA Tollgate trusts"));
        assert!(f.advice.contains("ca_file"));

        // A leaf of the trusted CA for the right name passes.
        let mut roots = RootCertStore::empty();
        roots.add(issuer.0.der().clone()).unwrap();
        let v = verifier_for(Arc::new(roots)).unwrap();
        assert!(v
            .verify_server_cert(
                leaf(&issuer, &["localhost"], false).der(),
                &[],
                &ServerName::try_from("localhost").unwrap(),
                &[],
                UnixTime::now()
            )
            .is_ok());
    }

    #[test]
    fn a_refused_handshake_says_what_the_upstream_may_want() {
        let f = explain(&rustls::Error::AlertReceived(
            rustls::AlertDescription::CertificateRequired,
        ));
        assert_eq!(f.problem, "upstream_wants_client_certificate");
        assert!(f.advice.contains("client_cert"));
        let f = explain(&rustls::Error::General("x".into()));
        assert_eq!(f.problem, "handshake_failed");
    }
}
