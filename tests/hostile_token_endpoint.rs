//! The token endpoint under hostile input and faults: content types and encodings it
//! must not guess at, repeated parameters (RFC 6749 §3.2), bodies over the cap, grants a
//! client may not use, concurrent and failing refresh rotations, and user enumeration.
//! What `oauth_errors.rs` and `oauth_refresh.rs` already cover is not repeated here.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::oauth::{
    assert_keys, assert_no_store, TokenGateway, BASIC_CLIENT, DRAFT10_CLIENT, JSON_CLIENT,
    RESOURCE_SERVER,
};
use common::relay::Relay;
use common::{client, wait_until};
use serde_json::{json, Value};
use sqlx::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tollgate::crypto::sha256_hex;
use tollgate::store::TokenKind;

const SIGN_IN: &str = "/user-management-services-ws/oauth2/002/signInWithPassword";

/// Posts `body` with `content_type` (none when `None`) to `path`, with Basic auth.
async fn post(
    gw: &TokenGateway,
    path: &str,
    content_type: Option<&str>,
    basic: Option<(&str, &str)>,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let mut req = client().post(gw.url(path)).body(body);
    if let Some(ct) = content_type {
        req = req.header("Content-Type", ct);
    }
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    req.send().await.unwrap()
}

/// Asserts an OAuth error answer (§5.2 shape, `no-store`) and returns (status, error).
async fn oauth_error(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    assert_no_store(&resp);
    let body: Value = resp.json().await.unwrap();
    assert_keys(&body, &["error", "error_description"]);
    (status, body["error"].as_str().unwrap().to_string())
}

fn invalid_request() -> (u16, String) {
    (400, "invalid_request".into())
}

const FORM: &str = "application/x-www-form-urlencoded";

/// The reference dialects, with login throttling out of the way of the many attempts
/// these tests make.
async fn gateway() -> TokenGateway {
    TokenGateway::start_with(
        "  login_throttle:\n    per_account: 1000\n    per_ip: 1000\n",
        "",
    )
    .await
}
const JOHN: &str = "grant_type=password&username=john_doe&password=john_doe_secret";

#[tokio::test]
async fn only_form_and_json_bodies_in_utf8_are_read() {
    let gw = gateway().await;
    let b = Some(BASIC_CLIENT);
    // A form body is only read as a form: the same fields under another type are
    // refused, not guessed at.
    for ct in [
        "text/plain",
        "text/plain; charset=utf-8",
        "multipart/form-data; boundary=x",
        "application/xml",
        "application/octet-stream",
        "application/x-www-form-urlencoded; charset=iso-8859-1",
        "application/x-www-form-urlencoded; charset=utf-16",
        "form",
    ] {
        let r = post(&gw, "/oauth/token", Some(ct), b, JOHN).await;
        assert_eq!(oauth_error(r).await, invalid_request(), "{ct}");
    }
    // A real multipart body carrying a valid password grant.
    let multipart = "--x\r\nContent-Disposition: form-data; name=\"grant_type\"\r\n\r\npassword\r\n\
         --x\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\njohn_doe\r\n\
         --x\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\njohn_doe_secret\r\n--x--\r\n";
    let r = post(
        &gw,
        "/oauth/token",
        Some("multipart/form-data; boundary=x"),
        b,
        multipart,
    )
    .await;
    assert_eq!(oauth_error(r).await, invalid_request());
    // JSON under a form type is a broken form, and a form under a JSON type broken JSON.
    let json_body =
        json!({"grant_type": "password", "username": "john_doe", "password": "john_doe_secret"})
            .to_string();
    let r = post(&gw, "/oauth/token", Some(FORM), b, json_body.clone()).await;
    assert_eq!(oauth_error(r).await, invalid_request());
    let r = post(&gw, "/oauth/token", Some("application/json"), b, JOHN).await;
    assert_eq!(oauth_error(r).await, invalid_request());
    // signInWithPassword documents `Content-Type: application/json`: its JSON under
    // text/plain (a type a browser sends cross-site without a preflight) is refused.
    let sign_in = json!({"username": "customerUsername", "password": "customerPassword"});
    let r = post(&gw, SIGN_IN, Some("text/plain"), None, sign_in.to_string()).await;
    assert_eq!(oauth_error(r).await, invalid_request());
    let r = post(
        &gw,
        SIGN_IN,
        Some("application/json; charset=utf-16"),
        None,
        sign_in.to_string(),
    )
    .await;
    assert_eq!(oauth_error(r).await, invalid_request());
    // Two Content-Type headers are ambiguous.
    let r = client()
        .post(gw.url(SIGN_IN))
        .header("Content-Type", "application/json")
        .header("Content-Type", "text/plain")
        .body(sign_in.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(oauth_error(r).await, invalid_request());

    // What the dialects send is still read: charset parameters in any case, type names
    // in any case, and a body without a type (sniffed, as some legacy clients send it).
    for (ct, body) in [
        (
            Some("application/x-www-form-urlencoded; charset=UTF-8"),
            JOHN.to_string(),
        ),
        (Some("Application/X-WWW-Form-URLEncoded"), JOHN.to_string()),
        (
            Some("application/json; charset=\"utf-8\""),
            json_body.clone(),
        ),
        (None, JOHN.to_string()),
        (None, json_body.clone()),
    ] {
        let r = post(&gw, "/oauth/token", ct, b, body).await;
        assert_eq!(r.status(), 200, "{ct:?}");
    }
    let r = post(
        &gw,
        SIGN_IN,
        Some("application/json; charset=utf-8"),
        None,
        sign_in.to_string(),
    )
    .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn malformed_json_is_invalid_request_in_every_json_dialect() {
    let gw = gateway().await;
    let deep = format!(
        "{{\"username\":{}{}}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let bad: Vec<Vec<u8>> = vec![
        b"{".to_vec(),
        b"{\"username\":\"customerUsername\",".to_vec(),
        br#"{"username":"customerUsername","password":"customerPassword"} trailing"#.to_vec(),
        br#"{"username":"customerUsername","password":"customerPassword"}{}"#.to_vec(),
        br#"["customerUsername","customerPassword"]"#.to_vec(),
        br#""customerUsername""#.to_vec(),
        br#"{"username":{"$ne":null},"password":"customerPassword"}"#.to_vec(),
        br#"{"username":["customerUsername"],"password":"customerPassword"}"#.to_vec(),
        br#"{"username":"customerUsername","password":"\ud800"}"#.to_vec(),
        b"{\"username\":\"customerUsername\",\"password\":\"\xff\"}".to_vec(),
        br#"{"username":"customerUsername\u0000","password":"customerPassword"}"#.to_vec(),
        br#"{"username":"customerUsername","password":1e999}"#.to_vec(),
        deep.into_bytes(),
    ];
    for body in &bad {
        let shown = String::from_utf8_lossy(&body[..body.len().min(60)]).into_owned();
        let r = post(&gw, SIGN_IN, Some("application/json"), None, body.clone()).await;
        assert_eq!(oauth_error(r).await, invalid_request(), "signIn {shown}");
        let r = post(
            &gw,
            "/oauth/token?grant_type=password",
            Some("application/json"),
            None,
            body.clone(),
        )
        .await;
        assert_eq!(oauth_error(r).await, invalid_request(), "query {shown}");
    }
}

#[tokio::test]
async fn malformed_forms_are_invalid_request_not_decoded_leniently() {
    let gw = gateway().await;
    let b = Some(BASIC_CLIENT);
    for body in [
        &b"grant_type=password&username=john_doe&password=%zzjohn_doe_secret"[..],
        b"grant_type=password&username=john_doe&password=john_doe_secret%4",
        b"grant_type=password&username=john_doe&password=john_doe_secret%",
        b"grant_type=password&username=john_doe%FF&password=john_doe_secret",
        b"grant_type=password&username=john_doe&password=\xffjohn_doe_secret",
        b"grant_type=password&username=john_doe%00&password=john_doe_secret",
        b"grant_type=password&user%C0name=john_doe&password=john_doe_secret",
    ] {
        let r = post(&gw, "/oauth/token", Some(FORM), b, body.to_vec()).await;
        assert_eq!(
            oauth_error(r).await,
            invalid_request(),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    // Lenient decoding would turn every invalid byte into U+FFFD, so a user whose
    // password holds U+FFFD could be signed in with any invalid byte in its place.
    gw.user(
        "replacement",
        "replacement@example.com",
        "\u{FFFD}pw",
        "default",
    )
    .await;
    for body in [
        "grant_type=password&username=replacement&password=%FFpw",
        "grant_type=password&username=replacement&password=%FEpw",
    ] {
        let r = post(&gw, "/oauth/token", Some(FORM), b, body).await;
        assert_eq!(oauth_error(r).await, invalid_request(), "{body}");
    }
    let r = post(
        &gw,
        "/oauth/token",
        Some(FORM),
        b,
        "grant_type=password&username=replacement&password=%EF%BF%BDpw",
    )
    .await;
    assert_eq!(r.status(), 200, "the password spelled correctly");
    // The same strictness for the client's Basic credentials (RFC 6749 §2.3.1: both
    // parts form-encoded).
    use base64::Engine;
    for creds in ["138:%FF", "138:%zz", "%FF138:x"] {
        let r = client()
            .post(gw.url("/oauth/token"))
            .header(
                "Authorization",
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(creds)
                ),
            )
            .header("Content-Type", FORM)
            .body(JOHN)
            .send()
            .await
            .unwrap();
        assert_eq!(
            oauth_error(r).await,
            (401, "invalid_client".into()),
            "{creds}"
        );
    }
}

#[tokio::test]
async fn a_repeated_parameter_is_refused_never_last_one_wins() {
    let gw = gateway().await;
    let b = Some(BASIC_CLIENT);
    // The right value last: a "last one wins" parser would sign these in.
    for body in [
        "grant_type=password&grant_type=password&username=john_doe&password=john_doe_secret",
        "grant_type=password&username=john_doe&password=wrong&password=john_doe_secret",
        "grant_type=password&username=nobody&username=john_doe&password=john_doe_secret",
        "grant_type=password&username=john_doe&password=&password=john_doe_secret",
        "grant_type=password&username=john_doe&password=john_doe_secret&scope=&scope=",
    ] {
        let r = post(&gw, "/oauth/token", Some(FORM), b, body).await;
        assert_eq!(oauth_error(r).await, invalid_request(), "{body}");
    }
    // The client named twice, or differently in Basic and the body.
    let r = post(
        &gw,
        "/oauth/token",
        Some(FORM),
        None,
        format!("{JOHN}&client_id={DRAFT10_CLIENT}&client_id={DRAFT10_CLIENT}"),
    )
    .await;
    assert_eq!(oauth_error(r).await, invalid_request());
    let r = post(
        &gw,
        "/oauth/token",
        Some(FORM),
        b,
        format!("{JOHN}&client_id={}", JSON_CLIENT.0),
    )
    .await;
    assert_eq!(oauth_error(r).await, invalid_request());
    // Repeated JSON keys, also when spelled with escapes.
    for body in [
        r#"{"username":"customerUsername","password":"x","password":"customerPassword"}"#,
        r#"{"username":"customerUsername","password":"x","pass\u0077ord":"customerPassword"}"#,
        r#"{"username":"nobody","username":"customerUsername","password":"customerPassword"}"#,
        r#"{"username":"customerUsername","password":null,"password":"customerPassword"}"#,
    ] {
        let r = post(&gw, SIGN_IN, Some("application/json"), None, body).await;
        assert_eq!(oauth_error(r).await, invalid_request(), "{body}");
    }
    let r = post(
        &gw,
        "/oauth/token?grant_type=password",
        Some("application/json"),
        None,
        format!(
            r#"{{"username":"person1@example.com","password":"password","client_id":"{0}","client_id":"{0}","client_secret":"{1}"}}"#,
            JSON_CLIENT.0, JSON_CLIENT.1
        ),
    )
    .await;
    assert_eq!(oauth_error(r).await, invalid_request());
    // grant_type twice in the query.
    let r = post(
        &gw,
        "/oauth/token?grant_type=password&grant_type=password",
        Some("application/json"),
        None,
        json!({"username": "person1@example.com", "password": "password",
               "client_id": JSON_CLIENT.0, "client_secret": JSON_CLIENT.1})
        .to_string(),
    )
    .await;
    assert_eq!(oauth_error(r).await, invalid_request());
}

/// Sends a request head and `sent` body bytes of a body that claims to be (or, chunked,
/// goes on being) much larger, then reads the answer without sending more.
async fn huge_body(gw: &TokenGateway, framing: &str, sent: usize) -> String {
    let addr = gw.base.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", BASIC_CLIENT.0, BASIC_CLIENT.1));
    let head = format!(
        "POST /oauth/token HTTP/1.1\r\nHost: t\r\nContent-Type: {FORM}\r\n\
         Authorization: Basic {basic}\r\n{framing}\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut body = Vec::new();
    let filler = format!("grant_type=password&username={}", "a".repeat(sent));
    if framing.contains("chunked") {
        for piece in filler.as_bytes().chunks(8192) {
            body.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            body.extend_from_slice(piece);
            body.extend_from_slice(b"\r\n");
        }
    } else {
        body.extend_from_slice(filler.as_bytes());
    }
    // The gateway may answer and close before it has read all of this.
    let _ = s.write_all(&body).await;
    let mut answer = Vec::new();
    // A hang guard, not a timing assertion: the body is never finished, so only an
    // answer that does not wait for it arrives.
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    if answer.windows(4).any(|w| w == b"\r\n\r\n")
                        && answer.windows(15).any(|w| w == b"invalid_request")
                    {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "no answer while the body was still coming ({framing})"
    );
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn bodies_over_the_cap_are_refused_without_reading_them() {
    let gw = gateway().await;
    // A declared length over the cap: refused before any of the body is read.
    let answer = huge_body(&gw, "Content-Length: 1073741824\r\n", 1024).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("invalid_request"), "{answer}");
    assert!(answer
        .to_ascii_lowercase()
        .contains("cache-control: no-store"));
    // A chunked body that keeps going: cut off at the cap (64 KiB), not buffered to
    // the end that never comes.
    let answer = huge_body(&gw, "Transfer-Encoding: chunked\r\n", 96 * 1024).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("invalid_request"), "{answer}");
    // One parameter over its own cap inside a body under the cap.
    let r = post(
        &gw,
        SIGN_IN,
        Some("application/json"),
        None,
        json!({"username": "customerUsername", "password": "p".repeat(5000)}).to_string(),
    )
    .await;
    assert_eq!(oauth_error(r).await, invalid_request());
    // The gateway still serves.
    let r = post(&gw, "/oauth/token", Some(FORM), Some(BASIC_CLIENT), JOHN).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn unknown_grant_types_are_unsupported_in_every_dialect() {
    let gw = gateway().await;
    let grants = [
        "PASSWORD",
        "Password",
        "password%20",
        "%20password",
        "password%0A",
        "refresh_token%2Cpassword",
        "authorization_code%20",
        "implicit",
        "token",
        "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer",
        "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code",
        "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange",
    ];
    for g in grants {
        let r = post(
            &gw,
            "/oauth/token",
            Some(FORM),
            Some(BASIC_CLIENT),
            format!("grant_type={g}&username=john_doe&password=john_doe_secret"),
        )
        .await;
        assert_eq!(
            oauth_error(r).await,
            (400, "unsupported_grant_type".into()),
            "form {g}"
        );
        let r = post(
            &gw,
            &format!("/oauth/token?grant_type={g}"),
            Some("application/json"),
            None,
            json!({"username": "person1@example.com", "password": "password",
                   "client_id": JSON_CLIENT.0, "client_secret": JSON_CLIENT.1})
            .to_string(),
        )
        .await;
        assert_eq!(
            oauth_error(r).await,
            (400, "unsupported_grant_type".into()),
            "query {g}"
        );
    }
    // A dialect with an implied grant still refuses a named unknown one.
    let r = post(
        &gw,
        SIGN_IN,
        Some("application/json"),
        None,
        json!({"grant_type": "implicit", "username": "customerUsername", "password": "customerPassword"})
            .to_string(),
    )
    .await;
    assert_eq!(oauth_error(r).await, (400, "unsupported_grant_type".into()));
}

#[tokio::test]
async fn public_clients_never_get_client_credentials() {
    let gw = gateway().await;
    gw.client("public-cc", None, &["client_credentials"], &["read"])
        .await;
    let unauthorized = (400, "unauthorized_client".to_string());
    // The draft-10 public client, by form and by JSON.
    let r = post(
        &gw,
        "/oauth/token",
        Some(FORM),
        None,
        format!("grant_type=client_credentials&client_id={DRAFT10_CLIENT}"),
    )
    .await;
    assert_eq!(oauth_error(r).await, unauthorized);
    let r = post(
        &gw,
        "/oauth/authorize",
        Some("application/json"),
        None,
        json!({"grant_type": "client_credentials", "client_id": DRAFT10_CLIENT}).to_string(),
    )
    .await;
    assert_eq!(oauth_error(r).await, unauthorized);
    // A public client whose grant list (wrongly) names client_credentials, with no
    // secret, an empty one in the body, or an empty one in Basic.
    for (basic, body) in [
        (
            None,
            "grant_type=client_credentials&client_id=public-cc&scope=read",
        ),
        (
            None,
            "grant_type=client_credentials&client_id=public-cc&client_secret=",
        ),
        (Some(("public-cc", "")), "grant_type=client_credentials"),
    ] {
        let r = post(&gw, "/oauth/token", Some(FORM), basic, body).await;
        assert_eq!(oauth_error(r).await, unauthorized, "{body}");
    }
    // The implied client of signInWithPassword is public too.
    let r = post(
        &gw,
        SIGN_IN,
        Some("application/json"),
        None,
        json!({"grant_type": "client_credentials"}).to_string(),
    )
    .await;
    assert_eq!(oauth_error(r).await, unauthorized);
}

#[tokio::test]
async fn a_client_only_uses_the_grants_it_is_allowed() {
    let gw = gateway().await;
    let unauthorized = (400, "unauthorized_client".to_string());
    // A client_credentials-only client with a user's correct password.
    let r = post(&gw, "/oauth/token", Some(FORM), Some(RESOURCE_SERVER), JOHN).await;
    assert_eq!(oauth_error(r).await, unauthorized);
    // A client allowed the password grant only: its tokens carry no refresh token...
    gw.client(
        "password-only",
        Some("po-secret-0123456789"),
        &["password"],
        &[],
    )
    .await;
    let po = ("password-only", "po-secret-0123456789");
    let r = post(&gw, "/oauth/token", Some(FORM), Some(po), JOHN).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert!(body.get("refresh_token").is_none(), "{body}");
    // ... and it may not refresh, even with a refresh token it got hold of.
    let theirs = gw.password_token("john_doe", "john_doe_secret").await;
    let stolen = theirs["refresh_token"].as_str().unwrap().to_string();
    for who in [po, RESOURCE_SERVER] {
        let r = post(
            &gw,
            "/oauth/token",
            Some(FORM),
            Some(who),
            format!("grant_type=refresh_token&refresh_token={stolen}"),
        )
        .await;
        assert_eq!(oauth_error(r).await, unauthorized, "{}", who.0);
    }
    // Refusing them neither used nor revoked the token.
    assert_eq!(gw.refresh(&stolen).await.0, 200);
}

/// Whether a refresh token can still be exchanged: known, not rotated, not revoked,
/// not expired.
async fn is_live(gw: &TokenGateway, token: &str) -> bool {
    gw.store
        .token_by_hash(TokenKind::Refresh, &sha256_hex(token))
        .await
        .unwrap()
        .is_some_and(|r| {
            r.rotated_at.is_none() && r.revoked_at.is_none() && r.expires_at > chrono::Utc::now()
        })
}

fn family_of_sql() -> &'static str {
    "SELECT COUNT(*) FROM tokens WHERE kind = 'refresh' AND family_id = $1 \
     AND rotated_at IS NULL AND revoked_at IS NULL"
}

/// 16 refreshes of one refresh token at once; returns (statuses, new refresh tokens, r1).
async fn refresh_stampede(gw: &Arc<TokenGateway>) -> (Vec<(u16, Value)>, Vec<String>, String) {
    let first = gw.password_token("john_doe", "john_doe_secret").await;
    let r1 = first["refresh_token"].as_str().unwrap().to_string();
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (gw, r1, barrier) = (gw.clone(), r1.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                gw.refresh(&r1).await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let issued = answers
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, b)| b["refresh_token"].as_str().unwrap().to_string())
        .collect();
    (answers, issued, r1)
}

/// With no grace window: one refresh wins, every other is reuse, and reuse revokes the
/// whole family, including the winner's new token, however the requests interleave.
async fn concurrent_refreshes_leave_no_second_chain(gw: Arc<TokenGateway>) {
    let (answers, issued, r1) = refresh_stampede(&gw).await;
    for (status, body) in &answers {
        assert!(
            *status == 200 || (*status == 400 && body["error"] == "invalid_grant"),
            "{status} {body}"
        );
    }
    assert_eq!(issued.len(), 1, "exactly one refresh wins: {answers:?}");
    assert!(!is_live(&gw, &r1).await, "the presented token is used up");
    let live = futures_count(&gw, &issued).await;
    assert_eq!(
        live, 0,
        "reuse was detected, so no token of the family is live"
    );
    for t in issued.iter().chain([&r1]) {
        assert_eq!(gw.refresh(t).await.0, 400);
    }
}

async fn futures_count(gw: &TokenGateway, tokens: &[String]) -> usize {
    let mut n = 0;
    for t in tokens {
        if is_live(gw, t).await {
            n += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_of_one_token_leave_at_most_one_chain() {
    concurrent_refreshes_leave_no_second_chain(Arc::new(TokenGateway::start("").await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_of_one_token_leave_at_most_one_chain_on_postgres() {
    common::pg::with_database("hostile_refresh", |url| async move {
        let gw = TokenGateway::start_on(Some(&url), "", "").await;
        concurrent_refreshes_leave_no_second_chain(Arc::new(gw)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inside_the_grace_window_each_concurrent_refresh_is_its_own_live_branch() {
    let gw = Arc::new(TokenGateway::start_with("  refresh:\n    reuse_grace: 1h\n", "").await);
    let (answers, issued, r1) = refresh_stampede(&gw).await;
    assert!(
        answers.iter().all(|(s, _)| *s == 200),
        "the documented rule: a just-rotated token is honoured inside the window: {answers:?}"
    );
    let mut distinct = issued.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 16, "every branch has its own token");
    assert_eq!(futures_count(&gw, &issued).await, 16);
    assert!(!is_live(&gw, &r1).await);
}

/// Live refresh tokens of `r1`'s family, counted in the database itself.
async fn live_in_family_sqlite(gw: &TokenGateway, r1: &str) -> i64 {
    let family = gw
        .store
        .token_by_hash(TokenKind::Refresh, &sha256_hex(r1))
        .await
        .unwrap()
        .unwrap()
        .family_id;
    let mut db = sqlite(gw).await;
    sqlx::query_scalar(sqlx::AssertSqlSafe(family_of_sql().replace("$1", "?")))
        .bind(family)
        .fetch_one(&mut db)
        .await
        .unwrap()
}

async fn sqlite(gw: &TokenGateway) -> sqlx::SqliteConnection {
    sqlx::SqliteConnection::connect(&format!(
        "sqlite://{}",
        gw.dir.path().join("tollgate.db").display()
    ))
    .await
    .unwrap()
}

#[tokio::test]
async fn a_write_failing_mid_rotation_leaves_the_old_token_valid() {
    let gw = TokenGateway::start("").await;
    let r1 = gw.password_token("john_doe", "john_doe_secret").await["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    // The store refuses the new refresh token after the old one would have been
    // marked rotated.
    let mut db = sqlite(&gw).await;
    sqlx::query(
        "CREATE TRIGGER fail_refresh_insert BEFORE INSERT ON tokens WHEN NEW.kind = 'refresh' \
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
    )
    .execute(&mut db)
    .await
    .unwrap();
    let (status, body) = gw.refresh(&r1).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"], "server_error");
    assert!(
        !body.to_string().contains("injected"),
        "no store detail in the body"
    );
    assert!(
        is_live(&gw, &r1).await,
        "all or nothing: the old token is untouched"
    );
    assert_eq!(live_in_family_sqlite(&gw, &r1).await, 1);
    sqlx::query("DROP TRIGGER fail_refresh_insert")
        .execute(&mut db)
        .await
        .unwrap();
    // The client retries with the same token.
    let (status, body) = gw.refresh(&r1).await;
    assert_eq!(status, 200, "{body}");
    assert!(!is_live(&gw, &r1).await);
    assert!(is_live(&gw, body["refresh_token"].as_str().unwrap()).await);
    assert_eq!(live_in_family_sqlite(&gw, &r1).await, 1, "never two valid");
}

#[tokio::test]
async fn a_locked_store_during_rotation_is_503_and_the_old_token_stays_valid() {
    let gw = TokenGateway::start("").await;
    let r1 = gw.password_token("john_doe", "john_doe_secret").await["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    // Another writer holds SQLite's write lock: the refresh can read its token but not
    // rotate it (it waits the store's busy timeout, then gives up).
    let mut db = sqlite(&gw).await;
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut db)
        .await
        .unwrap();
    let (status, body) = gw.refresh(&r1).await;
    sqlx::query("ROLLBACK").execute(&mut db).await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable");
    assert!(is_live(&gw, &r1).await);
    let (status, _) = gw.refresh(&r1).await;
    assert_eq!(status, 200);
    assert_eq!(live_in_family_sqlite(&gw, &r1).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_connection_lost_mid_rotation_is_503_and_the_old_token_stays_valid_on_postgres() {
    common::pg::with_database("hostile_rotation", |url| async move {
        let mut via_relay = url::Url::parse(&url).unwrap();
        let target = format!(
            "{}:{}",
            via_relay.host_str().unwrap(),
            via_relay.port().unwrap_or(5432)
        );
        let relay = Relay::start(target.parse().unwrap()).await;
        via_relay.set_port(Some(relay.addr.port())).unwrap();
        let gw = TokenGateway::start_on(Some(via_relay.as_str()), "", "").await;
        let r1 = gw.password_token("john_doe", "john_doe_secret").await["refresh_token"]
            .as_str()
            .unwrap()
            .to_string();
        let family = gw
            .store
            .token_by_hash(TokenKind::Refresh, &sha256_hex(&r1))
            .await
            .unwrap()
            .unwrap()
            .family_id;

        // Directly, not through the relay: a trigger makes the insert of the new refresh
        // token wait for an advisory lock this test holds, so the rotation is caught
        // between marking the old token and storing the new one.
        let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query(
            "CREATE FUNCTION stall_refresh() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN PERFORM pg_advisory_xact_lock(4242); RETURN NEW; END $$",
        )
        .execute(&mut db)
        .await
        .unwrap();
        sqlx::query(
            "CREATE TRIGGER stall_refresh BEFORE INSERT ON tokens FOR EACH ROW \
             WHEN (NEW.kind = 'refresh') EXECUTE FUNCTION stall_refresh()",
        )
        .execute(&mut db)
        .await
        .unwrap();
        sqlx::query("SELECT pg_advisory_lock(4242)")
            .execute(&mut db)
            .await
            .unwrap();

        let gw = Arc::new(gw);
        let pending = {
            let (gw, r1) = (gw.clone(), r1.clone());
            tokio::spawn(async move { gw.refresh(&r1).await })
        };
        let url2 = url.clone();
        wait_until(
            Duration::from_secs(20),
            "the rotation waits in the trigger",
            || {
                let url = url2.clone();
                async move {
                    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
                    sqlx::query_scalar::<_, i64>(
                        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
                     AND wait_event_type = 'Lock' AND wait_event = 'advisory'",
                    )
                    .fetch_one(&mut c)
                    .await
                    .unwrap()
                        == 1
                }
            },
        )
        .await;
        // The connection to the store is lost mid-transaction.
        relay.sever();
        let (status, body) = pending.await.unwrap();
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"], "temporarily_unavailable");
        assert_eq!(
            body["error_description"],
            "The service is temporarily unavailable; try again"
        );
        sqlx::query("SELECT pg_advisory_unlock(4242)")
            .execute(&mut db)
            .await
            .unwrap();
        // Waits for the lost transaction to be rolled back (it holds a lock on tokens).
        sqlx::query("DROP TRIGGER stall_refresh ON tokens")
            .execute(&mut db)
            .await
            .unwrap();
        let live = || async {
            let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query_scalar::<_, i64>(family_of_sql())
                .bind(&family)
                .fetch_one(&mut c)
                .await
                .unwrap()
        };
        assert!(is_live(&gw, &r1).await, "the old token is untouched");
        assert_eq!(live().await, 1);
        // The client retries with the same token once the store is back.
        let (status, body) = gw.refresh(&r1).await;
        assert_eq!(status, 200, "{body}");
        assert!(!is_live(&gw, &r1).await);
        assert!(is_live(&gw, body["refresh_token"].as_str().unwrap()).await);
        assert_eq!(live().await, 1, "never two valid");
    })
    .await;
}

/// The answer to one sign-in attempt, with what may differ between two answers
/// (date, request id) left out.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

async fn answer(resp: reqwest::Response) -> Answer {
    let status = resp.status().as_u16();
    let mut headers: Vec<(String, String)> = resp
        .headers()
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "date" | "x-request-id"))
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_string()))
        .collect();
    headers.sort();
    Answer {
        status,
        headers,
        body: resp.json().await.unwrap(),
    }
}

/// `tollgate_password_verifications_total` by `against` label, from `/metrics`.
async fn verifications(admin: &str) -> (u64, u64) {
    let text = common::scrape(admin).await;
    let read = |label: &str| -> u64 {
        text.lines()
            .find(|l| {
                l.starts_with("tollgate_password_verifications_total")
                    && l.contains(&format!("against=\"{label}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .map(|v| v as u64)
            .unwrap_or(0)
    };
    (read("stored"), read("dummy"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_users_and_wrong_passwords_are_indistinguishable() {
    // Its own process, so the metrics it reads are this gateway's alone.
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/t.db", dir.path().display());
    let key = dir.path().join("signing.pem");
    std::fs::write(&key, &common::authn::rsa_pair().0).unwrap();
    let config = dir.path().join("tollgate.yaml");
    std::fs::write(
        &config,
        format!(
            "listen:\n  http: 127.0.0.1:0\n  admin: 127.0.0.1:0\nstore:\n  url: {db}\n\
             tokens:\n  issuer: http://tollgate.test\n  audience: tollgate\n\
             \x20 signing:\n    alg: RS256\n    key_file: {}\n\
             \x20 login_throttle:\n    per_account: 1000\n    per_ip: 1000\n{}",
            key.display(),
            common::oauth::DIALECTS_YAML
        ),
    )
    .unwrap();
    {
        let store = tollgate::store::connect(&db).await.unwrap();
        let (user, email) = ("john_doe", "john_doe@domain.com");
        common::seed::user(&*store, Some(user), email, "john_doe_secret", "default").await;
        let grants = ["password", "refresh_token"];
        common::seed::client(&*store, BASIC_CLIENT.0, Some(BASIC_CLIENT.1), &grants, &[]).await;
    }
    let gw = common::process::GatewayProcess::start(&config, &[]);
    let long = "x".repeat(2000);
    // (endpoint, known user with a wrong password, unknown user), as each dialect sends them.
    type Attempt = (&'static str, Option<&'static str>, String);
    let form = |ident: &str, pw: &str| -> Attempt {
        (
            "/oauth/token",
            Some(FORM),
            format!("grant_type=password&{ident}&password={pw}"),
        )
    };
    let sign_in = |user: &str, pw: &str| -> Attempt {
        (
            SIGN_IN,
            Some("application/json"),
            json!({"username": user, "password": pw}).to_string(),
        )
    };
    let pairs: Vec<(Attempt, Attempt)> = vec![
        (
            form("username=john_doe", "wrong"),
            form("username=nobody", "wrong"),
        ),
        (
            form("email_address=john_doe@domain.com", "wrong"),
            form("email_address=nobody@domain.com", "wrong"),
        ),
        // A username that looks like an email is looked up twice.
        (
            form("username=john_doe@domain.com", "wrong"),
            form("username=nobody@domain.com", "wrong"),
        ),
        (
            form("username=john_doe", &long),
            form("username=nobody", &long),
        ),
        (sign_in("john_doe", "wrong"), sign_in("nobody", "wrong")),
    ];
    for (known, unknown) in pairs {
        let send = |(path, ct, body): Attempt| {
            let url = format!("{}{path}", gw.http);
            async move {
                let mut req = client().post(url).body(body);
                if let Some(ct) = ct {
                    req = req.header("Content-Type", ct);
                }
                if path == "/oauth/token" {
                    req = req.basic_auth(BASIC_CLIENT.0, Some(BASIC_CLIENT.1));
                }
                answer(req.send().await.unwrap()).await
            }
        };
        let what = format!("{} vs {}", known.2, unknown.2);
        let before = verifications(&gw.admin).await;
        let a = send(known).await;
        let middle = verifications(&gw.admin).await;
        let b = send(unknown).await;
        let after = verifications(&gw.admin).await;
        assert!(
            a.status == 400 || a.status == 403,
            "{what}: {} {}",
            a.status,
            a.body
        );
        assert_eq!(a.status, b.status, "{what}");
        assert_eq!(a.body, b.body, "{what}");
        assert_eq!(a.headers, b.headers, "{what}");
        // The known user's password was checked against its hash; the unknown user's
        // against the dummy hash: one full verification each, never none.
        assert_eq!((middle.0 - before.0, middle.1 - before.1), (1, 0), "{what}");
        assert_eq!((after.0 - middle.0, after.1 - middle.1), (0, 1), "{what}");
    }
    // A refused client never reaches the hasher at all, for a known or unknown user.
    let before = verifications(&gw.admin).await;
    for ident in ["john_doe", "nobody"] {
        let r = client()
            .post(format!("{}/oauth/token", gw.http))
            .basic_auth(BASIC_CLIENT.0, Some("wrong-secret"))
            .form(&[
                ("grant_type", "password"),
                ("username", ident),
                ("password", "x"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    assert_eq!(verifications(&gw.admin).await, before);
}
