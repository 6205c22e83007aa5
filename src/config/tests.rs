use super::*;

#[test]
fn defaults_load_from_empty_file() {
    let cfg = Config::from_yaml_with_env("", None).unwrap();
    assert_eq!(cfg.listen.http.unwrap().port(), 8080);
    assert_eq!(cfg.tokens.access.ttl, Duration::from_secs(3600));
    assert_eq!(cfg.token_endpoints()[0].path, "/oauth/token");
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
