//! What a token's binding and audience demand of the request that presents it: the one
//! place a DPoP-bound token is refused without its proof, a certificate-bound token over
//! a connection without that certificate, and a token issued for another resource.
//!
//! In order: the audience (the caller's, else the gateway's own for its own tokens); the
//! binding the token carries (`cnf.jkt`: `Authorization: DPoP` with exactly one valid,
//! unused proof by that key; `cnf["x5t#S256"]`: the same client certificate); an unbound
//! token must come as Bearer; last, the caller's `sender_constraint` (a `dpop` route
//! refuses every token that is not DPoP-bound, even a valid bearer token).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::HeaderValue;

use super::dpop::{self, DpopError, Expect, Proof};
use super::replay::ReplayStore;
use super::request::{Scheme, TokenRequest};
use super::{AuthnError, Confirmation, Identity};
use crate::config::raw::{DpopReplayStore, SenderConstraint};
use crate::config::Config;
use crate::crypto::constant_time_eq;

/// The DPoP and audience settings in force, with the replay memory and the nonce.
pub struct Binding {
    window: Duration,
    default_audience: String,
    replay: ReplayStore,
    nonces: Option<Nonces>,
}

impl Binding {
    pub fn from_config(cfg: &Config) -> Binding {
        let window = cfg.dpop.proof_window;
        // A proof is accepted while its iat is within the window either way: remembered
        // that long after the latest acceptable iat.
        let ttl = window * 2 + Duration::from_secs(1);
        let replay = match (&cfg.dpop.replay_store, &cfg.rate_limit_store) {
            (DpopReplayStore::Redis, Some(s)) => ReplayStore::redis(&s.url, &s.prefix, s.timeout),
            _ => ReplayStore::local(ttl),
        };
        Binding {
            window,
            default_audience: cfg.tokens.audience.clone(),
            replay,
            nonces: cfg.dpop.nonce.then(|| Nonces::new(window)),
        }
    }

    /// The full check; see the module comment.
    pub async fn check(&self, id: &Identity, req: &TokenRequest<'_>) -> Result<(), AuthnError> {
        self.audience(id, req)?;
        match &id.cnf {
            Some(Confirmation::Jkt(jkt)) => {
                if req.scheme != Scheme::Dpop {
                    return Err(invalid(
                        "a DPoP-bound token must be sent with the DPoP scheme",
                    ));
                }
                let proof = self
                    .proof(req, Some(req.token))
                    .await?
                    .ok_or_else(|| proof_error(DpopError::Invalid("no DPoP proof"), None))?;
                if !constant_time_eq(proof.jkt.as_bytes(), jkt.as_bytes()) {
                    return Err(proof_error(
                        DpopError::Invalid("the proof is signed by another key than the token's"),
                        None,
                    ));
                }
            }
            Some(Confirmation::X5tS256(want)) => {
                let have = req.client_cert.map(|c| dpop::cert_thumbprint_of(&c.sha256));
                if !have.is_some_and(|h| constant_time_eq(h.as_bytes(), want.as_bytes())) {
                    return Err(invalid("the token is bound to another client certificate"));
                }
            }
            None => {
                if req.scheme == Scheme::Dpop {
                    return Err(invalid(
                        "a token sent with the DPoP scheme must be DPoP-bound",
                    ));
                }
            }
        }
        constraint(id, req)
    }

    /// The check when it needs no proof (an unbound token sent as Bearer): answered
    /// without a future. `None` when a proof or certificate must be looked at.
    pub fn check_now(
        &self,
        id: &Identity,
        req: &TokenRequest<'_>,
    ) -> Option<Result<(), AuthnError>> {
        if id.cnf.is_some() || req.scheme != Scheme::Bearer {
            return None;
        }
        Some(self.audience(id, req).and_then(|()| constraint(id, req)))
    }

    fn audience(&self, id: &Identity, req: &TokenRequest<'_>) -> Result<(), AuthnError> {
        let want = match req.audience {
            Some(a) => a,
            None if id.self_issued => &self.default_audience,
            None => return Ok(()),
        };
        if id.audiences.iter().any(|a| a == want) {
            Ok(())
        } else {
            Err(invalid("the token was issued for another audience"))
        }
    }

    /// The request's DPoP proof, verified and recorded as used: `None` when there is no
    /// `DPoP` header. `access_token`: the token it must be bound to (`ath`); absent at the
    /// token endpoint.
    pub async fn proof(
        &self,
        req: &TokenRequest<'_>,
        access_token: Option<&str>,
    ) -> Result<Option<Proof>, AuthnError> {
        let Some(headers) = req.headers else {
            return Ok(None);
        };
        let mut values = headers.get_all("dpop").iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(proof_error(
                DpopError::Invalid("more than one DPoP header"),
                None,
            ));
        }
        let proof = value
            .to_str()
            .map_err(|_| proof_error(DpopError::Invalid("unreadable DPoP header"), None))?;
        let nonce = self.nonces.as_ref().map(Nonces::current);
        let htu = req.htu();
        let expect = Expect {
            method: req.method,
            uri: &htu,
            access_token,
            nonce: nonce.as_deref(),
            window: self.window,
            now: crate::clock::now_unix() as i64,
        };
        let verified = match dpop::verify(proof, &expect) {
            Ok(p) => p,
            Err(DpopError::UseNonce) => {
                // The previous nonce stays good for one more period, so a client that
                // fetched it just before it changed is not sent round again.
                match self.nonces.as_ref().map(Nonces::previous) {
                    Some(Some(prev)) => {
                        let expect = Expect {
                            nonce: Some(&prev),
                            ..expect
                        };
                        dpop::verify(proof, &expect).map_err(|e| proof_error(e, nonce.clone()))?
                    }
                    _ => return Err(proof_error(DpopError::UseNonce, nonce)),
                }
            }
            Err(e) => {
                metrics::counter!("tollgate_dpop_proofs_total", "outcome" => "invalid")
                    .increment(1);
                return Err(proof_error(e, nonce));
            }
        };
        match self
            .replay
            .first_use(&verified.jkt, &verified.jti, self.window * 2)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                metrics::counter!("tollgate_dpop_proofs_total", "outcome" => "replayed")
                    .increment(1);
                return Err(proof_error(
                    DpopError::Invalid("the proof was already used"),
                    None,
                ));
            }
            Err(e) => return Err(AuthnError::Unavailable(e.to_string())),
        }
        metrics::counter!("tollgate_dpop_proofs_total", "outcome" => "accepted").increment(1);
        Ok(Some(verified))
    }

    /// The nonce to send in `DPoP-Nonce`, when nonces are required.
    pub fn nonce(&self) -> Option<String> {
        self.nonces.as_ref().map(Nonces::current)
    }
}

/// `tollgate_dpop_proofs_total` at 0 for each outcome from the start.
pub fn register_metrics() {
    crate::telemetry::at_zero(|| {
        ["accepted", "invalid", "replayed"]
            .map(|o| metrics::counter!("tollgate_dpop_proofs_total", "outcome" => o))
    });
}

/// The check for authenticators that know no bindings: unbound tokens sent as Bearer,
/// with the audience the caller names.
pub fn unbound_only(id: &Identity, req: &TokenRequest<'_>) -> Result<(), AuthnError> {
    if id.cnf.is_some() || req.scheme != Scheme::Bearer {
        return Err(invalid("sender-constrained tokens are not accepted here"));
    }
    if let Some(want) = req.audience {
        if !id.audiences.iter().any(|a| a == want) {
            return Err(invalid("the token was issued for another audience"));
        }
    }
    constraint(id, req)
}

/// The caller's `sender_constraint`, once the binding itself has been proved.
fn constraint(id: &Identity, req: &TokenRequest<'_>) -> Result<(), AuthnError> {
    let ok = match req.constraint {
        SenderConstraint::None => true,
        SenderConstraint::Dpop => matches!(id.cnf, Some(Confirmation::Jkt(_))),
        SenderConstraint::Mtls => matches!(id.cnf, Some(Confirmation::X5tS256(_))),
        SenderConstraint::Bound => id.cnf.is_some(),
    };
    if ok {
        Ok(())
    } else if req.constraint == SenderConstraint::Dpop {
        Err(proof_error(
            DpopError::Invalid("this resource accepts only DPoP-bound tokens"),
            None,
        ))
    } else {
        Err(invalid(
            "this resource accepts only sender-constrained tokens",
        ))
    }
}

fn invalid(why: &str) -> AuthnError {
    AuthnError::Invalid(why.into())
}

fn proof_error(error: DpopError, nonce: Option<String>) -> AuthnError {
    AuthnError::Proof { error, nonce }
}

/// The `DPoP-Nonce` header value for a nonce.
pub fn nonce_header(nonce: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(nonce).ok()
}

/// Server nonces (RFC 9449 §8): a random value that changes every proof window; the one
/// before it is still accepted for one more window. Per process: with several replicas,
/// a client may be asked for a new nonce when its requests move between them.
struct Nonces {
    period: Duration,
    state: Mutex<(Instant, String, Option<String>)>,
}

impl Nonces {
    fn new(period: Duration) -> Nonces {
        Nonces {
            period,
            state: Mutex::new((Instant::now(), crate::crypto::random_token(), None)),
        }
    }

    fn rotate(&self) -> std::sync::MutexGuard<'_, (Instant, String, Option<String>)> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.0.elapsed() >= self.period {
            let old = std::mem::replace(&mut s.1, crate::crypto::random_token());
            s.2 = Some(old);
            s.0 = Instant::now();
        }
        s
    }

    fn current(&self) -> String {
        self.rotate().1.clone()
    }

    fn previous(&self) -> Option<String> {
        self.rotate().2.clone()
    }
}
