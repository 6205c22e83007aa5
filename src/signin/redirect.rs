//! Redirect URIs of the code flow: which ones a client may register, and the redirect
//! itself. A redirect goes only to a URI the client registered, compared as exact strings
//! (OAuth 2.0 Security BCP §4.1.3: no prefix, pattern or normalised matching).

use http::{header, HeaderValue, Response, StatusCode};

use crate::http::body::{self, Body};

/// Whether `uri` may be registered: absolute, no fragment, no userinfo, no wildcard;
/// `https`, or `http` on a loopback host (native apps and development, RFC 8252 §7.3), or
/// a private-use scheme with a dot (RFC 8252 §7.1, `com.example.app:/cb`).
pub fn check_registrable(uri: &str) -> Result<(), &'static str> {
    if uri.len() > 2000 || uri.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("too long or holds spaces or control characters");
    }
    if uri.contains('#') {
        return Err("a redirect URI has no fragment");
    }
    if uri.contains('*') {
        return Err("wildcards are not allowed: register each URI exactly");
    }
    let parsed = url::Url::parse(uri).map_err(|_| "not an absolute URI")?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("a redirect URI has no user or password");
    }
    match parsed.scheme() {
        "https" if parsed.host_str().is_some() => Ok(()),
        "http" => match parsed.host() {
            Some(url::Host::Ipv4(ip)) if ip.is_loopback() => Ok(()),
            Some(url::Host::Ipv6(ip)) if ip.is_loopback() => Ok(()),
            Some(url::Host::Domain("localhost")) => Ok(()),
            _ => Err("http is allowed only on a loopback address (127.0.0.1, [::1], localhost)"),
        },
        "javascript" | "data" | "file" | "vbscript" | "blob" | "about" => {
            Err("not a redirect scheme")
        }
        s if s.contains('.') => Ok(()),
        _ => Err("use https, http on a loopback address, or a private-use scheme such as com.example.app"),
    }
}

/// `uri` with `params` added to its query (RFC 6749 §4.1.2: existing query kept).
pub fn with_params(uri: &str, params: &[(&str, &str)]) -> String {
    let mut out = String::from(uri);
    let mut sep = if uri.contains('?') { '&' } else { '?' };
    for (k, v) in params {
        out.push(sep);
        sep = '&';
        out.push_str(k);
        out.push('=');
        out.extend(form_urlencoded::byte_serialize(v.as_bytes()));
    }
    out
}

/// A 303 to `location` (a registered URI with its parameters), never cached.
pub fn see_other(location: &str) -> Response<Body> {
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrable_uris() {
        for ok in [
            "https://app.example.com/cb",
            "https://app.example.com:8443/cb?x=1",
            "http://127.0.0.1:5555/cb",
            "http://[::1]/cb",
            "http://localhost:3000/cb",
            "com.example.app:/oauth2redirect",
        ] {
            assert_eq!(check_registrable(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://app.example.com/cb",
            "https://app.example.com/cb#x",
            "https://u:p@app.example.com/cb",
            "https://*.example.com/cb",
            "javascript:alert(1)",
            "data:text/html,x",
            "/cb",
            "myapp:/cb",
            "https://app.example.com/c b",
        ] {
            assert!(check_registrable(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parameters_are_added_to_the_query() {
        assert_eq!(
            with_params("https://a.example/cb", &[("code", "x y"), ("state", "s&t")]),
            "https://a.example/cb?code=x+y&state=s%26t"
        );
        assert_eq!(
            with_params("https://a.example/cb?k=1", &[("code", "c")]),
            "https://a.example/cb?k=1&code=c"
        );
    }
}
