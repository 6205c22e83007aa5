//! Injection of the caller's identity as upstream request headers (after `headers.rs`
//! has stripped any inbound copies).

use http::{HeaderMap, HeaderName, HeaderValue};

use super::authn::Identity;
use crate::config::raw::IdentityHeaders;
use crate::server::client_cert::ClientCert;

/// Parsed identity header names, built once per configuration.
#[derive(Debug, Clone)]
pub struct IdentityHeaderNames {
    pub user_id: HeaderName,
    pub email: HeaderName,
    pub role: HeaderName,
    pub scopes: HeaderName,
    pub client_id: HeaderName,
    pub alias: HeaderName,
    pub signed_jwt: Option<HeaderName>,
    pub client_cert_subject: Option<HeaderName>,
    pub client_cert_sha256: Option<HeaderName>,
}

fn name(s: &str) -> HeaderName {
    // Validated at config load.
    HeaderName::from_bytes(s.as_bytes()).expect("identity header names are validated at load")
}

impl IdentityHeaderNames {
    pub fn from_config(c: &IdentityHeaders) -> Self {
        IdentityHeaderNames {
            user_id: name(&c.user_id),
            email: name(&c.email),
            role: name(&c.role),
            scopes: name(&c.scopes),
            client_id: name(&c.client_id),
            alias: name(&c.alias),
            signed_jwt: c.signed_jwt.as_deref().map(name),
            client_cert_subject: c.client_cert_subject.as_deref().map(name),
            client_cert_sha256: c.client_cert_sha256.as_deref().map(name),
        }
    }

    /// Sets a header for each identity field that has a value. Values that are not valid
    /// header values (control characters) are skipped rather than forwarded mangled.
    pub fn inject(&self, headers: &mut HeaderMap, id: &Identity) {
        set(headers, &self.user_id, Some(&id.user_id));
        set(headers, &self.email, id.email.as_deref());
        set(headers, &self.role, id.role.as_deref());
        if !id.scopes.is_empty() {
            set(headers, &self.scopes, Some(&id.scopes.join(" ")));
        }
        set(headers, &self.client_id, id.client_id.as_deref());
        set(headers, &self.alias, id.alias.as_deref());
        if let Some(name) = &self.signed_jwt {
            set(headers, name, id.signed_jwt.as_deref());
        }
    }
}

impl IdentityHeaderNames {
    /// Sets the client certificate headers that are configured. A subject that is not a
    /// valid header value (non-ASCII characters) is left out; the thumbprint always fits.
    pub fn inject_client_cert(&self, headers: &mut HeaderMap, cert: &ClientCert) {
        if let Some(name) = &self.client_cert_subject {
            set(headers, name, Some(&cert.subject));
        }
        if let Some(name) = &self.client_cert_sha256 {
            set(headers, name, Some(&cert.sha256_hex()));
        }
    }
}

fn set(headers: &mut HeaderMap, name: &HeaderName, value: Option<&str>) {
    if let Some(v) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
        headers.insert(name.clone(), v);
    }
}
