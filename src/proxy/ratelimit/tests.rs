use std::net::IpAddr;
use std::time::Duration;

use http::HeaderMap;

use super::local::LocalStore;
use super::*;
use crate::config::raw::RateLimitStoreKind;

fn spec(requests: u32, per: Duration, burst: u32) -> RateLimitSpec {
    RateLimitSpec {
        requests,
        per,
        burst,
        key: RateLimitKey::Ip,
        store: RateLimitStoreKind::Local,
        max_keys: 1000,
    }
}

#[test]
fn local_store_allows_the_burst_then_refuses_with_the_wait() {
    let store = LocalStore::new(&spec(60, Duration::from_secs(60), 3));
    let k = LimitKey::of("ip", b"192.0.2.1");
    for expect_remaining in [2, 1, 0] {
        match store.decide(&k) {
            Decision::Allowed { remaining, .. } => assert_eq!(remaining, expect_remaining),
            d => panic!("{d:?}"),
        }
    }
    match store.decide(&k) {
        Decision::Limited { retry_after } => {
            assert!(retry_after <= Duration::from_secs(1), "{retry_after:?}");
            assert!(retry_after > Duration::from_millis(500), "{retry_after:?}");
        }
        d => panic!("{d:?}"),
    }
    // Another caller has its own budget.
    assert!(matches!(
        store.decide(&LimitKey::of("ip", b"192.0.2.2")),
        Decision::Allowed { .. }
    ));
}

#[test]
fn local_store_memory_is_bounded_by_max_keys() {
    let mut s = spec(10, Duration::from_secs(60), 10);
    s.max_keys = 100;
    let store = LocalStore::new(&s);
    for i in 0..5000u32 {
        store.decide(&LimitKey::of("ip", &i.to_be_bytes()));
    }
    assert!(store.key_count() <= 100, "{}", store.key_count());
}

#[test]
fn keys_fall_back_to_the_client_ip() {
    let mut s = spec(1, Duration::from_secs(1), 1);
    s.key = RateLimitKey::Header(http::HeaderName::from_static("x-api-key"));
    let peer: IpAddr = "192.0.2.1".parse().unwrap();
    let none = key_for(&s, None, &HeaderMap::new(), peer, &[]);
    let mut ip = s.clone();
    ip.key = RateLimitKey::Ip;
    assert_eq!(none, key_for(&ip, None, &HeaderMap::new(), peer, &[]));
    let mut h = HeaderMap::new();
    h.insert("x-api-key", "k1".parse().unwrap());
    assert_ne!(none, key_for(&s, None, &h, peer, &[]));
}

#[test]
fn policy_names_are_structured_field_strings() {
    assert_eq!(sf_string("orders"), "\"orders\"");
    assert_eq!(sf_string("a\"b\\cé"), "\"a_b_c_\"");
}
