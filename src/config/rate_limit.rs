//! Validation of `rate_limit` (route and default) and `rate_limit_store`.

use std::str::FromStr;
use std::time::Duration;

use super::raw::{self, RateLimitStoreKind, RawConfig};

/// Keys a single limit remembers in memory when `max_keys` is not set.
pub const DEFAULT_MAX_KEYS: u64 = 100_000;

/// A validated request rate limit: `requests` per `per` sustained, `burst` at once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RateLimitSpec {
    pub requests: u32,
    pub per: Duration,
    pub burst: u32,
    pub key: RateLimitKey,
    pub store: RateLimitStoreKind,
    pub max_keys: u64,
}

impl RateLimitSpec {
    /// Time between two requests at the sustained rate (GCRA's emission interval).
    pub fn interval(&self) -> Duration {
        self.per / self.requests
    }
}

/// Whose budget a request spends.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateLimitKey {
    User,
    Client,
    Ip,
    Header(http::HeaderName),
}

/// The route's limit in force: its own, none (`off`), or the top-level default.
pub(super) fn route_limit(
    key: &str,
    route: &raw::Route,
    raw: &RawConfig,
    problems: &mut Vec<String>,
) -> Option<RateLimitSpec> {
    match &route.rate_limit {
        Some(raw::RouteRateLimit::Off(_)) => None,
        Some(raw::RouteRateLimit::Limit(l)) => {
            validate_limit(&format!("{key}.rate_limit"), l, raw, problems)
        }
        // The default's own problems are reported once, by `default_limit`.
        None => raw
            .rate_limit
            .as_ref()
            .and_then(|l| validate_limit("rate_limit", l, raw, &mut Vec::new())),
    }
}

/// Problems of the top-level default and of `rate_limit_store`.
pub(super) fn validate_globals(raw: &RawConfig, problems: &mut Vec<String>) {
    if let Some(l) = &raw.rate_limit {
        validate_limit("rate_limit", l, raw, problems);
    }
    if let Some(s) = &raw.rate_limit_store {
        if !(s.url.starts_with("redis://") || s.url.starts_with("redis+unix://")) {
            problems.push(format!(
                "rate_limit_store.url: `{}` is not a redis:// URL",
                super::validate::redact_url(&s.url)
            ));
        } else if let Err(e) = redis::Client::open(s.url.as_str()) {
            problems.push(format!(
                "rate_limit_store.url: `{}` is not usable: {e}",
                super::validate::redact_url(&s.url)
            ));
        }
        if s.prefix.is_empty() || s.prefix.contains(char::is_whitespace) {
            problems.push("rate_limit_store.prefix: must be non-empty, without spaces".into());
        }
        if s.local_budget == 0 {
            problems.push("rate_limit_store.local_budget: must be at least 1".into());
        }
        if s.timeout.is_zero() {
            problems.push("rate_limit_store.timeout: must be more than 0".into());
        }
    }
}

fn validate_limit(
    key: &str,
    l: &raw::RateLimit,
    raw: &RawConfig,
    problems: &mut Vec<String>,
) -> Option<RateLimitSpec> {
    let before = problems.len();
    if l.requests == 0 {
        problems.push(format!(
            "{key}.requests: must be at least 1 (use `rate_limit: off` for no limit)"
        ));
    }
    if l.per < Duration::from_millis(1) {
        problems.push(format!("{key}.per: must be at least 1ms"));
    }
    if l.requests > 0 && l.per / l.requests < Duration::from_micros(1) {
        problems.push(format!(
            "{key}: {} requests per {:?} is more than one a microsecond",
            l.requests, l.per
        ));
    }
    let burst = l.burst.unwrap_or(l.requests);
    if burst == 0 {
        problems.push(format!("{key}.burst: must be at least 1"));
    }
    let limit_key = match l.key.as_deref().map(str::trim) {
        None | Some("user") => Some(RateLimitKey::User),
        Some("client") => Some(RateLimitKey::Client),
        Some("ip") => Some(RateLimitKey::Ip),
        Some(k) => match k.strip_prefix("header:").map(http::HeaderName::from_str) {
            Some(Ok(name)) => Some(RateLimitKey::Header(name)),
            _ => {
                problems.push(format!(
                    "{key}.key: `{k}` is not `user`, `client`, `ip` or `header:NAME`"
                ));
                None
            }
        },
    };
    if l.store == RateLimitStoreKind::Redis && raw.rate_limit_store.is_none() {
        problems.push(format!(
            "{key}.store: `redis` needs a top-level `rate_limit_store` with the server's url"
        ));
    }
    let max_keys = l.max_keys.unwrap_or(DEFAULT_MAX_KEYS);
    if max_keys == 0 {
        problems.push(format!("{key}.max_keys: must be at least 1"));
    }
    if problems.len() > before || l.requests == 0 {
        return None;
    }
    Some(RateLimitSpec {
        requests: l.requests,
        per: l.per,
        burst,
        key: limit_key?,
        store: l.store,
        max_keys,
    })
}
