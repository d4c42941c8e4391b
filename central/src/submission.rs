//! Submission at central (`[submission]`): users off the corporate network
//! print over IPPS with their fleet user name and password, and release
//! the job at a printer of any branch.
//!
//! Central does not grow a second job store for this. It runs the
//! appliance's own intake, store and roaming in-process, as one more site
//! of the fleet: a pull queue behind TLS and HTTP Basic, no printers, no
//! release API, its data in `DATA_DIR/submission`, enrolled at this central
//! with an ordinary token on first start and syncing over QUIC on loopback
//! like any branch. Its users are the fleet's users (the policy it
//! receives); its jobs are announced, indexed, listed, claimed and fetched
//! exactly as a branch's are, so every rule of roaming (one claim wins,
//! bytes verified block by block, the origin marks the job printed) holds
//! for them without a line of its own.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use sync_protocol::pki::EnrollmentToken;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::{self, SiteAddError};
use crate::config::Config;
use crate::store::{CentralStore, SiteInfo};
use crate::sync::Shared;

/// The token the submission site enrolls with, kept until it has enrolled
/// (a start stopped in between enrolls with it next time).
const TOKEN_FILE: &str = "enrollment-token";

/// Why submission cannot run.
#[derive(Debug, thiserror::Error)]
pub enum SubmissionError {
    /// The intake refused the configuration derived from `[submission]`.
    #[error("[submission]: {0}")]
    Config(#[from] appliance::config::ConfigError),
    /// Its data directory or token file failed.
    #[error("[submission] data in {dir}: {source}")]
    Data {
        /// The directory.
        dir: String,
        /// What failed.
        source: std::io::Error,
    },
    /// The certificate or key is unusable.
    #[error("[submission] tls_certificate / tls_private_key: {0}")]
    Tls(#[from] appliance::http_server::TlsError),
    /// The listener could not be bound.
    #[error("[submission] listen {addr}: {source}")]
    Bind {
        /// Where.
        addr: SocketAddr,
        /// What failed.
        source: std::io::Error,
    },
    /// The site's name is taken, or the site cannot be registered.
    #[error("[submission] site {site}: {message}")]
    Site {
        /// The name.
        site: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// Enrolling at this central failed.
    #[error("[submission] enrolling at this central: {0}")]
    Enroll(#[from] appliance::sync::enroll::EnrollError),
    /// The intake stopped with an error.
    #[error("[submission]: {0}")]
    Intake(#[from] appliance::daemon::DaemonError),
}

/// What start-up does about the submission site's enrollment.
#[derive(Debug, PartialEq, Eq)]
enum Enrollment {
    /// It holds its identity: run.
    Enrolled,
    /// It is new: register it with a token, then enroll.
    Register,
    /// It was registered by a start that stopped before enrolling: enroll
    /// with the token kept then.
    Resume,
    /// A site of that name exists at central and this directory holds no
    /// identity of it.
    Taken(&'static str),
}

/// Decides [`Enrollment`] from what the directory holds and what central
/// knows of the name.
fn enrollment(has_identity: bool, has_token: bool, known: Option<&SiteInfo>) -> Enrollment {
    match (has_identity, known) {
        (true, _) => Enrollment::Enrolled,
        (false, None) => Enrollment::Register,
        (false, Some(site)) if site.revoked_ms.is_some() => {
            Enrollment::Taken("was revoked; choose another [submission] site name")
        }
        (false, Some(site)) if site.enrolled_ms.is_none() && has_token => Enrollment::Resume,
        (false, Some(_)) => Enrollment::Taken(
            "is another site of the fleet (or this directory lost its identity): choose \
             another [submission] site name, or revoke that site first",
        ),
    }
}

/// The address the submission site dials: central's own QUIC listener, on
/// loopback when it listens on every interface.
pub fn loopback(listening: SocketAddr) -> SocketAddr {
    let ip = match listening.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listening.port())
}

/// The submission site's data directory.
pub fn data_dir(config: &Config) -> PathBuf {
    config.data_dir.join("submission")
}

/// The appliance configuration of the submission site: one pull queue on
/// the IPPS listener, HTTP Basic, no `/metrics` on that internet-facing
/// port, no printers, syncing with central at `sync`.
pub fn site_config(
    config: &Config,
    listen: SocketAddr,
    sync: SocketAddr,
) -> Result<appliance::config::Config, appliance::config::ConfigError> {
    use toml::{Table, Value};
    let s = &config.submission;
    let text = |v: &str| Value::String(v.to_owned());
    let path =
        |p: &Option<PathBuf>| text(&p.as_deref().unwrap_or(Path::new("")).display().to_string());
    let number = |n: u64| Value::Integer(i64::try_from(n).unwrap_or(i64::MAX));
    let table = |entries: Vec<(&str, Value)>| {
        Value::Table(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        )
    };
    let root: Table = [
        ("site", text(&s.site)),
        ("data_dir", text(&data_dir(config).display().to_string())),
        (
            "ipp",
            table(vec![
                ("listen", text(&listen.to_string())),
                ("tls_certificate", path(&s.tls_certificate)),
                ("tls_private_key", path(&s.tls_private_key)),
                ("authentication", text("basic")),
                ("metrics", Value::Boolean(false)),
                ("max_document_bytes", number(s.max_document_bytes)),
            ]),
        ),
        (
            "retention",
            table(vec![("held_job_secs", number(s.held_job_secs))]),
        ),
        // A data center's network is no office: nobody browses for it.
        ("dnssd", table(vec![("enabled", Value::Boolean(false))])),
        (
            "queue",
            Value::Array(vec![table(vec![
                ("name", text(&s.queue)),
                ("kind", text("pull")),
                ("default", Value::Boolean(true)),
                (
                    "info",
                    text("Held at central: release it at a printer of any branch"),
                ),
            ])]),
        ),
        (
            "central",
            table(vec![
                ("endpoints", Value::Array(vec![text(&sync.to_string())])),
                ("prefetch", Value::Boolean(false)),
            ]),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let table = root;
    appliance::config::Config::parse(&table.to_string(), Path::new("[submission]"))
}

/// The submission site, checked and bound, ready to run.
pub struct Prepared {
    config: appliance::config::Config,
    listener: TcpListener,
    /// Central's QUIC listener, for the enrollment.
    sync: SocketAddr,
    /// The token to enroll with first, when not enrolled yet.
    token: Option<String>,
}

/// Checks the configuration, binds the listener and registers the site
/// when it is new: done before central serves, so a mistake stops the
/// start with a message instead of a silent intake that never runs.
pub async fn prepare<S: CentralStore>(
    shared: &Shared<S>,
    listen: SocketAddr,
    sync: SocketAddr,
) -> Result<Prepared, SubmissionError> {
    let config = site_config(&shared.config, listen, sync)?;
    if let (Some(cert), Some(key)) = (&config.ipp.tls_certificate, &config.ipp.tls_private_key) {
        appliance::http_server::tls_acceptor(cert, key)?;
    }
    let dir = config.data_dir.clone();
    let data = |source| SubmissionError::Data {
        dir: dir.display().to_string(),
        source,
    };
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(data)?;
    }
    let site = config.site.clone();
    let refused = |message: String| SubmissionError::Site {
        site: site.clone(),
        message,
    };
    let has_identity = match appliance::sync::identity::load(&dir) {
        Ok(_) => true,
        Err(appliance::sync::identity::IdentityError::NotEnrolled(_)) => false,
        Err(e) => return Err(refused(e.to_string())),
    };
    let has_token = dir.join(TOKEN_FILE).exists();
    let sites = shared
        .store
        .list_sites()
        .await
        .map_err(|e| refused(e.to_string()))?;
    let known = sites.iter().find(|s| s.name == site);
    let token = match enrollment(has_identity, has_token, known) {
        Enrollment::Enrolled => None,
        Enrollment::Taken(why) => return Err(refused(why.to_owned())),
        step @ (Enrollment::Register | Enrollment::Resume) => {
            let kept = sync_protocol::private_file::read_or_create(&dir, TOKEN_FILE, || {
                admin::new_token(shared)
                    .map(|t| t.to_string().into_bytes())
                    .map_err(std::io::Error::other)
            })
            .map_err(data)?;
            let kept = String::from_utf8_lossy(&kept).trim().to_owned();
            let token = EnrollmentToken::parse(&kept)
                .ok_or_else(|| refused(format!("{TOKEN_FILE} is damaged: delete it")))?;
            if step == Enrollment::Register {
                admin::register_site(shared, &site, &token)
                    .await
                    .map_err(|e: SiteAddError| refused(e.to_string()))?;
                tracing::info!(%site, "submission site registered");
            }
            Some(kept)
        }
    };
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| SubmissionError::Bind {
            addr: listen,
            source,
        })?;
    Ok(Prepared {
        config,
        listener,
        sync,
        token,
    })
}

impl Prepared {
    /// Enrolls the site if it is new (central's listener serves by then),
    /// then runs the intake until `shutdown` turns true.
    pub async fn run(self, shutdown: watch::Receiver<bool>) -> Result<(), SubmissionError> {
        let dir = self.config.data_dir.clone();
        if let Some(token) = &self.token {
            let site = appliance::sync::enroll::enroll(&dir, &self.sync.to_string(), token).await?;
            let _ = std::fs::remove_file(dir.join(TOKEN_FILE));
            tracing::info!(%site, "submission site enrolled");
        }
        let listeners = appliance::daemon::Listeners {
            ipp: self.listener,
            api: None,
            lpd: None,
            raw: None,
        };
        appliance::daemon::run(self.config, listeners, shutdown).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(enrolled: bool, revoked: bool) -> SiteInfo {
        SiteInfo {
            name: "central".into(),
            created_ms: 1,
            enrolled_ms: enrolled.then_some(2),
            revoked_ms: revoked.then_some(3),
            last_contact_ms: None,
            policy_version: 0,
            unknown_rules: Vec::new(),
        }
    }

    #[test]
    fn enrollment_registers_resumes_or_refuses_a_taken_name() {
        assert_eq!(enrollment(true, false, None), Enrollment::Enrolled);
        assert_eq!(
            enrollment(true, false, Some(&site(true, false))),
            Enrollment::Enrolled
        );
        assert_eq!(enrollment(false, false, None), Enrollment::Register);
        assert_eq!(enrollment(false, true, None), Enrollment::Register);
        assert_eq!(
            enrollment(false, true, Some(&site(false, false))),
            Enrollment::Resume
        );
        assert!(matches!(
            enrollment(false, false, Some(&site(false, false))),
            Enrollment::Taken(_)
        ));
        assert!(matches!(
            enrollment(false, true, Some(&site(true, false))),
            Enrollment::Taken(_)
        ));
        assert!(matches!(
            enrollment(false, true, Some(&site(false, true))),
            Enrollment::Taken(why) if why.contains("revoked")
        ));
    }

    #[test]
    fn the_site_dials_central_on_loopback() {
        assert_eq!(
            loopback("0.0.0.0:7443".parse().unwrap()),
            "127.0.0.1:7443".parse().unwrap()
        );
        assert_eq!(
            loopback("[::]:7443".parse().unwrap()),
            "[::1]:7443".parse().unwrap()
        );
        assert_eq!(
            loopback("10.0.0.5:7443".parse().unwrap()),
            "10.0.0.5:7443".parse().unwrap()
        );
    }

    #[test]
    fn the_site_is_a_password_protected_pull_queue_without_metrics() {
        let central = Config::parse(
            "data_dir = \"/var/lib/central\"\n[submission]\nlisten = \"0.0.0.0:8632\"\n\
             tls_certificate = \"/etc/central/ipp.crt\"\ntls_private_key = \"/etc/central/ipp.key\"\n",
            Path::new("central.toml"),
        )
        .unwrap();
        let site = site_config(
            &central,
            "0.0.0.0:8632".parse().unwrap(),
            "127.0.0.1:7443".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(site.site, "central");
        assert_eq!(site.data_dir, Path::new("/var/lib/central/submission"));
        assert_eq!(
            site.ipp.authentication,
            appliance::config::IppAuthentication::Basic
        );
        assert!(!site.ipp.metrics);
        assert!(site.printers.is_empty());
        assert_eq!(site.queues.len(), 1);
        assert_eq!(site.queues[0].kind, appliance::config::QueueKind::Pull);
        assert_eq!(site.central.endpoints, ["127.0.0.1:7443"]);
        assert!(!site.central.prefetch);
        assert_eq!(site.retention.held_job_secs, 2 * 24 * 3600);
    }
}
