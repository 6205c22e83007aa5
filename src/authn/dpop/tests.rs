use super::*;
use jsonwebtoken::{EncodingKey, Header};
use p256::pkcs8::EncodePrivateKey;
use serde_json::json;

const URI: &str = "https://api.example.com/mcp";

struct Key {
    enc: EncodingKey,
    jwk: Value,
}

fn key() -> Key {
    let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let der = secret.to_pkcs8_der().unwrap();
    let enc = EncodingKey::from_ec_der(der.as_bytes());
    let jwk =
        serde_json::to_value(Jwk::from_encoding_key(&enc, Algorithm::ES256).unwrap()).unwrap();
    Key { enc, jwk }
}

fn proof_with(k: &Key, header: impl FnOnce(&mut Map<String, Value>), claims: Value) -> String {
    let mut h = serde_json::to_value(Header::new(Algorithm::ES256)).unwrap();
    let obj = h.as_object_mut().unwrap();
    obj.insert("typ".into(), json!("dpop+jwt"));
    obj.insert("jwk".into(), k.jwk.clone());
    obj.retain(|_, v| !v.is_null());
    header(obj);
    // Signed by hand so that a test can put anything in the header.
    let h64 = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&h).unwrap());
    let c64 = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    let input = format!("{h64}.{c64}");
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &k.enc, Algorithm::ES256).unwrap();
    format!("{input}.{sig}")
}

fn claims(now: i64) -> Value {
    json!({"jti": "j-1", "htm": "GET", "htu": URI, "iat": now})
}

fn expect(now: i64) -> Expect<'static> {
    Expect {
        method: "GET",
        uri: URI,
        access_token: None,
        nonce: None,
        window: Duration::from_secs(60),
        now,
    }
}

const NOW: i64 = 1_800_000_000;

#[test]
fn a_good_proof_gives_the_key_thumbprint() {
    let k = key();
    let p = verify(&proof_with(&k, |_| {}, claims(NOW)), &expect(NOW)).unwrap();
    assert_eq!(p.jkt, thumbprint(k.jwk.as_object().unwrap()).unwrap());
    assert_eq!(p.jti, "j-1");
}

#[test]
fn the_rfc_7638_example_thumbprint() {
    let jwk = json!({
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29"
    });
    assert_eq!(
        thumbprint(jwk.as_object().unwrap()).unwrap(),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
}

#[test]
fn the_request_must_be_the_one_signed() {
    let k = key();
    let p = proof_with(&k, |_| {}, claims(NOW));
    let mut e = expect(NOW);
    e.method = "POST";
    assert_eq!(
        verify(&p, &e),
        Err(DpopError::Invalid("htm is not the request's method"))
    );
    let mut e = expect(NOW);
    e.uri = "https://api.example.com/other";
    assert_eq!(
        verify(&p, &e),
        Err(DpopError::Invalid("htu is not the request's URI"))
    );
    // The query is not part of htu: a request with one still matches.
    let mut e = expect(NOW);
    e.uri = "https://API.example.com:443/mcp?x=1";
    assert!(verify(&p, &e).is_ok());
}

#[test]
fn iat_must_be_within_the_window_either_way() {
    let k = key();
    for iat in [NOW - 61, NOW + 61] {
        let p = proof_with(&k, |_| {}, claims(iat));
        assert_eq!(
            verify(&p, &expect(NOW)),
            Err(DpopError::Invalid("iat is outside the accepted window"))
        );
    }
    assert!(verify(&proof_with(&k, |_| {}, claims(NOW - 59)), &expect(NOW)).is_ok());
}

#[test]
fn ath_must_hash_the_token_presented() {
    let k = key();
    let ath = URL_SAFE_NO_PAD.encode(Sha256::digest(b"token-a"));
    let mut c = claims(NOW);
    c["ath"] = json!(ath);
    let p = proof_with(&k, |_| {}, c);
    let mut e = expect(NOW);
    e.access_token = Some("token-a");
    assert!(verify(&p, &e).is_ok());
    e.access_token = Some("token-b");
    assert_eq!(
        verify(&p, &e),
        Err(DpopError::Invalid(
            "ath is not the hash of the access token"
        ))
    );
}

#[test]
fn private_keys_symmetric_and_none_algorithms_are_refused() {
    let k = key();
    let with_d = proof_with(
        &k,
        |h| {
            h.get_mut("jwk").unwrap()["d"] = json!("AAAA");
        },
        claims(NOW),
    );
    assert_eq!(
        verify(&with_d, &expect(NOW)),
        Err(DpopError::Invalid("the jwk holds private key material"))
    );
    for alg in ["none", "HS256"] {
        let p = proof_with(
            &k,
            |h| {
                h.insert("alg".into(), json!(alg));
            },
            claims(NOW),
        );
        assert_eq!(
            verify(&p, &expect(NOW)),
            Err(DpopError::Invalid(
                "alg is not an accepted asymmetric algorithm"
            ))
        );
    }
    // An unsigned token in the "none" shape.
    let h = URL_SAFE_NO_PAD.encode(
        serde_json::to_vec(&json!({"typ": "dpop+jwt", "alg": "none", "jwk": k.jwk})).unwrap(),
    );
    let c = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(NOW)).unwrap());
    assert!(verify(&format!("{h}.{c}."), &expect(NOW)).is_err());
}

#[test]
fn typ_signature_and_key_type_are_checked() {
    let k = key();
    let p = proof_with(
        &k,
        |h| {
            h.insert("typ".into(), json!("JWT"));
        },
        claims(NOW),
    );
    assert_eq!(
        verify(&p, &expect(NOW)),
        Err(DpopError::Invalid("typ must be dpop+jwt"))
    );
    // Signed by one key, carrying another.
    let other = key();
    let p = proof_with(
        &k,
        |h| {
            h.insert("jwk".into(), other.jwk.clone());
        },
        claims(NOW),
    );
    assert_eq!(
        verify(&p, &expect(NOW)),
        Err(DpopError::Invalid(
            "the signature does not verify with the jwk"
        ))
    );
    // A curve that does not belong to the key type is refused, not a panic.
    let p = proof_with(
        &k,
        |h| {
            h.get_mut("jwk").unwrap()["crv"] = json!("Ed25519");
        },
        claims(NOW),
    );
    assert!(verify(&p, &expect(NOW)).is_err());
}

#[test]
fn a_required_nonce_must_be_the_current_one() {
    let k = key();
    let mut e = expect(NOW);
    e.nonce = Some("n-1");
    let p = proof_with(&k, |_| {}, claims(NOW));
    assert_eq!(verify(&p, &e), Err(DpopError::UseNonce));
    let mut c = claims(NOW);
    c["nonce"] = json!("n-1");
    assert!(verify(&proof_with(&k, |_| {}, c), &e).is_ok());
}
