//! Path normalisation and route matching: normalising is idempotent, never yields a
//! dot-segment, an empty segment or an encoded separator, and matching never panics.
#![no_main]

use std::sync::OnceLock;

use http::Method;
use libfuzzer_sys::fuzz_target;
use tollgate::config::{Config, RouteSpec};
use tollgate::http::path::{normalize_path, route_key};
use tollgate::proxy::route::RouteTable;

fn table() -> &'static RouteTable<RouteSpec> {
    static T: OnceLock<RouteTable<RouteSpec>> = OnceLock::new();
    T.get_or_init(|| {
        let cfg = Config::from_yaml_with_env(
            "routes:\n  - { name: root, path: /, upstream: \"http://127.0.0.1:1\" }\n  - { name: api, path: /api, upstream: \"http://127.0.0.1:1\", auth: required }\n  - { name: host, host: \"*.example.com\", path: /a/b, upstream: \"http://127.0.0.1:1\" }\n",
            None,
        )
        .unwrap();
        RouteTable::new(cfg.routes.clone())
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let (host, path) = s.split_once('\n').unwrap_or(("", s));
    let Ok(norm) = normalize_path(path) else {
        return;
    };
    let again = normalize_path(&norm).expect("a normalised path normalises");
    assert_eq!(again, norm, "normalisation is idempotent");
    for seg in norm.split('/').skip(1) {
        assert!(seg != "." && seg != "..", "dot segment survived: {norm}");
        let lower = seg.to_ascii_lowercase();
        assert!(
            !lower.contains("%2f") && !lower.contains("%5c") && !lower.contains('\\'),
            "encoded separator survived: {norm}"
        );
    }
    let key = route_key(&norm);
    let host = (!host.is_empty()).then_some(host);
    let _ = table().find(host, &Method::GET, &key);
});
