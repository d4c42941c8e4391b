//! The command line: subcommands and their arguments (clap).

use std::path::PathBuf;

use appliance::config::Config;
use clap::{Parser, Subcommand};

use super::{Failure, load};

#[derive(Parser)]
#[command(name = "appliance", version, about = "Branch print appliance")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
    /// Join the fleet: send central a certificate request with the one-time
    /// token `central site add` printed, and keep the certificate, central's
    /// CA and the fleet key in the data directory.
    Enroll {
        /// central's sync address, host:port; by default the first of the
        /// configuration's `[central] endpoints`.
        #[arg(long)]
        central: Option<String>,
        /// The enrollment token.
        #[arg(
            long,
            required_unless_present = "token_file",
            conflicts_with = "token_file"
        )]
        token: Option<String>,
        /// A file holding the enrollment token (which then stays out of the
        /// process list and the shell's history).
        #[arg(long)]
        token_file: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// The link to central: connected endpoint, last contact, policy
    /// version, records not yet acknowledged.
    Status {
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Copy the store (database, documents, installation key) into a new
    /// directory while the appliance serves.
    Backup {
        /// The directory to create (or an empty one).
        target: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Put a backup back, with the appliance stopped.
    Restore {
        /// The backup's directory.
        source: PathBuf,
        /// Restore over a store that is there (kept in
        /// DATA_DIR/before-restore-TIME/).
        #[arg(long)]
        replace: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Check a config file and print the effective configuration.
    CheckConfig {
        /// TOML config file.
        config: PathBuf,
    },
}

/// Where the store is: from a config file, or given directly.
#[derive(clap::Args)]
pub(crate) struct StoreArgs {
    /// TOML config file (for `data_dir`).
    #[arg(long, short)]
    pub(crate) config: Option<PathBuf>,
    /// Data directory, overriding the config.
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
}

impl StoreArgs {
    /// The config, with `--data-dir` applied.
    pub(crate) fn resolve(&self) -> Result<Config, Failure> {
        let mut config = load(self.config.as_deref())?;
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        Ok(config)
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum ReportBy {
    User,
    Device,
    Day,
}

#[derive(Subcommand)]
pub(crate) enum JobsCommand {
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
pub(crate) enum SpoolCommand {
    /// Re-read every stored document and compare it with its recorded SHA-256.
    Check {
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
pub(crate) enum PrintersCommand {
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
pub(crate) enum UsersCommand {
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
