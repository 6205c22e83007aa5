//! A gateway set up for provider connect — everything `app::wiring::build` wires (the real
//! SQLite store, the token service's bearer validation, the connect endpoints) — with a
//! fake provider configured as `facebook` and an integrator page on its own port.
//!
//! The callback URL Tollgate hands the provider comes from `connect.callback_base_url`,
//! which must name the gateway's own port; the port is known only once the gateway has
//! bound port 0, so the config is rewritten and live-reloaded right after the start.

use std::sync::Arc;

use tollgate::connect::callback::identity_aad;

use tollgate::store::{Store, UserId};

use super::fake_provider::{FakeProvider, Integrator};
use super::seed;
use super::TestGateway;

/// Environment variable holding the provider-token key in these tests (one value for all).
pub const KEY_ENV: &str = "CONNECT_TEST_ENCRYPTION_KEY";
pub const KEY_HEX: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";
/// Environment variable holding the fake provider's client secret.
pub const SECRET_ENV: &str = "CONNECT_TEST_PROVIDER_SECRET";
pub const SECRET: &str = "fake-provider-secret";

pub struct ConnectEnv {
    pub gw: TestGateway,
    pub store: Arc<dyn Store>,
    pub provider: FakeProvider,
    pub integrator: Integrator,
}

fn yaml(
    provider: &FakeProvider,
    integrator: &Integrator,
    callback_base: &str,
    key_env: &str,
) -> String {
    format!(
        r#"
tokens:
  issuer: http://127.0.0.1:9/
connect:
  encryption_key_env: {key_env}
  callback_base_url: {callback_base}
  provider_timeout: 3s
providers:
  facebook:
    client_id: {client_id}
    client_secret_env: {SECRET_ENV}
    authorize_url: {authorize}
    token_url: {token}
    userinfo_url: {userinfo}
    allowed_redirect_uris: ["{allowed}"]
routes: []
"#,
        client_id = provider.client_id,
        authorize = provider.url("/authorize"),
        token = provider.url("/token"),
        userinfo = provider.url("/userinfo"),
        allowed = integrator.url("/done"),
    )
}

/// Starts everything; `key_env` names the encryption key variable (pass [`KEY_ENV`], or
/// an unset name to see linking refused).
pub async fn start_with_key(key_env: &str) -> ConnectEnv {
    start_on(None, key_env).await
}

/// As [`start_with_key`], on the store at `store_url` (default: SQLite in the temp dir).
pub async fn start_on(store_url: Option<&str>, key_env: &str) -> ConnectEnv {
    std::env::set_var(KEY_ENV, KEY_HEX);
    std::env::set_var(SECRET_ENV, SECRET);
    let provider = FakeProvider::start("fake-client", SECRET).await;
    let integrator = Integrator::start().await;
    let store_yaml = store_url
        .map(|u| format!("store:\n  url: {u}\n"))
        .unwrap_or_default();
    let config = |base: &str| {
        format!(
            "{store_yaml}{}",
            yaml(&provider, &integrator, base, key_env)
        )
    };

    let gw = super::spawn_gateway(&config("http://127.0.0.1:9")).await;
    gw.write_config(&config(&gw.base));
    gw.gateway
        .app
        .reload()
        .expect("reload with the gateway's own callback URL");
    // A second handle on the gateway's store, to seed users and read links.
    let url = store_url
        .map(str::to_owned)
        .unwrap_or_else(|| format!("sqlite://{}/tollgate.db", gw.dir.path().display()));
    let store = tollgate::store::connect(&url).await.expect("store opens");
    ConnectEnv {
        gw,
        store,
        provider,
        integrator,
    }
}

pub async fn start() -> ConnectEnv {
    start_with_key(KEY_ENV).await
}

impl ConnectEnv {
    /// A user and a valid opaque access token for them, as the token service would store it.
    pub async fn user(&self, email: &str, role: &str) -> (UserId, String) {
        let user = seed::user(&*self.store, None, email, "unused-password", role).await;
        let token = seed::opaque_access_token(&*self.store, user.id, "web").await;
        (user.id, token)
    }

    /// A user who signs in through the token service (password grant, form + Basic) and
    /// the JWT access token it issues them: the path real integrators take.
    pub async fn signed_in_user(&self, username: &str, password: &str) -> (UserId, String) {
        let email = format!("{username}@example.com");
        let user = seed::user(&*self.store, Some(username), &email, password, "default").await;
        let client_id = format!("app-{username}");
        seed::client(
            &*self.store,
            &client_id,
            Some("app-secret"),
            &["password"],
            &[],
        )
        .await;
        let resp = super::client()
            .post(self.gw.url("/oauth/token"))
            .basic_auth(&client_id, Some("app-secret"))
            .form(&[
                ("grant_type", "password"),
                ("username", username),
                ("password", password),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "password grant");
        let body: serde_json::Value = resp.json().await.unwrap();
        let token = body["access_token"].as_str().unwrap().to_string();
        assert_eq!(token.matches('.').count(), 2, "a JWT");
        (user.id, token)
    }

    /// The browser's way to the callback: the dialog (which sets the binding cookie) and
    /// the provider's authorize page, which redirects to Tollgate's callback. Returns the
    /// callback URL and the cookie to send with it.
    pub async fn to_callback(&self, token: &str) -> (String, String) {
        let c = super::client();
        let dialog = c
            .get(self.dialog_url(&self.integrator.url("/done"), token))
            .send()
            .await
            .unwrap();
        assert_eq!(dialog.status(), 302, "dialog");
        let cookie = binding_cookie(&dialog);
        let authorize = location(&dialog);
        assert!(
            authorize.starts_with(&self.provider.url("/authorize")),
            "{authorize}"
        );
        let at_provider = c.get(&authorize).send().await.unwrap();
        assert_eq!(at_provider.status(), 302, "provider authorize");
        let callback = location(&at_provider);
        assert!(
            callback.starts_with(&self.gw.url("/facebook/oauth_code?")),
            "{callback}"
        );
        (callback, cookie)
    }

    /// `/facebook/oauth_dialog?redirect_uri=…&oauth_token=…`
    pub fn dialog_url(&self, redirect_uri: &str, token: &str) -> String {
        let q = form_urlencoded::Serializer::new(String::new())
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("oauth_token", token)
            .finish();
        self.gw.url(&format!("/facebook/oauth_dialog?{q}"))
    }

    /// The provider tokens stored for a link, decrypted with the test key.
    pub fn decrypt_tokens(
        &self,
        provider: &str,
        provider_user_id: &str,
        sealed: &[u8],
    ) -> serde_json::Value {
        let key: [u8; 32] = hex::decode(KEY_HEX).unwrap().try_into().unwrap();
        let cipher = tollgate::connect::cipher::TokenCipher::new(&key);
        let aad = identity_aad(provider, provider_user_id);
        serde_json::from_slice(&cipher.open(sealed, &aad).expect("stored tokens decrypt")).unwrap()
    }
}

/// The `Location` of a redirect.
pub fn location(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("location")
        .unwrap_or_else(|| panic!("no Location on {}", resp.status()))
        .to_str()
        .unwrap()
        .to_string()
}

/// The binding cookie the dialog sets, as a `Cookie` value, after checking its flags.
pub fn binding_cookie(resp: &reqwest::Response) -> String {
    let set = resp
        .headers()
        .get("set-cookie")
        .expect("the dialog sets its binding cookie")
        .to_str()
        .unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax"),
        "{set}"
    );
    assert!(set.contains("Path=/facebook/oauth_code"), "{set}");
    set.split(';').next().unwrap().to_string()
}
