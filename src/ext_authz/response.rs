//! The `CheckResponse` for a decision. A denial carries the answer the proxy would give
//! for the same failure (`ForwardAuthError`, so a request no route covers is 403 here as
//! in HTTP forward-auth), written as Envoy's `denied_response`.

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use http_body_util::BodyExt;

use super::wire::{
    CheckResponse, DeniedHttpResponse, HeaderValueOption, HttpStatus, OkHttpResponse, Status,
    OVERWRITE_IF_EXISTS_OR_ADD,
};
use super::Outcome;
use crate::config::{IdentityHeaderNames, IDENTITY_FIELDS};
use crate::forward_auth::ForwardAuthError;
use crate::http::error::ErrorResponse;
use crate::http::ClientCert;
use crate::proxy::admission::Admitted;
use crate::proxy::error::GatewayError;
use crate::proxy::Generation;

/// gRPC status codes (google.rpc.Code) Envoy reads from a check.
const OK: i32 = 0;
const INVALID_ARGUMENT: i32 = 3;
const PERMISSION_DENIED: i32 = 7;
const UNAVAILABLE: i32 = 14;
const UNAUTHENTICATED: i32 = 16;

/// A configuration generation's identity header names as the answer carries them, made
/// once with the generation: an allow names every one of them (to set or to remove), and
/// copying each name into a new string per allow was most of an allow's cost
/// (BENCHMARKS.md, "Sixth round").
pub struct Prepared {
    /// By place, as `IdentityHeaderNames::fields`.
    names: [Option<Bytes>; IDENTITY_FIELDS],
}

impl Prepared {
    pub fn new(names: &IdentityHeaderNames) -> Prepared {
        Prepared {
            names: names
                .fields()
                .map(|n| n.map(|n| Bytes::copy_from_slice(n.as_str().as_bytes()))),
        }
    }
}

/// An allow: the identity headers set upstream (a client's copy overwritten), every
/// identity header without a value for this caller removed, the rate-limit headers for the
/// client's answer, and the credential removed where the proxy would remove it.
pub fn allow(
    rt: &Generation,
    admitted: &Admitted<'_>,
    request: &HeaderMap,
    cert: Option<&ClientCert>,
) -> CheckResponse {
    let names = &rt.ext_authz.names;
    let mut headers = Vec::with_capacity(IDENTITY_FIELDS);
    // The places set, as bits; every other configured name is removed.
    let mut set = 0u32;
    let mut add = |place: usize, value: &HeaderValue| {
        if let Some(name) = &names[place] {
            headers.push(option(name.clone(), value));
            set |= 1 << place;
        }
    };
    if let Some(id) = &admitted.identity {
        rt.identity_names.each(id, |place, _, v| add(place, v));
    }
    if let Some(cert) = cert {
        rt.identity_names
            .each_client_cert(cert, |place, _, v| add(place, &v));
    }
    let mut headers_to_remove: Vec<Bytes> = names
        .iter()
        .enumerate()
        .filter(|(place, _)| set & (1 << place) == 0)
        .filter_map(|(_, name)| name.clone())
        .collect();
    // A client's look-alike copies (`x.user.id`, `X_User_Id`) go too: upstreams that fold
    // names would read them as the identity. Envoy's own certificate header is its
    // business (it sanitizes a client's copy itself), so it stays. The configured names
    // themselves are set or removed above already.
    for name in request.keys() {
        if rt.identity_headers.is_identity(name)
            && !crate::http::forwarded_cert::NAMES.contains(&name)
            && !rt.identity_names.all().any(|n| n == name)
        {
            headers_to_remove.push(Bytes::copy_from_slice(name.as_str().as_bytes()));
        }
    }
    if !admitted.route.spec.forward_authorization {
        headers_to_remove.push(Bytes::from_static(b"authorization"));
    }
    let mut limit = HeaderMap::new();
    if let Some(h) = &admitted.limit_headers {
        h.apply(&mut limit);
    }
    let ok = OkHttpResponse {
        headers,
        headers_to_remove,
        response_headers_to_add: options(&limit),
        // A token taken from the query never reaches the upstream, as on the proxy.
        query_parameters_to_remove: admitted
            .query_token
            .map(|name| vec![Bytes::copy_from_slice(name.as_bytes())])
            .unwrap_or_default(),
    };
    CheckResponse {
        status: Some(status(OK, "")),
        ok_response: Some(ok),
        denied_response: None,
    }
}

/// A refusal: the proxy's answer for it, and whether it was a decision or none could be
/// made.
pub async fn deny(error: GatewayError) -> (Outcome, CheckResponse) {
    let failure = match error {
        GatewayError::NoRoute => ForwardAuthError::NoRoute,
        e => ForwardAuthError::Gateway(e),
    };
    if failure.logged() {
        tracing::warn!(error = failure.code(), detail = %failure, "ext_authz: no decision");
    } else {
        tracing::debug!(error = failure.code(), "ext_authz: denied");
    }
    let http_status = failure.status();
    let (code, outcome) = match http_status {
        StatusCode::UNAUTHORIZED => (UNAUTHENTICATED, Outcome::Deny),
        s if s.is_server_error() => (UNAVAILABLE, Outcome::Unavailable),
        _ => (PERMISSION_DENIED, Outcome::Deny),
    };
    let (parts, body) = failure.response().into_parts();
    // The body is the small JSON error Tollgate wrote itself.
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut headers = parts.headers;
    headers.remove(header::CONTENT_LENGTH);
    let denied = DeniedHttpResponse {
        status: Some(HttpStatus {
            code: i32::from(http_status.as_u16()),
        }),
        headers: options(&headers),
        body: text(body),
    };
    (
        outcome,
        CheckResponse {
            status: Some(status(code, failure.code())),
            denied_response: Some(denied),
            ok_response: None,
        },
    )
}

/// A check that describes no request Tollgate can decide: denied with 400.
pub fn malformed(why: &'static str) -> CheckResponse {
    let body = serde_json::json!({ "error": "invalid_request", "error_description": why });
    CheckResponse {
        status: Some(status(INVALID_ARGUMENT, why)),
        denied_response: Some(DeniedHttpResponse {
            status: Some(HttpStatus { code: 400 }),
            headers: options(&HeaderMap::from_iter([
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ])),
            body: Bytes::from(body.to_string()),
        }),
        ok_response: None,
    }
}

fn status(code: i32, message: &str) -> Status {
    Status {
        code,
        message: message.to_owned(),
    }
}

/// A body for the `string` field: protobuf strings are UTF-8 (Tollgate's own JSON always
/// is; anything else is made so rather than sent malformed).
fn text(body: Bytes) -> Bytes {
    match std::str::from_utf8(&body) {
        Ok(_) => body,
        Err(_) => Bytes::from(String::from_utf8_lossy(&body).into_owned()),
    }
}

/// Headers as Envoy's `HeaderValueOption`s, each overwriting a header of the same name.
fn options(headers: &HeaderMap) -> Vec<HeaderValueOption> {
    headers
        .iter()
        .map(|(name, value)| option(Bytes::copy_from_slice(name.as_str().as_bytes()), value))
        .collect()
}

/// One header, overwriting a header of the same name. A value that is not text goes as
/// `raw_value`, since a protobuf string must be UTF-8: of a valid header value's bytes,
/// only those above ASCII (obs-text) make it so.
fn option(key: Bytes, value: &HeaderValue) -> HeaderValueOption {
    let bytes = Bytes::copy_from_slice(value.as_bytes());
    let (value, raw_value) = if bytes.is_ascii() {
        (bytes, Bytes::new())
    } else {
        (Bytes::new(), bytes)
    };
    HeaderValueOption {
        header: Some(super::wire::HeaderValue {
            key,
            value,
            raw_value,
        }),
        append_action: OVERWRITE_IF_EXISTS_OR_ADD,
    }
}
