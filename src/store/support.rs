//! Pieces both backends share: embedded migrations, error mapping (a unique-key
//! violation is a `Conflict`, never a generic error), list and email encoding, the
//! timestamp precision, and the in-process revocation broadcast.

use std::borrow::Cow;

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::error::ErrorKind;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::SqlStr;
use tokio::sync::broadcast;

use super::{RevocationEvent, StoreError, TokenKind, Unique};

/// One embedded migration: version, description, SQL.
pub(crate) type EmbeddedMigration = (i64, &'static str, &'static str);

pub(crate) const SQLITE_MIGRATIONS: &[EmbeddedMigration] = &[
    (
        1,
        "initial",
        include_str!("../../migrations/sqlite/0001_initial.sql"),
    ),
    (
        2,
        "login_attempts",
        include_str!("../../migrations/sqlite/0002_login_attempts.sql"),
    ),
    (
        3,
        "signin",
        include_str!("../../migrations/sqlite/0003_signin.sql"),
    ),
    (
        4,
        "bound_tokens",
        include_str!("../../migrations/sqlite/0004_bound_tokens.sql"),
    ),
    (
        5,
        "tls_client_auth",
        include_str!("../../migrations/sqlite/0005_tls_client_auth.sql"),
    ),
];

pub(crate) const POSTGRES_MIGRATIONS: &[EmbeddedMigration] = &[
    (
        1,
        "initial",
        include_str!("../../migrations/postgres/0001_initial.sql"),
    ),
    (
        2,
        "login_attempts",
        include_str!("../../migrations/postgres/0002_login_attempts.sql"),
    ),
    (
        3,
        "signin",
        include_str!("../../migrations/postgres/0003_signin.sql"),
    ),
    (
        4,
        "bound_tokens",
        include_str!("../../migrations/postgres/0004_bound_tokens.sql"),
    ),
    (
        5,
        "tls_client_auth",
        include_str!("../../migrations/postgres/0005_tls_client_auth.sql"),
    ),
];

/// A migrator over migrations compiled into the binary, so a fresh install needs no
/// files beside it. Applied migrations are checksummed: editing one is refused at start.
pub(crate) fn migrator(migrations: &'static [EmbeddedMigration]) -> Migrator {
    Migrator::with_migrations(
        migrations
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*description),
                    MigrationType::Simple,
                    SqlStr::from_static(sql),
                    false,
                )
            })
            .collect(),
    )
}

/// Maps a database error; never includes bound values (which may be hashes or emails).
pub(crate) fn map_err(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Database(db) if db.kind() == ErrorKind::UniqueViolation => {
            let name = db
                .constraint()
                .map(str::to_owned)
                .unwrap_or_else(|| db.message().to_owned());
            StoreError::Conflict(conflict_subject(&name))
        }
        sqlx::Error::Database(db) if is_transient(&*db) => StoreError::Unavailable(db.to_string()),
        sqlx::Error::RowNotFound => StoreError::NotFound,
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => StoreError::Unavailable(e.to_string()),
        other => StoreError::Other(other.to_string()),
    }
}

/// A database error that says the store cannot serve now, not that the request is
/// wrong: SQLite busy or locked past its timeout, out of space or failing I/O;
/// PostgreSQL connection failures, lack of resources, shutdown, or a serialization
/// failure or deadlock. These are answered 503 so clients retry, never 500.
fn is_transient(db: &dyn sqlx::error::DatabaseError) -> bool {
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        let primary = db
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .map(|c| c & 0xff);
        // SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN
        return matches!(primary, Some(5 | 6 | 10 | 13 | 14));
    }
    if let Some(e) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        let code = e.code();
        return code.starts_with("08")
            || code.starts_with("53")
            || matches!(code, "57P01" | "57P02" | "57P03" | "40001" | "40P01");
    }
    false
}

pub(crate) fn migrate_err(e: sqlx::migrate::MigrateError) -> StoreError {
    StoreError::Other(format!("migrations: {e}"))
}

/// What a unique constraint protects, from its name (PostgreSQL) or message (SQLite).
/// The database names the constraint only in text, so this is the one place that reads it.
fn conflict_subject(constraint: &str) -> Unique {
    let c = constraint.to_ascii_lowercase();
    if c.contains("email") {
        Unique::Email
    } else if c.contains("username") {
        Unique::Username
    } else if c.contains("identities") {
        Unique::Identity
    } else if c.contains("clients") {
        Unique::Client
    } else if c.contains("connect_states") {
        Unique::ConnectState
    } else if c.contains("tokens") {
        Unique::Token
    } else {
        Unique::Record
    }
}

/// The unique key of an email address.
pub(crate) fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

pub(crate) fn join_list(items: &[String]) -> String {
    items.join(" ")
}

pub(crate) fn split_list(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

/// The items of several stored lists, each once, sorted.
pub(crate) fn distinct_items(lists: &[String]) -> Vec<String> {
    let set: std::collections::BTreeSet<&str> =
        lists.iter().flat_map(|l| l.split_whitespace()).collect();
    set.into_iter().map(str::to_owned).collect()
}

/// Both backends keep microseconds; values are rounded down on the way in so that what
/// a write returns equals what a later read returns.
pub(crate) fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

pub(crate) fn now() -> DateTime<Utc> {
    micros(Utc::now())
}

pub(crate) fn kind_str(kind: TokenKind) -> &'static str {
    match kind {
        TokenKind::Refresh => "refresh",
        TokenKind::OpaqueAccess => "opaque_access",
    }
}

/// The in-process fan-out of revocations to bearer validation.
#[derive(Clone)]
pub(crate) struct RevocationHub {
    tx: broadcast::Sender<RevocationEvent>,
}

impl RevocationHub {
    pub(crate) fn new() -> Self {
        // Lagging receivers lose events (and are told so); validation then reloads.
        let (tx, _) = broadcast::channel(4096);
        RevocationHub { tx }
    }

    pub(crate) fn send(&self, event: RevocationEvent) {
        // No receiver is fine: nobody caches tokens in this process.
        let _ = self.tx.send(event);
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<RevocationEvent> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every migration file is embedded, in order, with no gaps: a file added to the
    /// directory but not to the list would silently never run.
    #[test]
    fn every_migration_file_is_embedded() {
        for (dir, list) in [
            ("sqlite", SQLITE_MIGRATIONS),
            ("postgres", POSTGRES_MIGRATIONS),
        ] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(dir);
            let mut files: Vec<String> = std::fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n.ends_with(".sql"))
                .collect();
            files.sort();
            assert_eq!(files.len(), list.len(), "{dir}: {files:?}");
            for (i, (file, (version, description, sql))) in
                files.iter().zip(list.iter()).enumerate()
            {
                assert_eq!(*version, i as i64 + 1);
                assert_eq!(file, &format!("{:04}_{description}.sql", version));
                assert_eq!(&std::fs::read_to_string(path.join(file)).unwrap(), sql);
            }
        }
    }

    #[test]
    fn conflict_subjects() {
        assert_eq!(
            conflict_subject("UNIQUE constraint failed: users.email_key"),
            Unique::Email
        );
        assert_eq!(conflict_subject("users_username_key"), Unique::Username);
        assert_eq!(
            conflict_subject("UNIQUE constraint failed: clients.id"),
            Unique::Client
        );
        assert_eq!(
            conflict_subject("identities_user_provider"),
            Unique::Identity
        );
        assert_eq!(conflict_subject("tokens_pkey"), Unique::Token);
        assert_eq!(
            conflict_subject("connect_states_pkey"),
            Unique::ConnectState
        );
        assert_eq!(Unique::ConnectState.to_string(), "connect state");
    }
}
