//! The client's address: the one answer to "who sent this request?" that login
//! throttling, rate limits (`key: ip`), audit events, the access log and the
//! `X-Forwarded-For` sent upstream all read.
//!
//! Threat model: a client writes any `X-Forwarded-For` it likes, hoping to pick the address
//! its login or request budget is counted under, or to be audited as someone else. Only
//! what a trusted proxy (`trusted_proxies`) wrote can be believed, and a proxy appends: to
//! the last line it received, or as a line of its own after the client's. So the header is
//! read from the right, across every line in order, and the first entry that is not itself
//! a trusted proxy is the client; everything left of it is the client's own writing and
//! never believed. An entry that is not an address (`unknown`, an obfuscated name, a typo)
//! ends the walk at the last address that was believed: the client is never one a
//! malformed hop would let it choose.
//!
//! What an entry may be: an IPv4 or IPv6 address, an IPv6 address in brackets, or either
//! with a port (`192.0.2.7:4711`, `[2001:db8::7]:4711`, as some load balancers write it);
//! the port is dropped. Empty list elements are skipped (RFC 9110 §5.6.1). An IPv4-mapped
//! IPv6 address (`::ffff:192.0.2.7`, a dual-stack socket's view of an IPv4 peer) is the
//! IPv4 address, for the peer as for the entries, so `trusted_proxies` and budgets see one
//! address, not two spellings of it.

use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Whether `ip` is one of the proxies whose forwarding headers are believed.
pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = ip.to_canonical();
    trusted.iter().any(|n| n.contains(&ip))
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the right-most
/// `X-Forwarded-For` entry (over all lines, last line first) that is not itself a trusted
/// proxy. See the module comment for what stops the walk.
pub fn client_addr(headers: &HeaderMap, peer: IpAddr, trusted: &[IpNet]) -> IpAddr {
    walk(headers, peer, trusted, |_| {})
}

/// The `X-Forwarded-For` to send upstream: the hops Tollgate believes, client first, then
/// the peer. From an untrusted peer that is the peer alone; behind trusted proxies it is
/// the client ([`client_addr`]), the trusted proxies after it and the peer, so an upstream
/// that reads the left-most entry reads the same client Tollgate counted and audited.
pub fn forwarded_for(headers: &HeaderMap, peer: IpAddr, trusted: &[IpNet]) -> HeaderValue {
    let peer = peer.to_canonical();
    let mut hops = Vec::new();
    walk(headers, peer, trusted, |ip| hops.push(ip));
    if hops.is_empty() {
        return peer_value(peer);
    }
    let mut value = String::with_capacity(16 * (hops.len() + 1));
    for ip in hops.iter().rev().chain(std::iter::once(&peer)) {
        if !value.is_empty() {
            value.push_str(", ");
        }
        push_ip(&mut value, *ip);
    }
    HeaderValue::from_maybe_shared(bytes::Bytes::from(value))
        .expect("addresses and commas are valid header text")
}

/// The peer alone as header text. Most requests of a worker come from the same peer (a
/// load balancer, or the few clients of a keep-alive connection), so the last one made
/// is kept per thread and handed out again without formatting the address (BENCHMARKS.md,
/// "Per-stage budget": `set_forwarded`).
fn peer_value(peer: IpAddr) -> HeaderValue {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(IpAddr, HeaderValue)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if let Some((ip, v)) = last.as_ref() {
            if *ip == peer {
                return v.clone();
            }
        }
        let mut text = String::with_capacity(16);
        push_ip(&mut text, peer);
        let v = HeaderValue::from_maybe_shared(bytes::Bytes::from(text))
            .expect("an address is valid header text");
        *last = Some((peer, v.clone()));
        v
    })
}

/// Walks `X-Forwarded-For` right to left from a trusted peer, handing each believed entry
/// to `hop`, and returns the client's address.
fn walk(
    headers: &HeaderMap,
    peer: IpAddr,
    trusted: &[IpNet],
    mut hop: impl FnMut(IpAddr),
) -> IpAddr {
    let peer = peer.to_canonical();
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let mut client = peer;
    for line in headers.get_all(&X_FORWARDED_FOR).iter().rev() {
        let Ok(text) = line.to_str() else {
            return client;
        };
        for entry in text.rsplit(',') {
            let entry = entry.trim_matches([' ', '\t']);
            if entry.is_empty() {
                continue;
            }
            let Some(ip) = parse_entry(entry) else {
                return client;
            };
            hop(ip);
            client = ip;
            if !is_trusted(ip, trusted) {
                return ip;
            }
        }
    }
    client
}

/// One `X-Forwarded-For` element as an address, if it is one.
fn parse_entry(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return inner
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(|ip| IpAddr::V6(ip).to_canonical());
    }
    // `192.0.2.7:4711` and `[2001:db8::7]:4711`.
    s.parse::<SocketAddr>().ok().map(|a| a.ip().to_canonical())
}

/// Appends `ip` as text; IPv4 (the common case) without the formatting machinery, which
/// the profile showed on every proxied request (BENCHMARKS.md, "Profile").
fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
        }
        IpAddr::V6(v6) => {
            use std::fmt::Write;
            let _ = write!(out, "{v6}");
        }
    }
}

#[cfg(test)]
mod tests;
