use super::*;
use jsonwebtoken::{EncodingKey, Header};

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims(exp_in: i64) -> AccessClaims {
    AccessClaims {
        sub: "42".into(),
        iss: "http://issuer".into(),
        aud: "tollgate".into(),
        exp: now() + exp_in,
        iat: now(),
        nbf: None,
        jti: "j1".into(),
        scope: "read".into(),
        client_id: Some("web".into()),
        email: Some("a@example.com".into()),
        role: Some("default".into()),
        alias: Some("desk-3".into()),
        cnf: None,
    }
}

fn keyset(alg: SigningAlg) -> KeySet {
    let g = generate(alg).unwrap();
    let k = KeySet::parse_key(g.private_pem.as_bytes()).unwrap();
    assert_eq!(k.alg, alg);
    KeySet::from_parts(k, vec![], "http://issuer", "tollgate")
}

#[test]
fn rfc7638_thumbprint_example() {
    let jwk = json!({
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29"
    });
    assert_eq!(
        thumbprint(&jwk),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
}

#[test]
fn every_algorithm_signs_and_verifies_with_kid() {
    for alg in [
        SigningAlg::RS256,
        SigningAlg::ES256,
        SigningAlg::EdDSA,
        SigningAlg::HS512,
    ] {
        let ks = keyset(alg);
        let t = ks.sign(&claims(60)).unwrap();
        let h = jsonwebtoken::decode_header(&t).unwrap();
        assert_eq!(h.kid.as_deref(), Some(ks.kid()));
        assert_eq!(h.alg, material::jwt_alg(alg));
        let got = ks.verify(&t).unwrap();
        assert_eq!(got.alias.as_deref(), Some("desk-3"));
        let jwks = ks.jwks()["keys"].as_array().unwrap().len();
        assert_eq!(
            jwks,
            usize::from(alg != SigningAlg::HS512),
            "{alg:?}: HMAC keys never published"
        );
    }
}

#[test]
fn expired_wrong_audience_and_unknown_kid_are_rejected() {
    let ks = keyset(SigningAlg::ES256);
    let expired = ks.sign(&claims(-(LEEWAY_SECS as i64) - 10)).unwrap();
    assert!(ks.verify(&expired).is_err());
    // Another audience is a valid token of this issuer (an RFC 8707 resource's): which
    // audience a caller serves is `authn::binding`'s check. The internal identity JWT's
    // audience is never an access token's.
    let mut c = claims(60);
    c.aud = "https://mcp.example.com/mcp".into();
    assert_eq!(
        ks.verify(&ks.sign(&c).unwrap()).unwrap().aud.values(),
        ["https://mcp.example.com/mcp"]
    );
    c.aud = crate::authn::signed::INTERNAL_AUDIENCE.into();
    assert!(ks.verify(&ks.sign(&c).unwrap()).is_err());
    c.aud = Audience::Many(vec![
        "tollgate".into(),
        crate::authn::signed::INTERNAL_AUDIENCE.into(),
    ]);
    assert!(ks.verify(&ks.sign(&c).unwrap()).is_err());
    let mut c = claims(60);
    c.iss = "http://evil".into();
    assert!(ks.verify(&ks.sign(&c).unwrap()).is_err());
    let other = keyset(SigningAlg::ES256);
    assert!(ks.verify(&other.sign(&claims(60)).unwrap()).is_err());
    assert!(ks.verify("not.a.jwt").is_err());
    assert!(ks.verify(&"a".repeat(10_000)).is_err());
}

#[test]
fn hmac_with_the_public_rsa_key_is_refused() {
    let ks = keyset(SigningAlg::RS256);
    let jwk = &ks.jwks()["keys"][0];
    // The classic confusion: sign HS256/HS512 using public key bytes as the secret.
    for alg in [
        jsonwebtoken::Algorithm::HS256,
        jsonwebtoken::Algorithm::HS512,
    ] {
        let mut h = Header::new(alg);
        h.kid = Some(ks.kid().into());
        h.typ = Some(ACCESS_TOKEN_TYP.into());
        let forged = jsonwebtoken::encode(
            &h,
            &claims(60),
            &EncodingKey::from_secret(jwk.to_string().as_bytes()),
        )
        .unwrap();
        assert!(matches!(ks.verify(&forged), Err(KeyError::Rejected(_))));
    }
    // alg "none": header and claims with an empty signature.
    use base64::Engine;
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let hdr = e.encode(format!(
        r#"{{"alg":"none","typ":"at+jwt","kid":"{}"}}"#,
        ks.kid()
    ));
    let body = e.encode(serde_json::to_vec(&claims(60)).unwrap());
    assert!(ks.verify(&format!("{hdr}.{body}.")).is_err());
}

#[test]
fn a_token_without_the_access_typ_is_refused() {
    let g = generate(SigningAlg::EdDSA).unwrap();
    let k = KeySet::parse_key(g.private_pem.as_bytes()).unwrap();
    let mut h = Header::new(jsonwebtoken::Algorithm::EdDSA);
    h.kid = Some(k.kid.clone());
    let t = jsonwebtoken::encode(&h, &claims(60), k.encoding.as_ref().unwrap()).unwrap();
    let ks = KeySet::from_parts(k, vec![], "http://issuer", "tollgate");
    assert!(ks.verify(&t).is_err());
}

#[test]
fn previous_keys_keep_verifying_and_stay_published() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.pem");
    let b = dir.path().join("b.pem");
    let b_pub = dir.path().join("b.pub.pem");
    std::fs::write(
        &a,
        generate(SigningAlg::RS256).unwrap().private_pem.as_bytes(),
    )
    .unwrap();
    let gb = generate(SigningAlg::ES256).unwrap();
    std::fs::write(&b, gb.private_pem.as_bytes()).unwrap();
    std::fs::write(&b_pub, gb.public_pem.as_ref().unwrap()).unwrap();
    let mut tokens = Tokens {
        issuer: "http://issuer".into(),
        ..Default::default()
    };
    tokens.signing.key_file = Some(b);
    tokens.signing.alg = SigningAlg::ES256;
    let before = KeySet::load(&tokens, dir.path()).unwrap();
    let t = before.sign(&claims(60)).unwrap();
    // Rotate: a becomes active; b, given by its public key only, stays accepted.
    tokens.signing.key_file = Some(a);
    tokens.signing.alg = SigningAlg::RS256;
    tokens.signing.previous_key_files = vec![b_pub];
    let after = KeySet::load(&tokens, dir.path()).unwrap();
    assert_eq!(after.verify(&t).unwrap().sub, "42");
    let kids: Vec<&str> = after.jwks()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, vec![after.kid(), before.kid()]);
    // A key that was never configured does not verify.
    assert!(after
        .verify(&keyset(SigningAlg::RS256).sign(&claims(60)).unwrap())
        .is_err());
}

#[test]
fn generated_key_is_created_once_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = Tokens::default();
    let a = KeySet::load(&tokens, dir.path()).unwrap();
    let b = KeySet::load(&tokens, dir.path()).unwrap();
    assert_eq!(a.kid(), b.kid());
    let t = a.sign(&claims(60));
    assert!(t.is_ok());
}

#[test]
fn key_file_of_the_wrong_algorithm_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("k.pem");
    std::fs::write(
        &p,
        generate(SigningAlg::EdDSA).unwrap().private_pem.as_bytes(),
    )
    .unwrap();
    let mut tokens = Tokens::default();
    tokens.signing.key_file = Some(p);
    let e = KeySet::load(&tokens, dir.path()).unwrap_err().to_string();
    assert!(e.contains("RS256"), "{e}");
}

#[test]
fn short_hmac_secret_is_refused() {
    assert!(KeySet::parse_key(b"short").is_err());
}

#[test]
fn key_dir_sits_next_to_the_sqlite_file() {
    assert_eq!(
        default_key_dir("sqlite://data/tollgate.db"),
        PathBuf::from("data/keys")
    );
    assert_eq!(
        default_key_dir("sqlite:///var/lib/t/db.sqlite?mode=rwc"),
        PathBuf::from("/var/lib/t/keys")
    );
    assert_eq!(
        default_key_dir("postgres://x/y"),
        PathBuf::from("data/keys")
    );
}

#[test]
fn processes_starting_together_agree_on_one_generated_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut tokens = Tokens::default();
    tokens.signing.alg = SigningAlg::ES256;
    let kids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| KeySet::load(&tokens, dir.path()).unwrap().kid().to_string()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(kids.windows(2).all(|w| w[0] == w[1]), "{kids:?}");
    let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(leftovers, 1, "only the key file remains");
}
