//! OpenTelemetry tracing (`telemetry.tracing`) of the real binary, exported to an OTLP
//! receiver this suite runs on 127.0.0.1 and decodes (`opentelemetry-proto`): one span per
//! request with children for the calls it made, trace context continued only from trusted
//! proxies and propagated to the upstream and the introspection server, the trace id in
//! the access log, no secret in any exported byte, and an unreachable collector costing
//! nothing but the dropped-spans counter.

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use common::idp::{Idp, CLIENT_ID, CLIENT_SECRET};
use common::process::GatewayProcess;
use common::{client, wait_until, Upstream};

const PASSWORD: &str = "correct horse battery staple";
const COLLECTOR_KEY: &str = "collector-key-5f1e0c";
const OPAQUE: &str = "opaque-token-7d2a9b41c3";
const CLIENT: &str = "trace-web";

/// One exported span with the service that sent it.
#[derive(Clone, Debug)]
struct Got {
    service: String,
    span: Span,
}

/// An OTLP receiver: `http/protobuf` on `POST /v1/traces`, or gRPC `TraceService/Export`
/// (h2c). Keeps every span, every raw body, and the headers of each export.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Got>>>,
    raw: Arc<Mutex<Vec<u8>>>,
    headers: Arc<Mutex<Vec<http::HeaderMap>>>,
}

impl Collector {
    async fn start(grpc: bool) -> (Collector, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let me = Collector::default();
        let shared = me.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let me = shared.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let me = me.clone();
                        async move {
                            Ok::<_, Infallible>(if grpc {
                                me.grpc(req).await
                            } else {
                                me.http(req).await.map(|b| {
                                    b.map_err(|e: Infallible| -> tonic::Status { match e {} })
                                        .boxed_unsync()
                                })
                            })
                        }
                    });
                    if grpc {
                        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    } else {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    }
                });
            }
        });
        (me, addr)
    }

    fn keep(&self, headers: &http::HeaderMap, body: &[u8], req: ExportTraceServiceRequest) {
        self.headers.lock().unwrap().push(headers.clone());
        self.raw.lock().unwrap().extend_from_slice(body);
        let mut spans = self.spans.lock().unwrap();
        for rs in req.resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|r| attr(&r.attributes, "service.name"))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    spans.push(Got {
                        service: service.clone(),
                        span,
                    });
                }
            }
        }
    }

    async fn http(&self, req: http::Request<hyper::body::Incoming>) -> http::Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        let ok = parts.uri.path() == "/v1/traces"
            && parts.headers.get("content-type").map(|v| v.as_bytes())
                == Some(b"application/x-protobuf");
        match ExportTraceServiceRequest::decode(body.as_ref()) {
            Ok(decoded) if ok => {
                self.keep(&parts.headers, &body, decoded);
                http::Response::builder()
                    .header("content-type", "application/x-protobuf")
                    .body(Full::new(
                        ExportTraceServiceResponse::default().encode_to_vec().into(),
                    ))
                    .unwrap()
            }
            _ => http::Response::builder()
                .status(400)
                .body(Full::new(Bytes::new()))
                .unwrap(),
        }
    }

    async fn grpc(
        &self,
        req: http::Request<hyper::body::Incoming>,
    ) -> http::Response<tonic::body::BoxBody> {
        let headers = req.headers().clone();
        let me = self.clone();
        let mut grpc = tonic::server::Grpc::new(tonic::codec::ProstCodec::<
            ExportTraceServiceResponse,
            ExportTraceServiceRequest,
        >::default());
        grpc.unary(
            tower::service_fn(move |r: tonic::Request<ExportTraceServiceRequest>| {
                let me = me.clone();
                let headers = headers.clone();
                async move {
                    let msg = r.into_inner();
                    me.keep(&headers, &msg.encode_to_vec(), msg);
                    Ok::<_, tonic::Status>(tonic::Response::new(
                        ExportTraceServiceResponse::default(),
                    ))
                }
            }),
            req,
        )
        .await
    }

    fn all(&self) -> Vec<Got> {
        self.spans.lock().unwrap().clone()
    }
}

fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    let v = attrs.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    Some(match v.value.as_ref()? {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::BoolValue(b) => b.to_string(),
        any_value::Value::DoubleValue(d) => d.to_string(),
        other => format!("{other:?}"),
    })
}

const FOREIGN: &str = "https://idp.example.test/";

/// A token of the foreign issuer, signed with the key its JWKS (`jwk`) publishes.
fn foreign_token() -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("fk1".into());
    let c = common::authn::claims(json!({"iss": FOREIGN, "aud": "my-api", "sub": "ext-1"}));
    common::authn::sign(
        &h,
        &c,
        &EncodingKey::from_rsa_pem(common::authn::other_rsa_pair().0.as_bytes()).unwrap(),
    )
}

fn jwk() -> Value {
    common::authn::other_rsa_jwk("fk1")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Seeds a user and a public client into the SQLite file the gateway will open.
async fn seed(db: &str) {
    let store = tollgate::store::connect(db).await.unwrap();
    let (user, email) = ("tracy", "tracy@example.com");
    common::seed::user(&*store, Some(user), email, PASSWORD, "default").await;
    let grants = ["password", "refresh_token"];
    common::seed::client(&*store, CLIENT, None, &grants, &[]).await;
}

struct Setup {
    gw: GatewayProcess,
    up: Upstream,
    idp: Idp,
    _dir: tempfile::TempDir,
}

/// The real binary with tracing to `collector`, a route to a recording upstream, and an
/// introspection server for opaque tokens.
async fn start(tracing_yaml: &str, extra: &str) -> Setup {
    let up = Upstream::start().await;
    let idp = Idp::start().await;
    idp.add_token(
        OPAQUE,
        json!({"active": true, "sub": "intro-user", "exp": common::authn::now() + 3600}),
    );
    *idp.jwks.lock().unwrap() = json!({"keys": [jwk()]});
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/t.db", dir.path().display());
    seed(&db).await;
    let yaml = format!(
        "listen:\n  http: 127.0.0.1:0\n  admin: 127.0.0.1:0\nstore:\n  url: {db}\n{tokens}\
token_endpoints:\n  - path: /oauth/token\n\
introspection:\n  - name: corp\n    url: {intro}\n    client_id: {CLIENT_ID}\n    client_secret_env: TRACE_TEST_INTROSPECTION_SECRET\n\
jwt_issuers:\n  - issuer: \"{FOREIGN}\"\n    jwks_url: {jwks}\n    audience: my-api\n\
log:\n  access_log: true\n  level: debug\n\
telemetry:\n  tracing:\n{tracing_yaml}\
routes:\n  - {{ name: api, path: /api, upstream: \"{u}\", auth: required }}\n{extra}",
        tokens = common::authn::tokens_yaml(dir.path()),
        intro = idp.introspect_url(),
        jwks = idp.jwks_url(),
        u = up.url(),
    );
    let path = dir.path().join("tollgate.yaml");
    std::fs::write(&path, yaml).unwrap();
    let gw = GatewayProcess::start(&path, &[("TRACE_TEST_INTROSPECTION_SECRET", CLIENT_SECRET)]);
    Setup {
        gw,
        up,
        idp,
        _dir: dir,
    }
}

fn collector_yaml(addr: SocketAddr, protocol: &str) -> String {
    format!(
        "    otlp_endpoint: http://{addr}\n    protocol: {protocol}\n    sample_ratio: 1.0\n    service_name: tollgate-under-test\n    headers:\n      x-collector-key: {COLLECTOR_KEY}\n"
    )
}

async fn password_grant(gw: &GatewayProcess) -> Value {
    let resp = client()
        .post(format!("{}/oauth/token", gw.http))
        .form(&[
            ("grant_type", "password"),
            ("username", "tracy"),
            ("password", PASSWORD),
            ("client_id", CLIENT),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// The server span of the request to `path`.
fn request_span<'a>(spans: &'a [Got], path: &str) -> Option<&'a Span> {
    spans.iter().map(|g| &g.span).find(|s| {
        s.kind == SpanKind::Server as i32
            && attr(&s.attributes, "url.path").as_deref() == Some(path)
    })
}

fn children<'a>(spans: &'a [Got], parent: &Span) -> Vec<&'a Span> {
    spans
        .iter()
        .map(|g| &g.span)
        .filter(|s| s.trace_id == parent.trace_id && s.parent_span_id == parent.span_id)
        .collect()
}

async fn wait_for_span(c: &Collector, what: &str, f: impl Fn(&[Got]) -> bool) {
    wait_until(Duration::from_secs(20), what, || {
        let spans = c.all();
        let ok = f(&spans);
        async move { ok }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_one_trace_from_client_to_upstream_and_nothing_secret_is_exported() {
    let (collector, addr) = Collector::start(false).await;
    let s = start(&collector_yaml(addr, "http/protobuf"), "").await;

    // 1. A password grant: store calls and password hashing under the endpoint's span.
    let tokens = password_grant(&s.gw).await;
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let refresh = tokens["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    // 2. A proxied request with the self-issued JWT, carrying a client's traceparent from
    // an untrusted peer.
    let foreign_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let resp = client()
        .get(format!("{}/api/jwt", s.gw.http))
        .bearer_auth(&access)
        .header(
            "traceparent",
            format!("00-{foreign_trace}-00f067aa0ba902b7-01"),
        )
        .header("tracestate", "vendor=client-chosen")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_string();

    // 3. A proxied request with an opaque token: an introspection call.
    let resp = client()
        .get(format!("{}/api/opaque", s.gw.http))
        .bearer_auth(OPAQUE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // 4. A foreign JWT: a JWKS fetch.
    let resp = client()
        .get(format!("{}/api/foreign", s.gw.http))
        .bearer_auth(foreign_token())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    wait_for_span(&collector, "the spans of all four requests", |spans| {
        ["/oauth/token", "/api/jwt", "/api/opaque", "/api/foreign"]
            .iter()
            .all(|p| request_span(spans, p).is_some_and(|r| !children(spans, r).is_empty()))
    })
    .await;
    let spans = collector.all();
    assert!(spans.iter().all(|g| g.service == "tollgate-under-test"));
    assert!(collector.headers.lock().unwrap().iter().all(|h| {
        h.get("x-collector-key").map(|v| v.as_bytes()) == Some(COLLECTOR_KEY.as_bytes())
    }));

    // The password grant: password hashing and store calls are its children.
    let grant = request_span(&spans, "/oauth/token").unwrap();
    assert_eq!(grant.name, "POST tollgate");
    assert_eq!(
        attr(&grant.attributes, "http.response.status_code").as_deref(),
        Some("200")
    );
    let names: Vec<&str> = children(&spans, grant)
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert!(names.contains(&"password"), "children: {names:?}");
    assert!(
        names.contains(&"user_by_username") || names.contains(&"user_by_email"),
        "children: {names:?}"
    );
    assert!(names.contains(&"insert_token"), "children: {names:?}");
    let store_span = children(&spans, grant)
        .into_iter()
        .find(|s| s.name == "insert_token")
        .unwrap();
    assert_eq!(
        attr(&store_span.attributes, "db.system.name").as_deref(),
        Some("sqlite")
    );

    // The JWT request: a server span with the route, outcome, token kind and cache result,
    // one upstream child, and the upstream got that child's context.
    let jwt = request_span(&spans, "/api/jwt").unwrap();
    assert_eq!(jwt.name, "GET api");
    let a = |k: &str| attr(&jwt.attributes, k);
    assert_eq!(a("http.route").as_deref(), Some("api"));
    assert_eq!(a("http.request.method").as_deref(), Some("GET"));
    assert_eq!(a("http.response.status_code").as_deref(), Some("200"));
    assert_eq!(a("tollgate.auth").as_deref(), Some("authenticated"));
    assert_eq!(a("tollgate.token_kind").as_deref(), Some("jwt"));
    assert_eq!(a("tollgate.cache").as_deref(), Some("miss"));
    assert_eq!(
        a("tollgate.request_id").as_deref(),
        Some(request_id.as_str())
    );
    // Not continued from an untrusted peer: a new trace, linked to the inbound one.
    assert_ne!(hex(&jwt.trace_id), foreign_trace);
    assert!(jwt.parent_span_id.is_empty(), "a root span");
    assert_eq!(jwt.links.len(), 1);
    assert_eq!(hex(&jwt.links[0].trace_id), foreign_trace);
    let upstream_span = children(&spans, jwt)
        .into_iter()
        .find(|s| s.name == "upstream")
        .expect("an upstream child span");
    assert_eq!(upstream_span.kind, SpanKind::Client as i32);
    let seen =
        s.up.requests()
            .into_iter()
            .find(|r| r.path == "/api/jwt")
            .unwrap();
    assert_eq!(
        seen.header("traceparent"),
        Some(
            format!(
                "00-{}-{}-01",
                hex(&jwt.trace_id),
                hex(&upstream_span.span_id)
            )
            .as_str()
        )
    );
    assert_eq!(
        seen.header("tracestate"),
        None,
        "the client's tracestate is not passed on"
    );

    // The opaque request: an introspection child, and the introspection server joined
    // the trace.
    let opaque = request_span(&spans, "/api/opaque").unwrap();
    assert_eq!(
        attr(&opaque.attributes, "tollgate.token_kind").as_deref(),
        Some("opaque")
    );
    assert_eq!(
        attr(&opaque.attributes, "tollgate.cache").as_deref(),
        Some("miss")
    );
    let intro = children(&spans, opaque)
        .into_iter()
        .find(|s| s.name == "introspect")
        .expect("an introspection child span");
    let tps = s.idp.traceparents.lock().unwrap().clone();
    assert!(
        tps.contains(&format!(
            "00-{}-{}-01",
            hex(&opaque.trace_id),
            hex(&intro.span_id)
        )),
        "introspection traceparents: {tps:?}"
    );

    // The foreign JWT: a JWKS fetch under its request, and the JWKS server joined the trace.
    let foreign = request_span(&spans, "/api/foreign").unwrap();
    assert_eq!(
        attr(&foreign.attributes, "tollgate.token_kind").as_deref(),
        Some("foreign_jwt")
    );
    let fetch = children(&spans, foreign)
        .into_iter()
        .find(|s| s.name == "jwks fetch")
        .expect("a JWKS fetch child span");
    assert!(
        s.idp.traceparents.lock().unwrap().contains(&format!(
            "00-{}-{}-01",
            hex(&foreign.trace_id),
            hex(&fetch.span_id)
        )),
        "JWKS traceparent missing"
    );

    // The access log line names the trace.
    let logs = s.gw.log_text();
    let line = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["target"] == "tollgate::access" && v["path"] == "/api/jwt")
        .expect("an access log line");
    assert_eq!(line["trace_id"], hex(&jwt.trace_id));

    // Nothing secret in any exported byte.
    let raw = collector.raw.lock().unwrap().clone();
    let raw = String::from_utf8_lossy(&raw);
    for secret in [
        PASSWORD,
        access.as_str(),
        OPAQUE,
        CLIENT_SECRET,
        COLLECTOR_KEY,
    ] {
        assert!(!raw.contains(secret), "an exported span carries a secret");
    }
    if !refresh.is_empty() {
        assert!(!raw.contains(refresh.as_str()));
    }
    // Nor in the log (debug level), the collector key included.
    assert!(!logs.contains(COLLECTOR_KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_continues_the_callers_trace() {
    let (collector, addr) = Collector::start(false).await;
    let s = start(
        &collector_yaml(addr, "http/protobuf"),
        "trusted_proxies: [127.0.0.1/32]\n",
    )
    .await;
    let tokens = password_grant(&s.gw).await;
    let access = tokens["access_token"].as_str().unwrap();
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let parent = "b7ad6b7169203331";
    let resp = client()
        .get(format!("{}/api/continued", s.gw.http))
        .bearer_auth(access)
        .header("traceparent", format!("00-{trace}-{parent}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    wait_for_span(&collector, "the continued request's spans", |spans| {
        request_span(spans, "/api/continued").is_some_and(|r| !children(spans, r).is_empty())
    })
    .await;
    let spans = collector.all();
    let req = request_span(&spans, "/api/continued").unwrap();
    assert_eq!(hex(&req.trace_id), trace);
    assert_eq!(hex(&req.parent_span_id), parent);
    assert!(req.links.is_empty());
    let seen = s.up.last();
    assert!(seen
        .header("traceparent")
        .unwrap()
        .starts_with(&format!("00-{trace}-")));
}

/// A request sent again after its first attempt was lost carries the trace context of
/// its upstream span on each attempt, never the client's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_request_carries_the_trace_context_on_each_attempt() {
    let (collector, addr) = Collector::start(false).await;
    let (lost, heads) = common::upstream::head_then_close().await;
    let live = Upstream::start().await;
    let s = start(
        &collector_yaml(addr, "http/protobuf"),
        &format!(
            "  - {{ name: retry, path: /retry, upstream: {{ targets: [\"http://{lost}\", \"{u}\"], retries: 1, eject_after: 100 }} }}\n",
            u = live.url()
        ),
    )
    .await;
    let client_trace = "0af7651916cd43dd8448eb211c80319c";
    let resp = client()
        .get(format!("{}/retry/x", s.gw.http))
        .header(
            "traceparent",
            format!("00-{client_trace}-b7ad6b7169203331-01"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = live.last();
    let second = seen.header("traceparent").expect("the retry's traceparent");
    let lost_heads = heads.lock().unwrap().clone();
    assert_eq!(lost_heads.len(), 1, "{lost_heads:?}");
    let first = lost_heads[0]
        .lines()
        .find_map(|l| l.strip_prefix("traceparent: "))
        .expect("the first attempt's traceparent")
        .trim()
        .to_string();
    // The same context on both attempts: the upstream span's, in Tollgate's own trace
    // (the client is not a trusted proxy).
    assert_eq!(first, second);
    assert!(!second.contains(client_trace), "{second}");
    wait_for_span(&collector, "the retried request's spans", |spans| {
        request_span(spans, "/retry/x").is_some_and(|r| !children(spans, r).is_empty())
    })
    .await;
    let spans = collector.all();
    let req = request_span(&spans, "/retry/x").unwrap();
    assert!(
        second.starts_with(&format!("00-{}-", hex(&req.trace_id))),
        "{second}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_export_carries_the_same_spans() {
    let (collector, addr) = Collector::start(true).await;
    let s = start(&collector_yaml(addr, "grpc"), "").await;
    let tokens = password_grant(&s.gw).await;
    let resp = client()
        .get(format!("{}/api/over-grpc", s.gw.http))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    wait_for_span(&collector, "spans exported over gRPC", |spans| {
        request_span(spans, "/api/over-grpc")
            .is_some_and(|r| children(spans, r).iter().any(|c| c.name == "upstream"))
    })
    .await;
    let headers = collector.headers.lock().unwrap().clone();
    assert!(headers
        .iter()
        .all(|h| h.get("x-collector-key").map(|v| v.as_bytes()) == Some(COLLECTOR_KEY.as_bytes())));
    assert!(collector
        .all()
        .iter()
        .all(|g| g.service == "tollgate-under-test"));
}

fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_costs_only_the_dropped_counter() {
    // A port nothing listens on.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let s = start(&collector_yaml(closed, "http/protobuf"), "").await;
    let tokens = password_grant(&s.gw).await;
    let access = tokens["access_token"].as_str().unwrap();
    for i in 0..20 {
        let resp = client()
            .get(format!("{}/api/{i}", s.gw.http))
            .bearer_auth(access)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let admin = s.gw.admin.clone();
    wait_until(Duration::from_secs(30), "dropped spans counted", || {
        let admin = admin.clone();
        async move {
            let text = common::scrape(&admin).await;
            metric(
                &text,
                "tollgate_trace_spans_dropped_total{reason=\"export_failed\"}",
            ) >= 20.0
        }
    })
    .await;
    // Still serving.
    let resp = client()
        .get(format!("{}/api/after", s.gw.http))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[test]
fn check_refuses_tracing_settings_that_would_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let cases: HashMap<&str, &str> = HashMap::from([
        ("ftp://collector:4318", "is not an http:// or https:// URL"),
        ("not a url", "not a URL"),
    ]);
    for (endpoint, why) in cases {
        let path = write_config(dir.path(), &format!("    otlp_endpoint: \"{endpoint}\"\n"));
        let out = check(&path);
        assert!(!out.status.success(), "{endpoint} accepted");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(why),
            "{endpoint}: {out:?}"
        );
    }
    for (yaml, why) in [
        (
            "    otlp_endpoint: https://c:4317\n    protocol: grpc\n",
            "plain `http://` only",
        ),
        (
            "    otlp_endpoint: http://c:4318\n    sample_ratio: 1.5\n",
            "not between 0.0 and 1.0",
        ),
        (
            "    otlp_endpoint: http://c:4318\n    headers:\n      \"bad header\": x\n",
            "not a valid header name",
        ),
        (
            "    otlp_endpoint: http://c:4318\n    headers:\n      x-key: \"secret-in-error\\n\"\n",
            "not a valid header value",
        ),
        (
            "    otlp_endpoint: http://c:4318\n    protocol: zipkin\n",
            "protocol",
        ),
    ] {
        let path = write_config(dir.path(), yaml);
        let out = check(&path);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "accepted: {yaml}");
        assert!(err.contains(why), "{yaml}: {err}");
        assert!(
            !err.contains("secret-in-error"),
            "a header value in an error"
        );
    }
    let path = write_config(dir.path(), "    otlp_endpoint: http://collector:4318\n");
    assert!(check(&path).status.success());
}

fn write_config(dir: &Path, tracing: &str) -> std::path::PathBuf {
    let path = dir.join("tollgate.yaml");
    std::fs::write(
        &path,
        format!(
            "listen:\n  http: 127.0.0.1:0\nstore:\n  url: sqlite://{}/t.db\ntelemetry:\n  tracing:\n{tracing}",
            dir.display()
        ),
    )
    .unwrap();
    path
}

fn check(path: &Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("--config")
        .arg(path)
        .arg("check")
        .output()
        .unwrap()
}
