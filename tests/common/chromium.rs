//! Headless Chromium as a test browser, driven without extra downloads: `--dump-dom`
//! loads a URL, follows every real HTTP redirect as a browser does, and prints the DOM of
//! the page it ends on.
//!
//! The binary is `$CHROMIUM_BIN`, else `chromium` or `chromium-browser` on the
//! usual paths; when none exists, [`binary`] is `None` and browser tests skip with a
//! printed reason.

use std::path::PathBuf;
use std::time::Duration;

/// The Chromium binary, if this machine has one.
pub fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM_BIN") {
        return Some(PathBuf::from(p)).filter(|p| p.exists());
    }
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/snap/bin/chromium",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// Opens `url` in a fresh headless profile and returns the final page's DOM. Fails when
/// Chromium exits with an error or takes longer than `within` (it is killed then).
pub async fn dump_dom(
    binary: &std::path::Path,
    url: &str,
    within: Duration,
) -> Result<String, String> {
    let profile = tempfile::tempdir().map_err(|e| e.to_string())?;
    let child = tokio::process::Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--no-default-browser-check",
            "--no-proxy-server",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let out = tokio::time::timeout(within, child.wait_with_output())
        .await
        .map_err(|_| format!("chromium did not finish within {within:?}"))?
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(5).collect();
        return Err(format!(
            "chromium exited with {}: {}",
            out.status,
            tail.join(" | ")
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
