//! Rows to records, written once for both backends. A backend says only how it reads a
//! column ([`StoreRow`]): the one real difference is the timestamp, INTEGER microseconds
//! in SQLite and TIMESTAMPTZ in PostgreSQL. The SQL itself stays in each backend: its
//! placeholders, `RETURNING` and notification clauses differ.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::support::split_list;
use super::{Client, ConnectState, LinkedIdentity, TokenRecord, User, UserId};

type Result<T> = std::result::Result<T, sqlx::Error>;

/// A column read as the record types need it.
pub(crate) trait StoreRow {
    fn text(&self, col: &str) -> Result<String>;
    fn opt_text(&self, col: &str) -> Result<Option<String>>;
    fn int(&self, col: &str) -> Result<i64>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>>;
    fn bytes(&self, col: &str) -> Result<Vec<u8>>;
    fn time(&self, col: &str) -> Result<DateTime<Utc>>;
    fn opt_time(&self, col: &str) -> Result<Option<DateTime<Utc>>>;
    /// A boolean: INTEGER 0/1 in SQLite, BOOLEAN in PostgreSQL.
    fn flag(&self, col: &str) -> Result<bool>;
}

/// The columns both drivers decode the same way.
macro_rules! plain_columns {
    () => {
        fn text(&self, col: &str) -> Result<String> {
            self.try_get(col)
        }
        fn opt_text(&self, col: &str) -> Result<Option<String>> {
            self.try_get(col)
        }
        fn int(&self, col: &str) -> Result<i64> {
            self.try_get(col)
        }
        fn opt_int(&self, col: &str) -> Result<Option<i64>> {
            self.try_get(col)
        }
        fn bytes(&self, col: &str) -> Result<Vec<u8>> {
            self.try_get(col)
        }
    };
}

impl StoreRow for SqliteRow {
    plain_columns!();
    fn time(&self, col: &str) -> Result<DateTime<Utc>> {
        Ok(DateTime::from_timestamp_micros(self.try_get(col)?).unwrap_or_default())
    }
    fn opt_time(&self, col: &str) -> Result<Option<DateTime<Utc>>> {
        let v: Option<i64> = self.try_get(col)?;
        Ok(v.map(|v| DateTime::from_timestamp_micros(v).unwrap_or_default()))
    }
    fn flag(&self, col: &str) -> Result<bool> {
        Ok(self.try_get::<i64, _>(col)? != 0)
    }
}

impl StoreRow for PgRow {
    plain_columns!();
    fn time(&self, col: &str) -> Result<DateTime<Utc>> {
        self.try_get(col)
    }
    fn opt_time(&self, col: &str) -> Result<Option<DateTime<Utc>>> {
        self.try_get(col)
    }
    fn flag(&self, col: &str) -> Result<bool> {
        self.try_get(col)
    }
}

pub(crate) fn user<R: StoreRow>(r: &R) -> Result<User> {
    Ok(User {
        id: UserId(r.int("id")?),
        username: r.opt_text("username")?,
        email: r.text("email")?,
        password_hash: r.text("password_hash")?,
        role: r.text("role")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

pub(crate) fn client<R: StoreRow>(r: &R) -> Result<Client> {
    Ok(Client {
        id: r.text("id")?,
        secret_hash: r.opt_text("secret_hash")?,
        grants: split_list(&r.text("grants")?),
        scopes: split_list(&r.text("scopes")?),
        created_at: r.time("created_at")?,
        redirect_uris: split_list(&r.text("redirect_uris")?),
        post_logout_redirect_uris: split_list(&r.text("post_logout_redirect_uris")?),
        first_party: r.flag("first_party")?,
        registration_token_hash: r.opt_text("registration_token_hash")?,
        tls_auth: super::TlsClientAuth::from_columns(
            r.opt_text("tls_auth_method")?.as_deref(),
            r.opt_text("tls_auth_value")?,
        ),
    })
}

pub(crate) fn signin<R: StoreRow>(r: &R) -> Result<super::SignInRecord> {
    Ok(super::SignInRecord {
        payload: r.text("payload")?,
        expires_at: r.time("expires_at")?,
        used_at: r.opt_time("used_at")?,
    })
}

pub(crate) fn token<R: StoreRow>(r: &R) -> Result<TokenRecord> {
    Ok(TokenRecord {
        token_hash: r.text("token_hash")?,
        family_id: r.text("family_id")?,
        user_id: r.opt_int("user_id")?.map(UserId),
        client_id: r.opt_text("client_id")?,
        scope: r.text("scope")?,
        alias: r.opt_text("alias")?,
        expires_at: r.time("expires_at")?,
        created_at: r.time("created_at")?,
        rotated_at: r.opt_time("rotated_at")?,
        revoked_at: r.opt_time("revoked_at")?,
        audience: r.text("audience")?,
        cnf: r.opt_text("cnf")?,
    })
}

pub(crate) fn identity<R: StoreRow>(r: &R) -> Result<LinkedIdentity> {
    Ok(LinkedIdentity {
        user_id: UserId(r.int("user_id")?),
        provider: r.text("provider")?,
        provider_user_id: r.text("provider_user_id")?,
        email: r.opt_text("email")?,
        tokens_encrypted: r.bytes("tokens_encrypted")?,
        created_at: r.time("created_at")?,
    })
}

pub(crate) fn connect_state<R: StoreRow>(r: &R) -> Result<ConnectState> {
    Ok(ConnectState {
        state_hash: r.text("state_hash")?,
        user_id: UserId(r.int("user_id")?),
        provider: r.text("provider")?,
        redirect_uri: r.text("redirect_uri")?,
        pkce_verifier: r.text("pkce_verifier")?,
        expires_at: r.time("expires_at")?,
    })
}
