//! deploy/kubernetes/: every overlay renders with `kubectl kustomize`, passes
//! `kubernetes-validate --strict` and yamllint, keeps the pod hardening, and carries a
//! Tollgate config that `tollgate check` accepts, with the files its upstream TLS settings
//! name mounted from the rendered ConfigMaps and Secrets (the gateway overlay's routes go to
//! an HTTPS upstream verified against a mounted CA); the ingress overlay copies exactly the
//! headers (and runs exactly the Envoy bootstrap) that tests/ingress_proxies.rs runs for
//! real. Tools that are missing skip their part with a printed reason.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::ingress::{find_binary, snippet_with};
use serde_yaml::Value;

const OVERLAYS: [&str; 3] = ["gateway", "sidecar", "ingress"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn overlay_dir(name: &str) -> PathBuf {
    root().join("deploy/kubernetes/overlays").join(name)
}

fn read_yaml_docs(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn identity_headers() -> BTreeSet<String> {
    let n = tollgate::config::raw::IdentityHeaders::default();
    [n.user_id, n.email, n.role, n.scopes, n.client_id, n.alias]
        .into_iter()
        .map(|h| h.to_ascii_lowercase())
        .collect()
}

fn lower_set<'a>(names: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    names
        .into_iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect()
}

/// A directory a pod mounts: its path in the container, and the directory in the overlay
/// holding the same files.
type Mount = (&'static str, PathBuf);

/// Each overlay's Tollgate config file, with the mounts of the files it names.
fn overlay_configs() -> Vec<(String, PathBuf, Vec<Mount>)> {
    vec![
        (
            "gateway".into(),
            overlay_dir("gateway").join("tollgate.yaml"),
            vec![(GATEWAY_CA_MOUNT, overlay_dir("gateway"))],
        ),
        (
            "sidecar".into(),
            overlay_dir("sidecar").join("tollgate.yaml"),
            vec![],
        ),
        (
            "ingress".into(),
            overlay_dir("ingress").join("tollgate/tollgate.yaml"),
            vec![],
        ),
        (
            "container image".into(),
            root().join("deploy/container/tollgate.yaml"),
            vec![],
        ),
    ]
}

/// Where the gateway overlay's Deployment mounts the CA bundle of its HTTPS upstreams.
const GATEWAY_CA_MOUNT: &str = "/etc/tollgate-ca";

/// The `upstream.tls` file paths (`ca_file`, `client_cert`, `client_key`) of every route.
fn upstream_tls_files(config: &Value) -> Vec<String> {
    let mut files = Vec::new();
    for route in config["routes"].as_sequence().into_iter().flatten() {
        let tls = &route["upstream"]["tls"];
        for key in ["ca_file", "client_cert", "client_key"] {
            if let Some(p) = tls[key].as_str() {
                files.push(p.to_string());
            }
        }
    }
    files
}

/// `text` with every path under a container mount point moved to the local directory that
/// holds the same files, written to `out`.
fn localize(text: &str, mounts: &[(String, PathBuf)], out: &Path) -> PathBuf {
    let mut text = text.to_string();
    for (mount, dir) in mounts {
        text = text.replace(
            &format!("{}/", mount.trim_end_matches('/')),
            &format!("{}/", dir.display()),
        );
    }
    std::fs::write(out, text).unwrap();
    out.to_path_buf()
}

fn tollgate_check(config: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("--config")
        .arg(config)
        .arg("check")
        .env_remove("TOLLGATE_CONFIG")
        .env(
            "TOLLGATE_STORE__URL",
            "postgres://tollgate:secret@db.example:5432/tollgate",
        )
        .output()
        .unwrap()
}

#[test]
fn every_shipped_config_passes_tollgate_check() {
    let tmp = tempfile::tempdir().unwrap();
    for (i, (name, path, mounts)) in overlay_configs().into_iter().enumerate() {
        let text = std::fs::read_to_string(&path).unwrap();
        let mounts: Vec<(String, PathBuf)> = mounts
            .into_iter()
            .map(|(m, d)| (m.to_string(), d))
            .collect();
        let local = localize(&text, &mounts, &tmp.path().join(format!("{i}.yaml")));
        let out = tollgate_check(&local);
        assert!(
            out.status.success(),
            "{name} ({}): {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn ingress_overlay_copies_exactly_the_tested_headers() {
    let config: Value = serde_yaml::from_str(
        &std::fs::read_to_string(overlay_dir("ingress").join("tollgate/tollgate.yaml")).unwrap(),
    )
    .unwrap();
    let verify_path = config["forward_auth"]["path"].as_str().unwrap();
    let tollgate = "tollgate.tollgate.svc.cluster.local:8080";
    let app = overlay_dir("ingress").join("app");

    // ingress-nginx annotations.
    let ingress = read_yaml_docs(&std::fs::read_to_string(app.join("ingress-nginx.yaml")).unwrap());
    let ann = &ingress[0]["metadata"]["annotations"];
    assert_eq!(
        ann["nginx.ingress.kubernetes.io/auth-url"]
            .as_str()
            .unwrap(),
        format!("http://{tollgate}{verify_path}")
    );
    let copied = lower_set(
        ann["nginx.ingress.kubernetes.io/auth-response-headers"]
            .as_str()
            .unwrap()
            .split(','),
    );
    assert_eq!(copied, identity_headers(), "ingress-nginx");
    let key = ann["nginx.ingress.kubernetes.io/auth-cache-key"]
        .as_str()
        .unwrap();
    for part in [
        "$request_method",
        "$host",
        "$request_uri",
        "$http_authorization",
        "$http_cookie",
    ] {
        assert!(key.contains(part), "auth-cache-key lacks {part}");
    }

    // Traefik: the same middlewares as docs/ingress/traefik.yml, which runs for real.
    let docs: Value = serde_yaml::from_str(&snippet_with(
        "traefik.yml",
        &[("tollgate", tollgate), ("upstream", "orders:3000")],
    ))
    .unwrap();
    let traefik =
        read_yaml_docs(&std::fs::read_to_string(app.join("traefik-middleware.yaml")).unwrap());
    let spec_of = |name: &str| {
        traefik
            .iter()
            .find(|d| d["kind"] == "Middleware" && d["metadata"]["name"] == name)
            .map(|d| d["spec"].clone())
            .unwrap_or_else(|| panic!("no Middleware {name}"))
    };
    assert_eq!(
        spec_of("tollgate"),
        docs["http"]["middlewares"]["tollgate"],
        "Traefik forwardAuth"
    );
    assert_eq!(
        spec_of("strip-identity"),
        docs["http"]["middlewares"]["strip-identity"],
        "Traefik strip-identity"
    );

    // Envoy: the bootstrap is docs/ingress/envoy.yaml with the cluster's names.
    let expected = snippet_with(
        "envoy.yaml",
        &[
            ("listen_host", "0.0.0.0"),
            ("listen_port", "8000"),
            ("tollgate_host", "tollgate.tollgate.svc.cluster.local"),
            ("tollgate_port", "8080"),
            ("upstream_host", "orders.orders.svc.cluster.local"),
            ("upstream_port", "3000"),
        ],
    );
    let shipped = std::fs::read_to_string(app.join("envoy-bootstrap.yaml")).unwrap();
    assert_eq!(
        shipped, expected,
        "envoy-bootstrap.yaml drifted from docs/ingress/envoy.yaml"
    );
}

/// Tollgate's container in a rendered pod template keeps the hardening and probes.
fn check_tollgate_pod(overlay: &str, deployment: &Value) {
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{overlay}");
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
        "{overlay}"
    );
    let c = pod["containers"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "tollgate")
        .unwrap_or_else(|| panic!("{overlay}: no tollgate container"));
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{overlay}");
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{overlay}");
    assert_eq!(
        c["livenessProbe"]["httpGet"]["path"], "/healthz",
        "{overlay}"
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"]["path"], "/readyz",
        "{overlay}"
    );
    assert!(c["resources"]["requests"].is_mapping(), "{overlay}");
    assert!(c["resources"]["limits"].is_mapping(), "{overlay}");
}

#[test]
fn overlays_render_and_pass_kubernetes_validate_strict() {
    let Some(kubectl) = find_binary("kubectl") else {
        eprintln!("SKIP: kubectl is not installed: overlays not rendered");
        return;
    };
    let validate = find_binary("kubernetes-validate");
    if validate.is_none() {
        eprintln!(
            "SKIP: kubernetes-validate is not installed (pip; see .ci/run): schemas not checked"
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    for overlay in OVERLAYS {
        let out = Command::new(&kubectl)
            .arg("kustomize")
            .arg(overlay_dir(overlay))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl kustomize {overlay}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rendered = String::from_utf8(out.stdout).unwrap();
        let file = tmp.path().join(format!("{overlay}.yaml"));
        std::fs::write(&file, &rendered).unwrap();
        if let Some(validate) = &validate {
            let out = Command::new(validate)
                .args(["--strict", "--quiet"])
                .arg(&file)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "kubernetes-validate --strict {overlay}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }

        let docs = read_yaml_docs(&rendered);
        let of_kind =
            |kind: &str| -> Vec<&Value> { docs.iter().filter(|d| d["kind"] == kind).collect() };
        let deployments = of_kind("Deployment");
        let with_tollgate: Vec<_> = deployments
            .iter()
            .filter(|d| {
                d["spec"]["template"]["spec"]["containers"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .any(|c| c["name"] == "tollgate")
            })
            .collect();
        assert_eq!(
            with_tollgate.len(),
            1,
            "{overlay}: one Deployment runs Tollgate"
        );
        check_tollgate_pod(overlay, with_tollgate[0]);

        // The generated ConfigMap the pod mounts is a config `tollgate check` accepts.
        let pod = &with_tollgate[0]["spec"]["template"]["spec"];
        let cm_name = pod["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "config")
            .unwrap()["configMap"]["name"]
            .as_str()
            .unwrap()
            .to_string();
        let cm = of_kind("ConfigMap")
            .into_iter()
            .find(|c| c["metadata"]["name"] == cm_name.as_str())
            .unwrap_or_else(|| {
                panic!("{overlay}: the pod mounts {cm_name}, which is not rendered")
            });
        // The files its upstream TLS settings name come from the pod's volumes: each is
        // written where the rendered ConfigMap or Secret puts it, then checked there.
        let text = cm["data"]["tollgate.yaml"].as_str().unwrap();
        let config: Value = serde_yaml::from_str(text).unwrap();
        let container = pod["containers"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "tollgate")
            .unwrap();
        let mut mounts: Vec<(String, PathBuf)> = Vec::new();
        for file in upstream_tls_files(&config) {
            let file = Path::new(&file);
            let (dir, key) = (file.parent().unwrap(), file.file_name().unwrap());
            let mount = container["volumeMounts"]
                .as_sequence()
                .unwrap()
                .iter()
                .find(|m| Path::new(m["mountPath"].as_str().unwrap()) == dir)
                .unwrap_or_else(|| {
                    panic!(
                        "{overlay}: {} is in no volume the pod mounts",
                        file.display()
                    )
                });
            let volume = pod["volumes"]
                .as_sequence()
                .unwrap()
                .iter()
                .find(|v| v["name"] == mount["name"])
                .unwrap();
            let key = key.to_str().unwrap();
            let content = if let Some(name) = volume["configMap"]["name"].as_str() {
                let source = of_kind("ConfigMap")
                    .into_iter()
                    .find(|c| c["metadata"]["name"] == name)
                    .unwrap_or_else(|| {
                        panic!("{overlay}: the pod mounts ConfigMap {name}, which is not rendered")
                    });
                source["data"][key].as_str().map(str::to_string)
            } else if let Some(name) = volume["secret"]["secretName"].as_str() {
                let source = of_kind("Secret")
                    .into_iter()
                    .find(|c| c["metadata"]["name"] == name)
                    .unwrap_or_else(|| {
                        panic!("{overlay}: the pod mounts Secret {name}, which is not rendered")
                    });
                source["stringData"][key]
                    .as_str()
                    .map(str::to_string)
                    .or_else(|| {
                        source["data"][key].as_str().map(|b| {
                            use base64::Engine;
                            String::from_utf8(
                                base64::engine::general_purpose::STANDARD.decode(b).unwrap(),
                            )
                            .unwrap()
                        })
                    })
            } else {
                None
            };
            let content = content.unwrap_or_else(|| {
                panic!(
                    "{overlay}: volume {} holds no key {key} for {}",
                    volume["name"].as_str().unwrap(),
                    file.display()
                )
            });
            let dir = dir.display().to_string();
            let index = mounts
                .iter()
                .position(|(m, _)| *m == dir)
                .unwrap_or_else(|| {
                    let local = tmp.path().join(format!("{overlay}-mount-{}", mounts.len()));
                    std::fs::create_dir_all(&local).unwrap();
                    mounts.push((dir.clone(), local));
                    mounts.len() - 1
                });
            std::fs::write(mounts[index].1.join(key), content).unwrap();
        }
        let conf = localize(
            text,
            &mounts,
            &tmp.path().join(format!("{overlay}-tollgate.yaml")),
        );
        let out = tollgate_check(&conf);
        assert!(
            out.status.success(),
            "{overlay}: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        if overlay == "gateway" {
            // The routes reach an in-cluster HTTPS service, verified against the mounted
            // service CA for the Service's name; `check` shows that transport.
            let https: Vec<&Value> = config["routes"]
                .as_sequence()
                .unwrap()
                .iter()
                .filter(|r| {
                    r["upstream"]["targets"].as_sequence().is_some_and(|t| {
                        t.iter()
                            .all(|t| t.as_str().unwrap().starts_with("https://"))
                    })
                })
                .collect();
            assert!(!https.is_empty(), "gateway: no route has an HTTPS upstream");
            let stdout = String::from_utf8_lossy(&out.stdout);
            for route in https {
                let name = route["name"].as_str().unwrap();
                let tls = &route["upstream"]["tls"];
                let ca = tls["ca_file"]
                    .as_str()
                    .unwrap_or_else(|| panic!("gateway: route {name}: no upstream.tls.ca_file"));
                assert!(
                    ca.starts_with(&format!("{GATEWAY_CA_MOUNT}/")),
                    "gateway: route {name}: ca_file {ca} is not under {GATEWAY_CA_MOUNT}"
                );
                let server_name = tls["server_name"].as_str().unwrap_or_else(|| {
                    panic!("gateway: route {name}: no upstream.tls.server_name")
                });
                let target = route["upstream"]["targets"][0].as_str().unwrap();
                let host = target
                    .trim_start_matches("https://")
                    .split([':', '/'])
                    .next()
                    .unwrap();
                assert_eq!(server_name, host, "gateway: route {name}: server_name");
                assert!(
                    host.ends_with(".svc.cluster.local"),
                    "gateway: route {name}: {host} is not an in-cluster Service"
                );
                assert!(
                    stdout.contains(&format!("server_name {server_name}"))
                        && stdout.contains("tls ca_file"),
                    "gateway: `tollgate check` does not show route {name}'s TLS: {stdout}"
                );
            }
            let cas: Vec<&Value> = of_kind("ConfigMap")
                .into_iter()
                .filter(|c| {
                    c["data"].as_mapping().is_some_and(|d| {
                        d.values().any(|v| {
                            v.as_str()
                                .is_some_and(|v| v.contains("-----BEGIN CERTIFICATE-----"))
                        })
                    })
                })
                .collect();
            assert_eq!(
                cas.len(),
                1,
                "gateway: one ConfigMap carries the upstream CA"
            );

            let replicas = with_tollgate[0]["spec"]["replicas"].as_u64().unwrap();
            assert!(replicas >= 2, "gateway: several replicas");
            assert_eq!(of_kind("PodDisruptionBudget").len(), 1, "gateway: PDB");
            assert_eq!(of_kind("HorizontalPodAutoscaler").len(), 1, "gateway: HPA");
        }
        if overlay == "sidecar" {
            let containers = pod["containers"].as_sequence().unwrap();
            assert!(containers.len() >= 2, "sidecar: Tollgate beside the app");
        }
        if overlay == "ingress" {
            assert_eq!(
                of_kind("Ingress").len(),
                2,
                "ingress-nginx and Traefik Ingresses"
            );
            assert_eq!(of_kind("Middleware").len(), 2, "Traefik middlewares");
        }
    }
}

#[test]
fn deploy_yaml_passes_yamllint() {
    let Some(yamllint) = find_binary("yamllint") else {
        eprintln!("SKIP: yamllint is not installed (pip; see .ci/run)");
        return;
    };
    let out = Command::new(yamllint)
        .args(["-s", "-c"])
        .arg(root().join("deploy/.yamllint"))
        .arg(root().join("deploy"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "yamllint: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}
