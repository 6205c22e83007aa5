//! Single use of DPoP proofs: a proof's `jti` is remembered for as long as its `iat`
//! could still be accepted (twice the proof window), and a second use is refused.
//!
//! `dpop.replay_store: local` keeps them in this process (one replica); `redis` keeps
//! them in the `rate_limit_store` server, so a proof used on one replica is refused on
//! every other. Keys are `{prefix}dpop:{sha256(jkt, jti)}`: a key never holds the proof.
//! When Redis cannot be asked the proof is refused as unverifiable (fail closed): a
//! replay that cannot be ruled out is not let through.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::crypto::sha256_hex;

/// Most proofs remembered in memory; past it the oldest are forgotten early, which can
/// only let a very old proof be refused by its `iat` instead.
const LOCAL_CAPACITY: u64 = 1_000_000;

#[derive(Debug, Clone, thiserror::Error)]
#[error("replay store unavailable: {0}")]
pub struct ReplayError(String);

pub enum ReplayStore {
    Local(moka::sync::Cache<String, ()>),
    Redis {
        manager: Result<ConnectionManager, String>,
        prefix: String,
        timeout: Duration,
    },
}

impl ReplayStore {
    /// A store in this process, remembering each proof for `ttl`.
    pub fn local(ttl: Duration) -> ReplayStore {
        ReplayStore::Local(
            moka::sync::Cache::builder()
                .max_capacity(LOCAL_CAPACITY)
                .time_to_live(ttl)
                .build(),
        )
    }

    /// A store on the Redis server of `rate_limit_store`, opened lazily.
    pub fn redis(url: &str, prefix: &str, timeout: Duration) -> ReplayStore {
        let manager = redis::Client::open(url)
            .and_then(|client| {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(200));
                ConnectionManager::new_lazy_with_config(client, config)
            })
            .map_err(|e| e.to_string());
        ReplayStore::Redis {
            manager,
            prefix: prefix.to_owned(),
            timeout,
        }
    }

    /// Records the proof `(jkt, jti)`: true on its first use, false on any later one.
    pub async fn first_use(
        &self,
        jkt: &str,
        jti: &str,
        ttl: Duration,
    ) -> Result<bool, ReplayError> {
        let id = sha256_hex(format!("{jkt}.{jti}"));
        match self {
            ReplayStore::Local(cache) => Ok(cache.entry(id).or_insert(()).is_fresh()),
            ReplayStore::Redis {
                manager,
                prefix,
                timeout,
            } => {
                let mut conn = manager
                    .as_ref()
                    .map_err(|e| ReplayError(e.clone()))?
                    .clone();
                let key = format!("{prefix}dpop:{id}");
                let mut cmd = redis::cmd("SET");
                cmd.arg(&key)
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl.as_millis() as u64);
                let set = cmd.query_async::<Option<String>>(&mut conn);
                match tokio::time::timeout(*timeout, set).await {
                    Ok(Ok(reply)) => Ok(reply.is_some()),
                    Ok(Err(e)) => Err(ReplayError(e.to_string())),
                    Err(_) => Err(ReplayError(format!("no answer within {timeout:?}"))),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_proof_is_used_once_locally() {
        let s = ReplayStore::local(Duration::from_secs(120));
        assert!(s
            .first_use("k", "j1", Duration::from_secs(120))
            .await
            .unwrap());
        assert!(!s
            .first_use("k", "j1", Duration::from_secs(120))
            .await
            .unwrap());
        // Another key's proof with the same jti is another proof.
        assert!(s
            .first_use("k2", "j1", Duration::from_secs(120))
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn redis_down_is_an_error_never_a_first_use() {
        let s = ReplayStore::redis("redis://127.0.0.1:1/0", "t:", Duration::from_millis(200));
        assert!(s.first_use("k", "j", Duration::from_secs(1)).await.is_err());
    }
}
