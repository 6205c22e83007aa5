//! The ingress snippets shown in docs/ingress.md are the files the ingress tests run.

use std::path::Path;

#[test]
fn ingress_page_shows_the_tested_snippets_verbatim() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    let page = std::fs::read_to_string(docs.join("ingress.md")).unwrap();
    for file in [
        "nginx.conf",
        "nginx-auth-cache.conf",
        "Caddyfile",
        "traefik.yml",
        "envoy.yaml",
    ] {
        let snippet = std::fs::read_to_string(docs.join("ingress").join(file)).unwrap();
        assert!(
            page.contains(&snippet),
            "docs/ingress.md does not show docs/ingress/{file} verbatim"
        );
    }
}
