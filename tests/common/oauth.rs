//! Token-service fixtures: a gateway with the legacy dialects mounted, seeded with the
//! users and clients the reference documents use.

use std::sync::Arc;

use serde_json::Value;
use tollgate::crypto::PasswordHasherPool;
use tollgate::store::{Store, User};

use super::{spawn_gateway, TestGateway};

/// The dialect endpoints, as in SPEC.md §2 (plus the 001 document's own path).
pub const DIALECTS_YAML: &str = r#"
token_endpoints:
  - path: /oauth/token
  - path: /oauth/authorize
  - path: /v2/marketing/oauth/token
  - path: /user-management-services-ws/oauth2/002/signInWithPassword
    grant: password
    client: web
    invalid_credentials_status: 403
    token_type: Bearer
"#;

/// Reference 000: a public client.
pub const DRAFT10_CLIENT: &str = "1bv9sh664cowghktxwn307wpeghj8e1";
/// Reference 001: Basic `138:e8b9…`.
pub const BASIC_CLIENT: (&str, &str) = (
    "138",
    "e8b9ca24f1b590af67e6271297d6e1f7226625d61c5b5daa1b2f215464e292cf",
);
/// Reference 004: the password-grant example's client.
pub const JSON_CLIENT: (&str, &str) = (
    "6cc9b4059815bb7674e860a8c3dc4c58c9db63ac89f420e888e4e653af4305ca",
    "fb1e8c880cee7e76827a32d1368b0a68a6bf04e5493e8a2b6c03261a2e7a8b97",
);
/// A resource server allowed to introspect.
pub const RESOURCE_SERVER: (&str, &str) =
    ("resource-server", "rs-secret-0123456789abcdef0123456789");

pub struct TokenGateway {
    pub gw: TestGateway,
    pub store: Arc<dyn Store>,
    pub hasher: PasswordHasherPool,
}

impl std::ops::Deref for TokenGateway {
    type Target = TestGateway;
    fn deref(&self) -> &TestGateway {
        &self.gw
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

impl TokenGateway {
    /// The dialects plus `extra` YAML, seeded with the reference users and clients.
    pub async fn start(extra: &str) -> TokenGateway {
        Self::start_with("", extra).await
    }

    /// As `start`, with `tokens_lines` (indented by two spaces) added under `tokens:`.
    pub async fn start_with(tokens_lines: &str, extra: &str) -> TokenGateway {
        Self::start_on(None, tokens_lines, extra).await
    }

    /// As `start_with`, on the store at `store_url` (default: SQLite in the temp dir).
    pub async fn start_on(
        store_url: Option<&str>,
        tokens_lines: &str,
        extra: &str,
    ) -> TokenGateway {
        let store_yaml = store_url
            .map(|u| format!("store:\n  url: {u}\n"))
            .unwrap_or_default();
        // A test that brings its own token endpoints replaces the reference dialects.
        let dialects = if extra.contains("token_endpoints:") {
            ""
        } else {
            DIALECTS_YAML
        };
        // The reference clients register through the users API; `closed` is the default
        // when the key is absent, so these gateways open it unless a test says otherwise.
        let registration = if extra.contains("users_api:") {
            ""
        } else {
            "users_api:\n  registration: open\n"
        };
        let yaml = format!(
            "{store_yaml}tokens:\n  issuer: http://tollgate.test\n  audience: tollgate\n{tokens_lines}\n{dialects}{registration}{extra}"
        );
        let gw = spawn_gateway(&yaml).await;
        let url = match store_url {
            Some(u) => u.to_string(),
            None => format!("sqlite://{}/tollgate.db", gw.dir.path().display()),
        };
        let store = tollgate::store::connect(&url).await.expect("store opens");
        let tg = TokenGateway {
            gw,
            store,
            hasher: PasswordHasherPool::new(1),
        };
        tg.user("user_1", "person1@example.com", "password", "default")
            .await;
        tg.user(
            "john_doe",
            "john_doe@domain.com",
            "john_doe_secret",
            "default",
        )
        .await;
        tg.user(
            "customerUsername",
            "customer@example.com",
            "customerPassword",
            "default",
        )
        .await;
        tg.client(DRAFT10_CLIENT, None, &["password", "refresh_token"], &[])
            .await;
        tg.client(
            BASIC_CLIENT.0,
            Some(BASIC_CLIENT.1),
            &["password", "refresh_token"],
            &[],
        )
        .await;
        tg.client(
            JSON_CLIENT.0,
            Some(JSON_CLIENT.1),
            &["password", "refresh_token"],
            &[],
        )
        .await;
        tg.client(
            RESOURCE_SERVER.0,
            Some(RESOURCE_SERVER.1),
            &["client_credentials"],
            &["read", "write"],
        )
        .await;
        tg
    }

    pub async fn user(&self, username: &str, email: &str, password: &str, role: &str) -> User {
        super::seed::user(&*self.store, Some(username), email, password, role).await
    }

    pub async fn client(&self, id: &str, secret: Option<&str>, grants: &[&str], scopes: &[&str]) {
        super::seed::client(&*self.store, id, secret, grants, scopes).await
    }

    /// A password grant by form + Basic; returns the token response.
    pub async fn password_token(&self, username: &str, password: &str) -> Value {
        let resp = super::client()
            .post(self.url("/oauth/token"))
            .basic_auth(BASIC_CLIENT.0, Some(BASIC_CLIENT.1))
            .form(&[
                ("grant_type", "password"),
                ("username", username),
                ("password", password),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "password grant for {username}");
        resp.json().await.unwrap()
    }

    /// A refresh grant by form + Basic: (status, body).
    pub async fn refresh(&self, refresh_token: &str) -> (u16, Value) {
        let resp = super::client()
            .post(self.url("/oauth/token"))
            .basic_auth(BASIC_CLIENT.0, Some(BASIC_CLIENT.1))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ])
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }
}

/// Asserts the answer carries the token-response cache headers.
pub fn assert_no_store(resp: &reqwest::Response) {
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert_eq!(resp.headers()["pragma"], "no-cache");
}

/// Asserts `body` has exactly these keys.
pub fn assert_keys(body: &Value, keys: &[&str]) {
    let mut got: Vec<&str> = body
        .as_object()
        .expect("a JSON object")
        .keys()
        .map(String::as_str)
        .collect();
    got.sort_unstable();
    let mut want = keys.to_vec();
    want.sort_unstable();
    assert_eq!(got, want, "response fields: {body}");
}
