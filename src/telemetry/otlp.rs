//! The `http/protobuf` trace export: the OTLP `ExportTraceServiceRequest` written in
//! protobuf straight from the finished spans, and POSTed with reqwest.
//!
//! Why not opentelemetry-otlp's HTTP exporter: it clones every span and converts it into
//! the generated message structs (a new `String` for every attribute key and value, a
//! `Vec` for every id) before encoding them, and that cost more instructions than the
//! request each span describes (BENCHMARKS.md, "Seventh round"). The bytes are the same
//! message: a unit test decodes them with opentelemetry-proto and compares them with what
//! opentelemetry-proto's own conversion makes of the same spans. gRPC export keeps
//! opentelemetry-otlp's tonic exporter (`export.rs`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status};
use opentelemetry::{Array, InstrumentationScope, Key, Value};
use opentelemetry_sdk::trace::SpanData;
use opentelemetry_sdk::Resource;

use super::export::ExportError;
use crate::config::raw::Tracing;

/// The most of a collector's answer that is read (to keep its connection for the next
/// export); the answer itself is not used.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// POSTs batches of spans to the collector's traces URL.
#[derive(Debug)]
pub struct HttpExporter {
    client: reqwest::Client,
    url: String,
    headers: HeaderMap,
    resource: Resource,
}

impl HttpExporter {
    /// `telemetry.tracing`'s URL (`export::http_traces_url`) and headers, which `check`
    /// has validated.
    pub fn new(cfg: &Tracing, url: String, timeout: Duration) -> Result<Self, ExportError> {
        let mut headers = HeaderMap::new();
        for (name, value) in &cfg.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                ExportError::Build(format!("header `{name}` is not a valid header name"))
            })?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| ExportError::Build(format!("header `{name}`: invalid value")))?;
            headers.insert(name, value);
        }
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ExportError::Build(e.to_string()))?;
        Ok(HttpExporter {
            client,
            url,
            headers,
            resource: Resource::builder_empty().build(),
        })
    }

    pub fn set_resource(&mut self, resource: &Resource) {
        self.resource = resource.clone();
    }

    /// Sends one batch; any answer but 2xx is a failed export.
    pub async fn export(&self, spans: &[SpanData]) -> Result<(), String> {
        let body = encode(spans, &self.resource);
        let mut answer = self
            .client
            .post(&self.url)
            .headers(self.headers.clone())
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = answer.status();
        let mut read = 0;
        while read < MAX_ANSWER_BYTES {
            match answer.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                _ => break,
            }
        }
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the collector answered {status}"))
        }
    }
}

/// The `ExportTraceServiceRequest` for `spans`: one `ResourceSpans`, one `ScopeSpans` per
/// instrumentation scope (in the order first seen), as opentelemetry-proto groups them.
pub fn encode(spans: &[SpanData], resource: &Resource) -> Vec<u8> {
    let schema_url = resource.schema_url().unwrap_or("").as_bytes();
    let mut buf = Vec::with_capacity(64 + 600 * spans.len());
    // ExportTraceServiceRequest.resource_spans
    message(&mut buf, 1, |b| {
        // ResourceSpans.resource
        message(b, 1, |b| {
            for (k, v) in resource.iter() {
                attribute(b, 1, k, v);
            }
        });
        // Each span's scope, as an index into `scopes`: one comparison per span when all
        // share one scope (Tollgate's own spans do), and none while writing them.
        let mut scopes: Vec<&InstrumentationScope> = Vec::new();
        let mut of_span = Vec::with_capacity(spans.len());
        for s in spans {
            let at = match scopes
                .iter()
                .rposition(|scope| same_scope(scope, &s.instrumentation_scope))
            {
                Some(at) => at,
                None => {
                    scopes.push(&s.instrumentation_scope);
                    scopes.len() - 1
                }
            };
            of_span.push(at);
        }
        for (i, scope) in scopes.into_iter().enumerate() {
            // ResourceSpans.scope_spans
            message(b, 2, |b| {
                message(b, 1, |b| {
                    text(b, 1, scope.name());
                    text(b, 2, scope.version().unwrap_or(""));
                    for kv in scope.attributes() {
                        attribute(b, 3, &kv.key, &kv.value);
                    }
                });
                for (s, _) in spans.iter().zip(&of_span).filter(|(_, at)| **at == i) {
                    long_message(b, 2, |b| span(b, s));
                }
                // opentelemetry-proto gives each ScopeSpans the resource's schema URL.
                bytes_nonempty(b, 3, schema_url);
            });
        }
        bytes_nonempty(b, 3, schema_url);
    });
    buf
}

/// `a == b`, without the clone and sort of both attribute lists that
/// `InstrumentationScope`'s `==` makes even when neither has any (Tollgate's scope has none).
fn same_scope(a: &InstrumentationScope, b: &InstrumentationScope) -> bool {
    if a.attributes().next().is_none() && b.attributes().next().is_none() {
        a.name() == b.name() && a.version() == b.version() && a.schema_url() == b.schema_url()
    } else {
        a == b
    }
}

/// `Span` (opentelemetry/proto/trace/v1/trace.proto).
fn span(b: &mut Vec<u8>, s: &SpanData) {
    let cx = &s.span_context;
    bytes(b, 1, &cx.trace_id().to_bytes());
    bytes(b, 2, &cx.span_id().to_bytes());
    trace_state(b, 3, cx);
    if s.parent_span_id != SpanId::INVALID {
        bytes(b, 4, &s.parent_span_id.to_bytes());
    }
    text(b, 5, &s.name);
    uint(b, 6, kind(&s.span_kind));
    fixed64(b, 7, nanos(s.start_time));
    fixed64(b, 8, nanos(s.end_time));
    for kv in &s.attributes {
        attribute(b, 9, &kv.key, &kv.value);
    }
    uint(b, 10, s.dropped_attributes_count.into());
    for e in s.events.iter() {
        message(b, 11, |b| {
            fixed64(b, 1, nanos(e.timestamp));
            text(b, 2, &e.name);
            for kv in &e.attributes {
                attribute(b, 3, &kv.key, &kv.value);
            }
            uint(b, 4, e.dropped_attributes_count.into());
        });
    }
    uint(b, 12, s.events.dropped_count.into());
    for l in s.links.iter() {
        message(b, 13, |b| {
            bytes(b, 1, &l.span_context.trace_id().to_bytes());
            bytes(b, 2, &l.span_context.span_id().to_bytes());
            trace_state(b, 3, &l.span_context);
            for kv in &l.attributes {
                attribute(b, 4, &kv.key, &kv.value);
            }
            uint(b, 5, l.dropped_attributes_count.into());
            fixed32(b, 6, l.span_context.trace_flags().to_u8().into());
        });
    }
    uint(b, 14, s.links.dropped_count.into());
    // Always present, as opentelemetry-proto writes it.
    message(b, 15, |b| {
        let (code, description) = match &s.status {
            Status::Unset => (0, ""),
            Status::Ok => (1, ""),
            Status::Error { description } => (2, description.as_ref()),
        };
        text(b, 2, description);
        uint(b, 3, code);
    });
    fixed32(b, 16, cx.trace_flags().to_u8().into());
}

fn trace_state(b: &mut Vec<u8>, field: u32, cx: &SpanContext) {
    let state = cx.trace_state().header();
    text(b, field, &state);
}

fn kind(k: &SpanKind) -> u64 {
    match k {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A `KeyValue` field. A string attribute whose whole message is under 128 bytes (nearly
/// all of them) is written in one go, each length known before its bytes; any other
/// through [`message`]. The same bytes either way.
fn attribute(b: &mut Vec<u8>, field: u32, k: &Key, v: &Value) {
    if let Value::String(s) = v {
        let (k, s) = (k.as_str().as_bytes(), s.as_str().as_bytes());
        // KeyValue { key = 1 (left out when empty), value = 2: AnyValue { string_value = 1 } }
        let any = 2 + s.len();
        let key_len = if k.is_empty() { 0 } else { 2 + k.len() };
        let whole = key_len + 2 + any;
        if whole < 0x80 && field < 16 {
            b.reserve(2 + whole);
            b.extend_from_slice(&[(field << 3) as u8 | LEN, whole as u8]);
            if !k.is_empty() {
                b.extend_from_slice(&[1 << 3 | LEN, k.len() as u8]);
                b.extend_from_slice(k);
            }
            b.extend_from_slice(&[2 << 3 | LEN, any as u8, 1 << 3 | LEN, s.len() as u8]);
            b.extend_from_slice(s);
            return;
        }
    }
    message(b, field, |b| key_value(b, k, v));
}

/// `KeyValue`'s fields.
fn key_value(b: &mut Vec<u8>, k: &Key, v: &Value) {
    text(b, 1, k.as_str());
    message(b, 2, |b| any_value(b, v));
}

/// `AnyValue`'s fields. Its `oneof` is written even when it holds a default (`false`, 0,
/// ""), as prost does.
fn any_value(b: &mut Vec<u8>, v: &Value) {
    match v {
        Value::String(s) => bytes(b, 1, s.as_str().as_bytes()),
        Value::Bool(x) => {
            key(b, 2, VARINT);
            varint(b, u64::from(*x));
        }
        Value::I64(x) => {
            key(b, 3, VARINT);
            varint(b, *x as u64);
        }
        Value::F64(x) => {
            key(b, 4, I64);
            b.extend_from_slice(&x.to_le_bytes());
        }
        Value::Array(a) => message(b, 5, |b| match a {
            Array::Bool(xs) => xs
                .iter()
                .for_each(|x| message(b, 1, |b| any_value(b, &Value::Bool(*x)))),
            Array::I64(xs) => xs
                .iter()
                .for_each(|x| message(b, 1, |b| any_value(b, &Value::I64(*x)))),
            Array::F64(xs) => xs
                .iter()
                .for_each(|x| message(b, 1, |b| any_value(b, &Value::F64(*x)))),
            Array::String(xs) => xs
                .iter()
                .for_each(|x| message(b, 1, |b| bytes(b, 1, x.as_str().as_bytes()))),
            // A kind of array added to the API later: an empty array rather than a panic.
            _ => {}
        }),
        // A kind of value added to the API later: an `AnyValue` with nothing set.
        _ => {}
    }
}

// Protobuf's wire format (https://protobuf.dev/programming-guides/encoding/).

const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;
const I32: u8 = 5;

fn key(b: &mut Vec<u8>, field: u32, wire: u8) {
    varint(b, u64::from(field << 3 | u32::from(wire)));
}

fn varint(b: &mut Vec<u8>, v: u64) {
    // Tags and most lengths are one byte: no copy of a ten-byte buffer for those.
    if v < 0x80 {
        b.push(v as u8);
        return;
    }
    let (bytes, n) = varint_bytes(v);
    b.extend_from_slice(&bytes[..n]);
}

/// `v` as a varint: its bytes, and how many of them are used.
fn varint_bytes(mut v: u64) -> ([u8; 10], usize) {
    let (mut bytes, mut n) = ([0u8; 10], 0);
    while v >= 0x80 {
        bytes[n] = v as u8 | 0x80;
        v >>= 7;
        n += 1;
    }
    bytes[n] = v as u8;
    (bytes, n + 1)
}

fn bytes(b: &mut Vec<u8>, field: u32, value: &[u8]) {
    key(b, field, LEN);
    varint(b, value.len() as u64);
    b.extend_from_slice(value);
}

/// A `string` or `bytes` field, left out when empty (proto3's default).
fn bytes_nonempty(b: &mut Vec<u8>, field: u32, value: &[u8]) {
    if !value.is_empty() {
        bytes(b, field, value);
    }
}

fn text(b: &mut Vec<u8>, field: u32, value: &str) {
    bytes_nonempty(b, field, value.as_bytes());
}

fn uint(b: &mut Vec<u8>, field: u32, value: u64) {
    if value != 0 {
        key(b, field, VARINT);
        varint(b, value);
    }
}

fn fixed64(b: &mut Vec<u8>, field: u32, value: u64) {
    if value != 0 {
        key(b, field, I64);
        b.extend_from_slice(&value.to_le_bytes());
    }
}

fn fixed32(b: &mut Vec<u8>, field: u32, value: u32) {
    if value != 0 {
        key(b, field, I32);
        b.extend_from_slice(&value.to_le_bytes());
    }
}

/// A nested message: `fields` writes it after one byte kept for its length, which is
/// enough for most (an attribute, a status: under 128 bytes); a longer one moves what was
/// written to make room. Cheaper than measuring every message first, or than moving
/// every message's bytes.
fn message(b: &mut Vec<u8>, field: u32, fields: impl FnOnce(&mut Vec<u8>)) {
    key(b, field, LEN);
    let at = b.len();
    b.push(0);
    fields(b);
    let (len, n) = varint_bytes((b.len() - at - 1) as u64);
    b[at] = len[0];
    if n > 1 {
        b.splice(at + 1..at + 1, len[1..n].iter().copied());
    }
}

/// [`message`] for one expected to take 128 to 16,383 bytes (a span): two bytes kept for
/// its length, so the usual case moves nothing.
fn long_message(b: &mut Vec<u8>, field: u32, fields: impl FnOnce(&mut Vec<u8>)) {
    key(b, field, LEN);
    let at = b.len();
    b.extend_from_slice(&[0, 0]);
    fields(b);
    let (len, n) = varint_bytes((b.len() - at - 2) as u64);
    match n {
        1 => {
            b[at] = len[0];
            b.remove(at + 1);
        }
        _ => {
            b[at..at + 2].copy_from_slice(&len[..2]);
            if n > 2 {
                b.splice(at + 2..at + 2, len[2..n].iter().copied());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::time::Duration;

    use opentelemetry::trace::{
        Event, Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
    };
    use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
    use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
    use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
    use opentelemetry_sdk::Resource;
    use prost::Message;

    fn context(trace: u128, span: u64, state: &str) -> SpanContext {
        SpanContext::new(
            TraceId::from(trace),
            SpanId::from(span),
            TraceFlags::SAMPLED,
            false,
            state.parse::<TraceState>().expect("a trace state"),
        )
    }

    fn spans(scope: &InstrumentationScope) -> Vec<SpanData> {
        let start = std::time::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        let mut events = SpanEvents::default();
        events.events.push(Event::new(
            "exception",
            start + Duration::from_micros(10),
            vec![KeyValue::new("exception.message", "boom")],
            1,
        ));
        events.dropped_count = 3;
        let mut links = SpanLinks::default();
        links.links.push(Link::new(
            context(7, 8, "vendor=value"),
            vec![KeyValue::new("link.kind", "inbound")],
            4,
        ));
        links.dropped_count = 5;
        let server = SpanData {
            span_context: context(
                0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10,
                0x1112_1314_1516_1718,
                "",
            ),
            parent_span_id: SpanId::INVALID,
            span_kind: SpanKind::Server,
            name: Cow::Borrowed("GET"),
            start_time: start,
            end_time: start + Duration::from_micros(250),
            attributes: vec![
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("http.response.status_code", 200i64),
                KeyValue::new("negative", -3i64),
                KeyValue::new("zero", 0i64),
                KeyValue::new("ratio", 0.25f64),
                KeyValue::new("flag", false),
                KeyValue::new("empty", ""),
                KeyValue::new(
                    "list",
                    Value::Array(Array::String(vec![
                        StringValue::from("a"),
                        StringValue::from(""),
                    ])),
                ),
                KeyValue::new("bools", Value::Array(Array::Bool(vec![true, false]))),
                KeyValue::new("ints", Value::Array(Array::I64(vec![1, -1]))),
                KeyValue::new("floats", Value::Array(Array::F64(vec![1.5]))),
            ],
            dropped_attributes_count: 2,
            events,
            links,
            status: Status::error("upstream timed out"),
            instrumentation_scope: scope.clone(),
        };
        let client = SpanData {
            span_context: context(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10, 0x21, "a=1,b=2"),
            parent_span_id: SpanId::from(0x1112_1314_1516_1718),
            span_kind: SpanKind::Client,
            name: Cow::Owned("upstream".into()),
            start_time: start,
            end_time: start,
            attributes: vec![],
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: scope.clone(),
        };
        let ok = SpanData {
            span_kind: SpanKind::Internal,
            status: Status::Ok,
            name: Cow::Borrowed(""),
            ..client.clone()
        };
        vec![server, client, ok]
    }

    fn resource() -> Resource {
        Resource::builder_empty()
            .with_service_name("tollgate-under-test")
            .with_attribute(KeyValue::new("service.version", "1.2.3"))
            .with_schema_url(vec![], "https://opentelemetry.io/schemas/1.0.0")
            .build()
    }

    /// What opentelemetry-otlp would have sent for the same spans.
    fn reference(spans: Vec<SpanData>, resource: &Resource) -> ExportTraceServiceRequest {
        let resource = ResourceAttributesWithSchema::from(resource);
        ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(spans, &resource),
        }
    }

    #[test]
    fn the_request_is_what_opentelemetry_proto_makes() {
        let scope = InstrumentationScope::builder("tollgate")
            .with_version("0.1.0")
            .with_attributes([KeyValue::new("scope.attr", 1i64)])
            .build();
        let spans = spans(&scope);
        let resource = resource();
        let ours = ExportTraceServiceRequest::decode(super::encode(&spans, &resource).as_slice())
            .expect("our bytes decode");
        assert_eq!(ours, reference(spans, &resource));
    }

    /// Whatever the length, [`super::long_message`] writes what [`super::message`] does.
    #[test]
    fn long_and_short_messages_are_the_same_bytes() {
        for n in [0, 1, 125, 127, 128, 129, 300, 16_383, 16_384, 20_000] {
            let body = vec![7u8; n];
            let (mut short, mut long) = (vec![1u8], vec![1u8]);
            super::message(&mut short, 2, |b| b.extend_from_slice(&body));
            super::long_message(&mut long, 2, |b| b.extend_from_slice(&body));
            assert_eq!(short, long, "{n} bytes");
        }
    }

    #[test]
    fn spans_of_two_scopes_and_an_empty_resource() {
        let a = InstrumentationScope::builder("tollgate").build();
        let b = InstrumentationScope::builder("other")
            .with_version("2")
            .build();
        let mut spans = spans(&a);
        spans[1].instrumentation_scope = b.clone();
        let resource = Resource::builder_empty().build();
        let mut ours =
            ExportTraceServiceRequest::decode(super::encode(&spans, &resource).as_slice())
                .expect("our bytes decode");
        let mut theirs = reference(spans, &resource);
        // opentelemetry-proto groups the scopes in a hash map: compare them in one order.
        for r in ours
            .resource_spans
            .iter_mut()
            .chain(theirs.resource_spans.iter_mut())
        {
            r.scope_spans.sort_by(|x, y| {
                x.scope
                    .as_ref()
                    .map(|s| &s.name)
                    .cmp(&y.scope.as_ref().map(|s| &s.name))
            });
        }
        assert_eq!(ours, theirs);
        assert_eq!(ours.resource_spans[0].scope_spans.len(), 2);
    }

    #[test]
    fn no_spans_is_an_empty_resource_spans() {
        let resource = resource();
        let ours = ExportTraceServiceRequest::decode(super::encode(&[], &resource).as_slice())
            .expect("our bytes decode");
        assert_eq!(ours.resource_spans.len(), 1);
        assert!(ours.resource_spans[0].scope_spans.is_empty());
    }
}
