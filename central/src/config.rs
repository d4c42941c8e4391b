//! Central's TOML configuration. Every key has a default, so an empty file
//! (or none) runs; every error names the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// Not TOML, or a value of the wrong type (the message names key and line).
    #[error("config file {path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A value that parses but makes no sense.
    #[error("config key `{key}`: {message}")]
    Invalid {
        /// Dotted key.
        key: String,
        /// What is wrong and what would be right.
        message: String,
    },
}

/// The whole configuration of central.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The fleet's name, written into the CA certificate.
    pub fleet: String,
    /// Database, keys and the admin socket.
    pub data_dir: PathBuf,
    /// The QUIC sync listener.
    pub sync: SyncConfig,
    /// The local admin channel.
    pub admin: AdminConfig,
    /// Enrollment of sites.
    pub sites: SitesConfig,
    /// Policy kept as files.
    pub policy: PolicyConfig,
    /// IPPS submission for users off the corporate network.
    pub submission: SubmissionConfig,
    /// Where central keeps its state.
    pub storage: StorageConfig,
}

/// `[storage]`: without `url`, the embedded SQLite database in `data_dir`
/// (one central node); with a PostgreSQL URL, that database, which several
/// central nodes may share.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?OPTIONS]`.
    pub url: Option<String>,
    /// Most connections to PostgreSQL this node keeps open.
    pub pool_size: usize,
    /// PEM CA certificate(s) the PostgreSQL server's certificate must chain
    /// to; given, every connection is TLS, verified for the URL's host.
    pub tls_ca: Option<PathBuf>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            url: None,
            pool_size: 16,
            tls_ca: None,
        }
    }
}

/// Never prints the URL, which may hold a password.
impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageConfig")
            .field("url", &self.url.as_ref().map(|_| "…"))
            .field("pool_size", &self.pool_size)
            .field("tls_ca", &self.tls_ca)
            .finish()
    }
}

/// `[submission]`: central takes jobs over IPPS from users off the
/// corporate network (the "public server") and holds them as a site of the
/// fleet, so they are listed, claimed and fetched at every branch like
/// jobs printed there. Off unless `listen` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubmissionConfig {
    /// TCP address of the IPPS listener (none: no submission).
    pub listen: Option<SocketAddr>,
    /// PEM certificate chain clients see (a public CA's, for laptops at home).
    pub tls_certificate: Option<PathBuf>,
    /// PEM private key for `tls_certificate`.
    pub tls_private_key: Option<PathBuf>,
    /// The site name its jobs carry in every branch's list.
    pub site: String,
    /// The queue: `ipps://HOST:PORT/ipp/print/QUEUE`.
    pub queue: String,
    /// How long a job waits to be released before it is deleted.
    pub held_job_secs: u64,
    /// Largest document accepted, in bytes.
    pub max_document_bytes: u64,
}

impl Default for SubmissionConfig {
    fn default() -> Self {
        SubmissionConfig {
            listen: None,
            tls_certificate: None,
            tls_private_key: None,
            site: "central".into(),
            queue: "secure".into(),
            held_job_secs: 2 * 24 * 3600,
            max_document_bytes: 512 * 1024 * 1024,
        }
    }
}

/// `[sync]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncConfig {
    /// UDP address sites dial.
    pub listen: SocketAddr,
    /// Where the other central nodes sharing the database reach this one
    /// (default: `listen`, which must then name an address, not 0.0.0.0,
    /// when the storage is shared). Also this node's name in `central
    /// status`.
    pub advertise: Option<SocketAddr>,
    /// A connection silent this long is dead (sites keep it alive).
    pub idle_timeout_secs: u64,
    /// A site must say hello within this.
    pub hello_timeout_secs: u64,
    /// zstd for bulk messages where it shrinks them (policy snapshots,
    /// changes); off only to measure what it saves.
    pub compress: bool,
    /// Document blocks relayed at once between sites (job roaming); each
    /// holds one 64 KiB copy buffer, so this bounds the relay's memory
    /// whatever the documents' size or the number of transfers.
    pub relay_streams: usize,
}

/// `[admin]`: the admin CLI talks to the running service over a Unix
/// socket, mode 0600, so only the service's user (and root) can use it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// The Unix socket to listen on (default `DATA_DIR/admin.sock`).
    pub listen: Option<PathBuf>,
}

/// `[sites]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SitesConfig {
    /// How long an enrollment token is good for.
    pub token_ttl_secs: u64,
    /// How long a site certificate is good for.
    pub certificate_days: u32,
}

/// `[policy]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// A directory whose `users.csv` and `rules.toml`, when present, are
    /// the fleet's users and rules (watched; a bad file is refused).
    pub dir: Option<PathBuf>,
    /// Send a lookup hash of each PIN so a PIN alone identifies its user at
    /// sites that allow it (PINs must then be unique in the fleet).
    pub pin_only_login: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            fleet: "printfleet".into(),
            data_dir: PathBuf::from("central-data"),
            sync: SyncConfig::default(),
            admin: AdminConfig::default(),
            sites: SitesConfig::default(),
            policy: PolicyConfig::default(),
            submission: SubmissionConfig::default(),
            storage: StorageConfig::default(),
        }
    }
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 7443)),
            advertise: None,
            idle_timeout_secs: 15,
            hello_timeout_secs: 10,
            compress: true,
            relay_streams: 64,
        }
    }
}

impl Default for SitesConfig {
    fn default() -> Self {
        SitesConfig {
            token_ttl_secs: 24 * 3600,
            certificate_days: 825,
        }
    }
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates config text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| {
            Err(ConfigError::Invalid {
                key: key.into(),
                message: message.into(),
            })
        };
        if self.fleet.trim().is_empty() || self.fleet.len() > 64 {
            return invalid("fleet", "must be 1 to 64 characters");
        }
        if self.sync.idle_timeout_secs < 2 || self.sync.idle_timeout_secs > 600 {
            return invalid("sync.idle_timeout_secs", "must be 2 to 600");
        }
        if self.sync.hello_timeout_secs == 0 {
            return invalid("sync.hello_timeout_secs", "must be at least 1");
        }
        if !(1..=4096).contains(&self.sync.relay_streams) {
            return invalid("sync.relay_streams", "must be 1 to 4096");
        }
        if self.sites.token_ttl_secs == 0 {
            return invalid("sites.token_ttl_secs", "must be at least 1");
        }
        if self.sites.certificate_days == 0 {
            return invalid("sites.certificate_days", "must be at least 1");
        }
        if let Some(url) = &self.storage.url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return invalid(
                "storage.url",
                "must be a PostgreSQL URL, postgres://USER@HOST:PORT/DATABASE; leave it out \
                 for the embedded SQLite database",
            );
        }
        if self.storage.tls_ca.is_some() && self.storage.url.is_none() {
            return invalid(
                "storage.tls_ca",
                "is for the connection to PostgreSQL: give storage.url too, or leave it out",
            );
        }
        if self.storage.url.is_some() && self.node_address().ip().is_unspecified() {
            return invalid(
                "sync.advertise",
                "nodes sharing a database reach each other at their advertised address, and \
                 sync.listen is a wildcard: set sync.advertise to this node's address and port",
            );
        }
        if !(1..=1000).contains(&self.storage.pool_size) {
            return invalid("storage.pool_size", "must be 1 to 1000");
        }
        let submission = &self.submission;
        if submission.listen.is_some()
            && (submission.tls_certificate.is_none() || submission.tls_private_key.is_none())
        {
            return invalid(
                "submission.tls_certificate / submission.tls_private_key",
                "submission takes passwords from the internet: give the certificate and key \
                 clients will see",
            );
        }
        if submission.held_job_secs == 0 || submission.max_document_bytes == 0 {
            return invalid(
                "submission.held_job_secs / submission.max_document_bytes",
                "must be at least 1",
            );
        }
        Ok(())
    }

    /// The admin socket's path.
    pub fn admin_socket(&self) -> PathBuf {
        self.admin
            .listen
            .clone()
            .unwrap_or_else(|| self.data_dir.join("admin.sock"))
    }

    /// Where the other nodes reach this one, and its name among them.
    pub fn node_address(&self) -> SocketAddr {
        self.sync.advertise.unwrap_or(self.sync.listen)
    }

    /// QUIC idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.sync.idle_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("central.toml"))
    }

    #[test]
    fn an_empty_file_is_every_default() {
        let config = parse("").unwrap();
        assert_eq!(config.sync.listen.port(), 7443);
        assert_eq!(
            config.admin_socket(),
            PathBuf::from("central-data/admin.sock")
        );
        assert_eq!(config.sites.token_ttl_secs, 86_400);
        assert!(config.policy.dir.is_none());
    }

    #[test]
    fn errors_name_the_key() {
        let e = parse("[sync]\nlisten = \"nowhere\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen") && e.contains("line 2"), "{e}");
        let e = parse("[sites]\ntoken_ttl_secs = 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("sites.token_ttl_secs"), "{e}");
        let e = parse("[sync]\nlistne = \"x\"\n").unwrap_err().to_string();
        assert!(e.contains("listne"), "{e}");
        let e = parse("[submission]\nlisten = \"0.0.0.0:8632\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("submission.tls_certificate"), "{e}");
        let e = parse("[storage]\nurl = \"mysql://db/central\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("storage.url"), "{e}");
        let shared = "[storage]\nurl = \"postgres://central:secret@db/central\"\n";
        let e = parse(shared).unwrap_err().to_string();
        assert!(e.contains("sync.advertise"), "{e}");
        let config = parse(&format!("{shared}[sync]\nadvertise = \"10.0.0.5:7443\"\n")).unwrap();
        assert!(!format!("{config:?}").contains("secret"));
        assert_eq!(config.node_address().to_string(), "10.0.0.5:7443");
    }
}
