//! Faults around the gateway: a store that hangs or goes away. `/readyz` answers within
//! its timeout, self-issued JWT routes keep serving, and the token endpoint fails with a
//! clear 503 instead of hanging or answering half-done.

mod common;

use std::time::{Duration, Instant};

use common::oauth::TokenGateway;
use common::relay::Relay;
use common::{client, Upstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_store_is_reported_not_waited_on() {
    common::pg::with_database("faults_hang", |url| async move {
        let mut parsed = url::Url::parse(&url).unwrap();
        let target = format!(
            "{}:{}",
            parsed.host_str().unwrap(),
            parsed.port().unwrap_or(5432)
        );
        let relay = Relay::start(target.parse().unwrap()).await;
        parsed.set_port(Some(relay.addr.port())).unwrap();
        let up = Upstream::start().await;
        let gw = TokenGateway::start_on(
            Some(parsed.as_str()),
            "",
            &format!(
                "routes:\n  - {{ name: api, path: /api, upstream: \"{}\", auth: required }}\n",
                up.url()
            ),
        )
        .await;
        let token = gw.password_token("john_doe", "john_doe_secret").await;
        let access = token["access_token"].as_str().unwrap().to_string();
        let c = client();
        let ready = |c: reqwest::Client, url: String| async move {
            c.get(url).send().await.unwrap().status().as_u16()
        };
        assert_eq!(ready(c.clone(), format!("{}/readyz", gw.admin)).await, 200);

        relay.freeze();
        let started = Instant::now();
        let status = ready(c.clone(), format!("{}/readyz", gw.admin)).await;
        let took = started.elapsed();
        assert_eq!(status, 503, "a hanging store is not ready");
        assert!(
            took < Duration::from_secs(6),
            "/readyz must answer within its timeout, took {took:?}"
        );

        // Self-issued JWTs need no store: the data path keeps serving.
        let s = c
            .get(gw.url("/api/x"))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(s, 200);

        // The token endpoint answers 503, not a hang.
        let started = Instant::now();
        let r = c
            .post(gw.url("/oauth/token"))
            .basic_auth(
                common::oauth::BASIC_CLIENT.0,
                Some(common::oauth::BASIC_CLIENT.1),
            )
            .form(&[
                ("grant_type", "password"),
                ("username", "john_doe"),
                ("password", "john_doe_secret"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            503,
            "store hanging: {}",
            r.text().await.unwrap()
        );
        assert!(started.elapsed() < Duration::from_secs(15));

        relay.thaw();
        common::wait_until(Duration::from_secs(20), "ready again", || {
            ready(c.clone(), format!("{}/readyz", gw.admin)).then_some_200()
        })
        .await;
        drop(gw);
    })
    .await;
}

trait ThenSome200 {
    fn then_some_200(self) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>;
}

impl<F: std::future::Future<Output = u16> + Send + 'static> ThenSome200 for F {
    fn then_some_200(self) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>> {
        Box::pin(async move { self.await == 200 })
    }
}
