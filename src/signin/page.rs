//! The hosted pages: login, consent, signed out, and errors. Server-rendered HTML that
//! works without JavaScript; every value written into it is escaped; never framed, never
//! cached; branded by `login.title`, `login.logo_url` and `login.css_file`.

use http::{header, HeaderValue, Response, StatusCode};

use crate::config::raw::Login;
use crate::http::body::{self, Body};

/// Where the operator's CSS is served (under `/oauth/authorize/`, Tollgate's own).
pub const CSS_PATH: &str = "/oauth/authorize/login.css";

/// HTML-escapes text for element content and quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn document(login: &Login, title: &str, main: &str) -> String {
    let css = if login.css_file.is_some() {
        format!(r#"<link rel="stylesheet" href="{CSS_PATH}">"#)
    } else {
        String::new()
    };
    let logo = login
        .logo_url
        .as_deref()
        .map(|u| format!(r#"<img class="logo" src="{}" alt="">"#, esc(u)))
        .unwrap_or_default();
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t}</title>{css}</head>\n<body><main>{logo}<h1>{t}</h1>\n{main}</main></body></html>\n",
        t = esc(title)
    )
}

/// The headers every hosted page carries: no framing (clickjacking), no caching, no
/// script, no referrer leaking the authorization request.
pub fn html(status: StatusCode, text: String) -> Response<Body> {
    let mut resp = Response::new(body::full(text));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' https:; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// The login form. `request` is the authorization request's query string, carried back
/// and checked again on submit; `csrf` matches the browser's CSRF cookie.
pub fn login(
    login: &Login,
    request: &str,
    csrf: &str,
    hint: Option<&str>,
    error: Option<&str>,
) -> Response<Body> {
    let error = error
        .map(|e| format!(r#"<p class="error" role="alert">{}</p>"#, esc(e)))
        .unwrap_or_default();
    let main = format!(
        r#"{error}<form method="post" action="/oauth/authorize/login">
<input type="hidden" name="request" value="{request}">
<input type="hidden" name="csrf" value="{csrf}">
<label>Username or email <input name="username" autocomplete="username" required value="{hint}"></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button>
</form>"#,
        request = esc(request),
        csrf = esc(csrf),
        hint = esc(hint.unwrap_or("")),
    );
    html(StatusCode::OK, document(login, &login.title, &main))
}

/// The consent screen of a third-party client.
pub fn consent(
    login: &Login,
    client_id: &str,
    scope: &str,
    request: &str,
    csrf: &str,
) -> Response<Body> {
    let scopes: String = scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(|s| format!("<li>{}</li>", esc(s)))
        .collect();
    let main = format!(
        r#"<p><strong>{client}</strong> asks to sign you in{with}</p><ul>{scopes}</ul>
<form method="post" action="/oauth/authorize/consent">
<input type="hidden" name="request" value="{request}">
<input type="hidden" name="csrf" value="{csrf}">
<button type="submit" name="consent" value="allow">Allow</button>
<button type="submit" name="consent" value="deny">Deny</button>
</form>"#,
        client = esc(client_id),
        with = if scopes.is_empty() { "." } else { " with:" },
        request = esc(request),
        csrf = esc(csrf),
    );
    html(StatusCode::OK, document(login, &login.title, &main))
}

/// After logout, when there is nowhere registered to go.
pub fn signed_out(login: &Login) -> Response<Body> {
    html(
        StatusCode::OK,
        document(login, &login.title, "<p>You are signed out.</p>"),
    )
}

/// A request that cannot go back to its client: said here, never redirected.
pub fn error(title: &str, why: &str) -> Response<Body> {
    let login = Login::default();
    html(
        StatusCode::BAD_REQUEST,
        document(
            &login,
            title,
            &format!(r#"<p class="error" role="alert">{}</p>"#, esc(why)),
        ),
    )
}
