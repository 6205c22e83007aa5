//! The security audit log: one JSON line per security-relevant fact, for a SIEM.
//!
//! Separate from the application log and the access log (target `tollgate::audit`, its
//! own destination: stderr or a file rotated by size), so it can be shipped, kept and
//! access-controlled on its own. Every line has the same fields, `null` when they do not
//! apply: `time`, `target`, `event`, `outcome`, `reason`, `user_id`, `client_id`,
//! `peer_ip`, `request_id`, `trace_id`, plus a few named per event (docs/operations.md).
//!
//! Threat model: the log is read by more people than the credentials it talks about, so
//! it never carries a password, a token, a secret or a typed user name (people type
//! passwords into it): only ids, reason classes and key ids. A request's peer, request id
//! and trace id come from the request scope set in `App::handle` ([`scope`]), so deep code
//! does not thread them through.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use serde_json::{Map, Value};

use crate::config::raw::Audit as AuditConfig;

/// Target name of audit events (in each line, and in the application log when no sink
/// is installed).
pub const TARGET: &str = "tollgate::audit";

/// Whether the fact was a success (a sign-in went through) or a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }
}

/// The request an event happened in.
#[derive(Debug, Clone)]
pub struct RequestScope {
    pub peer_ip: IpAddr,
    pub request_id: String,
    pub trace_id: Option<String>,
}

tokio::task_local! {
    static SCOPE: RequestScope;
}

/// Runs `f` with `scope` as the request every event inside it belongs to.
pub async fn scope<F: std::future::Future>(scope: RequestScope, f: F) -> F::Output {
    SCOPE.scope(scope, f).await
}

/// One event, built then [`Event::emit`]ted.
#[must_use = "an audit event does nothing until emitted"]
pub struct Event {
    fields: Map<String, Value>,
}

/// Starts an event named `name` (see docs/operations.md for the list).
pub fn event(name: &'static str, outcome: Outcome) -> Event {
    let mut fields = Map::new();
    fields.insert(
        "time".into(),
        Value::String(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
    );
    fields.insert("target".into(), Value::String(TARGET.into()));
    fields.insert("event".into(), Value::String(name.into()));
    fields.insert("outcome".into(), Value::String(outcome.as_str().into()));
    for k in [
        "reason",
        "user_id",
        "client_id",
        "peer_ip",
        "request_id",
        "trace_id",
    ] {
        fields.insert(k.into(), Value::Null);
    }
    Event { fields }
}

impl Event {
    /// The class of a refusal (`bad_credentials`, `unknown_client`…), never free text
    /// from the request.
    pub fn reason(mut self, reason: &'static str) -> Self {
        self.fields.insert("reason".into(), reason.into());
        self
    }

    pub fn user(mut self, id: impl ToString) -> Self {
        self.fields
            .insert("user_id".into(), Value::String(id.to_string()));
        self
    }

    pub fn user_opt(self, id: Option<impl ToString>) -> Self {
        match id {
            Some(id) => self.user(id),
            None => self,
        }
    }

    pub fn client(mut self, id: &str) -> Self {
        self.fields.insert("client_id".into(), id.into());
        self
    }

    pub fn client_opt(self, id: Option<&str>) -> Self {
        match id {
            Some(id) => self.client(id),
            None => self,
        }
    }

    /// The address of a request outside a request scope (the scope's wins otherwise).
    pub fn peer(mut self, ip: IpAddr) -> Self {
        self.fields
            .insert("peer_ip".into(), Value::String(ip.to_string()));
        self
    }

    /// An event-specific field. Callers pass ids and counts only, never credentials.
    pub fn field(mut self, key: &'static str, value: impl Into<Value>) -> Self {
        self.fields.insert(key.into(), value.into());
        self
    }

    /// Writes the line to the installed sink (or the application log when there is none).
    pub fn emit(mut self) {
        let _ = SCOPE.try_with(|s| {
            self.fields
                .insert("peer_ip".into(), Value::String(s.peer_ip.to_string()));
            self.fields
                .insert("request_id".into(), Value::String(s.request_id.clone()));
            if let Some(t) = &s.trace_id {
                self.fields
                    .insert("trace_id".into(), Value::String(t.clone()));
            }
        });
        let line = Value::Object(self.fields).to_string();
        match SINK.load().as_deref() {
            Some(sink) => sink.write_line(&line),
            None => tracing::info!(target: "tollgate::audit", "{line}"),
        }
    }
}

static SINK: ArcSwapOption<Sink> = ArcSwapOption::const_empty();

/// Where audit lines go.
pub enum Sink {
    Stderr,
    File(Mutex<RotatingFile>),
}

impl Sink {
    fn write_line(&self, line: &str) {
        let result = match self {
            Sink::Stderr => {
                let mut err = io::stderr().lock();
                err.write_all(line.as_bytes())
                    .and_then(|()| err.write_all(b"\n"))
            }
            Sink::File(f) => f.lock().unwrap_or_else(|p| p.into_inner()).write_line(line),
        };
        if let Err(e) = result {
            metrics::counter!("tollgate_audit_write_errors_total").increment(1);
            tracing::error!(error = %e, "cannot write the audit log");
        }
    }
}

/// `tollgate_audit_write_errors_total` at 0 from the start.
pub fn register_metrics() {
    crate::telemetry::at_zero(|| [metrics::counter!("tollgate_audit_write_errors_total")]);
}

/// Installs the destination of `cfg` for the whole process (`serve` and the CLI call
/// this once the config is loaded; a reload that changes `audit` calls it again).
pub fn install(cfg: &AuditConfig) -> io::Result<()> {
    let sink = if cfg.destination == "stderr" {
        Sink::Stderr
    } else {
        Sink::File(Mutex::new(RotatingFile::open(
            PathBuf::from(&cfg.destination),
            cfg.max_bytes,
            cfg.keep,
        )?))
    };
    SINK.store(Some(Arc::new(sink)));
    Ok(())
}

/// An append-only file that is rotated when the next line would take it past
/// `max_bytes`: `audit.log` → `audit.log.1` → … → `audit.log.{keep}`, the oldest
/// dropped. Created with mode 0600.
pub struct RotatingFile {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    keep: u32,
}

impl RotatingFile {
    pub fn open(path: PathBuf, max_bytes: u64, keep: u32) -> io::Result<RotatingFile> {
        let file = open_append(&path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            path,
            file,
            size,
            max_bytes,
            keep,
        })
    }

    fn write_line(&mut self, line: &str) -> io::Result<()> {
        let len = line.len() as u64 + 1;
        if self.size > 0 && self.size + len > self.max_bytes {
            self.rotate()?;
        }
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        self.file.write_all(&buf)?;
        self.size += len;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let numbered = |n: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            let _ = std::fs::remove_file(numbered(self.keep));
            for n in (1..self.keep).rev() {
                let from = numbered(n);
                if from.exists() {
                    std::fs::rename(&from, numbered(n + 1))?;
                }
            }
            std::fs::rename(&self.path, numbered(1))?;
        }
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut f = RotatingFile::open(path.clone(), 100, 2).unwrap();
        for i in 0..20 {
            f.write_line(&format!(
                "{{\"n\":{i:03},\"pad\":\"xxxxxxxxxxxxxxxxxxxx\"}}"
            ))
            .unwrap();
        }
        let current = std::fs::read_to_string(&path).unwrap();
        assert!(current.len() <= 100, "{}", current.len());
        assert!(current.contains("\"n\":019"));
        assert!(dir.path().join("audit.log.1").exists());
        assert!(dir.path().join("audit.log.2").exists());
        assert!(!dir.path().join("audit.log.3").exists());
    }

    #[test]
    fn every_line_has_every_common_field() {
        let e = event("sign_in", Outcome::Failure)
            .reason("bad_credentials")
            .client("web");
        let v = Value::Object(e.fields);
        for k in [
            "time",
            "target",
            "event",
            "outcome",
            "reason",
            "user_id",
            "client_id",
            "peer_ip",
            "request_id",
            "trace_id",
        ] {
            assert!(v.get(k).is_some(), "{k}");
        }
        assert_eq!(v["user_id"], Value::Null);
        assert_eq!(v["client_id"], "web");
    }
}
