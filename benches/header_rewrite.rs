//! Header rewriting for one proxied request: strip spoofable identity headers, inject the
//! caller's identity, set `X-Forwarded-*`, drop hop-by-hop headers — on a realistic
//! browser-sized request head.

use std::net::IpAddr;

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use http::{HeaderMap, HeaderValue};
use tollgate::authn::Identity;
use tollgate::proxy::headers::{remove_hop_by_hop, request_id, set_forwarded, IdentityHeaderSet};
use tollgate::proxy::identity::IdentityHeaderNames;

fn request_head(spoofed: bool) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_static("api.example.com"));
    h.insert(
        "user-agent",
        HeaderValue::from_static("Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0"),
    );
    h.insert(
        "accept",
        HeaderValue::from_static("application/json, text/plain, */*"),
    );
    h.insert(
        "accept-language",
        HeaderValue::from_static("en-GB,en;q=0.5"),
    );
    h.insert(
        "accept-encoding",
        HeaderValue::from_static("gzip, deflate, br"),
    );
    h.insert(
        "authorization",
        HeaderValue::from_static("Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln"),
    );
    h.insert("connection", HeaderValue::from_static("keep-alive"));
    h.insert(
        "referer",
        HeaderValue::from_static("https://app.example.com/orders"),
    );
    h.insert(
        "cookie",
        HeaderValue::from_static("theme=dark; session=abc"),
    );
    if spoofed {
        h.insert("x-user-id", HeaderValue::from_static("admin"));
        h.insert("x_user_role", HeaderValue::from_static("admin"));
    }
    h
}

fn bench(c: &mut Criterion) {
    let names = IdentityHeaderNames::default();
    let set = IdentityHeaderSet::new(names.all());
    let id = Identity {
        user_id: "7d0c6a8e-5b7e-4c1f-9d38-2a1f0c6e9b11".into(),
        email: Some("user@example.com".into()),
        role: Some("default".into()),
        scopes: vec!["read".into(), "write".into()],
        client_id: Some("web".into()),
        alias: None,
        expires_at: Some(4_000_000_000),
        token_id: Some("jti-1".into()),
        ..Identity::default()
    };
    let peer: IpAddr = "127.0.0.1".parse().unwrap();
    let mut g = c.benchmark_group("header_rewrite");
    for (label, spoofed) in [("clean", false), ("spoofed", true)] {
        g.bench_function(label, |b| {
            let host = http::HeaderValue::from_static("api.example.com");
            b.iter_batched_ref(
                || request_head(spoofed),
                |h| {
                    let fields = tollgate::http::head::Fields::of(h);
                    let rid = request_id(h);
                    set.strip(h);
                    names.inject(h, black_box(&id));
                    set_forwarded(h, fields, peer, "https", Some(host.clone()), &[]);
                    h.insert("x-request-id", rid);
                    remove_hop_by_hop(h, false);
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
