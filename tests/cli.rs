//! `tollgate check`, `route` and `config schema` as an operator runs them.

use std::process::Command;

fn tollgate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(args)
        .env_remove("TOLLGATE_CONFIG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn config(yaml: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.yaml");
    std::fs::write(&p, yaml).unwrap();
    let s = p.to_str().unwrap().to_string();
    (dir, s)
}

const ROUTES: &str = r#"
routes:
  - name: orders
    host: api.example.com
    path: /api/orders
    methods: [GET, POST]
    auth: required
    upstream: http://127.0.0.1:3000
  - name: catchall
    path: /
    upstream: { targets: ["http://127.0.0.1:3001", "http://127.0.0.1:3002"] }
"#;

#[test]
fn check_prints_the_route_table() {
    let (_d, p) = config(ROUTES);
    let (code, out, _) = tollgate(&["--config", &p, "check"]);
    assert_eq!(code, 0);
    assert!(out.contains("configuration OK: 2 route(s)"), "{out}");
    assert!(
        out.contains("orders") && out.contains("api.example.com") && out.contains("GET,POST"),
        "{out}"
    );
    assert!(
        out.contains("http://127.0.0.1:3001 http://127.0.0.1:3002"),
        "{out}"
    );
}

#[test]
fn check_names_the_bad_key_and_exits_1() {
    let (_d, p) = config("listen:\n  http: 127.0.0.1:8080\nroutes:\n  - name: a\n    path: /a\n    upstrem: http://x\n");
    let (code, _, err) = tollgate(&["--config", &p, "check"]);
    assert_eq!(code, 1);
    assert!(err.contains("upstrem") && err.contains("line 6"), "{err}");
}

#[test]
fn env_overrides_file_values() {
    let (_d, p) = config(ROUTES);
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["--config", &p, "check"])
        .env("TOLLGATE_LISTEN__HTTP", "not-an-address")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listen.http"), "{err}");
}

#[test]
fn route_explains_the_choice() {
    let (_d, p) = config(ROUTES);
    let (code, out, _) = tollgate(&[
        "--config",
        &p,
        "route",
        "GET",
        "http://api.example.com/api/orders/../orders/7",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("normalised: /api/orders/7"), "{out}");
    assert!(out.contains("route: orders"), "{out}");
    let (code, out, _) = tollgate(&[
        "--config",
        &p,
        "route",
        "DELETE",
        "http://api.example.com/api/orders/7",
    ]);
    assert_eq!(code, 0);
    assert!(
        out.contains("route: catchall") && out.contains("method DELETE not in"),
        "{out}"
    );
    let (_d2, p2) =
        config("routes:\n  - { name: a, path: /a, upstream: \"http://127.0.0.1:1\" }\n");
    let (code, _, err) = tollgate(&["--config", &p2, "route", "GET", "/b"]);
    assert_eq!(code, 1);
    assert!(err.contains("404"), "{err}");
}

#[test]
fn config_schema_is_json_schema() {
    let (code, out, _) = tollgate(&["config", "schema"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["properties"]["routes"].is_object());
    assert!(v["properties"]["listen"].is_object());
}

#[test]
fn default_config_is_valid() {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/config/tollgate.yaml");
    let (code, out, err) = tollgate(&["--config", p, "check"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("configuration OK"));
}

#[test]
fn usage_errors_exit_2() {
    let (code, _, _) = tollgate(&["no-such-command"]);
    assert_eq!(code, 2);
}

/// `check` and `serve` agree: a name `check` refuses is never a panic at start.
#[test]
fn check_refuses_identity_header_names_that_would_not_start() {
    for (key, bad) in [
        ("signed_jwt", "X Identity Token"),
        ("user_id", "Bad:Name"),
        ("role", "Content-Length"),
        ("email", "x_user_id"),
    ] {
        let (_d, p) = config(&format!("identity_headers:\n  {key}: \"{bad}\"\n{ROUTES}"));
        let (code, _, err) = tollgate(&["--config", &p, "check"]);
        assert_eq!(code, 1, "{key}: {bad}: {err}");
        assert!(err.contains(&format!("identity_headers.{key}")), "{err}");
        let (code, _, err) = tollgate(&["--config", &p, "serve"]);
        assert_ne!(code, 0, "serve must refuse it too");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn check_warns_about_required_routes_anyone_can_register_for() {
    let (_d, p) = config(&format!("users_api:\n  registration: open\n{ROUTES}"));
    let (code, _, err) = tollgate(&["--config", &p, "check"]);
    assert_eq!(code, 0);
    assert!(
        err.contains("warning: routes (orders)") && err.contains("registration is open"),
        "{err}"
    );
    let (_d, p) = config(ROUTES);
    let (_, _, err) = tollgate(&["--config", &p, "check"]);
    assert!(
        !err.contains("warning"),
        "closed registration (the default) is quiet: {err}"
    );
}

#[test]
fn check_and_route_show_the_upstream_protocol_and_tls_settings() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["billing.internal".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(&ca, cert.pem()).unwrap();
    let (_d, p) = config(&format!(
        "routes:\n  - name: billing\n    path: /billing.v1.Billing\n    upstream:\n      targets: [https://10.0.0.7:8443]\n      protocol: h2\n      tls: {{ ca_file: {}, server_name: billing.internal, min_version: 1.3 }}\n  - name: grpc\n    path: /g\n    upstream: {{ targets: [http://127.0.0.1:50051], protocol: h2c }}\n",
        ca.display()
    ));
    let (code, out, err) = tollgate(&["--config", &p, "check"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!(
            "protocol h2, tls ca_file {}, server_name billing.internal, min TLS 1.3",
            ca.display()
        )),
        "{out}"
    );
    assert!(out.contains("protocol h2c, plain"), "{out}");
    let (code, out, _) = tollgate(&["--config", &p, "route", "POST", "/billing.v1.Billing/Get"]);
    assert_eq!(code, 0);
    assert!(out.contains("upstream: protocol h2, tls ca_file"), "{out}");
}

#[test]
fn the_schema_knows_the_upstream_transport_and_client_certificate_keys() {
    let (code, out, _) = tollgate(&["config", "schema"]);
    assert_eq!(code, 0);
    for key in [
        "\"protocol\"",
        "\"h2c\"",
        "\"ca_file\"",
        "\"server_name\"",
        "\"client_cert\"",
        "\"client_key\"",
        "\"min_version\"",
        "\"client_ca\"",
        "\"client_auth\"",
        "\"require_client_cert\"",
        "\"client_cert_sha256\"",
    ] {
        assert!(out.contains(key), "schema lacks {key}");
    }
}
