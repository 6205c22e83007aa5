//! Route matching against a table of 1,000 routes: the lookup every proxied request does.
//!
//! The table mixes what real configurations hold: one- to three-segment prefixes, some
//! host-bound and some method-bound routes, and a catch-all. Requests hit a deep route, a
//! shallow one, a host-bound one, and a path that falls through to the catch-all.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use http::Method;
use tollgate::config::{Config, RouteSpec};
use tollgate::proxy::route::RouteTable;

fn thousand_routes() -> RouteTable<RouteSpec> {
    let mut yaml =
        String::from("routes:\n  - { name: root, path: /, upstream: \"http://127.0.0.1:9\" }\n");
    for i in 0..999 {
        let line = match i % 4 {
            0 => format!("  - {{ name: r{i}, path: /svc{i}, upstream: \"http://127.0.0.1:9\" }}\n"),
            1 => format!("  - {{ name: r{i}, path: /api/v1/svc{i}, upstream: \"http://127.0.0.1:9\" }}\n"),
            2 => format!(
                "  - {{ name: r{i}, path: /api/v2/svc{i}/items, methods: [GET, POST], upstream: \"http://127.0.0.1:9\" }}\n"
            ),
            _ => format!(
                "  - {{ name: r{i}, host: \"h{i}.example.com\", path: /api/v1/svc{}, upstream: \"http://127.0.0.1:9\" }}\n",
                i - 2
            ),
        };
        yaml.push_str(&line);
    }
    let cfg = Config::from_yaml_with_env(&yaml, None).expect("benchmark routes are valid");
    assert_eq!(cfg.routes.len(), 1000);
    RouteTable::new(cfg.routes)
}

fn bench(c: &mut Criterion) {
    let table = thousand_routes();
    let mut g = c.benchmark_group("route_match_1000");
    let cases: [(&str, Option<&str>, &str, &str); 4] = [
        ("deep", None, "/api/v2/svc502/items/42/detail", "r502"),
        ("shallow", None, "/svc500", "r500"),
        (
            "host_bound",
            Some("h503.example.com"),
            "/api/v1/svc501/x",
            "r503",
        ),
        ("fallthrough", None, "/nothing/here/at/all", "root"),
    ];
    for (label, host, path, want) in cases {
        let got = table
            .find(host, &Method::GET, path)
            .map(|r| r.name.as_str());
        assert_eq!(got, Some(want), "case {label}");
        g.bench_function(label, |b| {
            b.iter(|| {
                table
                    .find(black_box(host), black_box(&Method::GET), black_box(path))
                    .is_some()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
