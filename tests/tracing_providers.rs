//! Trace context reaches the providers of account linking: with tracing on, the callback's
//! code exchange and userinfo call carry a `traceparent` of the callback request's trace.
//! (Tracing is process-wide, so this has a test binary of its own; spans go to a collector
//! address nothing listens on, which costs only the dropped-spans counter.)

mod common;

use common::connect_gateway;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_code_exchange_and_userinfo_call_carry_the_callback_trace() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let cfg: tollgate::config::raw::Tracing = serde_yaml::from_str(&format!(
        "otlp_endpoint: http://{closed}\nservice_name: tollgate-providers-test\n"
    ))
    .unwrap();
    tollgate::telemetry::init(tollgate::config::raw::LogFormat::Pretty, "warn", Some(&cfg))
        .unwrap();
    assert!(tollgate::telemetry::trace::on());

    let env = connect_gateway::start().await;
    let (_user, token) = env.user("traced@example.com", "default").await;
    let (callback, cookie) = env.to_callback(&token).await;
    let c = common::client();
    // The callback request arrives with a trace of the caller's choosing; from an
    // untrusted peer it is not continued, so the provider calls carry Tollgate's own.
    let foreign = "4bf92f3577b34da6a3ce929d0e0e4736";
    let done = c
        .get(&callback)
        .header("cookie", &cookie)
        .header("traceparent", format!("00-{foreign}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 302);
    assert!(
        done.headers()["location"]
            .to_str()
            .unwrap()
            .contains("status=connected"),
        "{:?}",
        done.headers()["location"]
    );

    let seen = env.provider.traceparents();
    let trace_of = |path: &str| {
        seen.iter()
            .find(|(p, _)| p == path)
            .map(|(_, tp)| tp.split('-').nth(1).unwrap().to_string())
            .unwrap_or_else(|| panic!("no traceparent on {path}: {seen:?}"))
    };
    let exchange = trace_of("/token");
    let userinfo = trace_of("/userinfo");
    assert_eq!(exchange, userinfo, "one trace for the callback's calls");
    assert_ne!(
        exchange, foreign,
        "an untrusted caller's trace is not continued"
    );
    assert_eq!(exchange.len(), 32);
    // The browser's redirect to the provider's authorize page is not a call Tollgate
    // makes: it carries none.
    assert!(seen.iter().all(|(p, _)| p != "/authorize"));
}
