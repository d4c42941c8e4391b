//! `appliance`: the branch print appliance daemon and its operator CLI.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 bad usage or configuration.

mod cli;

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use appliance::config::Config;
use clap::Parser;
use tokio::sync::watch;

use cli::args::{Cli, Command, JobsCommand, PrintersCommand, SpoolCommand};
use cli::backup::{backup_store, restore_store};
use cli::fleet::{enroll, read_token, status};
use cli::jobs::{check_spool, list_jobs};
use cli::printers::list_printers;
use cli::records::{audit, report};
use cli::users::users_command;
use cli::{Failure, load};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before any database is opened, as SQLite requires; only speed
    // depends on it.
    if !appliance::store::keep_savepoint_journals_in_memory() {
        eprintln!("note: SQLite was in use before it could be tuned; it keeps its defaults");
    }
    let result = match cli.command {
        Command::Serve { config } => load(config.as_deref()).and_then(serve),
        Command::CheckConfig { config } => load(Some(&config)).and_then(|c| {
            let text = toml::to_string(&c)
                .map_err(|e| Failure::Runtime(anyhow::anyhow!("cannot print the config: {e}")))?;
            print!("{text}");
            Ok(())
        }),
        Command::Jobs {
            command:
                JobsCommand::List {
                    store,
                    queue,
                    user,
                    all,
                    json,
                },
        } => store
            .resolve()
            .and_then(|c| list_jobs(&c.data_dir, queue, user, all, json)),
        Command::Spool {
            command: SpoolCommand::Check { store },
        } => store.resolve().and_then(|c| check_spool(&c.data_dir)),
        Command::Users { command } => users_command(command),
        Command::Terminal { api, device, ca } => terminal(&api, device, ca.as_deref()),
        Command::Enroll {
            central,
            token,
            token_file,
            store,
        } => store.resolve().and_then(|c| {
            let token = match (token, token_file) {
                (Some(token), _) => token,
                (None, Some(file)) => read_token(&file)?,
                (None, None) => return Err(Failure::Usage("give --token or --token-file".into())),
            };
            enroll(&c, central.as_deref(), &token)
        }),
        Command::Status { json, store } => store.resolve().and_then(|c| status(&c, json)),
        Command::Backup { target, store } => {
            store.resolve().and_then(|c| backup_store(&c, &target))
        }
        Command::Restore {
            source,
            replace,
            store,
        } => store
            .resolve()
            .and_then(|c| restore_store(&c, &source, replace)),
        Command::Audit { since, json, store } => store
            .resolve()
            .and_then(|c| audit(&c.data_dir, since.as_deref(), json)),
        Command::Report {
            by,
            since,
            csv,
            store,
        } => store
            .resolve()
            .and_then(|c| report(&c.data_dir, by, since.as_deref(), csv)),
        Command::Printers {
            command:
                PrintersCommand::List {
                    config,
                    timeout,
                    json,
                },
        } => load(config.as_deref()).and_then(|c| list_printers(&c, timeout, json)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("appliance: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("appliance: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: Config) -> Result<(), Failure> {
    // Before anything else, so a box that cannot keep jobs says so plainly.
    appliance::daemon::prepare_data_dir(&config.data_dir)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr);
    match config.log.format {
        appliance::config::LogFormat::Text => {
            logs.with_ansi(std::io::stderr().is_terminal()).init();
        }
        appliance::config::LogFormat::Json => logs.json().with_ansi(false).init(),
    }
    // One TLS implementation for the whole process (printers over ipps://).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let bind = |listen: std::net::SocketAddr, key: &'static str| async move {
            tokio::net::TcpListener::bind(listen).await.map_err(|e| {
                Failure::Usage(format!(
                    "cannot listen on {listen} ({e}); change {key} or stop what uses the port"
                ))
            })
        };
        let listeners = appliance::daemon::Listeners {
            ipp: bind(config.ipp.listen, "ipp.listen").await?,
            api: Some(bind(config.api.listen, "api.listen").await?),
            lpd: match config.lpd.listen {
                Some(listen) => Some(bind(listen, "lpd.listen").await?),
                None => None,
            },
            raw: match config.raw.listen {
                Some(listen) => Some(bind(listen, "raw.listen").await?),
                None => None,
            },
        };
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down: finishing requests in flight");
            let _ = stop.send(true);
        });
        appliance::daemon::run(config, listeners, stopped)
            .await
            .map_err(|e| match e {
                // A certificate that cannot be used is the operator's to fix.
                appliance::daemon::DaemonError::Tls { .. }
                | appliance::daemon::DaemonError::NotEnrolled(_) => Failure::Usage(e.to_string()),
                other => Failure::Runtime(other.into()),
            })
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn terminal(api: &str, device: String, ca: Option<&Path>) -> Result<(), Failure> {
    use appliance::terminal::{ApiClient, Secrets, Terminal, TerminalError};
    let client = ApiClient::new(api, ca).map_err(|e| Failure::Usage(e.to_string()))?;
    let stdin = std::io::stdin();
    let secrets = if stdin.is_terminal() {
        Secrets::Console
    } else {
        Secrets::Input
    };
    let mut terminal = Terminal::new(client, device, stdin.lock(), std::io::stdout(), secrets);
    terminal.run().map_err(|e| match e {
        TerminalError::Device(message) => Failure::Usage(message),
        other => Failure::Runtime(other.into()),
    })
}
