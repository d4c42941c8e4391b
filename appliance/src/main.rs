//! `appliance`: the branch print appliance daemon and its operator CLI.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 bad usage or configuration.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use appliance::accounting::{self, GroupBy};
use appliance::config::Config;
use appliance::credentials::Secret;
use appliance::job::{JobRecord, JobState};
use appliance::output::{self, DeviceUri};
use appliance::store::{JobQuery, StoreError, StoreReader, UserAdmin, spool};
use appliance::users::{self, NewUser, UserSummary};
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
    /// Manage the users who release jobs at printers.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Look at the configured printers.
    Printers {
        #[command(subcommand)]
        command: PrintersCommand,
    },
    /// Sum the accounting journal per user, printer or day.
    Report {
        /// What each line is.
        #[arg(long, value_enum)]
        by: ReportBy,
        /// Only prints finished at or after this date (YYYY-MM-DD, UTC) or
        /// RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// CSV with a header row instead of a table.
        #[arg(long)]
        csv: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Show the audit log: logins, failed logins, logouts, releases, deletes.
    Audit {
        /// Only events at or after this date (YYYY-MM-DD, UTC) or RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// An interactive release station in the console: log in at a
    /// printer, list your jobs, release them and watch them print.
    Terminal {
        /// The release API, e.g. http://127.0.0.1:8080.
        #[arg(long)]
        api: String,
        /// The printer (device id) this terminal stands at.
        #[arg(long)]
        device: String,
        /// PEM certificate to trust for an https:// API.
        #[arg(long)]
        ca: Option<PathBuf>,
    },
    /// Check a config file and print the effective configuration.
    CheckConfig {
        /// TOML config file.
        config: PathBuf,
    },
}

/// Where the store is: from a config file, or given directly.
#[derive(clap::Args)]
struct StoreArgs {
    /// TOML config file (for `data_dir`).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Data directory, overriding the config.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl StoreArgs {
    /// The config, with `--data-dir` applied.
    fn resolve(&self) -> Result<Config, Failure> {
        let mut config = load(self.config.as_deref())?;
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        Ok(config)
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ReportBy {
    User,
    Device,
    Day,
}

#[derive(Subcommand)]
enum JobsCommand {
    /// List jobs, oldest first.
    List {
        #[command(flatten)]
        store: StoreArgs,
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
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum PrintersCommand {
    /// List printers with what each says it can do (asked over IPP, in
    /// parallel; raw-socket and LPD printers cannot say).
    List {
        /// TOML config file (the printers are configured there).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Seconds to wait for each printer.
        #[arg(long, default_value_t = 5)]
        timeout: u64,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Add a user. Secrets never go on the command line: with --pin and/or
    /// --password they are asked for (or read from standard input, one line
    /// each, PIN first).
    Add {
        /// Login name.
        id: String,
        /// Name shown at the printer.
        #[arg(long)]
        name: String,
        /// E-mail address.
        #[arg(long)]
        email: Option<String>,
        /// A group (repeat for several).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// A card or badge number (repeat for several).
        #[arg(long = "card")]
        cards: Vec<String>,
        /// Ask for a PIN.
        #[arg(long)]
        pin: bool,
        /// Ask for a password.
        #[arg(long)]
        password: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Add users from a CSV file with a header row: id, display_name, email,
    /// groups, pin, cards, password (groups and cards separated by ';').
    /// All rows are checked first; either every user is added or none.
    Import {
        /// The CSV file.
        file: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Refuse a user's logins from now on.
    Disable {
        /// Login name.
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Allow a disabled user's logins again.
    Enable {
        /// Login name.
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List users and how each can log in (never any secret).
    List {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
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
        let bind = |listen: std::net::SocketAddr, key: &'static str| async move {
            tokio::net::TcpListener::bind(listen).await.map_err(|e| {
                Failure::Usage(format!(
                    "cannot listen on {listen} ({e}); change {key} or stop what uses the port"
                ))
            })
        };
        let listeners = appliance::daemon::Listeners {
            ipp: bind(config.ipp.listen, "ipp.listen").await?,
            api: bind(config.api.listen, "api.listen").await?,
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
                appliance::daemon::DaemonError::Tls(_) => Failure::Usage(e.to_string()),
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

fn list_printers(config: &Config, timeout: u64, json: bool) -> Result<(), Failure> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let timeout = std::time::Duration::from_secs(timeout.max(1));
    let answers = runtime.block_on(futures_util::future::join_all(config.printers.iter().map(
        |printer| async move {
            match DeviceUri::for_printer(printer) {
                Ok(DeviceUri::Ipp(ipp)) => Some(output::ipp::capabilities(&ipp, timeout).await),
                Ok(_) => None,
                Err(e) => Some(Err(output::OutputError::Rejected(e))),
            }
        },
    )));
    let mut out = std::io::stdout().lock();
    if config.printers.is_empty() {
        writeln!(
            out,
            "(no printers configured; add [[printer]] tables to the config)"
        )
        .context("cannot write to stdout")?;
        return Ok(());
    }
    let yes_no = |b: Option<bool>| match b {
        Some(true) => "yes",
        Some(false) => "no",
        None => "?",
    };
    for (printer, answer) in config.printers.iter().zip(answers) {
        let (caps, problem) = match answer {
            Some(Ok(caps)) => (Some(caps), None),
            Some(Err(e)) => (None, Some(format!("unreachable: {e}"))),
            None => (
                None,
                Some("capabilities unknown (raw socket or LPD printers cannot say)".to_owned()),
            ),
        };
        if json {
            let line = serde_json::json!({
                "id": printer.id,
                "name": printer.name,
                "location": printer.location,
                "uri": printer.uri,
                "reachable": caps.is_some(),
                "problem": problem,
                "make_and_model": caps.as_ref().and_then(|c| c.make_and_model.clone()),
                "color": caps.as_ref().and_then(|c| c.color),
                "duplex": caps.as_ref().and_then(|c| c.duplex),
                "formats": caps.as_ref().map(|c| c.formats.clone()),
                "state": caps.as_ref().and_then(|c| c.state.clone()),
                "state_message": caps.as_ref().and_then(|c| c.state_message.clone()),
            });
            writeln!(out, "{line}").context("cannot write to stdout")?;
            continue;
        }
        writeln!(
            out,
            "{} ({}){}",
            printer.id,
            printer.name.as_deref().unwrap_or(&printer.id),
            printer
                .location
                .as_deref()
                .map(|l| format!(", {l}"))
                .unwrap_or_default()
        )
        .context("cannot write to stdout")?;
        writeln!(out, "  uri:     {}", printer.uri).context("cannot write to stdout")?;
        match (&caps, &problem) {
            (Some(c), _) => {
                writeln!(
                    out,
                    "  model:   {}\n  state:   {}{}\n  colour:  {}   duplex: {}\n  formats: {}",
                    c.make_and_model.as_deref().unwrap_or("?"),
                    c.state.as_deref().unwrap_or("?"),
                    c.state_message
                        .as_deref()
                        .map(|m| format!(" ({m})"))
                        .unwrap_or_default(),
                    yes_no(c.color),
                    yes_no(c.duplex),
                    c.formats.join(", ")
                )
                .context("cannot write to stdout")?;
            }
            (None, Some(problem)) => {
                writeln!(out, "  {problem}").context("cannot write to stdout")?;
            }
            (None, None) => {}
        }
    }
    Ok(())
}

fn users_command(command: UsersCommand) -> Result<(), Failure> {
    match command {
        UsersCommand::Add {
            id,
            name,
            email,
            groups,
            cards,
            pin,
            password,
            store,
        } => {
            let config = store.resolve()?;
            let mut secrets = SecretInput::default();
            let user = NewUser {
                pin: pin
                    .then(|| secrets.read(&format!("PIN for {id}: ")))
                    .transpose()?,
                password: password
                    .then(|| secrets.read(&format!("Password for {id}: ")))
                    .transpose()?,
                id,
                display_name: name,
                email,
                groups,
                cards: cards.into_iter().map(Secret::new).collect(),
            };
            add_users(&config, vec![user])
        }
        UsersCommand::Import { file, store } => {
            let config = store.resolve()?;
            let input = std::fs::File::open(&file)
                .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", file.display())))?;
            let users = users::parse_csv(input).map_err(|problems| {
                Failure::Usage(format!(
                    "{} has {} problem(s); nothing was imported:\n  {}",
                    file.display(),
                    problems.len(),
                    problems.join("\n  ")
                ))
            })?;
            add_users(&config, users)
        }
        UsersCommand::Disable { id, store } => set_disabled(&store.resolve()?, &id, true),
        UsersCommand::Enable { id, store } => set_disabled(&store.resolve()?, &id, false),
        UsersCommand::List { json, store } => list_users(&store.resolve()?, json),
    }
}

/// Reads secrets without echo from the terminal, or line by line from
/// standard input when it is not a terminal.
#[derive(Default)]
struct SecretInput {
    lines: Option<std::io::Lines<std::io::StdinLock<'static>>>,
}

impl SecretInput {
    fn read(&mut self, prompt: &str) -> Result<Secret, Failure> {
        use std::io::BufRead;
        if std::io::stdin().is_terminal() {
            return rpassword::prompt_password(prompt)
                .map(Secret::new)
                .map_err(|e| {
                    Failure::Runtime(anyhow::anyhow!("cannot read from the terminal: {e}"))
                });
        }
        let lines = self
            .lines
            .get_or_insert_with(|| std::io::stdin().lock().lines());
        match lines.next() {
            Some(Ok(line)) => Ok(Secret::new(line)),
            _ => Err(Failure::Usage(format!(
                "expected a line on standard input for {:?}",
                prompt.trim_end_matches([':', ' '])
            ))),
        }
    }
}

fn add_users(config: &Config, users: Vec<NewUser>) -> Result<(), Failure> {
    let mut admin = UserAdmin::open(&config.data_dir).context("cannot open the store")?;
    let total = users.len();
    let mut prepared = Vec::with_capacity(total);
    for (i, user) in users.iter().enumerate() {
        // argon2id takes tens of milliseconds per secret on purpose; say how far along.
        if total > 1 && (i % 25 == 0 || i + 1 == total) {
            eprintln!("hashing credentials: {}/{total}", i + 1);
        }
        let user = users::prepare(user, admin.key(), config.users.pin_only_login)
            .map_err(|e| Failure::Usage(e.to_string()))?;
        prepared.push(user);
    }
    admin.add(&prepared).map_err(|e| match e {
        StoreError::Conflict(message) => Failure::Usage(format!("{message}; nothing was added")),
        other => Failure::Runtime(anyhow::Error::new(other).context("cannot add users")),
    })?;
    println!("added {total} user(s)");
    Ok(())
}

fn set_disabled(config: &Config, id: &str, disabled: bool) -> Result<(), Failure> {
    let admin = UserAdmin::open(&config.data_dir).context("cannot open the store")?;
    admin.set_disabled(id, disabled).map_err(|e| match e {
        StoreError::NotFound => Failure::Usage(format!("no user {id}")),
        other => Failure::Runtime(anyhow::Error::new(other).context("cannot change the user")),
    })?;
    println!("{id} {}", if disabled { "disabled" } else { "enabled" });
    Ok(())
}

fn list_users(config: &Config, json: bool) -> Result<(), Failure> {
    let admin = UserAdmin::open(&config.data_dir).context("cannot open the store")?;
    let users = admin.list().context("cannot read users")?;
    let mut out = std::io::stdout().lock();
    let logins = |u: &UserSummary| {
        let mut kinds = Vec::new();
        if u.password {
            kinds.push("password".to_owned());
        }
        if u.pin {
            kinds.push("pin".to_owned());
        }
        if u.pin_only {
            kinds.push("pin-only".to_owned());
        }
        if u.cards > 0 {
            kinds.push(format!("{} card(s)", u.cards));
        }
        kinds.join(", ")
    };
    if json {
        for u in &users {
            let line = serde_json::json!({
                "id": u.id,
                "display_name": u.display_name,
                "email": u.email,
                "groups": u.groups,
                "disabled": u.disabled,
                "password": u.password,
                "pin": u.pin,
                "pin_only": u.pin_only,
                "cards": u.cards,
            });
            writeln!(out, "{line}").context("cannot write to stdout")?;
        }
        return Ok(());
    }
    writeln!(
        out,
        "{:<20}  {:<24}  {:<28}  {:<20}  {:<8}  LOGIN",
        "ID", "NAME", "EMAIL", "GROUPS", "STATE"
    )
    .context("cannot write to stdout")?;
    for u in &users {
        writeln!(
            out,
            "{:<20}  {:<24}  {:<28}  {:<20}  {:<8}  {}",
            u.id,
            u.display_name,
            u.email.as_deref().unwrap_or("-"),
            u.groups.join(","),
            if u.disabled { "disabled" } else { "active" },
            logins(u)
        )
        .context("cannot write to stdout")?;
    }
    Ok(())
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
        "{:<36}  {:<14}  {:>5}  {:<12}  {:<10}  {:>10}  {:>6}  {:<20}  NAME",
        "UUID", "QUEUE", "ID", "OWNER", "STATE", "BYTES", "PAGES", "SUBMITTED (UTC)"
    )
    .context("cannot write to stdout")?;
    for job in &jobs {
        writeln!(
            out,
            "{:<36}  {:<14}  {:>5}  {:<12}  {:<10}  {:>10}  {:>6}  {:<20}  {}",
            job.uuid,
            job.queue,
            job.ipp_job_id,
            job.owner,
            job.state.keyword(),
            job.document.as_ref().map_or(0, |d| d.size),
            job.document
                .as_ref()
                .map_or_else(|| "-".to_owned(), |d| d.analysis.pages_label()),
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

fn since_ms(since: Option<&str>) -> Result<i64, Failure> {
    Ok(since
        .map(accounting::parse_since)
        .transpose()
        .map_err(|e| Failure::Usage(format!("--since: {e}")))?
        .unwrap_or(i64::MIN))
}

fn audit(data_dir: &Path, since: Option<&str>, json: bool) -> Result<(), Failure> {
    let since_ms = since_ms(since)?;
    let reader = StoreReader::open(data_dir).context("cannot open the job store")?;
    let events = reader
        .audit_since(since_ms)
        .context("cannot read the audit log")?;
    let mut out = std::io::stdout().lock();
    for e in &events {
        if json {
            let line = serde_json::to_string(e).context("cannot encode an event")?;
            writeln!(out, "{line}")
        } else {
            writeln!(
                out,
                "{:>6}  {}  {:<13}  {:<12}  {:<12}  {:<36}  {}",
                e.seq,
                utc(e.time_ms),
                e.action,
                e.user.as_deref().unwrap_or("-"),
                e.device.as_deref().unwrap_or("-"),
                e.job.as_deref().unwrap_or("-"),
                e.detail
            )
        }
        .context("cannot write to stdout")?;
    }
    Ok(())
}

fn report(data_dir: &Path, by: ReportBy, since: Option<&str>, csv: bool) -> Result<(), Failure> {
    let since_ms = since_ms(since)?;
    let reader = StoreReader::open(data_dir).context("cannot open the job store")?;
    let entries = reader
        .journal_since(since_ms)
        .context("cannot read the accounting journal")?;
    let (by, label) = match by {
        ReportBy::User => (GroupBy::User, "USER"),
        ReportBy::Device => (GroupBy::Device, "PRINTER"),
        ReportBy::Day => (GroupBy::Day, "DAY (UTC)"),
    };
    let rows = accounting::report(&entries, by);
    let stdout = std::io::stdout();
    if csv {
        let mut out = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(stdout.lock());
        out.write_record([
            "key",
            "jobs",
            "pages",
            "color_pages",
            "sheets",
            "jobs_pages_unknown",
            "failed",
        ])
        .context("cannot write to stdout")?;
        for row in &rows {
            out.serialize(row).context("cannot write to stdout")?;
        }
        out.flush().context("cannot write to stdout")?;
        return Ok(());
    }
    let mut out = stdout.lock();
    writeln!(
        out,
        "{label:<24}  {:>6}  {:>8}  {:>8}  {:>8}  {:>13}  {:>6}",
        "JOBS", "PAGES", "COLOR", "SHEETS", "PAGES UNKNOWN", "FAILED"
    )
    .context("cannot write to stdout")?;
    for r in &rows {
        writeln!(
            out,
            "{:<24}  {:>6}  {:>8}  {:>8}  {:>8}  {:>13}  {:>6}",
            r.key, r.jobs, r.pages, r.color_pages, r.sheets, r.jobs_pages_unknown, r.failed
        )
        .context("cannot write to stdout")?;
    }
    if rows.is_empty() {
        writeln!(
            out,
            "(nothing printed{})",
            if since.is_some() {
                " since then"
            } else {
                " yet"
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
        "pages": job.document.as_ref().and_then(|d| d.analysis.pages),
        "pages_exact": job.document.as_ref().is_some_and(|d| d.analysis.pages_exact),
        "color": job.document.as_ref().map(|d| d.analysis.color.keyword()),
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
    let mut bad = 0usize;
    let mut checked = 0usize;
    let mut after = None;
    loop {
        let jobs = reader
            .documents_after(after, 500)
            .context("cannot read jobs")?;
        let Some(last) = jobs.last() else { break };
        after = Some(last.uuid);
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
    }
    println!("{checked} documents checked, {bad} damaged or missing");
    if bad > 0 {
        return Err(Failure::Runtime(anyhow::anyhow!(
            "{bad} stored documents failed the check; their jobs cannot print"
        )));
    }
    Ok(())
}
