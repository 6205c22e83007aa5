//! Bearer JWT validation as the proxy runs it (`JwtAuthenticator` over the token
//! service's `KeySet`, RS256 by default): a cache hit (every request after a token's first)
//! and a miss (its first request: signature, claims, then the cache insert).

use std::sync::Arc;

use chrono::Utc;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use tollgate::authn::jwt::JwtAuthenticator;
use tollgate::config::raw::Tokens;
use tollgate::keys::{AccessClaims, KeySet};
use tollgate::revocation::RevocationList;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = Tokens::default();
    let keys = Arc::new(KeySet::load(&tokens, dir.path()).expect("a generated dev key"));
    let now = Utc::now().timestamp();
    let token = keys
        .sign(&AccessClaims {
            sub: "7d0c6a8e-5b7e-4c1f-9d38-2a1f0c6e9b11".into(),
            iss: tokens.issuer.clone(),
            aud: tokens.audience.clone().into(),
            exp: now + 3600,
            iat: now,
            nbf: None,
            jti: "bench-jti".into(),
            scope: "read write".into(),
            client_id: Some("web".into()),
            email: Some("user@example.com".into()),
            role: Some("default".into()),
            alias: None,
            cnf: None,
        })
        .expect("signed");
    let make = || {
        JwtAuthenticator::new(RevocationList::new(), 100_000)
            .with_issuer(tokens.issuer.clone(), keys.clone())
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();

    let warm = make();
    rt.block_on(warm.authenticate(&token))
        .expect("the token is valid");
    let mut g = c.benchmark_group("jwt_validation");
    g.bench_function("cached", |b| {
        b.iter(|| rt.block_on(warm.authenticate(&token)).is_ok())
    });
    g.bench_function("uncached", |b| {
        b.iter_batched(
            make,
            // Returned, so the cache is dropped outside the timed part.
            |cold| {
                let ok = rt.block_on(cold.authenticate(&token)).is_ok();
                (cold, ok)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
