//! The PostgreSQL store, for several replicas sharing one database. Migrations are
//! applied at start under an advisory lock, so replicas starting together do not race.
//!
//! Revocations reach every replica: each revoking statement also runs
//! `pg_notify('tollgate_revocations', …)` in the same transaction, and a background task
//! per store LISTENs on that channel and re-broadcasts every notification (its own and
//! other replicas') to local subscribers. The revoking replica also broadcasts at once,
//! so its own caches never wait on the round trip; subscribers therefore see some events
//! twice, which is harmless because revocation is idempotent. Notifications sent while
//! the listener is reconnecting are lost, so after a reconnect it broadcasts
//! `RevocationEvent::resync()` and subscribers reload `revoked_jtis`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use sqlx::AssertSqlSafe;
use sqlx::Row;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::rows;
use super::support::{
    email_key, join_list, kind_str, map_err, micros, migrate_err, migrator, now, RevocationHub,
    POSTGRES_MIGRATIONS,
};
use super::{
    Client, ClientStore, ConnectState, ConnectStateStore, IdentityStore, LinkedIdentity, NewUser,
    RevocationEvent, Store, StoreError, StoreFuture, TokenKind, TokenRecord, TokenStore, User,
    UserId, UserStore,
};

/// The NOTIFY channel revocations travel on.
pub const REVOCATION_CHANNEL: &str = "tollgate_revocations";

pub struct PostgresStore {
    pool: PgPool,
    revocations: RevocationHub,
    listener: JoinHandle<()>,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl PostgresStore {
    /// One `UPDATE` of a family's live refresh tokens, notifying every replica.
    async fn revoke_family_pass(
        &self,
        family_id: &str,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        // The notifications are sent on commit, together with the update.
        let rows = sqlx::query(
            "WITH revoked AS ( \
                 UPDATE tokens SET revoked_at = $1 \
                 WHERE kind = 'refresh' AND family_id = $2 AND revoked_at IS NULL \
                 RETURNING token_hash) \
             SELECT token_hash, pg_notify($3, json_build_object('token_hash', token_hash)::text)::text AS sent \
             FROM revoked",
        )
        .bind(micros(at))
        .bind(family_id)
        .bind(REVOCATION_CHANNEL)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        for r in &rows {
            let hash: String = r.try_get("token_hash").map_err(map_err)?;
            self.revocations.send(RevocationEvent {
                jti: None,
                token_hash: Some(hash),
            });
        }
        Ok(rows.len() as u64)
    }

    /// Connects, applies migrations, and starts the revocation listener.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .idle_timeout(Some(Duration::from_secs(600)))
            .connect(url)
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot connect to PostgreSQL: {e}")))?;
        migrator(POSTGRES_MIGRATIONS)
            .run(&pool)
            .await
            .map_err(migrate_err)?;
        let revocations = RevocationHub::new();
        // Subscribed before `connect` returns: every revocation from now on is heard.
        let listener = subscribe(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot LISTEN for revocations: {e}")))?;
        let listener = tokio::spawn(relay_notifications(
            pool.clone(),
            revocations.clone(),
            listener,
        ));
        Ok(PostgresStore {
            pool,
            revocations,
            listener,
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// A connection LISTENing on the revocation channel.
async fn subscribe(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(REVOCATION_CHANNEL).await?;
    Ok(listener)
}

/// Re-broadcasts every revocation notification (from every replica) locally, for as long
/// as the store lives. After a lost connection it reconnects and sends
/// `RevocationEvent::resync()`, since notifications in the gap are gone.
async fn relay_notifications(pool: PgPool, hub: RevocationHub, mut listener: PgListener) {
    let pause = Duration::from_secs(1);
    loop {
        match listener.try_recv().await {
            Ok(Some(n)) => match serde_json::from_str::<RevocationEvent>(n.payload()) {
                Ok(event) if !event.is_resync() => hub.send(event),
                _ => tracing::warn!("ignoring a malformed revocation notification"),
            },
            Ok(None) => {
                // The listener has already reconnected and LISTENs again.
                tracing::warn!(
                    "revocation listener lost its connection and reconnected; subscribers resync"
                );
                hub.send(RevocationEvent::resync());
            }
            Err(e) => {
                tracing::warn!(error = %e, "revocation listener failed; reconnecting");
                listener = loop {
                    tokio::time::sleep(pause).await;
                    match subscribe(&pool).await {
                        Ok(l) => break l,
                        Err(e) => {
                            tracing::warn!(error = %e, "revocation listener cannot reconnect; retrying")
                        }
                    }
                };
                hub.send(RevocationEvent::resync());
            }
        }
    }
}

/// The only text formatted into a query (hence `AssertSqlSafe` where it is): a constant;
/// every value is bound.
const USER_COLUMNS: &str = "id, username, email, password_hash, role, created_at, updated_at";
/// Bound on `revoke_family`'s passes; each pass revokes at least one new row.
const MAX_REVOKE_PASSES: usize = 64;

const TOKEN_COLUMNS: &str =
    "token_hash, family_id, user_id, client_id, scope, alias, expires_at, created_at, rotated_at, revoked_at, audience, cnf";

impl UserStore for PostgresStore {
    fn create_user(&self, u: NewUser) -> StoreFuture<'_, User> {
        Box::pin(async move {
            let at = now();
            let row = sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO users (username, email, email_key, password_hash, role, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING {USER_COLUMNS}"
            )))
            .bind(&u.username)
            .bind(u.email.trim())
            .bind(email_key(&u.email))
            .bind(&u.password_hash)
            .bind(&u.role)
            .bind(micros(at))
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?;
            rows::user(&row).map_err(map_err)
        })
    }

    fn user_by_id(&self, id: UserId) -> StoreFuture<'_, Option<User>> {
        Box::pin(async move {
            let row = sqlx::query(AssertSqlSafe(format!(
                "SELECT {USER_COLUMNS} FROM users WHERE id = $1"
            )))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
            row.as_ref().map(rows::user).transpose().map_err(map_err)
        })
    }

    fn user_by_email(&self, email: &str) -> StoreFuture<'_, Option<User>> {
        let key = email_key(email);
        Box::pin(async move {
            let row = sqlx::query(AssertSqlSafe(format!(
                "SELECT {USER_COLUMNS} FROM users WHERE email_key = $1"
            )))
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
            row.as_ref().map(rows::user).transpose().map_err(map_err)
        })
    }

    fn user_by_username(&self, username: &str) -> StoreFuture<'_, Option<User>> {
        let username = username.to_owned();
        Box::pin(async move {
            let row = sqlx::query(AssertSqlSafe(format!(
                "SELECT {USER_COLUMNS} FROM users WHERE username = $1"
            )))
            .bind(username)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
            row.as_ref().map(rows::user).transpose().map_err(map_err)
        })
    }

    fn set_password_hash(&self, id: UserId, hash: &str) -> StoreFuture<'_, ()> {
        let hash = hash.to_owned();
        Box::pin(async move {
            let done =
                sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
                    .bind(hash)
                    .bind(now())
                    .bind(id.0)
                    .execute(&self.pool)
                    .await
                    .map_err(map_err)?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
            Ok(())
        })
    }
}

impl ClientStore for PostgresStore {
    fn create_client(&self, c: Client) -> StoreFuture<'_, Client> {
        Box::pin(async move {
            let c = Client {
                created_at: micros(c.created_at),
                ..c
            };
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO clients ({CLIENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            )))
            .bind(&c.id)
            .bind(&c.secret_hash)
            .bind(join_list(&c.grants))
            .bind(join_list(&c.scopes))
            .bind(c.created_at)
            .bind(join_list(&c.redirect_uris))
            .bind(join_list(&c.post_logout_redirect_uris))
            .bind(c.first_party)
            .bind(&c.registration_token_hash)
            .bind(c.tls_auth.as_ref().map(|t| t.method()))
            .bind(c.tls_auth.as_ref().map(|t| t.value().to_owned()))
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
            Ok(c)
        })
    }

    fn client_by_id(&self, id: &str) -> StoreFuture<'_, Option<Client>> {
        let id = id.to_owned();
        Box::pin(async move {
            let row = sqlx::query(AssertSqlSafe(format!(
                "SELECT {CLIENT_COLUMNS} FROM clients WHERE id = $1"
            )))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
            row.as_ref().map(rows::client).transpose().map_err(map_err)
        })
    }

    fn client_grants(&self) -> StoreFuture<'_, Vec<String>> {
        Box::pin(async move {
            let lists: Vec<String> = sqlx::query_scalar("SELECT DISTINCT grants FROM clients")
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
            Ok(super::support::distinct_items(&lists))
        })
    }
}

async fn insert_token_on<'e, E>(db: E, kind: TokenKind, t: &TokenRecord) -> Result<(), StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Postgres>,
{
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO tokens (kind, {TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    )))
    .bind(kind_str(kind))
    .bind(&t.token_hash)
    .bind(&t.family_id)
    .bind(t.user_id.map(|u| u.0))
    .bind(&t.client_id)
    .bind(&t.scope)
    .bind(&t.alias)
    .bind(micros(t.expires_at))
    .bind(micros(t.created_at))
    .bind(t.rotated_at.map(micros))
    .bind(t.revoked_at.map(micros))
    .bind(&t.audience)
    .bind(&t.cnf)
    .execute(db)
    .await
    .map_err(map_err)?;
    Ok(())
}

impl TokenStore for PostgresStore {
    fn insert_token(&self, kind: TokenKind, t: TokenRecord) -> StoreFuture<'_, ()> {
        Box::pin(async move { insert_token_on(&self.pool, kind, &t).await })
    }

    fn rotate_refresh(
        &self,
        parent: &str,
        at: DateTime<Utc>,
        rotated_since: Option<DateTime<Utc>>,
        child: TokenRecord,
    ) -> StoreFuture<'_, bool> {
        let parent = parent.to_owned();
        Box::pin(async move {
            let mut tx = self.pool.begin().await.map_err(map_err)?;
            // A NULL `rotated_since` makes the comparison NULL: only an unrotated parent.
            let done = sqlx::query(
                "UPDATE tokens SET rotated_at = COALESCE(rotated_at, $1) \
                 WHERE kind = 'refresh' AND token_hash = $2 AND revoked_at IS NULL AND expires_at > $3 \
                 AND (rotated_at IS NULL OR rotated_at >= $4)",
            )
            .bind(micros(at))
            .bind(&parent)
            .bind(micros(at))
            .bind(rotated_since.map(micros))
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
            if done.rows_affected() != 1 {
                return Ok(false);
            }
            insert_token_on(&mut *tx, TokenKind::Refresh, &child).await?;
            tx.commit().await.map_err(map_err)?;
            Ok(true)
        })
    }

    fn token_by_hash(&self, kind: TokenKind, hash: &str) -> StoreFuture<'_, Option<TokenRecord>> {
        let hash = hash.to_owned();
        Box::pin(async move {
            let row = sqlx::query(AssertSqlSafe(format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens WHERE kind = $1 AND token_hash = $2"
            )))
            .bind(kind_str(kind))
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
            row.as_ref().map(rows::token).transpose().map_err(map_err)
        })
    }

    fn mark_rotated(&self, hash: &str, at: DateTime<Utc>) -> StoreFuture<'_, bool> {
        let hash = hash.to_owned();
        Box::pin(async move {
            let done = sqlx::query(
                "UPDATE tokens SET rotated_at = $1 \
                 WHERE kind = 'refresh' AND token_hash = $2 AND rotated_at IS NULL AND revoked_at IS NULL",
            )
            .bind(micros(at))
            .bind(hash)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
            Ok(done.rows_affected() == 1)
        })
    }

    fn revoke_family(&self, family_id: &str, at: DateTime<Utc>) -> StoreFuture<'_, u64> {
        let family_id = family_id.to_owned();
        Box::pin(async move {
            // A statement sees the rows committed when it started. A rotation holding the
            // lock on a parent this statement revokes commits its child after that, so
            // the child is missed; it is caught by the next pass, which starts after the
            // rotation committed. Each pass that changes nothing proves that no rotation
            // of a live parent is in flight, since every parent seen is now revoked.
            let mut total = 0u64;
            for _ in 0..MAX_REVOKE_PASSES {
                let n = self.revoke_family_pass(&family_id, at).await?;
                if n == 0 {
                    return Ok(total);
                }
                total += n;
            }
            tracing::warn!(
                revoked = total,
                "a token family kept growing while it was revoked"
            );
            Ok(total)
        })
    }

    fn revoke_token(
        &self,
        kind: TokenKind,
        hash: &str,
        at: DateTime<Utc>,
    ) -> StoreFuture<'_, bool> {
        let hash = hash.to_owned();
        Box::pin(async move {
            let row = sqlx::query(
                "WITH revoked AS ( \
                     UPDATE tokens SET revoked_at = $1 \
                     WHERE kind = $2 AND token_hash = $3 AND revoked_at IS NULL \
                     RETURNING kind, token_hash, family_id) \
                 SELECT family_id, pg_notify($4, json_build_object( \
                     'token_hash', token_hash, \
                     'jti', CASE WHEN kind = 'opaque_access' THEN family_id END)::text)::text AS sent \
                 FROM revoked",
            )
            .bind(micros(at))
            .bind(kind_str(kind))
            .bind(&hash)
            .bind(REVOCATION_CHANNEL)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
            let Some(row) = row else { return Ok(false) };
            let family: String = row.try_get("family_id").map_err(map_err)?;
            self.revocations
                .send(RevocationEvent::for_token(kind, hash, family));
            Ok(true)
        })
    }

    fn revoke_jti(&self, jti: &str, expires_at: DateTime<Utc>) -> StoreFuture<'_, ()> {
        let jti = jti.to_owned();
        Box::pin(async move {
            sqlx::query(
                "WITH recorded AS ( \
                     INSERT INTO revoked_jtis (jti, expires_at) VALUES ($1, $2) \
                     ON CONFLICT (jti) DO UPDATE SET expires_at = GREATEST(revoked_jtis.expires_at, excluded.expires_at) \
                     RETURNING jti) \
                 SELECT pg_notify($3, json_build_object('jti', jti)::text)::text AS sent FROM recorded",
            )
            .bind(&jti)
            .bind(micros(expires_at))
            .bind(REVOCATION_CHANNEL)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
            self.revocations.send(RevocationEvent {
                jti: Some(jti),
                token_hash: None,
            });
            Ok(())
        })
    }

    fn revoked_jtis(&self) -> StoreFuture<'_, Vec<(String, DateTime<Utc>)>> {
        Box::pin(async move {
            let at = now();
            sqlx::query("DELETE FROM revoked_jtis WHERE expires_at <= $1")
                .bind(micros(at))
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
            let rows = sqlx::query(
                "SELECT jti, expires_at FROM revoked_jtis WHERE expires_at > $1 ORDER BY jti",
            )
            .bind(micros(at))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
            rows.iter()
                .map(|r| Ok((r.try_get("jti")?, r.try_get("expires_at")?)))
                .collect::<Result<_, sqlx::Error>>()
                .map_err(map_err)
        })
    }

    fn revocation_events(&self) -> broadcast::Receiver<RevocationEvent> {
        self.revocations.subscribe()
    }
}

impl IdentityStore for PostgresStore {
    fn link_identity(&self, i: LinkedIdentity) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            // Re-linking the same account refreshes its tokens; an account linked to
            // another user updates nothing and is a conflict.
            let done = sqlx::query(
                "INSERT INTO identities (provider, provider_user_id, user_id, email, tokens_encrypted, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (provider, provider_user_id) DO UPDATE \
                 SET email = excluded.email, tokens_encrypted = excluded.tokens_encrypted \
                 WHERE identities.user_id = excluded.user_id",
            )
            .bind(&i.provider)
            .bind(&i.provider_user_id)
            .bind(i.user_id.0)
            .bind(&i.email)
            .bind(&i.tokens_encrypted)
            .bind(micros(i.created_at))
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
            if done.rows_affected() == 0 {
                return Err(StoreError::Conflict(super::Unique::Identity));
            }
            Ok(())
        })
    }

    fn identities_of(&self, user: UserId) -> StoreFuture<'_, Vec<LinkedIdentity>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT provider, provider_user_id, user_id, email, tokens_encrypted, created_at \
                 FROM identities WHERE user_id = $1 ORDER BY provider",
            )
            .bind(user.0)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
            rows.iter()
                .map(rows::identity)
                .collect::<Result<_, _>>()
                .map_err(map_err)
        })
    }

    fn unlink_identity(&self, user: UserId, provider: &str) -> StoreFuture<'_, bool> {
        let provider = provider.to_owned();
        Box::pin(async move {
            let done = sqlx::query("DELETE FROM identities WHERE user_id = $1 AND provider = $2")
                .bind(user.0)
                .bind(provider)
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
            Ok(done.rows_affected() > 0)
        })
    }
}

impl ConnectStateStore for PostgresStore {
    fn put_connect_state(&self, s: ConnectState) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            sqlx::query("DELETE FROM connect_states WHERE expires_at <= $1")
                .bind(now())
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
            sqlx::query(
                "INSERT INTO connect_states (state_hash, user_id, provider, redirect_uri, pkce_verifier, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&s.state_hash)
            .bind(s.user_id.0)
            .bind(&s.provider)
            .bind(&s.redirect_uri)
            .bind(&s.pkce_verifier)
            .bind(micros(s.expires_at))
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
            Ok(())
        })
    }

    fn take_connect_state(&self, state_hash: &str) -> StoreFuture<'_, Option<ConnectState>> {
        let state_hash = state_hash.to_owned();
        Box::pin(async move {
            let row = sqlx::query(
                "DELETE FROM connect_states WHERE state_hash = $1 \
                 RETURNING state_hash, user_id, provider, redirect_uri, pkce_verifier, expires_at",
            )
            .bind(state_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
            let state = row
                .as_ref()
                .map(rows::connect_state)
                .transpose()
                .map_err(map_err)?;
            Ok(state.filter(|s| s.expires_at > Utc::now()))
        })
    }
}

impl super::AttemptStore for PostgresStore {
    fn count_attempt(
        &self,
        key: &str,
        now_us: i64,
        interval_us: i64,
        tolerance_us: i64,
    ) -> StoreFuture<'_, Option<std::time::Duration>> {
        let key = key.to_owned();
        Box::pin(async move {
            // One statement decides and counts, so concurrent attempts on several
            // replicas cannot both take the last unit of the budget.
            let counted: Option<(i64,)> = sqlx::query_as(
                "INSERT INTO login_attempts (key, tat) VALUES ($1, $2 + $3) \
                 ON CONFLICT (key) DO UPDATE SET tat = GREATEST(login_attempts.tat, $2) + $3 \
                 WHERE GREATEST(login_attempts.tat, $2) + $3 - $2 <= $4 \
                 RETURNING tat",
            )
            .bind(&key)
            .bind(now_us)
            .bind(interval_us)
            .bind(tolerance_us)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
            if counted.is_some() {
                return Ok(None);
            }
            let (tat,): (i64,) = sqlx::query_as("SELECT tat FROM login_attempts WHERE key = $1")
                .bind(&key)
                .fetch_one(&self.pool)
                .await
                .map_err(map_err)?;
            Ok(Some(super::attempt_wait(
                tat,
                now_us,
                interval_us,
                tolerance_us,
            )))
        })
    }
}

const CLIENT_COLUMNS: &str = "id, secret_hash, grants, scopes, created_at, redirect_uris, post_logout_redirect_uris, first_party, registration_token_hash, tls_auth_method, tls_auth_value";

impl super::SignInStore for PostgresStore {
    fn put_signin(
        &self,
        kind: super::SignInKind,
        hash: &str,
        r: super::SignInRecord,
    ) -> StoreFuture<'_, ()> {
        let hash = hash.to_owned();
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO signin_state (kind, value_hash, payload, expires_at, used_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (kind, value_hash) DO UPDATE SET \
                 payload = excluded.payload, expires_at = excluded.expires_at, used_at = excluded.used_at",
            )
            .bind(kind.as_str())
            .bind(hash)
            .bind(&r.payload)
            .bind(micros(r.expires_at))
            .bind(r.used_at.map(micros))
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
            Ok(())
        })
    }

    fn signin_by_hash(
        &self,
        kind: super::SignInKind,
        hash: &str,
    ) -> StoreFuture<'_, Option<super::SignInRecord>> {
        let hash = hash.to_owned();
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT payload, expires_at, used_at FROM signin_state WHERE kind = $1 AND value_hash = $2",
            )
            .bind(kind.as_str())
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
            row.as_ref().map(rows::signin).transpose().map_err(map_err)
        })
    }

    fn use_signin(
        &self,
        kind: super::SignInKind,
        hash: &str,
        at: DateTime<Utc>,
    ) -> StoreFuture<'_, bool> {
        let hash = hash.to_owned();
        Box::pin(async move {
            let done = sqlx::query(
                "UPDATE signin_state SET used_at = $1 WHERE kind = $2 AND value_hash = $3 AND used_at IS NULL",
            )
            .bind(micros(at))
            .bind(kind.as_str())
            .bind(hash)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
            Ok(done.rows_affected() == 1)
        })
    }
}

impl Store for PostgresStore {
    fn purge_expired(&self, before: DateTime<Utc>) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let mut deleted = 0;
            // Attempt counters whose arrival time has passed carry no budget any more.
            let done = sqlx::query("DELETE FROM login_attempts WHERE tat < $1")
                .bind(chrono::Utc::now().timestamp_micros())
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
            deleted += done.rows_affected();
            for sql in [
                "DELETE FROM tokens WHERE expires_at < $1",
                "DELETE FROM revoked_jtis WHERE expires_at < $1",
                "DELETE FROM signin_state WHERE expires_at < $1",
            ] {
                let done = sqlx::query(sql)
                    .bind(micros(before))
                    .execute(&self.pool)
                    .await
                    .map_err(map_err)?;
                deleted += done.rows_affected();
            }
            let done = sqlx::query("DELETE FROM connect_states WHERE expires_at <= $1")
                .bind(now())
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
            Ok(deleted + done.rows_affected())
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            sqlx::query("SELECT 1")
                .execute(&self.pool)
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            Ok(())
        })
    }
}
