//! Which of the request fields Tollgate's stages look up are in a head, learnt in one
//! pass over its names.
//!
//! A `HeaderMap` lookup hashes the name and probes the table whether or not the field is
//! there, and most heads carry few of the fields the stages ask about (`X-Request-Id`,
//! `Content-Type` for gRPC, `Upgrade`, `TE`, `grpc-timeout`, `Forwarded`, the hop-by-hop
//! fields): about a hundred instructions each for a miss, several per proxied request
//! (BENCHMARKS.md, "Ninth round"). [`Fields`] says which are *not* there, so a stage skips
//! its lookup. It only ever skips: a field it records as present is still looked up, and
//! read, by the stage itself, so a stage's decision is the same as without it. Taken once,
//! from the head as received, before anything is removed or added.
//!
//! [`field`] is the one list of those names, the hop-by-hop ones with their place in
//! [`HOP_BY_HOP`], which is what `proxy::headers::remove_hop_by_hop` removes.

use http::header::{self, HeaderMap, HeaderName};

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Hop-by-hop fields (RFC 9110 §7.6.1), never forwarded in either direction
/// (`proxy::headers::remove_hop_by_hop`). A field's place here is its
/// [`Field::hop_by_hop`]; `Connection` is first, as [`CONNECTION_INDEX`] says.
pub static HOP_BY_HOP: [&HeaderName; 8] = [
    &header::CONNECTION,
    &KEEP_ALIVE,
    &PROXY_CONNECTION,
    &header::TE,
    &header::TRAILER,
    &header::TRANSFER_ENCODING,
    &header::UPGRADE,
    &header::PROXY_AUTHORIZATION,
];

/// `Connection`'s place in [`HOP_BY_HOP`]: only it can name further fields.
pub const CONNECTION_INDEX: usize = 0;

/// What the stages know of one field name: its bit in [`Fields`] and, for a hop-by-hop
/// field, its place in [`HOP_BY_HOP`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub fields: Fields,
    pub hop_by_hop: Option<usize>,
}

/// The one list of the names the stages look for, by text (lower case, as a `HeaderMap`
/// keeps them): most names are told apart by their length alone, cheaper than comparing
/// a name with each. [`Fields::of`] and `remove_hop_by_hop` both read it, so a
/// hop-by-hop name cannot be removed by one and missed by the other. Inlined: both
/// callers run it on every field of a head.
#[inline]
pub fn field(name: &str) -> Field {
    let (fields, hop_by_hop) = match name {
        "content-length" => (Fields::CONTENT_LENGTH, None),
        "content-type" => (Fields::CONTENT_TYPE, None),
        "x-request-id" => (Fields::X_REQUEST_ID, None),
        "grpc-timeout" => (Fields::GRPC_TIMEOUT, None),
        "forwarded" => (Fields::FORWARDED, None),
        "connection" => (Fields::CONNECTION, Some(CONNECTION_INDEX)),
        "keep-alive" => (Fields::OTHER_HOP_BY_HOP, Some(1)),
        "proxy-connection" => (Fields::OTHER_HOP_BY_HOP, Some(2)),
        "te" => (Fields::TE, Some(3)),
        "trailer" => (Fields::OTHER_HOP_BY_HOP, Some(4)),
        // Framing and hop-by-hop both.
        "transfer-encoding" => (
            Fields(Fields::TRANSFER_ENCODING.0 | Fields::OTHER_HOP_BY_HOP.0),
            Some(5),
        ),
        "upgrade" => (Fields::UPGRADE, Some(6)),
        "proxy-authorization" => (Fields::OTHER_HOP_BY_HOP, Some(7)),
        _ => (Fields(0), None),
    };
    Field { fields, hop_by_hop }
}

/// The fields of one head that may be present (a bit set; see the constants).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields(u16);

impl Fields {
    pub const CONTENT_LENGTH: Fields = Fields(1);
    pub const TRANSFER_ENCODING: Fields = Fields(1 << 1);
    pub const CONTENT_TYPE: Fields = Fields(1 << 2);
    pub const X_REQUEST_ID: Fields = Fields(1 << 3);
    pub const UPGRADE: Fields = Fields(1 << 4);
    pub const TE: Fields = Fields(1 << 5);
    pub const GRPC_TIMEOUT: Fields = Fields(1 << 6);
    pub const FORWARDED: Fields = Fields(1 << 7);
    pub const CONNECTION: Fields = Fields(1 << 8);
    /// Any hop-by-hop field but `Connection`, `TE` and `Upgrade`, which have their own
    /// bits (`Keep-Alive`, `Proxy-Connection`, `Trailer`, `Transfer-Encoding`,
    /// `Proxy-Authorization`).
    pub const OTHER_HOP_BY_HOP: Fields = Fields(1 << 9);
    /// Every hop-by-hop field (every name of [`HOP_BY_HOP`]).
    pub const HOP_BY_HOP: Fields = Fields(
        Fields::CONNECTION.0 | Fields::TE.0 | Fields::UPGRADE.0 | Fields::OTHER_HOP_BY_HOP.0,
    );
    /// Every field: a head of which nothing is known (each lookup is made).
    pub const ALL: Fields = Fields(u16::MAX);

    /// The fields of `headers`, in one pass over its names.
    pub fn of(headers: &HeaderMap) -> Fields {
        let mut seen = 0;
        for name in headers.keys() {
            seen |= field(name.as_str()).fields.0;
        }
        Fields(seen)
    }

    /// Whether any of `these` may be in the head; `false` only when none is.
    #[inline]
    pub fn may_have(self, these: Fields) -> bool {
        self.0 & these.0 != 0
    }
}

impl std::ops::BitOr for Fields {
    type Output = Fields;

    fn bitor(self, other: Fields) -> Fields {
        Fields(self.0 | other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::{field, Fields, HOP_BY_HOP};
    use http::{HeaderMap, HeaderValue};

    fn head(names: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for n in names {
            h.append(*n, HeaderValue::from_static("1"));
        }
        h
    }

    #[test]
    fn each_field_is_seen_under_its_name() {
        let cases = [
            ("content-length", Fields::CONTENT_LENGTH),
            ("transfer-encoding", Fields::TRANSFER_ENCODING),
            ("transfer-encoding", Fields::OTHER_HOP_BY_HOP),
            ("content-type", Fields::CONTENT_TYPE),
            ("x-request-id", Fields::X_REQUEST_ID),
            ("upgrade", Fields::UPGRADE),
            ("te", Fields::TE),
            ("grpc-timeout", Fields::GRPC_TIMEOUT),
            ("forwarded", Fields::FORWARDED),
            ("connection", Fields::CONNECTION),
            ("keep-alive", Fields::OTHER_HOP_BY_HOP),
            ("proxy-connection", Fields::OTHER_HOP_BY_HOP),
            ("trailer", Fields::OTHER_HOP_BY_HOP),
            ("proxy-authorization", Fields::OTHER_HOP_BY_HOP),
        ];
        for (name, field) in cases {
            let fields = Fields::of(&head(&["host", name, "accept"]));
            assert!(fields.may_have(field), "{name}");
            assert!(fields.may_have(Fields::ALL), "{name}");
        }
        // Names are case-insensitive on the wire and lower case in a HeaderMap.
        let mut h = HeaderMap::new();
        h.append("X-Request-ID", HeaderValue::from_static("a"));
        assert!(Fields::of(&h).may_have(Fields::X_REQUEST_ID));
    }

    #[test]
    fn absent_fields_are_not_seen() {
        let fields = Fields::of(&head(&[
            "host",
            "authorization",
            "x-forwarded-for",
            "accept",
        ]));
        for field in [
            Fields::CONTENT_LENGTH,
            Fields::TRANSFER_ENCODING,
            Fields::CONTENT_TYPE,
            Fields::X_REQUEST_ID,
            Fields::GRPC_TIMEOUT,
            Fields::FORWARDED,
            Fields::HOP_BY_HOP,
        ] {
            assert!(!fields.may_have(field), "{field:?}");
        }
        // Look-alikes are other fields.
        let fields = Fields::of(&head(&[
            "x-request-ids",
            "tee",
            "content-types",
            "forwarded-for",
        ]));
        assert_eq!(fields, Fields(0));
        assert!(Fields::ALL.may_have(Fields::FORWARDED));
    }

    #[test]
    fn each_hop_by_hop_name_is_at_its_place_and_noted() {
        // `Proxy::mutate` skips `remove_hop_by_hop` when no hop-by-hop bit is set, and
        // `remove_hop_by_hop` removes by place: both must agree with the list.
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            let f = field(name.as_str());
            assert_eq!(f.hop_by_hop, Some(i), "{name}");
            assert!(f.fields.may_have(Fields::HOP_BY_HOP), "{name}");
        }
        for other in [
            "host",
            "x-te",
            "keep-alives",
            "connections",
            "upgrade-insecure-requests",
            "content-length",
            "forwarded",
        ] {
            assert_eq!(field(other).hop_by_hop, None, "{other}");
            assert!(!field(other).fields.may_have(Fields::HOP_BY_HOP), "{other}");
        }
    }
}
