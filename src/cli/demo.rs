//! `tollgate demo`: a throwaway gateway to try every dialect in a minute. It starts a
//! built-in echo upstream, a store in a temporary directory with a demo user and
//! clients, a gateway on 127.0.0.1:8080 (override with `TOLLGATE_LISTEN__HTTP`), and
//! prints the curl lines that exercise it. Nothing it creates outlives the process.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::app::Gateway;
use crate::config::Config;
use crate::crypto::{random_token, sha256_hex};
use crate::store::{Client, NewUser, Store};

pub const DEMO_EMAIL: &str = "demo@example.com";
pub const DEMO_USERNAME: &str = "demo";
pub const DEMO_PASSWORD: &str = "demo-password";

type DemoResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// The demo configuration: three token dialects, a protected and a public echo route.
pub fn demo_yaml(echo: SocketAddr, store_dir: &std::path::Path) -> String {
    format!(
        r#"
listen:
  http: 127.0.0.1:8080
  admin: 127.0.0.1:9090
store:
  url: sqlite://{store}/tollgate.db
tokens:
  issuer: http://127.0.0.1:8080
token_endpoints:
  - path: /oauth/token
  - path: /oauth/authorize
  - path: /user-management-services-ws/oauth2/002/signInWithPassword
    grant: password
    client: web
    invalid_credentials_status: 403
    token_type: Bearer
routes:
  - name: echo
    path: /echo
    upstream: http://{echo}
    auth: required
  - name: public
    path: /public
    upstream: http://{echo}
    auth: none
"#,
        store = store_dir.display(),
    )
}

/// Creates the demo user and clients; returns the confidential client's secret.
pub async fn seed(
    store: &Arc<dyn Store>,
    hasher: &crate::crypto::PasswordHasherPool,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    store
        .create_user(NewUser {
            username: Some(DEMO_USERNAME.into()),
            email: DEMO_EMAIL.into(),
            password_hash: hasher.hash(DEMO_PASSWORD).await?,
            role: "default".into(),
        })
        .await?;
    let secret = random_token();
    let all = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    store
        .create_client(Client {
            id: "demo-app".into(),
            secret_hash: Some(sha256_hex(&secret)),
            grants: all(&["password", "refresh_token", "client_credentials"]),
            scopes: all(&["read", "write"]),
            created_at: chrono::Utc::now(),
            ..Default::default()
        })
        .await?;
    store
        .create_client(Client {
            id: "demo-public".into(),
            secret_hash: None,
            grants: all(&["password", "refresh_token"]),
            scopes: Vec::new(),
            created_at: chrono::Utc::now(),
            ..Default::default()
        })
        .await?;
    Ok(secret)
}

pub async fn run() -> DemoResult {
    crate::telemetry::init_logging(crate::config::raw::LogFormat::Pretty, "info");
    let dir = tempfile_dir()?;
    let echo = super::echo::spawn(([127, 0, 0, 1], 0).into()).await?;
    let cfg = Config::from_yaml_with_env(&demo_yaml(echo, &dir), None)?;
    // Seed first (opening the store runs the migrations), then build exactly what
    // `tollgate serve` builds, so the demo runs the real authenticator.
    let store = crate::store::connect(&cfg.store.url).await?;
    let secret = seed(&store, &crate::crypto::PasswordHasherPool::default()).await?;
    drop(store);
    let services = crate::app::wiring::build(&cfg).await?;
    let gateway = Gateway::start(cfg, services).await?;
    let base = format!("http://{}", gateway.http_addr.ok_or("no HTTP listener")?);
    print_curl_lines(&base, &secret);
    tokio::signal::ctrl_c().await?;
    gateway.shutdown(std::time::Duration::from_secs(5)).await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("tollgate-demo-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn print_curl_lines(base: &str, secret: &str) {
    println!(
        r#"
Tollgate demo running on {base} (Ctrl-C to stop; everything is deleted on exit)
  user:    {DEMO_USERNAME} / {DEMO_EMAIL}, password {DEMO_PASSWORD}
  clients: demo-app (confidential, secret below), demo-public (public), web (implied by signInWithPassword)

# RFC 6749 form + HTTP Basic (reference 001)
curl -s {base}/oauth/token -u 'demo-app:{secret}' -d grant_type=password -d username={DEMO_USERNAME} -d password={DEMO_PASSWORD}

# ?grant_type= with a JSON body (reference 004)
curl -s '{base}/oauth/token?grant_type=password' -H 'Content-Type: application/json' \
  -d '{{"username":"{DEMO_EMAIL}","password":"{DEMO_PASSWORD}","client_id":"demo-app","client_secret":"{secret}"}}'

# draft-10 sign-in with a public client (reference 000)
curl -s {base}/oauth/authorize -H 'Content-Type: application/json' \
  -d '{{"username":"{DEMO_USERNAME}","password":"{DEMO_PASSWORD}","grant_type":"password","client_id":"demo-public"}}'

# signInWithPassword (reference 002)
curl -s {base}/user-management-services-ws/oauth2/002/signInWithPassword -H 'Content-Type: application/json' \
  -d '{{"username":"{DEMO_USERNAME}","password":"{DEMO_PASSWORD}","useralias":"desk-7"}}'

# call the protected echo upstream with the token (identity headers injected)
TOKEN=$(curl -s {base}/oauth/token -u 'demo-app:{secret}' -d grant_type=password -d username={DEMO_USERNAME} -d password={DEMO_PASSWORD} | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
curl -s {base}/echo/hello -H "Authorization: Bearer $TOKEN"

# users API (reference 004)
curl -s {base}/api/v1/users -H 'Content-Type: application/json' -d '{{"user":{{"email":"user@example.com","password":"password"}}}}'
curl -s {base}/api/v1/users/me -H "Authorization: Bearer $TOKEN"

# discovery and keys
curl -s {base}/.well-known/oauth-authorization-server
curl -s {base}/.well-known/jwks.json
"#
    );
}
