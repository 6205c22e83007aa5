//! JWT bearer tokens: self-issued ones checked against the token service's keys, foreign
//! ones against their issuer's JWKS (`jwks.rs`), both behind one cache of validated
//! claims.
//!
//! Threat model: forged, expired, replayed-after-revocation or wrong-audience tokens, and
//! a flood of requests that would make every one pay for a signature check. The signature
//! is checked once per token: the resulting identity is cached until the token's own
//! `exp` (moka per-entry expiry), never longer. The cache is keyed by a keyed 64-bit hash
//! of the token (foldhash, seeded at random per process) and each entry keeps the token
//! it was verified for: a hit counts only when the presented token is byte for byte that
//! one, so a hash collision (by chance or engineered) can only cost a verification, never
//! return someone else's identity. Every hit re-checks `exp` and the in-memory revocation
//! list, so caching never extends a token's life or outlives its revocation. The issuer named in the unverified payload only picks which verifier
//! runs; that verifier checks `iss` itself, so a lying payload gains nothing.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use moka::sync::Cache;
use moka::Expiry;

use super::claims::now_unix;
use super::verifier::{JwtVerifier, VerifyError};
use super::{AuthnError, Identity};
use crate::revocation::{Checked, RevocationList};
use crate::telemetry::trace;

/// Upper bound on cached validated tokens; past it the least used are dropped (and
/// simply verified again).
pub const DEFAULT_CACHE_ENTRIES: u64 = 100_000;

/// A validated token: the token itself (compared in full on every hit) and its identity.
struct Verified {
    token: Box<str>,
    id: Arc<Identity>,
    /// When the token was last found not revoked (`RevocationList::is_revoked_since`).
    checked: Checked,
}

impl Verified {
    fn new(token: &str, id: Arc<Identity>) -> Arc<Verified> {
        Arc::new(Verified {
            token: token.into(),
            id,
            checked: Checked::default(),
        })
    }
}

struct UntilTokenExpiry;

impl Expiry<u64, Arc<Verified>> for UntilTokenExpiry {
    fn expire_after_create(
        &self,
        _k: &u64,
        v: &Arc<Verified>,
        _at: std::time::Instant,
    ) -> Option<Duration> {
        // Tokens without exp never get here (exp is required), but fail short, not long.
        Some(Duration::from_secs(
            v.id.expires_at.unwrap_or(0).saturating_sub(now_unix()),
        ))
    }
}

/// Validates JWTs from any of its issuers, caching validated identities.
pub struct JwtAuthenticator {
    issuers: Vec<(String, Arc<dyn JwtVerifier>)>,
    /// The gateway's own issuer, whose tokens are marked [`Identity::self_issued`].
    local_issuer: Option<String>,
    /// Keyed by a seeded hash already, so the map's own hash is the cheap one.
    cache: Cache<u64, Arc<Verified>, foldhash::fast::RandomState>,
    /// The cache key's hash function, with this authenticator's random seed.
    key_hasher: foldhash::quality::RandomState,
    revocations: Arc<RevocationList>,
    /// Tells this authenticator's entries in a thread's [`LAST`] from another's (a reload
    /// builds a new authenticator, whose issuers may differ).
    memo_owner: u64,
}

thread_local! {
    /// The last entry this thread found in a cache: whose cache (the owner), its key, and
    /// the entry. A client sends the same token request after request, and a serving
    /// worker serves a connection's requests in turn: one entry compared is a fraction of
    /// the cache's lookup (moka's hashing and read log; BENCHMARKS.md, "Sixth round").
    /// What it answers is what the cache would: the entry the cache held, checked again
    /// for expiry and revocation on every use. It is looked at before the token is
    /// hashed (the keyed hash of a ~700-byte token costs more than the comparison), and
    /// it holds another client's token, so it is compared in time that does not depend on
    /// where the two differ ([`is_memo_token`]).
    static LAST: std::cell::RefCell<Option<(u64, Arc<Verified>)>> =
        const { std::cell::RefCell::new(None) };
}

/// Whether `given` is the memo's token `memo`, in time that tells a caller nothing about
/// how much of another client's token it guessed. The lengths, and then the last eight
/// bytes as one word (the signature's end: a different token almost always ends
/// differently, so a miss costs one compare), may differ visibly: an equal last word
/// cannot be arrived at a byte at a time. The rest is compared without an early exit,
/// the whole token folded into one difference (which the compiler vectorises; `subtle`'s
/// byte-at-a-time comparison would cost more than the hash it saves).
fn is_memo_token(memo: &[u8], given: &[u8]) -> bool {
    if memo.len() != given.len() || last_word(memo) != last_word(given) {
        return false;
    }
    memo.iter().zip(given).fold(0u8, |d, (m, g)| d | (m ^ g)) == 0
}

/// A token's text taken from the thread's memo: [`known_token`] found the received bytes
/// to be the last token this thread verified. Its text was checked once, when it was
/// verified, so the bytes need no UTF-8 check again (372 instructions for a ~700-byte
/// token, BENCHMARKS.md "Eleventh round"), and [`JwtAuthenticator::cached`] knows its own
/// memo's text by its address.
#[derive(Clone)]
pub struct KnownToken(Arc<Verified>);

impl KnownToken {
    pub fn as_str(&self) -> &str {
        &self.0.token
    }
}

/// Never the token itself: a `Debug` of a request's token may reach a log line.
impl std::fmt::Debug for KnownToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KnownToken(..)")
    }
}

impl PartialEq for KnownToken {
    fn eq(&self, other: &KnownToken) -> bool {
        self.0.token == other.0.token
    }
}

impl Eq for KnownToken {}

/// The thread's last verified token when `given` is that token (compared as the memo
/// always is, [`is_memo_token`]), whichever authenticator verified it: only its text is
/// handed out, and the authenticator asked next still checks that the memo is its own.
pub fn known_token(given: &[u8]) -> Option<KnownToken> {
    LAST.with(|last| match &*last.borrow() {
        Some((_, v)) if is_memo_token(v.token.as_bytes(), given) => Some(KnownToken(v.clone())),
        _ => None,
    })
}

/// The last eight bytes as one word (0 for a shorter slice, compared whole after).
fn last_word(b: &[u8]) -> u64 {
    b.len()
        .checked_sub(8)
        .and_then(|at| b[at..].try_into().ok())
        .map_or(0, u64::from_ne_bytes)
}

impl JwtAuthenticator {
    pub fn new(revocations: Arc<RevocationList>, max_entries: u64) -> Self {
        crate::telemetry::at_zero(|| {
            ["hit", "miss"].map(|result| {
                metrics::counter!("tollgate_token_cache_total", "cache" => "jwt", "result" => result)
            })
        });
        JwtAuthenticator {
            issuers: Vec::new(),
            local_issuer: None,
            cache: Cache::builder()
                .max_capacity(max_entries)
                .expire_after(UntilTokenExpiry)
                .build_with_hasher(foldhash::fast::RandomState::default()),
            key_hasher: foldhash::quality::RandomState::default(),
            revocations,
            memo_owner: {
                static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            },
        }
    }

    /// Accepts tokens whose `iss` is `issuer`, verified by `verifier`.
    pub fn with_issuer(
        mut self,
        issuer: impl Into<String>,
        verifier: Arc<dyn JwtVerifier>,
    ) -> Self {
        self.issuers.push((issuer.into(), verifier));
        self
    }

    /// [`Self::with_issuer`] for the gateway's own tokens.
    pub fn with_local_issuer(
        mut self,
        issuer: impl Into<String>,
        verifier: Arc<dyn JwtVerifier>,
    ) -> Self {
        let issuer = issuer.into();
        self.local_issuer = Some(issuer.clone());
        self.with_issuer(issuer, verifier)
    }

    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }

    /// Checks a cached identity is still good: not expired, not revoked.
    /// Unexpired and not revoked; `checked`, a cached token's note of when the revocation
    /// list last said so, spares asking the list again until it changes.
    fn still_valid(&self, id: &Identity, checked: Option<&Checked>) -> Result<(), AuthnError> {
        if id.expires_at.is_some_and(|exp| exp <= now_unix()) {
            return Err(AuthnError::Invalid("token expired".into()));
        }
        if id.token_id.as_deref().is_some_and(|j| match checked {
            Some(checked) => self.revocations.is_revoked_since(j, checked),
            None => self.revocations.is_revoked(j),
        }) {
            return Err(AuthnError::Invalid("token revoked".into()));
        }
        Ok(())
    }

    /// The identity of the token this thread last found in this authenticator's cache,
    /// when `token` is that one: the memo's own text (handed out by [`known_token`], so
    /// already compared), or text equal to it.
    fn last(&self, token: &str) -> Option<Arc<Verified>> {
        LAST.with(|last| match &*last.borrow() {
            Some((owner, v))
                if *owner == self.memo_owner
                    && (std::ptr::eq(&*v.token, token)
                        || is_memo_token(v.token.as_bytes(), token.as_bytes())) =>
            {
                Some(v.clone())
            }
            _ => None,
        })
    }

    /// The answer for a token in the cache (still checked for expiry and revocation);
    /// `None` when it is not cached.
    pub fn cached(&self, token: &str) -> Option<Result<Arc<Identity>, AuthnError>> {
        let verified = match self.last(token) {
            Some(verified) => verified,
            None => self.known(token.as_bytes())?.0,
        };
        let id = verified.id.clone();
        // The hit counter is on every authenticated request: its handle is kept.
        static HIT: std::sync::OnceLock<metrics::Counter> = std::sync::OnceLock::new();
        HIT.get_or_init(|| {
            crate::telemetry::metrics(); // the recorder exists before the handle is kept
            metrics::counter!("tollgate_token_cache_total", "cache" => "jwt", "result" => "hit")
        })
        .increment(1);
        trace::record("tollgate.cache", "hit");
        trace::record("tollgate.token_kind", token_kind(&id));
        Some(self.still_valid(&id, Some(&verified.checked)).map(|()| id))
    }

    /// The cached token whose text is `token`, by its bytes (no UTF-8 check needed: a hit
    /// is a verified token's own text), made this thread's last entry. Not yet checked for
    /// expiry or revocation: [`Self::cached`] does that on every use.
    pub fn known(&self, token: &[u8]) -> Option<KnownToken> {
        let key = self.key_hasher.hash_one(token);
        // Not a secret comparison: the keyed hash already matched, which an attacker
        // without the seed cannot arrange, and a mismatch only means "verify it".
        let verified = self
            .cache
            .get(&key)
            .filter(|v| v.token.as_bytes() == token)?;
        LAST.with(|last| *last.borrow_mut() = Some((self.memo_owner, verified.clone())));
        Some(KnownToken(verified))
    }

    pub async fn authenticate(&self, token: &str) -> Result<Arc<Identity>, AuthnError> {
        if let Some(answer) = self.cached(token) {
            return answer;
        }
        let key = self.key_hasher.hash_one(token.as_bytes());
        trace::record("tollgate.cache", "miss");
        metrics::counter!("tollgate_token_cache_total", "cache" => "jwt", "result" => "miss")
            .increment(1);
        let unverified = unverified_claims(token)
            .ok_or_else(|| AuthnError::Invalid("malformed token".into()))?;
        // An expired token is refused before its signature is checked: clients retrying
        // with a stale token are common, and each would otherwise cost a full signature
        // verification (the dearest step of a check, BENCHMARKS.md "Micro-benchmarks").
        // Refusing on unverified data is safe; accepting never is, and the verifier
        // below checks everything again.
        if unverified.exp.is_some_and(|exp| exp <= now_unix()) {
            return Err(AuthnError::Invalid("token expired".into()));
        }
        let iss = unverified
            .iss
            .ok_or_else(|| AuthnError::Invalid("malformed token".into()))?;
        let verifier = self
            .issuers
            .iter()
            .find(|(i, _)| *i == iss)
            .map(|(_, v)| v)
            .ok_or_else(|| AuthnError::Invalid("unknown issuer".into()))?;
        let claims = verifier.verify(token).await.map_err(|e| match e {
            VerifyError::KeysUnavailable(why) => AuthnError::Unavailable(why),
            other => AuthnError::Invalid(other.to_string()),
        })?;
        if claims.exp.is_none() {
            return Err(AuthnError::Invalid("token has no exp".into()));
        }
        let mut id = claims
            .into_identity()
            .ok_or_else(|| AuthnError::Invalid("token names no subject".into()))?;
        // The verifier chosen by `iss` has checked `iss` for real.
        id.self_issued = self.local_issuer.as_deref() == Some(iss.as_str());
        trace::record("tollgate.token_kind", token_kind(&id));
        let id = Arc::new(id);
        self.still_valid(&id, None)?;
        self.cache.insert(key, Verified::new(token, id.clone()));
        Ok(id)
    }
}

/// The claims read from a JWT's payload WITHOUT verifying anything: `iss` only chooses the
/// verifier (which then checks it for real) and `exp` only refuses early.
#[derive(serde::Deserialize)]
struct Unverified {
    iss: Option<String>,
    exp: Option<u64>,
}

fn unverified_claims(token: &str) -> Option<Unverified> {
    let mut parts = token.split('.');
    let (_h, p, _s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || p.len() > 16 * 1024 {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(p.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<Unverified>(&bytes).ok()
}

/// Whether a token has the shape of a JWT (three base64url parts, a JSON header), so it
/// goes to JWT validation rather than to opaque-token lookup.
pub fn looks_like_jwt(token: &str) -> bool {
    // `matches` finds the dots with memchr (vectorised), not byte by byte: this runs on
    // every authenticated request over a token of ~700 bytes.
    token.starts_with("eyJ") && token.matches('.').count() == 2
}

/// The request span's `tollgate.token_kind` of a verified JWT.
fn token_kind(id: &Identity) -> &'static str {
    if id.self_issued {
        "jwt"
    } else {
        "foreign_jwt"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

    fn jwt(payload: &str) -> String {
        format!(
            "{}.{}.sig",
            B64.encode(r#"{"alg":"RS256"}"#),
            B64.encode(payload)
        )
    }

    fn unverified_issuer(token: &str) -> Option<String> {
        unverified_claims(token)?.iss
    }

    #[test]
    fn issuer_is_read_only_to_pick_a_verifier() {
        assert_eq!(
            unverified_issuer(&jwt(r#"{"iss":"https://a"}"#)).as_deref(),
            Some("https://a")
        );
        assert_eq!(unverified_issuer(&jwt(r#"{"sub":"x"}"#)), None);
        assert_eq!(unverified_issuer("a.b"), None);
        assert_eq!(unverified_issuer("a.b.c.d"), None);
        assert_eq!(unverified_issuer("a.%%%.c"), None);
        assert_eq!(
            unverified_claims(&jwt(r#"{"iss":"https://a","exp":5}"#))
                .unwrap()
                .exp,
            Some(5)
        );
    }

    /// The memo answers for its own token only: a token differing anywhere, in its first
    /// byte, its last or by one byte of length, is not it.
    #[test]
    fn memo_matches_its_token_only() {
        let memo = jwt(r#"{"sub":"alice"}"#);
        assert!(is_memo_token(memo.as_bytes(), memo.clone().as_bytes()));
        let mut first = memo.clone().into_bytes();
        first[0] ^= 1;
        let mut middle = memo.clone().into_bytes();
        middle[memo.len() / 2] ^= 1;
        let mut last = memo.clone().into_bytes();
        *last.last_mut().unwrap() ^= 1;
        for other in [first, middle, last] {
            assert!(!is_memo_token(memo.as_bytes(), &other));
        }
        assert!(!is_memo_token(memo.as_bytes(), &memo.as_bytes()[1..]));
        assert!(!is_memo_token(
            memo.as_bytes(),
            format!("{memo}x").as_bytes()
        ));
        // Shorter than the word compared at the end: compared whole.
        assert!(is_memo_token(b"abc", b"abc"));
        assert!(!is_memo_token(b"abc", b"abd"));
        assert!(!is_memo_token(b"", b"a"));
    }

    /// An expired token is refused without reaching the verifier at all.
    #[tokio::test]
    async fn expired_token_is_refused_before_signature_verification() {
        struct MustNotVerify;
        impl JwtVerifier for MustNotVerify {
            fn verify<'a>(&'a self, _token: &'a str) -> super::super::verifier::VerifyFuture<'a> {
                panic!("the verifier must not be called for an expired token")
            }
        }
        let auth = JwtAuthenticator::new(Arc::new(RevocationList::default()), 10)
            .with_issuer("https://a", Arc::new(MustNotVerify));
        let token = jwt(&format!(
            r#"{{"iss":"https://a","exp":{}}}"#,
            now_unix() - 1
        ));
        match auth.authenticate(&token).await {
            Err(AuthnError::Invalid(why)) => assert!(why.contains("expired"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    /// An entry found under a token's key but made for another token (a hash collision)
    /// is never returned: the presented token goes to verification instead.
    #[tokio::test]
    async fn a_key_collision_never_returns_another_tokens_identity() {
        struct Refuse;
        impl JwtVerifier for Refuse {
            fn verify<'a>(&'a self, _token: &'a str) -> super::super::verifier::VerifyFuture<'a> {
                Box::pin(async { Err(VerifyError::Rejected("bad signature".into())) })
            }
        }
        let auth = JwtAuthenticator::new(Arc::new(RevocationList::default()), 10)
            .with_issuer("https://a", Arc::new(Refuse));
        let exp = now_unix() + 600;
        let presented = jwt(&format!(r#"{{"iss":"https://a","exp":{exp},"n":1}}"#));
        let other = jwt(&format!(r#"{{"iss":"https://a","exp":{exp},"n":2}}"#));
        let victim = Arc::new(Identity {
            user_id: "someone-else".into(),
            email: None,
            role: None,
            scopes: Vec::new(),
            client_id: None,
            alias: None,
            expires_at: Some(exp),
            token_id: None,
            signed_jwt: None,
            self_issued: false,
            header_values: Default::default(),
            audiences: Vec::new(),
            cnf: None,
        });
        // Someone else's verified token, stored under the presented token's key.
        auth.cache.insert(
            auth.key_hasher.hash_one(presented.as_bytes()),
            Verified::new(&other, victim),
        );
        match auth.authenticate(&presented).await {
            Err(AuthnError::Invalid(why)) => assert!(why.contains("bad signature"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn jwt_shape() {
        assert!(looks_like_jwt(&jwt("{}")));
        assert!(!looks_like_jwt("0123456789abcdef"));
        assert!(!looks_like_jwt("eyJ.only-one-dot"));
        assert!(!looks_like_jwt("abc.def.ghi"));
    }

    #[tokio::test]
    async fn unknown_issuer_and_garbage_are_invalid_not_unavailable() {
        let a = JwtAuthenticator::new(RevocationList::new(), 10);
        for t in [jwt(r#"{"iss":"https://nobody"}"#), "garbage".to_string()] {
            assert!(matches!(
                a.authenticate(&t).await,
                Err(AuthnError::Invalid(_))
            ));
        }
    }

    /// The thread's last entry answers only for the authenticator whose cache held it,
    /// only for that very token, and still checked for revocation on every use.
    #[test]
    fn the_last_entry_answers_as_its_cache_would() {
        let revocations = Arc::new(RevocationList::default());
        let exp = now_unix() + 600;
        let token = jwt(&format!(r#"{{"iss":"https://a","exp":{exp},"jti":"j1"}}"#));
        let other = jwt(&format!(r#"{{"iss":"https://a","exp":{exp},"jti":"j2"}}"#));
        let id = Arc::new(Identity {
            user_id: "u1".into(),
            email: None,
            role: None,
            scopes: Vec::new(),
            client_id: None,
            alias: None,
            expires_at: Some(exp),
            token_id: Some("j1".into()),
            signed_jwt: None,
            self_issued: false,
            header_values: Default::default(),
            audiences: Vec::new(),
            cnf: None,
        });
        let a = JwtAuthenticator::new(revocations.clone(), 10);
        a.cache.insert(
            a.key_hasher.hash_one(token.as_bytes()),
            Verified::new(&token, id),
        );
        // From the cache, then from the thread's last entry.
        for _ in 0..2 {
            assert_eq!(a.cached(&token).unwrap().unwrap().user_id, "u1");
        }
        assert!(
            a.cached(&other).is_none(),
            "another token is not the last one"
        );
        // The thread's last token, found in a request's `Authorization`, is handed out as
        // the memo's own text (no UTF-8 check again), which the memo knows by its
        // address; anything else around it, or another token, is read as received.
        assert_eq!(a.cached(&token).unwrap().unwrap().user_id, "u1");
        let header = |v: String| {
            let mut h = http::HeaderMap::new();
            h.insert(
                http::header::AUTHORIZATION,
                http::HeaderValue::from_bytes(v.as_bytes()).unwrap(),
            );
            h
        };
        let h = header(format!("Bearer  {token} "));
        let (found, _) = crate::authn::source::authorization(&h, &|_| None).unwrap();
        let crate::authn::source::TokenText::Known(known) = &found else {
            panic!("the last token is known: {found:?}");
        };
        assert_eq!(known.as_str(), token);
        assert!(!format!("{known:?}").contains(&token), "never printed");
        assert_eq!(a.cached(known.as_str()).unwrap().unwrap().user_id, "u1");
        for received in [format!("Bearer {other}"), format!("Bearer {token}\u{a0}")] {
            let h = header(received);
            let (found, _) = crate::authn::source::authorization(&h, &|_| None).unwrap();
            assert!(matches!(
                found,
                crate::authn::source::TokenText::Received(_)
            ));
        }
        assert!(known_token(other.as_bytes()).is_none());
        // On a thread whose last entry is another (here: none), the token is still handed
        // out as the cache's own text when the authenticator finds it by its bytes.
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let h = header(format!("Bearer {token}"));
                let (found, _) = crate::authn::source::authorization(&h, &|b| a.known(b)).unwrap();
                let crate::authn::source::TokenText::Known(known) = &found else {
                    panic!("a cached token is known by its bytes: {found:?}");
                };
                assert_eq!(a.cached(known.as_str()).unwrap().unwrap().user_id, "u1");
                let h = header(format!("Bearer {other}"));
                let (found, _) = crate::authn::source::authorization(&h, &|b| a.known(b)).unwrap();
                assert!(matches!(
                    found,
                    crate::authn::source::TokenText::Received(_)
                ));
            });
        });
        // A new authenticator (a reload) has its own cache: the last entry is not its,
        // by its text or by the memo's own.
        let b = JwtAuthenticator::new(revocations.clone(), 10);
        assert!(b.cached(&token).is_none());
        assert!(b.cached(known.as_str()).is_none());
        // Revoked: refused, from the last entry as from the cache.
        revocations.load([("j1".to_string(), exp)]);
        assert!(matches!(
            a.cached(&token),
            Some(Err(AuthnError::Invalid(_)))
        ));
    }
}
