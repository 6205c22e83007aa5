//! Shared integration-test helpers: a gateway started in-process on ephemeral ports from a
//! YAML snippet, and a real upstream server that records what reached it.
#![allow(dead_code)]

pub mod authn;
pub mod chromium;
pub mod connect_gateway;
pub mod dpop;
pub mod fake_provider;
pub mod idp;
pub mod ingress;
pub mod logs;
pub mod oauth;
pub mod pg;
pub mod pki;
pub mod process;
pub mod relay;
pub mod seed;
pub mod upstream;

use std::path::PathBuf;
use std::time::Duration;

use tollgate::app::{Gateway, Services};
use tollgate::config::Config;

#[allow(unused_imports)]
pub use upstream::Upstream;

/// A running gateway and the temp dir holding its config and data.
pub struct TestGateway {
    pub gateway: Gateway,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// `http://127.0.0.1:PORT` of the admin port.
    pub admin: String,
}

impl TestGateway {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Rewrites the config file (live reload picks it up).
    pub fn write_config(&self, yaml: &str) {
        let text = complete_yaml(yaml, self.dir.path());
        // Write then rename, as editors do, so the watcher never sees a half file.
        let tmp = self.dir.path().join(".tollgate.yaml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.config_path).unwrap();
    }
}

/// A loopback port nothing listens on now, for a server that must be named before it
/// starts (an issuer that is the gateway's own address, a proxy's config file).
///
/// Taken below the kernel's ephemeral range: a port from `bind(:0)` is free only until it
/// is released, and in the gap before the server binds it any outgoing connection of a
/// test running beside it may get it as its local port ("Address already in use", seen
/// in CI). Outgoing connections never get a port below the range. Each call in a process
/// tries the next port of a sequence that starts at an offset of the process id, so
/// concurrent tests, and test binaries, do not pick the same one.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const BASE: u32 = 10_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    if low > BASE + 1_000 {
        let span = low - BASE;
        let _ = NEXT.compare_exchange(
            u32::MAX,
            std::process::id().wrapping_mul(7_919) % span,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        for _ in 0..span {
            let port = BASE + NEXT.fetch_add(1, Ordering::Relaxed) % span;
            if std::net::TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
                return port as u16;
            }
        }
    }
    // An unusual ephemeral range: any free port.
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Fills in what a test snippet leaves out: loopback listeners on port 0 and a store in
/// the temp dir.
pub fn complete_yaml(yaml: &str, dir: &std::path::Path) -> String {
    let mut text = String::new();
    if !yaml.contains("listen:") {
        text.push_str("listen:\n  http: 127.0.0.1:0\n  admin: 127.0.0.1:0\n");
    }
    if !yaml.contains("store:") {
        text.push_str(&format!(
            "store:\n  url: sqlite://{}/tollgate.db\n",
            dir.display()
        ));
    }
    text.push_str(yaml);
    text
}

/// Starts a gateway with everything `app::wiring::build` wires for this config.
pub async fn spawn_gateway(yaml: &str) -> TestGateway {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("tollgate.yaml");
    std::fs::write(&config_path, complete_yaml(yaml, dir.path())).unwrap();
    let cfg = Config::load(&config_path).unwrap_or_else(|e| panic!("{e}"));
    let services = tollgate::app::wiring::build(&cfg)
        .await
        .unwrap_or_else(|e| panic!("services: {e}"));
    start(cfg, services, dir, config_path).await
}

/// Starts a proxy-only gateway (no token service).
pub async fn spawn_proxy_only(yaml: &str) -> TestGateway {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("tollgate.yaml");
    std::fs::write(&config_path, complete_yaml(yaml, dir.path())).unwrap();
    let cfg = Config::load(&config_path).unwrap_or_else(|e| panic!("{e}"));
    start(cfg, Services::proxy_only(), dir, config_path).await
}

/// Starts a gateway from a loaded config and its services; `dir` is kept alive with it.
pub async fn start(
    cfg: Config,
    services: Services,
    dir: tempfile::TempDir,
    config_path: PathBuf,
) -> TestGateway {
    let gateway = Gateway::start(cfg, services)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let base = format!("http://{}", gateway.http_addr.unwrap());
    let admin = format!("http://{}", gateway.admin_addr.unwrap());
    TestGateway {
        gateway,
        dir,
        config_path,
        base,
        admin,
    }
}

/// The claims of a JWT, read without verifying it (what a test asserts on).
pub fn jwt_claims(token: &str) -> serde_json::Value {
    use base64::Engine;
    let part = token.split('.').nth(1).expect("a JWT has a payload");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .expect("the payload is base64url"),
    )
    .expect("the payload is JSON")
}

/// A plain HTTP/1.1 client that never follows redirects and has no proxy.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Polls `cond` every 20 ms until it is true or `within` passes; panics with `what`.
pub async fn wait_until<F, Fut>(within: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if cond().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The status of `GET url` with `Authorization: Bearer token`.
pub async fn bearer_status(url: &str, token: &str) -> u16 {
    client()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The admin port's `/metrics` text.
pub async fn scrape(admin: &str) -> String {
    client()
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The sum of the Prometheus samples whose line starts with `prefix` (0 when none).
pub async fn metric(admin: &str, prefix: &str) -> f64 {
    scrape(admin)
        .await
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
