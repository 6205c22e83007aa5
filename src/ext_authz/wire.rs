//! The part of Envoy's `CheckRequest` a check reads, as its own protobuf messages.
//!
//! envoy-types decodes every field of the request, and its `headers` map into a
//! `HashMap<String, String>`: on a cached-JWT check that map was the largest single cost
//! (about 14,600 instructions of some 93,000, BENCHMARKS.md). These messages carry the
//! same field numbers (envoy/service/auth/v3/attribute_context.proto,
//! envoy/config/core/v3/address.proto and base.proto) and only the fields Tollgate reads;
//! prost skips the rest on the wire. Header names and values are `Bytes` slices of the
//! received frame, so building the `http::HeaderMap` copies nothing.
//!
//! A protobuf `map` is a repeated entry message on the wire (key 1, value 2), and a
//! `oneof` member is an optional field of its number: both are decoded as such here. The
//! map semantics (the last entry for a key wins) are kept by the readers in
//! `request.rs`.
//!
//! The answer is a message of Tollgate's own too: envoy-types' `CheckResponse` takes every
//! header name and value as an owned `String`, built anew on every allow. Here they are
//! `Bytes` (a protobuf `string` and `bytes` are the same on the wire), so the names come
//! from the configuration generation (`response::Prepared`) without a copy, and only the
//! fields Tollgate sets exist (external_auth.proto, base.proto, http_status.proto,
//! google/rpc/status.proto).

use bytes::Bytes;

/// `envoy.service.auth.v3.CheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckRequest {
    #[prost(message, optional, tag = "1")]
    pub attributes: Option<AttributeContext>,
}

/// `AttributeContext`: the source peer, the request, and the context extensions.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeContext {
    #[prost(message, optional, tag = "1")]
    pub source: Option<Peer>,
    #[prost(message, optional, tag = "4")]
    pub request: Option<Request>,
    /// `map<string, string> context_extensions = 10`.
    #[prost(message, repeated, tag = "10")]
    pub context_extensions: Vec<StringEntry>,
}

/// `AttributeContext.Peer`: its address and (URL-encoded PEM) certificate.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Peer {
    #[prost(message, optional, tag = "1")]
    pub address: Option<Address>,
    #[prost(string, tag = "5")]
    pub certificate: String,
}

/// `envoy.config.core.v3.Address`: of its `oneof`, the socket address (1).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Address {
    #[prost(message, optional, tag = "1")]
    pub socket_address: Option<SocketAddress>,
}

/// `envoy.config.core.v3.SocketAddress`: the IP (2).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SocketAddress {
    #[prost(string, tag = "2")]
    pub address: String,
}

/// `AttributeContext.Request`: its HTTP request (2).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Request {
    #[prost(message, optional, tag = "2")]
    pub http: Option<HttpRequest>,
}

/// `AttributeContext.HttpRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HttpRequest {
    #[prost(string, tag = "2")]
    pub method: String,
    /// `map<string, string> headers = 3`: one merged value per name.
    #[prost(message, repeated, tag = "3")]
    pub headers: Vec<HeaderEntry>,
    #[prost(string, tag = "4")]
    pub path: String,
    #[prost(string, tag = "5")]
    pub host: String,
    #[prost(string, tag = "6")]
    pub scheme: String,
    /// `envoy.config.core.v3.HeaderMap header_map = 13` (`encode_raw_headers: true`).
    #[prost(message, optional, tag = "13")]
    pub header_map: Option<HeaderMap>,
}

/// A `map<string, string>` entry whose key and value are header bytes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderEntry {
    #[prost(bytes = "bytes", tag = "1")]
    pub key: Bytes,
    #[prost(bytes = "bytes", tag = "2")]
    pub value: Bytes,
}

/// A `map<string, string>` entry read as text.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StringEntry {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `envoy.config.core.v3.HeaderMap`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderMap {
    #[prost(message, repeated, tag = "1")]
    pub headers: Vec<HeaderValue>,
}

/// `envoy.config.core.v3.HeaderValue`: `raw_value` (3) when set, else `value` (2).
#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderValue {
    #[prost(bytes = "bytes", tag = "1")]
    pub key: Bytes,
    #[prost(bytes = "bytes", tag = "2")]
    pub value: Bytes,
    #[prost(bytes = "bytes", tag = "3")]
    pub raw_value: Bytes,
}

/// `envoy.service.auth.v3.CheckResponse`: the status (1) and, of the `http_response`
/// `oneof`, the denied (2) or the ok response (3).
#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckResponse {
    #[prost(message, optional, tag = "1")]
    pub status: Option<Status>,
    #[prost(message, optional, tag = "2")]
    pub denied_response: Option<DeniedHttpResponse>,
    #[prost(message, optional, tag = "3")]
    pub ok_response: Option<OkHttpResponse>,
}

/// `google.rpc.Status`: the code and a message for the log.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// `envoy.service.auth.v3.OkHttpResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OkHttpResponse {
    #[prost(message, repeated, tag = "2")]
    pub headers: Vec<HeaderValueOption>,
    /// `repeated string headers_to_remove = 5`.
    #[prost(bytes = "bytes", repeated, tag = "5")]
    pub headers_to_remove: Vec<Bytes>,
    #[prost(message, repeated, tag = "6")]
    pub response_headers_to_add: Vec<HeaderValueOption>,
    /// `repeated string query_parameters_to_remove = 8`.
    #[prost(bytes = "bytes", repeated, tag = "8")]
    pub query_parameters_to_remove: Vec<Bytes>,
}

/// `envoy.service.auth.v3.DeniedHttpResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeniedHttpResponse {
    #[prost(message, optional, tag = "1")]
    pub status: Option<HttpStatus>,
    #[prost(message, repeated, tag = "2")]
    pub headers: Vec<HeaderValueOption>,
    /// `string body = 3`.
    #[prost(bytes = "bytes", tag = "3")]
    pub body: Bytes,
}

/// `envoy.type.v3.HttpStatus`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HttpStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
}

/// `envoy.config.core.v3.HeaderValueOption`: the header (1) and its `append_action` (3).
#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderValueOption {
    #[prost(message, optional, tag = "1")]
    pub header: Option<HeaderValue>,
    #[prost(int32, tag = "3")]
    pub append_action: i32,
}

/// `HeaderValueOption.HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD`.
pub const OVERWRITE_IF_EXISTS_OR_ADD: i32 = 2;

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use envoy_types::pb::envoy::config::core::v3 as core;
    use envoy_types::pb::envoy::service::auth::v3 as auth;
    use prost::Message;

    /// What envoy-types (Envoy's own protos) encodes, these messages decode: every field
    /// read, and the fields not read (destination, metadata, the request's id, size and
    /// body, a pipe address) skipped without error.
    #[test]
    fn decodes_what_envoys_messages_encode() {
        use auth::attribute_context::{HttpRequest, Peer, Request};
        let header = |k: &str, v: &str, raw: &[u8]| core::HeaderValue {
            key: k.into(),
            value: v.into(),
            raw_value: raw.to_vec(),
        };
        let sent = auth::CheckRequest {
            attributes: Some(auth::AttributeContext {
                source: Some(Peer {
                    address: Some(core::Address {
                        address: Some(core::address::Address::SocketAddress(core::SocketAddress {
                            address: "2001:db8::7".into(),
                            port_specifier: Some(core::socket_address::PortSpecifier::PortValue(
                                443,
                            )),
                            ..Default::default()
                        })),
                    }),
                    principal: "spiffe://cluster/ns/a".into(),
                    certificate: "-----BEGIN%20CERTIFICATE-----".into(),
                    ..Default::default()
                }),
                destination: Some(Peer {
                    address: Some(core::Address {
                        address: Some(core::address::Address::Pipe(core::Pipe {
                            path: "/run/envoy.sock".into(),
                            ..Default::default()
                        })),
                    }),
                    ..Default::default()
                }),
                request: Some(Request {
                    http: Some(HttpRequest {
                        id: "17".into(),
                        method: "POST".into(),
                        headers: HashMap::from([
                            (":authority".into(), "api.example.com".into()),
                            ("authorization".into(), "Bearer t".into()),
                        ]),
                        header_map: Some(core::HeaderMap {
                            headers: vec![header("x-a", "1", b""), header("x-a", "", b"2")],
                        }),
                        path: "/v1/orders?x=1".into(),
                        host: "api.example.com".into(),
                        scheme: "https".into(),
                        size: 12,
                        body: "{}".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                context_extensions: HashMap::from([("tollgate_route".into(), "orders".into())]),
                ..Default::default()
            }),
        };
        let got = super::CheckRequest::decode(sent.encode_to_vec().as_slice()).unwrap();
        let attrs = got.attributes.unwrap();
        let source = attrs.source.unwrap();
        assert_eq!(
            source.address.unwrap().socket_address.unwrap().address,
            "2001:db8::7"
        );
        assert_eq!(source.certificate, "-----BEGIN%20CERTIFICATE-----");
        let http = attrs.request.unwrap().http.unwrap();
        assert_eq!(
            (
                http.method.as_str(),
                http.path.as_str(),
                http.host.as_str(),
                http.scheme.as_str()
            ),
            ("POST", "/v1/orders?x=1", "api.example.com", "https")
        );
        let mut merged: Vec<(&[u8], &[u8])> = http
            .headers
            .iter()
            .map(|e| (&e.key[..], &e.value[..]))
            .collect();
        merged.sort();
        assert_eq!(
            merged,
            [
                (&b":authority"[..], &b"api.example.com"[..]),
                (b"authorization", b"Bearer t")
            ]
        );
        let map = http.header_map.unwrap();
        let raw: Vec<(&[u8], &[u8], &[u8])> = map
            .headers
            .iter()
            .map(|h| (&h.key[..], &h.value[..], &h.raw_value[..]))
            .collect();
        assert_eq!(
            raw,
            [(&b"x-a"[..], &b"1"[..], &b""[..]), (b"x-a", b"", b"2")]
        );
        assert_eq!(attrs.context_extensions.len(), 1);
        assert_eq!(
            (
                attrs.context_extensions[0].key.as_str(),
                attrs.context_extensions[0].value.as_str()
            ),
            ("tollgate_route", "orders")
        );
    }

    /// What these answer messages encode, Envoy's own messages (envoy-types) decode, field
    /// for field: an allow and a denial.
    #[test]
    fn envoys_messages_decode_what_these_encode() {
        use super::*;
        use auth::check_response::HttpResponse;
        let option = |k: &'static [u8], v: &'static [u8], raw: &'static [u8]| HeaderValueOption {
            header: Some(HeaderValue {
                key: Bytes::from_static(k),
                value: Bytes::from_static(v),
                raw_value: Bytes::from_static(raw),
            }),
            append_action: OVERWRITE_IF_EXISTS_OR_ADD,
        };
        let allow = CheckResponse {
            status: Some(Status {
                code: 0,
                message: String::new(),
            }),
            ok_response: Some(OkHttpResponse {
                headers: vec![
                    option(b"x-user-id", b"7", b""),
                    option(b"x-role", b"", b"\xff"),
                ],
                headers_to_remove: vec![Bytes::from_static(b"x-email")],
                response_headers_to_add: vec![option(b"ratelimit-limit", b"10", b"")],
                query_parameters_to_remove: vec![Bytes::from_static(b"access_token")],
            }),
            denied_response: None,
        };
        let got = auth::CheckResponse::decode(allow.encode_to_vec().as_slice()).unwrap();
        assert_eq!(got.status.unwrap().code, 0);
        let Some(HttpResponse::OkResponse(ok)) = got.http_response else {
            panic!("not an ok response: {:?}", got.http_response);
        };
        let headers: Vec<(String, String, Vec<u8>, i32)> = ok
            .headers
            .iter()
            .map(|o| {
                let h = o.header.clone().unwrap();
                (h.key, h.value, h.raw_value, o.append_action)
            })
            .collect();
        let overwrite =
            core::header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd as i32;
        assert_eq!(
            headers,
            [
                ("x-user-id".into(), "7".into(), vec![], overwrite),
                ("x-role".into(), String::new(), vec![0xff], overwrite)
            ]
        );
        assert_eq!(ok.headers_to_remove, ["x-email"]);
        let added = ok.response_headers_to_add[0].header.clone().unwrap();
        assert_eq!(
            (added.key.as_str(), added.value.as_str()),
            ("ratelimit-limit", "10")
        );
        assert_eq!(ok.query_parameters_to_remove, ["access_token"]);

        let deny = CheckResponse {
            status: Some(Status {
                code: 16,
                message: "invalid_token".into(),
            }),
            denied_response: Some(DeniedHttpResponse {
                status: Some(HttpStatus { code: 401 }),
                headers: vec![option(b"www-authenticate", b"Bearer", b"")],
                body: Bytes::from_static(b"{\"error\":\"invalid_token\"}"),
            }),
            ok_response: None,
        };
        let got = auth::CheckResponse::decode(deny.encode_to_vec().as_slice()).unwrap();
        let status = got.status.unwrap();
        assert_eq!(
            (status.code, status.message.as_str()),
            (16, "invalid_token")
        );
        let Some(HttpResponse::DeniedResponse(denied)) = got.http_response else {
            panic!("not a denial: {:?}", got.http_response);
        };
        assert_eq!(denied.status.unwrap().code, 401);
        assert_eq!(
            denied.headers[0].header.clone().unwrap().key,
            "www-authenticate"
        );
        assert_eq!(denied.body, "{\"error\":\"invalid_token\"}");
    }
}
