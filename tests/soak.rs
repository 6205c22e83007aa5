//! A short soak of the real binary: proxied JWT traffic from a pool of users, token
//! requests and config reloads, with and without a `/metrics` scraper. After warm-up the
//! resident memory stays within a fixed band, and once the clients close no file
//! descriptor is left behind. (bench/run holds the long form; this one is bounded to keep
//! CI short.)

mod common;

use std::time::Duration;

use common::authn::{claims, rsa_pair, sign, ISSUER};
use common::process::GatewayProcess;
use common::{client, wait_until, Upstream};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

fn config(dir: &std::path::Path, up: &Upstream, extra: &str) -> String {
    let key = dir.join("signing.pem");
    std::fs::write(&key, &rsa_pair().0).unwrap();
    format!(
        "listen:\n  http: 127.0.0.1:0\n  admin: 127.0.0.1:0\nstore:\n  url: sqlite://{d}/t.db\ntokens:\n  issuer: {ISSUER}\n  audience: tollgate\n  signing:\n    alg: RS256\n    key_file: {k}\nlog:\n  access_log: false\nroutes:\n  - {{ name: api, path: /api, upstream: \"{u}\", auth: required }}\n{extra}",
        d = dir.display(),
        k = key.display(),
        u = up.url()
    )
}

/// `n` requests from 16 concurrent clients, each request with a token from the pool.
async fn load(base: &str, tokens: &[String], n: usize) {
    let per = n / 16;
    let mut tasks = Vec::new();
    for w in 0..16 {
        let url = format!("{base}/api/x");
        let tokens: Vec<String> = tokens.to_vec();
        tasks.push(tokio::spawn(async move {
            let c = client();
            for i in 0..per {
                let t = &tokens[(w * per + i) % tokens.len()];
                let s = c.get(&url).bearer_auth(t).send().await.unwrap().status();
                assert_eq!(s, 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_and_descriptors_stay_flat_under_sustained_load() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tollgate.yaml");
    std::fs::write(&path, config(dir.path(), &up, "")).unwrap();
    let gw = GatewayProcess::start(&path, &[]);
    let pid = gw.child.id();

    // A pool of 500 users' tokens, each signed once (as the token service would).
    let key = EncodingKey::from_rsa_pem(rsa_pair().0.as_bytes()).unwrap();
    let kid = tollgate::keys::KeySet::load(
        &tollgate::config::Config::from_yaml_with_env(&config(dir.path(), &up, ""), None)
            .unwrap()
            .tokens,
        &dir.path().join("keys"),
    )
    .unwrap()
    .kid()
    .to_string();
    let tokens: Vec<String> = (0..500)
        .map(|i| {
            let mut h = Header::new(Algorithm::RS256);
            h.kid = Some(kid.clone());
            h.typ = Some("at+jwt".into());
            sign(
                &h,
                &claims(json!({"sub": format!("user-{i}"), "exp": common::authn::now() + 3600})),
                &key,
            )
        })
        .collect();

    let fds_idle = open_fds(pid);
    // Warm-up: caches, pools and allocator arenas reach their working size.
    load(&gw.http, &tokens, 4_000).await;
    let warm = rss_kib(pid);
    let mut peak = warm;
    // Four rounds here; `bench/run --soak MINUTES` sets BENCH_SOAK_SECS (not TOLLGATE_*,
    // which the gateway reads as config overrides) for the long form, which keeps going
    // round until that time has passed.
    let soak_for = std::env::var("BENCH_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs);
    let started = std::time::Instant::now();
    let mut round = 0;
    while match soak_for {
        Some(d) => started.elapsed() < d,
        None => round < 4,
    } {
        load(&gw.http, &tokens, 4_000).await;
        // Half the rounds with a scraper, half without: the recorder's upkeep, not the
        // scrape, is what keeps histogram samples from piling up.
        if round % 2 == 0 {
            let m = client()
                .get(format!("{}/metrics", gw.admin))
                .send()
                .await
                .unwrap();
            assert_eq!(m.status(), 200);
        }
        // A config reload each round (same routes, rewritten file).
        std::fs::write(
            &path,
            config(dir.path(), &up, &format!("# round {round}\n")),
        )
        .unwrap();
        peak = peak.max(rss_kib(pid));
        round += 1;
    }
    // A few token requests (failed sign-ins: no user exists), which touch the store and
    // the hashing threads.
    for _ in 0..5 {
        client()
            .post(format!("{}/oauth/token", gw.http))
            .form(&[
                ("grant_type", "password"),
                ("username", "nobody"),
                ("password", "x"),
            ])
            .send()
            .await
            .unwrap();
    }
    let growth = peak.saturating_sub(warm);
    let requests = round * 4_000;
    println!(
        "soak: {round} rounds, {requests} requests after warm-up, RSS {warm} KiB warm, {peak} KiB peak, {} s",
        started.elapsed().as_secs()
    );
    assert!(
        growth < 24 * 1024,
        "RSS grew {growth} KiB over {requests} requests after warm-up ({warm} → {peak} KiB)"
    );

    // Every client connection closed (80 were opened over the rounds): the descriptors
    // return to where they were, plus at most the pooled keep-alive connections to the
    // upstream (one per concurrent client on each serving thread) and the store's.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let bound = fds_idle + 16 * workers + 8;
    wait_until(Duration::from_secs(20), "connections closed", || {
        let n = open_fds(pid);
        async move { n <= bound }
    })
    .await;
}
