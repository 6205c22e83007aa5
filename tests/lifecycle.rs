//! The real binary: SIGTERM drains in-flight requests then exits 0; SIGHUP reloads; one
//! access-log line per request that never carries a token; the admin port.

mod common;

use std::time::Duration;

use common::process::GatewayProcess;
use common::{client, wait_until, Upstream};

fn write_config(dir: &std::path::Path, up: &Upstream, extra_routes: &str) -> std::path::PathBuf {
    let path = dir.join("tollgate.yaml");
    std::fs::write(
        &path,
        format!(
            "listen:\n  http: 127.0.0.1:0\n  admin: 127.0.0.1:0\nstore:\n  url: sqlite://{}/t.db\nlimits:\n  shutdown_grace: 10s\nroutes:\n  - name: api\n    path: /api\n    upstream: {}\n{extra_routes}",
            dir.display(),
            up.url()
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_then_exits_zero() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut gw = GatewayProcess::start(&write_config(dir.path(), &up, ""), &[]);
    let url = format!("{}/api/delay/1000", gw.http);
    let in_flight =
        tokio::spawn(async move { client().get(url).send().await.map(|r| r.status().as_u16()) });
    let up2 = up.clone();
    wait_until(
        Duration::from_secs(10),
        "the slow request reached the upstream",
        || {
            let up = up2.clone();
            async move { !up.requests().is_empty() }
        },
    )
    .await;
    gw.signal("TERM");
    assert_eq!(
        in_flight.await.unwrap().unwrap(),
        200,
        "the in-flight request completed"
    );
    let code = tokio::task::spawn_blocking(move || {
        let code = gw.wait_exit(Duration::from_secs(15));
        (code, gw)
    })
    .await
    .unwrap();
    assert_eq!(code.0, Some(0));
    assert!(code.1.log_text().contains("shutting down"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_a_config_the_watcher_cannot_see() {
    // The config path is a symlink into another directory (the Kubernetes ConfigMap
    // layout): edits to the target are invisible to the directory watch, so only SIGHUP
    // can pick them up.
    let up = Upstream::start().await;
    let real = tempfile::tempdir().unwrap();
    let link_dir = tempfile::tempdir().unwrap();
    let target = write_config(real.path(), &up, "");
    let link = link_dir.path().join("tollgate.yaml");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let gw = GatewayProcess::start(&link, &[]);
    let c = client();
    assert_eq!(
        c.get(format!("{}/new", gw.http))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    write_config(
        real.path(),
        &up,
        &format!(
            "  - name: new\n    path: /new\n    upstream: {}\n",
            up.url()
        ),
    );
    gw.signal("HUP");
    let url = format!("{}/new", gw.http);
    wait_until(
        Duration::from_secs(10),
        "SIGHUP reload adds the route",
        || {
            let (c, url) = (c.clone(), url.clone());
            async move { c.get(url).send().await.unwrap().status() == 200 }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_has_one_line_per_request_and_no_tokens() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = GatewayProcess::start(&write_config(dir.path(), &up, ""), &[]);
    let r = client()
        .get(format!(
            "{}/api/items?oauth_token=QUERYSECRET123&x=1",
            gw.http
        ))
        .bearer_auth("HEADERSECRET456")
        .header("x-request-id", "req-abc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let logs = gw.logs.clone();
    wait_until(Duration::from_secs(10), "the access log line", || {
        let logs = logs.clone();
        async move { logs.lock().unwrap().iter().any(|l| l.contains("req-abc")) }
    })
    .await;
    let text = gw.log_text();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| l.contains("req-abc"))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    let line = &lines[0];
    assert_eq!(line["route"], "api");
    assert_eq!(line["status"], 200);
    assert_eq!(line["path"], "/api/items");
    assert!(line["duration_ms"].as_f64().is_some());
    assert!(
        !text.contains("QUERYSECRET123"),
        "query token leaked into logs"
    );
    assert!(
        !text.contains("HEADERSECRET456"),
        "bearer token leaked into logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_port_health_readiness_and_metrics() {
    let up = Upstream::start().await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let gw = GatewayProcess::start(
        &write_config(
            dir.path(),
            &up,
            &format!("  - name: dead\n    path: /dead\n    upstream: http://{dead}\n"),
        ),
        &[],
    );
    let c = client();
    assert_eq!(
        c.get(format!("{}/healthz", gw.admin))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(format!("{}/readyz", gw.admin))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(format!("{}/api/x", gw.http))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.post(format!("{}/dead", gw.http))
            .send()
            .await
            .unwrap()
            .status(),
        502
    );
    let m = common::scrape(&gw.admin).await;
    assert!(
        m.contains(r#"tollgate_requests_total{route="api",method="read",status="200"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"tollgate_requests_total{route="dead",method="write",status="502"} 1"#),
        "{m}"
    );
    assert!(
        m.contains("tollgate_request_duration_seconds_bucket{route=\"api\""),
        "{m}"
    );
    assert!(m.contains("tollgate_upstream_errors_total"), "{m}");
    // The admin port is not the public port.
    assert_eq!(
        c.get(format!("{}/metrics", gw.http))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_edit_is_logged_with_key_and_line_and_old_config_serves() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &up, "");
    let gw = GatewayProcess::start(&path, &[]);
    let good = std::fs::read_to_string(&path).unwrap();
    // Line 12 gains a key no route has.
    std::fs::write(&path, format!("{good}    upstream_timeout: 5s\n")).unwrap();
    let logs = gw.logs.clone();
    wait_until(
        Duration::from_secs(10),
        "the rejected reload is logged",
        || {
            let logs = logs.clone();
            async move {
                logs.lock()
                    .unwrap()
                    .iter()
                    .any(|l| l.contains("configuration reload rejected"))
            }
        },
    )
    .await;
    let line = gw
        .log_text()
        .lines()
        .find(|l| l.contains("configuration reload rejected"))
        .unwrap()
        .to_string();
    assert!(line.contains("upstream_timeout"), "{line}");
    assert!(line.contains("line 12"), "{line}");
    let r = client()
        .get(format!("{}/api/still", gw.http))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_command_asks_the_admin_port() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &up, "");
    let gw = GatewayProcess::start(&config, &[]);
    let run = |args: Vec<String>| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(args)
            .env_remove("TOLLGATE_CONFIG")
            .output()
            .unwrap()
    };
    let admin = gw.admin.trim_start_matches("http://").to_string();
    let ok = run(vec!["healthcheck".into(), "--addr".into(), admin]);
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");

    // Without --addr it reads listen.admin from the config: port 0 there is not where the
    // gateway listens, so nothing answers and the check fails (exit 1, one line).
    let bad = run(vec![
        "--config".into(),
        config.display().to_string(),
        "healthcheck".into(),
    ]);
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let refused = run(vec!["healthcheck".into(), "--addr".into(), addr.clone()]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains(&addr));
}
