//! Foreign JWT issuers (`jwt_issuers`): tokens verified locally against the issuer's
//! JWKS, fetched over HTTPS and cached.
//!
//! Threat model: an attacker who can mint tokens with random `kid`s must not be able to
//! turn the gateway into a JWKS-fetching amplifier, and a JWKS outage must not let a
//! token through. An unknown `kid` triggers at most one refetch per `refetch_interval`
//! (concurrent misses share it); otherwise the token is refused. When the keys cannot be
//! fetched at all the token gets 503, never 200; an answer with no usable key (garbage
//! served as JSON) counts as a failed fetch and leaves the known keys in place.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::verifier::{JwtVerifier, KeySetVerifier, VerifyError, VerifyFuture};
use crate::config::raw::JwtIssuer;
use crate::telemetry::trace;

/// One foreign issuer and its cached key set.
pub struct ForeignIssuer {
    issuer: String,
    audience: Option<String>,
    jwks_url: String,
    refetch_interval: Duration,
    client: reqwest::Client,
    keys: ArcSwap<KeySetVerifier>,
    /// When the key set was last fetched; the lock also makes concurrent refetches one.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl ForeignIssuer {
    pub fn from_config(c: &JwtIssuer, client: reqwest::Client) -> Self {
        crate::telemetry::at_zero(|| {
            [metrics::counter!("tollgate_jwks_fetches_total", "issuer" => c.issuer.clone())]
        });
        ForeignIssuer {
            issuer: c.issuer.clone(),
            audience: c.audience.clone(),
            jwks_url: c.jwks_url.clone(),
            refetch_interval: c.refetch_interval,
            client,
            keys: ArcSwap::from_pointee(KeySetVerifier::new(c.issuer.clone(), c.audience.clone())),
            last_fetch: tokio::sync::Mutex::new(None),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    async fn fetch(&self) -> Result<KeySetVerifier, VerifyError> {
        let span = crate::otel_span!(
            "jwks fetch",
            opentelemetry::trace::SpanKind::Client,
            "tollgate.issuer" => self.issuer.clone(),
        );
        let traceparent = trace::headers_for(&span);
        span.instrument(self.fetch_traced(traceparent)).await
    }

    async fn fetch_traced(
        &self,
        traceparent: http::HeaderMap,
    ) -> Result<KeySetVerifier, VerifyError> {
        let unavailable =
            |e: String| VerifyError::KeysUnavailable(format!("JWKS of {}: {e}", self.issuer));
        let resp = self
            .client
            .get(&self.jwks_url)
            .headers(traceparent)
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(unavailable(format!("status {}", resp.status())));
        }
        let body: serde_json::Value = resp.json().await.map_err(|e| unavailable(e.to_string()))?;
        let mut set = KeySetVerifier::new(self.issuer.clone(), self.audience.clone());
        let n = set.add_jwks(&body);
        // A set with no usable key is an answer gone wrong (an error page served as JSON,
        // a half-configured issuer), not a rotation: it must not replace the keys that
        // verify today's tokens.
        if n == 0 {
            return Err(unavailable("no usable key in the answer".into()));
        }
        metrics::counter!("tollgate_jwks_fetches_total", "issuer" => self.issuer.clone())
            .increment(1);
        tracing::info!(issuer = %self.issuer, keys = n, "fetched JWKS");
        Ok(set)
    }

    /// Refetches the key set unless one was fetched within `refetch_interval`, or another
    /// task already brought in `kid` while this one waited.
    async fn refresh_for(&self, kid: &str) -> Result<(), VerifyError> {
        let mut last = self.last_fetch.lock().await;
        if self.keys.load().has_kid(kid) {
            return Ok(());
        }
        if last.is_some_and(|t| t.elapsed() < self.refetch_interval) {
            // Never fetched successfully: the keys are unknown, not the kid.
            if self.keys.load().is_empty() {
                return Err(VerifyError::KeysUnavailable(format!(
                    "JWKS of {} not loaded yet",
                    self.issuer
                )));
            }
            return Err(VerifyError::UnknownKid);
        }
        *last = Some(Instant::now());
        let set = self.fetch().await?;
        self.keys.store(Arc::new(set));
        Ok(())
    }
}

impl JwtVerifier for ForeignIssuer {
    fn verify<'a>(&'a self, token: &'a str) -> VerifyFuture<'a> {
        Box::pin(async move {
            match self.keys.load().verify_now(token) {
                Err(VerifyError::UnknownKid) => {}
                other => return other,
            }
            let kid = jsonwebtoken::decode_header(token)
                .map_err(|_| VerifyError::Malformed)?
                .kid
                .ok_or(VerifyError::UnknownKid)?;
            self.refresh_for(&kid).await?;
            self.keys.load().verify_now(token)
        })
    }
}
