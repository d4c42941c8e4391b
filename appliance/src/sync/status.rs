//! What the site's sync with central is doing, for `appliance status` and
//! the metrics. The daemon's sync task keeps it and writes it to
//! `DATA_DIR/sync-status.json` whenever it changes (at most once a second),
//! so the CLI can read it beside the running daemon.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;
use crate::store::SyncMarks;

/// The file the daemon writes.
pub const STATUS_FILE: &str = "sync-status.json";
/// Least time between two writes of the file.
const WRITE_EVERY: Duration = Duration::from_secs(1);

/// The sync's state as last seen by the daemon.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatus {
    /// The site's name at central, once central welcomed it.
    pub site: Option<String>,
    /// The endpoint of the session running now.
    pub connected_endpoint: Option<String>,
    /// When a message from central last arrived (ms since the epoch).
    pub last_contact_ms: Option<i64>,
    /// The policy version in force.
    pub policy_version: u64,
    /// Journal records central has not acknowledged.
    pub journal_unacked: u64,
    /// Job announcements central has not acknowledged.
    pub outbox_unacked: u64,
    /// Why the last session or dial ended, if it failed.
    pub last_error: Option<String>,
    /// Job roaming since the daemon started.
    #[serde(default)]
    pub roaming: RoamingStatus,
}

/// Job roaming figures since the daemon started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoamingStatus {
    /// Documents being fetched from other sites now.
    pub transfers_in_flight: u64,
    /// Document bytes received from other sites and verified.
    pub bytes_received: u64,
    /// Document bytes served to other sites.
    pub bytes_served: u64,
    /// Fetches that went on from verified blocks after a break or restart.
    pub resumes: u64,
    /// Claims of jobs at other sites that were granted.
    pub claims_granted: u64,
    /// Claims refused (printed or claimed elsewhere, gone).
    pub claims_refused: u64,
    /// Claims that got no answer (the other site or central away).
    pub claims_unavailable: u64,
}

/// Keeps the status, mirrors it into metrics, and writes the file.
pub(crate) struct StatusKeeper {
    status: SyncStatus,
    path: std::path::PathBuf,
    metrics: Arc<Metrics>,
    written: Option<Instant>,
    dirty: bool,
}

impl StatusKeeper {
    pub(crate) fn new(data_dir: &Path, metrics: Arc<Metrics>) -> StatusKeeper {
        StatusKeeper {
            status: SyncStatus::default(),
            path: data_dir.join(STATUS_FILE),
            metrics,
            written: None,
            dirty: true,
        }
    }

    /// Changes the status; the file follows within a second.
    pub(crate) fn update(&mut self, f: impl FnOnce(&mut SyncStatus)) {
        let before = self.status.clone();
        f(&mut self.status);
        if self.status != before {
            self.dirty = true;
            self.mirror();
        }
        self.flush(false);
    }

    /// Takes the unacknowledged counts from the store's marks.
    pub(crate) fn marks(&mut self, marks: &SyncMarks) {
        self.update(|s| {
            s.journal_unacked = marks.journal_latest.saturating_sub(marks.journal_acked);
            s.outbox_unacked = marks.outbox_pending;
        });
    }

    /// Takes the roaming figures from the metrics.
    pub(crate) fn roaming(&mut self) {
        let m = &self.metrics;
        let roaming = RoamingStatus {
            transfers_in_flight: m.roaming_transfers.get().max(0) as u64,
            bytes_received: m.roaming(&m.roaming_bytes, "received").get(),
            bytes_served: m.roaming(&m.roaming_bytes, "served").get(),
            resumes: m.roaming_resumes.get(),
            claims_granted: m.roaming(&m.roaming_claims, "granted").get(),
            claims_refused: m.roaming(&m.roaming_claims, "refused").get(),
            claims_unavailable: m.roaming(&m.roaming_claims, "unavailable").get(),
        };
        self.update(|s| s.roaming = roaming);
    }

    fn mirror(&self) {
        let s = &self.status;
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.metrics
            .sync_connected
            .set(i64::from(s.connected_endpoint.is_some()));
        self.metrics
            .sync_policy_version
            .set(gauge(s.policy_version));
        self.metrics
            .sync_journal_unacked
            .set(gauge(s.journal_unacked));
        self.metrics
            .sync_outbox_unacked
            .set(gauge(s.outbox_unacked));
        self.metrics
            .sync_last_contact
            .set(s.last_contact_ms.unwrap_or(0) / 1000);
    }

    /// Writes the file if it changed and a second has passed (or `now`).
    pub(crate) fn flush(&mut self, now: bool) {
        let due = now || self.written.is_none_or(|at| at.elapsed() >= WRITE_EVERY);
        if !self.dirty || !due {
            return;
        }
        let Some(dir) = self.path.parent() else {
            return;
        };
        match serde_json::to_vec_pretty(&self.status) {
            Ok(json) => {
                if let Err(e) = sync_protocol::private_file::replace(dir, STATUS_FILE, &json) {
                    tracing::warn!(error = %e, "sync: cannot write the status file");
                }
            }
            Err(e) => tracing::warn!(error = %e, "sync: cannot encode the status"),
        }
        self.written = Some(Instant::now());
        self.dirty = false;
    }
}

/// The status the daemon last wrote, if any.
pub fn read(data_dir: &Path) -> Option<SyncStatus> {
    let bytes = std::fs::read(data_dir.join(STATUS_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}
