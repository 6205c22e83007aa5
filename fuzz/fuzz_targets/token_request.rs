//! Token-request parsing: form and JSON bodies, the query grant, HTTP Basic client
//! credentials. Any input is an `Ok` or a typed OAuth error, never a panic.
#![no_main]

use http::{header, HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tollgate::oauth::request::{client_credentials, parse_params, query_grant_type};

fuzz_target!(|data: &[u8]| {
    // First byte picks the content type; the rest splits into Authorization | query | body.
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.splitn(3, |b| *b == 0xff);
    let auth = parts.next().unwrap_or_default();
    let query = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let mut headers = HeaderMap::new();
    let ct = match kind % 4 {
        0 => "application/x-www-form-urlencoded",
        1 => "application/json",
        2 => "application/json; charset=utf-8",
        _ => "text/plain",
    };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    if let Ok(v) = HeaderValue::from_bytes(auth) {
        headers.insert(header::AUTHORIZATION, v);
    }
    let _ = query_grant_type(std::str::from_utf8(query).ok());
    if let Ok(params) = parse_params(&headers, body) {
        let _ = client_credentials(&headers, &params);
    }
});
