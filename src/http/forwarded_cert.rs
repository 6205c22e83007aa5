//! A client certificate as a TLS-terminating proxy in front of Tollgate reports it, for the
//! decisions Tollgate makes without seeing the handshake (forward-auth behind an ingress).
//!
//! Threat model: these headers are plain text any client can send. They are believed only
//! when the connection comes straight from a `trusted_proxies` address (the proxy that
//! terminated the client's TLS and verified its certificate); from anyone else they are
//! ignored, and the proxy path removes them from every request it forwards
//! ([`NAMES`] joins the identity headers that are always stripped).
//!
//! Only the one header the operator names (`forward_auth.client_cert_header`) is read: a
//! proxy overwrites its own header but passes the others through from the client, so
//! reading "whichever is present" would believe a client's copy. The forms:
//! - Envoy `x-forwarded-client-cert`: `Hash=<sha256 hex>;Cert="<url-encoded PEM>";Subject="…"`,
//!   one element per hop; the last element is the one the proxy talking to Tollgate added.
//! - Traefik `X-Forwarded-Tls-Client-Cert` (`passTLSClientCert: pem`): the leaf's base64
//!   DER, url-escaped, certificates comma-separated, leaf first.
//! - nginx `ssl-client-cert` (`proxy_set_header ssl-client-cert $ssl_client_escaped_cert`):
//!   the url-encoded PEM.

use std::net::IpAddr;

use base64::Engine;
use http::{HeaderMap, HeaderName};
use ipnet::IpNet;
use sha2::{Digest, Sha256};

use super::ClientCert;
pub use crate::config::raw::ClientCertHeader;

pub static XFCC: HeaderName = HeaderName::from_static("x-forwarded-client-cert");
pub static TRAEFIK: HeaderName = HeaderName::from_static("x-forwarded-tls-client-cert");
pub static NGINX: HeaderName = HeaderName::from_static("ssl-client-cert");

/// Every header a proxy reports a client certificate in; never passed on from a client.
pub static NAMES: [&HeaderName; 3] = [&XFCC, &TRAEFIK, &NGINX];

impl ClientCert {
    /// The facts of a DER certificate; `None` when it is not one.
    pub fn from_der(der: &[u8]) -> Option<ClientCert> {
        use x509_cert::der::Decode;
        let cert = x509_cert::Certificate::from_der(der).ok()?;
        Some(ClientCert {
            subject: cert.tbs_certificate.subject.to_string(),
            sha256: Sha256::digest(der).into(),
        })
    }

    /// The first certificate of a PEM text, or of bare base64 DER (Traefik's form).
    pub fn from_pem_or_base64(text: &str) -> Option<ClientCert> {
        const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
        const END: &str = "-----END CERTIFICATE-----";
        let b64 = match text.find(BEGIN) {
            Some(start) => {
                let body = &text[start + BEGIN.len()..];
                &body[..body.find(END)?]
            }
            // Traefik lists the chain comma-separated, leaf first.
            None => text.split(',').next()?,
        };
        let clean: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(clean)
            .ok()?;
        ClientCert::from_der(&der)
    }
}

/// The client certificate a trusted proxy reports in `header`; `None` from an untrusted
/// peer, when the header is absent, or when it cannot be read (never a guess).
pub fn from_trusted_proxy(
    headers: &HeaderMap,
    header: ClientCertHeader,
    peer: IpAddr,
    trusted: &[IpNet],
) -> Option<ClientCert> {
    if !super::client_addr::is_trusted(peer, trusted) {
        return None;
    }
    match header {
        ClientCertHeader::Xfcc => from_xfcc(last_value(headers, &XFCC)?),
        ClientCertHeader::Traefik => {
            ClientCert::from_pem_or_base64(&percent_decode(last_value(headers, &TRAEFIK)?))
        }
        ClientCertHeader::Nginx => {
            ClientCert::from_pem_or_base64(&percent_decode(last_value(headers, &NGINX)?))
        }
    }
}

fn last_value<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers
        .get_all(name)
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn percent_decode(v: &str) -> String {
    percent_encoding::percent_decode_str(v)
        .decode_utf8_lossy()
        .into_owned()
}

/// Envoy's `x-forwarded-client-cert`: the last element's `Cert` (preferred: it gives the
/// subject too) or `Hash`.
pub fn from_xfcc(value: &str) -> Option<ClientCert> {
    let element = split_unquoted(value, ',').pop()?;
    let (mut hash, mut cert, mut subject) = (None, None, None);
    for field in split_unquoted(element, ';') {
        let Some((k, v)) = field.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        match k.trim().to_ascii_lowercase().as_str() {
            "hash" => hash = Some(v),
            "cert" => cert = Some(v),
            "subject" => subject = Some(v.replace("\\\"", "\"")),
            _ => {}
        }
    }
    if let Some(c) = cert {
        let parsed = ClientCert::from_pem_or_base64(&percent_decode(c))?;
        // Both given and disagreeing: the header is not one a proxy wrote.
        if hash.is_some_and(|h| !h.eq_ignore_ascii_case(&parsed.sha256_hex())) {
            return None;
        }
        return Some(parsed);
    }
    let digest: [u8; 32] = hex::decode(hash?).ok()?.try_into().ok()?;
    Some(ClientCert {
        subject: subject.unwrap_or_default(),
        sha256: digest,
    })
}

/// Splits on `sep` outside double quotes (a quoted `Subject` may hold commas).
fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted() -> Vec<IpNet> {
        vec!["10.0.0.0/8".parse().unwrap()]
    }

    fn leaf() -> (String, [u8; 32], String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["client".into()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "alice");
        let cert = params.self_signed(&key).unwrap();
        let der = cert.der().to_vec();
        (
            cert.pem(),
            Sha256::digest(&der).into(),
            hex::encode(Sha256::digest(&der)),
        )
    }

    fn enc(s: &str) -> String {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    }

    #[test]
    fn envoy_cert_and_hash_forms() {
        let (pem, sha, hex) = leaf();
        let mut h = HeaderMap::new();
        h.insert(
            &XFCC,
            format!(
                r#"By=spiffe://a;Hash={hex};Cert="{}";Subject="CN=alice""#,
                enc(&pem)
            )
            .parse()
            .unwrap(),
        );
        let peer: IpAddr = "10.1.2.3".parse().unwrap();
        let c = from_trusted_proxy(&h, ClientCertHeader::Xfcc, peer, &trusted()).unwrap();
        assert_eq!(c.sha256, sha);
        assert_eq!(c.subject, "CN=alice");
        // Only the named header is read.
        assert_eq!(
            from_trusted_proxy(&h, ClientCertHeader::Nginx, peer, &trusted()),
            None
        );

        h.insert(
            &XFCC,
            format!(r#"Hash={hex};Subject="CN=bob,O=x""#)
                .parse()
                .unwrap(),
        );
        let c = from_trusted_proxy(&h, ClientCertHeader::Xfcc, peer, &trusted()).unwrap();
        assert_eq!((c.sha256, c.subject.as_str()), (sha, "CN=bob,O=x"));
        // The last hop's element is the one read.
        h.insert(
            &XFCC,
            format!("Hash=00;Subject=x,Hash={hex}").parse().unwrap(),
        );
        assert_eq!(
            from_trusted_proxy(&h, ClientCertHeader::Xfcc, peer, &trusted())
                .unwrap()
                .sha256,
            sha
        );
    }

    #[test]
    fn untrusted_peers_and_garbage_give_no_certificate() {
        let (pem, _, hex) = leaf();
        let mut h = HeaderMap::new();
        h.insert(&XFCC, format!("Hash={hex}").parse().unwrap());
        let outsider: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(
            from_trusted_proxy(&h, ClientCertHeader::Xfcc, outsider, &trusted()),
            None
        );
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        for bad in ["Hash=zz", "Hash=abcd", "Cert=\"garbage\"", "By=x", ""] {
            h.insert(&XFCC, bad.parse().unwrap());
            assert_eq!(
                from_trusted_proxy(&h, ClientCertHeader::Xfcc, peer, &trusted()),
                None,
                "{bad}"
            );
        }
        // A Cert whose Hash disagrees was not written by a proxy.
        h.insert(
            &XFCC,
            format!("Hash={};Cert=\"{}\"", "ab".repeat(32), enc(&pem))
                .parse()
                .unwrap(),
        );
        assert_eq!(
            from_trusted_proxy(&h, ClientCertHeader::Xfcc, peer, &trusted()),
            None
        );
    }

    #[test]
    fn traefik_and_nginx_forms() {
        let (pem, sha, _) = leaf();
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let bare: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let mut h = HeaderMap::new();
        h.insert(&TRAEFIK, format!("{},MIIB", enc(&bare)).parse().unwrap());
        assert_eq!(
            from_trusted_proxy(&h, ClientCertHeader::Traefik, peer, &trusted())
                .unwrap()
                .sha256,
            sha
        );
        let mut h = HeaderMap::new();
        h.insert(&NGINX, enc(&pem).parse().unwrap());
        let c = from_trusted_proxy(&h, ClientCertHeader::Nginx, peer, &trusted()).unwrap();
        assert_eq!(c.sha256, sha);
        assert!(c.subject.contains("alice"), "{}", c.subject);
    }
}
