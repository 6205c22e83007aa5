//! A gateway set up for provider connect: the real SQLite store, real bearer validation
//! (the store-backed opaque-token authenticator), the connect endpoints, a fake provider
//! configured as `facebook`, and an integrator page on its own port.
//!
//! The callback URL Tollgate hands the provider comes from `connect.callback_base_url`,
//! which must name the gateway's own port; the port is known only once the gateway has
//! bound port 0, so the config is rewritten and live-reloaded right after the start.

use std::sync::Arc;

use tollgate::app::{Gateway, Services};
use tollgate::config::Config;
use tollgate::connect::callback::identity_aad;
use tollgate::connect::ConnectStores;
use tollgate::crypto::{random_token, sha256_hex};
use tollgate::proxy::authn::setup::{self, AuthnParts};
use tollgate::store::{NewUser, Store, TokenKind, TokenRecord, UserId};

use super::fake_provider::{FakeProvider, Integrator};
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
    std::env::set_var(KEY_ENV, KEY_HEX);
    std::env::set_var(SECRET_ENV, SECRET);
    let provider = FakeProvider::start("fake-client", SECRET).await;
    let integrator = Integrator::start().await;

    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("tollgate.yaml");
    let text = yaml(&provider, &integrator, "http://127.0.0.1:9", key_env);
    std::fs::write(&config_path, super::complete_yaml(&text, dir.path())).unwrap();
    let cfg = Config::load(&config_path).unwrap_or_else(|e| panic!("{e}"));

    let store = tollgate::store::connect(&cfg.store.url).await.unwrap();
    let authenticator = setup::build(
        &cfg,
        AuthnParts {
            store: Some(store.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    let services = Services {
        endpoints: tollgate::connect::endpoints(&cfg, ConnectStores::from_store(store.clone())),
        authenticator: Arc::new(authenticator),
        readiness: Vec::new(),
    };
    let gateway = Gateway::start(cfg, services)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let base = format!("http://{}", gateway.http_addr.unwrap());
    let admin = format!("http://{}", gateway.admin_addr.unwrap());
    let gw = TestGateway {
        gateway,
        dir,
        config_path,
        base,
        admin,
    };
    gw.write_config(&yaml(&provider, &integrator, &gw.base, key_env));
    gw.gateway
        .app
        .reload()
        .expect("reload with the gateway's own callback URL");
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
        let user = self
            .store
            .create_user(NewUser {
                username: None,
                email: email.into(),
                password_hash: "$argon2id$unused".into(),
                role: role.into(),
            })
            .await
            .unwrap();
        let token = random_token();
        let now = chrono::Utc::now();
        self.store
            .insert_token(
                TokenKind::OpaqueAccess,
                TokenRecord {
                    token_hash: sha256_hex(&token),
                    family_id: random_token(),
                    user_id: Some(user.id),
                    client_id: Some("web".into()),
                    scope: String::new(),
                    alias: None,
                    expires_at: now + chrono::Duration::hours(1),
                    created_at: now,
                    rotated_at: None,
                    revoked_at: None,
                },
            )
            .await
            .unwrap();
        (user.id, token)
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
