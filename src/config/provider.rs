//! External providers from the `providers` config: presets for Facebook, Google and
//! GitHub fill the URLs, scopes and userinfo field names an operator would otherwise have
//! to look up; anything else is a generic OAuth 2.0 / OIDC provider that names its own
//! URLs. [`validate_config`] runs at config load so a typo never waits for the first
//! user to click "connect".

use url::Url;

use super::raw::{Provider, RawConfig};
use crate::http::redirect::{parse_endpoint_url, AllowedRedirect};

/// Which well-known provider a config entry adapts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    Facebook,
    Google,
    Github,
    Generic,
}

/// The values a preset fills in when the config leaves them out.
struct Defaults {
    authorize_url: Option<&'static str>,
    token_url: Option<&'static str>,
    userinfo_url: Option<&'static str>,
    scope: &'static [&'static str],
    /// Userinfo fields holding the provider's user id, first present wins.
    id_fields: &'static [&'static str],
    email_field: &'static str,
}

impl Preset {
    pub const NAMES: [&'static str; 4] = ["facebook", "google", "github", "generic"];

    pub fn parse(name: &str) -> Option<Preset> {
        match name {
            "facebook" => Some(Preset::Facebook),
            "google" => Some(Preset::Google),
            "github" => Some(Preset::Github),
            "generic" => Some(Preset::Generic),
            _ => None,
        }
    }

    /// The preset of a config entry: `preset` when set, else the entry's key when it names
    /// a preset, else generic. `None` for an unknown `preset` value.
    pub fn of(key: &str, p: &Provider) -> Option<Preset> {
        match &p.preset {
            Some(name) => Preset::parse(name),
            None => Some(Preset::parse(key).unwrap_or(Preset::Generic)),
        }
    }

    fn defaults(self) -> Defaults {
        match self {
            Preset::Facebook => Defaults {
                authorize_url: Some("https://www.facebook.com/dialog/oauth"),
                token_url: Some("https://graph.facebook.com/oauth/access_token"),
                userinfo_url: Some("https://graph.facebook.com/me?fields=id,name,email"),
                scope: &["public_profile", "email"],
                id_fields: &["id"],
                email_field: "email",
            },
            Preset::Google => Defaults {
                authorize_url: Some("https://accounts.google.com/o/oauth2/v2/auth"),
                token_url: Some("https://oauth2.googleapis.com/token"),
                userinfo_url: Some("https://openidconnect.googleapis.com/v1/userinfo"),
                scope: &["openid", "email", "profile"],
                id_fields: &["sub"],
                email_field: "email",
            },
            Preset::Github => Defaults {
                authorize_url: Some("https://github.com/login/oauth/authorize"),
                token_url: Some("https://github.com/login/oauth/access_token"),
                userinfo_url: Some("https://api.github.com/user"),
                scope: &["read:user", "user:email"],
                // GitHub's id is a number; it is kept as its decimal string.
                id_fields: &["id"],
                email_field: "email",
            },
            Preset::Generic => Defaults {
                authorize_url: None,
                token_url: None,
                userinfo_url: None,
                scope: &[],
                // OIDC userinfo says `sub`; plain OAuth 2.0 APIs usually say `id`.
                id_fields: &["sub", "id"],
                email_field: "email",
            },
        }
    }
}

/// A provider with every default filled in and every URL parsed.
#[derive(Debug, Clone)]
pub struct ResolvedProvider {
    pub name: String,
    pub preset: Preset,
    pub client_id: String,
    pub client_secret_env: Option<String>,
    pub authorize_url: Url,
    pub token_url: Url,
    pub userinfo_url: Url,
    pub scope: Vec<String>,
    pub id_fields: &'static [&'static str],
    pub email_field: &'static str,
    pub allowed_redirects: Vec<AllowedRedirect>,
    /// Tollgate's own callback for this provider (see [`callback_url`]).
    pub callback_url: String,
}

impl ResolvedProvider {
    /// Resolves a config entry. Config validation has already run the same checks, so an
    /// error here means the entry changed underneath (it is reported, never guessed around).
    /// `callback_base` is where Tollgate's callback lives ([`callback_url`]).
    pub fn resolve(
        key: &str,
        p: &Provider,
        callback_base: &str,
    ) -> Result<ResolvedProvider, Vec<String>> {
        let mut problems = Vec::new();
        let at = format!("providers.{key}");
        if !is_path_segment(key) {
            problems.push(format!(
                "{at}: the provider name must be lower-case letters, digits, `-` or `_` (it is a URL path segment)"
            ));
        }
        let preset = match Preset::of(key, p) {
            Some(preset) => preset,
            None => {
                problems.push(format!(
                    "{at}.preset: unknown preset `{}` (expected one of {})",
                    p.preset.as_deref().unwrap_or_default(),
                    Preset::NAMES.join(", ")
                ));
                Preset::Generic
            }
        };
        let d = preset.defaults();
        if p.client_id.trim().is_empty() {
            problems.push(format!("{at}.client_id: must be set"));
        }
        if let Some(env) = &p.client_secret_env {
            if env.trim().is_empty() {
                problems.push(format!(
                    "{at}.client_secret_env: must name an environment variable"
                ));
            }
        }
        let mut url_of = |field: &str, given: &Option<String>, default: Option<&'static str>| {
            let Some(text) = given.as_deref().or(default) else {
                problems.push(format!("{at}.{field}: must be set for a generic provider"));
                return None;
            };
            match parse_endpoint_url(text) {
                Ok(u) => Some(u),
                Err(why) => {
                    problems.push(format!("{at}.{field}: `{text}` {why}"));
                    None
                }
            }
        };
        let authorize_url = url_of("authorize_url", &p.authorize_url, d.authorize_url);
        let token_url = url_of("token_url", &p.token_url, d.token_url);
        let userinfo_url = url_of("userinfo_url", &p.userinfo_url, d.userinfo_url);

        let scope = match &p.scope {
            Some(s) => s.clone(),
            None => d.scope.iter().map(|s| s.to_string()).collect(),
        };
        if scope
            .iter()
            .any(|s| s.is_empty() || s.contains(char::is_whitespace))
        {
            problems.push(format!(
                "{at}.scope: each scope must be one word without spaces"
            ));
        }

        if p.allowed_redirect_uris.is_empty() {
            problems.push(format!(
                "{at}.allowed_redirect_uris: empty, so no integrator could ever be sent back; list at least one URI"
            ));
        }
        let mut allowed_redirects = Vec::with_capacity(p.allowed_redirect_uris.len());
        for (i, text) in p.allowed_redirect_uris.iter().enumerate() {
            match AllowedRedirect::parse(text) {
                Ok(a) => allowed_redirects.push(a),
                Err(why) => {
                    problems.push(format!("{at}.allowed_redirect_uris[{i}]: `{text}` {why}"))
                }
            }
        }

        match (authorize_url, token_url, userinfo_url) {
            (Some(authorize_url), Some(token_url), Some(userinfo_url)) if problems.is_empty() => {
                Ok(ResolvedProvider {
                    name: key.to_string(),
                    preset,
                    client_id: p.client_id.clone(),
                    client_secret_env: p.client_secret_env.clone(),
                    authorize_url,
                    token_url,
                    userinfo_url,
                    scope,
                    id_fields: d.id_fields,
                    email_field: d.email_field,
                    allowed_redirects,
                    callback_url: callback_url(callback_base, key),
                })
            }
            _ => Err(problems),
        }
    }

    /// The client secret from its environment variable. `Ok(None)` for a public client
    /// (PKCE only); an error when the variable is named but unset.
    pub fn client_secret(&self) -> Result<Option<String>, String> {
        match &self.client_secret_env {
            None => Ok(None),
            Some(env) => match std::env::var(env) {
                Ok(v) if !v.is_empty() => Ok(Some(v)),
                _ => Err(format!(
                    "environment variable {env} (providers.{}.client_secret_env) is not set",
                    self.name
                )),
            },
        }
    }

    /// Whether `uri` is one the integrator may be sent back to; the normalised URL when it is.
    pub fn allow_redirect(&self, uri: &str) -> Option<Url> {
        crate::http::redirect::check(&self.allowed_redirects, uri)
    }
}

/// Every provider resolved; called once validation found no problem with any.
pub fn resolve_all(raw: &RawConfig) -> std::collections::BTreeMap<String, ResolvedProvider> {
    raw.providers
        .iter()
        .filter_map(|(key, p)| {
            let resolved = ResolvedProvider::resolve(key, p, callback_base_source(raw).1).ok()?;
            Some((key.clone(), resolved))
        })
        .collect()
}

/// Every problem with `providers` and `connect`, for config validation.
pub fn validate_config(raw: &RawConfig) -> Vec<String> {
    let mut problems = Vec::new();
    for (key, p) in &raw.providers {
        if let Err(mut more) = ResolvedProvider::resolve(key, p, callback_base_source(raw).1) {
            problems.append(&mut more);
        }
    }
    if let Some(env) = &raw.connect.encryption_key_env {
        if env.trim().is_empty() {
            problems.push("connect.encryption_key_env: must name an environment variable".into());
        }
    }
    if raw.connect.state_ttl.is_zero()
        || raw.connect.state_ttl > std::time::Duration::from_secs(3600)
    {
        problems.push("connect.state_ttl: must be between 1s and 1h".into());
    }
    if raw.connect.provider_timeout.is_zero() {
        problems.push("connect.provider_timeout: must be more than 0s".into());
    }
    if !raw.providers.is_empty() {
        let (key, base) = callback_base_source(raw);
        if let Err(why) = parse_endpoint_url(base) {
            problems.push(format!(
                "{key}: `{base}` {why} (it is the base of the provider callback URL)"
            ));
        }
    }
    problems
}

/// Where the callback base URL comes from, and its text.
fn callback_base_source(raw: &RawConfig) -> (&'static str, &str) {
    match &raw.connect.callback_base_url {
        Some(b) => ("connect.callback_base_url", b.as_str()),
        None => ("tokens.issuer", raw.tokens.issuer.as_str()),
    }
}

/// Tollgate's own callback for `provider`: `{base}/{provider}/oauth_code`, where base is
/// `connect.callback_base_url`, else `tokens.issuer`. Taken from configuration, never from
/// the request's `Host`, so a forged header cannot steer where the provider sends the code.
fn callback_url(base: &str, provider: &str) -> String {
    format!("{}/{provider}/oauth_code", base.trim_end_matches('/'))
}

fn is_path_segment(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}
