//! Secrets stay secret: a full run at debug level logs no password, token, client secret
//! or signing key; the store holds refresh and opaque tokens and client secrets only as
//! hashes; a weak HMAC signing secret is refused at start.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::process::GatewayProcess;
use common::{client, wait_until, Upstream};
use serde_json::{json, Value};

const PASSWORD: &str = "Pw-correct-horse-7731";
const WRONG_PASSWORD: &str = "Pw-wrong-guess-4410";
const CLIENT_SECRET: &str = "ClientSecret-5f1c9a7e3b";

fn tollgate(config: &std::path::Path, args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("TOLLGATE_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write_config(dir: &std::path::Path, up: &Upstream, access_format: &str) -> std::path::PathBuf {
    let key = dir.join("signing.pem");
    std::fs::write(&key, &common::authn::rsa_pair().0).unwrap();
    let path = dir.join("tollgate.yaml");
    std::fs::write(
        &path,
        format!(
            r#"listen:
  http: 127.0.0.1:0
  admin: 127.0.0.1:0
store:
  url: sqlite://{dir}/t.db
tokens:
  issuer: http://tollgate.test
  audience: tollgate
  access:
    format: {access_format}
  signing:
    alg: RS256
    key_file: {key}
token_endpoints:
  - path: /oauth/token
users_api:
  registration: open
log:
  access_log: true
routes:
  - name: api
    path: /api
    upstream: {up}
    auth: required
    token_sources: [header, "query:access_token"]
"#,
            dir = dir.display(),
            key = key.display(),
            up = up.url()
        ),
    )
    .unwrap();
    path
}

/// Drives every flow that handles a secret; returns the secrets it saw.
async fn drive(gw: &GatewayProcess) -> Vec<String> {
    let c = client();
    let url = |p: &str| format!("{}{p}", gw.http);
    let r = c
        .post(url("/api/v1/users"))
        .json(&json!({"user": {"email": "sec@example.com", "password": PASSWORD}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let grant = |password: &'static str| {
        let c = c.clone();
        let u = url("/oauth/token");
        async move {
            c.post(u)
                .basic_auth("svc", Some(CLIENT_SECRET))
                .form(&[
                    ("grant_type", "password"),
                    ("username", "sec@example.com"),
                    ("password", password),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(grant(WRONG_PASSWORD).await.status(), 400);
    let tok: Value = grant(PASSWORD).await.json().await.unwrap();
    let access = tok["access_token"].as_str().unwrap().to_string();
    let refresh = tok["refresh_token"].as_str().unwrap().to_string();

    // Proxied, by header and by query; a bad token; a wrong client secret.
    for r in [
        c.get(url("/api/x")).bearer_auth(&access),
        c.get(url(&format!("/api/x?access_token={access}"))),
        c.get(url("/api/x")).bearer_auth(format!("{access}x")),
    ] {
        r.send().await.unwrap();
    }
    c.post(url("/oauth/token"))
        .basic_auth("svc", Some("Wrong-client-secret-9"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)])
        .send()
        .await
        .unwrap();
    let rotated: Value = c
        .post(url("/oauth/token"))
        .basic_auth("svc", Some(CLIENT_SECRET))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refresh2 = rotated["refresh_token"].as_str().unwrap().to_string();
    // Reuse of the rotated-away token revokes the family.
    c.post(url("/oauth/token"))
        .basic_auth("svc", Some(CLIENT_SECRET))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)])
        .send()
        .await
        .unwrap();
    c.post(url("/oauth/introspect"))
        .basic_auth("svc", Some(CLIENT_SECRET))
        .form(&[("token", &access)])
        .send()
        .await
        .unwrap();
    c.post(url("/oauth/revoke"))
        .basic_auth("svc", Some(CLIENT_SECRET))
        .form(&[("token", &refresh2)])
        .send()
        .await
        .unwrap();
    c.get(url("/api/v1/users/me"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    vec![access, refresh, refresh2]
}

fn start(dir: &std::path::Path, up: &Upstream, format: &str) -> GatewayProcess {
    let config = write_config(dir, up, format);
    let (code, _, err) = tollgate(
        &config,
        &[
            "clients",
            "create",
            "--id",
            "svc",
            "--secret-stdin",
            "--grants",
            "password,refresh_token",
        ],
        CLIENT_SECRET,
    );
    assert_eq!(code, 0, "{err}");
    GatewayProcess::start(&config, &[("RUST_LOG", "debug")])
}

fn assert_absent(haystack: &[u8], needles: &[String], what: &str) {
    for n in needles {
        assert!(
            !haystack.windows(n.len()).any(|w| w == n.as_bytes()),
            "{what} contains a secret ({}…)",
            &n[..n.len().min(12)]
        );
    }
}

/// Every secret this run handled, plus distinctive parts of them (a JWT's signature, the
/// signing key's body).
fn secrets(tokens: Vec<String>) -> Vec<String> {
    let mut s = vec![
        PASSWORD.to_string(),
        WRONG_PASSWORD.to_string(),
        CLIENT_SECRET.to_string(),
    ];
    for t in tokens {
        if let Some(sig) = t.rsplit('.').next().filter(|_| t.contains('.')) {
            s.push(sig.to_string());
        }
        s.push(t);
    }
    for line in common::authn::rsa_pair().0.lines() {
        if !line.starts_with("-----") && line.len() > 40 {
            s.push(line.to_string());
        }
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_run_at_debug_level_leaks_no_secret_to_logs_or_store() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut gw = start(dir.path(), &up, "jwt");
    let tokens = drive(&gw).await;
    let logs = gw.logs.clone();
    wait_until(Duration::from_secs(10), "the last access log line", || {
        let logs = logs.clone();
        async move {
            logs.lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("/api/v1/users/me"))
        }
    })
    .await;
    gw.signal("TERM");
    assert_eq!(gw.wait_exit(Duration::from_secs(20)), Some(0));
    let text = gw.log_text();
    assert!(
        text.len() > 1000,
        "debug logging was on: {} bytes",
        text.len()
    );
    let all = secrets(tokens);
    assert_absent(text.as_bytes(), &all, "the debug log");

    // Refresh tokens and client secrets are stored only as hashes.
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let p = entry.unwrap().path();
        if p.file_name().unwrap().to_string_lossy().starts_with("t.db") {
            bytes.extend(std::fs::read(&p).unwrap());
        }
    }
    assert!(!bytes.is_empty());
    assert_absent(&bytes, &all, "the SQLite store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opaque_access_tokens_are_stored_only_as_hashes() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut gw = start(dir.path(), &up, "opaque");
    let tokens = drive(&gw).await;
    assert!(!tokens[0].contains('.'), "access tokens are opaque here");
    gw.signal("TERM");
    assert_eq!(gw.wait_exit(Duration::from_secs(20)), Some(0));
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let p = entry.unwrap().path();
        if p.file_name().unwrap().to_string_lossy().starts_with("t.db") {
            bytes.extend(std::fs::read(&p).unwrap());
        }
    }
    assert_absent(&bytes, &secrets(tokens), "the SQLite store");
    assert_absent(gw.log_text().as_bytes(), &secrets(vec![]), "the debug log");
}

#[test]
fn a_weak_hmac_signing_secret_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("hs.key");
    std::fs::write(&key, "only-16-bytes!!!").unwrap();
    let config = dir.path().join("t.yaml");
    std::fs::write(
        &config,
        format!(
            "listen:\n  http: 127.0.0.1:0\n  admin: 127.0.0.1:0\nstore:\n  url: sqlite://{}/t.db\ntokens:\n  signing:\n    alg: HS512\n    key_file: {}\n",
            dir.path().display(),
            key.display()
        ),
    )
    .unwrap();
    let (code, _, err) = tollgate(&config, &["serve"], "");
    assert_ne!(code, 0);
    assert!(err.contains("shorter than 32 bytes"), "{err}");
    assert!(
        !err.contains("only-16-bytes"),
        "the secret is not echoed: {err}"
    );
}
