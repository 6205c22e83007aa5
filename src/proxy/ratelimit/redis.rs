//! The shared store: one budget per caller across every replica, in Redis.
//!
//! Each check is one atomic Lua script (GCRA on Redis's own clock, so replicas whose
//! clocks disagree still agree on the budget). A replica may take up to `local_budget`
//! requests from the shared budget in that one round trip and spend them locally for up
//! to [`LEASE_TTL`]; a request therefore waits on at most one round trip, and a refusal
//! is remembered until the moment the budget allows the next request, so a caller
//! hammering a spent budget costs Redis nothing.
//!
//! Bound: every admitted request was taken from the shared budget, so over time the
//! replicas together never admit more than the limit. Requests taken in advance can be
//! spent a little later than they were taken: in any window, the replicas together admit
//! at most the limit plus `local_budget` per replica. With `local_budget: 1` (the
//! default) the limit is exact. Taken requests a replica does not spend within
//! [`LEASE_TTL`] are lost (the limit errs on the strict side).
//!
//! When Redis cannot be asked (refused, reset, slower than `timeout`), the check fails
//! and `on_error` applies; after a failure Redis is not asked again for
//! [`BACKOFF`], so an outage costs requests nothing but the failure mode.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{BoxFuture, Decision, LimitKey, LimitStore, StoreError};
use crate::config::raw::{RateLimitOnError, RateLimitStore as RawStore};
use crate::config::RateLimitSpec;

/// How long requests taken in advance may be spent locally.
pub const LEASE_TTL: Duration = Duration::from_secs(1);
/// How long Redis is not asked after it failed.
pub const BACKOFF: Duration = Duration::from_secs(1);

/// GCRA taking up to `want` requests at once. KEYS[1]: the caller's key. ARGV: emission
/// interval and burst tolerance in microseconds, `want`. Returns {granted, remaining
/// after, µs until the budget is whole, µs until one request would pass (when 0 granted)}.
const SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then tat = now end
local avail = math.floor((tau - (tat - now)) / interval)
if avail < 1 then
  return {0, 0, tat - now, tat + interval - tau - now}
end
local granted = math.min(want, avail)
tat = tat + granted * interval
redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
return {granted, avail - granted, tat - now, 0}
"#;

/// The store settings a limit depends on (a change builds a new store).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RedisSettings {
    pub url: String,
    pub prefix: String,
    pub on_error: RateLimitOnError,
    pub local_budget: u32,
    pub timeout: Duration,
}

impl RedisSettings {
    pub fn from_config(s: &RawStore) -> RedisSettings {
        RedisSettings {
            url: s.url.clone(),
            prefix: s.prefix.clone(),
            on_error: s.on_error,
            local_budget: s.local_budget.max(1),
            timeout: s.timeout,
        }
    }
}

/// The connection to the server, shared by every limit: a multiplexed connection that
/// reconnects by itself, opened lazily (a gateway starts while Redis is down).
pub struct RedisConn {
    manager: Result<ConnectionManager, String>,
    script: redis::Script,
    timeout: Duration,
    /// Unix milliseconds until which Redis is not asked (after a failure).
    backoff_until: AtomicU64,
}

impl RedisConn {
    pub fn new(s: &RedisSettings) -> RedisConn {
        let manager = redis::Client::open(s.url.as_str())
            .and_then(|client| {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(s.timeout))
                    .set_response_timeout(Some(s.timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(200));
                ConnectionManager::new_lazy_with_config(client, config)
            })
            .map_err(|e| e.to_string());
        RedisConn {
            manager,
            script: redis::Script::new(SCRIPT),
            timeout: s.timeout,
            backoff_until: AtomicU64::new(0),
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// One round trip: take up to `want` requests from `key`'s budget.
    async fn take(&self, key: &str, spec: &GcraParams, want: u32) -> Result<Grant, StoreError> {
        let now = unix_ms();
        if now < self.backoff_until.load(Ordering::Relaxed) {
            return Err(StoreError("backing off after a failure".into()));
        }
        let mut conn = self
            .manager
            .as_ref()
            .map_err(|e| StoreError(e.clone()))?
            .clone();
        let mut invocation = self.script.key(key);
        invocation.arg(spec.interval_us).arg(spec.tau_us).arg(want);
        let call = invocation.invoke_async::<(u64, u64, u64, u64)>(&mut conn);
        let result = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(StoreError(e.to_string())),
            Err(_) => Err(StoreError(format!("no answer within {:?}", self.timeout))),
        };
        match result {
            Ok((granted, remaining, reset_us, retry_us)) => Ok(Grant {
                granted: u32::try_from(granted).unwrap_or(u32::MAX),
                remaining,
                reset: Duration::from_micros(reset_us),
                retry_after: Duration::from_micros(retry_us),
            }),
            Err(e) => {
                self.backoff_until
                    .store(now + BACKOFF.as_millis() as u64, Ordering::Relaxed);
                Err(e)
            }
        }
    }
}

struct GcraParams {
    interval_us: u64,
    tau_us: u64,
}

struct Grant {
    granted: u32,
    remaining: u64,
    reset: Duration,
    retry_after: Duration,
}

/// What a replica holds for one caller between round trips: requests taken in advance,
/// or a refusal until a known instant.
struct Lease {
    tokens: AtomicU32,
    until: Instant,
    limited: bool,
    remaining: u64,
    reset: Duration,
}

/// One limit's shared budgets.
pub struct RedisStore {
    conn: Arc<RedisConn>,
    /// `{prefix}:rl:{route}:`; the caller's hashed key follows.
    key_prefix: String,
    params: GcraParams,
    budget: u32,
    leases: moka::sync::Cache<LimitKey, Arc<Lease>>,
}

impl RedisStore {
    pub fn new(
        route: &str,
        spec: &RateLimitSpec,
        settings: &RedisSettings,
        conn: Arc<RedisConn>,
    ) -> RedisStore {
        let interval_us = (spec.interval().as_micros() as u64).max(1);
        let longest = LEASE_TTL.max(spec.interval());
        RedisStore {
            conn,
            key_prefix: format!("{}:rl:{route}:", settings.prefix),
            params: GcraParams {
                interval_us,
                tau_us: interval_us.saturating_mul(u64::from(spec.burst)),
            },
            budget: settings.local_budget.min(spec.burst).max(1),
            leases: moka::sync::Cache::builder()
                .max_capacity(spec.max_keys)
                .time_to_live(longest)
                .build(),
        }
    }

    /// The Redis key of a caller.
    pub fn redis_key(&self, key: &LimitKey) -> String {
        format!("{}{}", self.key_prefix, key.hex())
    }

    /// A decision from what this replica already holds, if it holds anything.
    fn held_decision(&self, key: &LimitKey, now: Instant) -> Option<Decision> {
        let lease = self.leases.get(key)?;
        if now >= lease.until {
            return None;
        }
        if lease.limited {
            return Some(Decision::Limited {
                retry_after: lease.until - now,
            });
        }
        let left = lease
            .tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| t.checked_sub(1))
            .ok()?;
        Some(Decision::Allowed {
            remaining: lease.remaining + u64::from(left - 1),
            reset: lease.reset,
        })
    }
}

impl LimitStore for RedisStore {
    fn check<'a>(&'a self, key: &'a LimitKey) -> BoxFuture<'a, Result<Decision, StoreError>> {
        Box::pin(async move {
            if let Some(d) = self.held_decision(key, Instant::now()) {
                return Ok(d);
            }
            let grant = self
                .conn
                .take(&self.redis_key(key), &self.params, self.budget)
                .await?;
            let now = Instant::now();
            if grant.granted == 0 {
                self.leases.insert(
                    *key,
                    Arc::new(Lease {
                        tokens: AtomicU32::new(0),
                        until: now + grant.retry_after,
                        limited: true,
                        remaining: 0,
                        reset: grant.reset,
                    }),
                );
                return Ok(Decision::Limited {
                    retry_after: grant.retry_after,
                });
            }
            let spare = grant.granted - 1;
            if spare > 0 {
                self.leases.insert(
                    *key,
                    Arc::new(Lease {
                        tokens: AtomicU32::new(spare),
                        until: now + LEASE_TTL,
                        limited: false,
                        remaining: grant.remaining,
                        reset: grant.reset,
                    }),
                );
            } else {
                self.leases.invalidate(key);
            }
            Ok(Decision::Allowed {
                remaining: grant.remaining + u64::from(spare),
                reset: grant.reset,
            })
        })
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
