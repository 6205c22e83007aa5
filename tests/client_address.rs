//! One client address behind a trusted proxy: the login throttle, the audit events, the
//! route rate limit and the `X-Forwarded-For` an upstream receives all name the same
//! client, the right-most untrusted `X-Forwarded-For` entry, when a trusted proxy adds its
//! own header line after the one the client wrote.

mod common;

use serde_json::Value;
use tollgate::config::raw::Audit;

use common::oauth::{TokenGateway, BASIC_CLIENT};
use common::{client, Upstream};

/// The address the trusted proxy (the test client, on 127.0.0.1) reports.
const CLIENT: &str = "203.0.113.7";

fn read_events(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A wrong password, sent with one `X-Forwarded-For` line per element of `xff`.
async fn sign_in(tg: &TokenGateway, xff: &[&str]) -> u16 {
    let mut req = client()
        .post(tg.url("/oauth/token"))
        .basic_auth(BASIC_CLIENT.0, Some(BASIC_CLIENT.1))
        .form(&[
            ("grant_type", "password"),
            ("username", "user_1"),
            ("password", "wrong-password"),
        ]);
    for line in xff {
        req = req.header("x-forwarded-for", *line);
    }
    req.send().await.unwrap().status().as_u16()
}

async fn get(tg: &TokenGateway, xff: &[&str]) -> u16 {
    let mut req = client().get(tg.url("/api/x"));
    for line in xff {
        req = req.header("x-forwarded-for", *line);
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn throttle_audit_rate_limit_and_upstream_see_one_client() {
    let dir = tempfile::tempdir().unwrap();
    let audit_log = dir.path().join("audit.log");
    tollgate::audit::install(&Audit {
        destination: audit_log.display().to_string(),
        max_bytes: 10 * 1024 * 1024,
        keep: 1,
    })
    .unwrap();
    let up = Upstream::start().await;
    let tg = TokenGateway::start_with(
        "  login_throttle:\n    per_account: 1000\n    per_ip: 1\n",
        &format!(
            "trusted_proxies: [127.0.0.1]\nroutes:\n  - name: api\n    path: /api\n    upstream: {}\n    rate_limit: {{ requests: 1, per: 1h, burst: 1, key: ip }}\n",
            up.url()
        ),
    )
    .await;

    // The client wrote a line of its own; the trusted proxy added its line after it.
    // The budget is the proxy-reported client's, whatever the client's line says.
    assert_eq!(sign_in(&tg, &["6.6.6.1", CLIENT]).await, 400);
    assert_eq!(
        sign_in(&tg, &["6.6.6.2", CLIENT]).await,
        429,
        "a new address of the client's own choosing buys no new login budget"
    );
    assert_eq!(
        sign_in(&tg, &["198.51.100.9"]).await,
        400,
        "another client has its own budget"
    );

    // The route limit counts the same address.
    assert_eq!(get(&tg, &["6.6.6.1", CLIENT]).await, 200);
    assert_eq!(
        up.last().header("x-forwarded-for"),
        Some("203.0.113.7, 127.0.0.1"),
        "the upstream gets the chain from the client on, not the client's own writing"
    );
    assert_eq!(get(&tg, &["6.6.6.3", CLIENT]).await, 429);
    assert_eq!(get(&tg, &["198.51.100.9"]).await, 200);

    // And the audit events of the login name it too.
    let events = read_events(&audit_log);
    let peers = |event: &str| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["event"] == event)
            .map(|e| e["peer_ip"].as_str().unwrap_or("-").to_owned())
            .collect()
    };
    assert_eq!(peers("sign_in"), [CLIENT, "198.51.100.9"], "{events:#?}");
    assert_eq!(peers("sign_in_throttled"), [CLIENT], "{events:#?}");
}
