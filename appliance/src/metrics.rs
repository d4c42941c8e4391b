//! Prometheus metrics (text exposition format), served at `/metrics` on the
//! IPP listener.
//!
//! Counters are updated where things happen; gauges that describe stored
//! state (held jobs, queued jobs) are read from the store at scrape time, so
//! they are right after a restart too.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels naming a queue.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// Queue name.
    pub queue: String,
}

/// Labels of one answered IPP request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Operation name, e.g. `Print-Job`.
    pub operation: String,
    /// Status class: `ok`, `client-error`, `server-error`.
    pub status: &'static str,
}

/// Labels of one attempt to hand a job to a printer.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutputLabels {
    /// Printer id.
    pub printer: String,
    /// `accepted`, `completed`, `retry`, `aborted`.
    pub outcome: &'static str,
}

/// Labels of one answered release API request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    /// Route name, e.g. `release`.
    pub route: &'static str,
    /// HTTP status code.
    pub status: u16,
}

/// Labels of one login attempt.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoginLabels {
    /// `pin`, `card` or `password`.
    pub method: &'static str,
    /// `ok`, `invalid` or `locked`.
    pub outcome: &'static str,
}

/// Labels naming a printer.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PrinterLabels {
    /// Printer id.
    pub printer: String,
}

/// Labels of one member of a printer pool in one state.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolMemberLabels {
    /// Pool id.
    pub pool: String,
    /// Member printer id.
    pub printer: String,
    /// `ready`, `degraded` or `out`.
    pub state: &'static str,
}

/// Labels naming a printer pool.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    /// Pool id.
    pub pool: String,
}

/// Labels of a roaming figure: what happened (`granted`, `refused`,
/// `unavailable` for claims; `received`, `served` for bytes).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoamingLabels {
    /// The kind.
    pub kind: &'static str,
}

/// Every metric the appliance exports.
pub struct Metrics {
    registry: Registry,
    /// Jobs committed to the store, by queue.
    pub jobs_received: Family<QueueLabels, Counter>,
    /// Document bytes committed to the store (as sent), by queue.
    pub document_bytes_received: Family<QueueLabels, Counter>,
    /// IPP requests answered, by operation and status class.
    pub ipp_requests: Family<RequestLabels, Counter>,
    /// Store operations that failed (database or spool I/O).
    pub store_errors: Counter,
    /// Write operations committed per SQLite transaction (group commit).
    pub store_commit_batch: Histogram,
    /// Seconds to commit one batch (SQLite transaction and WAL fsync).
    pub store_commit_seconds: Histogram,
    /// Seconds from a document's first byte to its durable spool file.
    pub spool_write_seconds: Histogram,
    /// Jobs currently held (set at scrape time).
    pub jobs_held: Gauge,
    /// Jobs waiting for or being sent to a printer (set at scrape time).
    pub jobs_queued: Gauge,
    /// The process's resident memory (set at scrape time).
    pub resident_memory_bytes: Gauge,
    /// Hand-overs to printers, by printer and outcome.
    pub output_attempts: Family<OutputLabels, Counter>,
    /// Release API requests answered, by route and status.
    pub api_requests: Family<ApiLabels, Counter>,
    /// Login attempts at printers, by method and outcome.
    pub logins: Family<LoginLabels, Counter>,
    /// Jobs released (or reprinted) at a printer.
    pub jobs_released: Family<PrinterLabels, Counter>,
    /// 1 while a printer's forwarder cannot record progress in the store
    /// (a full disk), 0 otherwise.
    pub output_store_failing: Family<PrinterLabels, Gauge>,
    /// 1 for the state each pool member is in (`ready`, `degraded`,
    /// `out`), 0 for the others.
    pub pool_member_state: Family<PoolMemberLabels, Gauge>,
    /// Members of a pool that may take its jobs now.
    pub pool_members_taking: Family<PoolLabels, Gauge>,
    /// 1 while a sync session with central runs.
    pub sync_connected: Gauge,
    /// The fleet policy version in force.
    pub sync_policy_version: Gauge,
    /// Journal records central has not acknowledged.
    pub sync_journal_unacked: Gauge,
    /// Job announcements central has not acknowledged.
    pub sync_outbox_unacked: Gauge,
    /// When central was last heard from (Unix seconds; 0: never).
    pub sync_last_contact: Gauge,
    /// Documents being fetched from other sites now.
    pub roaming_transfers: Gauge,
    /// Document bytes moved between sites: `received` (verified) and `served`.
    pub roaming_bytes: Family<RoamingLabels, Counter>,
    /// Fetches that went on from verified blocks after a break or restart.
    pub roaming_resumes: Counter,
    /// Claims this site made, by outcome: `granted`, `refused` (printed or
    /// claimed elsewhere, gone), `unavailable` (no answer).
    pub roaming_claims: Family<RoamingLabels, Counter>,
    /// Time to bring a document from another site, from the first block
    /// asked for to the verified spool file (breaks included).
    pub roaming_transfer_seconds: Histogram,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("appliance");
        let jobs_received = Family::<QueueLabels, Counter>::default();
        let document_bytes_received = Family::<QueueLabels, Counter>::default();
        let ipp_requests = Family::<RequestLabels, Counter>::default();
        let store_errors = Counter::default();
        let store_commit_batch = Histogram::new(exponential_buckets(1.0, 2.0, 9));
        let store_commit_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 14));
        let spool_write_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 18));
        let jobs_held = Gauge::default();
        let jobs_queued = Gauge::default();
        let resident_memory_bytes = Gauge::default();
        let output_attempts = Family::<OutputLabels, Counter>::default();
        let api_requests = Family::<ApiLabels, Counter>::default();
        let logins = Family::<LoginLabels, Counter>::default();
        let jobs_released = Family::<PrinterLabels, Counter>::default();
        let output_store_failing = Family::<PrinterLabels, Gauge>::default();
        let pool_member_state = Family::<PoolMemberLabels, Gauge>::default();
        let pool_members_taking = Family::<PoolLabels, Gauge>::default();
        let sync = [
            Gauge::default(),
            Gauge::default(),
            Gauge::default(),
            Gauge::default(),
            Gauge::default(),
        ];
        for (name, help, gauge) in [
            (
                "sync_connected",
                "1 while a sync session with central runs",
                &sync[0],
            ),
            (
                "sync_policy_version",
                "The fleet policy version in force",
                &sync[1],
            ),
            (
                "sync_journal_unacked",
                "Journal records central has not acknowledged",
                &sync[2],
            ),
            (
                "sync_outbox_unacked",
                "Job announcements central has not acknowledged",
                &sync[3],
            ),
            (
                "sync_last_contact_seconds",
                "When central was last heard from (Unix time; 0: never)",
                &sync[4],
            ),
        ] {
            registry.register(name, help, gauge.clone());
        }
        let [
            sync_connected,
            sync_policy_version,
            sync_journal_unacked,
            sync_outbox_unacked,
            sync_last_contact,
        ] = sync;
        let roaming_transfers = Gauge::default();
        let roaming_bytes = Family::<RoamingLabels, Counter>::default();
        let roaming_resumes = Counter::default();
        let roaming_claims = Family::<RoamingLabels, Counter>::default();
        let roaming_transfer_seconds = Histogram::new(exponential_buckets(0.01, 2.0, 16));
        registry.register(
            "roaming_transfer_seconds",
            "Time to bring a document from another site into the spool, verified",
            roaming_transfer_seconds.clone(),
        );
        registry.register(
            "roaming_transfers",
            "Documents being fetched from other sites now",
            roaming_transfers.clone(),
        );
        registry.register(
            "roaming_bytes",
            "Document bytes moved between sites (received and verified, or served)",
            roaming_bytes.clone(),
        );
        registry.register(
            "roaming_resumes",
            "Fetches that went on from verified blocks after a break or a restart",
            roaming_resumes.clone(),
        );
        registry.register(
            "roaming_claims",
            "Claims of jobs at other sites, by outcome",
            roaming_claims.clone(),
        );
        registry.register(
            "output_store_failing",
            "1 while a printer's jobs cannot be recorded in the store (full disk); they wait",
            output_store_failing.clone(),
        );
        registry.register(
            "pool_member_state",
            "1 for the state each printer pool member is in (ready, degraded, out)",
            pool_member_state.clone(),
        );
        registry.register(
            "pool_members_taking",
            "Members of a printer pool that take its jobs now",
            pool_members_taking.clone(),
        );
        registry.register(
            "api_requests",
            "Release API requests answered",
            api_requests.clone(),
        );
        registry.register("logins", "Login attempts at printers", logins.clone());
        registry.register(
            "jobs_released",
            "Jobs released (or reprinted) at a printer",
            jobs_released.clone(),
        );
        registry.register(
            "jobs_received",
            "Jobs durably stored and acknowledged",
            jobs_received.clone(),
        );
        registry.register(
            "document_bytes_received",
            "Document bytes durably stored (as sent, before compression)",
            document_bytes_received.clone(),
        );
        registry.register(
            "ipp_requests",
            "IPP requests answered",
            ipp_requests.clone(),
        );
        registry.register(
            "store_errors",
            "Store operations that failed",
            store_errors.clone(),
        );
        registry.register(
            "store_commit_batch_size",
            "Write operations per SQLite commit (group commit)",
            store_commit_batch.clone(),
        );
        registry.register(
            "store_commit_seconds",
            "Time to commit one batch of writes",
            store_commit_seconds.clone(),
        );
        registry.register(
            "spool_write_seconds",
            "Time from a document's first byte to its durable spool file",
            spool_write_seconds.clone(),
        );
        registry.register("jobs_held", "Jobs held for release", jobs_held.clone());
        registry.register(
            "jobs_queued",
            "Jobs waiting for or being sent to a printer",
            jobs_queued.clone(),
        );
        registry.register(
            "output_attempts",
            "Hand-overs of jobs to printers",
            output_attempts.clone(),
        );
        registry.register(
            "resident_memory_bytes",
            "The appliance process's resident memory (VmRSS)",
            resident_memory_bytes.clone(),
        );
        Metrics {
            registry,
            jobs_received,
            document_bytes_received,
            ipp_requests,
            store_errors,
            store_commit_batch,
            store_commit_seconds,
            spool_write_seconds,
            jobs_held,
            jobs_queued,
            resident_memory_bytes,
            output_attempts,
            api_requests,
            logins,
            jobs_released,
            output_store_failing,
            pool_member_state,
            pool_members_taking,
            sync_connected,
            sync_policy_version,
            sync_journal_unacked,
            sync_outbox_unacked,
            sync_last_contact,
            roaming_transfers,
            roaming_bytes,
            roaming_resumes,
            roaming_claims,
            roaming_transfer_seconds,
        }
    }

    /// A roaming figure by kind.
    pub fn roaming(&self, family: &Family<RoamingLabels, Counter>, kind: &'static str) -> Counter {
        family.get_or_create(&RoamingLabels { kind }).clone()
    }

    /// Renders the text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The `VmRSS` line of a `/proc/PID/status` file, in bytes.
pub fn resident_bytes(proc_status: &str) -> Option<i64> {
    let line = proc_status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: i64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_named_metrics() {
        let m = Metrics::new();
        m.jobs_received
            .get_or_create(&QueueLabels {
                queue: "secure".into(),
            })
            .inc();
        m.jobs_held.set(3);
        let text = m.render();
        assert!(
            text.contains("appliance_jobs_received_total{queue=\"secure\"} 1"),
            "{text}"
        );
        assert!(text.contains("appliance_jobs_held 3"), "{text}");
        assert!(text.contains("appliance_store_errors_total 0"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn reads_the_resident_size_from_proc_status() {
        let status = "Name:\tappliance\nVmPeak:\t  90000 kB\nVmRSS:\t   18244 kB\nThreads:\t9\n";
        assert_eq!(resident_bytes(status), Some(18244 * 1024));
        assert_eq!(resident_bytes("Name:\tx\n"), None);
        assert_eq!(resident_bytes("VmRSS:\tlots kB\n"), None);
    }
}
