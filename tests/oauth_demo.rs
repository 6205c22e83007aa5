//! `tollgate demo`: starts, prints curl lines, and the printed credentials work.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::client;
use serde_json::Value;

/// Kills the demo process when the test ends, pass or fail.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn demo_prints_working_curl_lines() {
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .arg("demo")
            .env("TOLLGATE_LISTEN__HTTP", "127.0.0.1:0")
            .env("TOLLGATE_LISTEN__ADMIN", "127.0.0.1:0")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut base = None;
    let mut secret = None;
    while base.is_none() || secret.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the demo prints its curl lines within 60 s");
        if let Some(rest) = line.strip_prefix("Tollgate demo running on ") {
            base = rest.split_whitespace().next().map(str::to_owned);
        }
        if let Some(i) = line.find("-u 'demo-app:") {
            let s = &line[i + "-u 'demo-app:".len()..];
            secret = s.split('\'').next().map(str::to_owned);
        }
    }
    let (base, secret) = (base.unwrap(), secret.unwrap());
    let resp = client()
        .post(format!("{base}/oauth/token"))
        .basic_auth("demo-app", Some(&secret))
        .form(&[
            ("grant_type", "password"),
            ("username", "demo"),
            ("password", "demo-password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let token: Value = resp.json().await.unwrap();
    let resp = client()
        .get(format!("{base}/echo/hello"))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echoed: Value = resp.json().await.unwrap();
    assert_eq!(echoed["headers"]["x-user-email"], "demo@example.com");
    let resp = client()
        .get(format!("{base}/echo/hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}
