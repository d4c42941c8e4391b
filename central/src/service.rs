//! Wires central together: the data directory, storage, identity, the
//! QUIC listener, the admin socket and the policy directory; runs them
//! until the shutdown signal.

use std::sync::Arc;

use sync_protocol::pki::pem_fingerprint;
use sync_protocol::transport::{Timing, central_endpoint, node_client_config};
use tokio::sync::watch;
use tracing::Instrument;

use crate::admin;
use crate::config::Config;
use crate::identity::{FleetIdentity, IdentityError};
use crate::policy_files;
use crate::store::{CentralStore, PostgresStore, SqliteStore, Storage, StoreError, nodes};
use crate::submission;
use crate::sync::{self, Deltas, Nodes, Registry, Shared};

/// Why central could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The data directory could not be made.
    #[error("data directory {dir}: {source}")]
    DataDir {
        /// The directory.
        dir: String,
        /// What failed.
        source: std::io::Error,
    },
    /// Storage failed to open.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The CA or fleet key is unusable.
    #[error("{0}")]
    Identity(#[from] IdentityError),
    /// A listener could not be bound.
    #[error("{what} {addr}: {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// Where.
        addr: String,
        /// What failed.
        source: std::io::Error,
    },
    /// The QUIC endpoint could not be set up.
    #[error("sync listener: {0}")]
    Transport(#[from] sync_protocol::transport::TransportError),
    /// IPPS submission cannot run as configured.
    #[error("{0}")]
    Submission(#[from] crate::submission::SubmissionError),
}

/// Resolves once `shutdown` is true (or its sender is gone).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // The guard wait_for returns is dropped here, before any other await.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Tells the storage every [`nodes::HEARTBEAT`] that this node is alive,
/// until the process ends; says once when it cannot, and when it can again.
async fn heartbeat<S: CentralStore>(shared: Arc<Shared<S>>) {
    let mut ticks = tokio::time::interval(nodes::HEARTBEAT);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        ticks.tick().await;
        match shared.store.node_alive(shared.nodes.address.clone()).await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("the storage hears this node's heartbeat again");
            }
            Ok(()) => {}
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "cannot tell the storage this node is alive; \
                    other nodes cannot reach its sites until it can");
            }
            Err(_) => {}
        }
    }
}

/// Runs central until `shutdown` turns true.
pub async fn run(config: Config, shutdown: watch::Receiver<bool>) -> Result<(), ServiceError> {
    let dir = config.data_dir.clone();
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|source| ServiceError::DataDir {
                dir: dir.display().to_string(),
                source,
            })?;
    }
    let store = match &config.storage.url {
        None => Storage::Sqlite(SqliteStore::open(&dir)?),
        Some(url) => {
            let (size, ca) = (config.storage.pool_size, config.storage.tls_ca.as_deref());
            Storage::Postgres(PostgresStore::connect(url, size, ca).await?)
        }
    };
    tracing::info!(storage = %store.describe().await, "storage open");
    let identity = FleetIdentity::load_or_create(&dir, &config.fleet)?;
    let version = store.policy_version().await?;
    let socket =
        std::net::UdpSocket::bind(config.sync.listen).map_err(|source| ServiceError::Bind {
            what: "[sync] listen",
            addr: config.sync.listen.to_string(),
            source,
        })?;
    let timing = Timing {
        idle_timeout: config.idle_timeout(),
        keep_alive: config.idle_timeout() / 4,
    };
    let endpoint = central_endpoint(
        socket,
        &identity.server,
        identity.authority.certificate_pem(),
        timing,
        &identity.fleet_key,
    )?;
    let admin_path = config.admin_socket();
    let admin = admin::bind(&admin_path).map_err(|source| ServiceError::Bind {
        what: "[admin] listen",
        addr: admin_path.display().to_string(),
        source,
    })?;
    let fingerprint = identity
        .authority
        .fingerprint()
        .map(hex::encode)
        .unwrap_or_default();
    // This node's row in the storage, before any site can be served, so
    // other nodes sharing it can reach its sites from the first session.
    let address = config.node_address().to_string();
    let certificate = pem_fingerprint(&identity.server.certificate_pem)
        .map_err(|e| sync_protocol::transport::TransportError::Tls(e.to_string()))?;
    store.node_started(address.clone(), certificate).await?;
    let registry = Arc::new(Registry::default());
    let node_client = node_client_config(
        &identity.server,
        identity.authority.certificate_pem(),
        timing,
    )?;
    let nodes = Nodes::new(address, endpoint.clone(), node_client, registry.clone());
    let (policy, _) = watch::channel(version);
    let shared = Arc::new(Shared {
        store,
        identity,
        relay: Arc::new(tokio::sync::Semaphore::new(config.sync.relay_streams)),
        config,
        policy,
        registry,
        nodes: Arc::new(nodes),
        deltas: Deltas::default(),
    });
    if let Ok(addr) = endpoint.local_addr() {
        tracing::info!(%addr, ca_sha256 = %fingerprint, policy_version = version, "sync listening");
    }
    tracing::info!(socket = %admin_path.display(), "admin listening");
    let admin_task = tokio::spawn(admin::serve(admin, shared.clone(), shutdown.clone()));
    // Submission is one more site, enrolled at and syncing with this central.
    let submission = match (shared.config.submission.listen, endpoint.local_addr()) {
        (Some(listen), Ok(sync)) => {
            let sync = submission::loopback(sync);
            Some(submission::prepare(&shared, listen, sync).await?)
        }
        _ => None,
    };
    let submission_task = submission.map(|prepared| {
        tracing::info!(
            listen = ?shared.config.submission.listen,
            site = %shared.config.submission.site,
            "IPPS submission starting"
        );
        let shutdown = shutdown.clone();
        tokio::spawn(
            async move {
                if let Err(e) = prepared.run(shutdown).await {
                    tracing::error!(error = %e, "IPPS submission stopped; central serves on without it");
                }
            }
            .instrument(tracing::info_span!("submission")),
        )
    });
    let files_task = shared
        .config
        .policy
        .dir
        .clone()
        .map(|dir| tokio::spawn(policy_files::watch(dir, shared.clone(), shutdown.clone())));
    // Policy edits made through other nodes sharing the storage reach this
    // node's sessions too.
    let follower = {
        let (store, policy) = (shared.store.clone(), shared.policy.clone());
        tokio::spawn(async move { store.follow_policy(policy).await })
    };
    let heartbeat = tokio::spawn(heartbeat(shared.clone()));
    sync::serve(endpoint, shared, shutdown).await;
    follower.abort();
    heartbeat.abort();
    let _ = admin_task.await;
    if let Some(task) = submission_task {
        let _ = task.await;
    }
    if let Some(task) = files_task {
        let _ = task.await;
    }
    let _ = std::fs::remove_file(&admin_path);
    tracing::info!("stopped");
    Ok(())
}
