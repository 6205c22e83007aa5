//! Runs the real `tollgate` binary as a child process with JSON logs, and finds the
//! addresses it bound from its "listening" log line.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `tollgate --config CONFIG ARGS` run to its end with `stdin` written to it. Only the
/// given config counts: no `TOLLGATE_*` override from the caller's environment (say
/// `TOLLGATE_TEST_POSTGRES_URL`) reaches the child's config loader.
pub fn run_cli(config: &Path, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    cmd.arg("--config").arg(config).args(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("TOLLGATE_") {
            cmd.env_remove(k);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("tollgate runs");
    let mut pipe = child.stdin.take().unwrap();
    if let Some(input) = stdin {
        pipe.write_all(input.as_bytes()).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

pub struct GatewayProcess {
    pub child: Child,
    pub http: String,
    /// `127.0.0.1:PORT` of the HTTPS listener; empty when none is configured.
    pub https: String,
    pub admin: String,
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl GatewayProcess {
    /// Starts `tollgate --config PATH serve` and waits (bounded) for it to listen.
    pub fn start(config: &Path, envs: &[(&str, &str)]) -> GatewayProcess {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
        cmd.arg("--config")
            .arg(config)
            .arg("serve")
            .env("TOLLGATE_LOG_FORMAT", "json")
            .env_remove("RUST_LOG")
            .current_dir(config.parent().unwrap())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn tollgate");
        let stderr = child.stderr.take().unwrap();
        let logs: Arc<Mutex<Vec<String>>> = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel::<(String, String, String)>();
        let logs2 = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    if v["message"] == "listening" {
                        let _ = tx.send((
                            v["http"].as_str().unwrap_or_default().to_string(),
                            v["https"].as_str().unwrap_or_default().to_string(),
                            v["admin"].as_str().unwrap_or_default().to_string(),
                        ));
                    }
                }
                logs2.lock().unwrap().push(line);
            }
        });
        let (http, https, admin) = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addrs) => addrs,
            Err(_) => {
                let _ = child.kill();
                panic!("tollgate did not start: {:?}", logs.lock().unwrap());
            }
        };
        GatewayProcess {
            child,
            http: format!("http://{http}"),
            https,
            admin: format!("http://{admin}"),
            logs,
        }
    }

    pub fn signal(&self, sig: &str) {
        // `--` before the pid: procps-ng's kill can read a number after a signal
        // option as another option (see kill_group in tests/oidc_relying_parties.rs).
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg("--")
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits (bounded) for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("tollgate did not exit within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
