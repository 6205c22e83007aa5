//! The two server-to-server calls of the callback: code → tokens at the provider's token
//! URL (with the PKCE verifier), then tokens → who the user is at the userinfo URL.
//!
//! Threat model: the provider (or whoever answers at its URL) is outside our control.
//! Calls are bounded in time (`connect.provider_timeout`) and size, redirects are not
//! followed (a token endpoint that redirects is misconfigured, and following would send
//! the code and secret elsewhere), and provider responses are never copied into errors
//! shown to the user or into logs beyond their status.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::config::provider::ResolvedProvider;
use crate::telemetry::trace;

/// Largest provider response read.
const MAX_RESPONSE: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("token endpoint: {0}")]
    Token(String),
    #[error("userinfo endpoint: {0}")]
    Userinfo(String),
    #[error("client secret unavailable: {0}")]
    Secret(String),
}

/// The provider's tokens, as stored (encrypted) with the link.
#[derive(Serialize)]
pub struct ProviderTokens {
    pub access_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// UNIX seconds, from `expires_in` at the time of the exchange.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    pub obtained_at: i64,
}

impl std::fmt::Debug for ProviderTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProviderTokens(..)")
    }
}

impl Drop for ProviderTokens {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.access_token.zeroize();
        self.refresh_token.zeroize();
        self.id_token.zeroize();
    }
}

/// Who the provider says the user is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderUser {
    pub id: String,
    pub email: Option<String>,
}

/// Talks to providers. One pooled client for all of them.
#[derive(Clone)]
pub struct ProviderClient {
    http: reqwest::Client,
}

impl ProviderClient {
    pub fn new(timeout: Duration) -> ProviderClient {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tollgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("HTTP client with static settings builds");
        ProviderClient { http }
    }

    /// Authorization code grant (RFC 6749 §4.1.3) with the PKCE verifier (RFC 7636 §4.5).
    /// The client secret, when the provider has one, goes in the form body
    /// (`client_secret_post`), which Facebook, Google and GitHub all accept.
    pub async fn exchange_code(
        &self,
        p: &ResolvedProvider,
        code: &str,
        callback: &str,
        verifier: &str,
    ) -> Result<ProviderTokens, ExchangeError> {
        let span = crate::otel_span!(
            "provider token",
            opentelemetry::trace::SpanKind::Client,
            "tollgate.provider" => p.name.to_string(),
        );
        let traceparent = trace::headers_for(&span);
        span.instrument(self.exchange_code_traced(p, code, callback, verifier, traceparent))
            .await
    }

    async fn exchange_code_traced(
        &self,
        p: &ResolvedProvider,
        code: &str,
        callback: &str,
        verifier: &str,
        traceparent: http::HeaderMap,
    ) -> Result<ProviderTokens, ExchangeError> {
        let secret = Zeroizing::new(p.client_secret().map_err(ExchangeError::Secret)?);
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", callback),
            ("client_id", &p.client_id),
            ("code_verifier", verifier),
        ];
        if let Some(s) = secret.as_deref() {
            form.push(("client_secret", s));
        }
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let resp = self
            .http
            .post(p.token_url.clone())
            .headers(traceparent)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .map_err(|e| ExchangeError::Token(transport_error(&e)))?;
        let status = resp.status();
        let is_form = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.starts_with("application/x-www-form-urlencoded") || v.starts_with("text/plain")
            });
        let bytes = read_limited(resp).await.map_err(ExchangeError::Token)?;
        // GitHub answers form-encoded unless asked for JSON; older Facebook did too.
        let fields: Value = if is_form {
            Value::Object(
                form_urlencoded::parse(&bytes)
                    .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                    .collect(),
            )
        } else {
            serde_json::from_slice(&bytes)
                .map_err(|_| ExchangeError::Token(format!("HTTP {status}, body is not JSON")))?
        };
        if let Some(err) = fields.get("error").and_then(Value::as_str) {
            return Err(ExchangeError::Token(format!(
                "HTTP {status}, error `{}`",
                short(err)
            )));
        }
        if !status.is_success() {
            return Err(ExchangeError::Token(format!("HTTP {status}")));
        }
        let text = |k: &str| fields.get(k).and_then(Value::as_str).map(str::to_owned);
        let access_token = text("access_token")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ExchangeError::Token("response has no access_token".into()))?;
        let now = chrono::Utc::now().timestamp();
        let expires_in = fields.get("expires_in").and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        });
        Ok(ProviderTokens {
            access_token,
            refresh_token: text("refresh_token"),
            id_token: text("id_token"),
            token_type: text("token_type"),
            scope: text("scope"),
            expires_at: expires_in.map(|s| now.saturating_add(s)),
            obtained_at: now,
        })
    }

    /// Reads the userinfo URL with the provider's access token.
    pub async fn userinfo(
        &self,
        p: &ResolvedProvider,
        access_token: &str,
    ) -> Result<ProviderUser, ExchangeError> {
        let span = crate::otel_span!(
            "provider userinfo",
            opentelemetry::trace::SpanKind::Client,
            "tollgate.provider" => p.name.to_string(),
        );
        let traceparent = trace::headers_for(&span);
        span.instrument(self.userinfo_traced(p, access_token, traceparent))
            .await
    }

    async fn userinfo_traced(
        &self,
        p: &ResolvedProvider,
        access_token: &str,
        traceparent: http::HeaderMap,
    ) -> Result<ProviderUser, ExchangeError> {
        let resp = self
            .http
            .get(p.userinfo_url.clone())
            .headers(traceparent)
            .bearer_auth(access_token)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| ExchangeError::Userinfo(transport_error(&e)))?;
        let status = resp.status();
        let bytes = read_limited(resp).await.map_err(ExchangeError::Userinfo)?;
        if !status.is_success() {
            return Err(ExchangeError::Userinfo(format!("HTTP {status}")));
        }
        let info: Value = serde_json::from_slice(&bytes)
            .map_err(|_| ExchangeError::Userinfo(format!("HTTP {status}, body is not JSON")))?;
        parse_user(p, &info).ok_or_else(|| {
            ExchangeError::Userinfo(format!("no user id in field(s) {}", p.id_fields.join(", ")))
        })
    }
}

/// The provider user id (a string, or a number kept as its decimal text) and the email.
pub fn parse_user(p: &ResolvedProvider, info: &Value) -> Option<ProviderUser> {
    let id = p.id_fields.iter().find_map(|f| match info.get(*f)? {
        Value::String(s) if !s.is_empty() && s.len() <= 255 => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })?;
    let email = info
        .get(p.email_field)
        .and_then(Value::as_str)
        .filter(|e| !e.is_empty() && e.len() <= 320)
        .map(str::to_owned);
    Some(ProviderUser { id, email })
}

async fn read_limited(mut resp: reqwest::Response) -> Result<Vec<u8>, String> {
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_RESPONSE as u64)
    {
        return Err("response too large".into());
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| transport_error(&e))? {
        if out.len() + chunk.len() > MAX_RESPONSE {
            return Err("response too large".into());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// A transport failure without the URL (which may carry a query the operator configured).
fn transport_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        "request failed".into()
    }
}

fn short(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(64)
        .collect()
}
