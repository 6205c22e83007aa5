//! Binds a dialog to the browser that started it.
//!
//! Threat model: an attacker starts a dialog with their own Tollgate token, stops at the
//! provider's consent URL (which carries their `state`), and gets a victim to open it.
//! The victim consents with their own provider account, the provider sends the victim's
//! browser to the callback with the attacker's `state`, and without a binding the
//! victim's Facebook account would be linked to the attacker's Tollgate user.
//!
//! Defence: the dialog sets an HttpOnly cookie holding a fresh random value, scoped to the
//! callback path and named after the state, and that value is part of the associated data
//! under which the PKCE verifier is sealed. A callback arriving in any other browser has
//! no cookie (or another one), the verifier does not open, and nothing is exchanged.
//! `SameSite=Lax` still lets the cookie ride the provider's top-level redirect back.
//! The cookie is per state, so two dialogs in two tabs do not clobber each other.
//!
//! The dialog and the callback must therefore be served on the same host (the callback
//! base, `connect.callback_base_url` or `tokens.issuer`).

use http::{HeaderMap, HeaderValue};

/// Cookie name for a state: a prefix of the state's hash, so it reveals nothing usable.
pub fn cookie_name(state_hash: &str) -> String {
    format!(
        "tollgate_connect_{}",
        &state_hash[..16.min(state_hash.len())]
    )
}

/// `Set-Cookie` for a new dialog.
pub fn set_cookie(
    state_hash: &str,
    value: &str,
    provider: &str,
    max_age_secs: u64,
    secure: bool,
) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let v = format!(
        "{}={value}; Path=/{provider}/oauth_code; Max-Age={max_age_secs}; HttpOnly; SameSite=Lax{secure}",
        cookie_name(state_hash)
    );
    HeaderValue::from_str(&v).expect("cookie of URL-safe parts is a valid header")
}

/// `Set-Cookie` that removes the cookie once the callback has used it.
pub fn clear_cookie(state_hash: &str, provider: &str, secure: bool) -> HeaderValue {
    set_cookie(state_hash, "", provider, 0, secure)
}

/// The binding value the browser sent for this state, if any.
pub fn from_request<'a>(headers: &'a HeaderMap, state_hash: &str) -> Option<&'a str> {
    crate::http::cookie::value(headers, &cookie_name(state_hash)).filter(|v| !v.is_empty())
}

/// Associated data sealing the PKCE verifier: the state's hash and the browser binding.
pub fn verifier_aad(state_hash: &str, binding: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(state_hash.len() + binding.len() + 1);
    aad.extend_from_slice(state_hash.as_bytes());
    aad.push(0);
    aad.extend_from_slice(binding.as_bytes());
    aad
}
