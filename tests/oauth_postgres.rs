//! The token service on PostgreSQL (several replicas share one database): sign-in,
//! refresh rotation with reuse detection, and revocation seen by a second gateway.
//! Needs `TOLLGATE_TEST_POSTGRES_URL`; each test creates and drops its own database, and
//! is skipped with a message when the variable is unset.

mod common;

use common::client;
use common::oauth::{TokenGateway, BASIC_CLIENT};

/// `tokens:` lines naming a signing key in `dir`, so no key is generated under the
/// working directory (with PostgreSQL there is no database file to put it next to).
fn key_lines(dir: &std::path::Path) -> String {
    let path = dir.join("signing.pem");
    if !path.exists() {
        let g = tollgate::keys::generate(tollgate::config::raw::SigningAlg::RS256).unwrap();
        std::fs::write(&path, g.private_pem.as_bytes()).unwrap();
    }
    format!("  signing:\n    key_file: {}\n", path.display())
}

/// Creates a uniquely named database, runs `test` with its URL, drops it.
async fn with_database<F, Fut>(test: F)
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let Ok(base) = std::env::var("TOLLGATE_TEST_POSTGRES_URL") else {
        eprintln!("skipped: TOLLGATE_TEST_POSTGRES_URL is not set");
        return;
    };
    use sqlx::Connection;
    let name = format!("tollgate_oauth_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&base)
        .await
        .expect("connect to TOLLGATE_TEST_POSTGRES_URL");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let mut url = url::Url::parse(&base).unwrap();
    url.set_path(&name);
    let result = tokio::spawn(test(url.to_string())).await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[tokio::test]
async fn refresh_reuse_revokes_the_family_on_postgres() {
    with_database(|url| async move {
        let keys = tempfile::tempdir().unwrap();
        let gw = TokenGateway::start_on(Some(&url), &key_lines(keys.path()), "").await;
        let first = gw.password_token("john_doe", "john_doe_secret").await;
        let r1 = first["refresh_token"].as_str().unwrap().to_string();
        let (s, second) = gw.refresh(&r1).await;
        assert_eq!(s, 200);
        let r2 = second["refresh_token"].as_str().unwrap().to_string();
        assert_eq!(gw.refresh(&r1).await.0, 400, "reuse");
        assert_eq!(gw.refresh(&r2).await.0, 400, "family revoked");
    })
    .await;
}

#[tokio::test]
async fn a_token_revoked_on_one_replica_is_refused_by_another() {
    with_database(|url| async move {
        let keys = tempfile::tempdir().unwrap();
        let a = TokenGateway::start_on(Some(&url), &key_lines(keys.path()), "").await;
        // The second replica shares the database; seeding again would conflict, so it
        // only starts a gateway.
        let b = common::spawn_gateway(&format!(
            "store:\n  url: {url}\ntokens:\n  issuer: http://tollgate.test\n  audience: tollgate\n{}{}",
            key_lines(keys.path()),
            common::oauth::DIALECTS_YAML
        ))
        .await;
        let token = a.password_token("john_doe", "john_doe_secret").await["access_token"]
            .as_str()
            .unwrap()
            .to_string();
        let me = |gw: &common::TestGateway| {
            let url = gw.url("/api/v1/users/me");
            let token = token.clone();
            async move { client().get(url).bearer_auth(token).send().await.unwrap().status().as_u16() }
        };
        assert_eq!(me(&b).await, 200, "replica b accepts a's token (shared key)");
        let resp = client()
            .post(a.url("/oauth/revoke"))
            .basic_auth(BASIC_CLIENT.0, Some(BASIC_CLIENT.1))
            .form(&[("token", token.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(me(&a).await, 401);
        common::wait_until(std::time::Duration::from_secs(10), "replica b refuses the revoked token", || {
            let f = me(&b);
            async move { f.await == 401 }
        })
        .await;
    })
    .await;
}
