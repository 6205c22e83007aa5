//! `users create`, `users import` and `clients create`: accounts managed from the shell,
//! against the store named by the config's `store.url`.
//!
//! Passwords and client secrets are read from standard input (or `--password`, for
//! scripts that accept the shell-history risk), hashed with argon2id, and never printed:
//! the JSON each command prints holds only public fields. Imports accept only argon2 and
//! bcrypt hashes, so a file of plaintext passwords is refused rather than stored.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use chrono::Utc;
use serde_json::{json, Value};

use super::args::{Cli, ClientsCommand, ClientsCreate, UsersCommand, UsersCreate};
use super::{config_path, CmdResult};
use crate::config::Config;
use crate::crypto::{HashFormat, PasswordHasherPool, Secret};
use crate::store::{self, Client, NewUser, Store, StoreError, Unique};
use crate::users::model::{self, is_plausible_email, is_valid_username, NewUserFields, UserView};

/// The grants a client may be given.
const KNOWN_GRANTS: &[&str] = &[
    "authorization_code",
    "password",
    "refresh_token",
    "client_credentials",
];

pub async fn users(cli: &Cli, cmd: &UsersCommand) -> CmdResult {
    match cmd {
        UsersCommand::Create(args) => create_user(cli, args).await,
        UsersCommand::Import { file } => import_users(cli, file).await,
    }
}

pub async fn clients(cli: &Cli, cmd: &ClientsCommand) -> CmdResult {
    match cmd {
        ClientsCommand::Create(args) => create_client(cli, args).await,
    }
}

async fn open_store(cli: &Cli) -> Result<Arc<dyn Store>, String> {
    let cfg = Config::load(&config_path(cli)).map_err(|e| e.to_string())?;
    // Account changes made from the command line are security events too.
    crate::audit::install(&cfg.audit).map_err(|e| {
        format!(
            "audit.destination: cannot open {}: {e}",
            cfg.audit.destination
        )
    })?;
    store::connect(&cfg.store.url)
        .await
        .map_err(|e| format!("store {}: {e}", redact_url(&cfg.store.url)))
}

/// A store URL without its password, for messages.
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

fn check_role(role: &str) -> Result<(), String> {
    if role.is_empty()
        || role.len() > 64
        || role.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!("invalid role `{role}`: 1-64 characters, no spaces"));
    }
    Ok(())
}

/// Reads a secret from standard input, dropping one trailing line break.
fn secret_from_stdin(what: &str) -> Result<Secret, String> {
    let mut buf = String::new();
    std::io::stdin()
        .read_to_string(&mut buf)
        .map_err(|e| format!("cannot read the {what} from standard input: {e}"))?;
    let trimmed = buf
        .strip_suffix('\n')
        .map(|s| s.strip_suffix('\r').unwrap_or(s))
        .unwrap_or(&buf);
    let secret = Secret::new(trimmed);
    zeroize::Zeroize::zeroize(&mut buf);
    Ok(secret)
}

fn conflict_message(what: Unique, email: &str, username: Option<&str>) -> String {
    match what {
        Unique::Email => format!("a user with email `{email}` already exists"),
        Unique::Username => format!("username `{}` is taken", username.unwrap_or_default()),
        other => format!("{other} already exists"),
    }
}

/// The same rules as `POST /api/v1/users`, reported as one line naming the bad input.
async fn create_user(cli: &Cli, args: &UsersCreate) -> CmdResult {
    check_role(&args.role)?;
    let password = match (&args.password, args.password_stdin) {
        (Some(p), false) => Secret::new(p.as_str()),
        (None, true) => secret_from_stdin("password")?,
        _ => return Err("a password is required: --password-stdin or --password".into()),
    };
    let fields = NewUserFields {
        email: Some(args.email.clone()),
        username: args.username.clone(),
        password: Some(password),
    };
    let valid = model::validate(Some(fields)).map_err(|errors| {
        let Some((field, messages)) = errors.into_iter().next() else {
            return "invalid user".to_string();
        };
        let message = messages.join(", ");
        match field {
            "email" => format!("email `{}` {message}", args.email.trim()),
            "username" => format!(
                "username `{}` {message}",
                args.username.as_deref().unwrap_or_default().trim()
            ),
            other => format!("{other} {message}"),
        }
    })?;
    let (email, username) = (valid.email.as_str(), valid.username.as_deref());
    let store = open_store(cli).await?;
    let hash = PasswordHasherPool::new(1)
        .hash(valid.password.expose())
        .await
        .map_err(|e| e.to_string())?;
    let new = NewUser {
        username: username.map(str::to_owned),
        email: email.to_owned(),
        password_hash: hash,
        role: args.role.clone(),
    };
    let user = match store.create_user(new).await {
        Ok(u) => u,
        Err(StoreError::Conflict(what)) => {
            return Err(conflict_message(what, email, username).into())
        }
        Err(e) => return Err(e.to_string().into()),
    };
    crate::audit::event("user_created", crate::audit::Outcome::Success)
        .user(user.id)
        .field("actor_id", "cli")
        .field("role", user.role.as_str())
        .emit();
    println!("{}", serde_json::to_string(&UserView::from(&user))?);
    Ok(())
}

/// One user from an import file, already vetted.
struct ImportedUser {
    line: u64,
    user: NewUser,
}

/// Vets one row: a valid email, an argon2 or bcrypt hash (never plaintext), and optional
/// username and role.
fn vet_row(
    email: Option<&str>,
    username: Option<&str>,
    role: Option<&str>,
    hash: Option<&str>,
) -> Result<NewUser, String> {
    let email = email
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .ok_or("email is missing")?;
    if !is_plausible_email(email) {
        return Err(format!("email `{email}` is invalid"));
    }
    let username = username.map(str::trim).filter(|u| !u.is_empty());
    if let Some(u) = username.filter(|u| !is_valid_username(u)) {
        return Err(format!("username `{u}` is invalid"));
    }
    let role = role
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .unwrap_or("default");
    check_role(role)?;
    let hash = hash
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or("password_hash is missing")?;
    if HashFormat::detect(hash).is_none() {
        return Err("password_hash is not an argon2 or bcrypt ($2a$/$2b$/$2y$) hash; plaintext and other formats are refused".into());
    }
    Ok(NewUser {
        username: username.map(str::to_owned),
        email: email.to_owned(),
        password_hash: hash.to_owned(),
        role: role.to_owned(),
    })
}

/// Parses JSON lines: one object per line with `email`, `password_hash` and optional
/// `username` and `role`; other fields are ignored, but a `password` field is refused.
fn parse_jsonl(text: &str) -> (Vec<ImportedUser>, Vec<String>, u64) {
    let (mut ok, mut bad, mut total) = (Vec::new(), Vec::new(), 0);
    for (i, line) in text.lines().enumerate() {
        let line_no = i as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        total += 1;
        let row = match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(m)) => m,
            _ => {
                bad.push(format!("line {line_no}: not a JSON object"));
                continue;
            }
        };
        if row.contains_key("password") {
            bad.push(format!(
                "line {line_no}: has a plaintext `password` field; only password_hash is accepted"
            ));
            continue;
        }
        let field = |k: &str| row.get(k).and_then(Value::as_str);
        match vet_row(
            field("email"),
            field("username"),
            field("role"),
            field("password_hash"),
        ) {
            Ok(user) => ok.push(ImportedUser {
                line: line_no,
                user,
            }),
            Err(e) => bad.push(format!("line {line_no}: {e}")),
        }
    }
    (ok, bad, total)
}

/// Parses CSV with a header row naming `email`, `password_hash` and optionally
/// `username` and `role`, in any order.
fn parse_csv(text: &str) -> Result<(Vec<ImportedUser>, Vec<String>, u64), String> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| format!("cannot read the CSV header: {e}"))?
        .clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
    };
    if col("password").is_some() {
        return Err(
            "the CSV has a plaintext `password` column; only password_hash is accepted".into(),
        );
    }
    let (Some(email), Some(hash)) = (col("email"), col("password_hash")) else {
        return Err("the CSV header must name the columns email and password_hash (username and role optional)".into());
    };
    let (username, role) = (col("username"), col("role"));
    let (mut ok, mut bad, mut total) = (Vec::new(), Vec::new(), 0);
    for record in reader.records() {
        total += 1;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                bad.push(format!("line {line}: unreadable CSV record"));
                continue;
            }
        };
        let line_no = record.position().map(|p| p.line()).unwrap_or(0);
        let get = |i: Option<usize>| i.and_then(|i| record.get(i));
        match vet_row(get(Some(email)), get(username), get(role), get(Some(hash))) {
            Ok(user) => ok.push(ImportedUser {
                line: line_no,
                user,
            }),
            Err(e) => bad.push(format!("line {line_no}: {e}")),
        }
    }
    Ok((ok, bad, total))
}

/// JSON lines when the extension says so or the first non-blank character is `{`.
fn looks_like_jsonl(path: &Path, text: &str) -> bool {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("jsonl" | "ndjson" | "json") => true,
        Some("csv") => false,
        _ => text.trim_start().starts_with('{'),
    }
}

/// Every line is vetted before anything is written: one bad line (a plaintext password,
/// say) rejects the file, with every problem listed. Users whose email or username
/// already exists are skipped, so an import can be re-run.
async fn import_users(cli: &Cli, file: &Path) -> CmdResult {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let (rows, bad, total) = if looks_like_jsonl(file, &text) {
        parse_jsonl(&text)
    } else {
        parse_csv(&text).map_err(|e| format!("{}: {e}", file.display()))?
    };
    if !bad.is_empty() {
        for problem in &bad {
            eprintln!("{}: {problem}", file.display());
        }
        return Err(format!(
            "{}: {} of {total} rows rejected; nothing imported",
            file.display(),
            bad.len()
        )
        .into());
    }
    let store = open_store(cli).await?;
    let (mut imported, mut skipped) = (0u64, 0u64);
    for row in rows {
        match store.create_user(row.user).await {
            Ok(_) => imported += 1,
            Err(StoreError::Conflict(what)) => {
                eprintln!(
                    "{}: line {}: {what} already exists; skipped",
                    file.display(),
                    row.line
                );
                skipped += 1;
            }
            Err(e) => {
                return Err(format!(
                    "{}: line {}: {e} (imported {imported} before stopping)",
                    file.display(),
                    row.line
                )
                .into())
            }
        }
    }
    println!(
        "{}",
        json!({ "imported": imported, "skipped": skipped, "rejected": 0 })
    );
    Ok(())
}

fn check_client_id(id: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':');
    if id.is_empty() || id.len() > 128 || !id.chars().all(ok_char) {
        return Err(format!(
            "invalid client id `{id}`: 1-128 of A-Z a-z 0-9 - _ . :"
        ));
    }
    Ok(())
}

/// Redirect URIs as registered: each one a valid target (`signin::redirect`), no repeats.
fn checked_uris(flag: &str, uris: &[String]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for u in uris {
        crate::signin::redirect::check_registrable(u)
            .map_err(|why| format!("{flag} `{u}`: {why}"))?;
        if !out.contains(u) {
            out.push(u.clone());
        }
    }
    Ok(out)
}

async fn create_client(cli: &Cli, args: &ClientsCreate) -> CmdResult {
    check_client_id(&args.id)?;
    let mut grants: Vec<String> = Vec::new();
    for g in args
        .grants
        .iter()
        .map(|g| g.trim())
        .filter(|g| !g.is_empty())
    {
        if !KNOWN_GRANTS.contains(&g) {
            return Err(
                format!("unknown grant `{g}`: expected {}", KNOWN_GRANTS.join(", ")).into(),
            );
        }
        if !grants.iter().any(|x| x == g) {
            grants.push(g.to_owned());
        }
    }
    if grants.is_empty() {
        return Err("--grants must name at least one grant".into());
    }
    let tls_auth = tls_client_auth(args)?;
    if tls_auth.is_some() && (args.public || args.secret_stdin) {
        return Err(
            "--auth-method: a certificate method takes neither --public nor --secret-stdin".into(),
        );
    }
    let public = match args.auth_method.as_deref() {
        Some("none") => true,
        Some("tls_client_auth" | "self_signed_tls_client_auth") => false,
        Some(_) if args.public => {
            return Err("--auth-method: a secret method contradicts --public".into())
        }
        _ => args.public,
    };
    if tls_auth.is_none() && public == args.secret_stdin {
        return Err("choose --public or --secret-stdin".into());
    }
    let redirect_uris = checked_uris("--redirect-uri", &args.redirect_uris)?;
    let post_logout_redirect_uris = checked_uris(
        "--post-logout-redirect-uri",
        &args.post_logout_redirect_uris,
    )?;
    if grants.iter().any(|g| g == "authorization_code") && redirect_uris.is_empty() {
        return Err("the authorization_code grant needs at least one --redirect-uri".into());
    }
    if public && grants.iter().any(|g| g == "client_credentials") {
        return Err("a public client cannot use the client_credentials grant".into());
    }
    let scopes: Vec<String> = args.scopes.split_whitespace().map(str::to_owned).collect();
    if let Some(bad) = scopes
        .iter()
        .find(|s| s.chars().any(|c| c == '"' || c == '\\' || c.is_control()))
    {
        return Err(format!("invalid scope `{bad}`").into());
    }
    let secret = match (public, args.secret_stdin) {
        _ if tls_auth.is_some() => None,
        (true, false) => None,
        (false, true) => {
            let s = secret_from_stdin("client secret")?;
            if s.expose().chars().count() < 16 {
                return Err("client secret must be at least 16 characters".into());
            }
            Some(s)
        }
        _ => return Err("choose --public or --secret-stdin".into()),
    };
    let store = open_store(cli).await?;
    let secret_hash = match secret {
        Some(s) => Some(
            PasswordHasherPool::new(1)
                .hash(s.expose())
                .await
                .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    let client = Client {
        id: args.id.clone(),
        secret_hash,
        grants,
        scopes,
        created_at: Utc::now(),
        redirect_uris,
        post_logout_redirect_uris,
        first_party: !args.third_party,
        registration_token_hash: None,
        tls_auth,
    };
    let client = match store.create_client(client).await {
        Ok(c) => c,
        Err(StoreError::Conflict(_)) => {
            return Err(format!("client `{}` already exists", args.id).into())
        }
        Err(e) => return Err(e.to_string().into()),
    };
    crate::audit::event("client_created", crate::audit::Outcome::Success)
        .client(&client.id)
        .field("actor_id", "cli")
        .emit();
    println!(
        "{}",
        json!({
            "id": client.id,
            "public": !client.is_confidential(),
            "token_endpoint_auth_method": match &client.tls_auth {
                Some(t) => t.method(),
                None if client.secret_hash.is_some() => "client_secret_basic",
                None => "none",
            },
            "grants": client.grants,
            "scopes": client.scopes,
            "redirect_uris": client.redirect_uris,
            "post_logout_redirect_uris": client.post_logout_redirect_uris,
            "first_party": client.first_party,
            "created_at": model::timestamp(&client.created_at),
        })
    );
    Ok(())
}

/// RFC 8705 §2 client authentication from `--auth-method`, `--tls-subject` and
/// `--cert-file`; each certificate method needs its own flag and no other.
fn tls_client_auth(args: &ClientsCreate) -> Result<Option<store::TlsClientAuth>, String> {
    match (
        args.auth_method.as_deref(),
        &args.tls_subject,
        &args.cert_file,
    ) {
        (Some("tls_client_auth"), Some(dn), None) if !dn.trim().is_empty() => {
            Ok(Some(store::TlsClientAuth::SubjectDn(dn.trim().to_owned())))
        }
        (Some("tls_client_auth"), _, _) => {
            Err("--auth-method tls_client_auth needs --tls-subject (and no --cert-file)".into())
        }
        (Some("self_signed_tls_client_auth"), None, Some(path)) => {
            let pem = std::fs::read_to_string(path)
                .map_err(|e| format!("--cert-file {}: {e}", path.display()))?;
            let cert = crate::http::ClientCert::from_pem_or_base64(&pem)
                .ok_or_else(|| format!("--cert-file {}: not a PEM certificate", path.display()))?;
            Ok(Some(store::TlsClientAuth::SelfSigned(
                crate::authn::dpop::cert_thumbprint_of(&cert.sha256),
            )))
        }
        (Some("self_signed_tls_client_auth"), _, _) => Err(
            "--auth-method self_signed_tls_client_auth needs --cert-file (and no --tls-subject)"
                .into(),
        ),
        (_, None, None) => Ok(None),
        _ => Err("--tls-subject and --cert-file go with a certificate --auth-method".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_url_password_is_redacted() {
        assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_url("sqlite://data/t.db"), "sqlite://data/t.db");
    }
}
