//! Password-grant throttling per account and per client IP (`governor`, GCRA).
//!
//! Threat model: online password guessing, against one account (spread over many IPs)
//! or from one IP (spread over many accounts), and login floods meant to exhaust the
//! password-hashing pool. The check runs before any user lookup or hash, so a throttled
//! attempt costs almost nothing and reveals nothing. Keys are the account name as typed
//! (lower-cased) and the client address; the limiter state is pruned periodically so a
//! spray of made-up names cannot grow memory without bound.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;

use crate::config::raw::LoginThrottle as ThrottleConfig;

pub struct LoginThrottle {
    account: Option<DefaultKeyedRateLimiter<String>>,
    ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    clock: DefaultClock,
}

/// Which limit was hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    Account(Duration),
    Ip(Duration),
}

impl Throttled {
    pub fn retry_after_secs(self) -> u64 {
        let d = match self {
            Throttled::Account(d) | Throttled::Ip(d) => d,
        };
        d.as_secs() + u64::from(d.subsec_nanos() > 0)
    }

    pub fn label(self) -> &'static str {
        match self {
            Throttled::Account(_) => "account",
            Throttled::Ip(_) => "ip",
        }
    }
}

fn limiter<K: std::hash::Hash + Eq + Clone>(per_minute: u32) -> Option<DefaultKeyedRateLimiter<K>> {
    NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n)))
}

impl LoginThrottle {
    pub fn new(cfg: &ThrottleConfig) -> Arc<LoginThrottle> {
        let t = Arc::new(LoginThrottle {
            account: limiter(cfg.per_account),
            ip: limiter(cfg.per_ip),
            clock: DefaultClock::default(),
        });
        // Forget keys whose limit has fully recovered, once a minute.
        let weak = Arc::downgrade(&t);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(60));
                loop {
                    tick.tick().await;
                    let Some(t) = weak.upgrade() else { break };
                    if let Some(l) = &t.account {
                        l.retain_recent();
                    }
                    if let Some(l) = &t.ip {
                        l.retain_recent();
                    }
                }
            });
        }
        t
    }

    /// Counts one password attempt; `Err` says which limit refused it and for how long.
    pub fn check(&self, account: &str, ip: IpAddr) -> Result<(), Throttled> {
        if let Some(l) = &self.ip {
            l.check_key(&ip)
                .map_err(|n| Throttled::Ip(n.wait_time_from(self.clock.now())))?;
        }
        if let Some(l) = &self.account {
            l.check_key(&account.to_lowercase())
                .map_err(|n| Throttled::Account(n.wait_time_from(self.clock.now())))?;
        }
        Ok(())
    }
}

/// The client address used for throttling: the peer, or — when the peer is a trusted
/// proxy — the right-most `X-Forwarded-For` entry that is not itself trusted.
pub fn client_ip(peer: IpAddr, xff: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    if !trusted.iter().any(|n| n.contains(&peer)) {
        return peer;
    }
    let Some(xff) = xff else { return peer };
    for part in xff.rsplit(',') {
        match part.trim().parse::<IpAddr>() {
            Ok(ip) if trusted.iter().any(|n| n.contains(&ip)) => continue,
            Ok(ip) => return ip,
            Err(_) => return peer,
        }
    }
    peer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn account_limit_applies_across_ips_and_ignores_case() {
        let t = LoginThrottle::new(&ThrottleConfig {
            per_account: 2,
            per_ip: 0,
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(t.check("Alice", a).is_ok());
        assert!(t.check("alice", b).is_ok());
        let e = t.check("ALICE", a).unwrap_err();
        assert_eq!(e.label(), "account");
        assert!(e.retry_after_secs() >= 1);
        assert!(t.check("bob", a).is_ok());
    }

    #[tokio::test]
    async fn ip_limit_applies_across_accounts() {
        let t = LoginThrottle::new(&ThrottleConfig {
            per_account: 0,
            per_ip: 1,
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(t.check("x", a).is_ok());
        assert_eq!(t.check("y", a).unwrap_err().label(), "ip");
    }

    #[test]
    fn client_ip_only_trusts_configured_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy: IpAddr = "10.1.1.1".parse().unwrap();
        let outside: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(client_ip(outside, Some("1.2.3.4"), &trusted), outside);
        assert_eq!(
            client_ip(proxy, Some("6.6.6.6, 198.51.100.7, 10.2.2.2"), &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(proxy, None, &trusted), proxy);
    }
}
