//! The appliance's TOML configuration: every key has a default, so an empty
//! file (or none) runs a working appliance on loopback.
//!
//! This module only parses and validates; it opens no sockets and touches no
//! files except the one it is asked to read. Every error names the key that
//! is wrong, so `appliance serve` can exit 2 with a message an operator can act on.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::rules::Rules;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file is not valid TOML or a value has the wrong type.
    #[error("config file {path}: {message}")]
    Syntax {
        /// The file being parsed.
        path: PathBuf,
        /// The parser's message, which names the key and line.
        message: String,
    },
    /// A value parsed but makes no sense (unknown printer, duplicate name, ...).
    #[error("config key `{key}`: {message}")]
    Invalid {
        /// Dotted path of the offending key, e.g. `queue[1].printer`.
        key: String,
        /// What is wrong and what would be right.
        message: String,
    },
}

/// The whole configuration of one appliance.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Name of this branch site; stamped on every job.
    pub site: String,
    /// Where the store (SQLite) and the spool files live.
    pub data_dir: PathBuf,
    /// The IPP listener and its limits.
    pub ipp: IppConfig,
    /// How documents are stored.
    pub store: StoreConfig,
    /// How jobs are sent to printers.
    pub output: OutputConfig,
    /// How users log in.
    pub users: UsersConfig,
    /// How long jobs are kept.
    pub retention: RetentionConfig,
    /// The release API (what printer panels and terminals talk to).
    pub api: ApiConfig,
    /// Print rules applied at release.
    pub rules: Rules,
    /// Output devices (printers) known to this site.
    #[serde(rename = "printer", skip_serializing_if = "Vec::is_empty")]
    pub printers: Vec<PrinterConfig>,
    /// The print queues served over IPP.
    #[serde(rename = "queue", skip_serializing_if = "Vec::is_empty")]
    pub queues: Vec<QueueConfig>,
    /// Printer pools (`[[pool]]`): printers that serve one direct queue or
    /// one release target together.
    #[serde(rename = "pool", skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<PoolConfig>,
    /// The fleet's central service; without endpoints the site stands alone.
    pub central: CentralConfig,
    /// Logging.
    pub log: LogConfig,
    /// LPD intake (RFC 1179), for systems that print with `lpr`.
    pub lpd: LpdConfig,
    /// Raw socket intake ("port 9100"), for systems that print straight to
    /// a printer's socket.
    pub raw: RawConfig,
    /// Folders whose files become jobs.
    #[serde(rename = "hot_folder", skip_serializing_if = "Vec::is_empty")]
    pub hot_folders: Vec<HotFolderConfig>,
    /// Advertising the queues on the local network.
    pub dnssd: DnssdConfig,
}

/// `[dnssd]`: each queue advertised over DNS-SD (multicast DNS, through
/// the host's avahi-daemon), so workstations list it by themselves.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnssdConfig {
    /// Advertise at all.
    pub enabled: bool,
    /// Each queue's service name: `{queue}` and `{site}` are replaced
    /// (at most 63 bytes; avahi numbers it when another has the name).
    pub name: String,
}

impl Default for DnssdConfig {
    fn default() -> Self {
        DnssdConfig {
            enabled: true,
            name: "{queue} @ {site}".to_owned(),
        }
    }
}

/// `[lpd]`: jobs sent with the line printer daemon protocol land in the
/// queue the sender names, owned by the user its control file names (the
/// sending host vouches for it, as with `[ipp] authentication = "none"`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LpdConfig {
    /// Where to listen (`0.0.0.0:515`); off when absent.
    pub listen: Option<SocketAddr>,
}

/// `[raw]`: a connection's bytes are one job, as a socket printer takes
/// them. The owner is the PJL `USERNAME` the sender's driver wrote, else
/// the one `hosts` maps the sending address to; a job with neither is
/// refused (logged), since nobody could release it.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    /// Where to listen (`0.0.0.0:9100`); off when absent.
    pub listen: Option<SocketAddr>,
    /// The queue jobs land in; the default queue when absent.
    pub queue: Option<String>,
    /// Owner by sending address, for hosts whose jobs carry no PJL user
    /// (`"192.0.2.10" = "erp"`).
    pub hosts: std::collections::BTreeMap<std::net::IpAddr, String>,
}

/// `[[hot_folder]]`: every file dropped into `path` becomes one job.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HotFolderConfig {
    /// The watched directory; `done/`, `rejected/` and `.taking/` inside
    /// it are the appliance's.
    pub path: PathBuf,
    /// The queue its jobs land in.
    pub queue: String,
    /// The owner of every file, when `owner_from` is not set.
    #[serde(default)]
    pub owner: Option<String>,
    /// Where each file's owner comes from instead of `owner`.
    #[serde(default)]
    pub owner_from: Option<OwnerFrom>,
    /// With `owner_from = "file-name"`, what ends the owner's part of the
    /// name (`alice_invoice.pdf` is alice's).
    #[serde(default = "default_owner_separator")]
    pub owner_separator: String,
    /// Move each taken file to `done/` rather than delete it.
    #[serde(default)]
    pub keep_done: bool,
    /// How long a file must stay the same size before it is taken, in
    /// milliseconds (a writer may still be adding to it).
    #[serde(default = "default_settle_ms")]
    pub settle_ms: u64,
}

impl HotFolderConfig {
    /// How long a file must stay unchanged before it is taken.
    pub fn settle(&self) -> Duration {
        Duration::from_millis(self.settle_ms)
    }
}

/// Where a hot folder's file gets its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OwnerFrom {
    /// The subdirectory it was dropped into (`path/alice/report.pdf`).
    Directory,
    /// The start of its name, up to `owner_separator`.
    FileName,
}

fn default_owner_separator() -> String {
    "_".to_owned()
}

fn default_settle_ms() -> u64 {
    2000
}

/// `[log]`: how the daemon logs (to standard error, for journald or a
/// collector).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Lines for people, or one JSON object per event for a collector.
    pub format: LogFormat,
}

/// `[log] format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `time level target: message key=value...`
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields`.
    Json,
}

/// `[central]`: where the fleet's central service is. A site with
/// endpoints takes its users and rules from central (after `appliance
/// enroll`) and sends it its accounting and job announcements.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CentralConfig {
    /// `host:port` of each central node, the preferred one first.
    pub endpoints: Vec<String>,
    /// When a user logs in, start bringing their jobs held at other sites
    /// here, so a release prints at once. Prefetched documents never print
    /// without a claim and are removed if not released.
    pub prefetch: bool,
    /// Only jobs up to this size are prefetched (MiB).
    pub prefetch_max_mib: u64,
    /// A prefetched document not released within this long is removed.
    pub prefetch_keep_secs: u64,
}

impl Default for CentralConfig {
    fn default() -> Self {
        CentralConfig {
            endpoints: Vec::new(),
            prefetch: true,
            prefetch_max_mib: 32,
            prefetch_keep_secs: 600,
        }
    }
}

impl CentralConfig {
    /// Whether the site belongs to a fleet.
    pub fn enabled(&self) -> bool {
        !self.endpoints.is_empty()
    }
}

/// Splits `host:port` (`[v6]:port` too); `None` if it is not one.
pub fn split_endpoint(endpoint: &str) -> Option<(&str, u16)> {
    let (host, port) = endpoint.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = port.parse().ok().filter(|p| *p != 0)?;
    (!host.is_empty() && !host.contains(char::is_whitespace)).then_some((host, port))
}

/// IPP listener settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct IppConfig {
    /// Address the IPP (and `/metrics`) HTTP listener binds.
    pub listen: SocketAddr,
    /// Largest document accepted, in bytes (uncompressed, as sent).
    pub max_document_bytes: u64,
    /// Largest IPP attribute section accepted, in bytes.
    pub max_attribute_bytes: u64,
    /// Longest silence tolerated from a client mid-request, in seconds.
    pub idle_timeout_secs: u64,
    /// Least a client must send, in bytes per second averaged over each
    /// idle timeout's worth of time the appliance waits for it (0: no
    /// floor); a slower upload is abandoned.
    pub min_bytes_per_sec: u64,
    /// How long a Create-Job waits for its last document before it is aborted.
    pub document_timeout_secs: u64,
    /// Connections served at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Most jobs returned by one Get-Jobs (newest first when truncated).
    pub max_jobs_listed: u32,
    /// PEM certificate chain; with `tls_private_key`, IPP is served over
    /// TLS only (`ipps://`), `/metrics` and the status pages too.
    pub tls_certificate: Option<PathBuf>,
    /// PEM private key for `tls_certificate`.
    pub tls_private_key: Option<PathBuf>,
    /// Who owns a job submitted over IPP.
    pub authentication: IppAuthentication,
    /// Serve `/metrics` on this listener (off where the listener faces the
    /// internet: central's submission).
    pub metrics: bool,
    /// Accept `authentication = "basic"` without TLS, passwords readable
    /// on the network (a lab, or TLS ended in front of the appliance).
    pub allow_basic_without_tls: bool,
}

/// `[ipp] authentication`: how the appliance knows who submits a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IppAuthentication {
    /// The client's `requesting-user-name` is believed: the workstation is
    /// trusted to say who its user is (a managed office network).
    #[default]
    None,
    /// HTTP Basic against the site's users and passwords; the
    /// authenticated user owns the job, whatever the request names.
    Basic,
}

/// Store settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// zstd level for documents that compress (1 is fast; higher saves
    /// disk, costs CPU). Documents that do not compress are stored as sent.
    pub compression_level: i32,
    /// Documents up to this many KiB are kept in the database and made
    /// durable by their job's commit (no spool file, no fsync of their
    /// own); larger ones go to spool files. 0 puts every document in a
    /// file; at most 4096.
    pub inline_max_kib: u64,
    /// Room on the data disk kept for job state changes, logins and the
    /// journal when documents have filled it (a ballast file); 0 keeps none.
    pub reserve_bytes: u64,
}

/// Output (printer connection) settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputConfig {
    /// First retry delay after a printer could not take a job, in seconds.
    pub retry_initial_secs: u64,
    /// Longest retry delay, in seconds (the delay doubles up to this).
    pub retry_max_secs: u64,
    /// Longest wait for a printer to answer one request, in seconds.
    pub request_timeout_secs: u64,
    /// How often a printer is asked about a job it is printing, in seconds.
    pub poll_interval_secs: u64,
    /// When an IPP printer's job counts as printed: when the printer says
    /// it completed it, or as soon as it accepted it.
    pub printed_when: PrintedWhen,
    /// Attempts to reach a printer for a job released there before the job
    /// goes back to held with a message (the user can release it again).
    pub release_attempts: u32,
    /// How often each member of a `[[pool]]` is asked how it is
    /// (`printer-state`, `printer-state-reasons`), in seconds: a member
    /// taken out is put back within this time of being fit again.
    pub probe_interval_secs: u64,
}

/// When an IPP printer's job counts as printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PrintedWhen {
    /// The printer reports the job completed (accurate; needs polling).
    Completed,
    /// The printer accepted the job (for printers that forget jobs early).
    Accepted,
}

/// The release API listener and its login security.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Address the release API binds.
    pub listen: SocketAddr,
    /// PEM certificate chain; with `tls_private_key`, the API speaks HTTPS.
    pub tls_certificate: Option<PathBuf>,
    /// PEM private key for `tls_certificate`.
    pub tls_private_key: Option<PathBuf>,
    /// A session unused for this many seconds ends (users walk away from printers).
    pub session_idle_secs: u64,
    /// Wrong secrets in a row after which a user, and separately a
    /// printer, is locked out for a while.
    pub lockout_after: u32,
    /// First lockout, in seconds; each further failure doubles it.
    pub lockout_secs: u64,
    /// Longest lockout, in seconds.
    pub lockout_max_secs: u64,
    /// Connections served at once.
    pub max_connections: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls_certificate: None,
            tls_private_key: None,
            session_idle_secs: 60,
            lockout_after: 5,
            lockout_secs: 30,
            lockout_max_secs: 900,
            max_connections: 64,
        }
    }
}

/// How long jobs are kept.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// A held job not released within this many seconds of its submission
    /// expires: it ends and its document is deleted.
    pub held_job_secs: u64,
    /// A printed job's document is kept this many seconds for reprint
    /// (0: deleted as soon as the job printed).
    pub printed_job_secs: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            held_job_secs: 24 * 3600,
            printed_job_secs: 0,
        }
    }
}

impl RetentionConfig {
    /// [`Self::held_job_secs`] as a duration.
    pub fn held_job(&self) -> Duration {
        Duration::from_secs(self.held_job_secs)
    }
}

/// User login settings.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct UsersConfig {
    /// Store a lookup hash of each PIN so a PIN alone identifies its user
    /// (PINs must then be unique). Off, a PIN is only checked with the user name.
    pub pin_only_login: bool,
}

/// One output device.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PrinterConfig {
    /// Short identifier, referenced by queues.
    pub id: String,
    /// `ipp://`, `ipps://`, `socket://host[:port]` or `lpd://host[:port]/queue`.
    pub uri: String,
    /// Human-readable name; defaults to the id.
    #[serde(default)]
    pub name: Option<String>,
    /// Where the device stands, shown to users.
    #[serde(default)]
    pub location: Option<String>,
    /// For `ipps://`: a PEM file of certificates to trust besides the
    /// system's CAs (the printer's own CA, or its self-signed certificate,
    /// as most MFDs ship with).
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
}

/// `[[pool]]`: printers that serve together. A direct queue may name a
/// pool instead of a printer, and users may release at a pool; each job
/// goes to one member at a time.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Short identifier, referenced by queues and logins like a printer's.
    pub id: String,
    /// Human-readable name; defaults to the id.
    #[serde(default)]
    pub name: Option<String>,
    /// Where the printers stand, shown to users.
    #[serde(default)]
    pub location: Option<String>,
    /// Member printer ids, in order of preference (`failover`).
    pub printers: Vec<String>,
    /// How members share the jobs.
    #[serde(default)]
    pub policy: PoolPolicy,
}

impl PoolConfig {
    /// The name shown to people.
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }
}

/// How a pool's members share its jobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PoolPolicy {
    /// Every job goes to the first member, in the listed order, that is
    /// fit to print; the next one takes over while it is not. Jobs are
    /// sent in submission order.
    #[default]
    Failover,
    /// Every fit member takes the next job as soon as it is free, so the
    /// work spreads; jobs may finish out of submission order across
    /// members.
    LeastBusy,
}

impl PoolPolicy {
    /// The policy as written in the config.
    pub fn keyword(self) -> &'static str {
        match self {
            PoolPolicy::Failover => "failover",
            PoolPolicy::LeastBusy => "least-busy",
        }
    }
}

/// What a queue does with a job once it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueKind {
    /// Held until the owner releases it at a printer.
    Pull,
    /// Forwarded at once to the queue's printer.
    Direct,
}

/// One IPP print queue.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Served at `/ipp/print/NAME` and `/printers/NAME`.
    pub name: String,
    /// Pull (held) or direct (forwarded).
    pub kind: QueueKind,
    /// Also served at `/ipp/print`; at most one queue may say so.
    #[serde(default)]
    pub default: bool,
    /// The printer (or `[[pool]]`) a direct queue forwards to.
    #[serde(default)]
    pub printer: Option<String>,
    /// Shown as `printer-info`.
    #[serde(default)]
    pub info: Option<String>,
    /// Shown as `printer-location`.
    #[serde(default)]
    pub location: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            site: "branch-1".to_owned(),
            data_dir: PathBuf::from("appliance-data"),
            ipp: IppConfig::default(),
            store: StoreConfig::default(),
            output: OutputConfig::default(),
            users: UsersConfig::default(),
            retention: RetentionConfig::default(),
            api: ApiConfig::default(),
            rules: Rules::default(),
            printers: Vec::new(),
            queues: Vec::new(),
            pools: Vec::new(),
            central: CentralConfig::default(),
            log: LogConfig::default(),
            lpd: LpdConfig::default(),
            dnssd: DnssdConfig::default(),
            raw: RawConfig::default(),
            hot_folders: Vec::new(),
        }
    }
}

impl Default for IppConfig {
    fn default() -> Self {
        IppConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8631)),
            max_document_bytes: 2 * 1024 * 1024 * 1024,
            max_attribute_bytes: 64 * 1024,
            idle_timeout_secs: 30,
            min_bytes_per_sec: 1024,
            document_timeout_secs: 300,
            max_connections: 256,
            max_jobs_listed: 500,
            tls_certificate: None,
            tls_private_key: None,
            authentication: IppAuthentication::None,
            metrics: true,
            allow_basic_without_tls: false,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            compression_level: 1,
            inline_max_kib: 256,
            reserve_bytes: 64 * 1024 * 1024,
        }
    }
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            retry_initial_secs: 5,
            retry_max_secs: 300,
            request_timeout_secs: 60,
            poll_interval_secs: 1,
            printed_when: PrintedWhen::Completed,
            release_attempts: 3,
            probe_interval_secs: 10,
        }
    }
}

impl IppConfig {
    /// [`Self::idle_timeout_secs`] as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    /// The least a client must send, measured over each idle timeout.
    pub fn rate_floor(&self) -> crate::ipp::body::RateFloor {
        crate::ipp::body::RateFloor {
            bytes_per_sec: self.min_bytes_per_sec,
            window: self.idle_timeout(),
        }
    }

    /// [`Self::document_timeout_secs`] as a duration.
    pub fn document_timeout(&self) -> Duration {
        Duration::from_secs(self.document_timeout_secs)
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates config text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        config.apply_queue_defaults();
        config.validate()?;
        Ok(config)
    }

    /// The embedded defaults, validated (what `appliance serve` runs without a file).
    pub fn embedded() -> Config {
        let mut config = Config::default();
        config.apply_queue_defaults();
        config
    }

    /// With no queue configured, one pull queue named `secure` is the default,
    /// so a bare appliance still accepts and holds jobs.
    fn apply_queue_defaults(&mut self) {
        if self.queues.is_empty() {
            self.queues.push(QueueConfig {
                name: "secure".to_owned(),
                kind: QueueKind::Pull,
                default: true,
                printer: None,
                info: None,
                location: None,
            });
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: String, message: String| Err(ConfigError::Invalid { key, message });
        if !is_identifier(&self.site) {
            return invalid("site".into(), identifier_rule(&self.site));
        }
        for (i, endpoint) in self.central.endpoints.iter().enumerate() {
            if split_endpoint(endpoint).is_none() {
                return invalid(
                    format!("central.endpoints[{i}]"),
                    format!("{endpoint:?} is not host:port (e.g. \"central.example.com:7443\")"),
                );
            }
        }
        if let Some(key) = self.rules.unknown_keys().first() {
            return invalid(
                format!("rules.{key}"),
                "is not a rule; the rules are force_mono_groups, force_duplex_above_pages, \
                 max_pages_per_job and quota"
                    .into(),
            );
        }
        if self.ipp.max_document_bytes == 0 {
            return invalid("ipp.max_document_bytes".into(), "must be at least 1".into());
        }
        if self.ipp.max_attribute_bytes < 1024 {
            return invalid(
                "ipp.max_attribute_bytes".into(),
                "must be at least 1024 (clients send several hundred bytes of attributes)".into(),
            );
        }
        if self.ipp.idle_timeout_secs == 0 || self.ipp.document_timeout_secs == 0 {
            return invalid(
                "ipp.idle_timeout_secs / ipp.document_timeout_secs".into(),
                "timeouts must be at least 1 second".into(),
            );
        }
        if self.retention.held_job_secs == 0 {
            return invalid(
                "retention.held_job_secs".into(),
                "must be at least 1 (held jobs would expire at once)".into(),
            );
        }
        if self.ipp.max_connections == 0 {
            return invalid("ipp.max_connections".into(), "must be at least 1".into());
        }
        if !(1..=19).contains(&self.store.compression_level) {
            return invalid(
                "store.compression_level".into(),
                format!("{} is outside zstd's 1..=19", self.store.compression_level),
            );
        }
        if self.store.inline_max_kib > 4096 {
            return invalid(
                "store.inline_max_kib".into(),
                format!(
                    "{} is above 4096 (each upload holds up to this much in memory)",
                    self.store.inline_max_kib
                ),
            );
        }
        if self.output.retry_initial_secs == 0
            || self.output.retry_max_secs < self.output.retry_initial_secs
        {
            return invalid(
                "output.retry_initial_secs".into(),
                "must be at least 1 and not above output.retry_max_secs".into(),
            );
        }
        if self.output.request_timeout_secs == 0 || self.output.poll_interval_secs == 0 {
            return invalid(
                "output.request_timeout_secs / output.poll_interval_secs".into(),
                "must be at least 1 second".into(),
            );
        }
        if self.output.release_attempts == 0 {
            return invalid(
                "output.release_attempts".into(),
                "must be at least 1".into(),
            );
        }
        if self.ipp.tls_certificate.is_some() != self.ipp.tls_private_key.is_some() {
            return invalid(
                "ipp.tls_certificate / ipp.tls_private_key".into(),
                "give both (ipps://) or neither (ipp://)".into(),
            );
        }
        if self.ipp.authentication == IppAuthentication::Basic
            && self.ipp.tls_certificate.is_none()
            && !self.ipp.allow_basic_without_tls
        {
            return invalid(
                "ipp.authentication".into(),
                "\"basic\" without TLS sends every password readable on the network: set \
                 ipp.tls_certificate and ipp.tls_private_key, or ipp.allow_basic_without_tls = \
                 true if TLS ends in front of the appliance"
                    .into(),
            );
        }
        if self.api.tls_certificate.is_some() != self.api.tls_private_key.is_some() {
            return invalid(
                "api.tls_certificate / api.tls_private_key".into(),
                "give both (HTTPS) or neither (HTTP on a trusted network)".into(),
            );
        }
        if self.api.session_idle_secs == 0
            || self.api.lockout_after == 0
            || self.api.lockout_secs == 0
            || self.api.lockout_max_secs < self.api.lockout_secs
            || self.api.max_connections == 0
        {
            return invalid(
                "api".into(),
                "session_idle_secs, lockout_after, lockout_secs and max_connections must be at \
                 least 1, and lockout_max_secs not below lockout_secs"
                    .into(),
            );
        }
        for (i, printer) in self.printers.iter().enumerate() {
            if !is_identifier(&printer.id) {
                return invalid(format!("printer[{i}].id"), identifier_rule(&printer.id));
            }
            if self.printers[..i].iter().any(|p| p.id == printer.id) {
                return invalid(
                    format!("printer[{i}].id"),
                    format!("printer id {:?} is used twice", printer.id),
                );
            }
            if let Err(message) = crate::printer::DeviceUri::parse(&printer.uri) {
                return invalid(format!("printer[{i}].uri"), message);
            }
            if printer.tls_ca.is_some() && !printer.uri.starts_with("ipps://") {
                return invalid(
                    format!("printer[{i}].tls_ca"),
                    "only an ipps:// printer uses a TLS certificate".into(),
                );
            }
        }
        let mut defaults = 0;
        for (i, queue) in self.queues.iter().enumerate() {
            if !is_identifier(&queue.name) {
                return invalid(format!("queue[{i}].name"), identifier_rule(&queue.name));
            }
            if self.queues[..i].iter().any(|q| q.name == queue.name) {
                return invalid(
                    format!("queue[{i}].name"),
                    format!("queue name {:?} is used twice", queue.name),
                );
            }
            defaults += usize::from(queue.default);
            match (queue.kind, &queue.printer) {
                (QueueKind::Direct, None) => {
                    return invalid(
                        format!("queue[{i}].printer"),
                        "a direct queue needs the id of a [[printer]] to forward to".into(),
                    );
                }
                (QueueKind::Pull, Some(_)) => {
                    return invalid(
                        format!("queue[{i}].printer"),
                        "a pull queue is released at any printer; remove `printer` or use kind = \"direct\"".into(),
                    );
                }
                (QueueKind::Direct, Some(id))
                    if !self.printers.iter().any(|p| &p.id == id)
                        && !self.pools.iter().any(|p| &p.id == id) =>
                {
                    return invalid(
                        format!("queue[{i}].printer"),
                        format!("no [[printer]] or [[pool]] has id {id:?}"),
                    );
                }
                _ => {}
            }
        }
        if defaults > 1 {
            return invalid(
                "queue[].default".into(),
                "only one queue may be the default".into(),
            );
        }
        self.validate_pools()?;
        self.validate_other_ways_in()
    }

    /// `[[pool]]`: ids apart from printers', members that exist, each
    /// printer in at most one pool (its forwarder serves one).
    fn validate_pools(&self) -> Result<(), ConfigError> {
        let invalid = |key: String, message: String| Err(ConfigError::Invalid { key, message });
        if self.output.probe_interval_secs == 0 {
            return invalid(
                "output.probe_interval_secs".into(),
                "must be at least 1".into(),
            );
        }
        for (i, pool) in self.pools.iter().enumerate() {
            if !is_identifier(&pool.id) {
                return invalid(format!("pool[{i}].id"), identifier_rule(&pool.id));
            }
            if self.pools[..i].iter().any(|p| p.id == pool.id)
                || self.printers.iter().any(|p| p.id == pool.id)
            {
                return invalid(
                    format!("pool[{i}].id"),
                    format!(
                        "id {:?} is already a printer's or a pool's; queues and logins name \
                         both the same way",
                        pool.id
                    ),
                );
            }
            if pool.printers.is_empty() {
                return invalid(
                    format!("pool[{i}].printers"),
                    "a pool needs at least one [[printer]] id".into(),
                );
            }
            for (j, member) in pool.printers.iter().enumerate() {
                let key = format!("pool[{i}].printers[{j}]");
                if !self.printers.iter().any(|p| &p.id == member) {
                    return invalid(key, format!("no [[printer]] has id {member:?}"));
                }
                if pool.printers[..j].contains(member) {
                    return invalid(key, format!("printer {member:?} is listed twice"));
                }
                if let Some(other) = self.pools[..i].iter().find(|p| p.printers.contains(member)) {
                    return invalid(
                        key,
                        format!(
                            "printer {member:?} is already in pool {:?}; a printer serves at \
                             most one pool",
                            other.id
                        ),
                    );
                }
            }
        }
        Ok(())
    }

    /// `[raw]` and `[[hot_folder]]`: the queues they name exist, and every
    /// job they take has an owner.
    fn validate_other_ways_in(&self) -> Result<(), ConfigError> {
        let invalid = |key: String, message: String| Err(ConfigError::Invalid { key, message });
        let no_queue = |name: &str| format!("there is no [[queue]] named {name:?}");
        if let Some(queue) = &self.raw.queue
            && !self.queues.iter().any(|q| &q.name == queue)
        {
            return invalid("raw.queue".into(), no_queue(queue));
        }
        if let Some((host, _)) = self
            .raw
            .hosts
            .iter()
            .find(|(_, owner)| owner.trim().is_empty())
        {
            return invalid(format!("raw.hosts.\"{host}\""), "the owner is empty".into());
        }
        for (i, folder) in self.hot_folders.iter().enumerate() {
            if !self.queues.iter().any(|q| q.name == folder.queue) {
                return invalid(format!("hot_folder[{i}].queue"), no_queue(&folder.queue));
            }
            if self.hot_folders[..i].iter().any(|f| f.path == folder.path) {
                return invalid(
                    format!("hot_folder[{i}].path"),
                    format!("{} is watched twice", folder.path.display()),
                );
            }
            match (&folder.owner, folder.owner_from) {
                (Some(owner), None) if !owner.trim().is_empty() => {}
                (None, Some(_)) => {}
                _ => {
                    return invalid(
                        format!("hot_folder[{i}].owner"),
                        "give either owner = \"USER\" (every file's owner) or owner_from = \
                         \"directory\" | \"file-name\""
                            .into(),
                    );
                }
            }
            if folder.owner_from == Some(OwnerFrom::FileName) && folder.owner_separator.is_empty() {
                return invalid(
                    format!("hot_folder[{i}].owner_separator"),
                    "must not be empty".into(),
                );
            }
            if folder.settle_ms == 0 {
                return invalid(
                    format!("hot_folder[{i}].settle_ms"),
                    "must be at least 1".into(),
                );
            }
        }
        Ok(())
    }
}

/// Names that appear in URIs and file names: ASCII letters, digits, `-`, `_`, `.`.
fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 127
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn identifier_rule(value: &str) -> String {
    format!("{value:?} must be 1 to 127 characters of letters, digits, '-', '_' or '.'")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    fn invalid_key(text: &str) -> String {
        match parse(text) {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected an invalid-key error, got {other:?}"),
        }
    }

    #[test]
    fn empty_file_gives_working_defaults() {
        let config = parse("").unwrap();
        assert_eq!(config.ipp.listen.to_string(), "127.0.0.1:8631");
        assert_eq!(config.data_dir, PathBuf::from("appliance-data"));
        assert_eq!(config.queues.len(), 1);
        assert_eq!(config.queues[0].kind, QueueKind::Pull);
        assert!(config.queues[0].default);
    }

    #[test]
    fn example_from_the_readme_parses() {
        let config = parse(
            r#"
            site = "branch-1"
            data_dir = "/var/lib/appliance"
            [ipp]
            listen = "127.0.0.1:8631"
            max_document_bytes = 2147483648
            [[printer]]
            id = "lobby"
            uri = "ipp://127.0.0.1:8632/ipp/print"
            [[queue]]
            name = "secure"
            kind = "pull"
            default = true
            [[queue]]
            name = "lobby-direct"
            kind = "direct"
            printer = "lobby"
            "#,
        )
        .unwrap();
        assert_eq!(config.queues.len(), 2);
        assert_eq!(config.queues[1].printer.as_deref(), Some("lobby"));
    }

    const THREE_PRINTERS: &str = "[[printer]]\nid = \"a\"\nuri = \"ipp://127.0.0.1:1/ipp/print\"\n\
         [[printer]]\nid = \"b\"\nuri = \"socket://127.0.0.1:2\"\n\
         [[printer]]\nid = \"c\"\nuri = \"lpd://127.0.0.1:3/q\"\n";

    #[test]
    fn a_direct_queue_may_forward_to_a_pool() {
        let config = parse(&format!(
            "{THREE_PRINTERS}[[pool]]\nid = \"floor\"\nprinters = [\"a\", \"b\", \"c\"]\n\
             policy = \"least-busy\"\n[[queue]]\nname = \"d\"\nkind = \"direct\"\nprinter = \"floor\"\n"
        ))
        .unwrap();
        assert_eq!(config.pools[0].policy, PoolPolicy::LeastBusy);
        assert_eq!(config.pools[0].printers, ["a", "b", "c"]);
        let config = parse(&format!(
            "{THREE_PRINTERS}[[pool]]\nid = \"floor\"\nprinters = [\"b\"]\n"
        ))
        .unwrap();
        assert_eq!(config.pools[0].policy, PoolPolicy::Failover);
    }

    #[test]
    fn pool_errors_name_the_key() {
        let pool = |body: &str| invalid_key(&format!("{THREE_PRINTERS}{body}"));
        assert_eq!(
            pool("[[pool]]\nid = \"a\"\nprinters = [\"b\"]\n"),
            "pool[0].id"
        );
        assert_eq!(
            pool("[[pool]]\nid = \"p\"\nprinters = []\n"),
            "pool[0].printers"
        );
        assert_eq!(
            pool("[[pool]]\nid = \"p\"\nprinters = [\"a\", \"x\"]\n"),
            "pool[0].printers[1]"
        );
        assert_eq!(
            pool("[[pool]]\nid = \"p\"\nprinters = [\"a\", \"a\"]\n"),
            "pool[0].printers[1]"
        );
        assert_eq!(
            pool(
                "[[pool]]\nid = \"p\"\nprinters = [\"a\"]\n\
                 [[pool]]\nid = \"q\"\nprinters = [\"b\", \"a\"]\n"
            ),
            "pool[1].printers[1]"
        );
        let err = parse(&format!(
            "{THREE_PRINTERS}[[pool]]\nid = \"p\"\nprinters = [\"a\"]\npolicy = \"random\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("policy"), "{err}");
        assert_eq!(
            invalid_key("[output]\nprobe_interval_secs = 0\n"),
            "output.probe_interval_secs"
        );
    }

    #[test]
    fn type_errors_name_the_key() {
        let err = parse("[ipp]\nlisten = 5\n").unwrap_err().to_string();
        assert!(err.contains("listen"), "{err}");
        let err = parse("[ipp]\nlisten = \"nonsense\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen"), "{err}");
        let err = parse("colour = true\n").unwrap_err().to_string();
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn semantic_errors_name_the_key() {
        assert_eq!(
            invalid_key("[[queue]]\nname = \"d\"\nkind = \"direct\"\n"),
            "queue[0].printer"
        );
        assert_eq!(
            invalid_key("[[queue]]\nname = \"d\"\nkind = \"direct\"\nprinter = \"nope\"\n"),
            "queue[0].printer"
        );
        assert_eq!(
            invalid_key("[[printer]]\nid = \"p\"\nuri = \"http://x/\"\n"),
            "printer[0].uri"
        );
        assert_eq!(
            invalid_key(
                "[[queue]]\nname = \"a\"\nkind = \"pull\"\n[[queue]]\nname = \"a\"\nkind = \"pull\"\n"
            ),
            "queue[1].name"
        );
        assert_eq!(
            invalid_key("[[queue]]\nname = \"a b\"\nkind = \"pull\"\n"),
            "queue[0].name"
        );
        assert_eq!(
            invalid_key("[store]\ncompression_level = 40\n"),
            "store.compression_level"
        );
        assert_eq!(
            invalid_key("[rules]\nmax_page_per_job = 3\n"),
            "rules.max_page_per_job"
        );
        assert_eq!(
            invalid_key("[central]\nendpoints = [\"a:1\", \"central\"]\n"),
            "central.endpoints[1]"
        );
        assert_eq!(
            invalid_key(
                "[[queue]]\nname = \"a\"\nkind = \"pull\"\ndefault = true\n[[queue]]\nname = \"b\"\nkind = \"pull\"\ndefault = true\n"
            ),
            "queue[].default"
        );
    }

    #[test]
    fn other_ways_in_name_real_queues_and_owners() {
        let config = parse(
            "[raw]\nlisten = \"127.0.0.1:9100\"\nhosts = { \"192.0.2.10\" = \"erp\" }\n\
             [[hot_folder]]\npath = \"/srv/drop\"\nqueue = \"secure\"\nowner_from = \"file-name\"\n",
        )
        .unwrap();
        let erp: std::net::IpAddr = "192.0.2.10".parse().unwrap();
        assert_eq!(config.raw.hosts[&erp], "erp");
        assert_eq!(config.hot_folders[0].owner_from, Some(OwnerFrom::FileName));
        assert_eq!(config.hot_folders[0].owner_separator, "_");
        assert_eq!(invalid_key("[raw]\nqueue = \"nope\"\n"), "raw.queue");
        assert_eq!(
            invalid_key("[[hot_folder]]\npath = \"/d\"\nqueue = \"secure\"\n"),
            "hot_folder[0].owner"
        );
        assert_eq!(
            invalid_key(
                "[[hot_folder]]\npath = \"/d\"\nqueue = \"secure\"\nowner = \"a\"\nowner_from = \"directory\"\n"
            ),
            "hot_folder[0].owner"
        );
        assert_eq!(
            invalid_key("[[hot_folder]]\npath = \"/d\"\nqueue = \"x\"\nowner = \"a\"\n"),
            "hot_folder[0].queue"
        );
        assert!(matches!(
            parse("[raw]\nhosts = { \"not-an-address\" = \"erp\" }\n"),
            Err(ConfigError::Syntax { .. })
        ));
    }
}
