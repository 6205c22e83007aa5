//! Logging (`tracing`, pretty or JSON) and the Prometheus metrics recorder.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::{fmt, EnvFilter};

use crate::config::raw::LogFormat;

/// Installs the global tracing subscriber. `TOLLGATE_LOG_FORMAT=json` or the config's
/// `log.format` selects JSON; `RUST_LOG` overrides `log.level`. Safe to call twice.
pub fn init_logging(format: LogFormat, level: &str) {
    let json = std::env::var("TOLLGATE_LOG_FORMAT")
        .map(|v| v.eq_ignore_ascii_case("json"))
        .unwrap_or(format == LogFormat::Json);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder.try_init()
    };
}

/// The process-wide metrics handle; installs the recorder on first use.
pub fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("duration_seconds".into()),
                &[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0,
                ],
            )
            .expect("valid buckets")
            .build_recorder();
        let handle = recorder.handle();
        // In tests several gateways share one process: the first recorder wins and every
        // handle renders it.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// A static label for a status code, so recording a request allocates nothing.
pub fn status_label(code: u16) -> &'static str {
    static LABELS: OnceLock<Vec<&'static str>> = OnceLock::new();
    let labels = LABELS.get_or_init(|| {
        (0..600u16)
            .map(|c| &*Box::leak(c.to_string().into_boxed_str()))
            .collect()
    });
    labels.get(code as usize).copied().unwrap_or("other")
}
