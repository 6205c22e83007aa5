//! gRPC through the proxy. Calls are ordinary HTTP/2 requests and pass through the same
//! pipeline; what differs is at the edges: `te: trailers` must reach the upstream, a
//! `grpc-timeout` deadline bounds the wait for the upstream, and a failure Tollgate itself
//! answers must be a gRPC status (HTTP 200, `grpc-status`, `grpc-message`), because gRPC
//! clients read only that and report anything else as an opaque transport error.

use std::time::Duration;

use http::{header, HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

use super::error::GatewayError;
use crate::http::body::{self, Body};
use crate::http::error::ErrorResponse;

/// Whether a request is a gRPC call (`content-type: application/grpc[+proto|;…]`).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| is_grpc_content_type(v.as_bytes()))
}

fn is_grpc_content_type(v: &[u8]) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    v.len() >= GRPC.len()
        && v[..GRPC.len()].eq_ignore_ascii_case(GRPC)
        && matches!(v.get(GRPC.len()), None | Some(b'+') | Some(b';'))
}

/// Whether a `TE` header value lists `trailers`.
pub fn names_trailers(v: &[u8]) -> bool {
    v.split(|b| *b == b',').any(|t| {
        let t = t.trim_ascii();
        let t = t.split(|b| *b == b';').next().unwrap_or(t).trim_ascii();
        t.eq_ignore_ascii_case(b"trailers")
    })
}

/// The call's deadline from `grpc-timeout` (gRPC over HTTP/2: up to 8 digits and a unit,
/// `H M S m u n`). Malformed values are ignored, as gRPC servers do.
pub fn timeout(headers: &HeaderMap) -> Option<Duration> {
    // A name made once: looked up by a `&str`, the name is parsed again on every request.
    static GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
    let v = headers.get(&GRPC_TIMEOUT)?.as_bytes();
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b"H" => Duration::from_secs(n * 3600),
        b"M" => Duration::from_secs(n * 60),
        b"S" => Duration::from_secs(n),
        b"m" => Duration::from_millis(n),
        b"u" => Duration::from_micros(n),
        b"n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// gRPC status codes Tollgate answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    Unimplemented = 12,
    Unavailable = 14,
    Unauthenticated = 16,
}

/// The gRPC status for a gateway failure.
pub fn code(e: &GatewayError) -> Code {
    match e.status() {
        StatusCode::UNAUTHORIZED => Code::Unauthenticated,
        StatusCode::FORBIDDEN => Code::PermissionDenied,
        StatusCode::NOT_FOUND => Code::Unimplemented,
        StatusCode::PAYLOAD_TOO_LARGE => Code::ResourceExhausted,
        StatusCode::GATEWAY_TIMEOUT => Code::DeadlineExceeded,
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE => Code::Unavailable,
        _ => Code::InvalidArgument,
    }
}

/// A gateway failure as a gRPC "trailers-only" response: HTTP 200 whose headers carry
/// `grpc-status` and `grpc-message`, with the `WWW-Authenticate` challenge an HTTP answer
/// would have had.
pub fn error_response(e: &GatewayError) -> Response<Body> {
    let code = code(e);
    let http = e.response();
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert("grpc-status", HeaderValue::from(code as u16));
    h.insert("grpc-message", HeaderValue::from_static(message(code)));
    if let Some(w) = http.headers().get(header::WWW_AUTHENTICATE) {
        h.insert(header::WWW_AUTHENTICATE, w.clone());
    }
    resp
}

/// The `grpc-message` for each code: fixed words (percent-encoding safe), no details.
fn message(code: Code) -> &'static str {
    match code {
        Code::Unauthenticated => "the access token is missing, invalid, expired or revoked",
        Code::PermissionDenied => "the caller is not allowed to make this call",
        Code::Unimplemented => "no route matches this call",
        Code::ResourceExhausted => "the request is larger than this route allows",
        Code::DeadlineExceeded => "the upstream service did not answer in time",
        Code::Unavailable => "the upstream service could not be reached",
        Code::InvalidArgument => "the request is malformed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_content_types() {
        for (v, want) in [
            ("application/grpc", true),
            ("application/grpc+proto", true),
            ("Application/GRPC;charset=utf-8", true),
            ("application/grpc-web", false),
            ("application/json", false),
            ("application/grp", false),
        ] {
            assert_eq!(is_grpc_content_type(v.as_bytes()), want, "{v}");
        }
    }

    #[test]
    fn te_trailers() {
        assert!(names_trailers(b"trailers"));
        assert!(names_trailers(b"gzip, Trailers;q=1"));
        assert!(!names_trailers(b"gzip"));
    }

    #[test]
    fn grpc_timeouts() {
        let t = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("grpc-timeout", v.parse().unwrap());
            timeout(&h)
        };
        assert_eq!(t("100m"), Some(Duration::from_millis(100)));
        assert_eq!(t("2S"), Some(Duration::from_secs(2)));
        assert_eq!(t("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(t("5u"), Some(Duration::from_micros(5)));
        assert_eq!(t("123456789m"), None);
        assert_eq!(t("m"), None);
        assert_eq!(t("10x"), None);
        assert_eq!(t("-1S"), None);
    }

    #[test]
    fn failures_become_grpc_statuses() {
        let r = error_response(&GatewayError::Unauthenticated);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["grpc-status"], "16");
        assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
        let r = error_response(&GatewayError::InsufficientScope);
        assert_eq!(r.headers()["grpc-status"], "7");
        let r = error_response(&GatewayError::UpstreamUnreachable("x".into()));
        assert_eq!(r.headers()["grpc-status"], "14");
        let r = error_response(&GatewayError::UpstreamTimeout(Duration::from_secs(1)));
        assert_eq!(r.headers()["grpc-status"], "4");
    }
}
