//! Wires the appliance together: opens the store (cleaning up after a
//! crash), starts one forwarder per printer, housekeeping (timeouts and
//! retention), the IPP server and the release API; stops them all on the
//! shutdown signal, committing every write already queued.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::ApiService;
use crate::authn::verifier::Verifier;
use crate::config::Config;
use crate::housekeeping::Housekeeping;
use crate::ipp::auth::IppAuth;
use crate::ipp::server;
use crate::ipp::service::IppService;
use crate::legacy::{self, Protocol};
use crate::metrics::Metrics;
use crate::output::forwarder::{Forwarder, OutputShared};
use crate::output::pool::Pools;
use crate::policy::{Policy, PolicySource};
use crate::printer::{OutputWake, PrinterHealth};
use crate::queue::Queues;
use crate::roaming::Roaming;
use crate::store::{JobStore, StoreError, StoreOptions};
use crate::uploads::UploadRegistry;

/// How long shutdown waits for requests in flight.
const DRAIN: Duration = Duration::from_secs(10);

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The store could not be opened or recovered.
    #[error("cannot open the job store in {dir}: {cause}")]
    Store {
        /// The data directory.
        dir: String,
        /// What failed.
        cause: StoreError,
    },
    /// A TLS certificate or key is unusable.
    #[error("{key}: {source}")]
    Tls {
        /// The configuration keys naming the pair.
        key: &'static str,
        /// What is wrong with it.
        source: crate::http_server::TlsError,
    },
    /// The site belongs to a fleet (`[central]`) but is not enrolled.
    #[error("[central] is configured but {0}")]
    NotEnrolled(crate::sync::identity::IdentityError),
    /// A printer's URI is unusable (config validation should have caught it).
    #[error("printer {id}: {message}")]
    Printer {
        /// Printer id.
        id: String,
        /// What is wrong.
        message: String,
    },
}

/// Why the data directory cannot hold the appliance's data.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// It cannot be made or written.
    #[error(
        "data_dir {path}: cannot {action} ({cause}); create it and give the appliance's user \
         write access, or set data_dir to a directory it can write"
    )]
    Unusable {
        /// The directory.
        path: String,
        /// What was tried: `create it`, `write in it`.
        action: &'static str,
        /// What the system said.
        cause: std::io::Error,
    },
    /// A restore into it stopped midway.
    #[error(
        "data_dir {path}: a restore into it was interrupted; run `appliance restore` again \
         before starting the appliance"
    )]
    RestoreInterrupted {
        /// The directory.
        path: String,
    },
}

/// Makes sure `dir` exists (created 0700 if missing) and can be written:
/// a file is created, synced and removed in it. Checked before the daemon
/// starts anything, so a box whose disk is missing or read-only says so in
/// one line instead of failing later inside the store.
pub fn prepare_data_dir(dir: &std::path::Path) -> Result<(), DataDirError> {
    use std::io::Write;
    use std::os::unix::fs::DirBuilderExt;
    let fail = |action, cause| DataDirError::Unusable {
        path: dir.display().to_string(),
        action,
        cause,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| fail("create it", e))?;
    if dir.join(crate::store::backup::RESTORING).exists() {
        return Err(DataDirError::RestoreInterrupted {
            path: dir.display().to_string(),
        });
    }
    let probe = dir.join(".write-check");
    let written = std::fs::File::create(&probe)
        .and_then(|mut f| f.write_all(b"ok").and_then(|()| f.sync_all()));
    let _ = std::fs::remove_file(&probe);
    written.map_err(|e| fail("write in it", e))
}

/// The bound sockets the appliance serves.
pub struct Listeners {
    /// IPP (and `/metrics`).
    pub ipp: TcpListener,
    /// The release API; none where nobody releases at a printer (central's
    /// submission site).
    pub api: Option<TcpListener>,
    /// LPD intake (`[lpd] listen`).
    pub lpd: Option<TcpListener>,
    /// Raw socket intake (`[raw] listen`).
    pub raw: Option<TcpListener>,
}

/// Runs the appliance on already-bound listeners until `shutdown` turns true.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: watch::Receiver<bool>,
) -> Result<(), DaemonError> {
    let tls = tls_acceptor(
        "api.tls_certificate / api.tls_private_key",
        &config.api.tls_certificate,
        &config.api.tls_private_key,
    )?;
    let ipp_tls = tls_acceptor(
        "ipp.tls_certificate / ipp.tls_private_key",
        &config.ipp.tls_certificate,
        &config.ipp.tls_private_key,
    )?;
    let metrics = Arc::new(Metrics::new());
    let dir = config.data_dir.clone();
    // An enrolled site hashes PINs and cards under the fleet's key.
    let fleet_key = if config.central.enabled() {
        Some(crate::sync::identity::fleet_key(&config.data_dir).map_err(DaemonError::NotEnrolled)?)
    } else {
        None
    };
    let options = StoreOptions {
        fleet_key,
        compression_level: config.store.compression_level,
        inline_max: config.store.inline_max_kib * 1024,
        site: config.site.clone(),
        keep_printed_ms: i64::try_from(config.retention.printed_job_secs.saturating_mul(1000))
            .unwrap_or(i64::MAX),
        reserve_bytes: config.store.reserve_bytes,
    };
    let store_metrics = metrics.clone();
    let opened = tokio::task::spawn_blocking(move || JobStore::open(&dir, options, store_metrics))
        .await
        .map_err(|e| DaemonError::Store {
            dir: config.data_dir.display().to_string(),
            cause: StoreError::Io(std::io::Error::other(e.to_string())),
        })?;
    let (store, recovery) = opened.map_err(|cause| DaemonError::Store {
        dir: config.data_dir.display().to_string(),
        cause,
    })?;
    tracing::info!(
        partial_uploads_removed = recovery.spool.partial_uploads,
        orphan_spool_files_removed = recovery.spool.orphans,
        jobs_interrupted_while_printing = recovery.interrupted_outputs,
        data_dir = %config.data_dir.display(),
        "store opened"
    );

    let queues = Queues::from_config(&config);
    let health = PrinterHealth::default();
    let wake = OutputWake::new(&config);
    let pools = Pools::new(&config, wake.clone(), metrics.clone());
    let mut tasks = Vec::new();
    let shared = OutputShared {
        store: store.clone(),
        health: health.clone(),
        wake: wake.clone(),
        pools: pools.clone(),
        config: config.output.clone(),
        metrics: metrics.clone(),
        site: config.site.clone(),
    };
    // Every printer gets a forwarder: any of them can be released to.
    for printer in &config.printers {
        let feeding = queues.feeding(&printer.id);
        let forwarder = Forwarder::new(printer.clone(), feeding, &shared).map_err(|message| {
            DaemonError::Printer {
                id: printer.id.clone(),
                message,
            }
        })?;
        tasks.push(tokio::spawn(forwarder.run(shutdown.clone())));
    }

    let members = config
        .printers
        .iter()
        .filter(|p| pools.feed_of(&p.id).is_some())
        .cloned()
        .collect();
    tasks.push(tokio::spawn(crate::output::pool::follow(
        pools.clone(),
        members,
        Duration::from_secs(config.output.probe_interval_secs),
        Duration::from_secs(config.output.request_timeout_secs),
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(crate::output::supplies::follow(
        config.printers.clone(),
        health.clone(),
        shutdown.clone(),
    )));

    let uploads = UploadRegistry::default();
    // Logins at printers and IPP Basic share the argon2 threads.
    let verifier = Arc::new(Verifier::new(store.clone(), config.users.pin_only_login));
    let service = Arc::new(IppService {
        auth: IppAuth::new(
            config.ipp.authentication,
            &config.site,
            &config.api,
            verifier.clone(),
            store.clone(),
            metrics.clone(),
        ),
        queues,
        store: store.clone(),
        limits: config.ipp.clone(),
        site: config.site.clone(),
        metrics: metrics.clone(),
        health,
        pools: pools.clone(),
        wake: wake.clone(),
        uploads: uploads.clone(),
        upload_budget: Default::default(),
        started_ms: crate::job::now_ms(),
    });
    // A fleet site enforces the last policy central sent, from before the
    // restart too; until the first arrives, and on a standalone site, the
    // config's [rules] apply.
    let (version, stored_rules) = if config.central.enabled() {
        store.policy().await.map_err(|cause| DaemonError::Store {
            dir: config.data_dir.display().to_string(),
            cause,
        })?
    } else {
        (0, None)
    };
    let policy = PolicySource::new(Policy {
        version,
        rules: stored_rules.unwrap_or_else(|| config.rules.clone()),
    });
    // A fleet site releases jobs held at other sites, and serves its own.
    let roaming = config.central.enabled().then(|| {
        Roaming::new(
            store.clone(),
            wake.clone(),
            &config.data_dir,
            Duration::from_secs(config.central.prefetch_keep_secs),
            metrics.clone(),
        )
    });
    if let Some(roaming) = &roaming {
        roaming.start(shutdown.clone()).await;
    }
    let api = Arc::new(ApiService::new(
        &config,
        store.clone(),
        verifier.clone(),
        policy.view(),
        wake,
        roaming.clone(),
        metrics.clone(),
    ));
    if let Some(roaming) = roaming {
        tasks.push(tokio::spawn(follow_policy(
            api.clone(),
            service.clone(),
            policy.view(),
            shutdown.clone(),
        )));
        let (endpoints, dir, store, policy) = (
            config.central.endpoints.clone(),
            config.data_dir.clone(),
            store.clone(),
            policy.clone(),
        );
        let (metrics, shutdown) = (metrics.clone(), shutdown.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) =
                crate::sync::run(endpoints, &dir, store, policy, roaming, metrics, shutdown).await
            {
                tracing::error!(error = %e, "sync with central cannot run; the site works on alone");
            }
        }));
    }
    let api_addr = listeners.api.as_ref().and_then(|l| l.local_addr().ok());
    if let Some(listener) = listeners.api {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, tls = tls.is_some(), "API listening");
        }
        tasks.push(tokio::spawn(crate::api::serve(
            listener,
            api,
            tls,
            config.api.max_connections,
            shutdown.clone(),
            DRAIN,
        )));
    }
    let other_ways_in = [
        (listeners.lpd, Protocol::Lpd),
        (listeners.raw, Protocol::Raw(Arc::new(config.raw.clone()))),
    ];
    for (listener, protocol) in other_ways_in {
        if let Some(listener) = listener {
            let serving =
                legacy::serve(listener, protocol, service.clone(), shutdown.clone(), DRAIN);
            tasks.push(tokio::spawn(serving));
        }
    }
    for folder in &config.hot_folders {
        let watching = crate::hot_folder::watch(folder.clone(), service.clone(), shutdown.clone());
        tasks.push(tokio::spawn(watching));
    }
    let housekeeping = Housekeeping::new(
        store.clone(),
        uploads,
        config.ipp.document_timeout(),
        config.retention.held_job(),
        (config.retention.printed_job_secs > 0)
            .then(|| Duration::from_secs(config.retention.printed_job_secs)),
    );
    tasks.push(tokio::spawn(housekeeping.run(shutdown.clone())));
    {
        // Not among the tasks shutdown waits for: a probe of a printer
        // that is off must not hold up a stop.
        let (config, store) = (config.clone(), store.clone());
        tokio::spawn(async move { crate::startup::check(&config, &store).await });
    }
    if let Ok(addr) = listeners.ipp.local_addr() {
        tracing::info!(%addr, tls = ipp_tls.is_some(), authentication = service.auth.keyword(), queues = ?service.queues.all().iter().map(|q| &q.name).collect::<Vec<_>>(), "IPP listening");
        if config.dnssd.enabled {
            let advertiser =
                crate::dnssd::Advertiser::new(&config, &service.queues, addr, api_addr);
            tasks.push(tokio::spawn(advertiser.run(shutdown.clone())));
        }
    }
    server::serve(listeners.ipp, service, ipp_tls, shutdown, DRAIN).await;
    for task in tasks {
        let _ = task.await;
    }
    tracing::info!("stopped; every acknowledged job is on disk");
    Ok(())
}

/// The TLS acceptor of a certificate and key pair, when both are given.
fn tls_acceptor(
    key: &'static str,
    certificate: &Option<std::path::PathBuf>,
    private_key: &Option<std::path::PathBuf>,
) -> Result<Option<tokio_rustls::TlsAcceptor>, DaemonError> {
    match (certificate, private_key) {
        (Some(cert), Some(private)) => crate::http_server::tls_acceptor(cert, private)
            .map(Some)
            .map_err(|source| DaemonError::Tls { key, source }),
        _ => Ok(None),
    }
}

/// Ends the API sessions of users a new policy disabled or removed, and
/// forgets the passwords IPP remembered.
async fn follow_policy(
    api: Arc<ApiService>,
    ipp: Arc<IppService>,
    mut policy: crate::policy::PolicyView,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            changed = policy.changed() => if !changed { return },
            _ = shutdown.changed() => return,
        }
        ipp.auth.forget();
        let ended = api.follow_policy().await;
        if ended > 0 {
            tracing::info!(
                sessions_ended = ended,
                "policy: sessions of disabled or removed users ended"
            );
        }
    }
}
