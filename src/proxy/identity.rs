//! Injection of the caller's identity as upstream request headers (after `headers.rs`
//! has stripped any inbound copies).

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::authn::Identity;

/// The validated names live in the config (one list for strip, inject, validate and
/// forward-auth); injection is the proxy's half of them.
pub use crate::config::IdentityHeaderNames;
use crate::http::ClientCert;

impl IdentityHeaderNames {
    /// Sets a header for each identity field that has a value. Values that are not valid
    /// header values (control characters) are skipped rather than forwarded mangled.
    pub fn inject(&self, headers: &mut HeaderMap, id: &Identity) {
        self.each(id, |_, name, value| {
            headers.insert(name.clone(), value.clone());
        });
    }

    /// Calls `f` with each identity header that has a value for `id`: its place in
    /// [`IdentityHeaderNames::fields`], its name and its value.
    pub fn each(&self, id: &Identity, mut f: impl FnMut(usize, &HeaderName, &HeaderValue)) {
        let v = id.header_values.0.get_or_init(|| HeaderValues::of(id));
        let values = [
            &v.user_id,
            &v.email,
            &v.role,
            &v.scopes,
            &v.client_id,
            &v.alias,
            &v.signed_jwt,
        ];
        for (place, (name, value)) in self.fields().into_iter().zip(values).enumerate() {
            if let (Some(name), Some(value)) = (name, value) {
                f(place, name, value);
            }
        }
    }
}

/// An identity's header values, made once. Derived from the identity's other fields, so
/// it never makes two identities differ.
#[derive(Debug, Clone, Default)]
pub struct CachedValues(std::sync::OnceLock<HeaderValues>);

impl PartialEq for CachedValues {
    fn eq(&self, _: &CachedValues) -> bool {
        true
    }
}

impl Eq for CachedValues {}

/// An identity's header values, each valid and within its limit (or absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderValues {
    user_id: Option<HeaderValue>,
    email: Option<HeaderValue>,
    role: Option<HeaderValue>,
    scopes: Option<HeaderValue>,
    client_id: Option<HeaderValue>,
    alias: Option<HeaderValue>,
    signed_jwt: Option<HeaderValue>,
}

impl HeaderValues {
    fn of(id: &Identity) -> HeaderValues {
        let value = |v: Option<&str>| limited(v, MAX_IDENTITY_VALUE_BYTES);
        HeaderValues {
            user_id: value(Some(&id.user_id)),
            email: value(id.email.as_deref()),
            role: value(id.role.as_deref()),
            scopes: (!id.scopes.is_empty())
                .then(|| id.scopes.join(" "))
                .and_then(|s| value(Some(&s))),
            client_id: value(id.client_id.as_deref()),
            alias: value(id.alias.as_deref()),
            // Tollgate's own token: bounded by the claims it carries, which are bounded
            // above; its limit is the head limit upstreams commonly use.
            signed_jwt: limited(id.signed_jwt.as_deref(), 16 * 1024),
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
        self.each_client_cert(cert, |_, name, value| {
            headers.insert(name.clone(), value);
        });
    }

    /// Calls `f` with each configured client certificate header that has a value: its
    /// place in [`IdentityHeaderNames::fields`], its name and its value.
    pub fn each_client_cert(
        &self,
        cert: &ClientCert,
        mut f: impl FnMut(usize, &HeaderName, HeaderValue),
    ) {
        let fields = self.fields();
        if let Some(name) = fields[SUBJECT] {
            if let Some(v) = limited(Some(&cert.subject), MAX_IDENTITY_VALUE_BYTES) {
                f(SUBJECT, name, v);
            }
        }
        if let Some(name) = fields[SHA256] {
            if let Some(v) = limited(Some(&cert.sha256_hex()), MAX_IDENTITY_VALUE_BYTES) {
                f(SHA256, name, v);
            }
        }
    }
}

/// The client certificate's places in [`IdentityHeaderNames::fields`].
const SUBJECT: usize = 7;
const SHA256: usize = 8;

/// `value` as a header value when it is one and no longer than `max` bytes.
fn limited(value: Option<&str>, max: usize) -> Option<HeaderValue> {
    value
        .filter(|v| v.len() <= max)
        .and_then(|v| HeaderValue::from_str(v).ok())
}
