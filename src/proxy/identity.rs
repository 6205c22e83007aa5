//! Injection of the caller's identity as upstream request headers (after `headers.rs`
//! has stripped any inbound copies).

use http::{HeaderMap, HeaderName, HeaderValue};

use super::authn::Identity;

/// The validated names live in the config (one list for strip, inject, validate and
/// forward-auth); injection is the proxy's half of them.
pub use crate::config::IdentityHeaderNames;
use crate::http::ClientCert;

impl IdentityHeaderNames {
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
            // Tollgate's own token: bounded by the claims it carries, which are bounded
            // above; its limit is the head limit upstreams commonly use.
            set_limited(headers, name, id.signed_jwt.as_deref(), 16 * 1024);
        }
    }
}

/// The longest claim value injected as a header. A claim is the issuer's data, not
/// Tollgate's: one built to bloat every upstream request head (and push it past the
/// upstream's header limit) is left out, as a value with control characters is, rather
/// than truncated into something that means another thing.
pub const MAX_IDENTITY_VALUE_BYTES: usize = 4096;

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
    set_limited(headers, name, value, MAX_IDENTITY_VALUE_BYTES)
}

fn set_limited(headers: &mut HeaderMap, name: &HeaderName, value: Option<&str>, max: usize) {
    if let Some(v) = value
        .filter(|v| v.len() <= max)
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        headers.insert(name.clone(), v);
    }
}
