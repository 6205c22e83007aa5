//! Per-route request rate limits (`rate_limit` on a route, or the top-level default).
//!
//! Threat model: one caller (a user, a client app, an address, an API key) spending more
//! than its share of an upstream, by accident or on purpose. The limit runs after
//! authentication, so a caller with a token is counted by who it is, not by where it comes
//! from, and cannot shed its budget by changing address; a caller without the identity the
//! limit is keyed by is counted by client IP. Keys are stored hashed (an API key in a
//! header never reaches memory dumps or Redis in clear), and every store is bounded:
//! `max_keys` per limit in memory, keys that expire on their own in Redis.
//!
//! The algorithm is GCRA (a token bucket without a timer): `requests` per `per`
//! sustained, `burst` at once. Two stores implement it behind [`LimitStore`]:
//! [`local::LocalStore`] (governor, one budget per replica) and [`redis::RedisStore`]
//! (one budget shared by every replica, an atomic Lua script per round trip, with a short
//! local budget taken in advance). When the shared store cannot be asked, `on_error`
//! decides: `fail_open` lets the request through, `fail_closed` answers 503; either way
//! `tollgate_rate_limit_store_errors_total` counts it and a warning is logged (at most one
//! a second per route).

pub mod local;
pub mod redis;

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;
use sha2::{Digest, Sha256};

use crate::authn::Identity;
use crate::config::raw::{RateLimitOnError, RateLimitStoreKind};
use crate::config::{Config, RateLimitKey, RateLimitSpec};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers).
pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit` (draft-ietf-httpapi-ratelimit-headers).
pub static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// The hashed identity a request is counted under: SHA-256 of the key kind and value,
/// truncated to 128 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LimitKey(pub [u8; 16]);

impl LimitKey {
    fn of(kind: &str, value: &[u8]) -> LimitKey {
        let mut h = Sha256::new();
        h.update(kind.as_bytes());
        h.update([0]);
        h.update(value);
        let digest = h.finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&digest[..16]);
        LimitKey(out)
    }

    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// What a store says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Let through; `remaining` more would pass now, the budget is whole again in `reset`.
    Allowed { remaining: u64, reset: Duration },
    /// Over the limit; one more request would pass in `retry_after`.
    Limited { retry_after: Duration },
}

/// The store could not be asked (Redis down, slow or answering nonsense).
#[derive(Debug, thiserror::Error)]
#[error("rate-limit store: {0}")]
pub struct StoreError(pub String);

/// One limit's budgets, keyed by caller. An implementation is built for one
/// [`RateLimitSpec`] and answers for one request at a time; a request waits on at most one
/// round trip to a remote store.
pub trait LimitStore: Send + Sync {
    fn check<'a>(&'a self, key: &'a LimitKey) -> BoxFuture<'a, Result<Decision, StoreError>>;
}

/// The answer the pipeline acts on.
pub enum Verdict {
    /// Forward, and add these `RateLimit-Policy` / `RateLimit` headers to the response.
    Allowed(RateLimitHeaders),
    /// 429 with `Retry-After` (whole seconds) and these headers.
    Limited(RateLimitHeaders, u64),
    /// The store could not be asked and `on_error` is `fail_closed`: 503.
    Unavailable,
}

/// The two IETF headers of one answer.
#[derive(Debug, Clone)]
pub struct RateLimitHeaders {
    pub policy: HeaderValue,
    pub state: HeaderValue,
}

impl RateLimitHeaders {
    pub fn apply(&self, headers: &mut HeaderMap) {
        headers.insert(&RATELIMIT_POLICY, self.policy.clone());
        headers.insert(&RATELIMIT, self.state.clone());
    }
}

/// A route's limit: the spec, its store, the failure mode and the metric handles.
pub struct RouteLimit {
    pub spec: RateLimitSpec,
    store: Arc<dyn LimitStore>,
    on_error: RateLimitOnError,
    /// `"route";q=N;w=S`, made once.
    policy: HeaderValue,
    /// The policy name as a structured-field string, for the `RateLimit` header.
    name: String,
    route: String,
    allowed: metrics::Counter,
    limited: metrics::Counter,
    errors: metrics::Counter,
    last_error_log: AtomicU64,
}

impl RouteLimit {
    pub fn new(
        route: &str,
        spec: RateLimitSpec,
        store: Arc<dyn LimitStore>,
        on_error: RateLimitOnError,
    ) -> RouteLimit {
        crate::telemetry::metrics();
        let name = sf_string(route);
        let window = ceil_secs(spec.per);
        let policy = HeaderValue::from_str(&format!("{name};q={};w={window}", spec.requests))
            .expect("structured field is ASCII");
        let label = route.to_string();
        RouteLimit {
            allowed: metrics::counter!("tollgate_rate_limit_decisions_total", "route" => label.clone(), "decision" => "allowed"),
            limited: metrics::counter!("tollgate_rate_limit_decisions_total", "route" => label.clone(), "decision" => "limited"),
            errors: metrics::counter!("tollgate_rate_limit_store_errors_total", "route" => label.clone()),
            route: label,
            spec,
            store,
            on_error,
            policy,
            name,
            last_error_log: AtomicU64::new(0),
        }
    }

    /// Counts one request against its caller's budget.
    pub async fn check(&self, key: &LimitKey) -> Verdict {
        match self.store.check(key).await {
            Ok(Decision::Allowed { remaining, reset }) => {
                self.allowed.increment(1);
                Verdict::Allowed(self.headers(remaining, ceil_secs(reset)))
            }
            Ok(Decision::Limited { retry_after }) => {
                self.limited.increment(1);
                let secs = ceil_secs(retry_after).max(1);
                Verdict::Limited(self.headers(0, secs), secs)
            }
            Err(e) => {
                self.errors.increment(1);
                self.log_error(&e);
                match self.on_error {
                    RateLimitOnError::FailOpen => {
                        self.allowed.increment(1);
                        Verdict::Allowed(self.headers(u64::from(self.spec.burst), 0))
                    }
                    RateLimitOnError::FailClosed => Verdict::Unavailable,
                }
            }
        }
    }

    fn headers(&self, remaining: u64, reset_secs: u64) -> RateLimitHeaders {
        RateLimitHeaders {
            policy: self.policy.clone(),
            state: HeaderValue::from_str(&format!("{};r={remaining};t={reset_secs}", self.name))
                .expect("structured field is ASCII"),
        }
    }

    /// One warning a second per route at most: a store outage must not flood the log.
    fn log_error(&self, e: &StoreError) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let last = self.last_error_log.load(Ordering::Relaxed);
        if now > last
            && self
                .last_error_log
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let mode = match self.on_error {
                RateLimitOnError::FailOpen => "fail_open: request let through",
                RateLimitOnError::FailClosed => "fail_closed: request refused",
            };
            tracing::warn!(route = %self.route, error = %e, "rate-limit store unavailable; {mode}");
        }
    }
}

/// The key a request is counted under. `user` and `client` need an identity with that
/// field, `header:NAME` the header; without it the request is counted by client IP.
pub fn key_for(
    spec: &RateLimitSpec,
    identity: Option<&Identity>,
    headers: &HeaderMap,
    peer: IpAddr,
    trusted: &[IpNet],
) -> LimitKey {
    match &spec.key {
        RateLimitKey::User => {
            if let Some(id) = identity.filter(|id| !id.user_id.is_empty()) {
                return LimitKey::of("user", id.user_id.as_bytes());
            }
        }
        RateLimitKey::Client => {
            if let Some(c) = identity.and_then(|id| id.client_id.as_deref()) {
                return LimitKey::of("client", c.as_bytes());
            }
        }
        RateLimitKey::Header(name) => {
            if let Some(v) = headers.get(name).filter(|v| !v.is_empty()) {
                return LimitKey::of(name.as_str(), v.as_bytes());
            }
        }
        RateLimitKey::Ip => {}
    }
    let ip = crate::http::client_addr::client_addr(headers, peer, trusted);
    LimitKey::of("ip", ip.to_string().as_bytes())
}

/// Route limits kept across reloads: a reload that leaves a route's limit as it was keeps
/// its budgets (and the Redis connection), so a config edit never hands callers a fresh
/// burst.
#[derive(Default)]
pub struct RateLimiters {
    inner: Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
    limits: HashMap<(String, RateLimitSpec, Option<redis::RedisSettings>), Arc<RouteLimit>>,
    redis: Option<(String, Arc<redis::RedisConn>)>,
}

impl RateLimiters {
    pub fn new() -> RateLimiters {
        RateLimiters::default()
    }

    /// The limit of every route of `config`, in route order. Limits no route uses any
    /// more are dropped.
    pub fn for_routes(&self, config: &Config) -> Vec<Option<Arc<RouteLimit>>> {
        let mut reg = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut kept = HashMap::new();
        let out = config
            .routes
            .iter()
            .map(|route| {
                let spec = route.rate_limit.clone()?;
                let settings = match spec.store {
                    RateLimitStoreKind::Local => None,
                    RateLimitStoreKind::Redis => config
                        .rate_limit_store
                        .as_ref()
                        .map(redis::RedisSettings::from_config),
                };
                let id = (route.name.clone(), spec.clone(), settings.clone());
                let limit = match reg.limits.get(&id) {
                    Some(l) => l.clone(),
                    None => {
                        let (store, on_error): (Arc<dyn LimitStore>, _) = match &settings {
                            None => (
                                Arc::new(local::LocalStore::new(&spec)),
                                RateLimitOnError::FailOpen,
                            ),
                            Some(s) => {
                                let conn = reg.redis_conn(s);
                                (
                                    Arc::new(redis::RedisStore::new(&route.name, &spec, s, conn)),
                                    s.on_error,
                                )
                            }
                        };
                        Arc::new(RouteLimit::new(&route.name, spec, store, on_error))
                    }
                };
                kept.insert(id, limit.clone());
                Some(limit)
            })
            .collect();
        reg.limits = kept;
        out
    }
}

impl Registry {
    /// One connection per server URL; a new URL (after a reload) gets a new one.
    fn redis_conn(&mut self, s: &redis::RedisSettings) -> Arc<redis::RedisConn> {
        match &self.redis {
            Some((url, conn)) if *url == s.url && conn.timeout() == s.timeout => conn.clone(),
            _ => {
                let conn = Arc::new(redis::RedisConn::new(s));
                self.redis = Some((s.url.clone(), conn.clone()));
                conn
            }
        }
    }
}

/// `d` in whole seconds, rounded up.
pub fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// A structured-field string (RFC 8941 §3.3.3) naming the policy: the route name with
/// anything outside printable ASCII, `"` and `\` replaced by `_`.
fn sf_string(name: &str) -> String {
    let inner: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("\"{inner}\"")
}

#[cfg(test)]
mod tests;
