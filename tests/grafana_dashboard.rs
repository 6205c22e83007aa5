//! deploy/grafana/tollgate.json queries only what a running gateway exports, and a counter
//! exists before its first event: a fresh `tollgate serve` (a token service, introspection,
//! a foreign JWT issuer, a provider, routes with a rate limit, ext_authz, tracing) that has
//! served nothing must already export every metric name and label a panel's PromQL names,
//! and every metric the docs name. A series that appeared only with its first event would
//! hide that event from `rate()` and `increase()`.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::process::GatewayProcess;
use serde_json::Value;

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

/// Every `tollgate_…` metric name the operator docs mention (histograms by their base
/// name), with the file that names it.
fn documented() -> BTreeMap<String, String> {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&docs).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, _) in text.match_indices("tollgate_") {
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let metric = ["_total", "_seconds", "_active"]
                .iter()
                .any(|s| name.ends_with(s));
            if metric {
                out.entry(name)
                    .or_insert_with(|| path.file_name().unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out
}

/// A closed port on 127.0.0.1: whatever is configured there is never reached.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `tollgate serve` with every feature that brings metrics of its own, started and
/// never sent a request.
fn fresh_gateway(dir: &std::path::Path) -> GatewayProcess {
    let nowhere = format!("http://127.0.0.1:{}", closed_port());
    let yaml = format!(
        r#"listen:
  http: 127.0.0.1:0
  admin: 127.0.0.1:0
  ext_authz: 127.0.0.1:0
store:
  url: sqlite://{db}/t.db
{tokens}  login_throttle:
    per_account: 5
token_endpoints:
  - path: /oauth/token
introspection:
  - name: corp
    url: {nowhere}/introspect
    client_id: gateway
    client_secret_env: DASHBOARD_TEST_SECRET
jwt_issuers:
  - issuer: https://idp.example
    jwks_url: {nowhere}/jwks
    audience: my-api
connect:
  encryption_key_env: DASHBOARD_TEST_KEY
  callback_base_url: http://127.0.0.1:8080
providers:
  facebook:
    client_id: fb-client
    client_secret_env: DASHBOARD_TEST_SECRET
    authorize_url: {nowhere}/authorize
    token_url: {nowhere}/token
    userinfo_url: {nowhere}/userinfo
    allowed_redirect_uris: ["http://127.0.0.1:8080/done"]
telemetry:
  tracing:
    otlp_endpoint: {nowhere}
routes:
  - {{ name: api, path: /api, upstream: "{nowhere}", auth: required, rate_limit: {{ requests: 10, per: 1m, key: ip }} }}
  - {{ name: open, path: /open, upstream: "{nowhere}" }}
"#,
        db = dir.display(),
        tokens = common::authn::tokens_yaml(dir),
    );
    let path = dir.join("tollgate.yaml");
    std::fs::write(&path, yaml).unwrap();
    GatewayProcess::start(
        &path,
        &[
            ("DASHBOARD_TEST_SECRET", "a-secret-of-sixteen-or-more"),
            (
                "DASHBOARD_TEST_KEY",
                "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
            ),
        ],
    )
}

#[tokio::test]
async fn a_fresh_gateway_exports_every_series_the_dashboard_and_the_docs_name() {
    let dir = tempfile::tempdir().unwrap();
    let gw = fresh_gateway(dir.path());
    // The admin port is up once the process says it listens; /metrics is not a request the
    // request metrics count.
    let text = common::scrape(&gw.admin).await;
    let have = exported(&text);

    let mut missing = Vec::new();
    let mut all = Vec::new();
    exprs(&dashboard(), &mut all);
    assert!(all.len() >= 15, "the dashboard has its queries");
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
    let docs = documented();
    assert!(docs.len() >= 30, "the docs name their metrics: {docs:?}");
    for (name, file) in &docs {
        // A histogram is exported as its _bucket, _sum and _count series.
        let exported = have.contains_key(name) || have.contains_key(&format!("{name}_count"));
        if !exported {
            missing.push(format!("metric {name} (in docs/{file})"));
        }
    }
    assert!(
        missing.is_empty(),
        "a gateway that has served nothing must export these: {missing:#?}\n{text}"
    );
    // Nothing was served: every request counter is at 0.
    for line in text
        .lines()
        .filter(|l| l.starts_with("tollgate_requests_total"))
    {
        assert!(line.ends_with(" 0"), "{line}");
    }
}
