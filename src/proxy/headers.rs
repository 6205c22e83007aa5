//! Header rewriting on the way to the upstream and back: hop-by-hop removal,
//! `X-Forwarded-*`, `X-Request-Id`, and stripping of identity headers a client might spoof.
//!
//! Threat model: a client sends `X-User-Id: admin` (or `X_User_Id`, `x.user.id`, which
//! some upstream frameworks fold into the same variable) hoping the upstream trusts it.
//! Every inbound header whose name folds to an identity header name is removed on every
//! route, public ones included, before Tollgate injects its own values.

use std::net::IpAddr;

use crate::config::identity::fold;
use crate::http::client_addr;
pub use crate::http::client_addr::X_FORWARDED_FOR;
use crate::http::head::{self, Fields, CONNECTION_INDEX, HOP_BY_HOP};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// Removes hop-by-hop headers, including any the `Connection` header names. When
/// `keep_upgrade` is set (a WebSocket handshake), `Connection: upgrade` and `Upgrade` stay.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // One pass over the fields, then remove only what is there: cheaper than eight
    // hashed removals per head, twice per request (a large share of the proxy's own
    // instructions in the profile, BENCHMARKS.md "Profile"). Most requests carry none;
    // most answers carry `Connection: keep-alive`, which names nothing else.
    let mut present = [false; HOP_BY_HOP.len()];
    // What a `Connection` line lists besides `keep-alive` and `close` (rarely anything),
    // on any of its lines; removed after the pass, since a map cannot change while read.
    let mut named: Vec<HeaderName> = Vec::new();
    for (k, value) in headers.iter() {
        let Some(i) = head::field(k.as_str()).hop_by_hop else {
            continue;
        };
        present[i] = true;
        if i != CONNECTION_INDEX {
            continue;
        }
        // An upstream's usual `Connection: keep-alive` (or `close`) names nothing.
        let v = value.as_bytes();
        if v.eq_ignore_ascii_case(b"keep-alive") || v.eq_ignore_ascii_case(b"close") {
            continue;
        }
        let Ok(list) = value.to_str() else { continue };
        for token in list.split(',').map(str::trim) {
            if token.eq_ignore_ascii_case("keep-alive") || token.eq_ignore_ascii_case("close") {
                continue;
            }
            if let Ok(n) = HeaderName::from_bytes(token.as_bytes()) {
                if !(keep_upgrade && n == header::UPGRADE) {
                    named.push(n);
                }
            }
        }
    }
    for n in named {
        headers.remove(n);
    }
    for (h, here) in HOP_BY_HOP.iter().zip(present) {
        if !here || (keep_upgrade && (**h == header::CONNECTION || **h == header::UPGRADE)) {
            continue;
        }
        headers.remove(*h);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// True for a WebSocket (or other) upgrade request.
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// The identity header names in folded form (lower case, `_` and `.` as `-`), built once
/// per configuration.
#[derive(Debug, Clone, Default)]
pub struct IdentityHeaderSet {
    folded: Vec<Box<[u8]>>,
    /// Which lengths the names have (`length_bit`). Folding keeps a name's length, so a
    /// field of another length is none of them, known without comparing it with each:
    /// most fields of a head are passed over by one test.
    lengths: u64,
}

/// A name length's bit in [`IdentityHeaderSet::lengths`] (lengths of 63 and more share
/// one: for them the names are compared).
fn length_bit(len: usize) -> u64 {
    1 << len.min(63)
}

impl IdentityHeaderSet {
    pub fn new<'a>(names: impl IntoIterator<Item = &'a HeaderName>) -> Self {
        let folded: Vec<Box<[u8]>> = names
            .into_iter()
            .map(|n| {
                n.as_str()
                    .bytes()
                    .map(fold)
                    .collect::<Vec<u8>>()
                    .into_boxed_slice()
            })
            .collect();
        let lengths = folded.iter().fold(0, |bits, f| bits | length_bit(f.len()));
        IdentityHeaderSet { folded, lengths }
    }

    /// Whether `name` folds to one of the set's names.
    pub fn is_identity(&self, name: &HeaderName) -> bool {
        let n = name.as_str().as_bytes();
        if self.lengths & length_bit(n.len()) == 0 {
            return false;
        }
        self.folded
            .iter()
            .any(|f| f.len() == n.len() && f.iter().zip(n).all(|(a, b)| *a == fold(*b)))
    }

    /// Removes every inbound header that folds to an identity header name.
    pub fn strip(&self, headers: &mut HeaderMap) {
        // Collect first: HeaderMap cannot remove while iterating. Allocates only when a
        // client actually sent such a header.
        let mut spoofed: Vec<HeaderName> = Vec::new();
        for name in headers.keys() {
            if self.is_identity(name) {
                spoofed.push(name.clone());
            }
        }
        for n in spoofed {
            headers.remove(n);
        }
    }
}

/// Sets `X-Forwarded-For/-Proto/-Host`. `X-Forwarded-For` is the chain Tollgate
/// believes (`http::client_addr::forwarded_for`: the client, the trusted hops after it,
/// the peer). Inbound `-Proto` and `-Host` are kept only when the peer is inside
/// `trusted`; from anyone else they are replaced, and `Forwarded` is dropped for the same
/// reason. `fields`: what the head carried as received (`http::head`).
pub fn set_forwarded(
    headers: &mut HeaderMap,
    fields: Fields,
    peer: IpAddr,
    scheme: &'static str,
    host: Option<HeaderValue>,
    trusted: &[IpNet],
) {
    let chain = client_addr::forwarded_for(headers, peer, trusted);
    headers.insert(&X_FORWARDED_FOR, chain);
    if client_addr::is_trusted(peer, trusted) {
        if !headers.contains_key(&X_FORWARDED_PROTO) {
            headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static(scheme));
        }
        if !headers.contains_key(&X_FORWARDED_HOST) {
            if let Some(v) = host {
                headers.insert(&X_FORWARDED_HOST, v);
            }
        }
    } else {
        if fields.may_have(Fields::FORWARDED) {
            headers.remove(&FORWARDED);
        }
        headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static(scheme));
        match host {
            Some(v) => {
                headers.insert(&X_FORWARDED_HOST, v);
            }
            None => {
                headers.remove(&X_FORWARDED_HOST);
            }
        }
    }
}

/// The request id: the inbound `X-Request-Id` when it is sane (1–128 characters of
/// `[A-Za-z0-9._:-]`), else a new UUID.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(&X_REQUEST_ID) {
        let b = v.as_bytes();
        if !b.is_empty()
            && b.len() <= 128
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'))
        {
            return v.clone();
        }
    }
    new_request_id()
}

/// How many request ids a thread makes at once.
const ID_BATCH: usize = 32;
/// A hyphenated UUID's length.
const UUID_LEN: usize = 36;

thread_local! {
    /// The thread's request ids not yet handed out, formatted back to back.
    static IDS: std::cell::RefCell<bytes::Bytes> = const { std::cell::RefCell::new(bytes::Bytes::new()) };
}

/// A new v4 UUID. Each thread makes [`ID_BATCH`] at a time, from its CSPRNG (not
/// `Uuid::new_v4`, which asks the kernel: one `getrandom` syscall each), formatted into
/// one buffer that each id is a shared slice of: one allocation and one formatting pass
/// per batch rather than per request (BENCHMARKS.md, "Seventh round").
pub fn new_request_id() -> HeaderValue {
    IDS.with_borrow_mut(|ids| {
        if ids.is_empty() {
            *ids = uuid_batch();
        }
        HeaderValue::from_maybe_shared(ids.split_to(UUID_LEN)).expect("a UUID is a header value")
    })
}

fn uuid_batch() -> bytes::Bytes {
    use rand::RngCore;
    // One fill for the batch: `rand::random::<[u8; 16]>()` takes a 32-bit word of the
    // generator for every byte, four times the ChaCha blocks.
    let mut random = [0u8; 16 * ID_BATCH];
    rand::thread_rng().fill_bytes(&mut random);
    let mut out = bytes::BytesMut::with_capacity(ID_BATCH * UUID_LEN);
    let mut text = uuid::Uuid::encode_buffer();
    for bytes in random.chunks_exact(16) {
        let bytes: [u8; 16] = bytes.try_into().expect("16 bytes");
        let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
        out.extend_from_slice(id.hyphenated().encode_lower(&mut text).as_bytes());
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_identity_spellings() {
        let names = [
            HeaderName::from_static("x-user-id"),
            HeaderName::from_static("x-user-email"),
        ];
        let set = IdentityHeaderSet::new(&names);
        let mut h = HeaderMap::new();
        h.insert("x-user-id", HeaderValue::from_static("admin"));
        h.insert("x_user_id", HeaderValue::from_static("admin"));
        h.insert("x.user.email", HeaderValue::from_static("a@b"));
        h.insert("x-user-idx", HeaderValue::from_static("keep"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        set.strip(&mut h);
        assert_eq!(h.len(), 2);
        assert!(h.contains_key("x-user-idx"));

        // Names of every length, the long ones sharing a length bit, each found under its
        // own spellings and only those.
        let long = "x-".to_string() + &"a".repeat(70);
        let longer = "x-".to_string() + &"a".repeat(80);
        let names = [
            HeaderName::from_static("x-a"),
            HeaderName::from_bytes(long.as_bytes()).unwrap(),
        ];
        let set = IdentityHeaderSet::new(&names);
        for (name, is) in [
            ("x-a", true),
            ("x_a", true),
            ("x.a", true),
            ("x-b", false),
            ("x-ab", false),
            (long.as_str(), true),
            (&long.replace('-', "_"), true),
            (longer.as_str(), false),
            (&long.replace("aa", "ab"), false),
        ] {
            let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
            assert_eq!(set.is_identity(&name), is, "{name}");
        }
        assert!(!IdentityHeaderSet::default().is_identity(&HeaderName::from_static("x-a")));
    }

    #[test]
    fn hop_by_hop_and_connection_named() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("close, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        remove_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);

        // Every `Connection` line counts, not only the first.
        let mut h = HeaderMap::new();
        h.append("connection", HeaderValue::from_static("close"));
        h.append("connection", HeaderValue::from_static("x-second-hop"));
        h.insert("x-second-hop", HeaderValue::from_static("1"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        remove_hop_by_hop(&mut h, false);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["accept"]);
    }

    #[test]
    fn hop_by_hop_removed_whatever_else_is_there() {
        // Nothing hop-by-hop: untouched.
        let mut h = HeaderMap::new();
        h.insert("accept", HeaderValue::from_static("*/*"));
        h.insert("x-custom", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 2);
        // Only non-Connection hop-by-hop headers: all go, the rest stays.
        let mut h = HeaderMap::new();
        h.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        remove_hop_by_hop(&mut h, false);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["accept"]);
        // An upgrade keeps Upgrade and gets `Connection: upgrade`, even when none came in.
        let mut h = HeaderMap::new();
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("te", HeaderValue::from_static("trailers"));
        remove_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
        assert!(!h.contains_key("te"));
        let mut h = HeaderMap::new();
        remove_hop_by_hop(&mut h, true);
        assert_eq!(h["connection"], "upgrade");
        // `Connection: keep-alive` (an upstream's usual answer) and a named header.
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("Keep-Alive, X-Hop"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-hop", HeaderValue::from_static("1"));
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        remove_hop_by_hop(&mut h, false);
        assert_eq!(
            h.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            ["content-type"]
        );
    }

    #[test]
    fn forwarded_replaced_unless_trusted() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        h.insert("forwarded", HeaderValue::from_static("for=6.6.6.6"));
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let fields = Fields::of(&h);
        set_forwarded(
            &mut h,
            fields,
            peer,
            "http",
            Some(HeaderValue::from_static("a.example")),
            &[],
        );
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "a.example");
        assert!(!h.contains_key("forwarded"));

        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        let fields = Fields::of(&h);
        set_forwarded(
            &mut h,
            fields,
            peer,
            "http",
            Some(HeaderValue::from_static("a.example")),
            &["127.0.0.0/8".parse().unwrap()],
        );
        assert_eq!(h["x-forwarded-for"], "6.6.6.6, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");

        // Behind a trusted proxy, what the client wrote left of its own address is not
        // passed on, whichever line it is on.
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_static("1.1.1.1"));
        h.append("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        let fields = Fields::of(&h);
        set_forwarded(
            &mut h,
            fields,
            peer,
            "http",
            None,
            &["127.0.0.0/8".parse().unwrap()],
        );
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-forwarded-for"], "6.6.6.6, 127.0.0.1");
    }

    #[test]
    fn request_id_kept_if_sane() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert(
            "x-request-id",
            HeaderValue::from_static("bad id with spaces"),
        );
        let made = request_id(&h);
        let made = uuid::Uuid::parse_str(made.to_str().unwrap()).expect("a UUID");
        assert_eq!(made.get_version(), Some(uuid::Version::Random));
        assert_eq!(made.get_variant(), uuid::Variant::RFC4122);
        assert_ne!(request_id(&h), request_id(&h));
    }

    #[test]
    fn request_ids_are_distinct_uuids_across_batches() {
        let h = HeaderMap::new();
        let ids: Vec<HeaderValue> = (0..3 * ID_BATCH + 1).map(|_| request_id(&h)).collect();
        let unique: std::collections::HashSet<&HeaderValue> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        for id in &ids {
            let made = uuid::Uuid::parse_str(id.to_str().unwrap()).expect("a UUID");
            assert_eq!(made.get_version(), Some(uuid::Version::Random));
            assert_eq!(made.get_variant(), uuid::Variant::RFC4122);
            assert_eq!(id.len(), UUID_LEN);
        }
    }
}
