use super::*;

#[test]
fn defaults_load_from_empty_file() {
    let cfg = Config::from_yaml_with_env("", None).unwrap();
    assert_eq!(cfg.listen.http.unwrap().port(), 8080);
    assert_eq!(cfg.tokens.access.ttl, Duration::from_secs(3600));
    assert_eq!(cfg.dialects[0].0, "/oauth/token");
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let err =
        Config::from_yaml_with_env("listen:\n  http: 127.0.0.1:1\n  htps: 1\n", None).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("htps"), "{msg}");
    assert!(msg.contains("line 3"), "{msg}");
}

#[test]
fn every_problem_reported_at_once() {
    let yaml = r#"
trusted_proxies: ["nope"]
routes:
  - { name: a, path: noslash, upstream: "http://127.0.0.1:1" }
  - { name: b, path: /b, upstream: "ftp://x" }
  - { name: c, path: /c, upstream: "http://127.0.0.1:1", token_sources: ["form:x"] }
"#;
    let err = Config::from_yaml_with_env(yaml, None).unwrap_err();
    assert_eq!(err.problems.len(), 4, "{err}");
    assert!(err.to_string().contains("routes[1] (b).upstream"), "{err}");
}

#[test]
fn duplicate_routes_rejected() {
    let yaml = r#"
routes:
  - { name: a, path: /x, upstream: "http://127.0.0.1:1" }
  - { name: b, path: /x/, upstream: "http://127.0.0.1:2" }
"#;
    let err = Config::from_yaml_with_env(yaml, None).unwrap_err();
    assert!(err.to_string().contains("never be used"), "{err}");
}

#[test]
fn connection_timeouts_must_be_positive() {
    for key in ["header_read_timeout", "idle_timeout"] {
        let err = Config::from_yaml_with_env(&format!("limits:\n  {key}: 0s\n"), None).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("limits.{key}: must be at least 1ms")),
            "{err}"
        );
    }
    Config::from_yaml_with_env(
        "limits:\n  header_read_timeout: 1ms\n  idle_timeout: 1ms\n",
        None,
    )
    .unwrap();
}

#[test]
fn durations_are_humantime() {
    let cfg = Config::from_yaml_with_env(
        "tokens:\n  access:\n    ttl: 30m\n  refresh:\n    ttl: 30d\n",
        None,
    )
    .unwrap();
    assert_eq!(cfg.tokens.access.ttl, Duration::from_secs(1800));
    assert_eq!(cfg.tokens.refresh.ttl, Duration::from_secs(30 * 86400));
}

#[test]
fn schema_names_keys() {
    let s = Config::json_schema();
    assert!(s.contains("trusted_proxies") && s.contains("token_endpoints"));
}

#[test]
fn listen_workers_defaults_to_one_per_core_and_is_bounded() {
    let cfg = Config::from_yaml_with_env("", None).unwrap();
    assert_eq!(cfg.listen.workers, 0);
    let cfg = Config::from_yaml_with_env("listen:\n  workers: 3\n", None).unwrap();
    assert_eq!(cfg.listen.workers, 3);
    let err = Config::from_yaml_with_env("listen:\n  workers: 100000\n", None).unwrap_err();
    assert!(err.to_string().contains("listen.workers"), "{err}");
}

#[test]
fn rate_limits_validate_and_default_applies_unless_off() {
    let yaml = r#"
rate_limit: { requests: 100, per: 1m }
routes:
  - { name: a, path: /a, upstream: "http://127.0.0.1:1" }
  - { name: b, path: /b, upstream: "http://127.0.0.1:1", rate_limit: off }
  - { name: c, path: /c, upstream: "http://127.0.0.1:1", rate_limit: { requests: 5, per: 1s, burst: 2, key: "header:x-api-key" } }
"#;
    let cfg = Config::from_yaml_with_env(yaml, None).unwrap();
    let a = cfg.routes[0].rate_limit.as_ref().unwrap();
    assert_eq!(
        (a.requests, a.burst, a.key.clone()),
        (100, 100, RateLimitKey::User)
    );
    assert!(cfg.routes[1].rate_limit.is_none());
    let c = cfg.routes[2].rate_limit.as_ref().unwrap();
    assert_eq!(c.interval(), Duration::from_millis(200));
    assert_eq!(
        c.key,
        RateLimitKey::Header(http::HeaderName::from_static("x-api-key"))
    );

    let bad = r#"
rate_limit_store: { url: "http://nope", local_budget: 0 }
routes:
  - { name: a, path: /a, upstream: "http://127.0.0.1:1", rate_limit: { requests: 0, per: 1s, key: nobody } }
  - { name: b, path: /b, upstream: "http://127.0.0.1:1", rate_limit: { requests: 1, per: 1s, store: redis } }
"#;
    let err = Config::from_yaml_with_env(bad, None)
        .unwrap_err()
        .to_string();
    for needle in [
        "rate_limit_store.url",
        "rate_limit_store.local_budget",
        "routes[0] (a).rate_limit.requests",
        "routes[0] (a).rate_limit.key",
    ] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    let no_store = "routes:\n  - { name: b, path: /b, upstream: \"http://127.0.0.1:1\", rate_limit: { requests: 1, per: 1s, store: redis } }\n";
    let err = Config::from_yaml_with_env(no_store, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("needs a top-level `rate_limit_store`"),
        "{err}"
    );
}

#[test]
fn ext_authz_listens_on_its_own_port() {
    let cfg = Config::from_yaml_with_env("listen:\n  ext_authz: 127.0.0.1:9191\n", None).unwrap();
    assert_eq!(cfg.listen.ext_authz.unwrap().port(), 9191);
    // Off by default.
    assert!(Config::from_yaml_with_env("", None)
        .unwrap()
        .listen
        .ext_authz
        .is_none());
    let err = Config::from_yaml_with_env("listen:\n  ext_authz: 0.0.0.0:8080\n", None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("listen.ext_authz"), "{err}");
    assert!(err.contains("listen.http"), "{err}");
    let err = Config::from_yaml_with_env("listen:\n  ext_authz: not-an-address\n", None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("ext_authz"), "{err}");
    // ext_authz alone serves something.
    Config::from_yaml_with_env("listen:\n  http: null\n  ext_authz: 127.0.0.1:9191\n", None)
        .unwrap();
}

#[test]
fn require_client_cert_needs_a_way_to_see_a_certificate() {
    let route = "routes:\n  - { name: m, path: /m, upstream: \"http://127.0.0.1:1\", require_client_cert: true }\n";
    let err = Config::from_yaml_with_env(route, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("require_client_cert"), "{err}");
    // Envoy reports certificates over ext_authz; a trusted proxy over forward-auth.
    Config::from_yaml_with_env(
        &format!("listen:\n  ext_authz: 127.0.0.1:9191\n{route}"),
        None,
    )
    .unwrap();
    Config::from_yaml_with_env(
        &format!("forward_auth:\n  path: /auth\n  client_cert_header: ssl-client-cert\ntrusted_proxies: [10.0.0.0/8]\n{route}"),
        None,
    )
    .unwrap();
    // Forward-auth without a trusted proxy could never be told of one.
    assert!(
        Config::from_yaml_with_env(&format!("forward_auth:\n  path: /auth\n{route}"), None)
            .is_err()
    );
}
