//! The integrator allow-list: where a browser may be sent back after linking.
//!
//! Threat model: an attacker crafts a dialog link whose `redirect_uri` points at their own
//! site, hoping Tollgate bounces a victim there (open redirect, phishing, leaking the
//! outcome). Defences: the candidate is parsed with a WHATWG parser (which resolves `..`,
//! `%2e%2e`, backslashes and default ports) and only the parsed form is compared and used;
//! scheme, host and port must equal an allowed entry's exactly; a prefix entry matches
//! only on a path-segment boundary (`/app` allows `/app` and `/app/x`, never `/appx`);
//! credentials in the URL are refused. Anything else gets a 400 and is never redirected to.

use url::Url;

/// One `allowed_redirect_uris` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedRedirect {
    url: Url,
    /// An entry with a query must be matched exactly; one without is a path prefix.
    exact_only: bool,
}

impl AllowedRedirect {
    pub fn parse(text: &str) -> Result<AllowedRedirect, &'static str> {
        let url = parse_endpoint_url(text)?;
        Ok(AllowedRedirect {
            exact_only: url.query().is_some(),
            url,
        })
    }

    fn allows(&self, candidate: &Url) -> bool {
        if candidate.scheme() != self.url.scheme()
            || candidate.host() != self.url.host()
            || candidate.port_or_known_default() != self.url.port_or_known_default()
        {
            return false;
        }
        if self.exact_only {
            return candidate.path() == self.url.path() && candidate.query() == self.url.query();
        }
        let prefix = self.url.path();
        let path = candidate.path();
        path == prefix
            || (path.starts_with(prefix)
                && (prefix.ends_with('/') || path.as_bytes().get(prefix.len()) == Some(&b'/')))
    }
}

/// Longest `redirect_uri` accepted; longer ones are refused before parsing.
const MAX_REDIRECT_URI: usize = 2048;

/// The parsed, normalised `candidate` when an entry allows it. The caller must redirect
/// to the returned URL, never to the raw text, so what was checked is what is used.
pub fn check(allowed: &[AllowedRedirect], candidate: &str) -> Option<Url> {
    if candidate.len() > MAX_REDIRECT_URI || candidate.chars().any(|c| c.is_control() || c == '\\')
    {
        return None;
    }
    let url = Url::parse(candidate).ok()?;
    if !url.username().is_empty() || url.password().is_some() {
        return None;
    }
    allowed.iter().any(|a| a.allows(&url)).then_some(url)
}

/// `base` with `params` appended to its query (existing parameters and fragment kept).
pub fn with_params(base: &Url, params: &[(&str, &str)]) -> String {
    let mut u = base.clone();
    {
        let mut q = u.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
    }
    u.to_string()
}

/// An absolute URL Tollgate talks to or redirects through: https, or plain http only to
/// this machine (127.0.0.1, ::1, localhost) for development and tests. No credentials in
/// the URL, no fragment.
pub fn parse_endpoint_url(text: &str) -> Result<Url, &'static str> {
    let u = Url::parse(text).map_err(|_| "is not an absolute URL")?;
    match u.scheme() {
        "https" => {}
        "http" if is_loopback(&u) => {}
        "http" => {
            return Err(
                "must use https (plain http is allowed only for 127.0.0.1, ::1 or localhost)",
            )
        }
        _ => return Err("must be an https URL"),
    }
    if u.host().is_none() {
        return Err("has no host");
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("must not carry credentials");
    }
    if u.fragment().is_some() {
        return Err("must not have a #fragment");
    }
    Ok(u)
}

fn is_loopback(u: &Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}
