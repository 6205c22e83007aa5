//! Provider connect over real sockets: the gateway with the real SQLite store and bearer
//! validation, a fake provider and an integrator page on 127.0.0.1. Each test walks the
//! redirects by hand (the client never follows them) so every hop can be checked.

#[allow(unused_imports)] // shared helpers this test does not use
mod common;

use std::sync::atomic::Ordering;

use common::connect_gateway::{self, binding_cookie, location, ConnectEnv};
use common::fake_provider::Mode;
use http::StatusCode;

fn param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Dialog → provider authorize → Tollgate callback, as one browser (the binding cookie
/// carried to the callback); returns the final Location (the integrator URL), the
/// callback URL the provider sent the browser to, and the cookie.
async fn run_flow(env: &ConnectEnv, token: &str) -> (String, String) {
    let (back, callback, _) = run_flow_with_cookie(env, token).await;
    (back, callback)
}

/// The flow, returning where the browser was sent back to and the callback's request id.
async fn run_flow_with_request_id(env: &ConnectEnv, token: &str) -> (String, String, String) {
    let (back, callback, _, request_id) = run_flow_full(env, token).await;
    (back, callback, request_id)
}

async fn run_flow_with_cookie(env: &ConnectEnv, token: &str) -> (String, String, String) {
    let (back, callback, cookie, _) = run_flow_full(env, token).await;
    (back, callback, cookie)
}

async fn run_flow_full(env: &ConnectEnv, token: &str) -> (String, String, String, String) {
    let c = common::client();
    let (callback, cookie) = env.to_callback(token).await;
    let done = c
        .get(&callback)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::FOUND, "callback");
    assert_eq!(
        done.headers()["content-type"],
        "text/html; charset=utf-8",
        "the callback answers with the same redirect page as the dialog"
    );
    let request_id = done.headers()["x-request-id"].to_str().unwrap().to_string();
    (location(&done), callback, cookie, request_id)
}

#[tokio::test]
async fn dialog_to_callback_links_the_account_with_pkce_and_encrypted_tokens() {
    let env = connect_gateway::start().await;
    let (user, token) = env.user("ann@example.com", "default").await;

    let c = common::client();
    let dialog = c
        .get(env.dialog_url(&env.integrator.url("/done"), &token))
        .send()
        .await
        .unwrap();
    assert_eq!(dialog.status(), StatusCode::FOUND);
    assert_eq!(dialog.headers()["cache-control"], "no-cache");
    assert_eq!(dialog.headers()["content-type"], "text/html; charset=utf-8");
    assert!(dialog.headers().contains_key("x-request-id"));
    let authorize = location(&dialog);
    assert!(
        !authorize.contains(&token),
        "the user's token must not reach the provider"
    );
    assert_eq!(
        param(&authorize, "client_id").as_deref(),
        Some("fake-client")
    );
    assert_eq!(
        param(&authorize, "redirect_uri"),
        Some(env.gw.url("/facebook/oauth_code")),
        "Tollgate's own callback, with no query of its own"
    );
    assert_eq!(
        param(&authorize, "scope").as_deref(),
        Some("public_profile email")
    );
    assert_eq!(
        param(&authorize, "code_challenge_method").as_deref(),
        Some("S256")
    );
    let cookie = binding_cookie(&dialog);
    let body = dialog.text().await.unwrap();
    assert_eq!(
        body,
        format!(
            "<html><body>You are being <a href=\"{}\">redirected</a>.</body></html>",
            authorize.replace('&', "&amp;")
        )
    );

    let at_provider = c.get(&authorize).send().await.unwrap();
    let callback = location(&at_provider);
    let done = c
        .get(&callback)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::FOUND);
    let back = location(&done);
    assert_eq!(
        back,
        format!(
            "{}?status=connected&provider=facebook",
            env.integrator.url("/done")
        )
    );

    // The provider saw one exchange with the verifier matching the challenge (it refuses
    // anything else), one userinfo call, and never the user's Tollgate token.
    assert_eq!(env.provider.token_calls.load(Ordering::SeqCst), 1);
    assert_eq!(env.provider.userinfo_calls.load(Ordering::SeqCst), 1);
    assert_eq!(env.provider.last_token_error(), None);
    let form = &env.provider.token_forms()[0];
    assert_eq!(form["grant_type"], "authorization_code");
    assert_eq!(form["redirect_uri"], env.gw.url("/facebook/oauth_code"));
    assert!(form["code_verifier"].len() >= 43);
    for seen in env.provider.seen() {
        assert!(
            !seen.contains(&token),
            "provider saw the user's token in {seen}"
        );
    }
    assert!(!form.values().any(|v| v == &token));

    let links = env.store.identities_of(user).await.unwrap();
    assert_eq!(links.len(), 1);
    let link = &links[0];
    assert_eq!(link.provider, "facebook");
    assert_eq!(link.provider_user_id, "fb-1001");
    assert_eq!(link.email.as_deref(), Some("linked@example.com"));
    let issued = env.provider.issued_access_tokens();
    assert_eq!(issued.len(), 1);
    assert!(
        !link
            .tokens_encrypted
            .windows(issued[0].len())
            .any(|w| w == issued[0].as_bytes()),
        "provider access token stored in the clear"
    );
    let tokens = env.decrypt_tokens("facebook", "fb-1001", &link.tokens_encrypted);
    assert_eq!(tokens["access_token"], issued[0].as_str());
    assert!(tokens["refresh_token"]
        .as_str()
        .unwrap()
        .starts_with("prov-rt-"));
    assert!(tokens["expires_at"].as_i64().unwrap() > chrono::Utc::now().timestamp());
}

#[tokio::test]
async fn bearer_header_works_like_oauth_token() {
    let env = connect_gateway::start().await;
    let (_, token) = env.user("hdr@example.com", "default").await;
    let q = form_urlencoded::Serializer::new(String::new())
        .append_pair("redirect_uri", &env.integrator.url("/done/sub"))
        .finish();
    let resp = common::client()
        .get(env.gw.url(&format!("/facebook/oauth_dialog?{q}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    assert!(!location(&resp).contains(&token));
}

#[tokio::test]
async fn replayed_state_is_refused_and_changes_nothing() {
    let env = connect_gateway::start().await;
    let (user, token) = env.user("rep@example.com", "default").await;
    let (back, callback, cookie) = run_flow_with_cookie(&env, &token).await;
    assert_eq!(param(&back, "status").as_deref(), Some("connected"));

    env.store.unlink_identity(user, "facebook").await.unwrap();
    let replay = common::client()
        .get(&callback)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    assert!(replay.headers().get("location").is_none());
    let body: serde_json::Value = replay.json().await.unwrap();
    assert_eq!(body["error"], "invalid_state");
    assert_eq!(
        env.provider.token_calls.load(Ordering::SeqCst),
        1,
        "no second exchange"
    );
    assert!(env.store.identities_of(user).await.unwrap().is_empty());

    // A made-up state is refused the same way.
    let forged = common::client()
        .get(env.gw.url("/facebook/oauth_code?code=x&state=forged"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn provider_denial_goes_back_as_access_denied() {
    let env = connect_gateway::start().await;
    let (user, token) = env.user("deny@example.com", "default").await;
    env.provider.set_mode(Mode::Deny);
    let (back, _) = run_flow(&env, &token).await;
    assert_eq!(param(&back, "status").as_deref(), Some("error"));
    assert_eq!(param(&back, "error").as_deref(), Some("access_denied"));
    assert_eq!(env.provider.token_calls.load(Ordering::SeqCst), 0);
    assert!(env.store.identities_of(user).await.unwrap().is_empty());
}

#[tokio::test]
async fn token_and_userinfo_failures_link_nothing() {
    let env = connect_gateway::start().await;
    let (user, token) = env.user("fail@example.com", "default").await;

    env.provider.set_mode(Mode::FailToken);
    let (back, _) = run_flow(&env, &token).await;
    assert_eq!(
        param(&back, "error").as_deref(),
        Some("token_exchange_failed")
    );
    assert_eq!(env.provider.userinfo_calls.load(Ordering::SeqCst), 0);

    env.provider.set_mode(Mode::FailUserinfo);
    let (back, _) = run_flow(&env, &token).await;
    assert_eq!(param(&back, "error").as_deref(), Some("userinfo_failed"));
    assert_eq!(env.provider.userinfo_calls.load(Ordering::SeqCst), 1);

    assert!(env.store.identities_of(user).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_account_linked_to_another_user_is_refused() {
    let env = connect_gateway::start().await;
    let (first, t1) = env.user("first@example.com", "default").await;
    let (second, t2) = env.user("second@example.com", "default").await;
    let (back, _) = run_flow(&env, &t1).await;
    assert_eq!(param(&back, "status").as_deref(), Some("connected"));

    let (back, _) = run_flow(&env, &t2).await;
    assert_eq!(param(&back, "status").as_deref(), Some("error"));
    assert_eq!(param(&back, "error").as_deref(), Some("already_linked"));
    assert!(env.store.identities_of(second).await.unwrap().is_empty());
    let kept = env.store.identities_of(first).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].provider_user_id, "fb-1001");

    // The same user connecting the same account again just refreshes it.
    let (back, _) = run_flow(&env, &t1).await;
    assert_eq!(param(&back, "status").as_deref(), Some("connected"));
    assert_eq!(env.store.identities_of(first).await.unwrap().len(), 1);
}

#[tokio::test]
async fn bad_tokens_and_foreign_redirects_never_reach_the_provider() {
    let env = connect_gateway::start().await;
    let (_, token) = env.user("bad@example.com", "default").await;
    let c = common::client();

    let resp = c
        .get(env.dialog_url(&env.integrator.url("/done"), "not-a-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers().contains_key("www-authenticate"));
    assert!(resp.headers().get("location").is_none());

    let q = form_urlencoded::Serializer::new(String::new())
        .append_pair("redirect_uri", &env.integrator.url("/done"))
        .finish();
    let resp = c
        .get(env.gw.url(&format!("/facebook/oauth_dialog?{q}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "no token at all");

    for bad in [
        "https://evil.example.com/done".to_string(),
        env.integrator.url("/doneX"),
        env.integrator.url("/other"),
        "http://127.0.0.1:1/done".to_string(),
    ] {
        let resp = c.get(env.dialog_url(&bad, &token)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert!(
            resp.headers().get("location").is_none(),
            "never redirected: {bad}"
        );
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "invalid_redirect_uri");
    }
    assert_eq!(env.provider.authorize_calls.load(Ordering::SeqCst), 0);
    assert!(env.integrator.hits().is_empty());
}

#[tokio::test]
async fn without_an_encryption_key_linking_is_refused() {
    let env = connect_gateway::start_with_key("CONNECT_TEST_KEY_THAT_IS_NOT_SET").await;
    let (_, token) = env.user("nokey@example.com", "default").await;
    let resp = common::client()
        .get(env.dialog_url(&env.integrator.url("/done"), &token))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.headers().get("location").is_none());
}

#[tokio::test]
async fn identities_api_lists_and_unlinks_for_the_user_or_an_admin() {
    let env = connect_gateway::start().await;
    let (ann, t_ann) = env.user("ann2@example.com", "default").await;
    let (_bob, t_bob) = env.user("bob2@example.com", "default").await;
    let (_adm, t_adm) = env.user("root@example.com", "admin").await;
    let (back, _) = run_flow(&env, &t_ann).await;
    assert_eq!(param(&back, "status").as_deref(), Some("connected"));
    let c = common::client();
    let list_url = env.gw.url(&format!("/api/v1/users/{ann}/identities"));

    let resp = c
        .get(&list_url)
        .bearer_auth(&t_ann)
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    // The preflight of the identities API allows the DELETE that unlinks.
    let pre = c
        .request(reqwest::Method::OPTIONS, &list_url)
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "DELETE")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        pre.headers()["access-control-allow-methods"],
        "GET, DELETE, OPTIONS"
    );
    let text = resp.text().await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["identities"][0]["provider"], "facebook");
    assert_eq!(v["identities"][0]["provider_user_id"], "fb-1001");
    assert_eq!(v["identities"][0]["email"], "linked@example.com");
    for t in env.provider.issued_access_tokens() {
        assert!(!text.contains(&t), "provider token in the listing");
    }
    assert!(!text.contains("prov-rt-") && !text.contains("tokens"));

    assert_eq!(
        c.get(&list_url)
            .bearer_auth(&t_adm)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        c.get(&list_url)
            .bearer_auth(&t_bob)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        c.get(&list_url).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let missing = env.gw.url("/api/v1/users/987654/identities");
    assert_eq!(
        c.get(&missing)
            .bearer_auth(&t_adm)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );

    let del = env
        .gw
        .url(&format!("/api/v1/users/{ann}/identities/facebook"));
    let preflight = c
        .request(reqwest::Method::OPTIONS, &del)
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "DELETE")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), StatusCode::NO_CONTENT);
    assert!(preflight.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("DELETE"));
    assert_eq!(
        c.delete(&del)
            .bearer_auth(&t_bob)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(env.store.identities_of(ann).await.unwrap().len(), 1);
    assert_eq!(
        c.delete(&del)
            .bearer_auth(&t_ann)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    assert!(env.store.identities_of(ann).await.unwrap().is_empty());
    assert_eq!(
        c.delete(&del)
            .bearer_auth(&t_ann)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn concurrent_callbacks_with_one_state_link_once() {
    let env = connect_gateway::start().await;
    let (user, token) = env.user("race@example.com", "default").await;
    let c = common::client();
    let dialog = c
        .get(env.dialog_url(&env.integrator.url("/done"), &token))
        .send()
        .await
        .unwrap();
    let cookie = binding_cookie(&dialog);
    let at_provider = c.get(location(&dialog)).send().await.unwrap();
    let callback = location(&at_provider);

    let attempts = (0..8).map(|_| {
        let c = c.clone();
        let url = callback.clone();
        let cookie = cookie.clone();
        tokio::spawn(async move {
            c.get(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .status()
        })
    });
    let mut statuses = Vec::new();
    for a in attempts {
        statuses.push(a.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::FOUND).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::BAD_REQUEST)
            .count(),
        7,
        "{statuses:?}"
    );
    assert_eq!(env.provider.token_calls.load(Ordering::SeqCst), 1);
    assert_eq!(env.store.identities_of(user).await.unwrap().len(), 1);
}

/// The same flow on PostgreSQL (several replicas share one), in a database of its own.
#[tokio::test]
async fn full_flow_on_postgres() {
    common::pg::with_database("tollgate_connect", |url| async move {
        let env = connect_gateway::start_on(Some(&url), connect_gateway::KEY_ENV).await;
        let (first, t1) = env.user("pg1@example.com", "default").await;
        let (second, t2) = env.user("pg2@example.com", "default").await;
        let (back, callback, cookie) = run_flow_with_cookie(&env, &t1).await;
        assert_eq!(param(&back, "status").as_deref(), Some("connected"));
        let links = env.store.identities_of(first).await.unwrap();
        assert_eq!(links.len(), 1);
        let tokens = env.decrypt_tokens("facebook", "fb-1001", &links[0].tokens_encrypted);
        assert!(tokens["access_token"]
            .as_str()
            .unwrap()
            .starts_with("prov-at-"));

        let replay = common::client()
            .get(&callback)
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(replay.status(), StatusCode::BAD_REQUEST);

        let (back, _) = run_flow(&env, &t2).await;
        assert_eq!(param(&back, "error").as_deref(), Some("already_linked"));
        assert!(env.store.identities_of(second).await.unwrap().is_empty());
        env.gw
            .gateway
            .shutdown(std::time::Duration::from_secs(5))
            .await;
    })
    .await;
}

#[tokio::test]
async fn a_form_encoded_token_response_is_understood() {
    let env = connect_gateway::start().await;
    let (user, token) = env.user("form@example.com", "default").await;
    env.provider.set_mode(Mode::FormEncodedToken);
    let (back, _) = run_flow(&env, &token).await;
    assert_eq!(
        param(&back, "status").as_deref(),
        Some("connected"),
        "{back}"
    );
    let links = env.store.identities_of(user).await.unwrap();
    let tokens = env.decrypt_tokens("facebook", "fb-1001", &links[0].tokens_encrypted);
    assert_eq!(tokens["scope"], "read:user,user:email");
    assert!(tokens.get("refresh_token").is_none());
}

#[tokio::test]
async fn a_provider_slower_than_provider_timeout_fails_the_link_in_time() {
    let env = connect_gateway::start().await;
    let (user, token) = env.user("slow@example.com", "default").await;
    env.provider.set_mode(Mode::SlowToken);
    let started = std::time::Instant::now();
    let (back, _) = run_flow(&env, &token).await;
    assert_eq!(
        param(&back, "error").as_deref(),
        Some("token_exchange_failed")
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "bounded by connect.provider_timeout (3s), took {:?}",
        started.elapsed()
    );
    assert!(env.store.identities_of(user).await.unwrap().is_empty());
}

/// An attacker starts a dialog with their own token and gets a victim to open the consent
/// URL: the callback arrives in the victim's browser, without the attacker's cookie, and
/// links nothing — the victim's provider account never lands on the attacker's user.
#[tokio::test]
async fn a_consent_url_opened_in_another_browser_links_nothing() {
    let env = connect_gateway::start().await;
    let (attacker, token) = env.user("mallory@example.com", "default").await;
    let c = common::client();
    let dialog = c
        .get(env.dialog_url(&env.integrator.url("/done"), &token))
        .send()
        .await
        .unwrap();
    let consent_url = location(&dialog);

    // The victim's browser: no cookies from the attacker's session.
    let victim = common::client();
    env.provider.set_user("victim-fb-42", "victim@example.com");
    let at_provider = victim.get(&consent_url).send().await.unwrap();
    let done = victim.get(location(&at_provider)).send().await.unwrap();
    assert_eq!(done.status(), StatusCode::FOUND);
    let back = location(&done);
    assert_eq!(param(&back, "error").as_deref(), Some("browser_mismatch"));
    assert_eq!(
        env.provider.token_calls.load(Ordering::SeqCst),
        0,
        "the code was never exchanged"
    );
    assert!(env.store.identities_of(attacker).await.unwrap().is_empty());
}

/// Linking and unlinking are audit events with the user, the provider and the request, and
/// the audit line carries none of the provider's codes or tokens nor the user's bearer.
#[tokio::test]
async fn linking_and_unlinking_are_audited_without_secrets() {
    // The audit log is process-wide; this is the only test in this binary that moves it,
    // and it looks only for its own requests' events (user ids repeat across the tests'
    // stores).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    tollgate::audit::install(&tollgate::config::raw::Audit {
        destination: path.display().to_string(),
        max_bytes: 10 * 1024 * 1024,
        keep: 1,
    })
    .unwrap();
    let env = connect_gateway::start().await;
    let (ann, t_ann) = env.user("audited@example.com", "default").await;
    let (back, callback, link_request_id) = run_flow_with_request_id(&env, &t_ann).await;
    assert_eq!(param(&back, "status").as_deref(), Some("connected"));
    let del = env
        .gw
        .url(&format!("/api/v1/users/{ann}/identities/facebook"));
    let resp = common::client()
        .delete(&del)
        .bearer_auth(&t_ann)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let unlink_request_id = resp.headers()["x-request-id"].to_str().unwrap().to_string();

    let text = std::fs::read_to_string(&path).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &serde_json::Value| {
            e["request_id"] == link_request_id.as_str()
                || e["request_id"] == unlink_request_id.as_str()
        })
        .collect();
    let linked = events
        .iter()
        .find(|e| e["event"] == "provider_linked")
        .unwrap_or_else(|| panic!("no provider_linked in {events:#?}"));
    assert_eq!(linked["outcome"], "success");
    assert_eq!(linked["provider"], "facebook");
    assert_eq!(linked["target"], "tollgate::audit");
    assert_eq!(linked["peer_ip"], "127.0.0.1");
    assert_eq!(linked["user_id"], ann.to_string().as_str());
    let unlinked = events
        .iter()
        .find(|e| e["event"] == "provider_unlinked")
        .unwrap_or_else(|| panic!("no provider_unlinked in {events:#?}"));
    assert_eq!(unlinked["outcome"], "success");
    assert_eq!(unlinked["provider"], "facebook");
    assert_eq!(unlinked["request_id"], unlink_request_id.as_str());
    assert_eq!(unlinked["user_id"], ann.to_string().as_str());

    let code = param(&callback, "code").unwrap();
    let state = param(&callback, "state").unwrap();
    assert!(
        !text.contains(&t_ann),
        "the user's bearer token in the audit log"
    );
    assert!(
        !text.contains(&code),
        "the provider's code in the audit log"
    );
    assert!(!text.contains(&state), "the connect state in the audit log");
    for t in env.provider.issued_access_tokens() {
        assert!(!text.contains(&t), "a provider token in the audit log");
    }
    assert!(
        !text.contains("prov-rt-"),
        "a provider refresh token in the audit log"
    );
}
