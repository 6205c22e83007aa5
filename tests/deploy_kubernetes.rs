//! deploy/kubernetes/: every overlay renders with `kubectl kustomize`, passes
//! `kubernetes-validate --strict` (built-in kinds) and yamllint, keeps the pod hardening, and
//! carries a Tollgate config that `tollgate check` accepts, with the files its upstream TLS
//! settings name mounted from the rendered ConfigMaps and Secrets (the gateway overlay's
//! routes go to an HTTPS upstream verified against a mounted CA); the ingress overlay copies
//! exactly the headers (and runs exactly the Envoy bootstrap) that tests/ingress_proxies.rs
//! runs for real. The Gateway API era overlays (envoy-gateway, istio, gateway-api) pass
//! `deploy/kubernetes/validate_crds.py` (their Gateway API, Envoy Gateway and Istio objects
//! against those projects' CRDs) and point their gateway at Tollgate's ext_authz gRPC port,
//! fail closed. Tools that are missing skip their part with a printed reason.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::ingress::{find_binary, snippet_with, CI_TOOLS};
use serde_yaml::Value;

const OVERLAYS: [&str; 6] = [
    "gateway",
    "sidecar",
    "ingress",
    "envoy-gateway",
    "istio",
    "gateway-api",
];

/// The overlays where a gateway or mesh asks Tollgate over gRPC (listen.ext_authz).
const EXT_AUTHZ_OVERLAYS: [&str; 3] = ["envoy-gateway", "istio", "gateway-api"];

/// The kinds of these overlays that only `validate_crds.py` checks (kubernetes-validate has
/// no schema for them).
const CRD_KINDS: [&str; 5] = [
    "Gateway",
    "HTTPRoute",
    "ReferenceGrant",
    "SecurityPolicy",
    "AuthorizationPolicy",
];

/// Envoy's ext_authz port on the tollgate Service speaks gRPC without TLS.
const H2C: &str = "kubernetes.io/h2c";

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

/// `kubectl kustomize` of an overlay.
fn render(kubectl: &Path, overlay: &str) -> String {
    let out = Command::new(kubectl)
        .arg("kustomize")
        .arg(overlay_dir(overlay))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl kustomize {overlay}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
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
        // listen.ext_authz: the Envoy ext_authz gRPC server.
        (
            "envoy-gateway".into(),
            overlay_dir("envoy-gateway").join("tollgate/tollgate.yaml"),
            vec![],
        ),
        (
            "istio".into(),
            overlay_dir("istio").join("tollgate/tollgate.yaml"),
            vec![],
        ),
        (
            "gateway-api".into(),
            overlay_dir("gateway-api").join("tollgate/tollgate.yaml"),
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
        let rendered = render(&kubectl, overlay);
        let file = tmp.path().join(format!("{overlay}.yaml"));
        std::fs::write(&file, &rendered).unwrap();
        // Kinds it has no schema for (Traefik's Middleware, the Gateway API, Envoy Gateway
        // and Istio kinds) kubernetes-validate reports as a warning and skips, exit 0:
        // validate_crds.py checks those (gateway_api_objects_pass_their_crds).
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
        if EXT_AUTHZ_OVERLAYS.contains(&overlay) {
            // Every request waits on Tollgate and fails closed without it: several replicas
            // and a disruption budget.
            let replicas = with_tollgate[0]["spec"]["replicas"].as_u64().unwrap();
            assert!(replicas >= 2, "{overlay}: several replicas");
            assert_eq!(of_kind("PodDisruptionBudget").len(), 1, "{overlay}: PDB");
            let port = ext_authz_service_port(overlay, &docs);
            assert_eq!(port.port, 9191, "{overlay}: the ext-authz Service port");
        }
        if overlay == "gateway-api" {
            assert_eq!(of_kind("Middleware").len(), 2, "Traefik middlewares");
        }
    }
}

/// The tollgate Service's port for Envoy ext_authz, and where the Service is.
struct ExtAuthzPort {
    namespace: String,
    service: String,
    port: u64,
}

/// Finds the port of the tollgate Service that carries appProtocol kubernetes.io/h2c and
/// checks it down to the config: its targetPort is a port of the Tollgate container, whose
/// number is the one `listen.ext_authz` in the mounted tollgate.yaml binds.
fn ext_authz_service_port(overlay: &str, docs: &[Value]) -> ExtAuthzPort {
    let services: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "Service" && d["metadata"]["name"] == "tollgate")
        .collect();
    assert_eq!(services.len(), 1, "{overlay}: one tollgate Service");
    let service = services[0];
    let h2c: Vec<&Value> = service["spec"]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|p| p["appProtocol"] == H2C)
        .collect();
    assert_eq!(
        h2c.len(),
        1,
        "{overlay}: one tollgate Service port with appProtocol {H2C}"
    );
    let port = h2c[0];
    assert_eq!(port["name"], "ext-authz", "{overlay}: the h2c port's name");
    let number = port["port"].as_u64().unwrap();

    let deployment = docs
        .iter()
        .find(|d| {
            d["kind"] == "Deployment"
                && d["spec"]["template"]["spec"]["containers"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .any(|c| c["name"] == "tollgate")
        })
        .unwrap_or_else(|| panic!("{overlay}: no Deployment runs Tollgate"));
    let pod = &deployment["spec"]["template"]["spec"];
    let container = pod["containers"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "tollgate")
        .unwrap();
    let target = port["targetPort"].as_str().unwrap_or_else(|| {
        panic!("{overlay}: the ext-authz Service port's targetPort is not a port name")
    });
    let container_port = container["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["name"] == target)
        .unwrap_or_else(|| panic!("{overlay}: the Tollgate container has no port {target}"))
        ["containerPort"]
        .as_u64()
        .unwrap();

    let cm_name = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "config")
        .unwrap()["configMap"]["name"]
        .as_str()
        .unwrap();
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == cm_name)
        .unwrap_or_else(|| panic!("{overlay}: the pod mounts {cm_name}, which is not rendered"));
    let config: Value =
        serde_yaml::from_str(cm["data"]["tollgate.yaml"].as_str().unwrap()).unwrap();
    let listen = config["listen"]["ext_authz"]
        .as_str()
        .unwrap_or_else(|| panic!("{overlay}: tollgate.yaml has no listen.ext_authz"));
    let (_, listen_port) = listen.rsplit_once(':').unwrap();
    assert_eq!(
        listen_port.parse::<u64>().unwrap(),
        container_port,
        "{overlay}: listen.ext_authz ({listen}) is not the container's {target} port"
    );

    ExtAuthzPort {
        namespace: service["metadata"]["namespace"]
            .as_str()
            .unwrap()
            .to_string(),
        service: "tollgate".to_string(),
        port: number,
    }
}

/// A ReferenceGrant in `to_namespace` lets objects of `from_group`/`from_kind` in
/// `from_namespace` refer to the Service `to_name`.
fn reference_granted(
    docs: &[Value],
    (from_group, from_kind, from_namespace): (&str, &str, &str),
    (to_namespace, to_name): (&str, &str),
) -> bool {
    docs.iter()
        .filter(|d| d["kind"] == "ReferenceGrant" && d["metadata"]["namespace"] == to_namespace)
        .any(|grant| {
            let from = grant["spec"]["from"]
                .as_sequence()
                .unwrap()
                .iter()
                .any(|f| {
                    f["group"] == from_group
                        && f["kind"] == from_kind
                        && f["namespace"] == from_namespace
                });
            let to = grant["spec"]["to"].as_sequence().unwrap().iter().any(|t| {
                t["group"] == ""
                    && t["kind"] == "Service"
                    && (t["name"].is_null() || t["name"] == to_name)
            });
            from && to
        })
}

/// The backend a Gateway API style reference (`group`, `kind`, `name`, `namespace`,
/// `port`) in namespace `from_namespace` names is the ext-authz port of the tollgate Service;
/// across namespaces, a ReferenceGrant allows it.
fn refers_to_ext_authz(
    overlay: &str,
    docs: &[Value],
    reference: &Value,
    (from_group, from_kind, from_namespace): (&str, &str, &str),
    ext_authz: &ExtAuthzPort,
) {
    assert!(
        reference["group"].is_null() || reference["group"] == "",
        "{overlay}: {from_kind}'s backend is not in the core group: {reference:?}"
    );
    assert!(
        reference["kind"].is_null() || reference["kind"] == "Service",
        "{overlay}: {from_kind}'s backend is not a Service: {reference:?}"
    );
    assert_eq!(
        reference["name"],
        ext_authz.service.as_str(),
        "{overlay}: {from_kind}'s backend"
    );
    assert_eq!(
        reference["port"], ext_authz.port,
        "{overlay}: {from_kind}'s backend port is not the Service's {H2C} port"
    );
    let namespace = reference["namespace"].as_str().unwrap_or(from_namespace);
    assert_eq!(
        namespace, ext_authz.namespace,
        "{overlay}: {from_kind}'s backend namespace"
    );
    if namespace != from_namespace {
        assert!(
            reference_granted(
                docs,
                (from_group, from_kind, from_namespace),
                (namespace, ext_authz.service.as_str())
            ),
            "{overlay}: no ReferenceGrant in {namespace} lets {from_kind} in {from_namespace} \
             refer to Service {}",
            ext_authz.service
        );
    }
}

/// The objects of `kind` in the rendered overlay.
fn objects_of<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// The object of `kind` named `name` in `namespace`.
fn object_named<'a>(
    docs: &'a [Value],
    kind: &str,
    namespace: &str,
    name: &str,
) -> Option<&'a Value> {
    docs.iter().find(|d| {
        d["kind"] == kind
            && d["metadata"]["namespace"] == namespace
            && d["metadata"]["name"] == name
    })
}

#[test]
fn ext_authz_overlays_point_their_gateway_at_tollgate_fail_closed() {
    let Some(kubectl) = find_binary("kubectl") else {
        eprintln!("SKIP: kubectl is not installed: overlays not rendered");
        return;
    };

    // Envoy Gateway: a SecurityPolicy on the example HTTPRoute, gRPC to the h2c port.
    let docs = read_yaml_docs(&render(&kubectl, "envoy-gateway"));
    let ext_authz = ext_authz_service_port("envoy-gateway", &docs);
    let policies = objects_of(&docs, "SecurityPolicy");
    assert_eq!(policies.len(), 1, "envoy-gateway: one SecurityPolicy");
    let policy = policies[0];
    assert_eq!(policy["apiVersion"], "gateway.envoyproxy.io/v1alpha1");
    let namespace = policy["metadata"]["namespace"].as_str().unwrap();
    let ext_auth = &policy["spec"]["extAuth"];
    assert_eq!(
        ext_auth["failOpen"], false,
        "envoy-gateway: extAuth.failOpen must be set, to false"
    );
    assert!(
        ext_auth["http"].is_null(),
        "envoy-gateway: extAuth is gRPC, not HTTP"
    );
    let backends = ext_auth["grpc"]["backendRefs"].as_sequence().unwrap();
    assert_eq!(
        backends.len(),
        1,
        "envoy-gateway: one extAuth.grpc backendRef"
    );
    refers_to_ext_authz(
        "envoy-gateway",
        &docs,
        &backends[0],
        ("gateway.envoyproxy.io", "SecurityPolicy", namespace),
        &ext_authz,
    );
    let targets = policy["spec"]["targetRefs"].as_sequence().unwrap();
    assert!(
        !targets.is_empty(),
        "envoy-gateway: the policy targets nothing"
    );
    for target in targets {
        assert_eq!(target["group"], "gateway.networking.k8s.io");
        assert_eq!(target["kind"], "HTTPRoute");
        let name = target["name"].as_str().unwrap();
        let route = object_named(&docs, "HTTPRoute", namespace, name).unwrap_or_else(|| {
            panic!("envoy-gateway: the policy targets HTTPRoute {name}, which is not rendered")
        });
        assert_eq!(route["apiVersion"], "gateway.networking.k8s.io/v1");
        for rule in route["spec"]["rules"].as_sequence().unwrap() {
            for backend in rule["backendRefs"].as_sequence().unwrap() {
                let service = backend["name"].as_str().unwrap();
                assert!(
                    object_named(&docs, "Service", namespace, service).is_some(),
                    "envoy-gateway: HTTPRoute {name} sends to Service {service}, which is not rendered"
                );
            }
        }
    }

    // Istio: an AuthorizationPolicy with action CUSTOM whose provider is the mesh config
    // entry of meshconfig-extension-provider.yaml, which points at the same h2c port.
    let docs = read_yaml_docs(&render(&kubectl, "istio"));
    let ext_authz = ext_authz_service_port("istio", &docs);
    let policies = objects_of(&docs, "AuthorizationPolicy");
    assert_eq!(policies.len(), 1, "istio: one AuthorizationPolicy");
    let policy = policies[0];
    assert_eq!(policy["apiVersion"], "security.istio.io/v1");
    assert_eq!(policy["spec"]["action"], "CUSTOM", "istio: action");
    let provider = policy["spec"]["provider"]["name"].as_str().unwrap();
    assert!(
        policy["spec"]["rules"]
            .as_sequence()
            .is_some_and(|r| !r.is_empty()),
        "istio: a CUSTOM policy without rules sends nothing to Tollgate"
    );
    let namespace = policy["metadata"]["namespace"].as_str().unwrap();
    let selector = policy["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .unwrap();
    assert!(
        objects_of(&docs, "Deployment").iter().any(|d| {
            d["metadata"]["namespace"] == namespace
                && selector.iter().all(|(k, v)| {
                    d["spec"]["template"]["metadata"]["labels"][k.as_str().unwrap()] == *v
                })
        }),
        "istio: the AuthorizationPolicy selects no rendered pod"
    );
    let mesh_file = overlay_dir("istio").join("meshconfig-extension-provider.yaml");
    let kustomization =
        std::fs::read_to_string(overlay_dir("istio").join("kustomization.yaml")).unwrap();
    let kustomization: Value = serde_yaml::from_str(&kustomization).unwrap();
    assert!(
        !kustomization["resources"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|r| *r == "meshconfig-extension-provider.yaml"),
        "istio: the mesh config snippet is not a Kubernetes resource"
    );
    let mesh: Value = serde_yaml::from_str(&std::fs::read_to_string(&mesh_file).unwrap()).unwrap();
    let entry = mesh["meshConfig"]["extensionProviders"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["name"] == provider)
        .unwrap_or_else(|| {
            panic!(
                "istio: no extension provider {provider} in {}",
                mesh_file.display()
            )
        });
    let grpc = &entry["envoyExtAuthzGrpc"];
    assert_eq!(
        grpc["service"],
        format!(
            "{}.{}.svc.cluster.local",
            ext_authz.service, ext_authz.namespace
        ),
        "istio: the extension provider's service"
    );
    assert_eq!(
        grpc["port"], ext_authz.port,
        "istio: the extension provider's port"
    );
    assert_eq!(
        grpc["failOpen"], false,
        "istio: failOpen must be set, to false"
    );
    assert!(
        grpc["timeout"].is_string(),
        "istio: the extension provider's timeout"
    );

    // Gateway API: the standard ExternalAuth filter (experimental channel), gRPC to the h2c
    // port; and Traefik's ExtensionRef to a forwardAuth Middleware.
    let docs = read_yaml_docs(&render(&kubectl, "gateway-api"));
    let ext_authz = ext_authz_service_port("gateway-api", &docs);
    let mut external_auth = Vec::new();
    let mut extension_refs = Vec::new();
    for route in objects_of(&docs, "HTTPRoute") {
        assert_eq!(route["apiVersion"], "gateway.networking.k8s.io/v1");
        for rule in route["spec"]["rules"].as_sequence().unwrap() {
            for filter in rule["filters"].as_sequence().into_iter().flatten() {
                if filter["type"] == "ExternalAuth" {
                    external_auth.push((route, filter));
                } else if filter["type"] == "ExtensionRef" {
                    extension_refs.push((route, filter));
                }
            }
        }
    }
    assert_eq!(
        external_auth.len(),
        1,
        "gateway-api: one ExternalAuth filter"
    );
    let (route, filter) = external_auth[0];
    let auth = &filter["externalAuth"];
    assert_eq!(
        auth["protocol"], "GRPC",
        "gateway-api: ExternalAuth protocol"
    );
    assert_eq!(
        auth["backendRef"]["port"], 9191,
        "gateway-api: ExternalAuth port"
    );
    // The CRD's CEL rule (not checked by validate_crds.py): `grpc` is set when protocol
    // is GRPC, `http` is not.
    assert!(
        auth["grpc"].is_mapping(),
        "gateway-api: protocol GRPC needs externalAuth.grpc"
    );
    assert!(
        auth["http"].is_null(),
        "gateway-api: externalAuth.http with protocol GRPC"
    );
    let namespace = route["metadata"]["namespace"].as_str().unwrap();
    refers_to_ext_authz(
        "gateway-api",
        &docs,
        &auth["backendRef"],
        ("gateway.networking.k8s.io", "HTTPRoute", namespace),
        &ext_authz,
    );
    assert_eq!(
        route["metadata"]["labels"]["tollgate/gateway-api-channel"], "experimental",
        "gateway-api: the ExternalAuth route is labelled experimental"
    );

    let config: Value = serde_yaml::from_str(
        &std::fs::read_to_string(overlay_dir("gateway-api").join("tollgate/tollgate.yaml"))
            .unwrap(),
    )
    .unwrap();
    let verify_path = config["forward_auth"]["path"].as_str().unwrap();
    let names: Vec<&str> = extension_refs
        .iter()
        .map(|(_, f)| {
            assert_eq!(f["extensionRef"]["group"], "traefik.io");
            assert_eq!(f["extensionRef"]["kind"], "Middleware");
            f["extensionRef"]["name"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        names,
        ["strip-identity", "tollgate"],
        "gateway-api: Traefik strips the identity headers, then asks Tollgate"
    );
    let route_namespace = extension_refs[0].0["metadata"]["namespace"]
        .as_str()
        .unwrap();
    let docs_snippet: Value = serde_yaml::from_str(&snippet_with(
        "traefik.yml",
        &[
            ("tollgate", "tollgate.tollgate.svc.cluster.local:8080"),
            ("upstream", "orders:3000"),
        ],
    ))
    .unwrap();
    for name in names {
        let middleware = object_named(&docs, "Middleware", route_namespace, name)
            .unwrap_or_else(|| panic!("gateway-api: no Middleware {name} beside the HTTPRoute"));
        assert_eq!(middleware["apiVersion"], "traefik.io/v1alpha1");
        assert_eq!(
            middleware["spec"], docs_snippet["http"]["middlewares"][name],
            "gateway-api: Traefik Middleware {name} differs from docs/ingress/traefik.yml"
        );
    }
    let forward_auth = &object_named(&docs, "Middleware", route_namespace, "tollgate").unwrap()
        ["spec"]["forwardAuth"];
    assert_eq!(
        forward_auth["address"],
        format!(
            "http://{}.{}.svc.cluster.local:8080{verify_path}",
            ext_authz.service, ext_authz.namespace
        ),
        "gateway-api: Traefik forwardAuth address"
    );
    let copied = lower_set(
        forward_auth["authResponseHeaders"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap()),
    );
    assert_eq!(
        copied,
        identity_headers(),
        "gateway-api: Traefik authResponseHeaders"
    );
}

/// The CRDs validate_crds.py checks against: $TOLLGATE_CRDS, ../shared/crds beside the
/// project, /work/shared/crds (the script's own default order).
fn crd_dir() -> Option<PathBuf> {
    std::env::var_os("TOLLGATE_CRDS")
        .map(PathBuf::from)
        .into_iter()
        .chain([
            root().join("../shared/crds"),
            PathBuf::from("/work/shared/crds"),
        ])
        .find(|d| d.is_dir())
}

#[test]
fn gateway_api_objects_pass_their_crds() {
    let Some(kubectl) = find_binary("kubectl") else {
        eprintln!("SKIP: kubectl is not installed: overlays not rendered");
        return;
    };
    let python = Path::new(CI_TOOLS).join("python3");
    if !python.is_file() {
        eprintln!(
            "SKIP: no {} (see .ci/run): CRD schemas not checked",
            python.display()
        );
        return;
    }
    let deps = Command::new(&python)
        .args(["-c", "import jsonschema, yaml"])
        .output()
        .unwrap();
    if !deps.status.success() {
        eprintln!(
            "SKIP: validate_crds.py needs jsonschema and PyYAML in {} (see .ci/run): {}",
            python.display(),
            String::from_utf8_lossy(&deps.stderr)
        );
        return;
    }
    let Some(crds) = crd_dir() else {
        eprintln!(
            "SKIP: no CRD directory (../shared/crds or TOLLGATE_CRDS): CRD schemas not checked"
        );
        return;
    };
    let script = root().join("deploy/kubernetes/validate_crds.py");
    let tmp = tempfile::tempdir().unwrap();
    for overlay in OVERLAYS {
        let rendered = render(&kubectl, overlay);
        let file = tmp.path().join(format!("{overlay}.yaml"));
        std::fs::write(&file, &rendered).unwrap();
        let out = Command::new(&python)
            .arg(&script)
            .arg("--crds")
            .arg(&crds)
            .arg(&file)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "validate_crds.py {overlay}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Each object of a CRD kind was checked, not skipped for want of its CRD.
        let docs = read_yaml_docs(&rendered);
        let mut checked = 0;
        for doc in docs
            .iter()
            .filter(|d| CRD_KINDS.iter().any(|k| d["kind"] == *k))
        {
            let line = format!(
                "ok: {} {} {}/{} ",
                doc["kind"].as_str().unwrap(),
                doc["apiVersion"].as_str().unwrap(),
                doc["metadata"]["namespace"].as_str().unwrap_or("-"),
                doc["metadata"]["name"].as_str().unwrap()
            );
            assert!(
                stdout.contains(&line),
                "validate_crds.py {overlay}: no `{}` in: {stdout}",
                line.trim_end()
            );
            checked += 1;
        }
        if EXT_AUTHZ_OVERLAYS.contains(&overlay) {
            assert!(
                checked > 0,
                "{overlay}: no object was checked against a CRD"
            );
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
