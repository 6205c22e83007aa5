//! Real OpenID Connect relying parties signing in through Tollgate's hosted login page,
//! end to end: the gateway runs as the built binary, the user and the clients are made
//! with `tollgate users create` / `tollgate clients create`, and each relying party finds
//! everything else from the issuer URL. A headless Chromium (Debian's, driven by
//! Playwright from `tests/rp/login.mjs`) fills the login form as a person would.
//!
//! - openid-client 6 (npm): discovery, code + PKCE S256, ID token validation, userinfo,
//!   refresh with rotation, single sign-on for a second client, RP-initiated logout,
//!   `prompt=none` refused afterwards (`tests/rp/openid_client.mjs`);
//! - Authlib (PyPI): the same code flow with a confidential client, its own ID token
//!   validation against the JWKS (`tests/rp/authlib_client.py`);
//! - Apache httpd with mod_auth_openidc (Debian): a protected page that shows the claims,
//!   sign-out, and the login form again after it (`tests/rp/apache/`).
//!
//! `.ci/run` installs all of it; each test prints `SKIP: reason` and passes when one of
//! its tools is missing. Two more tests check the tools alone, with no gateway: Chromium
//! starts with the harness's flags, and the Apache template loads mod_auth_openidc.

#[allow(unused_imports)] // shared helpers this test does not use
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::process::GatewayProcess;
use serde_json::Value;

const EMAIL: &str = "ann@example.com";
const USERNAME: &str = "ann";
const PASSWORD: &str = "correct horse battery staple";
/// What the relying parties ask for, and so what their clients are allowed.
const SCOPES: &str = "openid email profile";
/// The whole run of one relying party; each of its own steps has a 30 s bound.
const RP_DEADLINE: Duration = Duration::from_secs(240);
/// Proxy settings from the caller's environment must not reach a child: everything here
/// talks to 127.0.0.1.
const PROXY_VARS: &[&str] = &[
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
];

fn rp_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rp")
}

use common::free_port;

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// Returns from the test with `SKIP: reason` when a tool is missing.
macro_rules! or_skip {
    ($tools:expr) => {
        match $tools {
            Ok(t) => t,
            Err(why) => {
                eprintln!("SKIP: {why}");
                return;
            }
        }
    };
}

/// Node with tests/rp's npm packages, and a Chromium for Playwright to drive; holding
/// them is this test's turn with the browser (see [`browser_turn`]).
struct BrowserTools {
    node: PathBuf,
    chromium: PathBuf,
    _turn: std::sync::MutexGuard<'static, ()>,
}

/// One relying party with its browser at a time: each runs Node, Chromium, a gateway and
/// often Apache or Python, and the test harness starts as many tests at once as the
/// machine has cores; nine of them side by side can exhaust a CI runner's memory. A test
/// that failed (a poisoned lock) does not stop the others.
fn browser_turn() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn browser_tools() -> Result<BrowserTools, String> {
    let node = on_path("node").ok_or("node is not installed")?;
    // playwright-core and openid-client 6 need Node 20 or later.
    let version = Command::new(&node)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < 20 {
        return Err(format!("node {version:?} is older than 20"));
    }
    for pkg in ["playwright-core", "openid-client"] {
        if !rp_dir()
            .join("node_modules")
            .join(pkg)
            .join("package.json")
            .is_file()
        {
            return Err(format!(
                "tests/rp/node_modules/{pkg} is missing (npm ci in tests/rp; see .ci/run)"
            ));
        }
    }
    let chromium = common::chromium::binary()
        .ok_or("no Chromium binary (install chromium or set CHROMIUM_BIN)")?;
    Ok(BrowserTools {
        node,
        chromium,
        _turn: browser_turn(),
    })
}

/// A Python with Authlib and requests: the CI venv's, else the one on PATH.
fn authlib_python() -> Result<PathBuf, String> {
    let candidates = [
        Some(Path::new(common::ingress::CI_TOOLS).join("python")),
        on_path("python3"),
    ];
    for py in candidates.into_iter().flatten().filter(|p| p.is_file()) {
        let ok = Command::new(&py)
            .args(["-c", "import authlib, requests"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(py);
        }
    }
    Err(
        "no Python with authlib and requests (pip Authlib into /opt/tollgate-ci/venv; see .ci/run)"
            .into(),
    )
}

/// Debian's apache2 and the directory holding mod_auth_openidc.so.
struct ApacheTools {
    apache2: PathBuf,
    modules: PathBuf,
}

fn apache_tools() -> Result<ApacheTools, String> {
    let apache2 = std::env::var_os("APACHE2_BIN")
        .map(PathBuf::from)
        .or_else(|| common::ingress::find_binary("apache2"))
        .filter(|p| p.is_file())
        .ok_or("apache2 is not installed (apt apache2; see .ci/run)")?;
    let modules = PathBuf::from("/usr/lib/apache2/modules");
    if !modules.join("mod_auth_openidc.so").is_file() {
        return Err("mod_auth_openidc is not installed (apt libapache2-mod-auth-openidc)".into());
    }
    Ok(ApacheTools { apache2, modules })
}

/// The gateway's temp dir and config, its CLI, and (once started) the process. The port is
/// chosen first: `tokens.issuer` is the gateway's own URL, written into the config.
struct Tollgate {
    dir: tempfile::TempDir,
    config: PathBuf,
    issuer: String,
    process: Option<GatewayProcess>,
}

impl Tollgate {
    fn new() -> Tollgate {
        Tollgate::with_config(|_| String::new())
    }

    /// As `new`, with more YAML appended; `extra` gets the issuer (the gateway's own URL).
    fn with_config(extra: impl FnOnce(&str) -> String) -> Tollgate {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let issuer = format!("http://127.0.0.1:{port}");
        let config = dir.path().join("tollgate.yaml");
        std::fs::write(
            &config,
            format!(
                "listen:\n  http: 127.0.0.1:{port}\n  admin: 127.0.0.1:0\n\
                 store:\n  url: sqlite://{}/data/tollgate.db\n\
                 tokens:\n  issuer: {issuer}\n  audience: tollgate\n\
                 token_endpoints:\n  - path: /oauth/token\n  - path: /oauth/authorize\n{}",
                dir.path().display(),
                extra(&issuer)
            ),
        )
        .unwrap();
        Tollgate {
            dir,
            config,
            issuer,
            process: None,
        }
    }

    /// `tollgate --config … ARGS` with `stdin`; its stdout as JSON, or a panic naming why.
    fn cli(&self, args: &[&str], stdin: Option<&str>) -> Value {
        let out = common::process::run_cli(&self.config, args, stdin);
        assert!(
            out.status.success(),
            "tollgate {args:?} exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "tollgate {args:?} printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Ann, with a password; returns the `sub` Tollgate gives her (her user id).
    fn create_user(&self) -> String {
        let user = self.cli(
            &[
                "users",
                "create",
                "--email",
                EMAIL,
                "--username",
                USERNAME,
                "--password-stdin",
            ],
            Some(&format!("{PASSWORD}\n")),
        );
        match &user["id"] {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            other => panic!("users create printed id {other}"),
        }
    }

    /// A first-party client for the authorization code flow; confidential (secret read from
    /// stdin, client_secret_basic) when `secret` is given, else public.
    fn create_client(
        &self,
        id: &str,
        secret: Option<&str>,
        redirect_uri: &str,
        post_logout_redirect_uri: Option<&str>,
    ) {
        let mut args = vec!["clients", "create", "--id", id];
        match secret {
            Some(_) => args.extend(["--secret-stdin", "--auth-method", "client_secret_basic"]),
            None => args.push("--public"),
        }
        args.extend(["--redirect-uri", redirect_uri]);
        if let Some(uri) = post_logout_redirect_uri {
            args.extend(["--post-logout-redirect-uri", uri]);
        }
        args.extend(["--first-party", "--scopes", SCOPES]);
        let client = self.cli(&args, secret.map(|s| format!("{s}\n")).as_deref());
        assert_eq!(client["id"], id, "{client}");
    }

    fn start(&mut self) {
        let process = GatewayProcess::start(&self.config, &[]);
        assert_eq!(
            process.http, self.issuer,
            "the gateway bound its issuer's port"
        );
        self.process = Some(process);
    }

    fn log_tail(&self) -> String {
        let Some(p) = &self.process else {
            return String::new();
        };
        let text = p.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

/// A relying party run to its end (bounded), in its own process group so that the
/// browsers it started go with it when it has to be stopped.
struct RpRun {
    status: Option<std::process::ExitStatus>,
    stdout: String,
    stderr: String,
}

fn run_rp(mut cmd: Command, dir: &Path, envs: &[(&str, &str)]) -> RpRun {
    let out_path = dir.join("rp.stdout");
    let err_path = dir.join("rp.stderr");
    for v in PROXY_VARS {
        cmd.env_remove(v);
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.current_dir(rp_dir())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .process_group(0);
    let mut child = cmd.spawn().expect("start the relying party");
    let deadline = Instant::now() + RP_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            kill_group(&mut child);
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    RpRun {
        status,
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    }
}

/// SIGKILL to the child's own process group (its id), then reap it.
///
/// The `--` is load-bearing: procps-ng's kill (4.0.2, Debian 12) reads `kill -KILL -10`
/// as `kill(-1, SIGKILL)`, which as root is every process on the machine; `kill -KILL --
/// -10` signals process group 10 as meant.
fn kill_group(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

impl RpRun {
    /// The relying party's JSON summary; panics with its stderr and the gateway's log
    /// when it failed.
    fn summary(&self, what: &str, gateway: &Tollgate, extra: &str) -> Value {
        let ok = self.status.is_some_and(|s| s.success());
        if !ok {
            panic!(
                "{what} {}:\n--- stderr\n{}\n--- stdout\n{}\n--- gateway log (tail)\n{}{extra}",
                match self.status {
                    Some(s) => format!("exited with {s}"),
                    None => format!("did not finish within {RP_DEADLINE:?}"),
                },
                self.stderr.trim(),
                self.stdout.trim(),
                gateway.log_tail(),
            );
        }
        let line = self.stdout.lines().last().unwrap_or_default();
        serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{what} printed no JSON summary ({e}): {}", self.stdout))
    }
}

fn node_cmd(tools: &BrowserTools, script: &str) -> Command {
    let mut cmd = Command::new(&tools.node);
    cmd.arg(rp_dir().join(script));
    cmd.env("CHROMIUM_BIN", &tools.chromium);
    cmd
}

/// `aud` is the client, as a string or a one-element array.
fn audience_is(aud: &Value, client_id: &str) -> bool {
    aud == client_id
        || aud
            .as_array()
            .is_some_and(|a| a.len() == 1 && a[0] == client_id)
}

/// The ID token claims every relying party here must have been given.
fn assert_id_token(s: &Value, issuer: &str, sub: &str, client_id: &str) {
    let header = &s["id_token_header"];
    assert_eq!(header["alg"], "RS256", "ID token header {header}");
    assert_eq!(header["typ"], "JWT", "ID token header {header}");
    assert!(header["kid"].is_string(), "ID token header {header}");
    let c = &s["claims"];
    assert_eq!(c["iss"], issuer, "claims {c}");
    assert_eq!(c["sub"], sub, "claims {c}");
    assert!(audience_is(&c["aud"], client_id), "aud of {c}");
    assert_eq!(c["azp"], client_id, "claims {c}");
    // The library compared nonce with the one it sent; it must be there to compare.
    assert!(
        c["nonce"].as_str().is_some_and(|n| !n.is_empty()),
        "claims {c}"
    );
    let (iat, exp) = (c["iat"].as_i64().unwrap(), c["exp"].as_i64().unwrap());
    assert!(exp > iat, "claims {c}");
    let auth_time = c["auth_time"].as_i64().expect("auth_time");
    assert!(auth_time <= iat + 5, "auth_time after iat: {c}");
    assert!(c["at_hash"].is_string(), "claims {c}");
    assert!(
        c["amr"].as_array().is_some_and(|a| !a.is_empty()),
        "amr in {c}"
    );
    assert_eq!(
        s["authorization_response"]["iss"], issuer,
        "RFC 9207 iss: {s}"
    );
    assert_eq!(s["authorization_response"]["has_code"], true, "{s}");
}

fn assert_userinfo(u: &Value, sub: &str) {
    assert_eq!(u["sub"], sub, "userinfo {u}");
    assert_eq!(u["email"], EMAIL, "userinfo {u}");
    assert!(u["email_verified"].is_boolean(), "userinfo {u}");
    assert_eq!(u["preferred_username"], USERNAME, "userinfo {u}");
    assert_eq!(u["role"], "default", "userinfo {u}");
}

fn assert_refresh(s: &Value, sub: &str) {
    let r = &s["refreshed"];
    assert_eq!(r["rotated"], true, "the refresh token was not rotated: {r}");
    assert_eq!(r["new_access_token"], true, "{r}");
    assert_eq!(r["userinfo_sub"], sub, "{r}");
    let old = &s["old_refresh_token"];
    assert_eq!(
        old["refused"], true,
        "the rotated-out refresh token still works: {old}"
    );
    assert_eq!(old["error"], "invalid_grant", "{old}");
}

#[test]
fn openid_client_signs_in_validates_the_id_token_refreshes_and_signs_out() {
    let tools = or_skip!(browser_tools());
    let mut gw = Tollgate::new();
    let sub = gw.create_user();
    // Nothing listens on the redirect URI: login.mjs reads the code from the redirect
    // inside the browser, as a native app would.
    let rp_base = format!("http://127.0.0.1:{}", free_port());
    let redirect_uri = format!("{rp_base}/cb");
    let post_logout = format!("{rp_base}/signed-out");
    gw.create_client("rp", None, &redirect_uri, Some(&post_logout));
    gw.create_client("rp-second", None, &redirect_uri, None);
    gw.start();

    let mut cmd = node_cmd(&tools, "openid_client.mjs");
    cmd.args([
        "--issuer",
        &gw.issuer,
        "--client-id",
        "rp",
        "--sso-client-id",
        "rp-second",
        "--redirect-uri",
        &redirect_uri,
        "--post-logout-redirect-uri",
        &post_logout,
        "--username",
        USERNAME,
        "--scope",
        SCOPES,
    ]);
    let run = run_rp(cmd, gw.dir.path(), &[("RP_PASSWORD", PASSWORD)]);
    let s = run.summary("openid_client.mjs", &gw, "");

    let iss = gw.issuer.as_str();
    assert_eq!(s["issuer"], iss);
    let d = &s["discovery"];
    assert_eq!(
        d["authorization_endpoint"],
        format!("{iss}/oauth/authorize"),
        "{d}"
    );
    assert_eq!(d["token_endpoint"], format!("{iss}/oauth/token"), "{d}");
    assert_eq!(
        d["userinfo_endpoint"],
        format!("{iss}/oauth/userinfo"),
        "{d}"
    );
    assert_eq!(
        d["end_session_endpoint"],
        format!("{iss}/oauth/logout"),
        "{d}"
    );
    assert!(d["jwks_uri"].is_string(), "{d}");
    assert_eq!(
        d["code_challenge_methods_supported"],
        serde_json::json!(["S256"]),
        "{d}"
    );
    assert_eq!(
        d["authorization_response_iss_parameter_supported"], true,
        "{d}"
    );

    assert_id_token(&s, iss, &sub, "rp");
    assert_eq!(
        s["at_hash_ok"], true,
        "at_hash does not match the access token: {s}"
    );
    assert_userinfo(&s["userinfo"], &sub);
    assert_refresh(&s, &sub);

    // The browser session signed the second client in without the form, as the same
    // person and the same authentication.
    let sso = &s["sso"];
    assert_eq!(sso["client_id"], "rp-second", "{sso}");
    assert_eq!(sso["sub"], sub.as_str(), "{sso}");
    assert!(audience_is(&sso["aud"], "rp-second"), "{sso}");
    assert_eq!(sso["auth_time"], s["claims"]["auth_time"], "{sso}");

    // RP-initiated logout ends that session: prompt=none now gets login_required.
    let out = &s["logout"];
    assert_eq!(out["redirected_to"], post_logout.as_str(), "{out}");
    assert_eq!(out["state_ok"], true, "{out}");
    let after = &s["after_logout"];
    assert_eq!(after["error"], "login_required", "{after}");
    assert_eq!(after["code"], false, "{after}");
    assert_eq!(after["state_ok"], true, "{after}");
    assert_eq!(after["iss"], iss, "{after}");
}

#[test]
fn authlib_signs_in_with_pkce_validates_the_id_token_against_the_jwks_and_refreshes() {
    let tools = or_skip!(browser_tools());
    let python = or_skip!(authlib_python());
    let mut gw = Tollgate::new();
    let sub = gw.create_user();
    let rp_base = format!("http://127.0.0.1:{}", free_port());
    let redirect_uri = format!("{rp_base}/authlib/callback");
    let post_logout = format!("{rp_base}/authlib/signed-out");
    let secret = "authlib-client-secret-0123456789";
    gw.create_client("authlib", Some(secret), &redirect_uri, Some(&post_logout));
    gw.start();

    let mut cmd = Command::new(&python);
    cmd.arg(rp_dir().join("authlib_client.py")).args([
        "--issuer",
        &gw.issuer,
        "--client-id",
        "authlib",
        "--redirect-uri",
        &redirect_uri,
        "--post-logout-redirect-uri",
        &post_logout,
        "--username",
        USERNAME,
        "--scope",
        SCOPES,
    ]);
    let node = tools.node.to_string_lossy().into_owned();
    let chromium = tools.chromium.to_string_lossy().into_owned();
    let run = run_rp(
        cmd,
        gw.dir.path(),
        &[
            ("RP_PASSWORD", PASSWORD),
            ("RP_CLIENT_SECRET", secret),
            ("NODE", &node),
            ("CHROMIUM_BIN", &chromium),
        ],
    );
    let s = run.summary("authlib_client.py", &gw, "");

    let iss = gw.issuer.as_str();
    assert_eq!(s["issuer"], iss);
    assert_id_token(&s, iss, &sub, "authlib");
    assert_userinfo(&s["userinfo"], &sub);
    assert_refresh(&s, &sub);
    let out = &s["logout"];
    assert!(
        matches!(out["status"].as_u64(), Some(302 | 303)),
        "logout with Authlib's URL: {out}"
    );
    assert_eq!(out["redirected_to"], post_logout.as_str(), "{out}");
    assert_eq!(out["state_ok"], true, "{out}");
}

/// Apache in the foreground (`-X`) from `tests/rp/apache/`, in its own temp dir.
struct Apache {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Drop for Apache {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Apache {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn error_log(&self) -> String {
        let mut out = String::new();
        for f in ["logs/error.log", "stderr.log", "logs/access.log"] {
            let text = std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
            out.push_str(&format!("\n--- apache {f}\n{text}"));
        }
        out
    }
}

/// The template's files in a new temp dir, every placeholder filled. As root, Apache serves
/// as www-data, so the tree is world-readable (the config, holding the secrets, stays
/// root's: it is read before the switch).
fn render_apache(tools: &ApacheTools, port: u16, vars: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let root_str = root.to_str().unwrap().to_string();
    let logout_url = format!(
        "/oidc/callback?logout={}",
        url_encode(&format!("http://127.0.0.1:{port}/loggedout.html"))
    );
    let port_str = port.to_string();
    let modules = tools.modules.to_str().unwrap().to_string();
    let mut all: Vec<(&str, &str)> = vec![
        ("SERVER_ROOT", &root_str),
        ("PORT", &port_str),
        ("MODULES", &modules),
        ("USER", "www-data"),
        ("GROUP", "www-data"),
        ("LOGOUT_URL", &logout_url),
    ];
    all.extend_from_slice(vars);
    let fill = |text: &str| {
        let mut t = text.to_string();
        for (k, v) in &all {
            t = t.replace(&format!("{{{{{k}}}}}"), v);
        }
        assert!(!t.contains("{{"), "unfilled placeholder in:\n{t}");
        t
    };
    let src = rp_dir().join("apache");
    for sub in ["run", "logs", "htdocs/app"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    std::fs::write(
        root.join("httpd.conf"),
        fill(&std::fs::read_to_string(src.join("httpd.conf")).unwrap()),
    )
    .unwrap();
    for page in ["htdocs/app/index.shtml", "htdocs/loggedout.html"] {
        std::fs::write(
            root.join(page),
            fill(&std::fs::read_to_string(src.join(page)).unwrap()),
        )
        .unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    for d in [
        root.to_path_buf(),
        root.join("htdocs"),
        root.join("htdocs/app"),
    ] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for f in ["htdocs/app/index.shtml", "htdocs/loggedout.html"] {
        std::fs::set_permissions(root.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    dir
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The status of `GET path` on 127.0.0.1:port (HTTP/1.0), or `None` if nothing answers.
fn status_of(port: u16, path: &str) -> Option<u16> {
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

/// Renders the template for `port` and runs Apache on it until it serves (bounded).
fn start_apache(tools: &ApacheTools, port: u16, vars: &[(&str, &str)]) -> Apache {
    let dir = render_apache(tools, port, vars);
    let mut cmd = Command::new(&tools.apache2);
    cmd.arg("-X")
        .arg("-f")
        .arg(dir.path().join("httpd.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap());
    for v in PROXY_VARS {
        cmd.env_remove(v);
    }
    let child = cmd.spawn().expect("start apache2");
    let mut apache = Apache { child, dir, port };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if status_of(port, "/loggedout.html") == Some(200) {
            return apache;
        }
        if let Ok(Some(status)) = apache.child.try_wait() {
            panic!("apache2 exited with {status}:{}", apache.error_log());
        }
        if Instant::now() > deadline {
            panic!("apache2 did not serve within 30 s:{}", apache.error_log());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn apache_mod_auth_openidc_protects_a_page_with_tollgate_and_signs_out() {
    let browser = or_skip!(browser_tools());
    let tools = or_skip!(apache_tools());
    let mut gw = Tollgate::new();
    let sub = gw.create_user();
    // Apache's port is part of the client's redirect URIs, so it is chosen first.
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let secret = "apache-client-secret-0123456789";
    gw.create_client(
        "apache",
        Some(secret),
        &format!("{base}/oidc/callback"),
        Some(&format!("{base}/loggedout.html")),
    );
    gw.start();
    // mod_auth_openidc encrypts its cookies with this.
    let passphrase = uuid::Uuid::new_v4().simple().to_string();
    let apache = start_apache(
        &tools,
        port,
        &[
            ("ISSUER", &gw.issuer),
            ("CLIENT_ID", "apache"),
            ("CLIENT_SECRET", secret),
            ("PASSPHRASE", &passphrase),
        ],
    );

    let mut cmd = node_cmd(&browser, "apache_session.mjs");
    let (app, signed_out) = (apache.url("/app/"), apache.url("/loggedout.html"));
    cmd.args([
        "--app",
        &app,
        "--signed-out",
        &signed_out,
        "--username",
        USERNAME,
    ]);
    let run = run_rp(cmd, gw.dir.path(), &[("RP_PASSWORD", PASSWORD)]);
    let log = apache.error_log();
    let s = run.summary("apache_session.mjs", &gw, &log);

    assert!(s["landed"].as_str().unwrap().starts_with(&app), "{s}");
    let c = &s["claims"];
    assert_eq!(c["sub"], sub.as_str(), "the page shows {c}{log}");
    assert_eq!(c["email"], EMAIL, "the page shows {c}");
    assert_eq!(c["remote_user"], EMAIL, "the page shows {c}");
    assert_eq!(c["preferred_username"], USERNAME, "the page shows {c}");
    assert_eq!(c["iss"], gw.issuer.as_str(), "the page shows {c}");
    assert_eq!(
        s["reopened_sub"],
        sub.as_str(),
        "the Apache session reopens the page: {s}"
    );
    assert!(
        s["signed_out"].as_str().unwrap().starts_with(&signed_out),
        "sign-out ended on {}",
        s["signed_out"]
    );
    assert!(
        s["signed_out_text"]
            .as_str()
            .unwrap()
            .contains("Signed out"),
        "{s}"
    );
    let after = &s["after_logout"];
    assert_eq!(
        after["asked_for_login"], true,
        "after sign-out the page still opens: {after}"
    );
    assert!(
        after["url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/oauth/authorize", gw.issuer)),
        "after sign-out the browser is at {after}"
    );
}

#[test]
fn chromium_starts_with_the_harness_flags_and_fills_a_static_form() {
    let tools = or_skip!(browser_tools());
    let dir = tempfile::tempdir().unwrap();
    let run = run_rp(node_cmd(&tools, "selfcheck.mjs"), dir.path(), &[]);
    assert!(
        run.status.is_some_and(|s| s.success()),
        "selfcheck.mjs failed ({:?}): {}\n{}",
        run.status,
        run.stderr,
        run.stdout
    );
    let s: Value = serde_json::from_str(run.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(
        s["posted"], "username=ann&password=static+page+password",
        "{s}"
    );
}

#[test]
fn apache_template_loads_mod_auth_openidc() {
    let tools = or_skip!(apache_tools());
    let dir = render_apache(
        &tools,
        free_port(),
        &[
            ("ISSUER", "http://127.0.0.1:9"),
            ("CLIENT_ID", "apache"),
            ("CLIENT_SECRET", "not-used-by-a-config-check"),
            ("PASSPHRASE", "not-used-by-a-config-check"),
        ],
    );
    let out = Command::new(&tools.apache2)
        .arg("-f")
        .arg(dir.path().join("httpd.conf"))
        .arg("-M")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "apache2 -M: {text}");
    for module in ["auth_openidc_module", "include_module", "authz_user_module"] {
        assert!(text.contains(module), "{module} not loaded: {text}");
    }
}

/// Clickjacking: a page of another origin frames the login page; Chromium must refuse to
/// render it (`frame-ancestors 'none'`, `X-Frame-Options: DENY`), while the same harness
/// does render a frameable document (the control), so a blank result cannot pass by
/// accident.
#[test]
fn chromium_refuses_to_show_the_login_page_in_a_frame() {
    let tools = or_skip!(browser_tools());
    let mut gw = Tollgate::new();
    gw.create_user();
    let redirect_uri = format!("http://127.0.0.1:{}/cb", free_port());
    gw.create_client("rp", None, &redirect_uri, None);
    gw.start();
    let login_url = format!(
        "{}/oauth/authorize?response_type=code&client_id=rp&redirect_uri={}&scope=openid\
         &state=s&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM\
         &code_challenge_method=S256",
        gw.issuer,
        url_encode(&redirect_uri)
    );
    let control_url = format!("{}/.well-known/openid-configuration", gw.issuer);
    let mut cmd = node_cmd(&tools, "frame.mjs");
    cmd.args(["--login-url", &login_url, "--control-url", &control_url]);
    let run = run_rp(cmd, gw.dir.path(), &[]);
    let s = run.summary("frame.mjs", &gw, "");
    let control = &s["control"];
    assert_eq!(control["url"], control_url.as_str(), "{s}");
    assert!(
        control["text"]
            .as_str()
            .unwrap()
            .contains("authorization_endpoint"),
        "the control frame shows the document: {s}"
    );
    let login = &s["login"];
    assert_eq!(
        login["password_fields"], 0,
        "the login form rendered in a frame: {s}"
    );
    assert!(
        !login["text"].as_str().unwrap().contains("Sign in"),
        "the login page's text is visible in the frame: {s}"
    );
    assert!(
        login["console"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m.as_str().unwrap().contains("frame-ancestors 'none'")),
        "Chromium names the policy that refused the frame: {s}"
    );
}

/// The MCP TypeScript SDK's own server as an upstream: started, its port read from its
/// first line, killed (with its process group) when dropped.
struct McpServer {
    child: Child,
    port: u16,
}

impl McpServer {
    fn start(tools: &BrowserTools, dir: &Path) -> McpServer {
        let out = dir.join("mcp_server.out");
        let mut child = node_cmd(tools, "mcp_server.mjs");
        for v in PROXY_VARS {
            child.env_remove(v);
        }
        let mut child = child
            .current_dir(rp_dir())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .expect("start the MCP server");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            if let Some(port) = text
                .lines()
                .find_map(|l| l.strip_prefix("listening "))
                .and_then(|p| p.trim().parse().ok())
            {
                return McpServer { child, port };
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the MCP server exited with {status}");
            }
            assert!(Instant::now() < deadline, "the MCP server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// An AI agent's way in (MCP authorization, 2025-06-18 / 2025-11-25): the MCP SDK's
/// client meets a 401 from an MCP server behind Tollgate, follows `resource_metadata` to
/// the protected resource metadata, discovers Tollgate, registers itself (RFC 7591),
/// signs the user in through the hosted login and consent pages in Chromium, redeems the
/// code with PKCE and the resource indicator, and calls a tool; the server, which knows
/// nothing of OAuth, sees the user Tollgate vouches for.
#[test]
fn the_mcp_sdk_client_registers_signs_in_and_calls_a_tool_through_tollgate() {
    let tools = or_skip!(browser_tools());
    if !rp_dir()
        .join("node_modules/@modelcontextprotocol/sdk")
        .exists()
    {
        eprintln!(
            "SKIP: tests/rp/node_modules/@modelcontextprotocol/sdk is missing (npm ci in tests/rp)"
        );
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let server = McpServer::start(&tools, scratch.path());
    let mut gw = Tollgate::with_config(|issuer| {
        format!(
            "client_registration: open\nroutes:\n  - name: mcp\n    path: /mcp\n    upstream: http://127.0.0.1:{port}\n    auth: required\n    resource:\n      id: {issuer}/mcp\n      scopes_supported: [openid]\n",
            port = server.port
        )
    });
    let sub = gw.create_user();
    gw.start();
    let mcp_url = format!("{}/mcp", gw.issuer);
    let mut cmd = node_cmd(&tools, "mcp_client.mjs");
    cmd.args([
        "--url",
        &mcp_url,
        "--username",
        USERNAME,
        "--callback-port",
        &free_port().to_string(),
    ]);
    let run = run_rp(cmd, gw.dir.path(), &[("RP_PASSWORD", PASSWORD)]);
    let s = run.summary("mcp_client.mjs", &gw, "");
    assert!(
        s["client_id"].as_str().unwrap().starts_with("dyn_"),
        "registered: {s}"
    );
    assert_eq!(s["authorize"]["resource"], mcp_url.as_str(), "{s}");
    assert_eq!(s["authorize"]["code_challenge_method"], "S256", "{s}");
    assert_eq!(s["has_refresh_token"], true, "{s}");
    assert_eq!(s["tools"], serde_json::json!(["whoami"]), "{s}");
    // The upstream saw the signed-in user, and the token is for this resource only.
    assert_eq!(s["whoami"]["user_id"], sub.as_str(), "{s}");
    let token = s["access_token"].as_str().unwrap();
    let claims = common::jwt_claims(token);
    assert_eq!(claims["aud"], mcp_url.as_str(), "{claims}");
}

/// DPoP from a client library that implements it (oauth4webapi): its proofs are accepted
/// at the token endpoint and on a proxied route, the token is `DPoP`-typed and bound to
/// the library's key, and the same token without a proof is refused.
#[test]
fn oauth4webapi_gets_a_dpop_bound_token_and_uses_it_on_a_route() {
    let tools = or_skip!(browser_tools());
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up_port = upstream.local_addr().unwrap().port();
    // A tiny upstream: answers every request 200 with the X-User-Id it received.
    std::thread::spawn(move || {
        for stream in upstream.incoming().take(8).flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 8192];
            let n = stream.read(&mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
            let user = head
                .lines()
                .find_map(|l| l.strip_prefix("x-user-id: "))
                .unwrap_or("-")
                .trim()
                .to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{user}",
                user.len()
            );
        }
    });
    let mut gw = Tollgate::with_config(|_| {
        format!(
            "routes:\n  - name: api\n    path: /api\n    upstream: http://127.0.0.1:{up_port}\n    auth: required\n    sender_constraint: dpop\n"
        )
    });
    let secret = "dpop-client-secret-0123456789";
    let client = gw.cli(
        &[
            "clients",
            "create",
            "--id",
            "svc",
            "--secret-stdin",
            "--grants",
            "client_credentials",
            "--scopes",
            "read",
        ],
        Some(&format!("{secret}\n")),
    );
    assert_eq!(client["id"], "svc", "{client}");
    gw.start();
    let mut cmd = node_cmd(&tools, "dpop_client.mjs");
    let resource = format!("{}/api/orders", gw.issuer);
    cmd.args([
        "--issuer",
        &gw.issuer,
        "--client-id",
        "svc",
        "--resource-url",
        &resource,
    ]);
    let run = run_rp(cmd, gw.dir.path(), &[("RP_CLIENT_SECRET", secret)]);
    let s = run.summary("dpop_client.mjs", &gw, "");
    assert!(
        s["dpop_signing_alg_values_supported"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("ES256")),
        "{s}"
    );
    assert_eq!(
        s["token_type"]
            .as_str()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("dpop"),
        "{s}"
    );
    assert_eq!(s["with_proof"]["status"], 200, "{s}");
    assert_eq!(s["again_with_a_fresh_proof"]["status"], 200, "{s}");
    assert_eq!(s["as_bearer"]["status"], 401, "{s}");
}

/// A Python with the MCP SDK (PyPI `mcp`): the CI venv's, else `python3`.
fn mcp_python() -> Result<PathBuf, String> {
    let candidates = [
        Some(Path::new(common::ingress::CI_TOOLS).join("python")),
        on_path("python3"),
    ];
    for py in candidates.into_iter().flatten().filter(|p| p.is_file()) {
        let ok = Command::new(&py)
            .args(["-c", "import mcp.client.auth, httpx2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(py);
        }
    }
    Err("no Python with the mcp package (pip mcp into /opt/tollgate-ci/venv; see .ci/run)".into())
}

/// The same agent flow with the Python MCP SDK's client and its OAuth provider.
#[test]
fn the_python_mcp_sdk_client_registers_signs_in_and_calls_a_tool_through_tollgate() {
    let tools = or_skip!(browser_tools());
    let python = or_skip!(mcp_python());
    if !rp_dir()
        .join("node_modules/@modelcontextprotocol/sdk")
        .exists()
    {
        eprintln!(
            "SKIP: tests/rp/node_modules/@modelcontextprotocol/sdk is missing (npm ci in tests/rp)"
        );
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let server = McpServer::start(&tools, scratch.path());
    let mut gw = Tollgate::with_config(|issuer| {
        format!(
            "client_registration: open\nroutes:\n  - name: mcp\n    path: /mcp\n    upstream: http://127.0.0.1:{port}\n    auth: required\n    resource:\n      id: {issuer}/mcp\n",
            port = server.port
        )
    });
    let sub = gw.create_user();
    gw.start();
    let mcp_url = format!("{}/mcp", gw.issuer);
    let mut cmd = Command::new(&python);
    cmd.arg(rp_dir().join("mcp_python_client.py")).args([
        "--url",
        &mcp_url,
        "--username",
        USERNAME,
        "--callback-port",
        &free_port().to_string(),
    ]);
    let node = tools.node.to_string_lossy().into_owned();
    let chromium = tools.chromium.to_string_lossy().into_owned();
    let run = run_rp(
        cmd,
        gw.dir.path(),
        &[
            ("RP_PASSWORD", PASSWORD),
            ("NODE", &node),
            ("CHROMIUM_BIN", &chromium),
        ],
    );
    let s = run.summary("mcp_python_client.py", &gw, "");
    assert!(s["client_id"].as_str().unwrap().starts_with("dyn_"), "{s}");
    assert_eq!(s["authorize_resource"], mcp_url.as_str(), "{s}");
    assert_eq!(s["tools"], serde_json::json!(["whoami"]), "{s}");
    assert_eq!(s["whoami"]["user_id"], sub.as_str(), "{s}");
}
