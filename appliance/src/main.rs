//! `appliance`: the branch print appliance daemon and its operator CLI.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 bad usage or configuration.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use appliance::config::Config;
use appliance::job::{JobRecord, JobState};
use appliance::store::{JobQuery, StoreReader, spool};
use clap::{Parser, Subcommand};
use tokio::sync::watch;

#[derive(Parser)]
#[command(name = "appliance", version, about = "Branch print appliance")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the appliance (IPP intake, store, output).
    Serve {
        /// TOML config file; without it the embedded defaults are used.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Look at stored jobs (works while the daemon runs).
    Jobs {
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// Check the spool.
    Spool {
        #[command(subcommand)]
        command: SpoolCommand,
    },
    /// Check a config file and print the effective configuration.
    CheckConfig {
        /// TOML config file.
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum JobsCommand {
    /// List jobs, oldest first.
    List {
        /// TOML config file (for `data_dir`).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Data directory, overriding the config.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Only this queue.
        #[arg(long)]
        queue: Option<String>,
        /// Only this owner.
        #[arg(long)]
        user: Option<String>,
        /// Include finished jobs (completed, canceled, aborted).
        #[arg(long)]
        all: bool,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum SpoolCommand {
    /// Re-read every stored document and compare it with its recorded SHA-256.
    Check {
        /// TOML config file (for `data_dir`).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Data directory, overriding the config.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config } => load(config.as_deref()).and_then(serve),
        Command::CheckConfig { config } => load(Some(&config)).map(|c| {
            println!("{c:#?}");
        }),
        Command::Jobs {
            command:
                JobsCommand::List {
                    config,
                    data_dir,
                    queue,
                    user,
                    all,
                    json,
                },
        } => data_dir_of(config.as_deref(), data_dir)
            .and_then(|dir| list_jobs(&dir, queue, user, all, json)),
        Command::Spool {
            command: SpoolCommand::Check { config, data_dir },
        } => data_dir_of(config.as_deref(), data_dir).and_then(|dir| check_spool(&dir)),
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

/// Exit 2 for what the operator must fix in the invocation or config, 1 otherwise.
enum Failure {
    Usage(String),
    Runtime(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Runtime(e)
    }
}

fn load(path: Option<&Path>) -> Result<Config, Failure> {
    match path {
        Some(path) => Config::load(path).map_err(|e| Failure::Usage(e.to_string())),
        None => Ok(Config::embedded()),
    }
}

fn data_dir_of(config: Option<&Path>, data_dir: Option<PathBuf>) -> Result<PathBuf, Failure> {
    match data_dir {
        Some(dir) => Ok(dir),
        None => Ok(load(config)?.data_dir),
    }
}

fn serve(config: Config) -> Result<(), Failure> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // One TLS implementation for the whole process (printers over ipps://).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listen = config.ipp.listen;
        let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
            Failure::Usage(format!(
                "cannot listen on {listen} ({e}); change ipp.listen or stop what uses the port"
            ))
        })?;
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down: finishing requests in flight");
            let _ = stop.send(true);
        });
        appliance::daemon::run(config, listener, stopped)
            .await
            .map_err(|e| Failure::Runtime(e.into()))
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

fn list_jobs(
    dir: &Path,
    queue: Option<String>,
    user: Option<String>,
    all: bool,
    json: bool,
) -> Result<(), Failure> {
    let reader = StoreReader::open(dir).context("cannot open the job store")?;
    let mut states = vec![
        JobState::Pending,
        JobState::PendingHeld,
        JobState::Processing,
        JobState::ProcessingStopped,
    ];
    if all {
        states.extend([JobState::Canceled, JobState::Aborted, JobState::Completed]);
    }
    let jobs = reader
        .list(&JobQuery {
            queue,
            states,
            owner: user,
            limit: u32::MAX,
        })
        .context("cannot read jobs")?;
    let mut out = std::io::stdout().lock();
    if json {
        for job in &jobs {
            writeln!(out, "{}", job_json(job)).context("cannot write to stdout")?;
        }
        return Ok(());
    }
    writeln!(
        out,
        "{:<36}  {:<14}  {:>5}  {:<12}  {:<10}  {:>10}  {:<20}  NAME",
        "UUID", "QUEUE", "ID", "OWNER", "STATE", "BYTES", "SUBMITTED (UTC)"
    )
    .context("cannot write to stdout")?;
    for job in &jobs {
        writeln!(
            out,
            "{:<36}  {:<14}  {:>5}  {:<12}  {:<10}  {:>10}  {:<20}  {}",
            job.uuid,
            job.queue,
            job.ipp_job_id,
            job.owner,
            job.state.keyword(),
            job.document.as_ref().map_or(0, |d| d.size),
            utc(job.created_ms),
            job.name
        )
        .context("cannot write to stdout")?;
    }
    if jobs.is_empty() {
        writeln!(
            out,
            "(no jobs{})",
            if all {
                ""
            } else {
                "; --all shows finished ones"
            }
        )
        .context("cannot write to stdout")?;
    }
    Ok(())
}

fn job_json(job: &JobRecord) -> serde_json::Value {
    serde_json::json!({
        "uuid": job.uuid.to_string(),
        "queue": job.queue,
        "job_id": job.ipp_job_id,
        "owner": job.owner,
        "name": job.name,
        "state": job.state.keyword(),
        "state_reasons": job.state_reasons,
        "state_message": job.state_message,
        "format": job.document.as_ref().map(|d| &d.format),
        "size": job.document.as_ref().map(|d| d.size),
        "sha256": job.document.as_ref().map(|d| &d.sha256),
        "created": utc(job.created_ms),
        "printer": job.printer,
    })
}

fn utc(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|_| ms.to_string())
}

fn check_spool(dir: &Path) -> Result<(), Failure> {
    let reader = StoreReader::open(dir).context("cannot open the job store")?;
    let jobs = reader
        .list(&JobQuery {
            queue: None,
            states: vec![
                JobState::Pending,
                JobState::PendingHeld,
                JobState::Processing,
                JobState::ProcessingStopped,
            ],
            owner: None,
            limit: u32::MAX,
        })
        .context("cannot read jobs")?;
    let mut bad = 0usize;
    let mut checked = 0usize;
    for job in &jobs {
        let Some(doc) = &job.document else { continue };
        checked += 1;
        let verdict = reader
            .spool()
            .open_document(job.uuid)
            .and_then(spool::hash_document);
        match verdict {
            Ok((size, sha)) if size == doc.size && sha == doc.sha256 => {}
            Ok((size, sha)) => {
                bad += 1;
                eprintln!(
                    "job {} ({}/{}): stored {size} bytes sha256 {sha}, expected {} bytes sha256 {}",
                    job.uuid, job.queue, job.ipp_job_id, doc.size, doc.sha256
                );
            }
            Err(e) => {
                bad += 1;
                eprintln!("job {} ({}/{}): {e}", job.uuid, job.queue, job.ipp_job_id);
            }
        }
    }
    println!("{checked} documents checked, {bad} damaged or missing");
    if bad > 0 {
        return Err(Failure::Runtime(anyhow::anyhow!(
            "{bad} stored documents failed the check; their jobs cannot print"
        )));
    }
    Ok(())
}
