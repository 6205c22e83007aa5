//! A throwaway PostgreSQL database per test: created under a unique name on the server
//! `TOLLGATE_TEST_POSTGRES_URL` points at, dropped afterwards even when the test fails.

use std::future::Future;

use sqlx::Connection;

/// Creates a database named `{prefix}_{uuid}`, runs `test` with its URL on a task of its
/// own (so a failed assertion still lets the database be dropped), drops it, then
/// re-raises the test's panic if any. Prints why and returns at once when
/// `TOLLGATE_TEST_POSTGRES_URL` is unset.
pub async fn with_database<F, Fut>(prefix: &str, test: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Ok(base) = std::env::var("TOLLGATE_TEST_POSTGRES_URL") else {
        eprintln!("skipped: TOLLGATE_TEST_POSTGRES_URL is not set");
        return;
    };
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&base)
        .await
        .expect("connect to TOLLGATE_TEST_POSTGRES_URL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let mut url = url::Url::parse(&base).unwrap();
    url.set_path(&name);
    let result = tokio::spawn(test(url.to_string())).await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}
