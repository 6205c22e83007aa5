//! The in-process store: governor's GCRA over a bounded key map.
//!
//! governor's own keyed stores grow with every key seen until pruned; a spray of made-up
//! API keys or spoofed identities must not grow memory without bound, so the state of
//! each key lives in a moka cache with `max_keys` entries (TinyLFU: keys seen once are the
//! first to go) whose entries expire once idle for as long as a full budget takes to come
//! back (then forgetting a key changes nothing).

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::{NoOpMiddleware, StateInformationMiddleware};
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::{Quota, RateLimiter};

use super::{BoxFuture, Decision, LimitKey, LimitStore, StoreError};
use crate::config::RateLimitSpec;

/// One GCRA state per key, at most `max_keys` of them.
pub struct BoundedKeyStore {
    states: moka::sync::Cache<LimitKey, Arc<InMemoryState>>,
}

impl StateStore for BoundedKeyStore {
    type Key = LimitKey;

    fn measure_and_replace<T, F, E>(&self, key: &LimitKey, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let state = self.states.get_with(*key, Default::default);
        state.measure_and_replace(&NotKeyed::NonKey, f)
    }
}

type Limiter = RateLimiter<LimitKey, BoundedKeyStore, DefaultClock, StateInformationMiddleware>;

/// One replica's budgets for one limit.
pub struct LocalStore {
    limiter: Limiter,
    /// The limiter's key map (a moka handle shares the map), for its size.
    states: moka::sync::Cache<LimitKey, Arc<InMemoryState>>,
    interval: std::time::Duration,
    burst: u32,
}

impl LocalStore {
    pub fn new(spec: &RateLimitSpec) -> LocalStore {
        let interval = spec.interval();
        let burst = NonZeroU32::new(spec.burst).unwrap_or(NonZeroU32::MIN);
        // Validation keeps the interval at 1µs or more.
        let quota = Quota::with_period(interval)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(burst);
        // Idle for a whole budget's refill: the state is a fresh one, safe to forget.
        let idle = interval.saturating_mul(spec.burst).max(interval);
        let states = moka::sync::Cache::builder()
            .max_capacity(spec.max_keys)
            .time_to_idle(idle)
            .build();
        let store = BoundedKeyStore {
            states: states.clone(),
        };
        LocalStore {
            states,
            limiter: RateLimiter::<
                LimitKey,
                BoundedKeyStore,
                DefaultClock,
                NoOpMiddleware<<DefaultClock as Clock>::Instant>,
            >::new(quota, store, DefaultClock::default())
            .with_middleware::<StateInformationMiddleware>(),
            interval,
            burst: spec.burst,
        }
    }

    /// The answer for `key`, now.
    pub fn decide(&self, key: &LimitKey) -> Decision {
        match self.limiter.check_key(key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                Decision::Allowed {
                    remaining: u64::from(remaining),
                    reset: self
                        .interval
                        .saturating_mul(self.burst.saturating_sub(remaining)),
                }
            }
            Err(not_until) => Decision::Limited {
                retry_after: not_until.wait_time_from(self.limiter.clock().now()),
            },
        }
    }

    /// Keys currently remembered (for tests of the memory bound).
    pub fn key_count(&self) -> u64 {
        self.states.run_pending_tasks();
        self.states.entry_count()
    }
}

impl LimitStore for LocalStore {
    fn check<'a>(&'a self, key: &'a LimitKey) -> BoxFuture<'a, Result<Decision, StoreError>> {
        let d = self.decide(key);
        Box::pin(std::future::ready(Ok(d)))
    }
}
