//! The browser session (single sign-on) and the CSRF cookie of the hosted forms.
//!
//! The session cookie holds 128+ random bits; the store keeps only its SHA-256, with who
//! signed in, when, when it was last used, and the refresh families issued under it. It
//! ends after `login.session.idle` unused or `login.session.absolute` in all, and at
//! logout (which revokes those families). Cookies are `HttpOnly`, `SameSite=Lax` (the
//! session: it must come along on the client's top-level redirect) or `Strict` (CSRF),
//! and `__Host-` prefixed and `Secure` when the issuer is https.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use http::{header, HeaderMap, HeaderValue};

use crate::config::Config;
use crate::crypto::{constant_time_eq, random_token, sha256_hex};
use crate::oauth::code::{put_payload, SessionPayload};
use crate::store::{SignInKind, Store, StoreError};

/// A live session.
#[derive(Debug, Clone)]
pub struct Session {
    pub hash: String,
    pub payload: SessionPayload,
}

fn secure(cfg: &Config) -> bool {
    cfg.tokens.issuer.starts_with("https://")
}

pub fn session_cookie_name(cfg: &Config) -> &'static str {
    if secure(cfg) {
        "__Host-tollgate_session"
    } else {
        "tollgate_session"
    }
}

pub fn csrf_cookie_name(cfg: &Config) -> &'static str {
    if secure(cfg) {
        "__Host-tollgate_csrf"
    } else {
        "tollgate_csrf"
    }
}

fn cookie(
    cfg: &Config,
    name: &str,
    value: &str,
    same_site: &str,
    max_age: Option<i64>,
) -> HeaderValue {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite={same_site}");
    if secure(cfg) {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    HeaderValue::from_str(&c).expect("cookie values are token characters")
}

/// The session the browser presents, if it is live; its idle clock restarts.
pub async fn current(
    store: &dyn Store,
    cfg: &Config,
    headers: &HeaderMap,
) -> Result<Option<Session>, StoreError> {
    let Some(value) = crate::http::cookie::value(headers, session_cookie_name(cfg)) else {
        return Ok(None);
    };
    let hash = sha256_hex(value);
    let Some(rec) = store.signin_by_hash(SignInKind::Session, &hash).await? else {
        return Ok(None);
    };
    let now = Utc::now();
    if rec.used_at.is_some() || rec.expires_at <= now {
        return Ok(None);
    }
    let Ok(mut payload) = serde_json::from_str::<SessionPayload>(&rec.payload) else {
        return Ok(None);
    };
    let idle = cfg.login.session.idle.as_secs() as i64;
    if now.timestamp() - payload.last_seen > idle {
        return Ok(None);
    }
    payload.last_seen = now.timestamp();
    put_payload(
        store,
        SignInKind::Session,
        &hash,
        &payload,
        rec.expires_at,
        None,
    )
    .await?;
    Ok(Some(Session { hash, payload }))
}

/// Starts a session for `user_id`; the `Set-Cookie` value for the browser.
pub async fn start(
    store: &dyn Store,
    cfg: &Config,
    user_id: i64,
) -> Result<(Session, HeaderValue), StoreError> {
    let value = random_token();
    let hash = sha256_hex(&value);
    let now = Utc::now();
    let absolute = cfg.login.session.absolute;
    let expires_at: DateTime<Utc> =
        now + ChronoDuration::from_std(absolute).unwrap_or(ChronoDuration::days(7));
    let payload = SessionPayload {
        user_id,
        auth_time: now.timestamp(),
        last_seen: now.timestamp(),
        families: Vec::new(),
    };
    put_payload(
        store,
        SignInKind::Session,
        &hash,
        &payload,
        expires_at,
        None,
    )
    .await?;
    let set = cookie(
        cfg,
        session_cookie_name(cfg),
        &value,
        "Lax",
        Some(absolute.as_secs() as i64),
    );
    Ok((Session { hash, payload }, set))
}

/// Ends the browser's session (if any) and revokes the refresh tokens issued under it;
/// the `Set-Cookie` value that clears the cookie.
pub async fn end(
    store: &dyn Store,
    cfg: &Config,
    headers: &HeaderMap,
) -> Result<HeaderValue, StoreError> {
    if let Some(value) = crate::http::cookie::value(headers, session_cookie_name(cfg)) {
        let hash = sha256_hex(value);
        let now = Utc::now();
        if let Some(rec) = store.signin_by_hash(SignInKind::Session, &hash).await? {
            store.use_signin(SignInKind::Session, &hash, now).await?;
            if let Ok(p) = serde_json::from_str::<SessionPayload>(&rec.payload) {
                for family in &p.families {
                    store.revoke_family(family, now).await?;
                }
                crate::audit::event("sign_out", crate::audit::Outcome::Success)
                    .user(crate::store::UserId(p.user_id))
                    .emit();
            }
        }
    }
    Ok(cookie(cfg, session_cookie_name(cfg), "", "Lax", Some(0)))
}

/// The CSRF token of this browser: its cookie's value, or a new one with the cookie to
/// set.
pub fn csrf(cfg: &Config, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    match crate::http::cookie::value(headers, csrf_cookie_name(cfg)) {
        Some(v)
            if v.len() >= 32
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            (v.to_owned(), None)
        }
        _ => {
            let v = random_token();
            let set = cookie(cfg, csrf_cookie_name(cfg), &v, "Strict", None);
            (v, Some(set))
        }
    }
}

/// Whether a form's `csrf` field is this browser's CSRF cookie (double submit: a page
/// on another site can send the cookie but cannot read it to fill the field).
pub fn csrf_matches(cfg: &Config, headers: &HeaderMap, field: Option<&str>) -> bool {
    match (
        crate::http::cookie::value(headers, csrf_cookie_name(cfg)),
        field,
    ) {
        (Some(c), Some(f)) if c.len() >= 32 => constant_time_eq(c.as_bytes(), f.as_bytes()),
        _ => false,
    }
}

/// Adds a `Set-Cookie`.
pub fn set_cookie(headers: &mut HeaderMap, value: HeaderValue) {
    headers.append(header::SET_COOKIE, value);
}
