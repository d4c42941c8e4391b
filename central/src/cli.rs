//! The `central` command line: `serve`, and the admin commands that talk to
//! the running service over its socket.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use central::admin::{self, AdminReply, AdminRequest, UserInput};
use central::config::Config;
use central::store::{IndexedJob, ReportBy, ReportRow, SiteInfo};
use clap::{Parser, Subcommand, ValueEnum};
use sync_protocol::policy::users;

/// How a command failed.
pub(crate) enum Failure {
    /// Bad usage or configuration: exit status 2.
    Usage(String),
    /// Something failed at run time: exit status 1.
    Runtime(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Runtime(e)
    }
}

/// The print fleet's central service.
#[derive(Parser)]
#[command(name = "central", version, about)]
pub(crate) struct Args {
    /// Configuration file (every key has a default; without one, the
    /// defaults are used).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service: the QUIC sync listener, the admin socket, and the
    /// policy directory when configured.
    Serve,
    /// Sites: add (issues an enrollment token), list, revoke.
    Site {
        #[command(subcommand)]
        command: SiteCommand,
    },
    /// Users of the whole fleet.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// The fleet's print rules.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Sum every site's accounting per user, site, printer or day.
    Report {
        /// What each line is.
        #[arg(long, value_enum)]
        by: By,
        /// Only prints finished at or after this date (YYYY-MM-DD, UTC) or
        /// RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// CSV with a header row instead of a table.
        #[arg(long)]
        csv: bool,
    },
    /// The global job index: which site holds which of a user's jobs.
    Jobs {
        /// Whose jobs.
        #[arg(long)]
        user: String,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Policy version, the sites connected now, the storage, and the nodes
    /// sharing it with the sites on each.
    Status,
}

#[derive(Subcommand)]
enum SiteCommand {
    /// Register a site; prints its one-time enrollment token as the last line.
    Add {
        /// The site's name.
        name: String,
    },
    /// Every site, enrolled or not, with its last contact and policy version.
    List {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a site: its sessions end now and it can never connect again.
    Revoke {
        /// The site's name.
        name: String,
    },
}

#[derive(Subcommand)]
enum UserCommand {
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
    },
    /// Add users from a CSV file with a header row: id, display_name, email,
    /// groups, pin, cards, password (groups and cards separated by ';').
    /// Every row is checked first; either every user is added or none.
    Import {
        /// The CSV file.
        file: PathBuf,
    },
    /// Refuse a user's logins at every site.
    Disable {
        /// Login name.
        id: String,
    },
    /// Allow a disabled user's logins again.
    Enable {
        /// Login name.
        id: String,
    },
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Replace the fleet's rules with a TOML file of the `[rules]` shape.
    Set {
        /// The file.
        file: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum By {
    User,
    Site,
    Device,
    Day,
}

pub(crate) fn run(args: Args) -> Result<(), Failure> {
    // Without --config, the installed configuration when there is one (so
    // `central site add` on a packaged server talks to its service).
    let installed = std::path::Path::new("/etc/central/central.toml");
    let config = match &args.config {
        Some(path) => Config::load(path).map_err(|e| Failure::Usage(e.to_string()))?,
        None if installed.exists() => {
            Config::load(installed).map_err(|e| Failure::Usage(e.to_string()))?
        }
        None => Config::default(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match args.command {
            Command::Serve => serve(config).await,
            Command::Site { command } => site(&config, command).await,
            Command::User { command } => user(&config, command).await,
            Command::Rules {
                command: RulesCommand::Set { file },
            } => {
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", file.display())))?;
                let rules = central::policy_files::parse_rules(&text, &file)
                    .map_err(|e| Failure::Usage(e.to_string()))?;
                let done = call(&config, AdminRequest::RulesSet { rules }).await?;
                println!("rules set; policy version {}", done["policy_version"]);
                Ok(())
            }
            Command::Report { by, since, csv } => report(&config, by, since, csv).await,
            Command::Jobs { user, json } => jobs(&config, user, json).await,
            Command::Status => {
                let status = call(&config, AdminRequest::Status).await?;
                println!(
                    "{}",
                    serde_json::to_string_pretty(&status).unwrap_or_default()
                );
                Ok(())
            }
        }
    })
}

async fn serve(config: Config) -> Result<(), Failure> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(e) => {
                    tracing::error!(error = %e, "cannot watch SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
        let _ = stop.send(true);
    });
    central::service::run(config, shutdown)
        .await
        .map_err(|e| match e {
            central::service::ServiceError::Bind { .. }
            | central::service::ServiceError::DataDir { .. }
            | central::service::ServiceError::Submission(_) => Failure::Usage(e.to_string()),
            other => Failure::Runtime(anyhow::Error::new(other)),
        })
}

/// Sends one request; a refusal is a usage error (exit 2) unless the
/// service failed.
async fn call(config: &Config, request: AdminRequest) -> Result<serde_json::Value, Failure> {
    match admin::request(&config.admin_socket(), &request).await {
        Ok(AdminReply::Ok(value)) => Ok(value),
        Ok(AdminReply::Error { code, message }) if code == "unavailable" => {
            Err(Failure::Runtime(anyhow::anyhow!(message)))
        }
        Ok(AdminReply::Error { message, .. }) => Err(Failure::Usage(message)),
        Err(e) => Err(Failure::Runtime(e.into())),
    }
}

fn decode<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, Failure> {
    serde_json::from_value(value).map_err(|e| {
        Failure::Runtime(anyhow::anyhow!(
            "central answered something unexpected: {e}"
        ))
    })
}

async fn site(config: &Config, command: SiteCommand) -> Result<(), Failure> {
    match command {
        SiteCommand::Add { name } => {
            let done = call(config, AdminRequest::SiteAdd { name: name.clone() }).await?;
            let expires = done["expires_ms"]
                .as_i64()
                .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
                .map_or_else(String::new, |t| t.to_string());
            println!("site {name} added; its enrollment token (one use, until {expires}):");
            println!("{}", done["token"].as_str().unwrap_or_default());
            Ok(())
        }
        SiteCommand::List { json } => {
            let sites = call(config, AdminRequest::SiteList).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&sites).unwrap_or_default()
                );
                return Ok(());
            }
            #[derive(serde::Deserialize)]
            struct Listed {
                site: SiteInfo,
                connected: bool,
            }
            let sites: Vec<Listed> = decode(sites)?;
            println!(
                "{:<24} {:<10} {:<25} {:>7}",
                "SITE", "STATE", "LAST CONTACT", "POLICY"
            );
            for Listed { site, connected } in sites {
                let state = match (site.revoked_ms, site.enrolled_ms, connected) {
                    (Some(_), _, _) => "revoked",
                    (None, None, _) => "invited",
                    (None, Some(_), true) => "connected",
                    (None, Some(_), false) => "offline",
                };
                let contact = site
                    .last_contact_ms
                    .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
                    .map_or_else(|| "never".into(), |t| t.to_string());
                println!(
                    "{:<24} {:<10} {:<25} {:>7}",
                    site.name, state, contact, site.policy_version
                );
            }
            Ok(())
        }
        SiteCommand::Revoke { name } => {
            let done = call(config, AdminRequest::SiteRevoke { name: name.clone() }).await?;
            println!(
                "site {name} revoked; {} open session(s) ended",
                done["sessions_ended"]
            );
            Ok(())
        }
    }
}

async fn user(config: &Config, command: UserCommand) -> Result<(), Failure> {
    let (request, done): (AdminRequest, fn(&serde_json::Value) -> String) = match command {
        UserCommand::Add {
            id,
            name,
            email,
            groups,
            cards,
            pin,
            password,
        } => {
            let mut secrets = SecretInput::default();
            let pin = pin
                .then(|| secrets.read(&format!("PIN for {id}: ")))
                .transpose()?;
            let password = password
                .then(|| secrets.read(&format!("Password for {id}: ")))
                .transpose()?;
            let user = UserInput {
                id,
                display_name: name,
                email,
                groups,
                pin,
                cards,
                password,
            };
            (AdminRequest::UserAdd { users: vec![user] }, |d| {
                format!("added 1 user; policy version {}", d["policy_version"])
            })
        }
        UserCommand::Import { file } => {
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
            let users = users.into_iter().map(UserInput::from).collect();
            (AdminRequest::UserAdd { users }, |d| {
                format!(
                    "added {} user(s); policy version {}",
                    d["added"], d["policy_version"]
                )
            })
        }
        UserCommand::Disable { id } => {
            (AdminRequest::UserSetDisabled { id, disabled: true }, |d| {
                format!(
                    "user {} disabled; policy version {}",
                    d["user"].as_str().unwrap_or_default(),
                    d["policy_version"]
                )
            })
        }
        UserCommand::Enable { id } => (
            AdminRequest::UserSetDisabled {
                id,
                disabled: false,
            },
            |d| {
                format!(
                    "user {} enabled; policy version {}",
                    d["user"].as_str().unwrap_or_default(),
                    d["policy_version"]
                )
            },
        ),
    };
    let reply = call(config, request).await?;
    println!("{}", done(&reply));
    Ok(())
}

/// Reads secrets without echo from the terminal, or line by line from
/// standard input when it is not a terminal (as `appliance users add`).
#[derive(Default)]
struct SecretInput {
    lines: Option<std::io::Lines<std::io::StdinLock<'static>>>,
}

impl SecretInput {
    fn read(&mut self, prompt: &str) -> Result<String, Failure> {
        use std::io::BufRead;
        if std::io::stdin().is_terminal() {
            return rpassword::prompt_password(prompt).map_err(|e| {
                Failure::Runtime(anyhow::anyhow!("cannot read from the terminal: {e}"))
            });
        }
        let lines = self
            .lines
            .get_or_insert_with(|| std::io::stdin().lock().lines());
        match lines.next() {
            Some(Ok(line)) => Ok(line),
            _ => Err(Failure::Usage(format!(
                "expected a line on standard input for {:?}",
                prompt.trim_end_matches([':', ' '])
            ))),
        }
    }
}

/// `YYYY-MM-DD` (UTC midnight) or an RFC 3339 time, in ms since the epoch.
fn parse_since(since: Option<&str>) -> Result<i64, Failure> {
    let Some(text) = since else { return Ok(0) };
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return Ok(t.as_millisecond());
    }
    text.parse::<jiff::civil::Date>()
        .ok()
        .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map(|z| z.timestamp().as_millisecond())
        .ok_or_else(|| {
            Failure::Usage(format!(
                "--since {text:?}: give a date (2026-11-30) or an RFC 3339 time"
            ))
        })
}

async fn report(config: &Config, by: By, since: Option<String>, csv: bool) -> Result<(), Failure> {
    let by = match by {
        By::User => ReportBy::User,
        By::Site => ReportBy::Site,
        By::Device => ReportBy::Device,
        By::Day => ReportBy::Day,
    };
    let since_ms = parse_since(since.as_deref())?;
    let rows: Vec<ReportRow> = decode(call(config, AdminRequest::Report { by, since_ms }).await?)?;
    let header = [
        "key",
        "jobs",
        "pages",
        "sheets",
        "color_pages",
        "not_completed",
        "pages_unknown",
    ];
    if csv {
        println!("{}", header.join(","));
        for r in &rows {
            println!(
                "{},{},{},{},{},{},{}",
                csv_field(&r.key),
                r.jobs,
                r.pages,
                r.sheets,
                r.color_pages,
                r.not_completed,
                r.pages_unknown
            );
        }
    } else {
        println!(
            "{:<32} {:>8} {:>10} {:>10} {:>12} {:>14} {:>14}",
            header[0].to_uppercase(),
            "JOBS",
            "PAGES",
            "SHEETS",
            "COLOR PAGES",
            "NOT COMPLETED",
            "PAGES UNKNOWN"
        );
        for r in &rows {
            println!(
                "{:<32} {:>8} {:>10} {:>10} {:>12} {:>14} {:>14}",
                r.key, r.jobs, r.pages, r.sheets, r.color_pages, r.not_completed, r.pages_unknown
            );
        }
    }
    Ok(())
}

/// A CSV field, quoted when it must be (and neutralised against formula
/// injection in spreadsheets).
fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

async fn jobs(config: &Config, user: String, json: bool) -> Result<(), Failure> {
    let value = call(config, AdminRequest::Jobs { user }).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
        return Ok(());
    }
    let jobs: Vec<IndexedJob> = decode(value)?;
    println!(
        "{:<20} {:<38} {:<12} {:>6} {:<32}",
        "SITE", "JOB", "STATE", "PAGES", "NAME"
    );
    for j in jobs {
        let state = if j.deleted {
            "deleted".to_owned()
        } else {
            j.state
        };
        println!(
            "{:<20} {:<38} {:<12} {:>6} {:<32}",
            j.site,
            j.uuid,
            state,
            j.pages.map_or_else(|| "?".into(), |p| p.to_string()),
            j.name
        );
    }
    Ok(())
}
