//! Revoked tokens, held in memory so the hot path never asks the database. The one set
//! of revoked `jti`s in the process: the token service's revoke endpoint applies to it
//! directly (in force before the store's event comes back), the proxy reads it.
//!
//! Threat model: a stolen token keeps working after its owner revoked it. The list is
//! loaded from the store at start (`TokenStore::revoked_jtis`) and updated on every
//! revocation the store announces (in-process for SQLite; LISTEN/NOTIFY across replicas
//! for PostgreSQL). Every cached validation is re-checked against it, so a revoked token
//! is refused even while its claims are cached, and open WebSocket tunnels opened with it
//! are told to close.
//!
//! Entries expire with the token they revoke: once a token is past `exp` it is refused for
//! that reason anyway, so the list stays as small as the set of live revoked tokens.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use moka::Expiry;
use tokio::sync::broadcast;

use crate::clock::now_unix;
use crate::keys::LEEWAY_SECS;
use crate::store::{Store, StoreError};

/// How often the list is re-read from the store, in case an event was missed.
pub const RELOAD_EVERY: Duration = Duration::from_secs(30);

/// One revocation, as announced by the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    /// A JWT `jti` (or an opaque token's id) revoked until `expires_at` (UNIX seconds).
    Jti { jti: String, expires_at: u64 },
    /// An opaque token revoked by its SHA-256 hash (lower-case hex).
    TokenHash(String),
}

struct UntilExpiry;

impl Expiry<Arc<str>, u64> for UntilExpiry {
    fn expire_after_create(
        &self,
        _k: &Arc<str>,
        exp: &u64,
        _at: std::time::Instant,
    ) -> Option<Duration> {
        Some(Duration::from_secs(
            exp.saturating_sub(now_unix()).saturating_add(LEEWAY_SECS),
        ))
    }

    /// A reload from the store replaces the bound an event set with the real expiry.
    fn expire_after_update(
        &self,
        k: &Arc<str>,
        exp: &u64,
        at: std::time::Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        self.expire_after_create(k, exp, at)
    }
}

/// The in-memory revocation list, shared by every authenticator and tunnel.
pub struct RevocationList {
    /// Read on every authenticated request; filled only by revocations, so SipHash's
    /// flood resistance buys nothing over a seeded fast hash.
    jtis: Cache<Arc<str>, u64, foldhash::fast::RandomState>,
    /// Moves on after every revocation is in `jtis` (never before), so that a token found
    /// not revoked at one epoch needs no lookup until the epoch moves ([`Checked`]).
    epoch: AtomicU64,
    events: broadcast::Sender<Revoked>,
}

/// A cached token's note of the revocation list's epoch at which it was last found not
/// revoked ([`RevocationList::is_revoked_since`]). Shared by every worker that hits the
/// same cache entry.
#[derive(Debug, Default)]
pub struct Checked(AtomicU64);

/// A copy keeps the note: it is about the same token.
impl Clone for Checked {
    fn clone(&self) -> Self {
        Checked(AtomicU64::new(self.0.load(Ordering::Relaxed)))
    }
}

impl Default for RevocationList {
    fn default() -> Self {
        RevocationList {
            // Unbounded on purpose: evicting a live revocation would un-revoke a token.
            jtis: Cache::builder()
                .expire_after(UntilExpiry)
                .build_with_hasher(foldhash::fast::RandomState::default()),
            // 0 is a `Checked` that never was.
            epoch: AtomicU64::new(1),
            events: broadcast::channel(1024).0,
        }
    }
}

pub type RevokedFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

impl RevocationList {
    pub fn new() -> Arc<Self> {
        crate::telemetry::at_zero(|| [metrics::counter!("tollgate_revocations_applied_total")]);
        Arc::new(Self::default())
    }

    /// Loads the revocations the store holds (at start).
    pub fn load(&self, revoked: impl IntoIterator<Item = (String, u64)>) {
        for (jti, exp) in revoked {
            self.jtis.insert(jti.into(), exp);
        }
        self.epoch.fetch_add(1, Ordering::Release);
    }

    pub fn is_revoked(&self, jti: &str) -> bool {
        self.jtis.contains_key(jti)
    }

    /// [`is_revoked`](Self::is_revoked) for a cached token, asked of the list only when a
    /// revocation arrived since `checked` last found the token not revoked: a token's
    /// every request would otherwise hash its `jti` and probe the list (BENCHMARKS.md,
    /// "Fourteenth round"). A revocation is in the list before the epoch moves, and the
    /// epoch is read before the list is, so a check that reads the old epoch either sees
    /// the revocation or records an epoch that the next check finds moved.
    pub fn is_revoked_since(&self, jti: &str, checked: &Checked) -> bool {
        let epoch = self.epoch.load(Ordering::Acquire);
        if checked.0.load(Ordering::Relaxed) == epoch {
            return false;
        }
        if self.is_revoked(jti) {
            return true;
        }
        // Racing workers may store an older epoch than another stored: that only costs
        // one more lookup.
        checked.0.store(epoch, Ordering::Relaxed);
        false
    }

    /// Records a revocation and tells every listener (caches holding the token, tunnels
    /// opened with it).
    pub fn apply(&self, event: Revoked) {
        if let Revoked::Jti { jti, expires_at } = &event {
            self.jtis.insert(Arc::from(jti.as_str()), *expires_at);
            self.epoch.fetch_add(1, Ordering::Release);
        }
        metrics::counter!("tollgate_revocations_applied_total").increment(1);
        let _ = self.events.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Revoked> {
        self.events.subscribe()
    }

    /// Loads the store's revoked `jti`s, then applies every revocation event it announces
    /// (its own, and with PostgreSQL every replica's) until the feed closes. The whole
    /// list is re-read from the store when the receiver lags, when the store announces a
    /// resync (its cross-replica listener reconnected, so notifications may be lost), and
    /// every [`RELOAD_EVERY`] as a safety net. An event carries no expiry: a `jti` learned
    /// from one is kept for at most `max_ttl` (the access-token lifetime) until the next
    /// re-read replaces that bound with the token's real expiry from the store.
    pub async fn follow_store(
        self: &Arc<Self>,
        store: Arc<dyn Store>,
        max_ttl: Duration,
    ) -> Result<(), StoreError> {
        // Subscribe first, so nothing revoked between the load and the subscription is lost.
        let mut feed = store.revocation_events();
        self.load_from(&*store).await?;
        let weak = Arc::downgrade(self);
        let events_store = store.clone();
        tokio::spawn(async move {
            let store = events_store;
            loop {
                let event = feed.recv().await;
                let Some(list) = weak.upgrade() else { return };
                match event {
                    Ok(e) if e.is_resync() => {
                        tracing::warn!(
                            "revocation feed resync; reloading revocations from the store"
                        );
                        list.reload(&*store).await;
                    }
                    Ok(e) => {
                        if let Some(jti) = e.jti {
                            // Revoked here already (with its real expiry): nothing new.
                            if !list.jtis.contains_key(jti.as_str()) {
                                let expires_at = now_unix() + max_ttl.as_secs() + LEEWAY_SECS;
                                list.apply(Revoked::Jti { jti, expires_at });
                            }
                        }
                        if let Some(hash) = e.token_hash {
                            list.apply(Revoked::TokenHash(hash));
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(
                            missed = n,
                            "revocation feed lagged; reloading revocations from the store"
                        );
                        list.reload(&*store).await;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RELOAD_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(list) = weak.upgrade() else { return };
                list.reload(&*store).await;
            }
        });
        Ok(())
    }

    /// [`Self::load_from`], logging instead of failing: the known set stays in force.
    async fn reload(&self, store: &dyn Store) {
        if let Err(e) = self.load_from(store).await {
            tracing::error!(error = %e, "cannot reload revocations; some may be missed until the store answers");
        }
    }

    async fn load_from(&self, store: &dyn Store) -> Result<(), StoreError> {
        let list = store.revoked_jtis().await?;
        self.load(
            list.into_iter()
                .map(|(j, exp)| (j, exp.timestamp().max(0) as u64)),
        );
        Ok(())
    }

    /// Resolves when the token with id `jti` is revoked (at once if it already is).
    pub fn revoked(self: &Arc<Self>, jti: &str) -> RevokedFuture {
        let list = self.clone();
        let jti: Arc<str> = Arc::from(jti);
        let mut rx = self.events.subscribe();
        Box::pin(async move {
            if list.is_revoked(&jti) {
                return;
            }
            loop {
                match rx.recv().await {
                    Ok(Revoked::Jti { jti: j, .. }) if *j == *jti => return,
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        if list.is_revoked(&jti) {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token found not revoked is not looked up again until the list changes, and a
    /// revocation that arrives later is seen at once, by every holder of the note.
    #[test]
    fn a_checked_token_is_asked_again_once_the_list_moves() {
        let list = RevocationList::new();
        let far = now_unix() + 600;
        let checked = Checked::default();
        assert!(!list.is_revoked_since("a", &checked));
        let noted = checked.0.load(Ordering::Relaxed);
        assert_eq!(noted, list.epoch.load(Ordering::Relaxed));
        assert!(!list.is_revoked_since("a", &checked));
        list.apply(Revoked::Jti {
            jti: "b".into(),
            expires_at: far,
        });
        assert!(!list.is_revoked_since("a", &checked));
        assert!(
            checked.0.load(Ordering::Relaxed) > noted,
            "the new epoch noted"
        );
        list.apply(Revoked::Jti {
            jti: "a".into(),
            expires_at: far,
        });
        assert!(list.is_revoked_since("a", &checked));
        assert!(list.is_revoked_since("a", &Checked::default()));
        // The list loaded from the store (a resync) moves the epoch too.
        let c = Checked::default();
        assert!(!list.is_revoked_since("c", &c));
        list.load([("c".to_string(), far)]);
        assert!(list.is_revoked_since("c", &c));
    }

    #[tokio::test]
    async fn revoke_signals_and_expires() {
        let list = RevocationList::new();
        let far = now_unix() + 3600;
        let wait = list.revoked("a");
        list.apply(Revoked::Jti {
            jti: "b".into(),
            expires_at: far,
        });
        list.apply(Revoked::Jti {
            jti: "a".into(),
            expires_at: far,
        });
        tokio::time::timeout(Duration::from_secs(2), wait)
            .await
            .expect("signalled");
        assert!(list.is_revoked("a") && list.is_revoked("b") && !list.is_revoked("c"));
        // Already revoked: resolves at once.
        tokio::time::timeout(Duration::from_secs(2), list.revoked("a"))
            .await
            .expect("immediate");
    }
}
