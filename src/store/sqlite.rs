//! The embedded SQLite store: one file, created with its directory on first start,
//! migrations applied at open. WAL mode lets readers proceed while a writer commits;
//! writers are serialised by SQLite itself, which is what makes `mark_rotated` and
//! `take_connect_state` single-winner without explicit locks.
//!
//! Timestamps are stored as INTEGER microseconds (UTC).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::AssertSqlSafe;
use sqlx::Row;
use tokio::sync::broadcast;

use super::rows;
use super::support::{
    email_key, join_list, kind_str, map_err, micros, migrate_err, migrator, now, RevocationHub,
    SQLITE_MIGRATIONS,
};
use super::{
    Client, ClientStore, ConnectState, ConnectStateStore, IdentityStore, LinkedIdentity, NewUser,
    RevocationEvent, Store, StoreError, StoreFuture, TokenKind, TokenRecord, TokenStore, User,
    UserId, UserStore,
};

pub struct SqliteStore {
    pool: SqlitePool,
    revocations: RevocationHub,
}

fn ts(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn from_ts(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(v).unwrap_or_default()
}

/// The file path in a `sqlite:` URL, or `None` for an in-memory database.
fn file_path(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or("");
    (!path.is_empty() && path != ":memory:").then_some(path)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at a `sqlite:` URL and applies migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let in_memory = file_path(url).is_none();
        if let Some(parent) = file_path(url).and_then(|p| Path::new(p).parent()) {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).map_err(|e| {
                    StoreError::Unavailable(format!("cannot create {}: {e}", parent.display()))
                })?;
            }
        }
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Other(format!("bad sqlite url: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        // An in-memory database lives in one connection; a pool of several would see
        // several empty databases.
        let pool = SqlitePoolOptions::new()
            .max_connections(if in_memory { 1 } else { 8 })
            .min_connections(if in_memory { 1 } else { 0 })
            .idle_timeout(if in_memory {
                None
            } else {
                Some(Duration::from_secs(600))
            })
            .max_lifetime(if in_memory {
                None
            } else {
                Some(Duration::from_secs(3600))
            })
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot open {url}: {e}")))?;
        migrator(SQLITE_MIGRATIONS)
            .run(&pool)
            .await
            .map_err(migrate_err)?;
        Ok(SqliteStore {
            pool,
            revocations: RevocationHub::new(),
        })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// The only text formatted into a query (hence `AssertSqlSafe` where it is): a constant;
/// every value is bound.
const USER_COLUMNS: &str = "id, username, email, password_hash, role, created_at, updated_at";
const TOKEN_COLUMNS: &str =
    "token_hash, family_id, user_id, client_id, scope, alias, expires_at, created_at, rotated_at, revoked_at, audience, cnf";

impl UserStore for SqliteStore {
    fn create_user(&self, u: NewUser) -> StoreFuture<'_, User> {
        Box::pin(async move {
            let at = now();
            let row = sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO users (username, email, email_key, password_hash, role, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING {USER_COLUMNS}"
            )))
            .bind(&u.username)
            .bind(u.email.trim())
            .bind(email_key(&u.email))
            .bind(&u.password_hash)
            .bind(&u.role)
            .bind(ts(at))
            .bind(ts(at))
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?;
            rows::user(&row).map_err(map_err)
        })
    }

    fn user_by_id(&self, id: UserId) -> StoreFuture<'_, Option<User>> {
        Box::pin(async move {
            let row = sqlx::query(AssertSqlSafe(format!(
                "SELECT {USER_COLUMNS} FROM users WHERE id = ?"
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
                "SELECT {USER_COLUMNS} FROM users WHERE email_key = ?"
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
                "SELECT {USER_COLUMNS} FROM users WHERE username = ?"
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
                sqlx::query("UPDATE users SET password_hash = ?, updated_at = ? WHERE id = ?")
                    .bind(hash)
                    .bind(ts(now()))
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

impl ClientStore for SqliteStore {
    fn create_client(&self, c: Client) -> StoreFuture<'_, Client> {
        Box::pin(async move {
            let c = Client {
                created_at: micros(c.created_at),
                ..c
            };
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO clients ({CLIENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            )))
            .bind(&c.id)
            .bind(&c.secret_hash)
            .bind(join_list(&c.grants))
            .bind(join_list(&c.scopes))
            .bind(ts(c.created_at))
            .bind(join_list(&c.redirect_uris))
            .bind(join_list(&c.post_logout_redirect_uris))
            .bind(i64::from(c.first_party))
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
                "SELECT {CLIENT_COLUMNS} FROM clients WHERE id = ?"
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
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO tokens (kind, {TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )))
    .bind(kind_str(kind))
    .bind(&t.token_hash)
    .bind(&t.family_id)
    .bind(t.user_id.map(|u| u.0))
    .bind(&t.client_id)
    .bind(&t.scope)
    .bind(&t.alias)
    .bind(ts(t.expires_at))
    .bind(ts(t.created_at))
    .bind(t.rotated_at.map(ts))
    .bind(t.revoked_at.map(ts))
    .bind(&t.audience)
    .bind(&t.cnf)
    .execute(db)
    .await
    .map_err(map_err)?;
    Ok(())
}

impl TokenStore for SqliteStore {
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
                "UPDATE tokens SET rotated_at = COALESCE(rotated_at, ?) \
                 WHERE kind = 'refresh' AND token_hash = ? AND revoked_at IS NULL AND expires_at > ? \
                 AND (rotated_at IS NULL OR rotated_at >= ?)",
            )
            .bind(ts(at))
            .bind(&parent)
            .bind(ts(at))
            .bind(rotated_since.map(ts))
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
                "SELECT {TOKEN_COLUMNS} FROM tokens WHERE kind = ? AND token_hash = ?"
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
                "UPDATE tokens SET rotated_at = ? \
                 WHERE kind = 'refresh' AND token_hash = ? AND rotated_at IS NULL AND revoked_at IS NULL",
            )
            .bind(ts(at))
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
            // SQLite runs one writer at a time and a rotation is one transaction, so this
            // statement runs wholly before a rotation (which then finds its parent
            // revoked) or after it (and sees the child).
            let rows = sqlx::query(
                "UPDATE tokens SET revoked_at = ? \
                 WHERE kind = 'refresh' AND family_id = ? AND revoked_at IS NULL RETURNING token_hash",
            )
            .bind(ts(at))
            .bind(family_id)
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
                "UPDATE tokens SET revoked_at = ? \
                 WHERE kind = ? AND token_hash = ? AND revoked_at IS NULL RETURNING family_id",
            )
            .bind(ts(at))
            .bind(kind_str(kind))
            .bind(&hash)
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
                "INSERT INTO revoked_jtis (jti, expires_at) VALUES (?, ?) \
                 ON CONFLICT (jti) DO UPDATE SET expires_at = max(expires_at, excluded.expires_at)",
            )
            .bind(&jti)
            .bind(ts(expires_at))
            .execute(&self.pool)
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
            let at = ts(now());
            // Expired entries can never matter again.
            sqlx::query("DELETE FROM revoked_jtis WHERE expires_at <= ?")
                .bind(at)
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
            let rows = sqlx::query(
                "SELECT jti, expires_at FROM revoked_jtis WHERE expires_at > ? ORDER BY jti",
            )
            .bind(at)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
            rows.iter()
                .map(|r| Ok((r.try_get("jti")?, from_ts(r.try_get("expires_at")?))))
                .collect::<Result<_, sqlx::Error>>()
                .map_err(map_err)
        })
    }

    fn revocation_events(&self) -> broadcast::Receiver<RevocationEvent> {
        self.revocations.subscribe()
    }
}

impl IdentityStore for SqliteStore {
    fn link_identity(&self, i: LinkedIdentity) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            // Re-linking the same account refreshes its tokens; an account linked to
            // another user updates nothing and is a conflict.
            let done = sqlx::query(
                "INSERT INTO identities (provider, provider_user_id, user_id, email, tokens_encrypted, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (provider, provider_user_id) DO UPDATE \
                 SET email = excluded.email, tokens_encrypted = excluded.tokens_encrypted \
                 WHERE identities.user_id = excluded.user_id",
            )
            .bind(&i.provider)
            .bind(&i.provider_user_id)
            .bind(i.user_id.0)
            .bind(&i.email)
            .bind(&i.tokens_encrypted)
            .bind(ts(i.created_at))
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
                 FROM identities WHERE user_id = ? ORDER BY provider",
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
            let done = sqlx::query("DELETE FROM identities WHERE user_id = ? AND provider = ?")
                .bind(user.0)
                .bind(provider)
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
            Ok(done.rows_affected() > 0)
        })
    }
}

impl ConnectStateStore for SqliteStore {
    fn put_connect_state(&self, s: ConnectState) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            sqlx::query("DELETE FROM connect_states WHERE expires_at <= ?")
                .bind(ts(now()))
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
            sqlx::query(
                "INSERT INTO connect_states (state_hash, user_id, provider, redirect_uri, pkce_verifier, expires_at) \
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(&s.state_hash)
            .bind(s.user_id.0)
            .bind(&s.provider)
            .bind(&s.redirect_uri)
            .bind(&s.pkce_verifier)
            .bind(ts(s.expires_at))
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
                "DELETE FROM connect_states WHERE state_hash = ? \
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

impl super::AttemptStore for SqliteStore {
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
                "INSERT INTO login_attempts (key, tat) VALUES (?1, ?2 + ?3) \
                 ON CONFLICT (key) DO UPDATE SET tat = max(login_attempts.tat, ?2) + ?3 \
                 WHERE max(login_attempts.tat, ?2) + ?3 - ?2 <= ?4 \
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
            let (tat,): (i64,) = sqlx::query_as("SELECT tat FROM login_attempts WHERE key = ?1")
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

impl super::SignInStore for SqliteStore {
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
                 VALUES (?, ?, ?, ?, ?) ON CONFLICT (kind, value_hash) DO UPDATE SET \
                 payload = excluded.payload, expires_at = excluded.expires_at, used_at = excluded.used_at",
            )
            .bind(kind.as_str())
            .bind(hash)
            .bind(&r.payload)
            .bind(ts(r.expires_at))
            .bind(r.used_at.map(ts))
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
                "SELECT payload, expires_at, used_at FROM signin_state WHERE kind = ? AND value_hash = ?",
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
                "UPDATE signin_state SET used_at = ? WHERE kind = ? AND value_hash = ? AND used_at IS NULL",
            )
            .bind(ts(at))
            .bind(kind.as_str())
            .bind(hash)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
            Ok(done.rows_affected() == 1)
        })
    }
}

impl Store for SqliteStore {
    fn purge_expired(&self, before: DateTime<Utc>) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let mut deleted = 0;
            // Attempt counters whose arrival time has passed carry no budget any more.
            let done = sqlx::query("DELETE FROM login_attempts WHERE tat < ?")
                .bind(chrono::Utc::now().timestamp_micros())
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
            deleted += done.rows_affected();
            for sql in [
                "DELETE FROM tokens WHERE expires_at < ?",
                "DELETE FROM revoked_jtis WHERE expires_at < ?",
                "DELETE FROM signin_state WHERE expires_at < ?",
            ] {
                let done = sqlx::query(sql)
                    .bind(ts(before))
                    .execute(&self.pool)
                    .await
                    .map_err(map_err)?;
                deleted += done.rows_affected();
            }
            let done = sqlx::query("DELETE FROM connect_states WHERE expires_at <= ?")
                .bind(ts(now()))
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

#[cfg(test)]
mod tests {
    use super::file_path;

    #[test]
    fn file_path_from_url() {
        assert_eq!(
            file_path("sqlite://data/tollgate.db"),
            Some("data/tollgate.db")
        );
        assert_eq!(
            file_path("sqlite:///var/lib/t.db?mode=rwc"),
            Some("/var/lib/t.db")
        );
        assert_eq!(file_path("sqlite:t.db"), Some("t.db"));
        assert_eq!(file_path("sqlite::memory:"), None);
        assert_eq!(file_path("postgres://x"), None);
    }
}
