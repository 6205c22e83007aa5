//! The whole provider-connect flow in a real browser: headless Chromium opens the dialog
//! URL an integrator would link to, follows the real redirects (Tollgate → provider
//! authorize → Tollgate callback → integrator page), and the test reads the page it ends
//! on and the link in the store. Skips with a printed reason when Chromium is absent.

#[allow(unused_imports)] // shared helpers this test does not use
mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{chromium, connect_gateway};

#[tokio::test]
async fn chromium_follows_the_dialog_to_the_integrator_and_the_account_is_linked() {
    let Some(browser) = chromium::binary() else {
        eprintln!("SKIPPED: no Chromium binary (install chromium or set CHROMIUM_BIN)");
        return;
    };
    let env = connect_gateway::start().await;
    let (user, token) = env.signed_in_user("browser", "correct horse battery").await;

    let dom = chromium::dump_dom(
        &browser,
        &env.dialog_url(&env.integrator.url("/done"), &token),
        Duration::from_secs(90),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    assert!(
        dom.contains("<h1>Integrator</h1>"),
        "browser did not reach the integrator page:\n{dom}"
    );
    assert!(dom.contains(r#"<p id="status">connected</p>"#), "{dom}");
    assert!(dom.contains(r#"<p id="provider">facebook</p>"#), "{dom}");
    let landed: Vec<String> = env
        .integrator
        .hits()
        .into_iter()
        .filter(|h| h.starts_with("/done"))
        .collect();
    assert_eq!(
        landed,
        vec!["/done?status=connected&provider=facebook".to_string()]
    );

    assert_eq!(env.provider.authorize_calls.load(Ordering::SeqCst), 1);
    assert_eq!(env.provider.token_calls.load(Ordering::SeqCst), 1);
    assert_eq!(env.provider.userinfo_calls.load(Ordering::SeqCst), 1);
    for seen in env.provider.seen() {
        assert!(
            !seen.contains(&token),
            "provider saw the user's token in {seen}"
        );
    }

    let links = env.store.identities_of(user).await.unwrap();
    assert_eq!(links.len(), 1, "the browser flow linked the account");
    assert_eq!(links[0].provider, "facebook");
    assert_eq!(links[0].provider_user_id, "fb-1001");
    assert_eq!(links[0].email.as_deref(), Some("linked@example.com"));
    let tokens = env.decrypt_tokens("facebook", "fb-1001", &links[0].tokens_encrypted);
    assert!(tokens["access_token"]
        .as_str()
        .unwrap()
        .starts_with("prov-at-"));
}
