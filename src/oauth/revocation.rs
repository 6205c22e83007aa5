//! The in-memory set of revoked JWT `jti`s, so checking a self-issued token never waits
//! on the database. Filled from the store at start, added to on every revocation here
//! and on every revocation event the store announces (other replicas, with PostgreSQL),
//! and re-read from the store periodically in case an event was missed. Entries are
//! dropped once the token they name has expired anyway.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::store::{Store, StoreError};

/// How often the set is re-read from the store.
const REFRESH_EVERY: Duration = Duration::from_secs(30);
/// How long a `jti` learned from an event is kept before the store's expiry replaces it.
const EVENT_PLACEHOLDER_TTL: i64 = 86_400;

#[derive(Default)]
pub struct RevokedJtis {
    /// jti → expiry (UNIX seconds) of the revoked token.
    set: RwLock<HashMap<String, i64>>,
}

impl RevokedJtis {
    /// Loads the revoked `jti`s and keeps them in step with the store.
    pub async fn load(store: Arc<dyn Store>) -> Result<Arc<RevokedJtis>, StoreError> {
        let me = Arc::new(RevokedJtis::default());
        let mut events = store.revocation_events();
        me.merge(store.revoked_jtis().await?);
        let weak = Arc::downgrade(&me);
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match events.recv().await {
                    Ok(ev) => {
                        let Some(me) = weak.upgrade() else { break };
                        if let Some(jti) = ev.jti {
                            // The event carries no expiry; the next reload from the store
                            // replaces this placeholder with the real one.
                            me.insert(&jti, Utc::now().timestamp() + EVENT_PLACEHOLDER_TTL);
                        }
                    }
                    // Missed events are picked up by the periodic reload.
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => break,
                }
            }
        });
        let weak = Arc::downgrade(&me);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REFRESH_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(me) = weak.upgrade() else { break };
                match store.revoked_jtis().await {
                    Ok(list) => me.merge(list),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot refresh revoked token ids; keeping the known set")
                    }
                }
            }
        });
        Ok(me)
    }

    fn merge(&self, list: Vec<(String, DateTime<Utc>)>) {
        let now = Utc::now().timestamp();
        let mut set = self.set.write().unwrap_or_else(|p| p.into_inner());
        set.retain(|_, exp| *exp > now);
        for (jti, exp) in list {
            set.insert(jti, exp.timestamp());
        }
    }

    pub fn insert(&self, jti: &str, exp: i64) {
        let mut set = self.set.write().unwrap_or_else(|p| p.into_inner());
        set.insert(jti.to_string(), exp);
    }

    pub fn contains(&self, jti: &str) -> bool {
        self.set
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(jti)
    }
}
