//! Opaque bearer tokens: Tollgate's own (looked up by hash in the store) and foreign ones
//! (RFC 7662 introspection at the configured endpoints), behind one bounded cache.
//!
//! Threat model and guarantees:
//! - The raw token is never a cache key, a log field or a metric label: keys are
//!   SHA-256(token ‖ endpoint).
//! - The cache holds introspection *results*, not decisions: every hit re-checks
//!   `active`, `exp`, `aud` and the revocation list (scopes are checked per route by
//!   `authz`), so a cached answer never outlives the token.
//! - Positive entries live for the endpoint's `cache.ttl` but never past the token's
//!   `exp`; "inactive" answers for `cache.negative_ttl`; errors are never cached.
//! - Concurrent misses on one token coalesce: N requests cause exactly one call.
//! - An endpoint that is down or slow (`timeout`) makes an uncached token 503, never 200;
//!   cached positive results keep serving until their TTL.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use moka::Expiry;
use serde_json::Value;

use super::claims::{cache_key, now_unix, Claims};
use super::{AuthnError, Identity};
use crate::config::raw::Introspection;
use crate::revocation::{Checked, RevocationList, Revoked};
use crate::store::{Store, TokenKind};
use crate::telemetry::trace;

/// What an introspection (or own-store lookup) said about a token.
#[derive(Debug, Clone)]
pub struct Introspected {
    pub active: bool,
    pub exp: Option<u64>,
    pub aud: Vec<String>,
    pub identity: Option<Arc<Identity>>,
    /// How long this answer may be cached (before the `exp` cap).
    ttl: Duration,
    /// When the token was last found not revoked (`RevocationList::is_revoked_since`).
    checked: Checked,
}

impl Introspected {
    pub fn inactive(ttl: Duration) -> Self {
        Introspected {
            active: false,
            exp: None,
            aud: Vec::new(),
            identity: None,
            ttl,
            checked: Checked::default(),
        }
    }

    pub fn active(identity: Identity, aud: Vec<String>, ttl: Duration) -> Self {
        Introspected {
            active: true,
            exp: identity.expires_at,
            aud,
            identity: Some(Arc::new(identity)),
            ttl,
            checked: Checked::default(),
        }
    }
}

pub type LookupFuture<'a> = Pin<Box<dyn Future<Output = Result<Introspected, String>> + Send + 'a>>;

/// Somewhere opaque tokens are checked: the store, or an RFC 7662 endpoint.
pub trait TokenLookup: Send + Sync {
    /// Name used in the cache key, metrics and logs.
    fn name(&self) -> &str;
    /// Expected audience, re-checked on every hit.
    fn audience(&self) -> Option<&str> {
        None
    }
    fn lookup<'a>(&'a self, token: &'a str) -> LookupFuture<'a>;
}

struct CacheTtl;

impl Expiry<[u8; 32], Arc<Introspected>> for CacheTtl {
    fn expire_after_create(
        &self,
        _k: &[u8; 32],
        v: &Arc<Introspected>,
        _at: std::time::Instant,
    ) -> Option<Duration> {
        let until_exp = v
            .exp
            .map(|exp| Duration::from_secs(exp.saturating_sub(now_unix())))
            .unwrap_or(v.ttl);
        Some(v.ttl.min(until_exp))
    }
}

/// Opaque-token authentication over several lookups, in order: the first that knows the
/// token as active wins.
pub struct OpaqueAuthenticator {
    lookups: Vec<Arc<dyn TokenLookup>>,
    /// Keyed by SHA-256 digests (uniform), so the map's own hash is a seeded fast one.
    cache: Cache<[u8; 32], Arc<Introspected>, foldhash::fast::RandomState>,
    revocations: Arc<RevocationList>,
}

impl OpaqueAuthenticator {
    pub fn new(
        lookups: Vec<Arc<dyn TokenLookup>>,
        max_entries: u64,
        revocations: Arc<RevocationList>,
    ) -> Arc<Self> {
        // The cache's results and each lookup's errors, by the names the config gave them.
        crate::telemetry::at_zero(|| {
            ["hit", "miss"]
                .map(|r| metrics::counter!("tollgate_introspection_cache_total", "result" => r))
                .into_iter()
                .chain(lookups.iter().map(|l| {
                    metrics::counter!("tollgate_introspection_errors_total", "endpoint" => l.name().to_owned())
                }))
                .collect::<Vec<_>>()
        });
        let me = Arc::new(OpaqueAuthenticator {
            lookups,
            cache: Cache::builder()
                .max_capacity(max_entries)
                .expire_after(CacheTtl)
                .build_with_hasher(foldhash::fast::RandomState::default()),
            revocations,
        });
        me.clone().follow_revocations();
        me
    }

    pub fn is_empty(&self) -> bool {
        self.lookups.is_empty()
    }

    /// Evicts an own opaque token revoked by hash, and tells tunnels opened with it by
    /// turning the revocation into one of its id.
    fn follow_revocations(self: Arc<Self>) {
        let weak = Arc::downgrade(&self);
        let mut rx = self.revocations.subscribe();
        drop(self);
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        handle.spawn(async move {
            loop {
                let ev = match rx.recv().await {
                    Ok(ev) => ev,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                let Some(me) = weak.upgrade() else { return };
                if let Revoked::TokenHash(hash) = ev {
                    let Ok(raw) = hex::decode(&hash) else {
                        continue;
                    };
                    let Ok(key) = <[u8; 32]>::try_from(raw.as_slice()) else {
                        continue;
                    };
                    if let Some(v) = me.cache.remove(&key).await {
                        if let Some(id) = v.identity.as_ref() {
                            if let (Some(jti), Some(exp)) = (&id.token_id, id.expires_at) {
                                me.revocations.apply(Revoked::Jti {
                                    jti: jti.clone(),
                                    expires_at: exp,
                                });
                            }
                        }
                    }
                }
            }
        });
    }

    fn check(
        &self,
        r: &Introspected,
        lookup: &dyn TokenLookup,
    ) -> Option<Result<Arc<Identity>, AuthnError>> {
        if !r.active {
            return None;
        }
        if r.exp.is_some_and(|exp| exp <= now_unix()) {
            return Some(Err(AuthnError::Invalid("token expired".into())));
        }
        if let Some(want) = lookup.audience() {
            if !r.aud.iter().any(|a| a == want) {
                return Some(Err(AuthnError::Invalid("token audience mismatch".into())));
            }
        }
        let id = r.identity.clone()?;
        if id
            .token_id
            .as_deref()
            .is_some_and(|j| self.revocations.is_revoked_since(j, &r.checked))
        {
            return Some(Err(AuthnError::Invalid("token revoked".into())));
        }
        Some(Ok(id))
    }

    pub async fn authenticate(&self, token: &str) -> Result<Arc<Identity>, AuthnError> {
        if token.len() > 4096 {
            return Err(AuthnError::Invalid("token too long".into()));
        }
        let mut unavailable: Option<String> = None;
        for lookup in &self.lookups {
            // The own store is keyed by the bare hash so a revocation (announced by hash)
            // finds the entry.
            let context = if lookup.name() == OWN_TOKENS {
                ""
            } else {
                lookup.name()
            };
            let key = cache_key(token, context);
            let mut missed = false;
            let result = self
                .cache
                .try_get_with(key, async {
                    missed = true;
                    let r = lookup.lookup(token).await;
                    if let Err(e) = &r {
                        metrics::counter!("tollgate_introspection_errors_total", "endpoint" => lookup.name().to_owned()).increment(1);
                        tracing::warn!(endpoint = lookup.name(), error = %e, "token lookup failed");
                    }
                    r.map(Arc::new)
                })
                .await;
            let cache = if missed { "miss" } else { "hit" };
            metrics::counter!("tollgate_introspection_cache_total", "result" => cache).increment(1);
            trace::record("tollgate.token_kind", "opaque");
            trace::record("tollgate.cache", cache);
            match result {
                Ok(r) => match self.check(&r, &**lookup) {
                    Some(outcome) => return outcome,
                    None => continue,
                },
                Err(e) => unavailable = Some((*e).clone()),
            }
        }
        match unavailable {
            Some(why) => Err(AuthnError::Unavailable(why)),
            None => Err(AuthnError::Invalid("token unknown or inactive".into())),
        }
    }
}

/// Lookup name of Tollgate's own opaque tokens.
pub const OWN_TOKENS: &str = "self";

/// Tollgate's own opaque access tokens, found in the store by SHA-256 hash.
pub struct StoreTokens {
    store: Arc<dyn Store>,
    ttl: Duration,
    negative_ttl: Duration,
    /// Opaque tokens are issued for the gateway's own audience only.
    audience: String,
}

impl StoreTokens {
    pub fn new(
        store: Arc<dyn Store>,
        ttl: Duration,
        negative_ttl: Duration,
        audience: String,
    ) -> Self {
        StoreTokens {
            store,
            ttl,
            negative_ttl,
            audience,
        }
    }
}

impl TokenLookup for StoreTokens {
    fn name(&self) -> &str {
        OWN_TOKENS
    }

    fn lookup<'a>(&'a self, token: &'a str) -> LookupFuture<'a> {
        Box::pin(async move {
            let hash = crate::crypto::sha256_hex(token);
            let rec = self
                .store
                .token_by_hash(TokenKind::OpaqueAccess, &hash)
                .await
                .map_err(|e| e.to_string())?;
            let Some(rec) = rec else {
                return Ok(Introspected::inactive(self.negative_ttl));
            };
            let exp = rec.expires_at.timestamp().max(0) as u64;
            if rec.revoked_at.is_some() || exp <= now_unix() {
                return Ok(Introspected::inactive(self.negative_ttl));
            }
            let user = match rec.user_id {
                // A deleted user's tokens die with the account.
                Some(uid) => match self
                    .store
                    .user_by_id(uid)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    Some(u) => Some(u),
                    None => return Ok(Introspected::inactive(self.negative_ttl)),
                },
                None => None,
            };
            let identity = Identity {
                user_id: rec
                    .user_id
                    .map(|u| u.to_string())
                    .or_else(|| rec.client_id.clone())
                    .unwrap_or_default(),
                email: user.as_ref().map(|u| u.email.clone()),
                role: user.map(|u| u.role),
                scopes: rec
                    .scope
                    .split_ascii_whitespace()
                    .map(str::to_owned)
                    .collect(),
                client_id: rec.client_id,
                alias: rec.alias,
                expires_at: Some(exp),
                token_id: Some(rec.family_id),
                signed_jwt: None,
                self_issued: true,
                header_values: Default::default(),
                audiences: if rec.audience.is_empty() {
                    vec![self.audience.clone()]
                } else {
                    rec.audience.split_whitespace().map(str::to_owned).collect()
                },
                cnf: rec
                    .cnf
                    .as_deref()
                    .and_then(|c| serde_json::from_str(c).ok())
                    .as_ref()
                    .and_then(super::Confirmation::from_claim),
            };
            if identity.user_id.is_empty() {
                return Ok(Introspected::inactive(self.negative_ttl));
            }
            Ok(Introspected::active(identity, Vec::new(), self.ttl))
        })
    }
}

/// A foreign RFC 7662 introspection endpoint.
pub struct RemoteIntrospection {
    name: String,
    url: String,
    client_id: String,
    secret: Option<String>,
    audience: Option<String>,
    timeout: Duration,
    ttl: Duration,
    negative_ttl: Duration,
    client: reqwest::Client,
}

#[derive(Debug, thiserror::Error)]
#[error("introspection.{name}: environment variable {var} (client_secret_env) is not set")]
pub struct MissingSecret {
    pub name: String,
    pub var: String,
}

impl RemoteIntrospection {
    pub fn from_config(c: &Introspection, client: reqwest::Client) -> Result<Self, MissingSecret> {
        let secret = match &c.client_secret_env {
            Some(var) => Some(std::env::var(var).map_err(|_| MissingSecret {
                name: c.name.clone(),
                var: var.clone(),
            })?),
            None => None,
        };
        crate::telemetry::at_zero(|| {
            [
                metrics::counter!("tollgate_introspection_requests_total", "endpoint" => c.name.clone()),
            ]
        });
        Ok(RemoteIntrospection {
            name: c.name.clone(),
            url: c.url.clone(),
            client_id: c.client_id.clone(),
            secret,
            audience: c.audience.clone(),
            timeout: c.timeout,
            ttl: c.cache.ttl,
            negative_ttl: c.cache.negative_ttl,
            client,
        })
    }

    fn parse(&self, v: &Value) -> Introspected {
        if v.get("active").and_then(Value::as_bool) != Some(true) {
            return Introspected::inactive(self.negative_ttl);
        }
        let aud = match v.get("aud") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        let claims: Claims = serde_json::from_value(v.clone()).unwrap_or_default();
        match claims.into_identity() {
            Some(id) => Introspected::active(id, aud, self.ttl),
            None => Introspected::inactive(self.negative_ttl),
        }
    }
}

impl TokenLookup for RemoteIntrospection {
    fn name(&self) -> &str {
        &self.name
    }

    fn audience(&self) -> Option<&str> {
        self.audience.as_deref()
    }

    fn lookup<'a>(&'a self, token: &'a str) -> LookupFuture<'a> {
        let span = crate::otel_span!(
            "introspect",
            opentelemetry::trace::SpanKind::Client,
            "tollgate.endpoint" => self.name.to_string(),
        );
        let traceparent = trace::headers_for(&span);
        Box::pin(span.instrument(async move {
            metrics::counter!("tollgate_introspection_requests_total", "endpoint" => self.name.clone()).increment(1);
            let body = form_urlencoded::Serializer::new(String::new())
                .append_pair("token", token)
                .append_pair("token_type_hint", "access_token")
                .finish();
            // RFC 6749 §2.3.1: client credentials are form-encoded before Basic.
            let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let mut req = self
                .client
                .post(&self.url)
                .timeout(self.timeout)
                .header("content-type", "application/x-www-form-urlencoded")
                .header("accept", "application/json")
                .headers(traceparent)
                .body(body);
            req = match &self.secret {
                Some(s) => req.basic_auth(enc(&self.client_id), Some(enc(s))),
                None => req.basic_auth(enc(&self.client_id), None::<&str>),
            };
            // Errors name the endpoint, never the token.
            let resp = req.send().await.map_err(|e| {
                if e.is_timeout() {
                    format!("{} timed out", self.name)
                } else {
                    format!("{} unreachable", self.name)
                }
            })?;
            if !resp.status().is_success() {
                return Err(format!("{} answered {}", self.name, resp.status()));
            }
            let v: Value = resp
                .json()
                .await
                .map_err(|_| format!("{} answered with invalid JSON", self.name))?;
            Ok(self.parse(&v))
        }))
    }
}
