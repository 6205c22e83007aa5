//! Signing keys end to end: `tollgate keys generate`, a generated development key reused
//! across restarts, and rotation with `previous_key_files`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::client;
use serde_json::Value;
use tollgate::app::Gateway;
use tollgate::config::Config;

async fn start(dir: &Path, tokens_yaml: &str) -> Gateway {
    let yaml = format!(
        "listen:\n  http: 127.0.0.1:0\n  admin: 127.0.0.1:0\nstore:\n  url: sqlite://{}/tollgate.db\ntokens:\n  issuer: http://tollgate.test\n{tokens_yaml}",
        dir.display()
    );
    let cfg = Config::from_yaml_with_env(&yaml, None).unwrap_or_else(|e| panic!("{e}"));
    let services = tollgate::app::wiring::build(&cfg)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    Gateway::start(cfg, services).await.unwrap()
}

async fn jwks(gw: &Gateway) -> Value {
    let url = format!("http://{}/.well-known/jwks.json", gw.http_addr.unwrap());
    client()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn keys_generate_writes_a_private_and_a_public_pem() {
    for alg in ["RS256", "ES256", "EdDSA"] {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(["keys", "generate", "--alg", alg, "--out"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let desc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(desc["alg"], alg);
        let key_file = desc["key_file"].as_str().unwrap();
        let mode = std::fs::metadata(key_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "private key readable by its owner only");
        let pem = std::fs::read(key_file).unwrap();
        let key = tollgate::keys::KeySet::parse_key(&pem).unwrap();
        assert_eq!(key.kid, desc["kid"].as_str().unwrap());
        let public = std::fs::read(desc["public_key_file"].as_str().unwrap()).unwrap();
        assert_eq!(
            tollgate::keys::KeySet::parse_key(&public).unwrap().kid,
            key.kid
        );
        assert!(!String::from_utf8_lossy(&out.stdout).contains("PRIVATE KEY"));
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["keys", "generate", "--alg", "none", "--out", "/tmp"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "usage error");
}

#[tokio::test]
async fn the_generated_development_key_is_reused_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let first = start(dir.path(), "").await;
    let a = kids(&jwks(&first).await);
    first.shutdown(std::time::Duration::from_secs(1)).await;
    let second = start(dir.path(), "").await;
    let b = kids(&jwks(&second).await);
    assert_eq!(a.len(), 1);
    assert_eq!(a, b);
    assert!(
        dir.path().join("keys").join("signing-rs256.pem").exists(),
        "next to the database"
    );
}

#[tokio::test]
async fn previous_key_files_keep_validating_and_stay_published() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("k");
    let gen = |alg: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(["keys", "generate", "--alg", alg, "--out"])
            .arg(&keys)
            .output()
            .unwrap();
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let old = gen("RS256");
    let new = gen("ES256");
    let old_file = old["key_file"].as_str().unwrap();
    let gw = start(
        dir.path(),
        &format!("  signing:\n    alg: RS256\n    key_file: {old_file}\n"),
    )
    .await;
    let store = tollgate::store::connect(&format!("sqlite://{}/tollgate.db", dir.path().display()))
        .await
        .unwrap();
    common::seed::user(
        &*store,
        Some("rot"),
        "rot@example.com",
        "rot-password",
        "default",
    )
    .await;
    common::seed::client(&*store, "pub", None, &["password"], &[]).await;
    let token_url = format!("http://{}/oauth/token", gw.http_addr.unwrap());
    let body: Value = client()
        .post(&token_url)
        .form(&[
            ("grant_type", "password"),
            ("username", "rot"),
            ("password", "rot-password"),
            ("client_id", "pub"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let old_token = body["access_token"].as_str().unwrap().to_string();
    gw.shutdown(std::time::Duration::from_secs(1)).await;

    // Rotate: the new ES256 key signs, the old RS256 key (public half) still verifies.
    let rotated = start(
        dir.path(),
        &format!(
            "  signing:\n    alg: ES256\n    key_file: {}\n    previous_key_files: [{}]\n",
            new["key_file"].as_str().unwrap(),
            old["public_key_file"].as_str().unwrap()
        ),
    )
    .await;
    let published = kids(&jwks(&rotated).await);
    assert_eq!(
        published,
        vec![
            new["kid"].as_str().unwrap().to_string(),
            old["kid"].as_str().unwrap().to_string()
        ]
    );
    let me = format!("http://{}/api/v1/users/me", rotated.http_addr.unwrap());
    let resp = client()
        .get(&me)
        .bearer_auth(&old_token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        200,
        "a token signed before the rotation still verifies"
    );
    let body: Value = client()
        .post(format!("http://{}/oauth/token", rotated.http_addr.unwrap()))
        .form(&[
            ("grant_type", "password"),
            ("username", "rot"),
            ("password", "rot-password"),
            ("client_id", "pub"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(body["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    assert_eq!(header.kid.as_deref(), new["kid"].as_str());
}
