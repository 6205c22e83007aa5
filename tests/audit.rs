//! The security audit log: every event a client can cause, driven over real sockets,
//! written to a file, checked for shape and for the absence of anything secret.

mod common;

use std::collections::HashSet;

use serde_json::Value;
use tollgate::config::raw::Audit;

use common::client;
use common::oauth::{TokenGateway, BASIC_CLIENT};

const COMMON_FIELDS: [&str; 10] = [
    "time",
    "target",
    "event",
    "outcome",
    "reason",
    "user_id",
    "client_id",
    "peer_ip",
    "request_id",
    "trace_id",
];

fn read_events(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn find<'a>(events: &'a [Value], event: &str, outcome: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["event"] == event && e["outcome"] == outcome)
        .unwrap_or_else(|| panic!("no {event}/{outcome} in {events:#?}"))
}

async fn token_request(tg: &TokenGateway, basic: (&str, &str), form: &[(&str, &str)]) -> u16 {
    client()
        .post(tg.url("/oauth/token"))
        .basic_auth(basic.0, Some(basic.1))
        .form(form)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn every_security_event_is_one_json_line_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    tollgate::audit::install(&Audit {
        destination: path.display().to_string(),
        max_bytes: 10 * 1024 * 1024,
        keep: 1,
    })
    .unwrap();
    let tg = TokenGateway::start_with(
        "  login_throttle:\n    per_account: 3\n    per_ip: 1000\n",
        "users_api:\n  registration: admin\n",
    )
    .await;
    let mut secrets: Vec<String> = vec![
        "password".into(),
        "john_doe_secret".into(),
        "customerPassword".into(),
        "wrong-password".into(),
        "adminpw-0123".into(),
        "new-user-pw-0123".into(),
        BASIC_CLIENT.1.into(),
        "not-the-secret".into(),
    ];

    // Sign-in: success and failure (wrong password).
    let t1 = tg.password_token("user_1", "password").await;
    let basic = (BASIC_CLIENT.0, BASIC_CLIENT.1);
    let pw = |u: &'static str, p: &'static str| {
        vec![("grant_type", "password"), ("username", u), ("password", p)]
    };
    assert_eq!(
        token_request(&tg, basic, &pw("user_1", "wrong-password")).await,
        400
    );
    // Throttled: the fourth attempt on one account within a minute.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(token_request(&tg, basic, &pw("john_doe", "wrong-password")).await);
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    // Client authentication failure.
    assert_eq!(
        token_request(
            &tg,
            (BASIC_CLIENT.0, "not-the-secret"),
            &pw("user_1", "password")
        )
        .await,
        401
    );

    // Refresh rotation, then reuse of the rotated token: the family is revoked.
    let rt1 = t1["refresh_token"].as_str().unwrap().to_owned();
    let (status, t2) = tg.refresh(&rt1).await;
    assert_eq!(status, 200);
    let (status, _) = tg.refresh(&rt1).await;
    assert_eq!(status, 400);

    // Revocation of an access token.
    let t3 = tg
        .password_token("customerUsername", "customerPassword")
        .await;
    let at3 = t3["access_token"].as_str().unwrap().to_owned();
    let r = client()
        .post(tg.url("/oauth/revoke"))
        .basic_auth(BASIC_CLIENT.0, Some(BASIC_CLIENT.1))
        .form(&[("token", at3.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Admin user changes: an admin creates a user; a non-admin is refused.
    tg.user("root", "root@example.com", "adminpw-0123", "admin")
        .await;
    let admin = tg.password_token("root", "adminpw-0123").await;
    let create = |token: String| {
        let url = tg.url("/api/v1/users");
        async move {
            client()
                .post(url)
                .bearer_auth(token)
                .json(&serde_json::json!({"user": {"email": "new@example.com", "password": "new-user-pw-0123"}}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        create(admin["access_token"].as_str().unwrap().to_owned()).await,
        200
    );
    let plain = tg
        .password_token("customerUsername", "customerPassword")
        .await;
    assert_eq!(
        create(plain["access_token"].as_str().unwrap().to_owned()).await,
        403
    );

    // Config reloads: accepted (the file as it is), refused (a broken file).
    tg.gw.gateway.app.reload().unwrap();
    std::fs::write(&tg.gw.config_path, "routes: [{ name: x }]\n").unwrap();
    assert!(tg.gw.gateway.app.reload().is_err());

    for t in [&t1, &t2, &t3, &admin, &plain] {
        for k in ["access_token", "refresh_token"] {
            if let Some(s) = t[k].as_str() {
                secrets.push(s.to_owned());
            }
        }
    }

    let events = read_events(&path);
    for e in &events {
        for f in COMMON_FIELDS {
            assert!(e.get(f).is_some(), "field {f} missing in {e}");
        }
        assert_eq!(e["target"], "tollgate::audit");
        assert!(
            e["outcome"] == "success" || e["outcome"] == "failure",
            "{e}"
        );
        assert!(e["trace_id"].is_null());
        chrono::DateTime::parse_from_rfc3339(e["time"].as_str().unwrap()).unwrap();
    }
    let text = std::fs::read_to_string(&path).unwrap();
    for s in &secrets {
        assert!(!text.contains(s.as_str()), "the audit log holds `{s}`");
    }
    let user_names = ["\"user_1\"", "\"john_doe\"", "\"customerUsername\""];
    for n in user_names {
        assert!(!text.contains(n), "typed user name {n} in the audit log");
    }

    let ok = find(&events, "sign_in", "success");
    assert_eq!(ok["client_id"], BASIC_CLIENT.0);
    assert!(ok["user_id"].is_string());
    assert_eq!(ok["peer_ip"], "127.0.0.1");
    assert!(ok["request_id"].is_string());
    let fail = find(&events, "sign_in", "failure");
    assert_eq!(fail["reason"], "bad_credentials");
    assert_eq!(fail["user_id"], ok["user_id"]);
    assert_eq!(
        find(&events, "sign_in_throttled", "failure")["reason"],
        "account"
    );
    assert_eq!(
        find(&events, "client_auth", "failure")["reason"],
        "bad_secret"
    );
    assert_eq!(
        find(&events, "refresh_rotated", "success")["user_id"],
        ok["user_id"]
    );
    let reuse = find(&events, "refresh_reuse", "failure");
    assert_eq!(reuse["reason"], "family_revoked");
    assert!(reuse["revoked_tokens"].as_u64().unwrap() >= 1);
    assert_eq!(
        find(&events, "token_revoked", "success")["token_kind"],
        "access_token"
    );
    let created = find(&events, "user_created", "success");
    assert!(created["actor_id"].is_string());
    assert_eq!(created["role"], "default");
    assert_eq!(
        find(&events, "user_created", "failure")["reason"],
        "not_admin"
    );
    assert!(find(&events, "config_reload", "success")["request_id"].is_null());
    assert_eq!(
        find(&events, "config_reload", "failure")["reason"],
        "invalid_config"
    );
    assert!(find(&events, "signing_keys_loaded", "success")["kid"].is_string());

    let names: HashSet<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    eprintln!("audit events seen: {names:?}");
}
