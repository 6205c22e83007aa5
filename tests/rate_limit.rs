//! Per-route rate limits over real sockets: the local store on one gateway, the Redis
//! store shared by two gateways (the machine's Redis, `TOLLGATE_TEST_REDIS_URL`), and the
//! failure modes when a Redis of the test's own dies mid-test.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

use common::{authn, client, spawn_proxy_only, wait_until, TestGateway, Upstream};

fn route(up: &Upstream, name: &str, path: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    path: {path}\n    upstream: {}\n{extra}",
        up.url()
    )
}

async fn get(gw: &TestGateway, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = client().get(gw.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn local_limit_answers_429_with_retry_after_and_ietf_headers() {
    let up = Upstream::start().await;
    let gw = spawn_proxy_only(&format!(
        "routes:\n{}{}",
        route(
            &up,
            "limited",
            "/limited",
            "    rate_limit: { requests: 3, per: 1m, key: ip }\n"
        ),
        route(&up, "open", "/open", "")
    ))
    .await;

    for left in [2, 1, 0] {
        let r = get(&gw, "/limited", &[]).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["ratelimit-policy"], "\"limited\";q=3;w=60");
        let state = r.headers()["ratelimit"].to_str().unwrap().to_owned();
        assert!(
            state.starts_with(&format!("\"limited\";r={left};t=")),
            "{state}"
        );
    }
    let r = get(&gw, "/limited", &[]).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry), "Retry-After {retry}");
    assert_eq!(
        r.headers()["ratelimit"].to_str().unwrap(),
        format!("\"limited\";r=0;t={retry}")
    );
    assert!(r.headers().contains_key("ratelimit-policy"));
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
    assert_eq!(
        up.requests().len(),
        3,
        "the refused request never reached upstream"
    );

    // Other routes keep their own (absent) limit.
    for _ in 0..5 {
        let r = get(&gw, "/open", &[]).await;
        assert_eq!(r.status(), 200);
        assert!(!r.headers().contains_key("ratelimit"));
    }

    let allowed = common::metric(
        &gw.admin,
        "tollgate_rate_limit_decisions_total{route=\"limited\",decision=\"allowed\"}",
    )
    .await;
    let limited = common::metric(
        &gw.admin,
        "tollgate_rate_limit_decisions_total{route=\"limited\",decision=\"limited\"}",
    )
    .await;
    assert_eq!((allowed, limited), (3.0, 1.0));
}

#[tokio::test]
async fn header_keyed_limit_and_global_default_with_off() {
    let up = Upstream::start().await;
    let gw = spawn_proxy_only(&format!(
        "rate_limit: {{ requests: 1, per: 1h, key: \"header:x-api-key\" }}\nroutes:\n{}{}",
        route(&up, "default", "/d", ""),
        route(&up, "exempt", "/x", "    rate_limit: off\n")
    ))
    .await;
    assert_eq!(
        get(&gw, "/d", &[("x-api-key", "alpha")]).await.status(),
        200
    );
    assert_eq!(
        get(&gw, "/d", &[("x-api-key", "alpha")]).await.status(),
        429
    );
    // Another key has its own budget; no key falls back to the client address.
    assert_eq!(get(&gw, "/d", &[("x-api-key", "beta")]).await.status(), 200);
    assert_eq!(get(&gw, "/d", &[]).await.status(), 200);
    assert_eq!(get(&gw, "/d", &[]).await.status(), 429);
    for _ in 0..3 {
        assert_eq!(
            get(&gw, "/x", &[("x-api-key", "alpha")]).await.status(),
            200
        );
    }
}

#[tokio::test]
async fn user_keyed_limit_counts_the_authenticated_user_not_the_address() {
    let up = Upstream::start().await;
    let (gw, kit) = authn::spawn(&format!(
        "routes:\n{}",
        route(
            &up,
            "api",
            "/api",
            "    auth: required\n    rate_limit: { requests: 2, per: 1h, key: user }\n"
        )
    ))
    .await;
    let ann = format!("Bearer {}", kit.token(json!({"sub": "ann"})));
    let ann2 = format!("Bearer {}", kit.token(json!({"sub": "ann"})));
    let bob = format!("Bearer {}", kit.token(json!({"sub": "bob"})));
    assert_eq!(
        get(&gw, "/api", &[("authorization", &ann)]).await.status(),
        200
    );
    // A second token of the same user spends the same budget.
    assert_eq!(
        get(&gw, "/api", &[("authorization", &ann2)]).await.status(),
        200
    );
    assert_eq!(
        get(&gw, "/api", &[("authorization", &ann)]).await.status(),
        429
    );
    assert_eq!(
        get(&gw, "/api", &[("authorization", &bob)]).await.status(),
        200
    );
    // Unauthenticated requests are refused before they are counted.
    assert_eq!(get(&gw, "/api", &[]).await.status(), 401);
}

/// The machine's Redis, or `None` with the reason printed.
fn shared_redis() -> Option<String> {
    match std::env::var("TOLLGATE_TEST_REDIS_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            eprintln!("skipped: TOLLGATE_TEST_REDIS_URL is not set (.ci/run sets it)");
            None
        }
    }
}

async fn delete_prefix(url: &str, prefix: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn two_gateways_sharing_redis_share_one_budget() {
    let Some(url) = shared_redis() else { return };
    let prefix = format!("tollgate-test-{}", uuid::Uuid::new_v4().simple());
    let (burst, budget) = (10u32, 3u32);
    let up = Upstream::start().await;
    let yaml = format!(
        "rate_limit_store: {{ url: \"{url}\", prefix: {prefix}, local_budget: {budget} }}\nroutes:\n{}",
        route(
            &up,
            "shared",
            "/s",
            &format!("    rate_limit: {{ requests: {burst}, per: 1h, key: ip, store: redis }}\n")
        )
    );
    let a = spawn_proxy_only(&yaml).await;
    let b = spawn_proxy_only(&yaml).await;

    let mut admitted = [0u32; 2];
    for i in 0..60 {
        let gw = if i % 2 == 0 { &a } else { &b };
        let r = get(gw, "/s", &[]).await;
        match r.status().as_u16() {
            200 => admitted[i % 2] += 1,
            429 => assert!(r.headers().contains_key("retry-after")),
            s => panic!("status {s}"),
        }
    }
    let total = admitted[0] + admitted[1];
    eprintln!("admitted by replica: {admitted:?} (burst {burst}, local budget {budget})");
    // The documented bound: the limit plus one local budget per replica; unshared
    // budgets would have let 2 × burst through.
    assert!(total <= burst + 2 * budget, "admitted {admitted:?}");
    assert!(total >= burst - 2 * budget, "admitted {admitted:?}");
    assert!(admitted[0] > 0 && admitted[1] > 0, "admitted {admitted:?}");
    assert_eq!(
        common::metric(
            &a.admin,
            "tollgate_rate_limit_store_errors_total{route=\"shared\"}"
        )
        .await,
        0.0
    );
    delete_prefix(&url, &prefix).await;
}

/// A redis-server of the test's own on a free port, killed on drop.
struct OwnRedis {
    child: Child,
    url: String,
}

impl OwnRedis {
    async fn start() -> Option<OwnRedis> {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("skipped: redis-server is not installed");
            return None;
        }
        let port = common::free_port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("redis://127.0.0.1:{port}/0");
        let probe = url.clone();
        wait_until(Duration::from_secs(10), "own redis-server answers", || {
            let probe = probe.clone();
            async move {
                let Ok(c) = redis::Client::open(probe.as_str()) else {
                    return false;
                };
                match c.get_multiplexed_async_connection().await {
                    Ok(mut conn) => redis::cmd("PING")
                        .query_async::<String>(&mut conn)
                        .await
                        .is_ok(),
                    Err(_) => false,
                }
            }
        })
        .await;
        Some(OwnRedis { child, url })
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test]
async fn redis_killed_mid_test_follows_on_error() {
    let Some(mut redis) = OwnRedis::start().await else {
        return;
    };
    let up = Upstream::start().await;
    let gateway = |mode: &str| {
        format!(
            "rate_limit_store: {{ url: \"{}\", prefix: t, on_error: {mode}, timeout: 200ms }}\nroutes:\n{}",
            redis.url,
            route(
                &up,
                "r",
                "/r",
                "    rate_limit: { requests: 1000, per: 1m, key: ip, store: redis }\n"
            )
        )
    };
    let open = spawn_proxy_only(&gateway("fail_open")).await;
    let closed = spawn_proxy_only(&gateway("fail_closed")).await;
    assert_eq!(get(&open, "/r", &[]).await.status(), 200);
    assert_eq!(get(&closed, "/r", &[]).await.status(), 200);

    redis.kill();
    let r = get(&closed, "/r", &[]).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    for _ in 0..3 {
        assert_eq!(get(&open, "/r", &[]).await.status(), 200);
    }
    assert!(
        common::metric(
            &open.admin,
            "tollgate_rate_limit_store_errors_total{route=\"r\"}"
        )
        .await
            >= 1.0
    );
}

#[tokio::test]
async fn unreachable_redis_at_start_does_not_stop_the_gateway() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let up = Upstream::start().await;
    let gw = spawn_proxy_only(&format!(
        "rate_limit_store: {{ url: \"redis://127.0.0.1:{port}\", timeout: 200ms }}\nroutes:\n{}",
        route(
            &up,
            "unreachable",
            "/r",
            "    rate_limit: { requests: 1, per: 1h, store: redis }\n"
        )
    ))
    .await;
    // fail_open is the default: every request passes, and is counted.
    for _ in 0..3 {
        assert_eq!(get(&gw, "/r", &[]).await.status(), 200);
    }
    let errors = common::metric(
        &gw.admin,
        "tollgate_rate_limit_store_errors_total{route=\"unreachable\"}",
    )
    .await;
    assert!(errors >= 1.0, "{errors}");
}
