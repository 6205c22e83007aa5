//! Users, clients and tokens written straight into a store, the way `tollgate users
//! create`, `tollgate clients create` and the token service write them.

use tollgate::crypto::{random_token, sha256_hex, PasswordHasherPool};
use tollgate::store::{Client, NewUser, Store, TokenKind, TokenRecord, User, UserId};

/// A user with an argon2id hash of `password`; `username` may be absent (email only).
pub async fn user(
    store: &dyn Store,
    username: Option<&str>,
    email: &str,
    password: &str,
    role: &str,
) -> User {
    let password_hash = PasswordHasherPool::new(1).hash(password).await.unwrap();
    store
        .create_user(NewUser {
            username: username.map(Into::into),
            email: email.into(),
            password_hash,
            role: role.into(),
        })
        .await
        .unwrap()
}

/// A client; a confidential one's secret is stored as its SHA-256 (as the CLI stores a
/// generated secret).
pub async fn client(
    store: &dyn Store,
    id: &str,
    secret: Option<&str>,
    grants: &[&str],
    scopes: &[&str],
) {
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
    store
        .create_client(Client {
            id: id.into(),
            secret_hash: secret.map(sha256_hex),
            grants: strings(grants),
            scopes: strings(scopes),
            created_at: chrono::Utc::now(),
            ..Default::default()
        })
        .await
        .unwrap();
}

/// A valid opaque access token for `user`, valid for an hour, as the token service
/// stores it (only its hash).
pub async fn opaque_access_token(store: &dyn Store, user: UserId, client: &str) -> String {
    let token = random_token();
    let now = chrono::Utc::now();
    store
        .insert_token(
            TokenKind::OpaqueAccess,
            TokenRecord {
                token_hash: sha256_hex(&token),
                family_id: random_token(),
                user_id: Some(user),
                client_id: Some(client.into()),
                scope: String::new(),
                alias: None,
                expires_at: now + chrono::Duration::hours(1),
                created_at: now,
                rotated_at: None,
                revoked_at: None,
                audience: String::new(),
                cnf: None,
            },
        )
        .await
        .unwrap();
    token
}
