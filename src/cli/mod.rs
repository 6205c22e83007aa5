//! The command line: `args.rs` is what it accepts (clap), this file what each command
//! does; `accounts.rs` (users and clients), `healthcheck.rs`, `demo.rs` and the built-in
//! `echo.rs` upstream are the commands too big to sit here.

mod accounts;
pub mod args;
pub mod demo;
pub mod echo;
mod healthcheck;

pub use args::Cli;

use std::path::PathBuf;

use http::Method;

use crate::app::Gateway;
use crate::config::raw::LogFormat;
use crate::config::{Config, DEFAULT_PATH};
use crate::http::path::normalize_path;
use crate::proxy::route::RouteTable;
use args::{Command, ConfigCommand};

pub type CmdResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

fn config_path(cli: &Cli) -> PathBuf {
    cli.config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
}

pub async fn run(cli: Cli) -> CmdResult {
    match &cli.command {
        Command::Config(ConfigCommand::Schema) => {
            println!("{}", Config::json_schema());
            Ok(())
        }
        Command::Check => {
            let cfg = Config::load(&config_path(&cli))?;
            for w in cfg.warnings() {
                eprintln!("warning: {w}");
            }
            print_route_table(&cfg);
            Ok(())
        }
        Command::Route { method, url } => {
            let cfg = Config::load(&config_path(&cli))?;
            route(&cfg, method, url)
        }
        Command::Serve => serve(&cli).await,
        Command::Users(cmd) => accounts::users(&cli, cmd).await,
        Command::Clients(cmd) => accounts::clients(&cli, cmd).await,
        Command::Keys(args::KeysCommand::Generate { alg, out }) => {
            crate::keys::cli_generate(alg, out)
        }
        Command::Demo => demo::run().await,
        Command::Healthcheck { addr } => healthcheck::run(&config_path(&cli), *addr).await,
    }
}

fn log_format(cli: &Cli, cfg: &Config) -> LogFormat {
    if cli.log_json {
        LogFormat::Json
    } else {
        cfg.log.format
    }
}

async fn serve(cli: &Cli) -> CmdResult {
    let cfg = Config::load(&config_path(cli))?;
    crate::telemetry::init(
        log_format(cli, &cfg),
        &cfg.log.level,
        cfg.telemetry.tracing.as_ref(),
    )?;
    for w in cfg.warnings() {
        tracing::warn!("{w}");
    }
    crate::audit::install(&cfg.audit).map_err(|e| {
        format!(
            "audit.destination: cannot open {}: {e}",
            cfg.audit.destination
        )
    })?;
    let grace = cfg.limits.shutdown_grace;
    if let Some(addr) = cfg.echo_upstream {
        let bound = echo::spawn(addr)
            .await
            .map_err(|e| format!("echo_upstream: cannot listen on {addr}: {e}"))?;
        tracing::info!(addr = %bound, "built-in echo upstream listening (echo_upstream; not for production)");
    }
    let services = crate::app::wiring::build(&cfg).await?;
    let gateway = Gateway::start(cfg, services).await?;
    wait_for_shutdown(&gateway).await?;
    tracing::info!(
        grace_ms = grace.as_millis() as u64,
        "shutting down: no new connections; draining in-flight requests"
    );
    if gateway.shutdown(grace).await {
        tracing::info!("all connections closed");
    } else {
        tracing::warn!("grace period over; closing remaining connections");
    }
    // The last spans, with a bounded wait; off the runtime, as the export thread's
    // acknowledgement is a blocking receive.
    let _ = tokio::task::spawn_blocking(crate::telemetry::trace::shutdown).await;
    Ok(())
}

/// Waits for SIGTERM or SIGINT; SIGHUP reloads the configuration meanwhile.
async fn wait_for_shutdown(gateway: &Gateway) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading configuration");
                let _ = gateway.app.reload();
            }
        }
    }
}

fn print_route_table(cfg: &Config) {
    println!("configuration OK: {} route(s)", cfg.routes.len());
    let table = RouteTable::new(cfg.routes.clone());
    let mut routes: Vec<_> = table.routes().to_vec();
    routes.sort_by(|a, b| b.path.len().cmp(&a.path.len()).then(a.index.cmp(&b.index)));
    println!(
        "{:<20} {:<24} {:<28} {:<12} {:<10} UPSTREAM",
        "NAME", "HOST", "PATH", "METHODS", "AUTH"
    );
    for r in routes {
        let methods = r
            .methods
            .as_ref()
            .map(|m| m.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(","))
            .unwrap_or_else(|| "any".into());
        let targets: Vec<String> = r.upstream.targets.iter().map(|t| t.to_string()).collect();
        println!(
            "{:<20} {:<24} {:<28} {:<12} {:<10} {}",
            r.name,
            r.host.to_string(),
            r.path,
            methods,
            format!("{:?}", r.auth.mode).to_lowercase(),
            targets.join(" ")
        );
        println!("{:<20} {}", "", r.upstream.transport());
    }
}

fn route(cfg: &Config, method: &str, url: &str) -> CmdResult {
    let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("`{method}` is not an HTTP method"))?;
    let (host, path) = if url.starts_with('/') {
        (None, url.to_string())
    } else {
        let u = url::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        (u.host_str().map(str::to_owned), u.path().to_string())
    };
    let norm = normalize_path(&path).map_err(|e| format!("path `{path}`: {e}"))?;
    let table = RouteTable::new(cfg.routes.clone());
    let e = table.explain(
        host.as_deref(),
        &method,
        &crate::http::path::route_key(&norm),
    );
    println!(
        "request: {method} host={} path={} (normalised: {})",
        host.as_deref().unwrap_or("(none)"),
        path,
        e.normalised_path
    );
    for (name, why) in &e.considered {
        println!("  {name:<20} {why}");
    }
    match e.chosen {
        Some(name) => {
            let r = table
                .routes()
                .iter()
                .find(|r| r.name == name)
                .expect("chosen route exists");
            // The same rule the proxy forwards by.
            let fwd = crate::proxy::forwarded_path(r, norm.to_string());
            let targets: Vec<String> = r.upstream.targets.iter().map(|t| t.to_string()).collect();
            println!(
                "route: {name}\nauth: {:?}\nforwarded as: {} {}{fwd}\nupstream: {}",
                r.auth.mode,
                method,
                targets.join(" | "),
                r.upstream.transport()
            );
            Ok(())
        }
        None => Err(format!("no route matches {method} {url}: the gateway answers 404").into()),
    }
}
