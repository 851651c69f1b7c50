//! The `gatehouse` command line (SPEC §1): `serve`, `check-config` and the other commands.
//! It lives in the library, not in `main.rs`, so that its async bodies (the whole server's
//! futures) are compiled once with the library's parallel codegen units instead of again, in
//! one unit, by the binary: that halves the release build.
//! Exit codes: 0 success, 2 bad usage or bad config, 1 anything else, each with a one-line
//! reason on stderr.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::App;
use crate::config::{Config, ConfigErrors, LogFormat};
use crate::server::StartupError;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "A reverse-proxy authentication gateway with an OAuth 2.0 authorization server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// The config file.
        #[arg(
            long,
            env = "GATEHOUSE_CONFIG",
            default_value = "config/gatehouse.toml"
        )]
        config: PathBuf,
    },
    /// Zero-setup demo on 127.0.0.1: self-signed certificate, throwaway store, sample backend.
    Demo {
        /// Public HTTPS port (0: any free port).
        #[arg(long, default_value_t = 8443)]
        port: u16,
        /// Admin port for /metrics (0: any free port).
        #[arg(long, default_value_t = 9090)]
        admin_port: u16,
    },
    /// Write a ready-to-edit deployment into DIR: a commented gatehouse.toml, a signing key, a
    /// self-signed certificate for localhost and a data folder. Never overwrites a file.
    Init {
        /// The folder (made when missing).
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Run the demo's Confluence-style sample backend alone (plain HTTP), for the routes that
    /// `gatehouse init` writes.
    SampleBackend {
        /// Where to listen.
        #[arg(long, default_value = crate::init::SAMPLE_BACKEND)]
        listen: std::net::SocketAddr,
    },
    /// Validate the config: exit 0, or print every problem with file:line:column and exit 2.
    CheckConfig {
        #[arg(
            long,
            env = "GATEHOUSE_CONFIG",
            default_value = "config/gatehouse.toml"
        )]
        config: PathBuf,
    },
    /// Read a password (one line of stdin; no echo on a terminal) and print its argon2id hash
    /// for `users[].password_hash`.
    HashPassword,
    /// Personal access tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Mint a personal access token into the store and print it (once) on stdout.
    Create {
        #[arg(
            long,
            env = "GATEHOUSE_CONFIG",
            default_value = "config/gatehouse.toml"
        )]
        config: PathBuf,
        /// A user of the config.
        #[arg(long)]
        user: String,
        /// At most the user's max_scope, e.g. ADMIN.
        #[arg(long)]
        scope: String,
        /// Lifetime, e.g. 30d (the default), 12h.
        #[arg(long)]
        ttl: Option<String>,
        /// A label to recognise the token by.
        #[arg(long)]
        name: Option<String>,
    },
}

/// The `gatehouse` binary: parse the command line and run the command.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::CheckConfig { config } => check_config(&config),
        Command::Serve { config } => serve(&config),
        Command::HashPassword => hash_password(),
        Command::Init { dir } => init(&dir),
        Command::SampleBackend { listen } => sample_backend(listen),
        Command::Demo { port, admin_port } => demo(crate::demo::DemoOptions { port, admin_port }),
        Command::Token {
            command:
                TokenCommand::Create {
                    config,
                    user,
                    scope,
                    ttl,
                    name,
                },
        } => token_create(
            &config,
            crate::apps::cli::TokenCreate {
                user,
                scope,
                ttl,
                name,
            },
        ),
    }
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|errors| config_problems(path, &errors))
}

/// Prints every problem of the config at `path` and gives exit code 2.
fn config_problems(path: &std::path::Path, errors: &ConfigErrors) -> ExitCode {
    eprintln!("{errors}");
    let environment = if errors.0.iter().any(|e| e.variable.is_some()) {
        " and the environment"
    } else {
        ""
    };
    eprintln!(
        "gatehouse: {} problem(s) in {}{environment}",
        errors.0.len(),
        path.display()
    );
    ExitCode::from(2)
}

/// The config at `path`, and that every file it names (certificate, keys, CAs) loads: what
/// `serve` needs before it starts.
fn check_config(path: &std::path::Path) -> ExitCode {
    let loaded = load(path).and_then(|config| {
        crate::server::files::load(&config)
            .map(|_| config)
            .map_err(|errors| config_problems(path, &errors))
    });
    match loaded {
        Ok(config) => {
            println!(
                "{}: ok ({} route(s), {} user(s), {} app(s))",
                path.display(),
                config.routes.len(),
                config.users.len(),
                config.apps.len()
            );
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn serve(path: &std::path::Path) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    init_logging(config.log.format, &config.log.level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(async move {
        let app = match App::build(config).await {
            Ok(app) => app,
            Err(StartupError::Config(errors)) => return config_problems(path, &errors),
            Err(e) => return fail(&e.to_string()),
        };
        tracing::info!(
            public = %app.public_addr(),
            plain = ?app.plain_addr(),
            redirect = ?app.redirect_addr(),
            admin = %app.admin_addr(),
            "listening"
        );
        tokio::spawn(reload_on_sighup(app.gateway().clone(), path.to_path_buf()));
        app.run(shutdown_signal()).await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}

fn token_create(path: &std::path::Path, args: crate::apps::cli::TokenCreate) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    let now = crate::clock::Clock::system().now();
    match runtime.block_on(crate::apps::cli::token_create(&config, &args, now)) {
        Ok((token, pat)) => {
            println!("{}", token.expose());
            eprintln!(
                "gatehouse: created personalTokens/{} for {} with scope {}, expires {}",
                pat.id,
                pat.user,
                pat.scope,
                crate::apps::model::rfc3339(pat.expire_time)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gatehouse: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn demo(options: crate::demo::DemoOptions) -> ExitCode {
    init_logging(LogFormat::Text, "warn");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(async move {
        let demo = match crate::demo::build(options).await {
            Ok(d) => d,
            Err(e) => return fail(&e.to_string()),
        };
        println!("{}", demo.instructions());
        let crate::demo::Demo { app, dir, .. } = demo;
        app.run(shutdown_signal()).await;
        drop(dir);
        eprintln!("gatehouse demo stopped; its folder is deleted");
        ExitCode::SUCCESS
    })
}

/// `gatehouse init [DIR]`: the files, then the next commands on stdout.
fn init(dir: &std::path::Path) -> ExitCode {
    match crate::init::init(dir) {
        Ok(done) => {
            print!("{}", crate::init::next_steps(&done, &own_command()));
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e.to_string()),
    }
}

/// How a shell reaches this binary: `gatehouse` when that name on `PATH` is this very file,
/// else its full path.
fn own_command() -> String {
    let Ok(me) = std::env::current_exe().and_then(std::fs::canonicalize) else {
        return "gatehouse".into();
    };
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path)
            .any(|dir| std::fs::canonicalize(dir.join("gatehouse")).is_ok_and(|found| found == me))
    });
    if on_path {
        "gatehouse".into()
    } else {
        crate::init::shell_word(&me.display().to_string())
    }
}

/// `gatehouse sample-backend`: the demo's content API until SIGTERM or SIGINT.
fn sample_backend(listen: std::net::SocketAddr) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(async move {
        match crate::demo::backend::start_on(listen).await {
            Ok(addr) => {
                eprintln!(
                    "gatehouse sample-backend: a Confluence-style content API on http://{addr} (GET/POST /rest/api/content, GET /rest/admin/...)"
                );
                shutdown_signal().await;
                ExitCode::SUCCESS
            }
            Err(e) => fail(&format!("cannot listen on {listen}: {e}")),
        }
    })
}

/// `gatehouse hash-password`: the hash alone on stdout; an empty or unreadable password is
/// bad usage (exit 2).
fn hash_password() -> ExitCode {
    use crate::auth::password;
    let secret = match password::read_password_from_stdin() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("gatehouse: {e}");
            return ExitCode::from(2);
        }
    };
    match password::hash_password(secret.expose()) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&format!("hashing the password: {e}")),
    }
}

fn fail(reason: &str) -> ExitCode {
    eprintln!("gatehouse: {reason}");
    ExitCode::from(1)
}

/// Re-reads the config on every SIGHUP; a broken config is logged and the running one kept.
async fn reload_on_sighup(gateway: std::sync::Arc<crate::server::Gateway>, path: PathBuf) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot install the SIGHUP handler; reload needs a restart");
        return;
    };
    while hup.recv().await.is_some() {
        match gateway.reload(&path) {
            Ok(warnings) => {
                for w in warnings {
                    tracing::warn!("{w}");
                }
                let live = gateway.live.load_full();
                let now = gateway.clock.now();
                if let Err(e) = crate::apps::config_sync::sync_live(
                    &gateway.store,
                    &live.config,
                    &live.directory,
                    now,
                )
                .await
                {
                    tracing::error!(error = %e, "config reloaded, but its [[apps]] could not be synced into the store");
                }
                if let Err(e) = crate::auth::accounts::retire_clashing_federated_users(
                    &gateway.store,
                    &live.config,
                    now,
                )
                .await
                {
                    tracing::error!(error = %e, "config reloaded, but federated users that clash with its [[users]] could not be ended");
                }
                tracing::info!(config = %path.display(), "config reloaded");
            }
            Err(e) => {
                for line in e.to_string().lines() {
                    tracing::error!("{line}");
                }
                tracing::error!(config = %path.display(), "config reload refused; the running config is unchanged");
            }
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

/// Text or JSON lines on stderr; `RUST_LOG` wins over `log.level`. Text carries colour codes
/// only when stderr is a terminal (never into a file or a journal). rustls's per-handshake
/// warnings (an IP address as SNI, which load tools and health checkers send, floods the log
/// during reconnect storms) are kept to errors unless `RUST_LOG` asks for them.
fn init_logging(format: LogFormat, level: &str) {
    use std::io::IsTerminal;
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let filter = from_env
        .and_then(|directives| crate::config::log_filter(&directives))
        .or_else(|| crate::config::log_filter(&format!("{level},rustls=error")))
        .unwrap_or_else(|| {
            Targets::new()
                .with_default(LevelFilter::INFO)
                .with_target("rustls", LevelFilter::ERROR)
        });
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Json => registry.with(fmt.json().flatten_event(true)).init(),
        LogFormat::Text => registry
            .with(fmt.with_ansi(std::io::stderr().is_terminal()))
            .init(),
    }
}
