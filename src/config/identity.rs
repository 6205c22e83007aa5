//! The identity headers: the one list of header names Tollgate owns on the way upstream.
//!
//! Threat model: an upstream trusts these headers because only Tollgate sets them. Every
//! place that must agree on them — validation, the strip on every proxied request, the
//! injection, the forward-auth answer an ingress copies — reads this one value, built and
//! validated once when the config loads. A second hand-kept list drifts (it once let a bad
//! `signed_jwt` name through `check` and panicked at start).
//!
//! A name is refused when it is not a valid header name, when two identity fields fold to
//! the same name (`X-User-Id` and `x_user_id` would strip each other), or when it names a
//! header the gateway or HTTP itself owns (`Host`, `Authorization`, hop-by-hop headers,
//! `X-Forwarded-*`, `X-Request-Id`): injecting those would let a claim rewrite framing,
//! routing or the upstream's view of the caller's address.

use http::HeaderName;

use super::raw;

/// Validated identity header names, in a fixed order (see [`IdentityHeaderNames::all`]).
#[derive(Debug, Clone)]
pub struct IdentityHeaderNames {
    pub user_id: HeaderName,
    pub email: HeaderName,
    pub role: HeaderName,
    pub scopes: HeaderName,
    pub client_id: HeaderName,
    pub alias: HeaderName,
    pub signed_jwt: Option<HeaderName>,
    /// The verified TLS client certificate's subject and SHA-256 thumbprint, when set.
    pub client_cert_subject: Option<HeaderName>,
    pub client_cert_sha256: Option<HeaderName>,
}

/// Headers an identity header may never be named after.
const RESERVED: &[&str] = &[
    "host",
    "authorization",
    "proxy-authorization",
    "cookie",
    "content-length",
    "content-type",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-uri",
    "x-forwarded-method",
    "x-original-uri",
    "x-original-url",
    "x-original-method",
    "x-request-id",
];

/// The comparison form of a header name: lower case, `_` and `.` read as `-` (how many
/// servers and frameworks fold them), so every spelling of one name is one name.
pub fn fold(b: u8) -> u8 {
    match b {
        b'_' | b'.' => b'-',
        b => b.to_ascii_lowercase(),
    }
}

fn folded(s: &str) -> String {
    s.bytes().map(|b| fold(b) as char).collect()
}

impl IdentityHeaderNames {
    /// Parses and checks every name, pushing one message per problem.
    pub fn parse(c: &raw::IdentityHeaders, problems: &mut Vec<String>) -> Option<Self> {
        let fields: [(&str, Option<&str>); 9] = [
            ("user_id", Some(&c.user_id)),
            ("email", Some(&c.email)),
            ("role", Some(&c.role)),
            ("scopes", Some(&c.scopes)),
            ("client_id", Some(&c.client_id)),
            ("alias", Some(&c.alias)),
            ("signed_jwt", c.signed_jwt.as_deref()),
            ("client_cert_subject", c.client_cert_subject.as_deref()),
            ("client_cert_sha256", c.client_cert_sha256.as_deref()),
        ];
        let before = problems.len();
        let mut parsed: Vec<Option<HeaderName>> = Vec::with_capacity(fields.len());
        let mut seen: Vec<(String, &str)> = Vec::new();
        for (key, value) in fields {
            let Some(value) = value else {
                parsed.push(None);
                continue;
            };
            let Ok(name) = HeaderName::from_bytes(value.as_bytes()) else {
                problems.push(format!(
                    "identity_headers.{key}: `{value}` is not a valid header name"
                ));
                parsed.push(None);
                continue;
            };
            let f = folded(value);
            if RESERVED.contains(&f.as_str()) {
                problems.push(format!(
                    "identity_headers.{key}: `{value}` is a header the gateway or HTTP owns; choose another name"
                ));
            }
            if let Some((_, other)) = seen.iter().find(|(s, _)| *s == f) {
                problems.push(format!(
                    "identity_headers.{key}: `{value}` is the same header as identity_headers.{other}"
                ));
            }
            seen.push((f, key));
            parsed.push(Some(name));
        }
        if problems.len() != before {
            return None;
        }
        let mut it = parsed.into_iter();
        let mut next = || it.next().flatten();
        Some(IdentityHeaderNames {
            user_id: next()?,
            email: next()?,
            role: next()?,
            scopes: next()?,
            client_id: next()?,
            alias: next()?,
            signed_jwt: next(),
            client_cert_subject: next(),
            client_cert_sha256: next(),
        })
    }

    /// Every identity header name: what is stripped from inbound requests, what
    /// forward-auth always answers, what may be injected.
    pub fn all(&self) -> impl Iterator<Item = &HeaderName> {
        self.fields().into_iter().flatten()
    }

    /// Every identity header's name by its place: the identity's fields (user id, email,
    /// role, scopes, client id, alias, signed JWT), then the client certificate's
    /// (subject, SHA-256); `None` where an optional one is not configured. Injection and
    /// the ext_authz answer name a header by this place.
    pub fn fields(&self) -> [Option<&HeaderName>; IDENTITY_FIELDS] {
        [
            Some(&self.user_id),
            Some(&self.email),
            Some(&self.role),
            Some(&self.scopes),
            Some(&self.client_id),
            Some(&self.alias),
            self.signed_jwt.as_ref(),
            self.client_cert_subject.as_ref(),
            self.client_cert_sha256.as_ref(),
        ]
    }
}

/// How many identity headers there can be (`IdentityHeaderNames::fields`).
pub const IDENTITY_FIELDS: usize = 9;

impl Default for IdentityHeaderNames {
    fn default() -> Self {
        let mut problems = Vec::new();
        IdentityHeaderNames::parse(&raw::IdentityHeaders::default(), &mut problems)
            .expect("the default identity header names are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(c: raw::IdentityHeaders) -> Result<IdentityHeaderNames, Vec<String>> {
        let mut p = Vec::new();
        IdentityHeaderNames::parse(&c, &mut p).ok_or(p)
    }

    #[test]
    fn defaults_parse_and_list_every_name() {
        let n = IdentityHeaderNames::default();
        assert_eq!(n.all().count(), 6);
    }

    #[test]
    fn bad_signed_jwt_name_is_a_problem_not_a_panic() {
        let e = parse(raw::IdentityHeaders {
            signed_jwt: Some("X Bad Header".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e[0].contains("identity_headers.signed_jwt"), "{e:?}");
    }

    #[test]
    fn reserved_and_colliding_names_are_refused() {
        let e = parse(raw::IdentityHeaders {
            role: "x_forwarded_for".into(),
            email: "X.User.Id".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e.iter().any(|m| m.contains("role") && m.contains("owns")));
        assert!(e
            .iter()
            .any(|m| m.contains("same header as identity_headers.user_id")));
    }
}
