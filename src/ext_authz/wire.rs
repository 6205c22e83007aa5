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
//! `request.rs`. The answer (`CheckResponse`) stays envoy-types' own.

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
}
