//! CORS for the endpoints browsers call directly (token, revoke, introspect, users,
//! metadata), per `cors.allow_origins`. Credentials mode is never enabled: these
//! endpoints take bearer tokens and client secrets, not cookies, so a wildcard origin
//! cannot be used to ride on a browser session.

use http::{header, HeaderMap, HeaderValue, Response, StatusCode};

use crate::http::body::{self, Body};

/// The methods a preflight allows on the token service, metadata and users API.
pub const ALLOW_METHODS: &str = "GET, POST, OPTIONS";
const ALLOW_HEADERS: &str = "Origin, X-Requested-With, Content-Type, Accept, Authorization";

/// The `Access-Control-Allow-Origin` a request's `Origin` is granted, if any: worked out
/// when the request arrives, applied to whichever answer leaves.
pub struct RequestOrigin(Option<HeaderValue>);

impl RequestOrigin {
    pub fn of(req: &HeaderMap, allow: &[String]) -> RequestOrigin {
        RequestOrigin(allowed_origin(req, allow))
    }

    /// Adds the CORS headers of an actual (non-preflight) response.
    pub fn apply(&self, resp: &mut Response<Body>) {
        if let Some(v) = &self.0 {
            let h = resp.headers_mut();
            if v != "*" {
                h.append(header::VARY, HeaderValue::from_static("Origin"));
            }
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v.clone());
        }
    }
}

/// The `Access-Control-Allow-Origin` value for this request, if its origin is allowed.
fn allowed_origin(req: &HeaderMap, allow: &[String]) -> Option<HeaderValue> {
    if allow.iter().any(|o| o == "*") {
        return Some(HeaderValue::from_static("*"));
    }
    let origin = req.get(header::ORIGIN)?;
    let o = origin.to_str().ok()?;
    allow
        .iter()
        .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(o))
        .then(|| origin.clone())
}

/// Answers an `OPTIONS` preflight allowing `methods`. A disallowed origin gets 204
/// without CORS headers, which the browser treats as a refusal.
pub fn preflight(origin: &RequestOrigin, methods: &'static str, req: &HeaderMap) -> Response<Body> {
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    if origin.0.is_some() {
        origin.apply(&mut resp);
        let h = resp.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(methods),
        );
        let requested = req
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .filter(|v| v.len() < 1024)
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static(ALLOW_HEADERS));
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested);
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
    }
    resp
}

/// `Cache-Control: no-store` and `Pragma: no-cache`: responses that carry tokens or
/// personal data must never be cached (RFC 6749 §5.1).
pub fn no_store(resp: &mut Response<Body>) {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}
