//! Command line (docs/configuration.md, README). Exit codes: 0 ok, 1 user error with a one-line message naming
//! the bad input, 2 usage (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "tollgate",
    version,
    about = "Reverse-proxy authentication gateway"
)]
pub struct Cli {
    /// Configuration file [default: $TOLLGATE_CONFIG, else config/tollgate.yaml]
    #[arg(long, global = true, env = "TOLLGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log as JSON lines instead of pretty text (also TOLLGATE_LOG_FORMAT=json).
    #[arg(long, global = true)]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve,
    /// Validate the configuration and print the route table.
    Check,
    /// Show which route a request would take, and why.
    Route {
        /// HTTP method, e.g. GET
        method: String,
        /// Full URL (http://host/path) or a path
        url: String,
    },
    /// Gateway + built-in echo upstream + demo user and client; prints curl lines.
    Demo,
    /// Manage users.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage OAuth clients.
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Configuration helpers.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Exit 0 when the admin port's /healthz answers 200, else 1 (a container
    /// HEALTHCHECK for images without a shell or curl).
    Healthcheck {
        /// Admin address to ask instead of `listen.admin` from the config.
        #[arg(long)]
        addr: Option<std::net::SocketAddr>,
    },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user; prints it as JSON (never the password).
    Create(UsersCreate),
    /// Import users from JSONL or CSV; argon2 and bcrypt hashes are kept as they are.
    Import { file: PathBuf },
}

#[derive(Debug, Args)]
pub struct UsersCreate {
    #[arg(long)]
    pub email: String,
    #[arg(long)]
    pub username: Option<String>,
    #[arg(long, default_value = "default")]
    pub role: String,
    /// Read the password from standard input.
    #[arg(long, conflicts_with = "password")]
    pub password_stdin: bool,
    #[arg(long)]
    pub password: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Create a client; prints it as JSON (never the secret).
    Create(ClientsCreate),
}

#[derive(Debug, Args)]
pub struct ClientsCreate {
    #[arg(long)]
    pub id: String,
    /// A public client (no secret), e.g. a browser or mobile app.
    #[arg(long, conflicts_with = "secret_stdin")]
    pub public: bool,
    /// Read the client secret from standard input.
    #[arg(long)]
    pub secret_stdin: bool,
    /// Comma-separated grants. The password grant is a legacy switch (RFC 9700): a client
    /// gets it only when it is named here.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "authorization_code,refresh_token"
    )]
    pub grants: Vec<String>,
    /// Space-separated scopes.
    #[arg(long, default_value = "")]
    pub scopes: String,
    /// An exact redirect URI for the authorization code flow (repeatable): https, or
    /// http on a loopback address for native apps.
    #[arg(long = "redirect-uri")]
    pub redirect_uris: Vec<String>,
    /// An exact URI `GET /oauth/logout` may send the browser to afterwards (repeatable).
    #[arg(long = "post-logout-redirect-uri")]
    pub post_logout_redirect_uris: Vec<String>,
    /// The operator's own app: no consent screen (the default).
    #[arg(long, conflicts_with = "third_party")]
    pub first_party: bool,
    /// Someone else's app: the user is asked to consent before it gets a code.
    #[arg(long)]
    pub third_party: bool,
    /// How the client authenticates at the token endpoint: `none` is a public client
    /// (same as --public); the secret methods need --secret-stdin.
    #[arg(long, value_parser = ["client_secret_basic", "client_secret_post", "none", "tls_client_auth", "self_signed_tls_client_auth"])]
    pub auth_method: Option<String>,
    /// `tls_client_auth`: the subject DN its certificate (from `tls.client_ca`) must
    /// have, RFC 4514 form as Tollgate reads it (`CN=billing,O=Example`).
    #[arg(long)]
    pub tls_subject: Option<String>,
    /// `self_signed_tls_client_auth`: the PEM file of the client's certificate (its
    /// SHA-256 thumbprint is registered).
    #[arg(long)]
    pub cert_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate a signing key pair as PEM files.
    Generate {
        #[arg(long, value_parser = ["RS256", "ES256", "EdDSA"])]
        alg: String,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the JSON Schema of the configuration file.
    Schema,
}
