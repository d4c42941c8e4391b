//! The operator commands besides `serve`, one module per family, and what
//! they share: failures with their exit codes, config loading, time
//! formats.

pub(crate) mod args;
pub(crate) mod backup;
pub(crate) mod fleet;
pub(crate) mod jobs;
pub(crate) mod printers;
pub(crate) mod records;
pub(crate) mod users;

use std::path::Path;

use appliance::accounting;
use appliance::config::Config;

/// Exit 2 for what the operator must fix in the invocation or config, 1 otherwise.
pub(crate) enum Failure {
    /// Exit 2: the invocation or the config is wrong.
    Usage(String),
    /// Exit 1: something failed while doing it.
    Runtime(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Runtime(e)
    }
}

/// Where the Debian package puts the configuration.
pub(crate) const INSTALLED_CONFIG: &str = "/etc/appliance/appliance.toml";

/// The configuration in `path`; without one, the installed configuration
/// when there is one (so `appliance users add` on a box works on its
/// store), else the embedded defaults.
pub(crate) fn load(path: Option<&Path>) -> Result<Config, Failure> {
    let installed = Path::new(INSTALLED_CONFIG);
    match path {
        Some(path) => Config::load(path).map_err(|e| Failure::Usage(e.to_string())),
        None if installed.exists() => {
            Config::load(installed).map_err(|e| Failure::Usage(e.to_string()))
        }
        None => Ok(Config::embedded()),
    }
}

pub(crate) fn utc(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|_| ms.to_string())
}

pub(crate) fn since_ms(since: Option<&str>) -> Result<i64, Failure> {
    Ok(since
        .map(accounting::parse_since)
        .transpose()
        .map_err(|e| Failure::Usage(format!("--since: {e}")))?
        .unwrap_or(i64::MIN))
}
