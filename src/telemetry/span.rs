//! The spans Tollgate exports, recorded by Tollgate: a span is its ids, its times and a
//! short list of attributes, ended when its last handle is dropped and handed to the
//! export queue (`export.rs`) as the SDK's `SpanData`.
//!
//! Why not `tracing` spans through tracing-opentelemetry: creating a span in
//! tracing-subscriber's registry and the layer's `SpanBuilder`, recording each field
//! through a visitor into a new `String`, entering and leaving the span on every poll of
//! the request's future and closing it into `SpanData` cost ~30k instructions per traced
//! request, more than the proxied request itself (BENCHMARKS.md, "Eighth round"). Here a
//! span is one allocation, its attributes are set by key, and which span is current is a
//! task-local (`Current`), set for the request's future and for each child's.
//!
//! Sampling is the SDK's `ParentBased(TraceIdRatioBased(sample_ratio))`, with the same
//! arithmetic on the trace id: a span with a parent follows the parent's decision; a root
//! is sampled when its trace id falls under the ratio. A span that is not sampled still
//! has ids, so its callees receive a `traceparent` (with the sampled flag clear), and
//! records nothing.

use std::borrow::Cow;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use futures_util::future::Either;
use opentelemetry::trace::{
    Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, Key, KeyValue, Value};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use tokio::task::futures::TaskLocalFuture;

/// The sampling ratio of root spans, set once at start (`telemetry.tracing.sample_ratio`).
static RATIO: OnceLock<f64> = OnceLock::new();

/// Sets the sampling ratio of root spans; the first call wins.
pub(super) fn set_ratio(ratio: f64) {
    let _ = RATIO.set(ratio);
}

/// A span being recorded, or none (tracing off). Clones share one span; it ends, and is
/// queued for export when sampled, when the last clone is dropped.
#[derive(Clone, Default)]
pub struct Span(Option<Arc<Recording>>);

struct Recording {
    context: SpanContext,
    parent: SpanId,
    kind: SpanKind,
    start: SystemTime,
    /// `None` when not sampled: such a span only carries its context to callees.
    fields: Option<Mutex<Fields>>,
}

/// What changes while a span is open.
struct Fields {
    name: Cow<'static, str>,
    attributes: Vec<KeyValue>,
    links: Vec<Link>,
    status: Status,
}

/// Where a new span's trace comes from.
pub enum Parent<'a> {
    /// The current span of this task (`Current`), or a new trace when there is none.
    Current,
    /// A trusted caller's span: the new span continues its trace.
    Remote(SpanContext),
    /// A new trace, linked to an untrusted caller's span.
    Linked(&'a SpanContext),
}

impl Span {
    /// No span: tracing is off.
    pub const fn none() -> Self {
        Span(None)
    }

    /// Starts a span. `attributes` is where the span's attributes are kept: give it room
    /// for those [`Span::set`] will add.
    pub fn start(
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        parent: Parent<'_>,
        attributes: Vec<KeyValue>,
    ) -> Span {
        let (parent_cx, links) = match parent {
            Parent::Current => (current_context(), Vec::new()),
            Parent::Remote(cx) => (Some(cx), Vec::new()),
            Parent::Linked(cx) => (None, vec![Link::with_context(cx.clone())]),
        };
        let span_id = SpanId::from(random_id());
        let (context, parent) = match parent_cx.filter(SpanContext::is_valid) {
            Some(p) => (
                SpanContext::new(
                    p.trace_id(),
                    span_id,
                    p.trace_flags().with_sampled(p.is_sampled()),
                    false,
                    p.trace_state().clone(),
                ),
                p.span_id(),
            ),
            None => {
                let trace_id =
                    TraceId::from(u128::from(random_id()) << 64 | u128::from(random_id()));
                let ratio = RATIO.get().copied().unwrap_or(1.0);
                let flags = TraceFlags::default().with_sampled(sample_root(ratio, trace_id));
                (
                    SpanContext::new(trace_id, span_id, flags, false, TraceState::NONE),
                    SpanId::INVALID,
                )
            }
        };
        let fields = context.is_sampled().then(|| {
            Mutex::new(Fields {
                name: name.into(),
                attributes,
                links,
                status: Status::Unset,
            })
        });
        Span(Some(Arc::new(Recording {
            context,
            parent,
            kind,
            start: SystemTime::now(),
            fields,
        })))
    }

    /// The span's context, when there is a span.
    pub fn context(&self) -> Option<&SpanContext> {
        self.0.as_ref().map(|r| &r.context)
    }

    /// Adds attribute `key`, which the span does not have yet (no search for an earlier
    /// value: for the attributes a request's end sets once).
    pub fn add(&self, key: &'static str, value: impl Into<Value>) {
        self.with_fields(|f| {
            f.attributes
                .push(KeyValue::new(Key::from_static_str(key), value.into()))
        });
    }

    /// Sets attribute `key` (replacing an earlier value of the same key).
    pub fn set(&self, key: &'static str, value: impl Into<Value>) {
        self.with_fields(|f| {
            let value = value.into();
            match f.attributes.iter_mut().find(|kv| kv.key.as_str() == key) {
                Some(kv) => kv.value = value,
                None => f
                    .attributes
                    .push(KeyValue::new(Key::from_static_str(key), value)),
            }
        });
    }

    /// Renames the span (the request span is named once its route is known).
    pub fn set_name(&self, name: impl Into<Cow<'static, str>>) {
        self.with_fields(|f| f.name = name.into());
    }

    /// Marks the span failed (OpenTelemetry status `Error`, no description).
    pub fn set_error(&self) {
        self.with_fields(|f| f.status = Status::error(""));
    }

    fn with_fields(&self, f: impl FnOnce(&mut Fields)) {
        if let Some(fields) = self.0.as_ref().and_then(|r| r.fields.as_ref()) {
            f(&mut fields.lock().unwrap_or_else(|p| p.into_inner()));
        }
    }

    /// Runs `fut` with this span current: spans started inside are its children. The
    /// request span (what [`record_request`] writes to) stays the one current here. No
    /// span (tracing off): `fut` as it is, with no task-local layer around it.
    pub fn instrument<F: Future>(self, fut: F) -> Either<F, TaskLocalFuture<Current, F>> {
        if self.0.is_none() {
            return Either::Left(fut);
        }
        let request = CURRENT.try_with(|c| c.request.clone()).unwrap_or_default();
        Either::Right(CURRENT.scope(
            Current {
                request,
                span: self,
            },
            fut,
        ))
    }

    /// Runs `fut` as the request this span describes: current, and the one
    /// [`record_request`] writes to.
    pub fn instrument_request<F: Future>(self, fut: F) -> TaskLocalFuture<Current, F> {
        CURRENT.scope(
            Current {
                request: self.clone(),
                span: self,
            },
            fut,
        )
    }
}

/// Which spans are current in a task: the request's, and the innermost one.
#[derive(Clone)]
pub struct Current {
    request: Span,
    span: Span,
}

tokio::task_local! {
    static CURRENT: Current;
}

fn current_context() -> Option<SpanContext> {
    CURRENT
        .try_with(|c| c.span.context().cloned())
        .ok()
        .flatten()
}

/// The current request's span (none outside a request, or with tracing off).
pub fn current_request() -> Span {
    CURRENT.try_with(|c| c.request.clone()).unwrap_or_default()
}

/// Sets attribute `key` of the current request's span.
pub fn record_request(key: &'static str, value: &'static str) {
    let _ = CURRENT.try_with(|c| c.request.set(key, value));
}

impl Drop for Recording {
    fn drop(&mut self) {
        let Some(fields) = self.fields.take() else {
            return;
        };
        let f = fields.into_inner().unwrap_or_else(|p| p.into_inner());
        let mut links = SpanLinks::default();
        links.links = f.links;
        super::export::submit(SpanData {
            span_context: self.context.clone(),
            parent_span_id: self.parent,
            span_kind: self.kind.clone(),
            name: f.name,
            start_time: self.start,
            end_time: SystemTime::now(),
            attributes: f.attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links,
            status: f.status,
            instrumentation_scope: scope().clone(),
        });
    }
}

/// The instrumentation scope of every span (`tollgate`).
fn scope() -> &'static InstrumentationScope {
    static SCOPE: OnceLock<InstrumentationScope> = OnceLock::new();
    SCOPE.get_or_init(|| InstrumentationScope::builder("tollgate").build())
}

/// The SDK's `TraceIdRatioBased`: the trace id's low 63 bits against the ratio.
fn sample_root(ratio: f64, trace_id: TraceId) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    let bound = (ratio.max(0.0) * (1u64 << 63) as f64) as u64;
    let low = u64::from_be_bytes(trace_id.to_bytes()[8..].try_into().expect("8 bytes"));
    (low >> 1) < bound
}

/// Ids drawn from the thread's CSPRNG per batch.
const ID_BATCH: usize = 32;

/// A random word that is not zero (a span id of zeros is the invalid one; a trace id is
/// two of these). Drawn from the thread's CSPRNG [`ID_BATCH`] words at a time: one call
/// into the generator per batch rather than per id.
fn random_id() -> u64 {
    thread_local! {
        static IDS: std::cell::RefCell<(usize, [u64; ID_BATCH])> =
            const { std::cell::RefCell::new((ID_BATCH, [0; ID_BATCH])) };
    }
    IDS.with(|ids| {
        let (next, words) = &mut *ids.borrow_mut();
        loop {
            if *next == ID_BATCH {
                rand::Rng::fill(&mut rand::thread_rng(), &mut words[..]);
                *next = 0;
            }
            let word = words[*next];
            *next += 1;
            if word != 0 {
                return word;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn children_join_the_current_span_and_records_go_to_the_request() {
        let request = Span::start(
            "GET",
            SpanKind::Server,
            Parent::Current,
            vec![KeyValue::new("http.request.method", "GET")],
        );
        let request_cx = request.context().unwrap().clone();
        assert!(request_cx.is_valid() && request_cx.is_sampled());
        let child_cx = request
            .clone()
            .instrument_request(async {
                record_request("tollgate.auth", "authenticated");
                let child = Span::start("upstream", SpanKind::Client, Parent::Current, vec![]);
                let cx = child.context().unwrap().clone();
                child
                    .instrument(async {
                        // Inside a child, records still name the request.
                        record_request("tollgate.cache", "hit");
                        let grandchild =
                            Span::start("store", SpanKind::Client, Parent::Current, vec![]);
                        assert_eq!(grandchild.0.as_ref().unwrap().parent, cx.span_id());
                    })
                    .await;
                cx
            })
            .await;
        assert_eq!(child_cx.trace_id(), request_cx.trace_id());
        assert_ne!(child_cx.span_id(), request_cx.span_id());
        let fields = request.0.as_ref().unwrap().fields.as_ref().unwrap();
        let f = fields.lock().unwrap();
        let get = |k: &str| {
            f.attributes
                .iter()
                .find(|kv| kv.key.as_str() == k)
                .map(|kv| kv.value.as_str().into_owned())
        };
        assert_eq!(get("tollgate.auth").as_deref(), Some("authenticated"));
        assert_eq!(get("tollgate.cache").as_deref(), Some("hit"));
        assert_eq!(get("http.request.method").as_deref(), Some("GET"));
    }

    #[test]
    fn a_remote_parent_is_continued_and_a_linked_one_is_not() {
        let remote = SpanContext::new(
            TraceId::from(0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c),
            SpanId::from(0x00f0_67aa_0ba9_02b7),
            TraceFlags::default(),
            true,
            TraceState::from_key_value([("k", "v")]).unwrap(),
        );
        let continued = Span::start(
            "r",
            SpanKind::Server,
            Parent::Remote(remote.clone()),
            vec![],
        );
        let cx = continued.context().unwrap();
        assert_eq!(cx.trace_id(), remote.trace_id());
        assert_eq!(continued.0.as_ref().unwrap().parent, remote.span_id());
        // The caller's decision: not sampled, so nothing is recorded, but ids still flow.
        assert!(!cx.is_sampled() && cx.is_valid());
        assert!(continued.0.as_ref().unwrap().fields.is_none());
        assert_eq!(cx.trace_state().header(), "k=v");

        let linked = Span::start("r", SpanKind::Server, Parent::Linked(&remote), vec![]);
        let cx = linked.context().unwrap();
        assert_ne!(cx.trace_id(), remote.trace_id());
        assert_eq!(linked.0.as_ref().unwrap().parent, SpanId::INVALID);
        assert_eq!(cx.trace_state().header(), "");
        let f = linked.0.as_ref().unwrap().fields.as_ref().unwrap();
        assert_eq!(f.lock().unwrap().links[0].span_context, remote);
    }

    #[test]
    fn ids_are_distinct_and_never_zero() {
        let ids: std::collections::HashSet<u64> = (0..4 * ID_BATCH).map(|_| random_id()).collect();
        assert_eq!(ids.len(), 4 * ID_BATCH);
        assert!(!ids.contains(&0));
    }

    #[test]
    fn set_replaces_an_attribute() {
        let s = Span::start("x", SpanKind::Internal, Parent::Current, vec![]);
        s.set("k", "a");
        s.set("k", 7i64);
        let f = s.0.as_ref().unwrap().fields.as_ref().unwrap();
        let f = f.lock().unwrap();
        assert_eq!(f.attributes.len(), 1);
        assert_eq!(f.attributes[0].value, Value::I64(7));
    }

    /// The SDK's sampler decides the same for ids across the range.
    #[test]
    fn root_sampling_is_the_sdks() {
        use opentelemetry::trace::SamplingDecision;
        use opentelemetry_sdk::trace::{Sampler, ShouldSample};
        for ratio in [0.0, 0.1, 0.5, 0.999, 1.0] {
            let sdk = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio)));
            for i in 0..64u128 {
                let id =
                    TraceId::from(i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834) | 1);
                let theirs = sdk
                    .should_sample(None, id, "x", &SpanKind::Server, &[], &[])
                    .decision
                    == SamplingDecision::RecordAndSample;
                assert_eq!(sample_root(ratio, id), theirs, "ratio {ratio}, id {id}");
            }
        }
    }
}
