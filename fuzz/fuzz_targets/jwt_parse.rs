//! JWT header and claims parsing on the verification path, for self-issued and foreign
//! tokens: any input is refused or accepted, never a panic; nothing unsigned is accepted.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tollgate::config::Config;
use tollgate::keys::KeySet;
use tollgate::authn::verifier::KeySetVerifier;

fn keys() -> &'static (KeySet, KeySetVerifier) {
    static K: OnceLock<(KeySet, KeySetVerifier)> = OnceLock::new();
    K.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::from_yaml_with_env("tokens:\n  signing:\n    alg: ES256\n", None).unwrap();
        let keys = KeySet::load(&cfg.tokens, dir.path()).unwrap();
        let mut foreign = KeySetVerifier::new("https://idp.example/", Some("api".into()));
        foreign.add_jwks(keys.jwks());
        (keys, foreign)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let (own, foreign) = keys();
    assert!(own.verify(token).is_err(), "an unsigned input verified");
    assert!(foreign.verify_now(token).is_err(), "an unsigned input verified");
    let _ = tollgate::authn::jwt::looks_like_jwt(token);
});
