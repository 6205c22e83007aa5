//! Logging (`tracing`, pretty or JSON), the Prometheus metrics recorder, and
//! OpenTelemetry traces (`trace`, recorded by `span`, exported by `export`).

pub mod export;
mod otlp;
mod span;
pub mod trace;

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

use crate::config::raw::{LogFormat, Tracing};

/// Installs the global tracing subscriber. `TOLLGATE_LOG_FORMAT=json` or the config's
/// `log.format` selects JSON; `RUST_LOG` overrides `log.level`. Safe to call twice.
pub fn init_logging(format: LogFormat, level: &str) {
    let _ = init(format, level, None);
}

/// [`init_logging`], plus span export when `tracing` is set. Fails only when the OTLP
/// exporter cannot be built.
pub fn init(
    format: LogFormat,
    level: &str,
    tracing: Option<&Tracing>,
) -> Result<(), export::ExportError> {
    let json = std::env::var("TOLLGATE_LOG_FORMAT")
        .map(|v| v.eq_ignore_ascii_case("json"))
        .unwrap_or(format == LogFormat::Json);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let log = if json {
        fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        fmt::layer().with_writer(std::io::stderr).boxed()
    }
    .with_filter(filter);
    if let Some(cfg) = tracing {
        trace::start(cfg)?;
    }
    let _ = tracing_subscriber::registry().with(log).try_init();
    Ok(())
}

/// How often histogram samples are folded into their buckets.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

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
        // The recorder keeps every histogram sample until upkeep folds it into the
        // buckets; without a periodic upkeep, memory and per-request cost grow between
        // scrapes (or forever, with no scraper). A plain thread: this may be first
        // called outside any runtime, and upkeep is a short, bounded pass.
        let upkeep = handle.clone();
        let _ = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || loop {
                std::thread::sleep(UPKEEP_EVERY);
                upkeep.run_upkeep();
            });
        // In tests several gateways share one process: the first recorder wins and every
        // handle renders it.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// The `result` label of every reload counter (config, TLS certificate, upstream TLS).
pub const RELOAD_RESULTS: [&str; 2] = ["success", "failure"];

/// Makes the counters `make` names exist at 0, the recorder installed first. Why: a series
/// that first appears with its first event hides that event from `rate()` and
/// `increase()` (there is no earlier sample to rise from), so the first failed login or
/// the first upstream error after a start would never show on a dashboard or fire an
/// alert. Each feature calls this where it is built, with the label values it knows.
pub fn at_zero<I: IntoIterator<Item = metrics::Counter>>(make: impl FnOnce() -> I) {
    metrics();
    for c in make() {
        c.increment(0);
    }
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

/// The per-request metrics of one route (`tollgate_requests_total` and
/// `tollgate_request_duration_seconds`), with their handles kept after first use.
///
/// Why: `metrics::counter!` with labels hashes the name and labels and looks them up in the
/// registry on every call; for the hot path, the handles of the common method/status
/// combinations are looked up once per route and then only incremented.
///
/// The route's histogram and its counters for the statuses Tollgate answers itself
/// ([`GATEWAY_STATUSES`], each method class) exist at 0 from when the route is built: a
/// series that appears with its first event hides that event from `rate()` and
/// `increase()`, so the first 502 after a start would never alert. Statuses an upstream
/// chooses appear with their first request.
pub struct RequestMetrics {
    route: metrics::SharedString,
    /// The route's name as a span attribute (`http.route`, `tollgate.route`): shared, so
    /// a traced request copies no string for it.
    route_value: opentelemetry::StringValue,
    duration: OnceLock<metrics::Histogram>,
    counters: [OnceLock<metrics::Counter>; METHOD_CLASSES.len() * COMMON_STATUSES.len()],
}

const METHOD_CLASSES: [&str; 3] = ["read", "write", "other"];
/// The statuses Tollgate itself answers on a route: refusals (401, 403, 413, 429) and
/// upstream failures (502, 503, 504).
pub const GATEWAY_STATUSES: [u16; 7] = [401, 403, 413, 429, 502, 503, 504];
const COMMON_STATUSES: [u16; 16] = [
    200, 201, 204, 301, 302, 304, 400, 401, 403, 404, 429, 431, 500, 502, 503, 504,
];

impl RequestMetrics {
    pub fn new(route: metrics::SharedString) -> Self {
        let m = RequestMetrics {
            route_value: std::sync::Arc::<str>::from(&*route).into(),
            route,
            duration: OnceLock::new(),
            counters: std::array::from_fn(|_| OnceLock::new()),
        };
        m.histogram();
        for method in METHOD_CLASSES {
            for status in GATEWAY_STATUSES {
                m.with_counter(method, status, |c| c.increment(0));
            }
        }
        m
    }

    /// Hands `f` the counter of `method_class` and `status`: a kept handle for the common
    /// combinations (borrowed, no reference count touched on the hot path), looked up for
    /// the rest.
    fn with_counter(
        &self,
        method_class: &'static str,
        status: u16,
        f: impl FnOnce(&metrics::Counter),
    ) {
        let make = || {
            metrics(); // the recorder exists before a handle is kept
            metrics::counter!(
                "tollgate_requests_total",
                "route" => self.route.clone(),
                "method" => method_class,
                "status" => status_label(status)
            )
        };
        let method = METHOD_CLASSES.iter().position(|m| *m == method_class);
        let slot = COMMON_STATUSES.iter().position(|s| *s == status);
        match (method, slot) {
            (Some(m), Some(s)) => f(self.counters[m * COMMON_STATUSES.len() + s].get_or_init(make)),
            _ => f(&make()),
        }
    }

    fn histogram(&self) -> &metrics::Histogram {
        self.duration.get_or_init(|| {
            metrics();
            metrics::histogram!("tollgate_request_duration_seconds", "route" => self.route.clone())
        })
    }

    /// The route label.
    pub fn route(&self) -> &str {
        &self.route
    }

    /// The route's name as a span attribute value.
    pub fn route_value(&self) -> &opentelemetry::StringValue {
        &self.route_value
    }

    /// Counts one finished request and records how long it took.
    pub fn record(&self, method_class: &'static str, status: u16, elapsed: std::time::Duration) {
        self.with_counter(method_class, status, |c| c.increment(1));
        self.histogram().record(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod request_metrics_tests {
    use super::*;

    #[test]
    fn cached_and_uncached_combinations_both_count() {
        let handle = metrics();
        let m = RequestMetrics::new(metrics::SharedString::const_str("rm-test"));
        for _ in 0..3 {
            m.record("read", 200, std::time::Duration::from_millis(1));
        }
        m.record("other", 418, std::time::Duration::from_millis(1));
        let text = handle.render();
        let line = |needle: &str| {
            text.lines()
                .find(|l| l.starts_with("tollgate_requests_total") && l.contains(needle))
                .map(|l| l.rsplit(' ').next().unwrap().to_owned())
        };
        assert_eq!(
            line("route=\"rm-test\",method=\"read\",status=\"200\"").as_deref(),
            Some("3")
        );
        assert_eq!(
            line("route=\"rm-test\",method=\"other\",status=\"418\"").as_deref(),
            Some("1")
        );
        assert!(text.contains("tollgate_request_duration_seconds_count{route=\"rm-test\"} 4"));
    }
}
