//! Password-grant throttling per account and per client IP (`governor`, GCRA).
//!
//! Threat model: online password guessing, against one account (spread over many IPs)
//! or from one IP (spread over many accounts), and login floods meant to exhaust the
//! password-hashing pool. The check runs before any user lookup or hash, so a throttled
//! attempt costs almost nothing and reveals nothing. Keys are the account name as typed
//! (lower-cased) and the client address; the limiter state is pruned periodically so a
//! spray of made-up names cannot grow memory without bound.
//!
//! Two implementations behind one [`Throttle`] trait: [`LoginThrottle`], in memory, for
//! the single-process SQLite default; and [`StoreThrottle`], whose counters live in the
//! store (one atomic statement per check), chosen when `store.url` is PostgreSQL so that N
//! replicas never give an attacker N times the budget. A store that cannot count an
//! attempt fails the attempt closed (503), as the sign-in itself would.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::raw::LoginThrottle as ThrottleConfig;
use crate::store::{Store, StoreError};

/// Why an attempt may not go ahead.
#[derive(Debug)]
pub enum Refusal {
    Throttled(Throttled),
    /// The shared counters could not be reached.
    Unavailable(StoreError),
}

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Counts one password attempt for an account from an IP.
pub trait Throttle: Send + Sync {
    fn check<'a>(&'a self, account: &'a str, ip: IpAddr) -> BoxFuture<'a, Result<(), Refusal>>;
}

/// The throttle for this configuration: shared through the store on PostgreSQL (several
/// replicas), in memory otherwise.
pub fn for_store(
    cfg: &ThrottleConfig,
    store_url: &str,
    store: Arc<dyn Store>,
) -> Arc<dyn Throttle> {
    if store_url.starts_with("postgres://") || store_url.starts_with("postgresql://") {
        Arc::new(StoreThrottle::new(cfg, store))
    } else {
        LoginThrottle::new(cfg)
    }
}

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

    /// Every limit's label.
    pub fn labels() -> [&'static str; 2] {
        [
            Throttled::Account(Duration::ZERO),
            Throttled::Ip(Duration::ZERO),
        ]
        .map(Throttled::label)
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

impl Throttle for LoginThrottle {
    fn check<'a>(&'a self, account: &'a str, ip: IpAddr) -> BoxFuture<'a, Result<(), Refusal>> {
        let r = LoginThrottle::check(self, account, ip).map_err(Refusal::Throttled);
        Box::pin(std::future::ready(r))
    }
}

/// Login limits whose counters live in the store, shared by every replica on it. The same
/// GCRA as the in-memory limiter: `per_minute` attempts at once, then one per
/// `60 s / per_minute`.
pub struct StoreThrottle {
    store: Arc<dyn Store>,
    per_account: u32,
    per_ip: u32,
}

impl StoreThrottle {
    pub fn new(cfg: &ThrottleConfig, store: Arc<dyn Store>) -> StoreThrottle {
        StoreThrottle {
            store,
            per_account: cfg.per_account,
            per_ip: cfg.per_ip,
        }
    }

    async fn count(&self, key: &str, per_minute: u32) -> Result<Option<Duration>, StoreError> {
        if per_minute == 0 {
            return Ok(None);
        }
        const MINUTE_US: i64 = 60_000_000;
        let now_us = chrono::Utc::now().timestamp_micros();
        self.store
            .count_attempt(key, now_us, MINUTE_US / i64::from(per_minute), MINUTE_US)
            .await
    }
}

impl Throttle for StoreThrottle {
    fn check<'a>(&'a self, account: &'a str, ip: IpAddr) -> BoxFuture<'a, Result<(), Refusal>> {
        Box::pin(async move {
            // The same order as in memory: the IP limit first, so a spray over many
            // accounts from one address never reaches the per-account counters.
            if let Some(wait) = self
                .count(&format!("i:{ip}"), self.per_ip)
                .await
                .map_err(Refusal::Unavailable)?
            {
                return Err(Refusal::Throttled(Throttled::Ip(wait)));
            }
            if let Some(wait) = self
                .count(&format!("a:{}", account.to_lowercase()), self.per_account)
                .await
                .map_err(Refusal::Unavailable)?
            {
                return Err(Refusal::Throttled(Throttled::Account(wait)));
            }
            Ok(())
        })
    }
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
}
