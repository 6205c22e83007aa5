//! Persistent state behind narrow async traits split by capability (users, clients,
//! tokens, identities), each implemented for SQLite (the embedded default) and
//! PostgreSQL (several replicas). Migrations live in `migrations/{sqlite,postgres}/`,
//! are embedded in the binary, and are applied at start.
//!
//! Secrets never reach this layer in the clear: refresh tokens and opaque access tokens
//! arrive as SHA-256 hashes, passwords as argon2id/bcrypt hashes, provider tokens
//! encrypted.
//!
//! CONTRACT (shared by the token service, bearer validation and provider connect):
//! the types and trait signatures below. Implementations live in `sqlite.rs` and
//! `postgres.rs`; the shared test suite in `tests/store.rs` runs against both.

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// What a violated unique key protects: callers pick their answer by it (the users API's
/// field error for a taken username, 409 for the rest), never by message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unique {
    Email,
    Username,
    Identity,
    Client,
    ConnectState,
    Token,
    Record,
}

impl std::fmt::Display for Unique {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unique::Email => "email",
            Unique::Username => "username",
            Unique::Identity => "identity",
            Unique::Client => "client",
            Unique::ConnectState => "connect state",
            Unique::Token => "token",
            Unique::Record => "record",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique key (email, username, client id, provider link) is taken: 409/422, never 500.
    #[error("{0} already exists")]
    Conflict(Unique),
    #[error("not found")]
    NotFound,
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store error: {0}")]
    Other(String),
}

/// Numeric user id, as the legacy users API exposes it (`"id": 157`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(transparent)]
pub struct UserId(pub i64);

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub username: Option<String>,
    pub email: String,
    /// argon2id PHC string, or an imported bcrypt hash until the next login rehashes it.
    pub password_hash: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: Option<String>,
    pub email: String,
    pub password_hash: String,
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub id: String,
    /// `None` for a public client.
    pub secret_hash: Option<String>,
    pub grants: Vec<String>,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    /// Where `GET /oauth/authorize` may send this client's codes: exact strings.
    pub redirect_uris: Vec<String>,
    /// Where `GET /oauth/logout` may send the browser afterwards: exact strings.
    pub post_logout_redirect_uris: Vec<String>,
    /// The operator's own app: signs in without a consent screen.
    pub first_party: bool,
    /// Registered through `/oauth/register` (RFC 7591): the SHA-256 of its registration
    /// access token.
    pub registration_token_hash: Option<String>,
    /// RFC 8705 §2: authenticates with a TLS client certificate instead of a secret.
    pub tls_auth: Option<TlsClientAuth>,
}

/// How a client proves itself with a certificate (RFC 8705 §2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsClientAuth {
    /// `tls_client_auth`: a certificate verified against `tls.client_ca` whose subject
    /// DN (RFC 4514 form) is this, exactly.
    SubjectDn(String),
    /// `self_signed_tls_client_auth`: the certificate whose SHA-256 thumbprint
    /// (base64url) is this.
    SelfSigned(String),
}

impl TlsClientAuth {
    pub fn method(&self) -> &'static str {
        match self {
            TlsClientAuth::SubjectDn(_) => "tls_client_auth",
            TlsClientAuth::SelfSigned(_) => "self_signed_tls_client_auth",
        }
    }

    pub fn value(&self) -> &str {
        match self {
            TlsClientAuth::SubjectDn(v) | TlsClientAuth::SelfSigned(v) => v,
        }
    }

    pub fn from_columns(method: Option<&str>, value: Option<String>) -> Option<TlsClientAuth> {
        match (method, value) {
            (Some("tls_client_auth"), Some(v)) => Some(TlsClientAuth::SubjectDn(v)),
            (Some("self_signed_tls_client_auth"), Some(v)) => Some(TlsClientAuth::SelfSigned(v)),
            _ => None,
        }
    }

    /// Whether `cert`, presented on this connection, is the client's.
    pub fn accepts(&self, cert: &crate::http::ClientCert) -> bool {
        match self {
            TlsClientAuth::SubjectDn(dn) => {
                crate::crypto::constant_time_eq(cert.subject.as_bytes(), dn.as_bytes())
            }
            TlsClientAuth::SelfSigned(t) => crate::crypto::constant_time_eq(
                crate::authn::dpop::cert_thumbprint_of(&cert.sha256).as_bytes(),
                t.as_bytes(),
            ),
        }
    }
}

impl Client {
    /// Authenticates itself (a secret or a certificate); a public client only names itself.
    pub fn is_confidential(&self) -> bool {
        self.secret_hash.is_some() || self.tls_auth.is_some()
    }
}

impl Default for Client {
    fn default() -> Self {
        Client {
            id: String::new(),
            secret_hash: None,
            grants: Vec::new(),
            scopes: Vec::new(),
            created_at: Utc::now(),
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            first_party: true,
            registration_token_hash: None,
            tls_auth: None,
        }
    }
}

/// A refresh token or opaque access token row; the token itself is only ever a hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// SHA-256 of the token, lower-case hex.
    pub token_hash: String,
    /// Refresh tokens: the rotation family (reuse of a rotated token revokes it whole).
    /// Opaque access tokens: the `jti`.
    pub family_id: String,
    pub user_id: Option<UserId>,
    pub client_id: Option<String>,
    pub scope: String,
    pub alias: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// Set when a refresh token was exchanged for a new one.
    pub rotated_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// RFC 8707 resources the token was issued for, space-separated; empty: the
    /// gateway's own audience.
    pub audience: String,
    /// The `cnf` claim (JSON) of a sender-constrained token; `None`: unbound.
    pub cnf: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Refresh,
    OpaqueAccess,
}

/// A link between a user and an external provider account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkedIdentity {
    pub user_id: UserId,
    pub provider: String,
    pub provider_user_id: String,
    pub email: Option<String>,
    /// Provider tokens, encrypted at rest (AES-256-GCM, nonce prepended).
    pub tokens_encrypted: Vec<u8>,
    pub created_at: DateTime<Utc>,
}

pub trait UserStore: Send + Sync {
    fn create_user(&self, u: NewUser) -> StoreFuture<'_, User>;
    fn user_by_id(&self, id: UserId) -> StoreFuture<'_, Option<User>>;
    /// Case-insensitive on email.
    fn user_by_email(&self, email: &str) -> StoreFuture<'_, Option<User>>;
    fn user_by_username(&self, username: &str) -> StoreFuture<'_, Option<User>>;
    fn set_password_hash(&self, id: UserId, hash: &str) -> StoreFuture<'_, ()>;
}

pub trait ClientStore: Send + Sync {
    fn create_client(&self, c: Client) -> StoreFuture<'_, Client>;
    fn client_by_id(&self, id: &str) -> StoreFuture<'_, Option<Client>>;
    /// Every grant some client has, each once, sorted (what discovery advertises).
    fn client_grants(&self) -> StoreFuture<'_, Vec<String>>;
}

pub trait TokenStore: Send + Sync {
    fn insert_token(&self, kind: TokenKind, t: TokenRecord) -> StoreFuture<'_, ()>;
    fn token_by_hash(&self, kind: TokenKind, hash: &str) -> StoreFuture<'_, Option<TokenRecord>>;
    /// Marks a refresh token rotated, atomically: returns false when it was already
    /// rotated or revoked (a concurrent refresh won).
    fn mark_rotated(&self, hash: &str, at: DateTime<Utc>) -> StoreFuture<'_, bool>;
    /// One refresh rotation, all or nothing: marks refresh token `parent` rotated at `at`
    /// (an earlier rotation time is kept) and inserts `child`, in one transaction. Only
    /// while `parent` is live: not revoked, not expired, and not rotated, or rotated no
    /// earlier than `rotated_since` (the reuse grace window). Returns false, and writes
    /// nothing, when it is not: a concurrent refresh won, or the family was revoked. A
    /// failure leaves `parent` exactly as it was, so the client can retry with it.
    fn rotate_refresh(
        &self,
        parent: &str,
        at: DateTime<Utc>,
        rotated_since: Option<DateTime<Utc>>,
        child: TokenRecord,
    ) -> StoreFuture<'_, bool>;
    /// Revokes every refresh token of a family, including a child that a rotation
    /// running at the same time commits: after it returns, no token of the family is live
    /// and none can be added (`rotate_refresh` needs a live parent).
    fn revoke_family(&self, family_id: &str, at: DateTime<Utc>) -> StoreFuture<'_, u64>;
    fn revoke_token(&self, kind: TokenKind, hash: &str, at: DateTime<Utc>)
        -> StoreFuture<'_, bool>;
    /// Records a revoked JWT `jti` until its expiry.
    fn revoke_jti(&self, jti: &str, expires_at: DateTime<Utc>) -> StoreFuture<'_, ()>;
    /// Revoked `jti`s that have not yet expired (loaded at start into memory).
    fn revoked_jtis(&self) -> StoreFuture<'_, Vec<(String, DateTime<Utc>)>>;
    /// Revocations as they happen: those made through this store and, with PostgreSQL,
    /// those made by every other replica (LISTEN/NOTIFY). Bearer validation subscribes
    /// so a revoked token stops working everywhere within a second. A receiver that
    /// lags loses events (`RecvError::Lagged`) and should reload `revoked_jtis`.
    /// The default is a closed channel, for stores that keep nothing in memory.
    fn revocation_events(&self) -> tokio::sync::broadcast::Receiver<RevocationEvent> {
        tokio::sync::broadcast::channel(1).1
    }
}

/// One revoked token, as announced to caches: by `jti` (JWTs and opaque access tokens)
/// and/or by `token_hash` (SHA-256 hex of a refresh or opaque access token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RevocationEvent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_hash: Option<String>,
}

impl RevocationEvent {
    /// "You may have missed events": sent after the cross-replica listener reconnects.
    /// A subscriber reloads `revoked_jtis` (and drops any cached opaque-token results).
    pub fn resync() -> Self {
        RevocationEvent {
            jti: None,
            token_hash: None,
        }
    }

    pub fn is_resync(&self) -> bool {
        self.jti.is_none() && self.token_hash.is_none()
    }

    /// The event for a revoked token row; an opaque access token's family id is its jti.
    pub fn for_token(kind: TokenKind, token_hash: String, family_id: String) -> Self {
        RevocationEvent {
            jti: (kind == TokenKind::OpaqueAccess).then_some(family_id),
            token_hash: Some(token_hash),
        }
    }
}

pub trait IdentityStore: Send + Sync {
    /// Conflict when the provider account is linked to another user.
    fn link_identity(&self, i: LinkedIdentity) -> StoreFuture<'_, ()>;
    fn identities_of(&self, user: UserId) -> StoreFuture<'_, Vec<LinkedIdentity>>;
    fn unlink_identity(&self, user: UserId, provider: &str) -> StoreFuture<'_, bool>;
}

/// Server-side state of one provider-connect dialog (single use, short expiry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectState {
    /// SHA-256 of the `state` parameter, hex.
    pub state_hash: String,
    pub user_id: UserId,
    pub provider: String,
    /// The integrator's `redirect_uri` (already allow-listed).
    pub redirect_uri: String,
    pub pkce_verifier: String,
    pub expires_at: DateTime<Utc>,
}

pub trait ConnectStateStore: Send + Sync {
    fn put_connect_state(&self, s: ConnectState) -> StoreFuture<'_, ()>;
    /// Deletes and returns the state in one step, so a replayed `state` finds nothing.
    fn take_connect_state(&self, state_hash: &str) -> StoreFuture<'_, Option<ConnectState>>;
}

/// Everything the gateway needs from its store.
/// Login-attempt counters shared through the store, so that a throttle holds across
/// replicas (GCRA: one "theoretical arrival time" per key, updated atomically).
pub trait AttemptStore: Send + Sync {
    /// Counts one attempt for `key` at `now_us` (µs since the epoch), each attempt costing
    /// `interval_us`, at most `tolerance_us` ahead of now. `Ok(None)`: allowed and
    /// counted; `Ok(Some(wait))`: refused (not counted), retry after `wait`.
    fn count_attempt(
        &self,
        key: &str,
        now_us: i64,
        interval_us: i64,
        tolerance_us: i64,
    ) -> StoreFuture<'_, Option<std::time::Duration>>;
}

/// The wait before the next attempt is allowed, from the stored arrival time.
pub(crate) fn attempt_wait(
    tat: i64,
    now_us: i64,
    interval_us: i64,
    tolerance_us: i64,
) -> std::time::Duration {
    let wait = tat.saturating_add(interval_us) - tolerance_us - now_us;
    std::time::Duration::from_micros(wait.max(1) as u64)
}

/// What sign-in keeps between requests (`signin/`): authorization codes and browser
/// sessions, each by the SHA-256 of its value, with the module's JSON payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInKind {
    Code,
    Session,
}

impl SignInKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SignInKind::Code => "code",
            SignInKind::Session => "session",
        }
    }
}

/// A stored code or session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInRecord {
    pub payload: String,
    pub expires_at: DateTime<Utc>,
    /// A redeemed code, an ended session.
    pub used_at: Option<DateTime<Utc>>,
}

pub trait SignInStore: Send + Sync {
    /// Stores a record, replacing one with the same hash (a session's new payload).
    fn put_signin(&self, kind: SignInKind, hash: &str, record: SignInRecord)
        -> StoreFuture<'_, ()>;
    fn signin_by_hash(&self, kind: SignInKind, hash: &str)
        -> StoreFuture<'_, Option<SignInRecord>>;
    /// Marks the record used at `at` if it was not: `true` for the one caller that did
    /// (single use without locks, as for refresh rotation).
    fn use_signin(&self, kind: SignInKind, hash: &str, at: DateTime<Utc>) -> StoreFuture<'_, bool>;
}

pub trait Store:
    UserStore
    + ClientStore
    + TokenStore
    + IdentityStore
    + ConnectStateStore
    + AttemptStore
    + SignInStore
{
    fn ping(&self) -> StoreFuture<'_, ()>;
    /// Deletes what can no longer matter: tokens and revoked `jti`s that expired before
    /// `before`, and expired connect states. Returns the number of rows deleted.
    /// `connect` runs it hourly with a one-day margin.
    fn purge_expired(&self, before: DateTime<Utc>) -> StoreFuture<'_, u64> {
        let _ = before;
        Box::pin(async { Ok(0) })
    }
}

pub mod postgres;
mod rows;
pub mod sqlite;
mod support;
mod traced;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Opens the store named by `url` (`sqlite:…` or `postgres://…`), creating a SQLite file
/// and its directory on first start, and applies the embedded migrations.
pub async fn connect(url: &str) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    let store: std::sync::Arc<dyn Store> = if url.starts_with("sqlite:") {
        std::sync::Arc::new(SqliteStore::connect(url).await?)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        std::sync::Arc::new(PostgresStore::connect(url).await?)
    } else {
        return Err(StoreError::Other(format!(
            "store.url must start with sqlite: or postgres://, got `{}`",
            url.split(':').next().unwrap_or_default()
        )));
    };
    let store: std::sync::Arc<dyn Store> = if crate::telemetry::trace::on() {
        let system = if url.starts_with("sqlite:") {
            "sqlite"
        } else {
            "postgresql"
        };
        std::sync::Arc::new(traced::TracedStore::new(store, system))
    } else {
        store
    };
    spawn_purger(std::sync::Arc::downgrade(&store));
    Ok(store)
}

/// Purges expired rows hourly (first after a minute, so short CLI runs never do), for as
/// long as the store lives. Rows are kept a day past expiry so that a late refresh
/// attempt still finds its token and gets a precise error.
fn spawn_purger(store: std::sync::Weak<dyn Store>) {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(3600);
    tokio::spawn(async move {
        let first = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut ticks = tokio::time::interval_at(first, EVERY);
        loop {
            ticks.tick().await;
            let Some(store) = store.upgrade() else { return };
            let before = Utc::now() - chrono::Duration::days(1);
            match store.purge_expired(before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "purged expired tokens and connect states"),
                Err(e) => tracing::warn!(error = %e, "purging expired rows failed"),
            }
        }
    });
}

/// `/readyz` is ready only while the store answers, within two seconds.
pub struct StoreReadiness(pub std::sync::Arc<dyn Store>);

impl crate::http::ReadinessCheck for StoreReadiness {
    fn check(&self) -> crate::http::BoxFuture<Result<(), String>> {
        let store = self.0.clone();
        Box::pin(async move {
            match tokio::time::timeout(std::time::Duration::from_secs(2), store.ping()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(format!("store: {e}")),
                Err(_) => Err("store: no answer within 2s".into()),
            }
        })
    }
}
