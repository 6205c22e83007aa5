//! The `CheckResponse` for a decision. A denial carries the answer the proxy would give
//! for the same failure (`ForwardAuthError`, so a request no route covers is 403 here as
//! in HTTP forward-auth), written as Envoy's `denied_response`.

use envoy_types::ext_authz::v3::pb::{
    CheckResponse, DeniedHttpResponse, HeaderAppendAction, HeaderValue, HeaderValueOption,
    HttpResponse, HttpStatus, OkHttpResponse,
};
use envoy_types::pb::google::rpc;
use http::{header, HeaderMap, HeaderName, StatusCode};
use http_body_util::BodyExt;

use super::Outcome;
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

/// An allow: the identity headers set upstream (a client's copy overwritten), every
/// identity header without a value for this caller removed, the rate-limit headers for the
/// client's answer, and the credential removed where the proxy would remove it.
pub fn allow(
    rt: &Generation,
    admitted: &Admitted<'_>,
    request: &HeaderMap,
    cert: Option<&ClientCert>,
) -> CheckResponse {
    let mut set = HeaderMap::new();
    if let Some(id) = &admitted.identity {
        rt.identity_names.inject(&mut set, id);
    }
    if let Some(cert) = cert {
        rt.identity_names.inject_client_cert(&mut set, cert);
    }
    let mut headers_to_remove: Vec<String> = rt
        .identity_names
        .all()
        .filter(|n| !set.contains_key(*n))
        .map(|n| n.as_str().to_owned())
        .collect();
    // A client's look-alike copies (`x.user.id`, `X_User_Id`) go too: upstreams that fold
    // names would read them as the identity. Envoy's own certificate header is its
    // business (it sanitizes a client's copy itself), so it stays.
    for name in request.keys() {
        if rt.identity_headers.is_identity(name)
            && !crate::http::forwarded_cert::NAMES.contains(&name)
            && !set.contains_key(name)
            && !headers_to_remove.iter().any(|r| r == name.as_str())
        {
            headers_to_remove.push(name.as_str().to_owned());
        }
    }
    if !admitted.route.spec.forward_authorization {
        headers_to_remove.push(header::AUTHORIZATION.as_str().to_owned());
    }
    let mut limit = HeaderMap::new();
    if let Some(h) = &admitted.limit_headers {
        h.apply(&mut limit);
    }
    let ok = OkHttpResponse {
        headers: options(&set),
        headers_to_remove,
        response_headers_to_add: options(&limit),
        // A token taken from the query never reaches the upstream, as on the proxy.
        query_parameters_to_remove: admitted
            .query_token
            .map(|name| vec![name.to_owned()])
            .unwrap_or_default(),
        ..OkHttpResponse::default()
    };
    CheckResponse {
        status: Some(status(OK, "")),
        http_response: Some(HttpResponse::OkResponse(ok)),
        ..CheckResponse::default()
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
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    (
        outcome,
        CheckResponse {
            status: Some(status(code, failure.code())),
            http_response: Some(HttpResponse::DeniedResponse(denied)),
            ..CheckResponse::default()
        },
    )
}

/// A check that describes no request Tollgate can decide: denied with 400.
pub fn malformed(why: &'static str) -> CheckResponse {
    let body = serde_json::json!({ "error": "invalid_request", "error_description": why });
    CheckResponse {
        status: Some(status(INVALID_ARGUMENT, why)),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus { code: 400 }),
            headers: options(&HeaderMap::from_iter([
                (
                    header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                ),
                (
                    header::CACHE_CONTROL,
                    http::HeaderValue::from_static("no-store"),
                ),
            ])),
            body: body.to_string(),
        })),
        ..CheckResponse::default()
    }
}

fn status(code: i32, message: &str) -> rpc::Status {
    rpc::Status {
        code,
        message: message.to_owned(),
        details: Vec::new(),
    }
}

/// Headers as Envoy's `HeaderValueOption`s, each overwriting a header of the same name.
fn options(headers: &HeaderMap) -> Vec<HeaderValueOption> {
    headers
        .iter()
        .map(|(name, value): (&HeaderName, &http::HeaderValue)| {
            let (value, raw_value) = match value.to_str() {
                Ok(v) => (v.to_owned(), Vec::new()),
                Err(_) => (String::new(), value.as_bytes().to_vec()),
            };
            HeaderValueOption {
                header: Some(HeaderValue {
                    key: name.as_str().to_owned(),
                    value,
                    raw_value,
                }),
                append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
                ..HeaderValueOption::default()
            }
        })
        .collect()
}
