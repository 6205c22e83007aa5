//! The configuration shown in docs/ingress.md is the configuration the tests run: the
//! ingress snippets of docs/ingress/ (tests/ingress_proxies.rs runs them with the real
//! proxies) and the Kubernetes manifests of deploy/kubernetes/ (tests/deploy_kubernetes.rs
//! renders and validates them).

use std::path::Path;

/// The files docs/ingress.md shows whole, relative to the repository root.
const SHOWN: &[&str] = &[
    "docs/ingress/nginx.conf",
    "docs/ingress/nginx-auth-cache.conf",
    "docs/ingress/Caddyfile",
    "docs/ingress/traefik.yml",
    "docs/ingress/envoy.yaml",
    "docs/ingress/envoy-grpc.yaml",
    "deploy/kubernetes/components/ext-authz/service-patch.yaml",
    "deploy/kubernetes/overlays/envoy-gateway/app/securitypolicy.yaml",
    "deploy/kubernetes/overlays/envoy-gateway/tollgate/referencegrant.yaml",
    "deploy/kubernetes/overlays/istio/meshconfig-extension-provider.yaml",
    "deploy/kubernetes/overlays/istio/app/authorizationpolicy.yaml",
    "deploy/kubernetes/overlays/gateway-api/app/external-auth.yaml",
    "deploy/kubernetes/overlays/gateway-api/app/traefik.yaml",
    "deploy/kubernetes/overlays/gateway-api/tollgate/tollgate.yaml",
    "deploy/kubernetes/overlays/ingress/app/ingress-nginx.yaml",
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn page() -> String {
    std::fs::read_to_string(root().join("docs/ingress.md")).unwrap()
}

fn read(file: &str) -> String {
    std::fs::read_to_string(root().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

#[test]
fn ingress_page_shows_the_tested_snippets_verbatim() {
    let page = page();
    for &file in SHOWN {
        assert!(
            page.contains(&read(file)),
            "docs/ingress.md does not show {file} verbatim"
        );
    }
}

/// Every configuration block of the page (a fenced block other than `sh` and plain text)
/// is one of the shown files or a part of one: the page shows no configuration that no
/// test runs.
#[test]
fn ingress_page_shows_no_untested_configuration() {
    let page = page();
    let files: Vec<String> = SHOWN.iter().map(|&file| read(file)).collect();
    let mut lines = page.lines();
    while let Some(line) = lines.next() {
        let Some(lang) = line.strip_prefix("```") else {
            continue;
        };
        let block: Vec<&str> = lines
            .by_ref()
            .take_while(|l| !l.starts_with("```"))
            .collect();
        if lang.is_empty() || lang == "sh" {
            continue;
        }
        let text = block.join("\n");
        assert!(
            files.iter().any(|f| f.contains(&text)),
            "docs/ingress.md shows a `{lang}` block that is none of the tested files:\n{text}"
        );
    }
}
