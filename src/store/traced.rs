//! A store that puts each call in a span of its own, wrapped around the real one by
//! [`super::connect`] when tracing is on (and only then, so the untraced path has no
//! extra layer). Spans name the operation, never its arguments: emails, hashes and ids
//! stay out of traces.
//!
//! `ping` is not traced: readiness probes would otherwise make a root span each.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{
    AttemptStore, Client, ClientStore, ConnectState, ConnectStateStore, IdentityStore,
    LinkedIdentity, NewUser, RevocationEvent, Store, StoreFuture, TokenKind, TokenRecord,
    TokenStore, User, UserId, UserStore,
};

pub struct TracedStore {
    inner: Arc<dyn Store>,
    /// `db.system.name`: `sqlite` or `postgresql`.
    system: &'static str,
}

impl TracedStore {
    pub fn new(inner: Arc<dyn Store>, system: &'static str) -> Self {
        TracedStore { inner, system }
    }

    fn traced<'a, T: 'a>(&self, op: &'static str, call: StoreFuture<'a, T>) -> StoreFuture<'a, T> {
        let span = crate::otel_span!(
            op,
            opentelemetry::trace::SpanKind::Client,
            "db.system.name" => self.system,
            "db.operation.name" => op,
        );
        let recorded = span.clone();
        Box::pin(span.instrument(async move {
            let r = call.await;
            if r.is_err() {
                recorded.set_error();
            }
            r
        }))
    }
}

impl UserStore for TracedStore {
    fn create_user(&self, u: NewUser) -> StoreFuture<'_, User> {
        self.traced("create_user", self.inner.create_user(u))
    }
    fn user_by_id(&self, id: UserId) -> StoreFuture<'_, Option<User>> {
        self.traced("user_by_id", self.inner.user_by_id(id))
    }
    fn user_by_email(&self, email: &str) -> StoreFuture<'_, Option<User>> {
        let call = self.inner.user_by_email(email);
        self.traced("user_by_email", call)
    }
    fn user_by_username(&self, username: &str) -> StoreFuture<'_, Option<User>> {
        let call = self.inner.user_by_username(username);
        self.traced("user_by_username", call)
    }
    fn set_password_hash(&self, id: UserId, hash: &str) -> StoreFuture<'_, ()> {
        let call = self.inner.set_password_hash(id, hash);
        self.traced("set_password_hash", call)
    }
}

impl ClientStore for TracedStore {
    fn create_client(&self, c: Client) -> StoreFuture<'_, Client> {
        self.traced("create_client", self.inner.create_client(c))
    }
    fn client_by_id(&self, id: &str) -> StoreFuture<'_, Option<Client>> {
        let call = self.inner.client_by_id(id);
        self.traced("client_by_id", call)
    }
    fn client_grants(&self) -> StoreFuture<'_, Vec<String>> {
        self.traced("client_grants", self.inner.client_grants())
    }
}

impl TokenStore for TracedStore {
    fn insert_token(&self, kind: TokenKind, t: TokenRecord) -> StoreFuture<'_, ()> {
        self.traced("insert_token", self.inner.insert_token(kind, t))
    }
    fn token_by_hash(&self, kind: TokenKind, hash: &str) -> StoreFuture<'_, Option<TokenRecord>> {
        let call = self.inner.token_by_hash(kind, hash);
        self.traced("token_by_hash", call)
    }
    fn mark_rotated(&self, hash: &str, at: DateTime<Utc>) -> StoreFuture<'_, bool> {
        let call = self.inner.mark_rotated(hash, at);
        self.traced("mark_rotated", call)
    }
    fn rotate_refresh(
        &self,
        parent: &str,
        at: DateTime<Utc>,
        rotated_since: Option<DateTime<Utc>>,
        child: TokenRecord,
    ) -> StoreFuture<'_, bool> {
        let call = self.inner.rotate_refresh(parent, at, rotated_since, child);
        self.traced("rotate_refresh", call)
    }
    fn revoke_family(&self, family_id: &str, at: DateTime<Utc>) -> StoreFuture<'_, u64> {
        let call = self.inner.revoke_family(family_id, at);
        self.traced("revoke_family", call)
    }
    fn revoke_token(
        &self,
        kind: TokenKind,
        hash: &str,
        at: DateTime<Utc>,
    ) -> StoreFuture<'_, bool> {
        let call = self.inner.revoke_token(kind, hash, at);
        self.traced("revoke_token", call)
    }
    fn revoke_jti(&self, jti: &str, expires_at: DateTime<Utc>) -> StoreFuture<'_, ()> {
        let call = self.inner.revoke_jti(jti, expires_at);
        self.traced("revoke_jti", call)
    }
    fn revoked_jtis(&self) -> StoreFuture<'_, Vec<(String, DateTime<Utc>)>> {
        self.traced("revoked_jtis", self.inner.revoked_jtis())
    }
    fn revocation_events(&self) -> tokio::sync::broadcast::Receiver<RevocationEvent> {
        self.inner.revocation_events()
    }
}

impl IdentityStore for TracedStore {
    fn link_identity(&self, i: LinkedIdentity) -> StoreFuture<'_, ()> {
        self.traced("link_identity", self.inner.link_identity(i))
    }
    fn identities_of(&self, user: UserId) -> StoreFuture<'_, Vec<LinkedIdentity>> {
        self.traced("identities_of", self.inner.identities_of(user))
    }
    fn unlink_identity(&self, user: UserId, provider: &str) -> StoreFuture<'_, bool> {
        let call = self.inner.unlink_identity(user, provider);
        self.traced("unlink_identity", call)
    }
}

impl ConnectStateStore for TracedStore {
    fn put_connect_state(&self, s: ConnectState) -> StoreFuture<'_, ()> {
        self.traced("put_connect_state", self.inner.put_connect_state(s))
    }
    fn take_connect_state(&self, state_hash: &str) -> StoreFuture<'_, Option<ConnectState>> {
        let call = self.inner.take_connect_state(state_hash);
        self.traced("take_connect_state", call)
    }
}

impl AttemptStore for TracedStore {
    fn count_attempt(
        &self,
        key: &str,
        now_us: i64,
        interval_us: i64,
        tolerance_us: i64,
    ) -> StoreFuture<'_, Option<std::time::Duration>> {
        let call = self
            .inner
            .count_attempt(key, now_us, interval_us, tolerance_us);
        self.traced("count_attempt", call)
    }
}

impl super::SignInStore for TracedStore {
    fn put_signin(
        &self,
        kind: super::SignInKind,
        hash: &str,
        r: super::SignInRecord,
    ) -> StoreFuture<'_, ()> {
        self.traced("put_signin", self.inner.put_signin(kind, hash, r))
    }
    fn signin_by_hash(
        &self,
        kind: super::SignInKind,
        hash: &str,
    ) -> StoreFuture<'_, Option<super::SignInRecord>> {
        self.traced("signin_by_hash", self.inner.signin_by_hash(kind, hash))
    }
    fn use_signin(
        &self,
        kind: super::SignInKind,
        hash: &str,
        at: DateTime<Utc>,
    ) -> StoreFuture<'_, bool> {
        self.traced("use_signin", self.inner.use_signin(kind, hash, at))
    }
}

impl Store for TracedStore {
    fn ping(&self) -> StoreFuture<'_, ()> {
        self.inner.ping()
    }
    fn purge_expired(&self, before: DateTime<Utc>) -> StoreFuture<'_, u64> {
        self.traced("purge_expired", self.inner.purge_expired(before))
    }
}
