//! `tollgate users create|import` and `clients create`, run as the real binary against a
//! temporary config whose store is a temporary SQLite file; results are checked by
//! opening the same store.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use tollgate::crypto::{PasswordHasherPool, Verification};
use tollgate::store::{self, Store};

mod common;

struct Env {
    dir: tempfile::TempDir,
    config: PathBuf,
    db_url: String,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}/data/tollgate.db", dir.path().display());
    let config = dir.path().join("tollgate.yaml");
    std::fs::write(&config, format!("store:\n  url: {db_url}\n")).unwrap();
    Env {
        dir,
        config,
        db_url,
    }
}

impl Env {
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        common::process::run_cli(&self.config, args, stdin)
    }

    fn file(&self, name: &str, content: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        p
    }

    async fn store(&self) -> std::sync::Arc<dyn Store> {
        store::connect(&self.db_url).await.unwrap()
    }
}

fn stdout_json(o: &Output) -> Value {
    assert!(
        o.status.success(),
        "exit {:?}, stderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&o.stdout)
        )
    })
}

/// Exit 1 with exactly one line on stderr that contains `needle`.
fn assert_user_error(o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert!(
        err.contains(needle),
        "stderr {err:?} should mention {needle:?}"
    );
    assert!(
        o.stdout.is_empty(),
        "nothing on stdout: {}",
        String::from_utf8_lossy(&o.stdout)
    );
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test]
async fn users_create_with_password_stdin_stores_an_argon2id_hash() {
    let e = env();
    let o = e.run(
        &[
            "users",
            "create",
            "--email",
            "Ada@Example.com",
            "--username",
            "ada",
            "--role",
            "admin",
            "--password-stdin",
        ],
        Some("correct horse\n"),
    );
    let v = stdout_json(&o);
    assert_eq!(v["email"], "Ada@Example.com");
    assert_eq!(v["username"], "ada");
    assert_eq!(v["role"], "admin");
    assert!(v["id"].as_i64().unwrap() > 0);
    assert!(v["created_at"].as_str().unwrap().ends_with('Z'));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        !out.contains("correct horse") && !out.contains("argon2"),
        "no password or hash printed: {out}"
    );

    let s = e.store().await;
    let u = s
        .user_by_email("ada@example.com")
        .await
        .unwrap()
        .expect("user stored");
    assert!(u
        .password_hash
        .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    let pool = PasswordHasherPool::new(1);
    // The trailing newline from stdin is not part of the password.
    assert_eq!(
        pool.verify("correct horse", &u.password_hash)
            .await
            .unwrap(),
        Verification::Match {
            needs_rehash: false
        }
    );
}

#[tokio::test]
async fn users_create_with_password_flag_and_default_role() {
    let e = env();
    let v = stdout_json(&e.run(
        &[
            "users",
            "create",
            "--email",
            "b@example.com",
            "--password",
            "long-enough",
        ],
        None,
    ));
    assert_eq!(v["role"], "default");
    assert!(v.get("username").is_none());
    let u = e
        .store()
        .await
        .user_by_email("b@example.com")
        .await
        .unwrap()
        .unwrap();
    assert!(PasswordHasherPool::new(1)
        .verify("long-enough", &u.password_hash)
        .await
        .unwrap()
        .is_match());
}

#[tokio::test]
async fn users_create_refuses_bad_input_with_one_line() {
    let e = env();
    assert_user_error(
        &e.run(
            &[
                "users",
                "create",
                "--email",
                "x@example.com",
                "--password",
                "short",
            ],
            None,
        ),
        "password is too short (minimum is 8 characters)",
    );
    assert_user_error(
        &e.run(
            &[
                "users",
                "create",
                "--email",
                "not-an-email",
                "--password",
                "long-enough",
            ],
            None,
        ),
        "email `not-an-email` is invalid",
    );
    assert_user_error(
        &e.run(&["users", "create", "--email", "x@example.com"], None),
        "--password-stdin",
    );
    assert_user_error(
        &e.run(
            &[
                "users",
                "create",
                "--email",
                "x@example.com",
                "--username",
                "a@b",
                "--password",
                "long-enough",
            ],
            None,
        ),
        "username `a@b` is invalid",
    );
    assert_user_error(
        &e.run(
            &[
                "users",
                "create",
                "--email",
                "x@example.com",
                "--role",
                "two words",
                "--password",
                "long-enough",
            ],
            None,
        ),
        "invalid role `two words`",
    );
    stdout_json(&e.run(
        &[
            "users",
            "create",
            "--email",
            "dup@example.com",
            "--username",
            "dup",
            "--password",
            "long-enough",
        ],
        None,
    ));
    assert_user_error(
        &e.run(
            &[
                "users",
                "create",
                "--email",
                "DUP@example.com",
                "--password",
                "long-enough",
            ],
            None,
        ),
        "a user with email `DUP@example.com` already exists",
    );
    assert_user_error(
        &e.run(
            &[
                "users",
                "create",
                "--email",
                "other@example.com",
                "--username",
                "dup",
                "--password",
                "long-enough",
            ],
            None,
        ),
        "username `dup` is taken",
    );
    // clap usage errors are exit 2.
    let o = e.run(
        &[
            "users",
            "create",
            "--email",
            "y@example.com",
            "--password",
            "p1234567",
            "--password-stdin",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
}

#[tokio::test]
async fn users_create_with_a_missing_config_fails_clearly() {
    let e = env();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    let o = cmd
        .args([
            "--config",
            path_str(&e.dir.path().join("nope.yaml")),
            "users",
            "create",
            "--email",
            "a@b.io",
            "--password",
            "long-enough",
        ])
        .env_remove("TOLLGATE_CONFIG")
        .env_remove("TOLLGATE_TEST_POSTGRES_URL")
        .output()
        .unwrap();
    assert_user_error(&o, "nope.yaml");
}

fn bcrypt_hash(pw: &str) -> String {
    bcrypt::hash(pw, 4).unwrap()
}

#[tokio::test]
async fn users_import_jsonl_keeps_argon2_and_bcrypt_hashes() {
    let e = env();
    let argon = PasswordHasherPool::new(1).hash("argon-pass").await.unwrap();
    let bc = bcrypt_hash("bcrypt-pass").replacen("$2b$", "$2y$", 1);
    let file = e.file(
        "users.jsonl",
        &format!(
            "{{\"email\":\"a@example.com\",\"username\":\"a\",\"role\":\"admin\",\"password_hash\":\"{argon}\"}}\n\n{{\"email\":\"B@example.com\",\"password_hash\":\"{bc}\",\"legacy_id\":7}}\n"
        ),
    );
    let v = stdout_json(&e.run(&["users", "import", path_str(&file)], None));
    assert_eq!(
        v,
        serde_json::json!({"imported": 2, "skipped": 0, "rejected": 0})
    );
    let s = e.store().await;
    let a = s.user_by_username("a").await.unwrap().unwrap();
    assert_eq!(a.password_hash, argon);
    assert_eq!(a.role, "admin");
    let b = s.user_by_email("b@example.com").await.unwrap().unwrap();
    assert_eq!(b.password_hash, bc, "bcrypt hash kept as it is");
    assert_eq!(b.role, "default");
    assert_eq!(
        PasswordHasherPool::new(1)
            .verify("bcrypt-pass", &b.password_hash)
            .await
            .unwrap(),
        Verification::Match { needs_rehash: true }
    );

    // Re-running skips the users that exist.
    let o = e.run(&["users", "import", path_str(&file)], None);
    assert_eq!(
        stdout_json(&o),
        serde_json::json!({"imported": 0, "skipped": 2, "rejected": 0})
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("line 1: ") && err.contains("line 3: email already exists; skipped"),
        "{err}"
    );
}

#[tokio::test]
async fn users_import_csv_with_columns_in_any_order() {
    let e = env();
    let bc = bcrypt_hash("csv-pass");
    let file = e.file(
        "users.csv",
        &format!("password_hash,email,role,username\n{bc},c1@example.com,,c1\n{bc},c2@example.com,staff,\n"),
    );
    let v = stdout_json(&e.run(&["users", "import", path_str(&file)], None));
    assert_eq!(v["imported"], 2);
    let s = e.store().await;
    let c1 = s.user_by_email("c1@example.com").await.unwrap().unwrap();
    assert_eq!(
        (c1.username.as_deref(), c1.role.as_str()),
        (Some("c1"), "default")
    );
    let c2 = s.user_by_email("c2@example.com").await.unwrap().unwrap();
    assert_eq!((c2.username, c2.role.as_str()), (None, "staff"));
}

#[tokio::test]
async fn users_import_rejects_plaintext_and_unknown_hashes_by_line() {
    let e = env();
    let bc = bcrypt_hash("fine-pass");
    let file = e.file(
        "bad.csv",
        &format!(
            "email,username,role,password_hash\nok@example.com,ok,,{bc}\nplain@example.com,p,,hunter22\nmd5@example.com,m,,5f4dcc3b5aa765d61d8327deb882cf99\nnot-an-email,x,,{bc}\n"
        ),
    );
    let o = e.run(&["users", "import", path_str(&file)], None);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("line 3: password_hash is not an argon2 or bcrypt"),
        "{err}"
    );
    assert!(
        err.contains("line 4: password_hash is not an argon2 or bcrypt"),
        "{err}"
    );
    assert!(
        err.contains("line 5: email `not-an-email` is invalid"),
        "{err}"
    );
    assert!(!err.contains("line 2"), "{err}");
    assert!(
        err.contains("3 of 4 rows rejected; nothing imported"),
        "{err}"
    );
    assert!(
        !err.contains("hunter22"),
        "the plaintext is never echoed: {err}"
    );
    assert_eq!(
        e.store()
            .await
            .user_by_email("ok@example.com")
            .await
            .unwrap(),
        None,
        "nothing imported"
    );

    let jsonl = e.file(
        "plain.jsonl",
        "{\"email\":\"p@example.com\",\"password\":\"hunter22\"}\nnot json\n",
    );
    let o = e.run(&["users", "import", path_str(&jsonl)], None);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("line 1: has a plaintext `password` field"),
        "{err}"
    );
    assert!(err.contains("line 2: not a JSON object"), "{err}");

    let no_cols = e.file("cols.csv", "mail,hash\na@b.io,x\n");
    assert_user_error(
        &e.run(&["users", "import", path_str(&no_cols)], None),
        "must name the columns email and password_hash",
    );
    assert_user_error(
        &e.run(
            &[
                "users",
                "import",
                path_str(&e.dir.path().join("missing.csv")),
            ],
            None,
        ),
        "cannot read",
    );
}

#[tokio::test]
async fn clients_create_confidential_and_public() {
    let e = env();
    let secret = "a-very-long-client-secret";
    let o = e.run(
        &[
            "clients",
            "create",
            "--id",
            "backend",
            "--secret-stdin",
            "--grants",
            "client_credentials,password",
            "--scopes",
            "read write",
        ],
        Some(&format!("{secret}\n")),
    );
    let v = stdout_json(&o);
    assert_eq!(v["id"], "backend");
    assert_eq!(v["public"], false);
    assert_eq!(
        v["grants"],
        serde_json::json!(["client_credentials", "password"])
    );
    assert_eq!(v["scopes"], serde_json::json!(["read", "write"]));
    assert!(!String::from_utf8_lossy(&o.stdout).contains(secret));
    let s = e.store().await;
    let c = s.client_by_id("backend").await.unwrap().unwrap();
    let hash = c.secret_hash.expect("confidential");
    assert!(hash.starts_with("$argon2id$"));
    assert!(PasswordHasherPool::new(1)
        .verify(secret, &hash)
        .await
        .unwrap()
        .is_match());

    let v = stdout_json(&e.run(
        &[
            "clients",
            "create",
            "--id",
            "spa",
            "--public",
            "--redirect-uri",
            "https://app.example.com/cb",
            "--redirect-uri",
            "http://127.0.0.1:7777/cb",
            "--post-logout-redirect-uri",
            "https://app.example.com/",
        ],
        None,
    ));
    assert_eq!(v["public"], true);
    assert_eq!(
        v["grants"],
        serde_json::json!(["authorization_code", "refresh_token"]),
        "default grants: the password grant only when named"
    );
    assert_eq!(v["scopes"], serde_json::json!([]));
    assert_eq!(v["first_party"], true);
    let spa = s.client_by_id("spa").await.unwrap().unwrap();
    assert_eq!(spa.secret_hash, None);
    assert_eq!(
        spa.redirect_uris,
        vec!["https://app.example.com/cb", "http://127.0.0.1:7777/cb"]
    );
    assert_eq!(
        spa.post_logout_redirect_uris,
        vec!["https://app.example.com/"]
    );

    let v = stdout_json(&e.run(
        &[
            "clients",
            "create",
            "--id",
            "partner",
            "--auth-method",
            "none",
            "--third-party",
            "--redirect-uri",
            "https://partner.example.net/cb",
        ],
        None,
    ));
    assert_eq!(v["public"], true);
    assert_eq!(v["first_party"], false);
}

#[tokio::test]
async fn clients_create_refuses_redirect_uris_it_would_never_follow() {
    let e = env();
    for bad in [
        "http://app.example.com/cb",
        "https://app.example.com/cb#frag",
        "javascript:alert(1)",
        "https://user:pw@app.example.com/cb",
        "/relative",
        "https://app.example.com/*",
    ] {
        let o = e.run(
            &[
                "clients",
                "create",
                "--id",
                "x",
                "--public",
                "--redirect-uri",
                bad,
            ],
            None,
        );
        assert_user_error(&o, "--redirect-uri");
    }
    assert_user_error(
        &e.run(&["clients", "create", "--id", "x", "--public"], None),
        "needs at least one --redirect-uri",
    );
}

#[tokio::test]
async fn clients_create_refuses_bad_input_with_one_line() {
    let e = env();
    stdout_json(&e.run(
        &[
            "clients", "create", "--id", "web", "--public", "--grants", "password",
        ],
        None,
    ));
    assert_user_error(
        &e.run(
            &[
                "clients", "create", "--id", "web", "--public", "--grants", "password",
            ],
            None,
        ),
        "client `web` already exists",
    );
    assert_user_error(
        &e.run(
            &[
                "clients", "create", "--id", "x", "--public", "--grants", "implicit",
            ],
            None,
        ),
        "unknown grant `implicit`",
    );
    assert_user_error(
        &e.run(
            &[
                "clients",
                "create",
                "--id",
                "x",
                "--public",
                "--grants",
                "client_credentials",
            ],
            None,
        ),
        "public client cannot use the client_credentials grant",
    );
    assert_user_error(
        &e.run(&["clients", "create", "--id", "x"], None),
        "--public or --secret-stdin",
    );
    assert_user_error(
        &e.run(
            &[
                "clients",
                "create",
                "--id",
                "x",
                "--secret-stdin",
                "--grants",
                "client_credentials",
            ],
            Some("short\n"),
        ),
        "at least 16 characters",
    );
    assert_user_error(
        &e.run(&["clients", "create", "--id", "bad id", "--public"], None),
        "invalid client id `bad id`",
    );
}

#[tokio::test]
async fn clients_create_registers_certificate_authentication() {
    let e = env();
    let v = stdout_json(&e.run(
        &[
            "clients",
            "create",
            "--id",
            "billing",
            "--auth-method",
            "tls_client_auth",
            "--tls-subject",
            "CN=billing,O=Example",
            "--grants",
            "client_credentials",
        ],
        None,
    ));
    assert_eq!(v["public"], false);
    assert_eq!(v["token_endpoint_auth_method"], "tls_client_auth");
    let s = e.store().await;
    assert_eq!(
        s.client_by_id("billing").await.unwrap().unwrap().tls_auth,
        Some(tollgate::store::TlsClientAuth::SubjectDn(
            "CN=billing,O=Example".into()
        ))
    );
    // A certificate method takes its own flag, and no secret.
    assert_user_error(
        &e.run(
            &[
                "clients",
                "create",
                "--id",
                "x",
                "--auth-method",
                "tls_client_auth",
                "--grants",
                "client_credentials",
            ],
            None,
        ),
        "--tls-subject",
    );
    assert_user_error(
        &e.run(
            &[
                "clients",
                "create",
                "--id",
                "x",
                "--auth-method",
                "self_signed_tls_client_auth",
                "--cert-file",
                "/nonexistent.pem",
                "--grants",
                "client_credentials",
            ],
            None,
        ),
        "--cert-file",
    );
}
