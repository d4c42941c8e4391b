//! Wires the appliance together: opens the store (cleaning up after a
//! crash), starts one forwarder per printer that a direct queue feeds,
//! housekeeping (timeouts and retention), and the IPP server; stops them
//! all on the shutdown signal, committing every write already queued.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::housekeeping::Housekeeping;
use crate::ipp::server;
use crate::ipp::service::IppService;
use crate::metrics::Metrics;
use crate::output::PrinterHealth;
use crate::output::forwarder::{Forwarder, OutputShared, OutputWake};
use crate::queue::Queues;
use crate::store::{JobStore, StoreError};

/// How long shutdown waits for requests in flight.
const DRAIN: Duration = Duration::from_secs(10);

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The store could not be opened or recovered.
    #[error("cannot open the job store in {dir}: {source}")]
    Store {
        /// The data directory.
        dir: String,
        /// What failed.
        source: StoreError,
    },
    /// A printer's URI is unusable (config validation should have caught it).
    #[error("printer {id}: {message}")]
    Printer {
        /// Printer id.
        id: String,
        /// What is wrong.
        message: String,
    },
}

/// Runs the appliance on an already-bound IPP listener until `shutdown`
/// turns true.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
) -> Result<(), DaemonError> {
    let metrics = Arc::new(Metrics::new());
    let dir = config.data_dir.clone();
    let level = config.store.compression_level;
    let store_metrics = metrics.clone();
    let site = config.site.clone();
    let opened =
        tokio::task::spawn_blocking(move || JobStore::open(&dir, level, &site, store_metrics))
            .await
            .map_err(|e| DaemonError::Store {
                dir: config.data_dir.display().to_string(),
                source: StoreError::Io(std::io::Error::other(e.to_string())),
            })?;
    let (store, recovery) = opened.map_err(|source| DaemonError::Store {
        dir: config.data_dir.display().to_string(),
        source,
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
    let wake = OutputWake::new(config.printers.iter().map(|p| p.id.as_str()));
    let mut tasks = Vec::new();
    let shared = OutputShared {
        store: store.clone(),
        health: health.clone(),
        wake: wake.clone(),
        config: config.output.clone(),
        metrics: metrics.clone(),
        site: config.site.clone(),
    };
    for printer in &config.printers {
        let feeding = queues.feeding(&printer.id);
        if feeding.is_empty() {
            continue;
        }
        let forwarder = Forwarder::new(printer.clone(), feeding, &shared).map_err(|message| {
            DaemonError::Printer {
                id: printer.id.clone(),
                message,
            }
        })?;
        tasks.push(tokio::spawn(forwarder.run(shutdown.clone())));
    }

    let service = Arc::new(IppService {
        queues,
        store: store.clone(),
        limits: config.ipp.clone(),
        site: config.site.clone(),
        metrics,
        health,
        wake,
        uploads: Mutex::new(HashSet::new()),
    });
    let housekeeping = Housekeeping::new(
        service.clone(),
        config.ipp.document_timeout(),
        config.retention.held_job(),
    );
    tasks.push(tokio::spawn(housekeeping.run(shutdown.clone())));
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, queues = ?service.queues.all().iter().map(|q| &q.name).collect::<Vec<_>>(), "IPP listening");
    }
    server::serve(listener, service, shutdown, DRAIN).await;
    for task in tasks {
        let _ = task.await;
    }
    tracing::info!("stopped; every acknowledged job is on disk");
    Ok(())
}
