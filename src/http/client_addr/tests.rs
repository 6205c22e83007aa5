use std::net::IpAddr;

use http::{HeaderMap, HeaderValue};
use ipnet::IpNet;

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().map(|n| n.parse().unwrap()).collect()
}

/// A head with one `X-Forwarded-For` line per element, in order.
fn lines(values: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for v in values {
        h.append(&X_FORWARDED_FOR, HeaderValue::from_str(v).unwrap());
    }
    h
}

#[test]
fn an_untrusted_peer_is_the_client_whatever_it_writes() {
    let trusted = nets(&["10.0.0.0/8"]);
    let h = lines(&["198.51.100.7", "10.1.1.1"]);
    assert_eq!(
        client_addr(&h, ip("203.0.113.9"), &trusted),
        ip("203.0.113.9")
    );
    assert_eq!(
        forwarded_for(&h, ip("203.0.113.9"), &trusted),
        "203.0.113.9"
    );
    // No trusted proxies at all: the same.
    assert_eq!(client_addr(&h, ip("10.0.0.2"), &[]), ip("10.0.0.2"));
}

#[test]
fn behind_a_trusted_proxy_the_right_most_untrusted_entry_is_the_client() {
    let trusted = nets(&["10.0.0.0/8"]);
    let h = lines(&["6.6.6.6, 198.51.100.7, 10.2.2.2"]);
    assert_eq!(
        client_addr(&h, ip("10.1.1.1"), &trusted),
        ip("198.51.100.7")
    );
    // Entries left of the client are the client's own writing and never forwarded.
    assert_eq!(
        forwarded_for(&h, ip("10.1.1.1"), &trusted),
        "198.51.100.7, 10.2.2.2, 10.1.1.1"
    );
    // No header: the trusted peer itself.
    assert_eq!(
        client_addr(&HeaderMap::new(), ip("10.1.1.1"), &trusted),
        ip("10.1.1.1")
    );
    assert_eq!(
        forwarded_for(&HeaderMap::new(), ip("10.1.1.1"), &trusted),
        "10.1.1.1"
    );
}

#[test]
fn every_line_counts_and_the_last_line_is_read_first() {
    let trusted = nets(&["10.0.0.0/8"]);
    // The client sent a line of its own; the trusted proxy added its line after it.
    let h = lines(&["6.6.6.6", "198.51.100.7"]);
    assert_eq!(
        client_addr(&h, ip("10.1.1.1"), &trusted),
        ip("198.51.100.7")
    );
    // Trusted hops spread over several lines are walked through, in order.
    let h = lines(&["6.6.6.6, 198.51.100.7", "10.3.3.3", "10.2.2.2, 10.4.4.4"]);
    assert_eq!(
        client_addr(&h, ip("10.1.1.1"), &trusted),
        ip("198.51.100.7")
    );
    assert_eq!(
        forwarded_for(&h, ip("10.1.1.1"), &trusted),
        "198.51.100.7, 10.3.3.3, 10.2.2.2, 10.4.4.4, 10.1.1.1"
    );
}

#[test]
fn trusted_and_untrusted_hops_mixed() {
    let trusted = nets(&["10.0.0.0/8", "192.0.2.10/32"]);
    // An untrusted hop between two trusted ones: the walk stops at it, even though a
    // trusted-looking address stands further left.
    let h = lines(&["10.9.9.9, 203.0.113.5, 192.0.2.10"]);
    assert_eq!(client_addr(&h, ip("10.1.1.1"), &trusted), ip("203.0.113.5"));
    // Every entry trusted: the left-most is the best that can be said.
    let h = lines(&["10.9.9.9, 192.0.2.10"]);
    assert_eq!(client_addr(&h, ip("10.1.1.1"), &trusted), ip("10.9.9.9"));
}

#[test]
fn ipv6_bare_bracketed_and_with_ports() {
    let trusted = nets(&["10.0.0.0/8", "fd00::/8"]);
    for (entry, want) in [
        ("2001:db8::7", "2001:db8::7"),
        ("[2001:db8::7]", "2001:db8::7"),
        ("[2001:db8::7]:4711", "2001:db8::7"),
        ("198.51.100.7:4711", "198.51.100.7"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
    ] {
        let h = lines(&[entry]);
        assert_eq!(
            client_addr(&h, ip("10.1.1.1"), &trusted),
            ip(want),
            "{entry}"
        );
    }
    // A trusted IPv6 proxy in the chain, an IPv6 peer.
    let h = lines(&["2001:db8::7, [fd00::2]:443"]);
    assert_eq!(client_addr(&h, ip("fd00::1"), &trusted), ip("2001:db8::7"));
    assert_eq!(
        forwarded_for(&h, ip("fd00::1"), &trusted),
        "2001:db8::7, fd00::2, fd00::1"
    );
    // A dual-stack socket's view of a trusted IPv4 peer is the IPv4 peer.
    let h = lines(&["198.51.100.7"]);
    assert_eq!(
        client_addr(&h, ip("::ffff:10.1.1.1"), &trusted),
        ip("198.51.100.7")
    );
    assert_eq!(
        forwarded_for(&h, ip("::ffff:10.1.1.1"), &trusted),
        "198.51.100.7, 10.1.1.1"
    );
}

#[test]
fn garbage_stops_the_walk_at_the_last_good_address() {
    let trusted = nets(&["10.0.0.0/8"]);
    let peer = ip("10.1.1.1");
    for (h, want, fwd) in [
        // Garbage right after the peer: the peer.
        (lines(&["198.51.100.7, unknown"]), "10.1.1.1", "10.1.1.1"),
        // Garbage behind a trusted hop: that hop.
        (
            lines(&["198.51.100.7, not-an-ip, 10.2.2.2"]),
            "10.2.2.2",
            "10.2.2.2, 10.1.1.1",
        ),
        // A garbage line ends the walk before the lines left of it.
        (
            lines(&["198.51.100.7", "10.2.2.2 10.3.3.3", "10.4.4.4"]),
            "10.4.4.4",
            "10.4.4.4, 10.1.1.1",
        ),
        // Zone ids, bad brackets, ports out of range, quoted Forwarded syntax.
        (lines(&["fe80::1%eth0"]), "10.1.1.1", "10.1.1.1"),
        (lines(&["[198.51.100.7]"]), "10.1.1.1", "10.1.1.1"),
        (lines(&["[2001:db8::7"]), "10.1.1.1", "10.1.1.1"),
        (lines(&["198.51.100.7:99999"]), "10.1.1.1", "10.1.1.1"),
        (lines(&["\"[2001:db8::7]:80\""]), "10.1.1.1", "10.1.1.1"),
    ] {
        assert_eq!(client_addr(&h, peer, &trusted), ip(want), "{h:?}");
        assert_eq!(forwarded_for(&h, peer, &trusted), fwd, "{h:?}");
    }
    // Bytes that are not text end the walk too.
    let mut h = lines(&["198.51.100.7"]);
    h.append(
        &X_FORWARDED_FOR,
        HeaderValue::from_bytes(b"10.2.2.2, \xff").unwrap(),
    );
    assert_eq!(client_addr(&h, peer, &trusted), peer);
}

#[test]
fn empty_elements_are_skipped() {
    let trusted = nets(&["10.0.0.0/8"]);
    let h = lines(&["198.51.100.7,, 10.2.2.2 ,", ""]);
    assert_eq!(
        client_addr(&h, ip("10.1.1.1"), &trusted),
        ip("198.51.100.7")
    );
}

#[test]
fn addresses_are_written_as_display_writes_them() {
    for text in [
        "0.0.0.0",
        "127.0.0.1",
        "10.0.100.7",
        "192.168.1.255",
        "255.255.255.255",
        "9.99.100.101",
        "::1",
        "2001:db8::8a2e:370:7334",
    ] {
        let mut out = String::new();
        push_ip(&mut out, ip(text));
        assert_eq!(out, ip(text).to_string());
    }
}
