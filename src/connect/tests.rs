use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;

use super::cipher::{CipherError, TokenCipher};
use super::*;
use crate::authn::{AuthnFuture, Identity as Caller};
use crate::config::provider::{Preset, ResolvedProvider};
use crate::config::raw::Provider;
use crate::http::error::ErrorResponse;
use crate::http::redirect::{check, with_params, AllowedRedirect};
use crate::store::{ConnectState, LinkedIdentity, NewUser, StoreError, StoreFuture, User};

// ---------- fakes ----------

#[derive(Default)]
struct FakeStore {
    users: Mutex<Vec<User>>,
    identities: Mutex<Vec<LinkedIdentity>>,
    states: Mutex<HashMap<String, ConnectState>>,
}

impl FakeStore {
    fn with_users(ids: &[i64]) -> Arc<FakeStore> {
        let s = FakeStore::default();
        for id in ids {
            s.users.lock().unwrap().push(User {
                id: UserId(*id),
                username: None,
                email: format!("u{id}@example.com"),
                password_hash: String::new(),
                role: "default".into(),
                created_at: chrono::Utc::now(),
                updated_at: chrono::Utc::now(),
            });
        }
        Arc::new(s)
    }
}

impl UserStore for FakeStore {
    fn create_user(&self, _u: NewUser) -> StoreFuture<'_, User> {
        Box::pin(async { Err(StoreError::Other("unused".into())) })
    }
    fn user_by_id(&self, id: UserId) -> StoreFuture<'_, Option<User>> {
        let u = self
            .users
            .lock()
            .unwrap()
            .iter()
            .find(|u| u.id == id)
            .cloned();
        Box::pin(async move { Ok(u) })
    }
    fn user_by_email(&self, _e: &str) -> StoreFuture<'_, Option<User>> {
        Box::pin(async { Ok(None) })
    }
    fn user_by_username(&self, _u: &str) -> StoreFuture<'_, Option<User>> {
        Box::pin(async { Ok(None) })
    }
    fn set_password_hash(&self, _id: UserId, _h: &str) -> StoreFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
}

impl IdentityStore for FakeStore {
    fn link_identity(&self, i: LinkedIdentity) -> StoreFuture<'_, ()> {
        let mut all = self.identities.lock().unwrap();
        let r = if all.iter().any(|x| {
            x.provider == i.provider
                && x.provider_user_id == i.provider_user_id
                && x.user_id != i.user_id
        }) {
            Err(StoreError::Conflict(crate::store::Unique::Identity))
        } else {
            all.retain(|x| !(x.user_id == i.user_id && x.provider == i.provider));
            all.push(i);
            Ok(())
        };
        Box::pin(async move { r })
    }
    fn identities_of(&self, user: UserId) -> StoreFuture<'_, Vec<LinkedIdentity>> {
        let v = self
            .identities
            .lock()
            .unwrap()
            .iter()
            .filter(|i| i.user_id == user)
            .cloned()
            .collect();
        Box::pin(async move { Ok(v) })
    }
    fn unlink_identity(&self, user: UserId, provider: &str) -> StoreFuture<'_, bool> {
        let mut all = self.identities.lock().unwrap();
        let before = all.len();
        all.retain(|x| !(x.user_id == user && x.provider == provider));
        let removed = all.len() != before;
        Box::pin(async move { Ok(removed) })
    }
}

impl ConnectStateStore for FakeStore {
    fn put_connect_state(&self, s: ConnectState) -> StoreFuture<'_, ()> {
        self.states.lock().unwrap().insert(s.state_hash.clone(), s);
        Box::pin(async { Ok(()) })
    }
    fn take_connect_state(&self, h: &str) -> StoreFuture<'_, Option<ConnectState>> {
        let s = self.states.lock().unwrap().remove(h);
        Box::pin(async move { Ok(s) })
    }
}

/// Tokens `t{id}` are user `id`; `admin` is user 99 with role admin; `client` is a
/// client_credentials token; anything else is invalid.
struct FakeAuthn;

impl Authenticator for FakeAuthn {
    fn authenticate<'a>(&'a self, token: &'a str) -> AuthnFuture<'a> {
        Box::pin(async move {
            let id = match token {
                "admin" => Caller {
                    user_id: "99".into(),
                    email: Some("u99@example.com".into()),
                    role: Some("admin".into()),
                    ..Default::default()
                },
                // Claims to be admin, but the store says user 8 is not.
                "fake-admin" => Caller {
                    user_id: "8".into(),
                    email: Some("u8@example.com".into()),
                    role: Some("admin".into()),
                    ..Default::default()
                },
                "client" => Caller {
                    user_id: "svc".into(),
                    client_id: Some("svc".into()),
                    ..Default::default()
                },
                // client_credentials for a client whose id looks like user 7's.
                "client7" => Caller {
                    user_id: "7".into(),
                    client_id: Some("7".into()),
                    ..Default::default()
                },
                t if t.starts_with('t') && t[1..].parse::<i64>().is_ok() => Caller {
                    user_id: t[1..].into(),
                    email: Some(format!("u{}@example.com", &t[1..])),
                    client_id: Some("web".into()),
                    role: Some("default".into()),
                    ..Default::default()
                },
                _ => return Err(AuthnError::Invalid("unknown".into())),
            };
            Ok(Arc::new(id))
        })
    }
}

const YAML: &str = r#"
listen: { http: "127.0.0.1:0", admin: null }
tokens: { issuer: "https://gw.example.com/" }
providers:
  facebook:
    client_id: "668664849828937"
    allowed_redirect_uris: ["https://app.example.com/connect", "http://127.0.0.1:5000/done?x=1"]
  corp:
    preset: generic
    client_id: corp-app
    authorize_url: https://idp.example.com/authorize?tenant=7
    token_url: https://idp.example.com/token
    userinfo_url: https://idp.example.com/userinfo
    allowed_redirect_uris: ["https://app.example.com/"]
"#;

fn config() -> Config {
    Config::from_yaml_with_env(YAML, None).expect("test config is valid")
}

fn connect(store: &Arc<FakeStore>, with_key: bool) -> Connect {
    let stores = ConnectStores {
        users: store.clone(),
        identities: store.clone(),
        states: store.clone(),
    };
    if with_key {
        Connect::with_cipher(&config(), stores, TokenCipher::new(&[7u8; 32]))
    } else {
        Connect::new(&config(), stores)
    }
}

async fn text(resp: Response<Body>) -> String {
    String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

fn location(resp: &Response<Body>) -> url::Url {
    url::Url::parse(resp.headers()[header::LOCATION].to_str().unwrap()).unwrap()
}

fn param(u: &url::Url, name: &str) -> Option<String> {
    u.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn q(redirect: &str, token: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("redirect_uri", redirect)
        .append_pair("oauth_token", token)
        .finish()
}

async fn dialog(c: &Connect, provider: &str, query: &str) -> Response<Body> {
    c.dialog(
        &config(),
        &FakeAuthn,
        provider,
        &HeaderMap::new(),
        Some(query),
    )
    .await
    .unwrap_or_else(|e| e.response())
}

async fn callback(c: &Connect, query: &str) -> Response<Body> {
    c.callback(&config(), "facebook", &HeaderMap::new(), Some(query))
        .await
        .unwrap_or_else(|e| e.response())
}

// ---------- allow-list ----------

#[test]
fn redirect_allow_list_matches_exact_or_on_a_path_boundary() {
    let allowed = vec![
        AllowedRedirect::parse("https://app.example.com/connect").unwrap(),
        AllowedRedirect::parse("https://other.example.com/cb?client=1").unwrap(),
    ];
    let ok = |u: &str| check(&allowed, u).map(|u| u.to_string());
    assert_eq!(
        ok("https://app.example.com/connect").as_deref(),
        Some("https://app.example.com/connect")
    );
    assert!(ok("https://app.example.com/connect/done?x=1").is_some());
    assert!(
        ok("https://APP.example.com:443/connect").is_some(),
        "host case and default port normalise"
    );
    assert!(
        ok("https://app.example.com/connectX").is_none(),
        "not on a segment boundary"
    );
    assert!(ok("https://app.example.com/other").is_none());
    assert!(
        ok("https://app.example.com/connect/../admin").is_none(),
        "dot segments resolve first"
    );
    assert!(
        ok("https://app.example.com/connect/%2e%2e/admin").is_none(),
        "encoded dot segments too"
    );
    assert!(ok("https://app.example.com/connect\\..\\admin").is_none());
    assert!(
        ok("http://app.example.com/connect").is_none(),
        "scheme must match"
    );
    assert!(
        ok("https://app.example.com:8443/connect").is_none(),
        "port must match"
    );
    assert!(ok("https://app.example.com.evil.com/connect").is_none());
    assert!(ok("https://app.example.com@evil.com/connect").is_none());
    assert!(
        ok("https://user@app.example.com/connect").is_none(),
        "no credentials"
    );
    assert!(ok("//evil.com/connect").is_none());
    assert!(ok("javascript:alert(1)").is_none());
    assert!(ok("https://app.example.com/connect\n").is_none());
    // An entry with a query matches only exactly.
    assert!(ok("https://other.example.com/cb?client=1").is_some());
    assert!(ok("https://other.example.com/cb?client=2").is_none());
    assert!(ok("https://other.example.com/cb/x?client=1").is_none());
}

#[test]
fn root_entry_allows_the_whole_origin() {
    let allowed = vec![AllowedRedirect::parse("https://app.example.com").unwrap()];
    assert!(check(&allowed, "https://app.example.com/anything/here").is_some());
    assert!(check(&allowed, "https://app.example.com.evil.com/").is_none());
}

#[test]
fn outcome_params_keep_existing_query_and_fragment() {
    let base = url::Url::parse("https://app.example.com/cb?x=1#top").unwrap();
    assert_eq!(
        with_params(&base, &[("status", "connected"), ("provider", "facebook")]),
        "https://app.example.com/cb?x=1&status=connected&provider=facebook#top"
    );
}

// ---------- providers ----------

fn provider(yaml: &str) -> Provider {
    serde_yaml::from_str(yaml).unwrap()
}

#[test]
fn presets_fill_urls_scopes_and_fields() {
    let p = provider("client_id: x\nallowed_redirect_uris: [https://a.example.com/]");
    let fb = ResolvedProvider::resolve("facebook", &p, "https://auth.example.com").unwrap();
    assert_eq!(fb.preset, Preset::Facebook);
    assert_eq!(
        fb.authorize_url.as_str(),
        "https://www.facebook.com/dialog/oauth"
    );
    assert_eq!(fb.scope, vec!["public_profile", "email"]);
    assert_eq!(fb.id_fields, ["id"]);
    let gh = ResolvedProvider::resolve("github", &p, "https://auth.example.com").unwrap();
    assert_eq!(
        gh.token_url.as_str(),
        "https://github.com/login/oauth/access_token"
    );
    let g = ResolvedProvider::resolve("google", &p, "https://auth.example.com").unwrap();
    assert_eq!(g.id_fields, ["sub"]);
    assert!(g.scope.contains(&"openid".to_string()));
    // A preset named explicitly under another key.
    let p2 =
        provider("preset: github\nclient_id: x\nallowed_redirect_uris: [https://a.example.com/]");
    assert_eq!(
        ResolvedProvider::resolve("gh-enterprise", &p2, "https://auth.example.com")
            .unwrap()
            .preset,
        Preset::Github
    );
}

#[test]
fn provider_problems_are_all_reported() {
    let p = provider(
        "preset: myspace\nclient_id: ''\nauthorize_url: http://idp.example.com/a\nallowed_redirect_uris: ['ftp://x']",
    );
    let problems = ResolvedProvider::resolve("Bad Name", &p, "https://auth.example.com")
        .unwrap_err()
        .join("\n");
    for want in [
        "providers.Bad Name: the provider name",
        "providers.Bad Name.preset: unknown preset `myspace`",
        "providers.Bad Name.client_id: must be set",
        "providers.Bad Name.authorize_url: `http://idp.example.com/a` must use https",
        "providers.Bad Name.token_url: must be set for a generic provider",
        "providers.Bad Name.allowed_redirect_uris[0]: `ftp://x` must be an https URL",
    ] {
        assert!(problems.contains(want), "missing {want:?} in:\n{problems}");
    }
    let none = provider("client_id: x\nallowed_redirect_uris: []");
    assert!(
        ResolvedProvider::resolve("facebook", &none, "https://auth.example.com").unwrap_err()[0]
            .contains("allowed_redirect_uris: empty")
    );
}

#[test]
fn loopback_http_is_allowed_for_development() {
    let p = provider(
        "client_id: x\nauthorize_url: http://127.0.0.1:9/a\ntoken_url: http://localhost:9/t\nuserinfo_url: http://[::1]:9/u\nallowed_redirect_uris: [http://127.0.0.1:3000/]",
    );
    assert!(ResolvedProvider::resolve("local", &p, "https://auth.example.com").is_ok());
}

#[test]
fn config_validation_rejects_bad_providers() {
    let err = Config::from_yaml_with_env(
        "listen: { http: '127.0.0.1:0' }\nproviders:\n  facebook:\n    preset: nope\n    client_id: x\n    allowed_redirect_uris: [https://a.example.com/]\n",
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("providers.facebook.preset: unknown preset `nope`"),
        "{err}"
    );
    let err = Config::from_yaml_with_env(
        "listen: { http: '127.0.0.1:0' }\ntokens: { issuer: 'http://gw.example.com' }\nproviders:\n  facebook:\n    client_id: x\n    allowed_redirect_uris: [https://a.example.com/]\n",
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("tokens.issuer: `http://gw.example.com` must use https"),
        "{err}"
    );
}

// ---------- cipher ----------

#[test]
fn cipher_round_trips_and_binds_to_its_row() {
    let c = TokenCipher::new(&[1u8; 32]);
    let sealed = c.seal(b"secret", b"facebook\x00123");
    assert!(!sealed.windows(6).any(|w| w == b"secret"));
    assert_eq!(&c.open(&sealed, b"facebook\x00123").unwrap()[..], b"secret");
    assert_eq!(
        c.open(&sealed, b"facebook\x00124").unwrap_err(),
        CipherError::Decrypt
    );
    assert_eq!(
        TokenCipher::new(&[2u8; 32])
            .open(&sealed, b"facebook\x00123")
            .unwrap_err(),
        CipherError::Decrypt
    );
    assert_ne!(
        c.seal(b"secret", b""),
        c.seal(b"secret", b""),
        "fresh nonce per message"
    );
    let t = c.seal_text("verifier", b"h");
    assert_eq!(&*c.open_text(&t, b"h").unwrap(), "verifier");
}

#[test]
fn cipher_key_comes_from_the_environment() {
    assert_eq!(
        TokenCipher::from_env(None).unwrap_err(),
        CipherError::NotConfigured
    );
    assert!(matches!(
        TokenCipher::from_env(Some("CONNECT_UNIT_TEST_KEY_UNSET")),
        Err(CipherError::MissingKey(_))
    ));
    std::env::set_var("CONNECT_UNIT_TEST_KEY_HEX", "11".repeat(32));
    std::env::set_var(
        "CONNECT_UNIT_TEST_KEY_B64",
        "ERERERERERERERERERERERERERERERERERERERERERE=",
    );
    std::env::set_var("CONNECT_UNIT_TEST_KEY_SHORT", "abcd");
    let a = TokenCipher::from_env(Some("CONNECT_UNIT_TEST_KEY_HEX")).unwrap();
    let b = TokenCipher::from_env(Some("CONNECT_UNIT_TEST_KEY_B64")).unwrap();
    assert_eq!(
        &b.open(&a.seal(b"x", b""), b"").unwrap()[..],
        b"x",
        "hex and base64 of the same key agree"
    );
    assert!(matches!(
        TokenCipher::from_env(Some("CONNECT_UNIT_TEST_KEY_SHORT")),
        Err(CipherError::BadKey(_))
    ));
}

// ---------- routing ----------

#[test]
fn routes_match_only_configured_providers() {
    let cfg = config();
    let get = &Method::GET;
    assert_eq!(
        ConnectRoute::parse(get, "/facebook/oauth_dialog", &cfg),
        Some(ConnectRoute::Dialog("facebook".into()))
    );
    assert_eq!(
        ConnectRoute::parse(get, "/corp/oauth_code", &cfg),
        Some(ConnectRoute::Callback("corp".into()))
    );
    assert_eq!(
        ConnectRoute::parse(get, "/twitter/oauth_dialog", &cfg),
        None
    );
    assert_eq!(
        ConnectRoute::parse(&Method::POST, "/facebook/oauth_dialog", &cfg),
        None
    );
    assert_eq!(
        ConnectRoute::parse(get, "/facebook/oauth_dialog/x", &cfg),
        None
    );
    assert_eq!(
        ConnectRoute::parse(get, "/api/v1/users/7/identities", &cfg),
        Some(ConnectRoute::List("7".into()))
    );
    assert_eq!(
        ConnectRoute::parse(&Method::DELETE, "/api/v1/users/7/identities/facebook", &cfg),
        Some(ConnectRoute::Unlink("7".into(), "facebook".into()))
    );
    assert_eq!(
        ConnectRoute::parse(&Method::DELETE, "/api/v1/users/7/identities", &cfg),
        None
    );
    assert_eq!(ConnectRoute::parse(get, "/api/v1/users/7", &cfg), None);
    let options = &Method::OPTIONS;
    assert_eq!(
        ConnectRoute::parse(options, "/api/v1/users/7/identities", &cfg),
        Some(ConnectRoute::Preflight)
    );
    assert_eq!(
        ConnectRoute::parse(options, "/api/v1/users/7/identities/facebook", &cfg),
        Some(ConnectRoute::Preflight)
    );
}

// ---------- dialog ----------

#[tokio::test]
async fn dialog_redirects_to_the_provider_without_the_users_token() {
    let store = FakeStore::with_users(&[7]);
    let c = connect(&store, true);
    let resp = dialog(
        &c,
        "facebook",
        &q("https://app.example.com/connect/fb", "t7"),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    assert_eq!(
        resp.headers()[header::CONTENT_TYPE],
        "text/html; charset=utf-8"
    );
    assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-cache");
    let loc = location(&resp);
    let raw_loc = resp.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_string();
    assert!(raw_loc.starts_with("https://www.facebook.com/dialog/oauth?"));
    // The random values (state, PKCE challenge) are taken out first: base64url text
    // contains "t7" by chance about once in fifty redirects.
    let mut fixed = raw_loc.clone();
    for name in ["state", "code_challenge", "nonce"] {
        if let Some(v) = param(&loc, name) {
            fixed = fixed.replace(&v, "");
        }
    }
    assert!(
        !fixed.contains("t7"),
        "the user's token must never reach the provider: {raw_loc}"
    );
    assert_eq!(param(&loc, "client_id").as_deref(), Some("668664849828937"));
    assert_eq!(param(&loc, "response_type").as_deref(), Some("code"));
    assert_eq!(
        param(&loc, "redirect_uri").as_deref(),
        Some("https://gw.example.com/facebook/oauth_code"),
        "callback built from tokens.issuer, without a query"
    );
    assert_eq!(
        param(&loc, "scope").as_deref(),
        Some("public_profile email")
    );
    assert_eq!(
        param(&loc, "code_challenge_method").as_deref(),
        Some("S256")
    );
    let state = param(&loc, "state").unwrap();
    assert!(state.len() >= 43);

    let states = store.states.lock().unwrap().clone();
    assert_eq!(states.len(), 1);
    let st = states
        .get(&sha256_hex(&state))
        .expect("stored under the state's hash only");
    assert_eq!(st.user_id, UserId(7));
    assert_eq!(st.provider, "facebook");
    assert_eq!(st.redirect_uri, "https://app.example.com/connect/fb");
    assert!(!st.pkce_verifier.is_empty());
    let cookie = resp.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    let name = super::binding::cookie_name(&st.state_hash);
    let browser = cookie
        .strip_prefix(&format!("{name}="))
        .and_then(|rest| rest.split(';').next())
        .unwrap();
    assert!(browser.len() >= 43);
    for attr in [
        "Path=/facebook/oauth_code",
        "Max-Age=600",
        "HttpOnly",
        "SameSite=Lax",
        "Secure",
    ] {
        assert!(cookie.contains(attr), "{attr} missing in {cookie}");
    }
    let verifier = TokenCipher::new(&[7u8; 32])
        .open_text(
            &st.pkce_verifier,
            &super::binding::verifier_aad(&st.state_hash, browser),
        )
        .unwrap();
    assert!(
        TokenCipher::new(&[7u8; 32])
            .open_text(&st.pkce_verifier, st.state_hash.as_bytes())
            .is_err(),
        "the verifier opens only with the browser's cookie"
    );
    assert_eq!(
        param(&loc, "code_challenge").unwrap(),
        pkce_challenge(&verifier)
    );
    let ttl = st.expires_at - chrono::Utc::now();
    assert!(ttl > chrono::Duration::minutes(9) && ttl <= chrono::Duration::minutes(10));

    let html = text(resp).await;
    assert_eq!(
        html,
        format!(
            "<html><body>You are being <a href=\"{}\">redirected</a>.</body></html>",
            raw_loc.replace('&', "&amp;")
        )
    );
}

#[tokio::test]
async fn dialog_keeps_the_generic_authorize_urls_own_query() {
    let store = FakeStore::with_users(&[7]);
    let c = connect(&store, true);
    let resp = dialog(&c, "corp", &q("https://app.example.com/x", "t7")).await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    let loc = location(&resp);
    assert_eq!(param(&loc, "tenant").as_deref(), Some("7"));
    assert_eq!(
        param(&loc, "scope"),
        None,
        "generic with no scope sends none"
    );
}

#[tokio::test]
async fn dialog_accepts_a_bearer_header() {
    let store = FakeStore::with_users(&[7]);
    let c = connect(&store, true);
    let mut h = HeaderMap::new();
    h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t7"));
    let query = "redirect_uri=https%3A%2F%2Fapp.example.com%2Fconnect";
    let resp = c
        .dialog(&config(), &FakeAuthn, "facebook", &h, Some(query))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
}

#[tokio::test]
async fn dialog_refuses_bad_tokens_and_foreign_redirects_without_storing_anything() {
    let store = FakeStore::with_users(&[7]);
    let c = connect(&store, true);
    for (query, status, error) in [
        (
            "redirect_uri=https%3A%2F%2Fapp.example.com%2Fconnect".to_string(),
            401,
            "unauthorized",
        ),
        (
            q("https://app.example.com/connect", "nope"),
            401,
            "invalid_token",
        ),
        (
            q("https://app.example.com/connect", "client"),
            401,
            "invalid_token",
        ),
        (
            q("https://app.example.com/connect", "t8"),
            401,
            "invalid_token",
        ),
        (
            q("https://evil.example.com/connect", "t7"),
            400,
            "invalid_redirect_uri",
        ),
        (
            q("https://app.example.com/connectX", "t7"),
            400,
            "invalid_redirect_uri",
        ),
        ("oauth_token=t7".to_string(), 400, "invalid_request"),
    ] {
        let resp = dialog(&c, "facebook", &query).await;
        assert_eq!(resp.status().as_u16(), status, "{query}");
        assert!(
            resp.headers().get(header::LOCATION).is_none(),
            "never redirected: {query}"
        );
        if status == 401 {
            assert!(resp.headers().contains_key(header::WWW_AUTHENTICATE));
        }
        let body: serde_json::Value = serde_json::from_str(&text(resp).await).unwrap();
        assert_eq!(body["error"], error, "{query}");
    }
    assert!(store.states.lock().unwrap().is_empty());
}

#[tokio::test]
async fn dialog_without_an_encryption_key_refuses_to_link() {
    let store = FakeStore::with_users(&[7]);
    let c = connect(&store, false);
    let resp = dialog(&c, "facebook", &q("https://app.example.com/connect", "t7")).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(store.states.lock().unwrap().is_empty());
}

// ---------- callback (paths that need no provider) ----------

async fn started(c: &Connect) -> String {
    let resp = dialog(
        c,
        "facebook",
        &q("https://app.example.com/connect?keep=1", "t7"),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    param(&location(&resp), "state").unwrap()
}

#[tokio::test]
async fn callback_with_unknown_or_missing_state_is_a_400_and_no_redirect() {
    let store = FakeStore::with_users(&[7]);
    let c = connect(&store, true);
    for query in [
        "code=abc",
        "code=abc&state=",
        "code=abc&state=forged",
        &format!("state={}", "x".repeat(500)),
    ] {
        let resp = callback(&c, query).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{query}");
        assert!(resp.headers().get(header::LOCATION).is_none());
        assert!(text(resp).await.contains("invalid_state"));
    }
}

#[tokio::test]
async fn provider_error_goes_back_to_the_integrator_and_consumes_the_state() {
    let store = FakeStore::with_users(&[7]);
    let c = connect(&store, true);
    let state = started(&c).await;
    let resp = callback(
        &c,
        &format!("error=access_denied&error_description=nope&state={state}"),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    assert_eq!(
        resp.headers()[header::LOCATION],
        "https://app.example.com/connect?keep=1&status=error&error=access_denied&provider=facebook"
    );
    // Replaying the same state finds nothing.
    let again = callback(&c, &format!("code=abc&state={state}")).await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    assert!(store.identities.lock().unwrap().is_empty());

    let state = started(&c).await;
    let resp = callback(&c, &format!("error=%3Cscript%3E&state={state}")).await;
    assert_eq!(
        param(&location(&resp), "error").as_deref(),
        Some("provider_error"),
        "provider text is not reflected"
    );
}

#[tokio::test]
async fn expired_state_is_reported_and_changes_nothing() {
    let store = FakeStore::with_users(&[7]);
    let c = connect(&store, true);
    let state = started(&c).await;
    for st in store.states.lock().unwrap().values_mut() {
        st.expires_at = chrono::Utc::now() - chrono::Duration::seconds(1);
    }
    let resp = callback(&c, &format!("code=abc&state={state}")).await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    assert_eq!(
        param(&location(&resp), "error").as_deref(),
        Some("expired_state")
    );
    assert!(store.identities.lock().unwrap().is_empty());
    assert!(store.states.lock().unwrap().is_empty());
}

#[tokio::test]
async fn state_from_another_provider_is_refused() {
    let store = FakeStore::with_users(&[7]);
    let c = connect(&store, true);
    let state = started(&c).await;
    let resp = c
        .callback(
            &config(),
            "corp",
            &HeaderMap::new(),
            Some(&format!("code=abc&state={state}")),
        )
        .await
        .unwrap_or_else(|e| e.response());
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn missing_code_is_reported_to_the_integrator() {
    let store = FakeStore::with_users(&[7]);
    let c = connect(&store, true);
    let state = started(&c).await;
    let resp = callback(&c, &format!("state={state}")).await;
    assert_eq!(
        param(&location(&resp), "error").as_deref(),
        Some("invalid_request")
    );
}

// ---------- identities API ----------

fn auth(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    h
}

fn link(store: &FakeStore, user: i64, provider: &str) {
    store.identities.lock().unwrap().push(LinkedIdentity {
        user_id: UserId(user),
        provider: provider.into(),
        provider_user_id: format!("{provider}-{user}"),
        email: Some(format!("u{user}@example.com")),
        tokens_encrypted: b"ciphertext".to_vec(),
        created_at: chrono::Utc::now(),
    });
}

#[tokio::test]
async fn identities_are_listed_for_the_user_or_an_admin_without_tokens() {
    let store = FakeStore::with_users(&[7, 8, 99]);
    store
        .users
        .lock()
        .unwrap()
        .iter_mut()
        .filter(|u| u.id == UserId(99))
        .for_each(|u| u.role = "admin".into());
    link(&store, 7, "facebook");
    let c = connect(&store, true);
    let ok = |r: Result<Response<Body>, ConnectError>| r.unwrap_or_else(|e| e.response());

    let resp = ok(c.list(&FakeAuthn, &auth("t7"), "7").await);
    assert_eq!(resp.status(), StatusCode::OK);
    let body = text(resp).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["identities"][0]["provider"], "facebook");
    assert_eq!(v["identities"][0]["provider_user_id"], "facebook-7");
    assert!(
        !body.contains("ciphertext") && !body.contains("token"),
        "{body}"
    );

    assert_eq!(
        ok(c.list(&FakeAuthn, &auth("admin"), "7").await).status(),
        StatusCode::OK
    );
    assert_eq!(
        ok(c.list(&FakeAuthn, &auth("t8"), "7").await).status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        ok(c.list(&FakeAuthn, &auth("admin"), "12345").await).status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        ok(c.list(&FakeAuthn, &auth("t7"), "abc").await).status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        ok(c.list(&FakeAuthn, &HeaderMap::new(), "7").await).status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn unlink_removes_the_link_once() {
    let store = FakeStore::with_users(&[7, 8]);
    link(&store, 7, "facebook");
    let c = connect(&store, true);
    let ok = |r: Result<Response<Body>, ConnectError>| r.unwrap_or_else(|e| e.response());
    assert_eq!(
        ok(c.unlink(&FakeAuthn, &auth("t8"), "7", "facebook").await).status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(store.identities.lock().unwrap().len(), 1);
    assert_eq!(
        ok(c.unlink(&FakeAuthn, &auth("t7"), "7", "facebook").await).status(),
        StatusCode::NO_CONTENT
    );
    assert!(store.identities.lock().unwrap().is_empty());
    assert_eq!(
        ok(c.unlink(&FakeAuthn, &auth("t7"), "7", "facebook").await).status(),
        StatusCode::NOT_FOUND
    );
}

// ---------- userinfo fields ----------

#[test]
fn userinfo_fields_per_preset() {
    use super::exchange::parse_user;
    let p = provider("client_id: x\nallowed_redirect_uris: [https://a.example.com/]");
    let fb = ResolvedProvider::resolve("facebook", &p, "https://auth.example.com").unwrap();
    let gh = ResolvedProvider::resolve("github", &p, "https://auth.example.com").unwrap();
    let g = ResolvedProvider::resolve("google", &p, "https://auth.example.com").unwrap();
    let generic = ResolvedProvider::resolve(
        "corp",
        &provider("client_id: x\nauthorize_url: https://i.example.com/a\ntoken_url: https://i.example.com/t\nuserinfo_url: https://i.example.com/u\nallowed_redirect_uris: [https://a.example.com/]"),
        "https://auth.example.com",
    )
    .unwrap();
    let v = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();

    let u = parse_user(
        &fb,
        &v(r#"{"id":"10153","name":"A","email":"a@example.com"}"#),
    )
    .unwrap();
    assert_eq!(
        (u.id.as_str(), u.email.as_deref()),
        ("10153", Some("a@example.com"))
    );
    let u = parse_user(&gh, &v(r#"{"id":583231,"login":"octocat","email":null}"#)).unwrap();
    assert_eq!((u.id.as_str(), u.email), ("583231", None));
    let u = parse_user(
        &g,
        &v(r#"{"sub":"1108","email":"g@example.com","id":"ignored"}"#),
    )
    .unwrap();
    assert_eq!(u.id, "1108");
    assert_eq!(
        parse_user(&generic, &v(r#"{"id":"legacy-7"}"#)).unwrap().id,
        "legacy-7"
    );
    assert_eq!(
        parse_user(&generic, &v(r#"{"sub":"s-1","id":"i-1"}"#))
            .unwrap()
            .id,
        "s-1"
    );
    assert!(parse_user(&fb, &v(r#"{"email":"no-id@example.com"}"#)).is_none());
    assert!(parse_user(&fb, &v(r#"{"id":""}"#)).is_none());
    assert!(parse_user(&fb, &v(r#"{"id":{"nested":1}}"#)).is_none());
}

#[tokio::test]
async fn a_callback_in_another_browser_is_refused_before_any_exchange() {
    let store = FakeStore::with_users(&[7]);
    let c = connect(&store, true);
    // No cookie at all: the victim opened the attacker's consent URL.
    let state = started(&c).await;
    let resp = callback(&c, &format!("code=abc&state={state}")).await;
    assert_eq!(
        param(&location(&resp), "error").as_deref(),
        Some("browser_mismatch")
    );
    assert!(
        store.states.lock().unwrap().is_empty(),
        "the state is used up"
    );

    // The right cookie name with another browser's value.
    let state = started(&c).await;
    let mut h = HeaderMap::new();
    let name = super::binding::cookie_name(&sha256_hex(&state));
    h.insert(
        header::COOKIE,
        HeaderValue::from_str(&format!("{name}=someone-elses")).unwrap(),
    );
    let resp = c
        .callback(
            &config(),
            "facebook",
            &h,
            Some(&format!("code=abc&state={state}")),
        )
        .await
        .unwrap();
    assert_eq!(
        param(&location(&resp), "error").as_deref(),
        Some("browser_mismatch")
    );
    assert!(
        resp.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0"),
        "the binding cookie is cleared"
    );
    assert!(store.identities.lock().unwrap().is_empty());
}
