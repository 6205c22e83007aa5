//! Login throttling across replicas: with the store on PostgreSQL the per-account and
//! per-IP counters live in the store, so two replicas together allow no more attempts
//! than one. Skipped when TOLLGATE_TEST_POSTGRES_URL is unset.

mod common;

use common::{client, spawn_gateway};

const CLIENT: (&str, &str) = ("throttle-client", "throttle-secret-0123456789abcdef");

async fn attempt(base: &str, username: &str) -> u16 {
    client()
        .post(format!("{base}/oauth/token"))
        .basic_auth(CLIENT.0, Some(CLIENT.1))
        .form(&[
            ("grant_type", "password"),
            ("username", username),
            ("password", "wrong-password"),
        ])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn config(url: &str, per_account: u32, per_ip: u32) -> String {
    format!(
        "store:\n  url: {url}\ntokens:\n  issuer: http://tollgate.test\n  audience: tollgate\n  login_throttle:\n    per_account: {per_account}\n    per_ip: {per_ip}\ntoken_endpoints:\n  - path: /oauth/token\n"
    )
}

async fn seed(url: &str) {
    let store = tollgate::store::connect(url).await.unwrap();
    let (user, email) = ("victim", "victim@example.com");
    common::seed::user(&*store, Some(user), email, "the-real-password", "default").await;
    common::seed::client(&*store, CLIENT.0, Some(CLIENT.1), &["password"], &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_per_account_budget() {
    common::pg::with_database("throttle_acct", |url| async move {
        let a = spawn_gateway(&config(&url, 4, 1000)).await;
        seed(&url).await;
        let b = spawn_gateway(&config(&url, 4, 1000)).await;
        // Four attempts in all, alternating replicas, are allowed; the fifth is refused
        // on either replica. Separate in-memory limits would allow eight.
        let mut statuses = Vec::new();
        for i in 0..6 {
            let base = if i % 2 == 0 { &a.base } else { &b.base };
            statuses.push(attempt(base, "Victim").await);
        }
        assert_eq!(&statuses[..4], &[400, 400, 400, 400], "{statuses:?}");
        assert_eq!(&statuses[4..], &[429, 429], "{statuses:?}");
        // Another account is not affected by this one's budget.
        assert_eq!(attempt(&a.base, "someone-else").await, 400);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_per_ip_budget() {
    common::pg::with_database("throttle_ip", |url| async move {
        let a = spawn_gateway(&config(&url, 1000, 3)).await;
        seed(&url).await;
        let b = spawn_gateway(&config(&url, 1000, 3)).await;
        let mut statuses = Vec::new();
        for i in 0..5 {
            let base = if i % 2 == 0 { &a.base } else { &b.base };
            // A spray over accounts from one address.
            statuses.push(attempt(base, &format!("user-{i}")).await);
        }
        assert_eq!(statuses, vec![400, 400, 400, 429, 429], "{statuses:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_attempts_never_overspend_the_shared_budget() {
    common::pg::with_database("throttle_race", |url| async move {
        let a = spawn_gateway(&config(&url, 5, 1000)).await;
        seed(&url).await;
        let b = spawn_gateway(&config(&url, 5, 1000)).await;
        let mut tasks = Vec::new();
        for i in 0..20 {
            let base = if i % 2 == 0 {
                a.base.clone()
            } else {
                b.base.clone()
            };
            tasks.push(tokio::spawn(async move { attempt(&base, "victim").await }));
        }
        let mut allowed = 0;
        for t in tasks {
            if t.await.unwrap() != 429 {
                allowed += 1;
            }
        }
        assert_eq!(
            allowed, 5,
            "20 concurrent attempts on two replicas, budget 5"
        );
    })
    .await;
}
