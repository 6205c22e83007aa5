//! The authorization code flow with PKCE and the hosted login page, driven over real
//! sockets the way a browser and a client library drive it (form posts, cookies,
//! redirects read from `Location`): sign-in, the ID token, userinfo, refresh, single
//! sign-on, prompt=none, consent, logout, and the hostile cases of the issue.

mod common;

use base64::Engine;
use common::spawn_gateway;
use serde_json::Value;
use sha2::{Digest, Sha256};

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const REDIRECT: &str = "http://127.0.0.1:9/cb";

struct Env {
    gw: common::TestGateway,
    issuer: String,
    /// The gateway's store, for tests that move a session's clock back.
    db: String,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/signin.db", dir.path().display());
    // The issuer is the gateway's own address: a free port, then the config.
    let port = common::free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let store = tollgate::store::connect(&url).await.unwrap();
    common::seed::user(
        &*store,
        Some("ann"),
        "ann@example.com",
        "ann-password-1",
        "default",
    )
    .await;
    for (id, first_party) in [("app", true), ("partner", false)] {
        store
            .create_client(tollgate::store::Client {
                id: id.into(),
                grants: vec!["authorization_code".into(), "refresh_token".into()],
                redirect_uris: vec![REDIRECT.into()],
                post_logout_redirect_uris: vec!["http://127.0.0.1:9/bye".into()],
                first_party,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    common::seed::client(&*store, "legacy", None, &["password"], &[]).await;
    drop(store);
    let gw = spawn_gateway(&format!(
        "listen:\n  http: 127.0.0.1:{port}\n  admin: 127.0.0.1:0\nstore:\n  url: {url}\n\
         tokens:\n  issuer: {issuer}\n  audience: tollgate\n"
    ))
    .await;
    std::mem::forget(dir);
    Env {
        gw,
        issuer,
        db: url,
    }
}

/// A browser: keeps cookies, never follows redirects (the test reads them).
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
}

fn authorize_url(e: &Env, client: &str, extra: &str) -> String {
    format!(
        "{}/oauth/authorize?response_type=code&client_id={client}&redirect_uri={}&scope=openid%20email%20profile&state=st-1&nonce=n-1&code_challenge={CHALLENGE}&code_challenge_method=S256{extra}",
        e.issuer,
        urlencode(REDIRECT)
    )
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The hidden fields and the action of the one form on a page.
fn form_fields(html: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for part in html.split("<input type=\"hidden\" ").skip(1) {
        let name = part
            .split("name=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let value = part
            .split("value=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let value = value
            .replace("&amp;", "&")
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&#39;", "'");
        out.push((name.to_string(), value));
    }
    out
}

fn location(resp: &reqwest::Response) -> url::Url {
    url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap()
}

fn param(u: &url::Url, name: &str) -> Option<String> {
    u.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

async fn login(
    b: &reqwest::Client,
    e: &Env,
    page: &str,
    user: &str,
    pw: &str,
) -> reqwest::Response {
    let mut fields = form_fields(page);
    fields.push(("username".into(), user.into()));
    fields.push(("password".into(), pw.into()));
    b.post(format!("{}/oauth/authorize/login", e.issuer))
        .form(&fields)
        .send()
        .await
        .unwrap()
}

/// Signs in through the login page; the code.
async fn sign_in(b: &reqwest::Client, e: &Env) -> String {
    let resp = b.get(authorize_url(e, "app", "")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let page = resp.text().await.unwrap();
    let resp = login(b, e, &page, "ann", "ann-password-1").await;
    assert_eq!(resp.status(), 303);
    let loc = location(&resp);
    assert_eq!(loc.as_str().split('?').next().unwrap(), REDIRECT);
    assert_eq!(param(&loc, "state").as_deref(), Some("st-1"));
    assert_eq!(param(&loc, "iss").as_deref(), Some(e.issuer.as_str()));
    param(&loc, "code").unwrap()
}

async fn redeem(
    e: &Env,
    client: &str,
    code: &str,
    verifier: &str,
    redirect: &str,
) -> reqwest::Response {
    common::client()
        .post(format!("{}/oauth/token", e.issuer))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_id", client),
            ("redirect_uri", redirect),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap()
}

use common::jwt_claims;

#[tokio::test]
async fn the_code_flow_signs_in_with_an_id_token_userinfo_and_refresh() {
    let e = env().await;
    let b = browser();
    let page = b.get(authorize_url(&e, "app", "")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let h = page.headers().clone();
    assert!(h["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["cache-control"], "no-store");
    let html = page.text().await.unwrap();
    assert_eq!(html.matches("<form method=\"post\"").count(), 1);
    assert!(html.contains("<input name=\"username\""));
    assert!(html.contains("name=\"password\" type=\"password\""));

    let code = {
        let resp = login(&b, &e, &html, "ann", "ann-password-1").await;
        assert_eq!(resp.status(), 303);
        param(&location(&resp), "code").unwrap()
    };
    let resp = redeem(&e, "app", &code, VERIFIER, REDIRECT).await;
    let status = resp.status();
    let tokens: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{tokens}");
    let id = jwt_claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["iss"], e.issuer.as_str());
    assert_eq!(id["aud"], "app");
    assert_eq!(id["azp"], "app");
    assert_eq!(id["nonce"], "n-1");
    assert_eq!(id["amr"], serde_json::json!(["pwd"]));
    assert!(id["auth_time"].as_i64().unwrap() > 0);
    let at = tokens["access_token"].as_str().unwrap();
    let digest = Sha256::digest(at.as_bytes());
    assert_eq!(
        id["at_hash"],
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16])
    );

    let info: Value = common::client()
        .get(format!("{}/oauth/userinfo", e.issuer))
        .bearer_auth(at)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["sub"], id["sub"]);
    assert_eq!(info["email"], "ann@example.com");
    assert_eq!(info["preferred_username"], "ann");

    let resp = common::client()
        .post(format!("{}/oauth/token", e.issuer))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ("client_id", "app"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Single sign-on: a second authorization in this browser needs no password.
    let resp = b.get(authorize_url(&e, "app", "")).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    assert!(param(&location(&resp), "code").is_some());
    // prompt=login asks again.
    let resp = b
        .get(authorize_url(&e, "app", "&prompt=login"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn discovery_describes_the_code_flow() {
    let e = env().await;
    let d: Value = common::client()
        .get(format!("{}/.well-known/openid-configuration", e.issuer))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        d["authorization_endpoint"],
        format!("{}/oauth/authorize", e.issuer)
    );
    assert_eq!(
        d["userinfo_endpoint"],
        format!("{}/oauth/userinfo", e.issuer)
    );
    assert_eq!(
        d["end_session_endpoint"],
        format!("{}/oauth/logout", e.issuer)
    );
    assert_eq!(d["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(
        d["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(d["authorization_response_iss_parameter_supported"], true);
    // Only what some client can use: no client here has client_credentials; the
    // legacy client keeps the password grant advertised.
    assert_eq!(
        d["grant_types_supported"],
        serde_json::json!(["authorization_code", "refresh_token", "password"])
    );
}

#[tokio::test]
async fn wrong_credentials_get_one_message_and_the_form_again() {
    let e = env().await;
    let b = browser();
    let html = b
        .get(authorize_url(&e, "app", ""))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let bad_pw = login(&b, &e, &html, "ann", "wrong").await;
    assert_eq!(bad_pw.status(), 401);
    let bad_pw = bad_pw.text().await.unwrap();
    let bad_user = login(&b, &e, &html, "nobody", "wrong")
        .await
        .text()
        .await
        .unwrap();
    assert!(bad_pw.contains("The username or password is incorrect."));
    let strip = |s: &str| {
        s.split("value=\"")
            .map(|p| p.split('"').nth(1).unwrap_or(""))
            .collect::<String>()
    };
    assert_eq!(
        strip(&bad_pw),
        strip(&bad_user),
        "the same answer for either mistake"
    );
}

#[tokio::test]
async fn codes_are_single_use_bound_and_need_the_verifier() {
    let e = env().await;
    let b = browser();
    // Wrong verifier, another client, another redirect URI: refused, and the code is
    // still unspent after each.
    let code = sign_in(&b, &e).await;
    let other = "x".repeat(43);
    assert_eq!(
        redeem(&e, "app", &code, &other, REDIRECT).await.status(),
        400
    );
    assert_eq!(
        redeem(&e, "partner", &code, VERIFIER, REDIRECT)
            .await
            .status(),
        400
    );
    assert_eq!(
        redeem(&e, "app", &code, VERIFIER, "http://127.0.0.1:9/other")
            .await
            .status(),
        400
    );
    let resp = common::client()
        .post(format!("{}/oauth/token", e.issuer))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("client_id", "app"),
            ("redirect_uri", REDIRECT),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400, "a missing verifier");
    // Redeemed once; the replay is refused and revokes what the code issued.
    let resp = redeem(&e, "app", &code, VERIFIER, REDIRECT).await;
    assert_eq!(resp.status(), 200);
    let tokens: Value = resp.json().await.unwrap();
    let replay = redeem(&e, "app", &code, VERIFIER, REDIRECT).await;
    assert_eq!(replay.status(), 400);
    let body: Value = replay.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
    let refresh = common::client()
        .post(format!("{}/oauth/token", e.issuer))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ("client_id", "app"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        refresh.status(),
        400,
        "the replayed code's refresh token is revoked"
    );
}

#[tokio::test]
async fn bad_clients_and_redirects_get_a_page_never_a_redirect() {
    let e = env().await;
    let b = browser();
    let base = |client: &str, redirect: &str| {
        format!(
            "{}/oauth/authorize?response_type=code&client_id={client}&redirect_uri={}&code_challenge={CHALLENGE}&code_challenge_method=S256",
            e.issuer,
            urlencode(redirect)
        )
    };
    for (client, redirect) in [
        ("nobody", REDIRECT),
        ("app", "http://127.0.0.1:9/cb/extra"),
        ("app", "http://127.0.0.1:9/cb?x=1"),
        ("app", "http://127.0.0.1:9/cb#frag"),
        ("app", "http://user@127.0.0.1:9/cb"),
        ("app", "http://127.0.0.1:10/cb"),
        ("app", "javascript:alert(1)//"),
        ("app", "HTTP://127.0.0.1:9/cb"),
    ] {
        let resp = b.get(base(client, redirect)).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{client} {redirect}");
        assert!(resp.headers().get("location").is_none(), "{redirect}");
    }
    // A known redirect with other mistakes goes back with the error.
    let resp = b
        .get(authorize_url(&e, "app", "").replace("S256", "plain"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let loc = location(&resp);
    assert_eq!(param(&loc, "error").as_deref(), Some("invalid_request"));
    assert_eq!(param(&loc, "state").as_deref(), Some("st-1"));
    assert_eq!(param(&loc, "iss").as_deref(), Some(e.issuer.as_str()));
    // prompt=none without a session.
    let resp = b
        .get(authorize_url(&e, "app", "&prompt=none"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        param(&location(&resp), "error").as_deref(),
        Some("login_required")
    );
}

#[tokio::test]
async fn the_login_form_refuses_cross_site_posts() {
    let e = env().await;
    let b = browser();
    let html = b
        .get(authorize_url(&e, "app", ""))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut fields = form_fields(&html);
    // Another site's page can post the form but cannot read the CSRF cookie.
    let stranger = browser();
    fields.push(("username".into(), "ann".into()));
    fields.push(("password".into(), "ann-password-1".into()));
    let resp = stranger
        .post(format!("{}/oauth/authorize/login", e.issuer))
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    for f in fields.iter_mut().filter(|(k, _)| k == "csrf") {
        f.1 = "x".repeat(43);
    }
    let resp = b
        .post(format!("{}/oauth/authorize/login", e.issuer))
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

#[tokio::test]
async fn third_party_clients_ask_for_consent() {
    let e = env().await;
    let b = browser();
    sign_in(&b, &e).await;
    let resp = b
        .get(authorize_url(&e, "partner", ""))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let html = resp.text().await.unwrap();
    assert!(html.contains("name=\"consent\" value=\"allow\""));
    let mut fields = form_fields(&html);
    fields.push(("consent".into(), "deny".into()));
    let resp = b
        .post(format!("{}/oauth/authorize/consent", e.issuer))
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(
        param(&location(&resp), "error").as_deref(),
        Some("access_denied")
    );
    let mut fields = form_fields(&html);
    fields.push(("consent".into(), "allow".into()));
    let resp = b
        .post(format!("{}/oauth/authorize/consent", e.issuer))
        .form(&fields)
        .send()
        .await
        .unwrap();
    let code = param(&location(&resp), "code").unwrap();
    assert_eq!(
        redeem(&e, "partner", &code, VERIFIER, REDIRECT)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn logout_ends_the_session_and_revokes_its_refresh_tokens() {
    let e = env().await;
    let b = browser();
    let code = sign_in(&b, &e).await;
    let tokens: Value = redeem(&e, "app", &code, VERIFIER, REDIRECT)
        .await
        .json()
        .await
        .unwrap();
    let resp = b
        .get(format!(
            "{}/oauth/logout?client_id=app&post_logout_redirect_uri={}&state=bye-1",
            e.issuer,
            urlencode("http://127.0.0.1:9/bye")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(
        resp.headers()["location"],
        "http://127.0.0.1:9/bye?state=bye-1"
    );
    // The session is gone: a password is needed again, and prompt=none says so.
    let resp = b
        .get(authorize_url(&e, "app", "&prompt=none"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        param(&location(&resp), "error").as_deref(),
        Some("login_required")
    );
    let refresh = common::client()
        .post(format!("{}/oauth/token", e.issuer))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ("client_id", "app"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refresh.status(), 400);
    // An unregistered post-logout URI is never followed.
    let resp = b
        .get(format!(
            "{}/oauth/logout?client_id=app&post_logout_redirect_uri={}",
            e.issuer,
            urlencode("https://evil.example/")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("location").is_none());
}

/// The session cookie a browser held, replayed by hand after logout, signs no one in.
#[tokio::test]
async fn a_session_cookie_replayed_after_logout_is_dead() {
    let e = env().await;
    let b = browser();
    let html = b
        .get(authorize_url(&e, "app", ""))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let resp = login(&b, &e, &html, "ann", "ann-password-1").await;
    assert_eq!(resp.status(), 303);
    let cookie = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("tollgate_session="))
        .unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    let replay = |pair: String| {
        let url = authorize_url(&e, "app", "&prompt=none");
        async move {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap()
                .get(url)
                .header("cookie", pair)
                .send()
                .await
                .unwrap()
        }
    };
    let before = replay(pair.clone()).await;
    assert!(
        param(&location(&before), "code").is_some(),
        "the cookie signs in before logout"
    );
    b.get(format!("{}/oauth/logout", e.issuer))
        .send()
        .await
        .unwrap();
    let after = replay(pair).await;
    assert_eq!(
        param(&location(&after), "error").as_deref(),
        Some("login_required")
    );
}

#[tokio::test]
async fn a_client_without_the_password_grant_is_refused_it() {
    let e = env().await;
    let resp = common::client()
        .post(format!("{}/oauth/token", e.issuer))
        .form(&[
            ("grant_type", "password"),
            ("username", "ann"),
            ("password", "ann-password-1"),
            ("client_id", "app"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized_client");
    // A legacy client that names it still signs in, and is counted.
    let resp = common::client()
        .post(format!("{}/oauth/token", e.issuer))
        .form(&[
            ("grant_type", "password"),
            ("username", "ann"),
            ("password", "ann-password-1"),
            ("client_id", "legacy"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = common::scrape(&e.gw.admin).await;
    assert!(
        text.contains(r#"tollgate_password_grants_total{client="legacy",dialect="/oauth/token"}"#),
        "{text}"
    );
}

/// Moves every stored browser session's clocks back by `secs`: `field` is `last_seen`
/// (the idle clock) or `auth_time` (what `max_age` reads); `expires` moves the absolute
/// end too. The test then asks the gateway what it makes of that session, no sleeping.
async fn age_sessions(e: &Env, field: &str, secs: i64, expires: bool) {
    use sqlx::Connection;
    let mut db = sqlx::SqliteConnection::connect(&e.db).await.unwrap();
    let moved = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE signin_state SET payload = json_set(payload, '$.{field}', \
         json_extract(payload, '$.{field}') - ?1), \
         expires_at = CASE WHEN ?2 THEN expires_at - ?1 * 1000000 ELSE expires_at END \
         WHERE kind = 'session'"
    )))
    .bind(secs)
    .bind(expires)
    .execute(&mut db)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(moved, 1, "one session to age");
}

/// What `GET /oauth/authorize` does with the browser's session: a code (303 to the
/// client), or the login page (200).
async fn authorize_status(b: &reqwest::Client, e: &Env, extra: &str) -> u16 {
    b.get(authorize_url(e, "app", extra))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_session_ends_after_the_idle_timeout() {
    let e = env().await;
    let b = browser();
    sign_in(&b, &e).await;
    assert_eq!(authorize_status(&b, &e, "").await, 303, "single sign-on");
    // Used a minute ago: still live (and the use restarts the idle clock).
    age_sessions(&e, "last_seen", 60, false).await;
    assert_eq!(authorize_status(&b, &e, "").await, 303);
    // Unused for longer than login.session.idle (8h by default): a password again.
    age_sessions(&e, "last_seen", 8 * 3600 + 1, false).await;
    assert_eq!(authorize_status(&b, &e, "").await, 200);
    let resp = b
        .get(authorize_url(&e, "app", "&prompt=none"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        param(&location(&resp), "error").as_deref(),
        Some("login_required")
    );
}

#[tokio::test]
async fn a_session_ends_at_the_absolute_timeout_however_busy() {
    let e = env().await;
    let b = browser();
    sign_in(&b, &e).await;
    // Signed in 7 days ago and used all along (last_seen is now): past
    // login.session.absolute, so it is over.
    age_sessions(&e, "auth_time", 7 * 24 * 3600 + 1, true).await;
    assert_eq!(authorize_status(&b, &e, "").await, 200);
}

#[tokio::test]
async fn max_age_asks_for_the_password_when_the_sign_in_is_older() {
    let e = env().await;
    let b = browser();
    sign_in(&b, &e).await;
    age_sessions(&e, "auth_time", 120, false).await;
    // Signed in two minutes ago: fine for max_age=3600, too old for max_age=60.
    assert_eq!(authorize_status(&b, &e, "&max_age=3600").await, 303);
    assert_eq!(authorize_status(&b, &e, "&max_age=60").await, 200);
    // prompt=login always shows the form, whatever the session's age.
    assert_eq!(authorize_status(&b, &e, "&prompt=login").await, 200);
    // With prompt=none, a sign-in too old for max_age is login_required, never a code.
    let resp = b
        .get(authorize_url(&e, "app", "&max_age=60&prompt=none"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(
        param(&location(&resp), "error").as_deref(),
        Some("login_required")
    );
    // Signing in again with max_age: the ID token's auth_time is the new sign-in.
    let page = b
        .get(authorize_url(&e, "app", "&max_age=60"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let resp = login(&b, &e, &page, "ann", "ann-password-1").await;
    let code = param(&location(&resp), "code").unwrap();
    let tokens: Value = redeem(&e, "app", &code, VERIFIER, REDIRECT)
        .await
        .json()
        .await
        .unwrap();
    let id = jwt_claims(tokens["id_token"].as_str().unwrap());
    let now = chrono::Utc::now().timestamp();
    assert!((now - id["auth_time"].as_i64().unwrap()).abs() < 30, "{id}");
}

#[tokio::test]
async fn a_code_bound_to_a_dpop_key_is_redeemed_only_with_a_proof_by_it() {
    let e = env().await;
    let b = browser();
    let key = common::dpop::DpopKey::new();
    let resp = b
        .get(authorize_url(
            &e,
            "app",
            &format!("&dpop_jkt={}", key.jkt()),
        ))
        .send()
        .await
        .unwrap();
    let page = resp.text().await.unwrap();
    let resp = login(&b, &e, &page, "ann", "ann-password-1").await;
    let code = param(&location(&resp), "code").unwrap();
    let token_url = format!("{}/oauth/token", e.issuer);
    let redeem_with = |proof: Option<String>| {
        let mut req = common::client().post(&token_url).form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("client_id", "app"),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ]);
        if let Some(p) = proof {
            req = req.header("DPoP", p);
        }
        async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    // No proof, or a proof by another key: refused, and the code is not spent.
    let (s, body) = redeem_with(None).await;
    assert_eq!((s, body["error"].as_str()), (400, Some("invalid_grant")));
    let other = common::dpop::DpopKey::new();
    let (s, body) = redeem_with(Some(other.proof("POST", &token_url, None))).await;
    assert_eq!((s, body["error"].as_str()), (400, Some("invalid_grant")));
    // The bound key: a DPoP-bound token.
    let (s, body) = redeem_with(Some(key.proof("POST", &token_url, None))).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    assert_eq!(
        jwt_claims(body["access_token"].as_str().unwrap())["cnf"]["jkt"],
        key.jkt()
    );
}
