//! The host a request is addressed to (RFC 9112 §3.2, RFC 9113 §8.3.1), decided once for
//! routing, `X-Forwarded-Host` and forward-auth alike.
//!
//! Threat model: a request whose host two parsers could read differently, so that Tollgate
//! routes it by one host and a cache or upstream serves it as another (host confusion,
//! cache poisoning). HTTP/1.1 requires exactly one `Host`; a request with none or with
//! several is refused before anything else reads it. When the request line carries an
//! authority (absolute form, or HTTP/2's `:authority`), that authority is the target and
//! `Host` is ignored, as RFC 9112 §3.2.2 says a server must. HTTP/1.0 predates `Host`:
//! its requests may come without one and are routed as host-less.

use http::{header, HeaderValue, Request, Version};

/// Why a request's host cannot be decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError(pub &'static str);

/// RFC 9112 §3.2: an HTTP/1.1 request has exactly one `Host`; no version may send two.
pub fn check<B>(req: &Request<B>) -> Result<(), HostError> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let first = hosts.next();
    if hosts.next().is_some() {
        return Err(HostError("more than one Host header"));
    }
    if first.is_none() && req.version() == Version::HTTP_11 {
        return Err(HostError("an HTTP/1.1 request needs a Host header"));
    }
    Ok(())
}

/// The host a request is addressed to, without port or trailing dot: the URI authority
/// (HTTP/2, absolute form), which wins over `Host`, else the `Host` header.
pub fn request_host<B>(req: &Request<B>) -> Option<&str> {
    host_of(req.uri(), req.headers().get(header::HOST))
}

/// [`request_host`] from the URI and the `Host` field already looked up (the proxy reads
/// the field once for the route, `X-Forwarded-Host` and a DPoP proof's `htu`).
pub fn host_of<'r>(uri: &'r http::Uri, host_field: Option<&'r HeaderValue>) -> Option<&'r str> {
    let raw = match uri.host() {
        Some(h) => h,
        None => host_field?.to_str().ok()?,
    };
    Some(host_name(raw))
}

/// A host as routes compare it: no port, no trailing dot (`Admin.example.com.:8080` and
/// `admin.example.com` are one host; case is ignored by the matcher).
pub fn host_name(h: &str) -> &str {
    let h = strip_port(h);
    h.strip_suffix('.').unwrap_or(h)
}

fn strip_port(h: &str) -> &str {
    if h.starts_with('[') {
        return h.split(']').next().map(|s| &s[1..]).unwrap_or(h);
    }
    // Searched as bytes, as `RouteTable::find` does: cheaper than `str::rsplit_once`.
    match h.bytes().rposition(|b| b == b':') {
        Some(colon) if h.as_bytes()[colon + 1..].iter().all(u8::is_ascii_digit) => &h[..colon],
        _ => h,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: Version, uri: &str, hosts: &[&str]) -> Request<()> {
        let mut b = Request::builder().version(version).uri(uri);
        for h in hosts {
            b = b.header(header::HOST, *h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn http11_needs_exactly_one_host() {
        assert!(check(&req(Version::HTTP_11, "/x", &["a.example"])).is_ok());
        assert!(check(&req(Version::HTTP_11, "/x", &[])).is_err());
        assert!(check(&req(Version::HTTP_11, "/x", &["a.example", "b.example"])).is_err());
        // An absolute-form request still needs its Host (RFC 9112 §3.2).
        assert!(check(&req(Version::HTTP_11, "http://a.example/x", &[])).is_err());
    }

    #[test]
    fn http10_may_omit_host_and_http2_has_its_authority() {
        assert!(check(&req(Version::HTTP_10, "/x", &[])).is_ok());
        assert!(check(&req(Version::HTTP_10, "/x", &["a", "b"])).is_err());
        assert!(check(&req(Version::HTTP_2, "https://a.example/x", &[])).is_ok());
        assert!(check(&req(Version::HTTP_2, "/x", &[])).is_ok());
    }

    #[test]
    fn the_authority_wins_over_host() {
        let r = req(Version::HTTP_11, "http://a.example:8080/x", &["b.example"]);
        assert_eq!(request_host(&r), Some("a.example"));
        let r = req(Version::HTTP_11, "/x", &["B.Example.:8443"]);
        assert_eq!(request_host(&r), Some("B.Example"));
        let r = req(Version::HTTP_11, "/x", &["[2001:db8::1]:8443"]);
        assert_eq!(request_host(&r), Some("2001:db8::1"));
        assert_eq!(request_host(&req(Version::HTTP_10, "/x", &[])), None);
    }

    #[test]
    fn only_a_numeric_port_is_cut() {
        assert_eq!(host_name("a.example:8080"), "a.example");
        assert_eq!(host_name("a.example:"), "a.example");
        assert_eq!(host_name("a.example"), "a.example");
        assert_eq!(host_name("a.example:80x"), "a.example:80x");
        assert_eq!(host_name("a:b:8080"), "a:b");
        assert_eq!(host_name("a.example.:443"), "a.example");
        assert_eq!(host_name(":8080"), "");
    }
}
