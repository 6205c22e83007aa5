//! The authorization request (`GET /oauth/authorize`, RFC 6749 §4.1.1 with PKCE and the
//! OpenID Connect parameters), read and checked in one place. The login and consent forms
//! carry the request's query string back, and it is checked again in full on every POST:
//! nothing a form returns is trusted on its own.

use crate::oauth::grants_scope;
use crate::store::{Client, Store};

use super::redirect;

/// Scopes every code-flow client may ask for on top of its own.
const OIDC_SCOPES: [&str; 3] = ["openid", "profile", "email"];
const MAX_QUERY: usize = 8 * 1024;

/// A checked authorization request.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    pub client: Client,
    pub redirect_uri: String,
    pub state: Option<String>,
    pub scope: String,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub prompt_none: bool,
    pub prompt_login: bool,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    pub resource: Vec<String>,
    /// RFC 9449 §10 `dpop_jkt`: the code is redeemable only with a proof by this key.
    pub dpop_jkt: Option<String>,
    /// The query string as received, for the forms to carry back.
    pub raw: String,
}

/// Why a request is refused, and where the refusal goes.
#[derive(Debug)]
pub enum Invalid {
    /// Client or redirect URI unknown: never redirected anywhere (an open redirector
    /// otherwise), shown as a page.
    Page(&'static str),
    /// To the client's registered redirect URI (RFC 6749 §4.1.2.1).
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: &'static str,
    },
}

/// Reads and checks the request in `query`.
pub async fn parse(store: &dyn Store, query: &str) -> Result<AuthRequest, Invalid> {
    if query.len() > MAX_QUERY {
        return Err(Invalid::Page("the authorization request is too long"));
    }
    let mut single: Vec<(String, String)> = Vec::new();
    let mut resource = Vec::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if k == "resource" {
            resource.push(v.into_owned());
            continue;
        }
        // RFC 6749 §3.1: a parameter sent twice is an error, not a choice.
        if single.iter().any(|(have, _)| *have == k) {
            return Err(Invalid::Page("a parameter is given more than once"));
        }
        single.push((k.into_owned(), v.into_owned()));
    }
    let get = |name: &str| {
        single
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let client_id = get("client_id").ok_or(Invalid::Page("client_id is missing"))?;
    let client = match store.client_by_id(client_id).await {
        Ok(Some(c)) => c,
        Ok(None) => return Err(Invalid::Page("unknown client")),
        Err(_) => {
            return Err(Invalid::Page(
                "the sign-in service is unavailable; try again",
            ))
        }
    };
    let redirect_uri = get("redirect_uri").ok_or(Invalid::Page("redirect_uri is missing"))?;
    if !client.redirect_uris.iter().any(|r| r == redirect_uri) {
        return Err(Invalid::Page(
            "redirect_uri is not registered for this client",
        ));
    }
    let state = get("state").map(str::to_owned);
    let refuse = |error, description| Invalid::Redirect {
        redirect_uri: redirect_uri.to_owned(),
        state: state.clone(),
        error,
        description,
    };
    if get("response_type") != Some("code") {
        return Err(refuse(
            "unsupported_response_type",
            "only response_type=code is supported",
        ));
    }
    if !client.grants.iter().any(|g| g == "authorization_code") {
        return Err(refuse(
            "unauthorized_client",
            "this client may not use the authorization code flow",
        ));
    }
    let challenge = get("code_challenge")
        .ok_or_else(|| refuse("invalid_request", "code_challenge is required (PKCE, S256)"))?;
    if get("code_challenge_method") != Some("S256") {
        return Err(refuse(
            "invalid_request",
            "code_challenge_method must be S256",
        ));
    }
    if challenge.len() != 43
        || !challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(refuse(
            "invalid_request",
            "code_challenge is not a BASE64URL SHA-256",
        ));
    }
    let mut allowed = client.scopes.clone();
    allowed.extend(OIDC_SCOPES.iter().map(|s| s.to_string()));
    let scope = match get("scope") {
        Some(s) => grants_scope(&allowed, Some(s))
            .map_err(|_| refuse("invalid_scope", "a requested scope is not allowed"))?,
        None => client.scopes.join(" "),
    };
    let (mut prompt_none, mut prompt_login) = (false, false);
    for p in get("prompt")
        .unwrap_or("")
        .split(' ')
        .filter(|p| !p.is_empty())
    {
        match p {
            "none" => prompt_none = true,
            "login" => prompt_login = true,
            "consent" | "select_account" => {}
            _ => return Err(refuse("invalid_request", "unknown prompt value")),
        }
    }
    if prompt_none && prompt_login {
        return Err(refuse(
            "invalid_request",
            "prompt=none cannot be combined with another value",
        ));
    }
    let max_age = match get("max_age") {
        Some(v) => Some(
            v.parse::<i64>()
                .ok()
                .filter(|v| *v >= 0)
                .ok_or_else(|| refuse("invalid_request", "max_age is not a number of seconds"))?,
        ),
        None => None,
    };
    for r in &resource {
        // RFC 8707 §2: an absolute URI without a fragment.
        if url::Url::parse(r).is_err() || r.contains('#') {
            return Err(refuse(
                "invalid_target",
                "resource must be an absolute URI without a fragment",
            ));
        }
    }
    // RFC 9449 §10: the thumbprint of the key the code's redemption must prove.
    let dpop_jkt = match get("dpop_jkt") {
        Some(j)
            if j.len() == 43
                && j.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            Some(j.to_owned())
        }
        Some(_) => {
            return Err(refuse(
                "invalid_request",
                "dpop_jkt is not a BASE64URL SHA-256 thumbprint",
            ))
        }
        None => None,
    };
    Ok(AuthRequest {
        dpop_jkt,
        redirect_uri: redirect_uri.to_owned(),
        scope,
        nonce: get("nonce").map(str::to_owned),
        code_challenge: challenge.to_owned(),
        prompt_none,
        prompt_login,
        max_age,
        login_hint: get("login_hint").map(str::to_owned),
        resource,
        raw: query.to_owned(),
        state,
        client,
    })
}

impl Invalid {
    /// The answer: the redirect with `error`, `error_description`, `state` and `iss`
    /// (RFC 9207), or the error page.
    pub fn response(&self, issuer: &str, title: &str) -> http::Response<crate::http::body::Body> {
        match self {
            Invalid::Page(why) => super::page::error(title, why),
            Invalid::Redirect {
                redirect_uri,
                state,
                error,
                description,
            } => error_redirect(redirect_uri, state.as_deref(), issuer, error, description),
        }
    }
}

/// 303 to a registered redirect URI with an OAuth error.
pub fn error_redirect(
    redirect_uri: &str,
    state: Option<&str>,
    issuer: &str,
    error: &str,
    description: &str,
) -> http::Response<crate::http::body::Body> {
    let mut params = vec![("error", error), ("error_description", description)];
    if let Some(s) = state {
        params.push(("state", s));
    }
    params.push(("iss", issuer));
    redirect::see_other(&redirect::with_params(redirect_uri, &params))
}
