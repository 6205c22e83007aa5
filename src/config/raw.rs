//! The configuration file as written by operators: serde structs that mirror the YAML
//! one to one. Every struct rejects unknown keys so a typo is an error that names the key,
//! never a silently ignored setting. Validation into the runtime [`super::Config`] happens
//! in `validate.rs`; nothing here is trusted until it has passed through there.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Root of `tollgate.yaml`. Keys and names are public interface (docs/configuration.md).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub listen: Listen,
    /// CIDRs whose inbound `X-Forwarded-*` headers are kept; from anyone else they are replaced.
    pub trusted_proxies: Vec<String>,
    pub tls: Option<Tls>,
    pub store: Store,
    pub tokens: Tokens,
    /// Each path serves the OAuth 2.0 token endpoint; options adapt one legacy dialect.
    pub token_endpoints: Option<Vec<TokenEndpoint>>,
    pub users_api: UsersApi,
    /// The hosted sign-in page of `GET /oauth/authorize` and the browser session.
    pub login: Login,
    /// RFC 7591 dynamic client registration at `/oauth/register`.
    pub client_registration: ClientRegistration,
    /// The environment variable holding the initial access token registrations must
    /// present when `client_registration: initial_token` (default
    /// `TOLLGATE_REGISTRATION_TOKEN`).
    pub client_registration_token_env: Option<String>,
    /// DPoP proofs (RFC 9449): how they are checked at the token endpoint and on routes.
    pub dpop: Dpop,
    pub cors: Cors,
    /// External OAuth 2.0 / OIDC providers for account linking.
    pub providers: BTreeMap<String, Provider>,
    /// Provider linking settings shared by every provider (Tollgate extension).
    pub connect: Connect,
    /// RFC 7662 introspection endpoints for foreign opaque tokens.
    pub introspection: Vec<Introspection>,
    /// Foreign JWT issuers validated locally against their JWKS.
    pub jwt_issuers: Vec<JwtIssuer>,
    pub identity_headers: IdentityHeaders,
    pub forward_auth: ForwardAuth,
    /// Connection and request limits (Tollgate extension).
    pub limits: Limits,
    /// Logging (Tollgate extension).
    pub log: Log,
    /// Address of a built-in echo upstream that answers every request with a JSON echo of
    /// what it received (identity headers included). For trying Tollgate out and for
    /// `demo`; leave unset in production (Tollgate extension).
    #[schemars(with = "Option<String>")]
    pub echo_upstream: Option<SocketAddr>,
    /// Default request rate limit of every route that sets none (see docs/routes.md).
    pub rate_limit: Option<RateLimit>,
    /// The shared store of limits with `store: redis`.
    pub rate_limit_store: Option<RateLimitStore>,
    /// The security audit log (JSON lines, target `tollgate::audit`).
    pub audit: Audit,
    /// Distributed tracing (OpenTelemetry); off unless `telemetry.tracing` is set.
    pub telemetry: Telemetry,
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Listen {
    /// Plain HTTP/1.1 and h2c (prior knowledge).
    #[schemars(with = "Option<String>")]
    pub http: Option<SocketAddr>,
    /// HTTPS with ALPN h2 / http/1.1; needs `tls`.
    #[schemars(with = "Option<String>")]
    pub https: Option<SocketAddr>,
    /// Admin port: /healthz /readyz /metrics. Never on the public port.
    #[schemars(with = "Option<String>")]
    pub admin: Option<SocketAddr>,
    /// Envoy ext_authz v3 gRPC (`envoy.service.auth.v3.Authorization/Check`), h2c, or TLS
    /// with the `tls` section when there is one. Off when absent.
    #[schemars(with = "Option<String>")]
    pub ext_authz: Option<SocketAddr>,
    /// Serving threads for `http` and `https`, each with its own event loop; 0 (the
    /// default) is one per CPU core.
    pub workers: usize,
}

impl Default for Listen {
    fn default() -> Self {
        Listen {
            http: Some(([0, 0, 0, 0], 8080).into()),
            https: None,
            admin: Some(([127, 0, 0, 1], 9090).into()),
            ext_authz: None,
            workers: 0,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM certificate chain; reloaded when the file changes.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1); reloaded when the file changes.
    pub key: PathBuf,
    /// PEM bundle of the CAs whose client certificates are accepted; set, the HTTPS
    /// listener asks every client for a certificate. Reloaded when the file changes.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: `required` (the default) refuses a handshake without a valid
    /// client certificate; `optional` lets it through without one (a presented but
    /// invalid certificate still fails the handshake).
    #[serde(default)]
    pub client_auth: Option<ClientAuth>,
}

/// Whether the HTTPS listener insists on a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    Optional,
    Required,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Store {
    /// `sqlite://path` (embedded default, created on first start) or `postgres://…`.
    pub url: String,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            url: "sqlite://data/tollgate.db".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Tokens {
    pub issuer: String,
    pub audience: String,
    pub access: AccessTokens,
    pub refresh: RefreshTokens,
    pub signing: Signing,
    /// Password-grant throttling per account and per client IP (Tollgate extension).
    pub login_throttle: LoginThrottle,
}

impl Default for Tokens {
    fn default() -> Self {
        Tokens {
            issuer: "http://localhost:8080".into(),
            audience: "tollgate".into(),
            access: AccessTokens::default(),
            refresh: RefreshTokens::default(),
            signing: Signing::default(),
            login_throttle: LoginThrottle::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LoginThrottle {
    /// Password attempts per minute for one account (also the burst); 0 turns it off.
    pub per_account: u32,
    /// Password attempts per minute from one client IP (also the burst); 0 turns it off.
    pub per_ip: u32,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        LoginThrottle {
            per_account: 10,
            per_ip: 100,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum AccessFormat {
    #[default]
    Jwt,
    Opaque,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AccessTokens {
    pub format: AccessFormat,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub ttl: Duration,
}

impl Default for AccessTokens {
    fn default() -> Self {
        AccessTokens {
            format: AccessFormat::Jwt,
            ttl: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RefreshTokens {
    /// Lifetime of a refresh token; rotated on every use.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub ttl: Duration,
    /// Window in which a just-rotated refresh token may be presented again (two tabs).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub reuse_grace: Duration,
}

impl Default for RefreshTokens {
    fn default() -> Self {
        RefreshTokens {
            ttl: Duration::from_secs(30 * 86400),
            reuse_grace: Duration::ZERO,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema, Default)]
pub enum SigningAlg {
    #[default]
    RS256,
    ES256,
    EdDSA,
    HS512,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Signing {
    pub alg: SigningAlg,
    /// PEM key file (HS512: a file holding the secret). Absent: generated once under data/keys/.
    pub key_file: Option<PathBuf>,
    /// Older keys still published in JWKS and accepted, for rotation.
    pub previous_key_files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct TokenEndpoint {
    pub path: String,
    /// Grant implied when the request carries no `grant_type`.
    #[serde(default)]
    pub grant: Option<String>,
    /// Client implied when the request names none.
    #[serde(default)]
    pub client: Option<String>,
    /// Status for bad credentials (403 answers `{"error":"access_denied"}`).
    #[serde(default)]
    pub invalid_credentials_status: Option<u16>,
    /// Spelling of `token_type` in the response (default "bearer").
    #[serde(default)]
    pub token_type: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    /// Anyone may register (and then pass every `auth: required` route that names no
    /// role or scope): only for trying Tollgate out or for deliberately public sign-up.
    Open,
    /// Only an admin's bearer token may create users.
    Admin,
    /// Nobody registers through the API; users come from `tollgate users create/import`.
    /// The default when the key is absent: a setting left out is the safe one.
    #[default]
    Closed,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, default)]
pub struct UsersApi {
    pub registration: Registration,
}

/// The hosted sign-in page (`login`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Login {
    /// The page's title and heading.
    pub title: String,
    /// An image shown above the form (https URL); none when absent.
    pub logo_url: Option<String>,
    /// A CSS file served with the page and linked from it; none when absent.
    pub css_file: Option<PathBuf>,
    pub session: LoginSession,
    /// How long an authorization code may wait to be redeemed.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub code_ttl: Duration,
}

impl Default for Login {
    fn default() -> Self {
        Login {
            title: "Sign in".into(),
            logo_url: None,
            css_file: None,
            session: LoginSession::default(),
            code_ttl: Duration::from_secs(60),
        }
    }
}

/// Who may register a client at `/oauth/register` (RFC 7591).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClientRegistration {
    /// Nobody: clients come from `tollgate clients create` (the safe default).
    #[default]
    Closed,
    /// Whoever presents the initial access token (`client_registration_token_env`) as a
    /// bearer token.
    InitialToken,
    /// Anyone (rate-limited per address): what MCP clients expect of a public server.
    Open,
}

/// DPoP proof checks.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Dpop {
    /// A proof's `iat` is accepted within this of the gateway's clock, either way; its
    /// `jti` is remembered for twice as long.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub proof_window: Duration,
    /// Require server nonces: a proof without the current one is answered
    /// `use_dpop_nonce` with a fresh `DPoP-Nonce`.
    pub nonce: bool,
    /// Where used proofs are remembered: `local` (this replica) or `redis` (every
    /// replica, on `rate_limit_store`'s server).
    pub replay_store: DpopReplayStore,
}

impl Default for Dpop {
    fn default() -> Self {
        Dpop {
            proof_window: Duration::from_secs(60),
            nonce: false,
            replay_store: DpopReplayStore::Local,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum DpopReplayStore {
    #[default]
    Local,
    Redis,
}

/// A route's RFC 9728 protected resource metadata.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProtectedResource {
    /// The resource identifier: the https URL clients name in `resource` and that
    /// tokens for this route carry in `aud`.
    pub id: String,
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    /// A page for developers (`resource_documentation`).
    #[serde(default)]
    pub documentation: Option<String>,
}

/// Which proof of possession a route demands with its tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum SenderConstraint {
    /// Bearer tokens pass; a bound token still needs its proof.
    #[default]
    None,
    /// Only DPoP-bound tokens, with a proof.
    Dpop,
    /// Only certificate-bound tokens, over a connection with that certificate.
    Mtls,
    /// Either of the two.
    Bound,
}

/// The browser session (single sign-on) the hosted page starts.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LoginSession {
    /// Ended after this long without use.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub idle: Duration,
    /// Ended this long after sign-in, however used.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub absolute: Duration,
}

impl Default for LoginSession {
    fn default() -> Self {
        LoginSession {
            idle: Duration::from_secs(8 * 3600),
            absolute: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Cors {
    pub allow_origins: Vec<String>,
}

impl Default for Cors {
    fn default() -> Self {
        Cors {
            allow_origins: vec!["*".into()],
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Provider {
    /// `facebook`, `google`, `github` or `generic`; defaults to the provider's key when it names a preset.
    pub preset: Option<String>,
    pub client_id: String,
    /// Name of the environment variable holding the client secret.
    pub client_secret_env: Option<String>,
    pub authorize_url: Option<String>,
    pub token_url: Option<String>,
    pub userinfo_url: Option<String>,
    pub scope: Option<Vec<String>>,
    /// Exact URIs, or prefixes ending on a path boundary; nothing else is ever redirected to.
    pub allowed_redirect_uris: Vec<String>,
}

/// Provider linking (`/{provider}/oauth_dialog`, `/{provider}/oauth_code`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Connect {
    /// Environment variable holding the 32-byte AES-256-GCM key (base64 or 64 hex digits)
    /// that encrypts provider tokens at rest. Without it, linking is refused.
    pub encryption_key_env: Option<String>,
    /// Public base URL of Tollgate for the provider callback
    /// (`{base}/{provider}/oauth_code`); defaults to `tokens.issuer`.
    pub callback_base_url: Option<String>,
    /// How long a dialog may take between redirect and callback.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub state_ttl: Duration,
    /// Timeout of one call to a provider's token or userinfo endpoint.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub provider_timeout: Duration,
}

impl Default for Connect {
    fn default() -> Self {
        Connect {
            encryption_key_env: None,
            callback_base_url: None,
            state_ttl: Duration::from_secs(600),
            provider_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Introspection {
    pub name: String,
    pub url: String,
    pub client_id: String,
    pub client_secret_env: Option<String>,
    /// When set, an active token must list this audience in `aud` (re-checked on every cache hit).
    #[serde(default)]
    pub audience: Option<String>,
    #[serde(default)]
    pub cache: IntrospectionCache,
    /// Timeout of one introspection call.
    #[serde(default = "default_introspection_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Duration,
}

fn default_introspection_timeout() -> Duration {
    Duration::from_secs(2)
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct IntrospectionCache {
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub ttl: Duration,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub negative_ttl: Duration,
    pub max_entries: u64,
}

impl Default for IntrospectionCache {
    fn default() -> Self {
        IntrospectionCache {
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(5),
            max_entries: 100_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JwtIssuer {
    pub issuer: String,
    pub jwks_url: String,
    pub audience: Option<String>,
    /// Minimum interval between JWKS refetches triggered by an unknown `kid`.
    #[serde(default = "default_jwks_refetch", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub refetch_interval: Duration,
}

fn default_jwks_refetch() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityHeaders {
    pub user_id: String,
    pub email: String,
    pub role: String,
    pub scopes: String,
    pub client_id: String,
    pub alias: String,
    /// Optional header carrying a short-lived JWT signed by Tollgate for upstreams that verify.
    pub signed_jwt: Option<String>,
    /// Optional header carrying the subject DN of the verified client certificate
    /// (HTTPS listener with `tls.client_ca`), RFC 4514 form.
    pub client_cert_subject: Option<String>,
    /// Optional header carrying the SHA-256 thumbprint (lower-case hex of the DER) of the
    /// verified client certificate.
    pub client_cert_sha256: Option<String>,
}

impl Default for IdentityHeaders {
    fn default() -> Self {
        IdentityHeaders {
            user_id: "X-User-Id".into(),
            email: "X-User-Email".into(),
            role: "X-User-Role".into(),
            scopes: "X-User-Scopes".into(),
            client_id: "X-Client-Id".into(),
            alias: "X-User-Alias".into(),
            signed_jwt: None,
            client_cert_subject: None,
            client_cert_sha256: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardAuth {
    /// Decision endpoint for ingress-nginx auth-url, Traefik ForwardAuth, Envoy ext_authz.
    pub path: Option<String>,
    /// How long an ingress may reuse an allow decision (`Cache-Control: private,
    /// max-age=N` on a 200, never beyond the token's own expiry): the revocation delay
    /// that caching adds. Denials are always `no-store`.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub cache_ttl: Duration,
    /// The header in which the TLS-terminating proxy in front reports the client's
    /// certificate, read only from `trusted_proxies`; absent: no certificate is believed.
    /// Name the one your proxy overwrites: the other forms pass a client's copy through.
    pub client_cert_header: Option<ClientCertHeader>,
}

/// A proxy's client-certificate header (`forward_auth.client_cert_header`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum ClientCertHeader {
    /// Envoy (`forward_client_cert_details: SANITIZE_SET`): `Hash=`/`Cert=`/`Subject=`.
    #[serde(rename = "x-forwarded-client-cert")]
    Xfcc,
    /// Traefik `passTLSClientCert: {pem: true}`: the base64 DER.
    #[serde(rename = "x-forwarded-tls-client-cert")]
    Traefik,
    /// nginx `proxy_set_header ssl-client-cert $ssl_client_escaped_cert`: the escaped PEM.
    #[serde(rename = "ssl-client-cert")]
    Nginx,
}

impl Default for ForwardAuth {
    fn default() -> Self {
        ForwardAuth {
            path: Some("/auth/verify".into()),
            cache_ttl: Duration::from_secs(5),
            client_cert_header: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request head (request line + headers) in bytes; larger gets 431.
    pub max_header_bytes: usize,
    /// Most request headers; more gets 431.
    pub max_headers: usize,
    /// Default largest request body in bytes for routes that set none; larger gets 413.
    pub max_body_bytes: u64,
    /// Time allowed to receive a request head (slowloris guard).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub header_read_timeout: Duration,
    /// Keep-alive connections with no request for this long are closed.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub idle_timeout: Duration,
    /// Concurrent downstream connections; over it new connections are closed at once.
    pub max_connections: usize,
    /// On SIGTERM/SIGINT, how long in-flight requests may take before exit.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_body_bytes: 10 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 25_000,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    pub format: LogFormat,
    /// tracing filter directive, e.g. `info` or `tollgate=debug`.
    pub level: String,
    /// One access-log line per request.
    pub access_log: bool,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            format: LogFormat::Pretty,
            level: "info".into(),
            access_log: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub name: String,
    /// Exact host or `*.suffix`; absent matches any host.
    #[serde(default)]
    pub host: Option<String>,
    /// Path prefix matched on segment boundaries.
    pub path: String,
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    pub upstream: Upstream,
    #[serde(default)]
    pub strip_prefix: bool,
    #[serde(default)]
    pub auth: Option<Auth>,
    /// `header` (default), `query:NAME`, `cookie:NAME`.
    #[serde(default)]
    pub token_sources: Option<Vec<String>>,
    /// Largest request body in bytes for this route (default `limits.max_body_bytes`).
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// Forward the inbound `Authorization` header upstream (default false: an upstream
    /// that receives the bearer token can replay it).
    #[serde(default)]
    pub forward_authorization: Option<bool>,
    /// Close WebSocket/streaming responses when the token that opened them expires or is revoked.
    #[serde(default)]
    pub close_on_token_expiry: Option<bool>,
    /// Refuse (403) requests that did not arrive over a TLS connection with a verified
    /// client certificate (`tls.client_ca`).
    #[serde(default)]
    pub require_client_cert: bool,
    /// Request rate limit of this route, or `off`; absent: the top-level `rate_limit`.
    #[serde(default)]
    pub rate_limit: Option<RouteRateLimit>,
    /// Only tokens whose `aud` holds this pass (RFC 8707). Default: `resource.id` when
    /// set; otherwise self-issued tokens must carry `tokens.audience`.
    #[serde(default)]
    pub audience: Option<String>,
    /// RFC 9728 protected resource metadata for this route.
    #[serde(default)]
    pub resource: Option<ProtectedResource>,
    /// `none` (default), `dpop`, `mtls` or `bound` (DPoP or mTLS).
    #[serde(default)]
    pub sender_constraint: SenderConstraint,
}

/// A route's `rate_limit`: a limit, or `off` to exempt the route from the default.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum RouteRateLimit {
    Off(RateLimitOff),
    Limit(RateLimit),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitOff {
    Off,
}

/// `requests` per `per` sustained, at most `burst` at once (GCRA, as Traefik's
/// `average`/`period`/`burst`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests allowed per `per`, sustained.
    pub requests: u32,
    /// The period of `requests`: `1s`, `1m`, `1h`…
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub per: Duration,
    /// Most requests let through at once after a quiet spell; default `requests`.
    #[serde(default)]
    pub burst: Option<u32>,
    /// Whose budget a request spends: `user` (default), `client`, `ip` or `header:NAME`.
    /// Requests without that identity (no token, no header) fall back to `ip`.
    #[serde(default)]
    pub key: Option<String>,
    /// `local` (default: one budget per replica) or `redis` (one budget shared by every
    /// replica; needs `rate_limit_store`).
    #[serde(default)]
    pub store: RateLimitStoreKind,
    /// Most keys remembered in memory per limit; past it the least used are forgotten
    /// (and start again with a full burst). Default 100000.
    #[serde(default)]
    pub max_keys: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitStoreKind {
    #[default]
    Local,
    Redis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitOnError {
    /// Let the request through (availability first); counted and logged.
    #[default]
    FailOpen,
    /// Refuse the request with 503 (the limit first).
    FailClosed,
}

/// The Redis (or Valkey) server that holds the shared budgets of `store: redis` limits.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitStore {
    /// `redis://[user:password@]host:port/db`.
    pub url: String,
    /// Prefix of every key Tollgate writes, so several deployments can share one server.
    #[serde(default = "default_rate_limit_prefix")]
    pub prefix: String,
    /// What a request meets when the store cannot be asked.
    #[serde(default)]
    pub on_error: RateLimitOnError,
    /// Requests a replica may take from the shared budget in one round trip and spend
    /// locally; each replica can exceed the limit by at most this many. Default 1 (exact).
    #[serde(default = "default_local_budget")]
    pub local_budget: u32,
    /// Longest wait for the store on one request; past it, `on_error` applies.
    #[serde(default = "default_rate_limit_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Duration,
}

/// Where the security audit log goes; independent of `log` (docs/operations.md).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Audit {
    /// `stderr`, or a file path (JSON lines, created with mode 0600).
    pub destination: String,
    /// A file is rotated when the next line would take it past this size.
    pub max_bytes: u64,
    /// Rotated files kept (`path.1` newest … `path.N`); 0 keeps none.
    pub keep: u32,
}

impl Default for Audit {
    fn default() -> Self {
        Audit {
            destination: "stderr".into(),
            max_bytes: 100 * 1024 * 1024,
            keep: 5,
        }
    }
}

/// Traces and the like (docs/operations.md, "Tracing").
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Telemetry {
    /// OpenTelemetry traces exported over OTLP; off when absent. Read at start only.
    pub tracing: Option<Tracing>,
}

/// Where and how spans are exported.
#[derive(Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tracing {
    /// The collector. `http/protobuf`: its base URL (`/v1/traces` is appended when the URL
    /// has no path, as for `OTEL_EXPORTER_OTLP_ENDPOINT`) or the full traces URL; `http://`
    /// or `https://`. `grpc`: `http://host:4317` (plain gRPC only; use `http/protobuf`
    /// for a collector behind TLS).
    pub otlp_endpoint: String,
    #[serde(default)]
    pub protocol: OtlpProtocol,
    /// Fraction of new traces recorded, 0.0 to 1.0 (default 1.0). A trace continued from
    /// a trusted proxy follows that caller's sampling decision.
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
    /// `service.name` of every span (default `tollgate`).
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Headers (gRPC metadata) sent with every export, e.g. a collector's API key. Values
    /// are secrets: never logged, never shown by `check`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

impl std::fmt::Debug for Tracing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracing")
            .field("otlp_endpoint", &self.otlp_endpoint)
            .field("protocol", &self.protocol)
            .field("sample_ratio", &self.sample_ratio)
            .field("service_name", &self.service_name)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The OTLP transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum OtlpProtocol {
    /// OTLP/HTTP with protobuf bodies (port 4318 by convention).
    #[default]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// OTLP/gRPC (port 4317 by convention).
    #[serde(rename = "grpc")]
    Grpc,
}

fn default_sample_ratio() -> f64 {
    1.0
}

fn default_service_name() -> String {
    "tollgate".into()
}

fn default_rate_limit_prefix() -> String {
    "tollgate".into()
}

fn default_local_budget() -> u32 {
    1
}

fn default_rate_limit_timeout() -> Duration {
    Duration::from_millis(250)
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Upstream {
    Url(String),
    Detailed(UpstreamDetailed),
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamDetailed {
    pub targets: Vec<String>,
    /// Time to the upstream's response head; past it, 504.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Duration>,
    /// Time to establish the TCP connection; past it, the next target or 502.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub connect_timeout: Option<Duration>,
    /// Consecutive failures after which a target is ejected (passive health check).
    #[serde(default)]
    pub eject_after: Option<u32>,
    /// How long an ejected target is skipped.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub eject_for: Option<Duration>,
    /// Extra attempts on another target for idempotent requests without a body.
    #[serde(default)]
    pub retries: Option<u32>,
    /// Wire protocol to the targets (default `auto`).
    #[serde(default)]
    pub protocol: Option<UpstreamProtocol>,
    /// TLS to `https://` targets; without it the system's CA store verifies them.
    #[serde(default)]
    pub tls: Option<UpstreamTls>,
}

/// How Tollgate speaks to an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 only.
    H1,
    /// HTTP/2 over TLS (`https://` targets; ALPN `h2`).
    H2,
    /// HTTP/2 in cleartext by prior knowledge (`http://` targets), as gRPC servers speak it.
    H2c,
    /// ALPN chooses between HTTP/2 and HTTP/1.1 over TLS; HTTP/1.1 on plain `http://`.
    #[default]
    Auto,
}

impl UpstreamProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamProtocol::H1 => "h1",
            UpstreamProtocol::H2 => "h2",
            UpstreamProtocol::H2c => "h2c",
            UpstreamProtocol::Auto => "auto",
        }
    }
}

/// TLS to an upstream. There is deliberately no way to skip verification.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// PEM bundle of the CAs that may sign the targets' certificates, instead of the
    /// system's CA store. Reloaded when the file changes.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Name sent as SNI and matched against the certificate (default: the target's host).
    #[serde(default)]
    pub server_name: Option<String>,
    /// PEM client certificate chain for upstreams that require mTLS; with `client_key`.
    /// Reloaded when the file changes.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// Oldest TLS version offered: `"1.2"` (default) or `"1.3"`.
    #[serde(default)]
    pub min_version: Option<TlsVersion>,
}

/// A TLS version, written `"1.2"` or `1.2` (YAML reads the unquoted form as a number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, JsonSchema, Default)]
pub enum TlsVersion {
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

impl<'de> Deserialize<'de> for TlsVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Text(String),
            Number(f64),
        }
        let text = match Written::deserialize(d)? {
            Written::Text(s) => s,
            Written::Number(n) => n.to_string(),
        };
        match text.trim() {
            "1.2" => Ok(TlsVersion::Tls12),
            "1.3" => Ok(TlsVersion::Tls13),
            other => Err(serde::de::Error::custom(format!(
                "`{other}` is not a TLS version; use \"1.2\" or \"1.3\""
            ))),
        }
    }
}

impl TlsVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    #[default]
    None,
    Optional,
    Required,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Auth {
    Mode(AuthMode),
    Detailed(AuthDetailed),
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthDetailed {
    pub mode: AuthMode,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
}
