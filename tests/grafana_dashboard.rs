//! deploy/grafana/tollgate.json queries only what a running gateway exports: a gateway
//! with a token service, introspection, a dead and a slow upstream and a login throttle
//! gets traffic that makes every series appear, then every metric name and label that a
//! panel's PromQL names must be in its /metrics.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::idp::{Idp, Mode, CLIENT_ID, CLIENT_SECRET};
use common::oauth::TokenGateway;
use common::{client, Upstream};
use serde_json::{json, Value};

fn dashboard() -> Value {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/tollgate.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

/// Metric names and label names one PromQL expression refers to.
fn refs(expr: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let metrics = expr
        .match_indices("tollgate_")
        .map(|(i, _)| ident(&expr[i..]))
        .collect();
    let mut labels = BTreeSet::new();
    // Matchers: {a="x",b=~"y"}
    for part in expr.split('{').skip(1) {
        let inner = &part[..part.find('}').unwrap()];
        for m in inner.split(',') {
            let name = ident(m.trim());
            if !name.is_empty() {
                labels.insert(name);
            }
        }
    }
    // Groupings: by (a, b)
    for part in expr.split("by (").skip(1) {
        for l in part[..part.find(')').unwrap()].split(',') {
            labels.insert(l.trim().to_string());
        }
    }
    (metrics, labels)
}

/// Exported series: metric name → label names seen on it.
fn exported(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let series = line.rsplit_once(' ').map_or(line, |(s, _)| s);
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let entry = out.entry(name.to_string()).or_default();
        for pair in labels.split(',').filter(|p| !p.is_empty()) {
            if let Some((k, _)) = pair.split_once('=') {
                entry.insert(k.trim().to_string());
            }
        }
    }
    out
}

#[tokio::test]
async fn every_metric_and_label_the_dashboard_queries_is_exported() {
    let up = Upstream::start().await;
    let idp = Idp::start().await;
    idp.add_token(
        "opaque-ok",
        json!({"active": true, "sub": "u-9", "scope": "orders:read", "exp": common::authn::now() + 600}),
    );
    std::env::set_var("GRAFANA_TEST_INTROSPECT_SECRET", CLIENT_SECRET);
    // Two closed ports: a target is only ejected while another one is left.
    let closed: Vec<_> = (0..2)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let dead: Vec<String> = closed
        .iter()
        .map(|l| format!("\"http://{}\"", l.local_addr().unwrap()))
        .collect();
    drop(closed);
    let extra = format!(
        r#"
limits:
  max_connections: 4
introspection:
  - name: corp
    url: {idp}
    client_id: {CLIENT_ID}
    client_secret_env: GRAFANA_TEST_INTROSPECT_SECRET
    timeout: 500ms
routes:
  - {{ name: api, path: /api, upstream: "{u}", auth: required }}
  - {{ name: dead, path: /dead, upstream: {{ targets: [{dead}], eject_after: 1, retries: 0 }} }}
  - {{ name: slow, path: /slow, upstream: {{ targets: ["{u}"], timeout: 100ms }} }}
"#,
        idp = idp.introspect_url(),
        u = up.url(),
        dead = dead.join(", ")
    );
    let tg = TokenGateway::start_with("  login_throttle:\n    per_account: 2\n", &extra).await;
    let gw = &tg.gw;
    let c = client();

    // Requests, auth outcomes, the JWT cache (miss then hit).
    assert_eq!(c.get(gw.url("/api/x")).send().await.unwrap().status(), 401);
    let token = tg.password_token("user_1", "password").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..2 {
        let resp = c
            .get(gw.url("/api/x"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    // Introspection: a call, a cache hit, then an error.
    for _ in 0..2 {
        let resp = c
            .get(gw.url("/api/x"))
            .bearer_auth("opaque-ok")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    idp.set_mode(Mode::Failing);
    let resp = c
        .get(gw.url("/api/x"))
        .bearer_auth("opaque-new")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    // Upstream errors: unreachable (and ejected), timeout.
    assert_eq!(c.get(gw.url("/dead/x")).send().await.unwrap().status(), 502);
    assert_eq!(
        c.get(gw.url("/slow/delay/1000"))
            .send()
            .await
            .unwrap()
            .status(),
        504
    );
    // Failed passwords, then the per-account throttle.
    let mut throttled = false;
    for _ in 0..5 {
        let resp = c
            .post(gw.url("/oauth/token"))
            .form(&[
                ("grant_type", "password"),
                ("username", "user_1"),
                ("password", "wrong"),
                ("client_id", common::oauth::DRAFT10_CLIENT),
            ])
            .send()
            .await
            .unwrap();
        throttled |= resp.status() == 429;
    }
    assert!(throttled, "the login throttle answered 429");
    // A forward-auth decision and a config reload.
    let resp = c
        .get(gw.url("/auth/verify"))
        .header("X-Forwarded-Uri", "/api/x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    gw.gateway.app.reload().unwrap();
    // Over limits.max_connections: new connections are closed at once and counted.
    let http = gw.base.trim_start_matches("http://").to_string();
    let held: Vec<_> = (0..8)
        .map(|_| std::net::TcpStream::connect(&http).unwrap())
        .collect();

    let admin = gw.admin.clone();
    common::wait_until(Duration::from_secs(10), "every queried series", || {
        let admin = admin.clone();
        let dash = dashboard();
        async move {
            let text = common::scrape(&admin).await;
            let have = exported(&text);
            let mut all = Vec::new();
            exprs(&dash, &mut all);
            assert!(all.len() >= 15, "the dashboard has its queries");
            let mut missing = Vec::new();
            for e in &all {
                let (metrics, labels) = refs(e);
                for m in &metrics {
                    if !have.contains_key(m) {
                        missing.push(format!("metric {m} (in {e})"));
                    }
                }
                for l in &labels {
                    if !metrics
                        .iter()
                        .any(|m| have.get(m).is_some_and(|ls| ls.contains(l)))
                    {
                        missing.push(format!("label {l} (in {e})"));
                    }
                }
            }
            if !missing.is_empty() {
                eprintln!("not yet exported: {missing:#?}");
            }
            missing.is_empty()
        }
    })
    .await;
    drop(held);
}
