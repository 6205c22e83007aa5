//! The store contract, run against every backend: the same test functions on SQLite (a
//! temp directory) and on PostgreSQL (a uniquely named database on
//! `TOLLGATE_TEST_POSTGRES_URL`, dropped afterwards; skipped with a message when unset).

mod common;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, Utc};
use tokio::sync::broadcast;
use tollgate::store::{
    self, Client, ConnectState, LinkedIdentity, NewUser, RevocationEvent, Store, StoreError,
    TokenKind, TokenRecord, Unique, UserId,
};

/// What a test function gets: the store, and a way to open a second store instance on
/// the same database (another replica).
struct Fixture {
    store: Arc<dyn Store>,
    url: String,
}

impl Fixture {
    async fn another_instance(&self) -> Arc<dyn Store> {
        store::connect(&self.url)
            .await
            .expect("second instance opens")
    }
}

async fn run_sqlite<F, Fut>(test: F)
where
    F: FnOnce(Fixture) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/nested/dir/tollgate.db", dir.path().display());
    let store = store::connect(&url).await.expect("sqlite store opens");
    test(Fixture { store, url }).await;
}

async fn run_postgres<F, Fut>(test: F)
where
    F: FnOnce(Fixture) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    common::pg::with_database("tollgate_test", |url| async move {
        let store = store::connect(&url).await.expect("postgres store opens");
        test(Fixture { store, url }).await
    })
    .await;
}

/// Declares each test once per backend.
macro_rules! store_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::run_sqlite(super::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::run_postgres(super::$name).await;
                }
            )*
        }
    };
}

store_tests!(
    ping_answers,
    users_create_and_look_up,
    user_email_is_unique_case_insensitively,
    username_is_unique,
    set_password_hash_replaces_the_hash,
    clients_create_and_look_up,
    client_id_is_unique,
    tokens_insert_and_look_up_by_kind,
    token_hash_is_unique_per_kind,
    mark_rotated_has_exactly_one_winner,
    mark_rotated_refuses_revoked_and_unknown_tokens,
    revoke_family_revokes_every_token_of_the_family,
    revoke_token_revokes_once,
    revoked_jtis_lists_only_unexpired,
    identities_link_list_unlink,
    identity_linked_to_another_user_is_a_conflict,
    connect_state_is_single_use,
    expired_connect_state_is_not_returned,
    revoke_methods_announce_events,
    reopening_keeps_data_and_migrations_are_idempotent,
    purge_expired_deletes_only_what_cannot_matter,
    concurrent_writers_all_succeed,
);

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn new_user(email: &str, username: Option<&str>) -> NewUser {
    NewUser {
        username: username.map(str::to_owned),
        email: email.to_owned(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
            .to_owned(),
        role: "default".to_owned(),
    }
}

fn token(hash: &str, family: &str, user: Option<UserId>) -> TokenRecord {
    TokenRecord {
        token_hash: hash.to_owned(),
        family_id: family.to_owned(),
        user_id: user,
        client_id: Some("web".to_owned()),
        scope: "read write".to_owned(),
        alias: Some("alias-1".to_owned()),
        expires_at: now() + chrono::Duration::hours(1),
        created_at: now(),
        rotated_at: None,
        revoked_at: None,
        audience: String::new(),
        cnf: None,
    }
}

fn hash_of(s: &str) -> String {
    tollgate::crypto::sha256_hex(s)
}

async fn ping_answers(f: Fixture) {
    f.store.ping().await.unwrap();
}

async fn users_create_and_look_up(f: Fixture) {
    let s = &f.store;
    let u = s
        .create_user(new_user("Ada@Example.com", Some("ada")))
        .await
        .unwrap();
    assert!(u.id.0 > 0);
    assert_eq!(u.email, "Ada@Example.com", "the email is kept as given");
    assert_eq!(u.username.as_deref(), Some("ada"));
    assert_eq!(u.role, "default");
    assert_eq!(u.created_at, u.updated_at);
    assert_eq!(s.user_by_id(u.id).await.unwrap(), Some(u.clone()));
    assert_eq!(
        s.user_by_email("ada@example.com").await.unwrap(),
        Some(u.clone())
    );
    assert_eq!(
        s.user_by_email("ADA@EXAMPLE.COM").await.unwrap(),
        Some(u.clone())
    );
    assert_eq!(s.user_by_username("ada").await.unwrap(), Some(u.clone()));
    assert_eq!(
        s.user_by_username("Ada").await.unwrap(),
        None,
        "usernames match exactly"
    );
    assert_eq!(s.user_by_id(UserId(u.id.0 + 1000)).await.unwrap(), None);
    assert_eq!(s.user_by_email("nobody@example.com").await.unwrap(), None);
    // Users without a username coexist.
    let b = s
        .create_user(new_user("b@example.com", None))
        .await
        .unwrap();
    let c = s
        .create_user(new_user("c@example.com", None))
        .await
        .unwrap();
    assert!(b.id != c.id && b.id != u.id);
    assert_eq!(b.username, None);
}

async fn user_email_is_unique_case_insensitively(f: Fixture) {
    f.store
        .create_user(new_user("Grace@Example.com", None))
        .await
        .unwrap();
    let err = f
        .store
        .create_user(new_user("grace@EXAMPLE.com", Some("g2")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(Unique::Email)),
        "{err:?}"
    );
    assert_eq!(
        f.store.user_by_username("g2").await.unwrap(),
        None,
        "nothing half-created"
    );
}

async fn username_is_unique(f: Fixture) {
    f.store
        .create_user(new_user("a@example.com", Some("same")))
        .await
        .unwrap();
    let err = f
        .store
        .create_user(new_user("b@example.com", Some("same")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(Unique::Username)),
        "{err:?}"
    );
}

async fn set_password_hash_replaces_the_hash(f: Fixture) {
    let u = f
        .store
        .create_user(new_user("p@example.com", None))
        .await
        .unwrap();
    f.store
        .set_password_hash(
            u.id,
            "$2b$04$newnewnewnewnewnewnewnewnewnewnewnewnewnewnewnewnewnewne",
        )
        .await
        .unwrap();
    let after = f.store.user_by_id(u.id).await.unwrap().unwrap();
    assert!(after.password_hash.starts_with("$2b$04$newnew"));
    assert!(after.updated_at >= u.updated_at);
    assert_eq!(after.created_at, u.created_at);
    let err = f
        .store
        .set_password_hash(UserId(u.id.0 + 999), "x")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
}

async fn clients_create_and_look_up(f: Fixture) {
    let confidential = Client {
        id: "backend".into(),
        secret_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        grants: vec!["client_credentials".into(), "password".into()],
        scopes: vec!["read".into(), "write".into()],
        created_at: Utc::now(),
        ..Default::default()
    };
    let stored = f.store.create_client(confidential.clone()).await.unwrap();
    assert_eq!(stored.created_at, confidential.created_at.trunc_subsecs(6));
    assert_eq!(f.store.client_by_id("backend").await.unwrap(), Some(stored));
    let public = Client {
        id: "spa".into(),
        secret_hash: None,
        grants: vec!["password".into()],
        scopes: vec![],
        created_at: now(),
        ..Default::default()
    };
    f.store.create_client(public.clone()).await.unwrap();
    assert_eq!(f.store.client_by_id("spa").await.unwrap(), Some(public));
    assert_eq!(f.store.client_by_id("nope").await.unwrap(), None);
}

async fn client_id_is_unique(f: Fixture) {
    let c = Client {
        id: "dup".into(),
        secret_hash: None,
        grants: vec![],
        scopes: vec![],
        created_at: now(),
        ..Default::default()
    };
    f.store.create_client(c.clone()).await.unwrap();
    let err = f.store.create_client(c).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(Unique::Client)),
        "{err:?}"
    );
}

async fn tokens_insert_and_look_up_by_kind(f: Fixture) {
    let u = f
        .store
        .create_user(new_user("t@example.com", None))
        .await
        .unwrap();
    let refresh = token(&hash_of("r1"), "fam-1", Some(u.id));
    f.store
        .insert_token(TokenKind::Refresh, refresh.clone())
        .await
        .unwrap();
    let opaque = TokenRecord {
        user_id: None,
        alias: None,
        client_id: None,
        ..token(&hash_of("o1"), "jti-1", None)
    };
    f.store
        .insert_token(TokenKind::OpaqueAccess, opaque.clone())
        .await
        .unwrap();
    assert_eq!(
        f.store
            .token_by_hash(TokenKind::Refresh, &refresh.token_hash)
            .await
            .unwrap(),
        Some(refresh.clone())
    );
    assert_eq!(
        f.store
            .token_by_hash(TokenKind::OpaqueAccess, &opaque.token_hash)
            .await
            .unwrap(),
        Some(opaque.clone())
    );
    assert_eq!(
        f.store
            .token_by_hash(TokenKind::OpaqueAccess, &refresh.token_hash)
            .await
            .unwrap(),
        None,
        "kinds are separate"
    );
    assert_eq!(
        f.store
            .token_by_hash(TokenKind::Refresh, &hash_of("unknown"))
            .await
            .unwrap(),
        None
    );
}

async fn token_hash_is_unique_per_kind(f: Fixture) {
    let t = token(&hash_of("dup"), "fam", None);
    f.store
        .insert_token(TokenKind::Refresh, t.clone())
        .await
        .unwrap();
    let err = f
        .store
        .insert_token(TokenKind::Refresh, t.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(Unique::Token)),
        "{err:?}"
    );
    f.store
        .insert_token(TokenKind::OpaqueAccess, t)
        .await
        .unwrap();
}

async fn mark_rotated_has_exactly_one_winner(f: Fixture) {
    let t = token(&hash_of("race"), "fam-race", None);
    f.store
        .insert_token(TokenKind::Refresh, t.clone())
        .await
        .unwrap();
    let at = now();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = f.store.clone();
            let hash = t.token_hash.clone();
            tokio::spawn(async move { store.mark_rotated(&hash, at).await.unwrap() })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        if task.await.unwrap() {
            winners += 1;
        }
    }
    assert_eq!(
        winners, 1,
        "exactly one concurrent refresh may rotate a token"
    );
    let after = f
        .store
        .token_by_hash(TokenKind::Refresh, &t.token_hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.rotated_at, Some(at));
    assert_eq!(after.revoked_at, None);
}

async fn mark_rotated_refuses_revoked_and_unknown_tokens(f: Fixture) {
    let t = token(&hash_of("rev"), "fam-rev", None);
    f.store
        .insert_token(TokenKind::Refresh, t.clone())
        .await
        .unwrap();
    assert!(f
        .store
        .revoke_token(TokenKind::Refresh, &t.token_hash, now())
        .await
        .unwrap());
    assert!(!f.store.mark_rotated(&t.token_hash, now()).await.unwrap());
    assert!(!f
        .store
        .mark_rotated(&hash_of("never-issued"), now())
        .await
        .unwrap());
    // Opaque access tokens are never rotated.
    let o = token(&hash_of("opaque"), "jti-x", None);
    f.store
        .insert_token(TokenKind::OpaqueAccess, o.clone())
        .await
        .unwrap();
    assert!(!f.store.mark_rotated(&o.token_hash, now()).await.unwrap());
}

async fn revoke_family_revokes_every_token_of_the_family(f: Fixture) {
    for (i, fam) in [(1, "fam-a"), (2, "fam-a"), (3, "fam-a"), (4, "fam-b")] {
        f.store
            .insert_token(
                TokenKind::Refresh,
                token(&hash_of(&format!("f{i}")), fam, None),
            )
            .await
            .unwrap();
    }
    f.store.mark_rotated(&hash_of("f1"), now()).await.unwrap();
    let at = now();
    assert_eq!(f.store.revoke_family("fam-a", at).await.unwrap(), 3);
    for i in 1..=3 {
        let t = f
            .store
            .token_by_hash(TokenKind::Refresh, &hash_of(&format!("f{i}")))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(t.revoked_at, Some(at), "f{i}");
    }
    let other = f
        .store
        .token_by_hash(TokenKind::Refresh, &hash_of("f4"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(other.revoked_at, None, "another family is untouched");
    assert_eq!(
        f.store.revoke_family("fam-a", now()).await.unwrap(),
        0,
        "already revoked"
    );
    assert_eq!(
        f.store
            .revoke_family("no-such-family", now())
            .await
            .unwrap(),
        0
    );
}

async fn revoke_token_revokes_once(f: Fixture) {
    let t = token(&hash_of("once"), "fam-once", None);
    f.store
        .insert_token(TokenKind::OpaqueAccess, t.clone())
        .await
        .unwrap();
    assert!(
        !f.store
            .revoke_token(TokenKind::Refresh, &t.token_hash, now())
            .await
            .unwrap(),
        "wrong kind"
    );
    let at = now();
    assert!(f
        .store
        .revoke_token(TokenKind::OpaqueAccess, &t.token_hash, at)
        .await
        .unwrap());
    assert!(!f
        .store
        .revoke_token(TokenKind::OpaqueAccess, &t.token_hash, now())
        .await
        .unwrap());
    let after = f
        .store
        .token_by_hash(TokenKind::OpaqueAccess, &t.token_hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        after.revoked_at,
        Some(at),
        "the first revocation time is kept"
    );
}

async fn revoked_jtis_lists_only_unexpired(f: Fixture) {
    let later = now() + chrono::Duration::minutes(10);
    let even_later = later + chrono::Duration::minutes(10);
    f.store.revoke_jti("live", later).await.unwrap();
    f.store.revoke_jti("live", even_later).await.unwrap();
    f.store.revoke_jti("live-2", later).await.unwrap();
    f.store
        .revoke_jti("gone", now() - chrono::Duration::seconds(1))
        .await
        .unwrap();
    let list = f.store.revoked_jtis().await.unwrap();
    assert_eq!(
        list,
        vec![
            ("live".to_string(), even_later),
            ("live-2".to_string(), later)
        ]
    );
    // Revoking again with an earlier expiry never shortens the entry.
    f.store.revoke_jti("live", later).await.unwrap();
    assert_eq!(
        f.store.revoked_jtis().await.unwrap()[0],
        ("live".to_string(), even_later)
    );
}

fn identity(user: UserId, provider: &str, account: &str, tokens: &[u8]) -> LinkedIdentity {
    LinkedIdentity {
        user_id: user,
        provider: provider.into(),
        provider_user_id: account.into(),
        email: Some(format!("{account}@{provider}.example")),
        tokens_encrypted: tokens.to_vec(),
        created_at: now(),
    }
}

async fn identities_link_list_unlink(f: Fixture) {
    let u = f
        .store
        .create_user(new_user("i@example.com", None))
        .await
        .unwrap();
    let gh = identity(u.id, "github", "octo", b"\x01\x02cipher");
    let gl = identity(u.id, "gitlab", "tanuki", b"\x03\x04");
    f.store.link_identity(gh.clone()).await.unwrap();
    f.store.link_identity(gl.clone()).await.unwrap();
    assert_eq!(
        f.store.identities_of(u.id).await.unwrap(),
        vec![gh.clone(), gl.clone()]
    );
    // Re-linking the same account refreshes its tokens.
    let refreshed = LinkedIdentity {
        tokens_encrypted: b"\x09new".to_vec(),
        ..gh.clone()
    };
    f.store.link_identity(refreshed.clone()).await.unwrap();
    assert_eq!(
        f.store.identities_of(u.id).await.unwrap(),
        vec![refreshed, gl.clone()]
    );
    assert!(f.store.unlink_identity(u.id, "github").await.unwrap());
    assert!(!f.store.unlink_identity(u.id, "github").await.unwrap());
    assert_eq!(f.store.identities_of(u.id).await.unwrap(), vec![gl]);
    assert_eq!(
        f.store.identities_of(UserId(u.id.0 + 500)).await.unwrap(),
        vec![]
    );
}

async fn identity_linked_to_another_user_is_a_conflict(f: Fixture) {
    let a = f
        .store
        .create_user(new_user("a@example.com", None))
        .await
        .unwrap();
    let b = f
        .store
        .create_user(new_user("b@example.com", None))
        .await
        .unwrap();
    f.store
        .link_identity(identity(a.id, "github", "octo", b"a"))
        .await
        .unwrap();
    let err = f
        .store
        .link_identity(identity(b.id, "github", "octo", b"b"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(Unique::Identity)),
        "{err:?}"
    );
    // A second account of the same provider for one user is a conflict too (unlink first).
    let err = f
        .store
        .link_identity(identity(a.id, "github", "other", b"c"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(Unique::Identity)),
        "{err:?}"
    );
    assert_eq!(
        f.store.identities_of(a.id).await.unwrap()[0].tokens_encrypted,
        b"a"
    );
    assert!(f.store.identities_of(b.id).await.unwrap().is_empty());
}

fn state(user: UserId, raw: &str, ttl: chrono::Duration) -> ConnectState {
    ConnectState {
        state_hash: hash_of(raw),
        user_id: user,
        provider: "github".into(),
        redirect_uri: "https://app.example.com/linked".into(),
        pkce_verifier: "verifier-verifier-verifier-verifier-verifier".into(),
        expires_at: now() + ttl,
    }
}

async fn connect_state_is_single_use(f: Fixture) {
    let u = f
        .store
        .create_user(new_user("cs@example.com", None))
        .await
        .unwrap();
    let s = state(u.id, "state-1", chrono::Duration::minutes(10));
    f.store.put_connect_state(s.clone()).await.unwrap();
    let err = f.store.put_connect_state(s.clone()).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    // Two concurrent callbacks with the same state: exactly one gets it.
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let store = f.store.clone();
            let h = s.state_hash.clone();
            tokio::spawn(async move { store.take_connect_state(&h).await.unwrap() })
        })
        .collect();
    let mut got = Vec::new();
    for t in tasks {
        if let Some(found) = t.await.unwrap() {
            got.push(found);
        }
    }
    assert_eq!(got, vec![s.clone()]);
    assert_eq!(
        f.store.take_connect_state(&s.state_hash).await.unwrap(),
        None,
        "replay finds nothing"
    );
    assert_eq!(
        f.store.take_connect_state(&hash_of("never")).await.unwrap(),
        None
    );
}

async fn expired_connect_state_is_not_returned(f: Fixture) {
    let u = f
        .store
        .create_user(new_user("ex@example.com", None))
        .await
        .unwrap();
    let s = state(u.id, "old", -chrono::Duration::seconds(1));
    f.store.put_connect_state(s.clone()).await.unwrap();
    assert_eq!(
        f.store.take_connect_state(&s.state_hash).await.unwrap(),
        None
    );
}

/// Waits (bounded) for the next event matching `want`.
async fn expect_event(
    rx: &mut broadcast::Receiver<RevocationEvent>,
    want: &RevocationEvent,
    within: Duration,
) {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Ok(ev)) if &ev == want => return,
            Ok(Ok(_)) => continue,
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Err(e)) => panic!("event channel closed: {e}"),
            Err(_) => panic!("no event {want:?} within {within:?}"),
        }
    }
}

fn ev(jti: Option<&str>, hash: Option<&str>) -> RevocationEvent {
    RevocationEvent {
        jti: jti.map(str::to_owned),
        token_hash: hash.map(str::to_owned),
    }
}

async fn revoke_methods_announce_events(f: Fixture) {
    let mut rx = f.store.revocation_events();
    f.store
        .revoke_jti("jwt-1", now() + chrono::Duration::minutes(5))
        .await
        .unwrap();
    expect_event(&mut rx, &ev(Some("jwt-1"), None), Duration::from_secs(5)).await;

    let o = token(&hash_of("opaque-ev"), "jti-opaque", None);
    f.store
        .insert_token(TokenKind::OpaqueAccess, o.clone())
        .await
        .unwrap();
    f.store
        .revoke_token(TokenKind::OpaqueAccess, &o.token_hash, now())
        .await
        .unwrap();
    expect_event(
        &mut rx,
        &ev(Some("jti-opaque"), Some(&o.token_hash)),
        Duration::from_secs(5),
    )
    .await;

    let r = token(&hash_of("refresh-ev"), "fam-ev", None);
    f.store
        .insert_token(TokenKind::Refresh, r.clone())
        .await
        .unwrap();
    f.store
        .revoke_token(TokenKind::Refresh, &r.token_hash, now())
        .await
        .unwrap();
    expect_event(
        &mut rx,
        &ev(None, Some(&r.token_hash)),
        Duration::from_secs(5),
    )
    .await;

    for i in 0..2 {
        f.store
            .insert_token(
                TokenKind::Refresh,
                token(&hash_of(&format!("fe{i}")), "fam-ev2", None),
            )
            .await
            .unwrap();
    }
    f.store.revoke_family("fam-ev2", now()).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let deadline = Duration::from_secs(5);
        loop {
            let e = tokio::time::timeout(deadline, rx.recv())
                .await
                .expect("family event")
                .unwrap();
            if e.token_hash
                .as_deref()
                .is_some_and(|h| h == hash_of("fe0") || h == hash_of("fe1"))
            {
                seen.push(e.token_hash.unwrap());
                break;
            }
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 2, "one event per revoked token of the family");
}

async fn reopening_keeps_data_and_migrations_are_idempotent(f: Fixture) {
    let u = f
        .store
        .create_user(new_user("keep@example.com", None))
        .await
        .unwrap();
    let again = f.another_instance().await;
    assert_eq!(
        again.user_by_email("KEEP@example.com").await.unwrap(),
        Some(u)
    );
}

#[tokio::test]
async fn sqlite_file_and_directory_are_created_on_first_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/c/tollgate.db");
    assert!(!path.exists());
    let s = store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    s.ping().await.unwrap();
    assert!(path.exists());
}

#[tokio::test]
async fn unknown_store_scheme_is_refused() {
    let err = store::connect("mysql://localhost/x")
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("sqlite: or postgres://"), "{err}");
}

/// Two replicas on one PostgreSQL database: a revocation made through one reaches the
/// other's subscribers within a second, through LISTEN/NOTIFY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_revocations_reach_other_replicas() {
    run_postgres(|f: Fixture| async move {
        let replica = f.another_instance().await;
        let mut rx = replica.revocation_events();
        // The listener subscribes in the background; retry until a revocation gets through.
        let started = Instant::now();
        let mut n = 0;
        loop {
            n += 1;
            let jti = format!("warm-{n}");
            f.store
                .revoke_jti(&jti, now() + chrono::Duration::minutes(5))
                .await
                .unwrap();
            match tokio::time::timeout(Duration::from_millis(500), async {
                loop {
                    if let Ok(e) = rx.recv().await {
                        if e.jti.as_deref() == Some(jti.as_str()) {
                            return;
                        }
                    }
                }
            })
            .await
            {
                Ok(()) => break,
                Err(_) if started.elapsed() < Duration::from_secs(10) => continue,
                Err(_) => panic!("replica never heard a revocation"),
            }
        }
        let t = token(&hash_of("cross"), "fam-cross", None);
        f.store
            .insert_token(TokenKind::Refresh, t.clone())
            .await
            .unwrap();
        let sent = Instant::now();
        f.store.revoke_family("fam-cross", now()).await.unwrap();
        expect_event(
            &mut rx,
            &ev(None, Some(&t.token_hash)),
            Duration::from_secs(1),
        )
        .await;
        assert!(sent.elapsed() < Duration::from_secs(1));
        f.store
            .revoke_jti("cross-jti", now() + chrono::Duration::minutes(5))
            .await
            .unwrap();
        expect_event(
            &mut rx,
            &ev(Some("cross-jti"), None),
            Duration::from_secs(1),
        )
        .await;
    })
    .await;
}

#[tokio::test]
async fn readiness_follows_the_store() {
    use tollgate::http::ReadinessCheck;
    let dir = tempfile::tempdir().unwrap();
    let sqlite = store::SqliteStore::connect(&format!("sqlite://{}/r.db", dir.path().display()))
        .await
        .unwrap();
    let pool = sqlite.pool().clone();
    let check = store::StoreReadiness(Arc::new(sqlite));
    check.check().await.expect("ready while the store answers");
    pool.close().await;
    let err = check
        .check()
        .await
        .expect_err("not ready once the store is gone");
    assert!(err.starts_with("store:"), "{err}");
}

async fn purge_expired_deletes_only_what_cannot_matter(f: Fixture) {
    let u = f
        .store
        .create_user(new_user("purge@example.com", None))
        .await
        .unwrap();
    let long_ago = now() - chrono::Duration::days(2);
    let recently = now() - chrono::Duration::hours(1);
    for (name, exp) in [
        ("old", long_ago),
        ("recent", recently),
        ("live", now() + chrono::Duration::hours(1)),
    ] {
        let t = TokenRecord {
            expires_at: exp,
            ..token(&hash_of(name), "fam-purge", Some(u.id))
        };
        f.store.insert_token(TokenKind::Refresh, t).await.unwrap();
    }
    f.store.revoke_jti("old-jti", long_ago).await.unwrap();
    f.store
        .revoke_jti("live-jti", now() + chrono::Duration::hours(1))
        .await
        .unwrap();
    // Putting a state purges stale ones, so the stale one goes in last.
    f.store
        .put_connect_state(state(u.id, "fresh", chrono::Duration::minutes(5)))
        .await
        .unwrap();
    f.store
        .put_connect_state(state(u.id, "stale", -chrono::Duration::seconds(1)))
        .await
        .unwrap();

    let deleted = f
        .store
        .purge_expired(now() - chrono::Duration::days(1))
        .await
        .unwrap();
    assert_eq!(deleted, 3, "one token, one jti, one connect state");
    assert_eq!(
        f.store
            .token_by_hash(TokenKind::Refresh, &hash_of("old"))
            .await
            .unwrap(),
        None
    );
    assert!(f
        .store
        .token_by_hash(TokenKind::Refresh, &hash_of("recent"))
        .await
        .unwrap()
        .is_some());
    assert!(f
        .store
        .token_by_hash(TokenKind::Refresh, &hash_of("live"))
        .await
        .unwrap()
        .is_some());
    assert_eq!(f.store.revoked_jtis().await.unwrap().len(), 1);
    assert!(f
        .store
        .take_connect_state(&hash_of("fresh"))
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        f.store
            .purge_expired(now() - chrono::Duration::days(1))
            .await
            .unwrap(),
        0
    );
}

/// When the listener's connection dies, subscribers are told to resync, and revocations
/// from other replicas flow again afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_listener_reconnects_and_announces_a_resync() {
    run_postgres(|f: Fixture| async move {
        let mut rx = f.store.revocation_events();
        // Terminate every LISTENing backend of this database (only ours exists yet).
        let killed: Vec<(bool,)> = {
            let store = store::PostgresStore::connect(&f.url).await.unwrap();
            let rows = sqlx::query_as(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()",
            )
            .fetch_all(store.pool())
            .await
            .unwrap();
            rows
        };
        assert!(!killed.is_empty(), "found the listener connection");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, rx.recv()).await {
                Ok(Ok(e)) if e.is_resync() => break,
                Ok(_) => continue,
                Err(_) => panic!("no resync event after the listener's connection died"),
            }
        }
        let other = f.another_instance().await;
        other.revoke_jti("after-reconnect", now() + chrono::Duration::minutes(5)).await.unwrap();
        expect_event(&mut rx, &ev(Some("after-reconnect"), None), Duration::from_secs(2)).await;
    })
    .await;
}

/// Many writers at once (a login burst issuing tokens): none fails with "database is
/// locked" or a pool timeout.
async fn concurrent_writers_all_succeed(f: Fixture) {
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let store = f.store.clone();
            tokio::spawn(async move {
                let u = store
                    .create_user(new_user(&format!("w{i}@example.com"), None))
                    .await
                    .unwrap();
                let t = token(&hash_of(&format!("w{i}")), &format!("fam-w{i}"), Some(u.id));
                store
                    .insert_token(TokenKind::Refresh, t.clone())
                    .await
                    .unwrap();
                assert!(store.mark_rotated(&t.token_hash, now()).await.unwrap());
                store
                    .revoke_jti(&format!("jti-w{i}"), now() + chrono::Duration::minutes(5))
                    .await
                    .unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(f.store.revoked_jtis().await.unwrap().len(), 40);
}
