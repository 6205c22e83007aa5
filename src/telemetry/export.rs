//! Spans leave the process here: a bounded queue in front of the OTLP exporter, drained
//! by a thread of its own.
//!
//! Why not the SDK's `BatchSpanProcessor`: it drops spans when its queue is full, as it
//! should, but keeps the count to itself. Operators need that count as a metric
//! (`tollgate_trace_spans_dropped_total`), and Tollgate's spans (`span.rs`) need no
//! tracer provider, so the queue is this small one instead. The contract is the SDK's:
//! ending a span never waits. [`submit`] is one uncontended lock and a push; a full
//! queue or a failed export costs the spans concerned and a counter increment, never a
//! request's time. The exporter runs on its own thread with its own single-threaded
//! runtime, so a slow or unreachable collector cannot take a serving worker either.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use tokio::sync::{oneshot, Notify};

use crate::config::raw::{OtlpProtocol, Tracing};

/// Spans waiting for export; past this, new spans are dropped and counted.
pub const QUEUE_SPANS: usize = 4096;
/// Spans per export request.
const BATCH_SPANS: usize = 512;
/// The longest a span waits in the queue before its batch is sent.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// One export call, connection included.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for the last batch.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("telemetry.tracing: cannot build the OTLP exporter: {0}")]
    Build(String),
    #[error("telemetry.tracing: cannot start the export thread: {0}")]
    Thread(std::io::Error),
}

/// The exporter of `telemetry.tracing.protocol`: `http/protobuf` writes its own request
/// (`otlp.rs`); gRPC is opentelemetry-otlp's tonic exporter.
enum Exporter {
    Http(super::otlp::HttpExporter),
    Grpc(opentelemetry_otlp::SpanExporter),
}

impl Exporter {
    fn set_resource(&mut self, resource: &Resource) {
        match self {
            Exporter::Http(e) => e.set_resource(resource),
            Exporter::Grpc(e) => e.set_resource(resource),
        }
    }

    async fn export(&self, spans: Vec<SpanData>) -> Result<(), String> {
        match self {
            Exporter::Http(e) => e.export(&spans).await,
            Exporter::Grpc(e) => e.export(spans).await.map_err(|e| e.to_string()),
        }
    }
}

/// The queue every ended span goes to, once [`Queue::start`] has run.
static QUEUE: OnceLock<Arc<Queue>> = OnceLock::new();

/// Queues an ended span for export; counted as dropped when the queue is full (or was
/// never started).
pub fn submit(span: SpanData) {
    match QUEUE.get() {
        Some(q) => q.push(span),
        None => dropped("queue_full", 1),
    }
}

/// Sends what is queued and stops the export thread, waiting at most [`SHUTDOWN_WAIT`].
/// Later calls do nothing.
pub fn shutdown() {
    if let Some(q) = QUEUE.get() {
        q.shutdown();
    }
}

/// Ended spans waiting for the export thread.
///
/// A locked `Vec` rather than a channel: a channel wakes its receiver for every span, so
/// each traced request cost two wake-ups of the export thread and its runtime's turn
/// around them (BENCHMARKS.md, "Eighth round"). Here a span is one uncontended lock and a
/// push; the export thread is woken when a batch is full (or at shutdown), and otherwise
/// takes what is there every [`FLUSH_EVERY`].
#[derive(Debug)]
pub struct Queue {
    spans: Mutex<Vec<SpanData>>,
    /// A full batch is waiting.
    batch_ready: Notify,
    /// Set when the export thread has taken its last batch: a span ending later (a
    /// request the shutdown grace cut off) is counted as dropped, not left in the queue.
    closed: AtomicBool,
    /// Taken by the first shutdown: asks the export thread to send what is queued and stop.
    stop: Mutex<Option<oneshot::Sender<std::sync::mpsc::SyncSender<()>>>>,
}

impl Queue {
    /// Starts the export thread, and builds the exporter on it (the gRPC channel needs the
    /// thread's runtime). Fails when the exporter cannot be built, before any span exists.
    /// The first start in a process is the one spans go to.
    pub fn start(cfg: &Tracing, resource: Resource) -> Result<(), ExportError> {
        // Exported and dropped spans at 0 from the start (`super::at_zero`).
        super::at_zero(|| {
            ["queue_full", "export_failed"]
                .map(|r| metrics::counter!("tollgate_trace_spans_dropped_total", "reason" => r))
                .into_iter()
                .chain([metrics::counter!("tollgate_trace_spans_exported_total")])
        });
        let (stop, stopped) = oneshot::channel();
        let queue = Arc::new(Queue {
            spans: Mutex::new(Vec::with_capacity(BATCH_SPANS)),
            batch_ready: Notify::new(),
            closed: AtomicBool::new(false),
            stop: Mutex::new(Some(stop)),
        });
        let (built, build_result) = std::sync::mpsc::sync_channel(1);
        let cfg = cfg.clone();
        let drained = queue.clone();
        std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = built.send(Err(ExportError::Build(e.to_string())));
                        return;
                    }
                };
                rt.block_on(async move {
                    let mut exporter = match build_exporter(&cfg) {
                        Ok(e) => e,
                        Err(e) => {
                            let _ = built.send(Err(e));
                            return;
                        }
                    };
                    exporter.set_resource(&resource);
                    let _ = built.send(Ok(()));
                    drain(exporter, &drained, stopped).await;
                });
            })
            .map_err(ExportError::Thread)?;
        build_result
            .recv()
            .map_err(|_| ExportError::Build("the export thread ended".into()))??;
        let _ = QUEUE.set(queue);
        Ok(())
    }

    fn push(&self, span: SpanData) {
        let mut spans = self.spans.lock().unwrap_or_else(|p| p.into_inner());
        if spans.len() >= QUEUE_SPANS || self.closed.load(Ordering::Relaxed) {
            drop(spans);
            dropped("queue_full", 1);
            return;
        }
        spans.push(span);
        let full = spans.len() == BATCH_SPANS;
        drop(spans);
        if full {
            self.batch_ready.notify_one();
        }
    }

    /// Everything queued, leaving room for the next batch.
    fn take(&self) -> Vec<SpanData> {
        let mut spans = self.spans.lock().unwrap_or_else(|p| p.into_inner());
        if spans.is_empty() {
            return Vec::new();
        }
        std::mem::replace(&mut *spans, Vec::with_capacity(BATCH_SPANS))
    }

    fn shutdown(&self) {
        let Some(stop) = self.stop.lock().ok().and_then(|mut s| s.take()) else {
            return;
        };
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        if stop.send(done).is_ok() {
            let _ = wait.recv_timeout(SHUTDOWN_WAIT);
        }
    }
}

fn dropped(reason: &'static str, n: usize) {
    metrics::counter!("tollgate_trace_spans_dropped_total", "reason" => reason).increment(n as u64);
}

/// Sends what is queued when a batch is full or every [`FLUSH_EVERY`], until shutdown;
/// then what is left, once.
async fn drain(
    exporter: Exporter,
    queue: &Queue,
    mut stop: oneshot::Receiver<std::sync::mpsc::SyncSender<()>>,
) {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let done = tokio::select! {
            _ = queue.batch_ready.notified() => None,
            _ = tick.tick() => None,
            done = &mut stop => Some(done),
        };
        if done.is_some() {
            // Under the queue's lock, so no span lands between this and the last take.
            let _held = queue.spans.lock().unwrap_or_else(|p| p.into_inner());
            queue.closed.store(true, Ordering::Relaxed);
        }
        let mut spans = queue.take();
        while !spans.is_empty() {
            let rest = spans.split_off(spans.len().min(BATCH_SPANS));
            export(&exporter, spans).await;
            spans = rest;
        }
        if let Some(done) = done {
            if let Ok(done) = done {
                let _ = done.send(());
            }
            return;
        }
    }
}

async fn export(exporter: &Exporter, spans: Vec<SpanData>) {
    let n = spans.len();
    match tokio::time::timeout(EXPORT_TIMEOUT, exporter.export(spans)).await {
        Ok(Ok(())) => {
            metrics::counter!("tollgate_trace_spans_exported_total").increment(n as u64);
        }
        Ok(Err(e)) => {
            dropped("export_failed", n);
            warn_export_failed(&e);
        }
        Err(_) => {
            dropped("export_failed", n);
            warn_export_failed("timed out");
        }
    }
}

/// At most one line a minute: an unreachable collector must not flood the log.
fn warn_export_failed(why: &str) {
    static LAST: Mutex<Option<std::time::Instant>> = Mutex::new(None);
    let Ok(mut last) = LAST.lock() else { return };
    if last.is_some_and(|t| t.elapsed() < Duration::from_secs(60)) {
        return;
    }
    *last = Some(std::time::Instant::now());
    tracing::warn!(error = %why, "trace export failed; spans dropped (tollgate_trace_spans_dropped_total)");
}

/// The OTLP traces URL for `http/protobuf`: a base URL gets the conventional path.
pub fn http_traces_url(endpoint: &str) -> String {
    match url::Url::parse(endpoint) {
        Ok(u) if u.path() == "/" || u.path().is_empty() => {
            format!("{}/v1/traces", endpoint.trim_end_matches('/'))
        }
        _ => endpoint.to_owned(),
    }
}

fn build_exporter(cfg: &Tracing) -> Result<Exporter, ExportError> {
    match cfg.protocol {
        OtlpProtocol::HttpProtobuf => {
            super::otlp::HttpExporter::new(cfg, http_traces_url(&cfg.otlp_endpoint), EXPORT_TIMEOUT)
                .map(Exporter::Http)
        }
        OtlpProtocol::Grpc => {
            let mut metadata = tonic::metadata::MetadataMap::new();
            for (k, v) in &cfg.headers {
                let key =
                    tonic::metadata::MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
                        .map_err(|_| {
                            ExportError::Build(format!("header `{k}` is not valid gRPC metadata"))
                        })?;
                let value = v
                    .parse()
                    .map_err(|_| ExportError::Build(format!("header `{k}`: invalid value")))?;
                metadata.insert(key, value);
            }
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_protocol(opentelemetry_otlp::Protocol::Grpc)
                .with_endpoint(cfg.otlp_endpoint.clone())
                .with_timeout(EXPORT_TIMEOUT)
                .with_metadata(metadata)
                .build()
                .map(Exporter::Grpc)
                .map_err(|e| ExportError::Build(e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::time::UNIX_EPOCH;

    use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status};
    use opentelemetry::InstrumentationScope;
    use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
    use std::sync::atomic::AtomicBool;

    use tokio::sync::{oneshot, Notify};

    use super::{Queue, BATCH_SPANS, QUEUE_SPANS};

    fn span() -> SpanData {
        SpanData {
            span_context: SpanContext::empty_context(),
            parent_span_id: SpanId::INVALID,
            span_kind: SpanKind::Internal,
            name: Cow::Borrowed("s"),
            start_time: UNIX_EPOCH,
            end_time: UNIX_EPOCH,
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: InstrumentationScope::default(),
        }
    }

    fn woken(q: &Queue) -> bool {
        let notified = q.batch_ready.notified();
        tokio::pin!(notified);
        notified.enable()
    }

    #[test]
    fn a_full_batch_wakes_the_exporter_and_a_full_queue_drops() {
        let (stop, _stopped) = oneshot::channel();
        let q = Queue {
            spans: std::sync::Mutex::new(Vec::new()),
            batch_ready: Notify::new(),
            closed: AtomicBool::new(false),
            stop: std::sync::Mutex::new(Some(stop)),
        };
        for _ in 1..BATCH_SPANS {
            q.push(span());
        }
        assert!(!woken(&q), "woken before a batch was full");
        q.push(span());
        assert!(woken(&q), "not woken by a full batch");
        for _ in BATCH_SPANS..QUEUE_SPANS + 10 {
            q.push(span());
        }
        assert_eq!(q.take().len(), QUEUE_SPANS, "the queue outgrew its bound");
        assert!(q.take().is_empty());
        // After the export thread's last batch, a span is dropped, not kept.
        q.closed.store(true, std::sync::atomic::Ordering::Relaxed);
        q.push(span());
        assert!(q.take().is_empty());
    }
}
