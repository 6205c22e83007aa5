//! Real nginx and Caddy processes in front of Tollgate, started from the snippets in
//! `docs/ingress/` (templated with ephemeral ports), each in its own temp dir.

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

/// Finds an executable on PATH or in the usual sbin directories.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The snippet `docs/ingress/<file>` with its placeholders filled.
pub fn snippet(file: &str, listen: &str, tollgate: &str, upstream: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/ingress")
        .join(file);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .replace("{{listen}}", listen)
        .replace("{{tollgate}}", tollgate)
        .replace("{{upstream}}", upstream)
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
    let Some(bin) = find_binary("nginx") else {
        eprintln!("SKIP: nginx is not installed");
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let port = free_port();
    let server = snippet(
        "nginx.conf",
        &format!("127.0.0.1:{port}"),
        tollgate,
        upstream,
    );
    let conf = format!(
        "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\n{server}\n}}\n"
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
