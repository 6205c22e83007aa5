//! Live reload: a valid edit swaps the routes whole with no failed in-flight request; an
//! invalid edit is refused, logged with key and line, counted, and the old config stays.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{client, spawn_proxy_only, Upstream};

fn routes(up: &Upstream, extra: &str) -> String {
    format!(
        "routes:\n  - name: a\n    path: /a\n    upstream: {u}\n{extra}",
        u = up.url()
    )
}

#[tokio::test]
async fn valid_edit_takes_effect_without_restart() {
    let up = Upstream::start().await;
    let gw = spawn_proxy_only(&routes(&up, "")).await;
    let c = client();
    assert_eq!(c.get(gw.url("/b")).send().await.unwrap().status(), 404);
    gw.write_config(&routes(
        &up,
        &format!("  - name: b\n    path: /b\n    upstream: {}\n", up.url()),
    ));
    common::wait_until(Duration::from_secs(10), "route b appears", || {
        let c = c.clone();
        let url = gw.url("/b");
        async move { c.get(url).send().await.unwrap().status() == 200 }
    })
    .await;
    assert_eq!(c.get(gw.url("/a")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn invalid_edit_is_rejected_and_old_config_stays() {
    let up = Upstream::start().await;
    let gw = spawn_proxy_only(&routes(&up, "")).await;
    // An unknown key on line 7 of the written file.
    gw.write_config(&routes(&up, "    bogus_key: 1\n"));
    let err = gw.gateway.app.reload().unwrap_err().to_string();
    assert!(err.contains("bogus_key"), "{err}");
    assert!(err.contains("line"), "{err}");
    let c = client();
    common::wait_until(
        Duration::from_secs(10),
        "the watcher counts a failed reload",
        || {
            let c = c.clone();
            let url = format!("{}/metrics", gw.admin);
            async move {
                let m = c.get(url).send().await.unwrap().text().await.unwrap();
                m.contains(r#"tollgate_config_reloads_total{result="failure"}"#)
            }
        },
    )
    .await;
    assert_eq!(
        c.get(gw.url("/a")).send().await.unwrap().status(),
        200,
        "old routes still live"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_fail_no_in_flight_request() {
    let up = Upstream::start().await;
    let gw = Arc::new(spawn_proxy_only(&routes(&up, "")).await);
    let failures = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));

    // A slow request that spans every reload below.
    let slow = {
        let url = gw.url("/a/delay/1500");
        tokio::spawn(async move { client().get(url).send().await.unwrap().status().as_u16() })
    };
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (gw, failures, done) = (gw.clone(), failures.clone(), done.clone());
        workers.push(tokio::spawn(async move {
            let c = client();
            for _ in 0..100 {
                match c.get(gw.url("/a/x")).send().await {
                    Ok(r) if r.status() == 200 => {}
                    _ => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for i in 0..6 {
        let extra = format!(
            "  - name: extra{i}\n    path: /extra{i}\n    upstream: {}\n",
            up.url()
        );
        gw.write_config(&routes(&up, &extra));
        gw.gateway.app.reload().unwrap();
    }
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(
        slow.await.unwrap(),
        200,
        "a request in flight across reloads completes"
    );
    assert_eq!(done.load(Ordering::Relaxed), 400);
    assert_eq!(failures.load(Ordering::Relaxed), 0);
}

/// A reload to identity header names that would not start is refused, never a panic.
#[tokio::test]
async fn reload_to_a_bad_identity_header_name_is_refused() {
    let up = Upstream::start().await;
    let gw = spawn_proxy_only(&routes(&up, "")).await;
    gw.write_config(&format!(
        "identity_headers:\n  signed_jwt: \"X Identity Token\"\n{}",
        routes(&up, "")
    ));
    let err = gw.gateway.app.reload().unwrap_err().to_string();
    assert!(err.contains("identity_headers.signed_jwt"), "{err}");
    assert_eq!(
        client().get(gw.url("/a")).send().await.unwrap().status(),
        200,
        "old config still serves"
    );
}
