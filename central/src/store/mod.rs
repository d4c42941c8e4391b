//! Central's storage, behind [`CentralStore`]: the narrow interface the
//! service uses, with two backends: the embedded SQLite database
//! ([`SqliteStore`], the default, one node) and a PostgreSQL database that
//! several central nodes share ([`PostgresStore`]). [`Storage`] is the one
//! the configuration chose.
//!
//! What the interface promises, whatever the backend:
//! - journal records are keyed by (site, epoch, sequence): storing one twice
//!   stores it once; a batch is stored only if it continues what is stored
//!   (`after` ≤ acknowledged), and the acknowledged mark moves in the same
//!   transaction as the records;
//! - job announcements are keyed by (site, job); a lower sequence never
//!   replaces a higher one;
//! - every policy edit that changes something is one new version, and the
//!   changes since any version can be listed (removed users stay as
//!   tombstones);
//! - an enrollment token works once, before it expires;
//! - a site's session is on the node that opened it last, and counts only
//!   while that node says it is alive (`nodes`).

mod db;
mod logs;
pub mod nodes;
mod policy;
mod postgres;
mod postgres_tls;
mod reports;
mod schema;
mod sites;

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;

use sync_protocol::message::{JobBatch, JournalBatch, PolicyChanges, PolicyUser};
use sync_protocol::rules::Rules;
use tokio::sync::{mpsc, watch};

pub use nodes::NodeInfo;
pub use policy::PolicyEdit;
pub use postgres::PostgresStore;
pub use reports::{IndexedJob, ReportBy, ReportRow};
pub use sites::{EnrollRefusal, SiteInfo};

/// Why storage failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite said no.
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database cannot be used now (begin or commit failed, migration).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The writer is gone (shutting down).
    #[error("the store is closed")]
    Closed,
    /// The file system said no.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A name that exists already.
    #[error("{0}")]
    Conflict(String),
    /// Something asked for is not there.
    #[error("{0}")]
    NotFound(String),
    /// A request that makes no sense (an edit of nothing, a gap in a log).
    #[error("{0}")]
    Invalid(String),
}

/// What a site at some policy version needs to catch up.
#[derive(Debug, Clone, PartialEq)]
pub enum PolicyDelta {
    /// Nothing: it has the current version.
    Current,
    /// These changes.
    Changes(PolicyChanges),
    /// A full snapshot of this version (read it with
    /// [`CentralStore::snapshot`]).
    Snapshot {
        /// The version.
        version: u64,
    },
}

/// The head of a snapshot; its users follow in chunks.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotHead {
    /// The version.
    pub version: u64,
    /// Users that follow.
    pub users: u64,
    /// The rules.
    pub rules: Rules,
}

/// A part of a snapshot as it is read: the head first, then the users.
#[derive(Debug, Clone, PartialEq)]
pub enum SnapshotPart {
    /// Version, user count and rules.
    Head(SnapshotHead),
    /// Up to [`CHUNK_USERS`] users.
    Users(Vec<PolicyUser>),
}

/// Users per snapshot chunk and most users changed that still travel as
/// changes rather than a snapshot.
pub const CHUNK_USERS: usize = 1000;

/// Central's storage.
pub trait CentralStore: Clone + Send + Sync + 'static {
    /// Registers a site with its first enrollment token.
    fn add_site(
        &self,
        name: String,
        token_id: String,
        secret_sha256: [u8; 32],
        expires_ms: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every site.
    fn list_sites(&self) -> impl Future<Output = Result<Vec<SiteInfo>, StoreError>> + Send;

    /// Revokes a site; `NotFound` if there is none of that name.
    fn revoke_site(&self, name: String) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Checks a token without using it: the site it enrolls.
    fn check_token(
        &self,
        token_id: String,
        secret_sha256: [u8; 32],
    ) -> impl Future<Output = Result<Result<String, EnrollRefusal>, StoreError>> + Send;

    /// Uses a token (checked again, atomically) and records the site's
    /// certificate.
    fn complete_enrollment(
        &self,
        token_id: String,
        secret_sha256: [u8; 32],
        certificate_sha256: [u8; 32],
    ) -> impl Future<Output = Result<Result<String, EnrollRefusal>, StoreError>> + Send;

    /// The site whose certificate has this SHA-256.
    fn site_by_certificate(
        &self,
        certificate_sha256: [u8; 32],
    ) -> impl Future<Output = Result<Option<SiteInfo>, StoreError>> + Send;

    /// A session of `site` in `epoch` begins: records the contact and
    /// returns the acknowledged (journal, jobs) sequences.
    fn begin_session(
        &self,
        site: String,
        epoch: String,
    ) -> impl Future<Output = Result<(u64, u64), StoreError>> + Send;

    /// Stores journal records; returns the acknowledged sequence after it.
    fn store_journal(
        &self,
        site: String,
        batch: JournalBatch,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Stores job announcements; returns the acknowledged sequence after it.
    fn store_jobs(
        &self,
        site: String,
        batch: JobBatch,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// `site` enforces `version` now.
    fn site_applied(
        &self,
        site: String,
        version: u64,
        unknown_rules: Vec<String>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The current policy version.
    fn policy_version(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// What a site at `since` needs.
    fn policy_since(
        &self,
        since: u64,
    ) -> impl Future<Output = Result<PolicyDelta, StoreError>> + Send;

    /// Reads a consistent snapshot of the current policy into `parts`: its
    /// head, then its users in chunks of [`CHUNK_USERS`] (the read waits
    /// while the receiver is behind, so memory stays bounded).
    fn snapshot(
        &self,
        parts: mpsc::Sender<SnapshotPart>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Applies an edit; returns the policy version after it.
    fn edit_policy(&self, edit: PolicyEdit)
    -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// The users in force (removed ones excluded), by id.
    fn users(&self) -> impl Future<Output = Result<Vec<PolicyUser>, StoreError>> + Send;

    /// Accounting totals grouped `by`, from `since_ms` on.
    fn report(
        &self,
        by: ReportBy,
        since_ms: i64,
    ) -> impl Future<Output = Result<Vec<ReportRow>, StoreError>> + Send;

    /// The global index's jobs of `user`, newest first.
    fn jobs_of(
        &self,
        user: String,
    ) -> impl Future<Output = Result<Vec<IndexedJob>, StoreError>> + Send;

    /// What it is, for the log and `central status` (never a password).
    fn describe(&self) -> impl Future<Output = String> + Send;

    /// Raises `policy` to every version other central nodes sharing this
    /// storage commit, until the process ends; returns at once where no
    /// other node can write.
    fn follow_policy(&self, policy: watch::Sender<u64>) -> impl Future<Output = ()> + Send;

    /// The node at `address` (re)starts, proving itself to the other nodes
    /// with the certificate `certificate_sha256`: its row is written and
    /// the sessions it held before are forgotten.
    fn node_started(
        &self,
        address: String,
        certificate_sha256: [u8; 32],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The node at `address` is alive (every [`nodes::HEARTBEAT`]).
    fn node_alive(&self, address: String) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The live node whose certificate has this SHA-256, by address.
    fn node_by_certificate(
        &self,
        certificate_sha256: [u8; 32],
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// `site`'s session is on the node at `node` from now on.
    fn session_opened(
        &self,
        site: String,
        node: String,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// `site` has no session on `node` any more.
    fn session_closed(
        &self,
        site: String,
        node: String,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The live node holding each of `sites`' sessions; sites with none
    /// are left out.
    fn sessions_of(
        &self,
        sites: Vec<String>,
    ) -> impl Future<Output = Result<HashMap<String, String>, StoreError>> + Send;

    /// Every node, with the sites on it.
    fn nodes(&self) -> impl Future<Output = Result<Vec<NodeInfo>, StoreError>> + Send;
}

/// Moves the announced policy version to `version` if that is newer:
/// versions only move forward, whichever of a node's own edits and other
/// nodes' notifications is heard first. Whether it moved.
pub fn raise_policy(policy: &watch::Sender<u64>, version: u64) -> bool {
    policy.send_if_modified(|current| {
        let newer = version > *current;
        if newer {
            *current = version;
        }
        newer
    })
}

/// The embedded SQLite backend.
#[derive(Clone)]
pub struct SqliteStore {
    db: db::Db,
}

impl SqliteStore {
    /// Opens (creating, migrating) `DATA_DIR/central.db`.
    pub fn open(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        let db = db::Db::open(&data_dir.join("central.db"), schema::migrate)?;
        Ok(SqliteStore { db })
    }
}

/// A migrated in-memory database, for the SQL modules' tests.
#[cfg(test)]
fn test_db() -> rusqlite::Connection {
    let mut conn = rusqlite::Connection::open_in_memory().expect("in-memory SQLite");
    schema::migrate(&mut conn).expect("migrations apply");
    conn
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

impl CentralStore for SqliteStore {
    async fn add_site(
        &self,
        name: String,
        token_id: String,
        secret_sha256: [u8; 32],
        expires_ms: i64,
    ) -> Result<(), StoreError> {
        self.db
            .write(move |c| sites::add(c, &name, &token_id, &secret_sha256, expires_ms, now_ms()))
            .await
    }

    async fn list_sites(&self) -> Result<Vec<SiteInfo>, StoreError> {
        self.db.read(sites::list).await
    }

    async fn revoke_site(&self, name: String) -> Result<(), StoreError> {
        self.db
            .write(move |c| sites::revoke(c, &name, now_ms()))
            .await
    }

    async fn check_token(
        &self,
        token_id: String,
        secret_sha256: [u8; 32],
    ) -> Result<Result<String, EnrollRefusal>, StoreError> {
        self.db
            .read(move |c| sites::check_token(c, &token_id, &secret_sha256, now_ms()))
            .await
    }

    async fn complete_enrollment(
        &self,
        token_id: String,
        secret_sha256: [u8; 32],
        certificate_sha256: [u8; 32],
    ) -> Result<Result<String, EnrollRefusal>, StoreError> {
        self.db
            .write(move |c| {
                sites::complete_enrollment(
                    c,
                    &token_id,
                    &secret_sha256,
                    &certificate_sha256,
                    now_ms(),
                )
            })
            .await
    }

    async fn site_by_certificate(
        &self,
        certificate_sha256: [u8; 32],
    ) -> Result<Option<SiteInfo>, StoreError> {
        self.db
            .read(move |c| sites::by_certificate(c, &certificate_sha256))
            .await
    }

    async fn begin_session(&self, site: String, epoch: String) -> Result<(u64, u64), StoreError> {
        self.db
            .write(move |c| logs::begin_session(c, &site, &epoch, now_ms()))
            .await
    }

    async fn store_journal(&self, site: String, batch: JournalBatch) -> Result<u64, StoreError> {
        self.db
            .write(move |c| logs::store_journal(c, &site, &batch))
            .await
    }

    async fn store_jobs(&self, site: String, batch: JobBatch) -> Result<u64, StoreError> {
        self.db
            .write(move |c| logs::store_jobs(c, &site, &batch))
            .await
    }

    async fn site_applied(
        &self,
        site: String,
        version: u64,
        unknown_rules: Vec<String>,
    ) -> Result<(), StoreError> {
        self.db
            .write(move |c| sites::applied(c, &site, version, &unknown_rules, now_ms()))
            .await
    }

    async fn policy_version(&self) -> Result<u64, StoreError> {
        self.db.read(policy::version).await
    }

    async fn policy_since(&self, since: u64) -> Result<PolicyDelta, StoreError> {
        self.db.read(move |c| policy::since(c, since)).await
    }

    async fn snapshot(&self, parts: mpsc::Sender<SnapshotPart>) -> Result<(), StoreError> {
        self.db.read(move |c| policy::snapshot(c, &parts)).await
    }

    async fn edit_policy(&self, edit: PolicyEdit) -> Result<u64, StoreError> {
        self.db.write(move |c| policy::edit(c, edit)).await
    }

    async fn users(&self) -> Result<Vec<PolicyUser>, StoreError> {
        self.db.read(policy::users).await
    }

    async fn report(&self, by: ReportBy, since_ms: i64) -> Result<Vec<ReportRow>, StoreError> {
        self.db
            .read(move |c| reports::report(c, by, since_ms))
            .await
    }

    async fn jobs_of(&self, user: String) -> Result<Vec<IndexedJob>, StoreError> {
        self.db.read(move |c| reports::jobs_of(c, &user)).await
    }

    async fn describe(&self) -> String {
        "SQLite (central.db in the data directory)".into()
    }

    /// Only this process writes its SQLite database: every edit is its own.
    async fn follow_policy(&self, _policy: watch::Sender<u64>) {}

    async fn node_started(
        &self,
        address: String,
        certificate_sha256: [u8; 32],
    ) -> Result<(), StoreError> {
        self.db
            .write(move |c| nodes::started(c, &address, &certificate_sha256, now_ms()))
            .await
    }

    async fn node_alive(&self, address: String) -> Result<(), StoreError> {
        self.db
            .write(move |c| nodes::alive(c, &address, now_ms()))
            .await
    }

    async fn node_by_certificate(
        &self,
        certificate_sha256: [u8; 32],
    ) -> Result<Option<String>, StoreError> {
        self.db
            .read(move |c| nodes::by_certificate(c, &certificate_sha256, now_ms()))
            .await
    }

    async fn session_opened(&self, site: String, node: String) -> Result<(), StoreError> {
        self.db
            .write(move |c| nodes::session_opened(c, &site, &node, now_ms()))
            .await
    }

    async fn session_closed(&self, site: String, node: String) -> Result<(), StoreError> {
        self.db
            .write(move |c| nodes::session_closed(c, &site, &node))
            .await
    }

    async fn sessions_of(&self, sites: Vec<String>) -> Result<HashMap<String, String>, StoreError> {
        self.db
            .read(move |c| nodes::sessions_of(c, &sites, now_ms()))
            .await
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>, StoreError> {
        self.db.read(|c| nodes::list(c, now_ms())).await
    }
}

/// The backend the configuration chose.
#[derive(Clone)]
pub enum Storage {
    /// `DATA_DIR/central.db`.
    Sqlite(SqliteStore),
    /// A PostgreSQL database shared by several nodes.
    Postgres(PostgresStore),
}

/// Calls the same method on whichever backend `$storage` holds.
macro_rules! on_backend {
    ($storage:expr, $store:ident => $call:expr) => {
        match $storage {
            Storage::Sqlite($store) => $call,
            Storage::Postgres($store) => $call,
        }
    };
}

impl CentralStore for Storage {
    async fn add_site(
        &self,
        name: String,
        token_id: String,
        secret_sha256: [u8; 32],
        expires_ms: i64,
    ) -> Result<(), StoreError> {
        on_backend!(self, s => s.add_site(name, token_id, secret_sha256, expires_ms).await)
    }

    async fn list_sites(&self) -> Result<Vec<SiteInfo>, StoreError> {
        on_backend!(self, s => s.list_sites().await)
    }

    async fn revoke_site(&self, name: String) -> Result<(), StoreError> {
        on_backend!(self, s => s.revoke_site(name).await)
    }

    async fn check_token(
        &self,
        token_id: String,
        secret_sha256: [u8; 32],
    ) -> Result<Result<String, EnrollRefusal>, StoreError> {
        on_backend!(self, s => s.check_token(token_id, secret_sha256).await)
    }

    async fn complete_enrollment(
        &self,
        token_id: String,
        secret_sha256: [u8; 32],
        certificate_sha256: [u8; 32],
    ) -> Result<Result<String, EnrollRefusal>, StoreError> {
        on_backend!(self, s => s.complete_enrollment(token_id, secret_sha256, certificate_sha256).await)
    }

    async fn site_by_certificate(
        &self,
        certificate_sha256: [u8; 32],
    ) -> Result<Option<SiteInfo>, StoreError> {
        on_backend!(self, s => s.site_by_certificate(certificate_sha256).await)
    }

    async fn begin_session(&self, site: String, epoch: String) -> Result<(u64, u64), StoreError> {
        on_backend!(self, s => s.begin_session(site, epoch).await)
    }

    async fn store_journal(&self, site: String, batch: JournalBatch) -> Result<u64, StoreError> {
        on_backend!(self, s => s.store_journal(site, batch).await)
    }

    async fn store_jobs(&self, site: String, batch: JobBatch) -> Result<u64, StoreError> {
        on_backend!(self, s => s.store_jobs(site, batch).await)
    }

    async fn site_applied(
        &self,
        site: String,
        version: u64,
        unknown_rules: Vec<String>,
    ) -> Result<(), StoreError> {
        on_backend!(self, s => s.site_applied(site, version, unknown_rules).await)
    }

    async fn policy_version(&self) -> Result<u64, StoreError> {
        on_backend!(self, s => s.policy_version().await)
    }

    async fn policy_since(&self, since: u64) -> Result<PolicyDelta, StoreError> {
        on_backend!(self, s => s.policy_since(since).await)
    }

    async fn snapshot(&self, parts: mpsc::Sender<SnapshotPart>) -> Result<(), StoreError> {
        on_backend!(self, s => s.snapshot(parts).await)
    }

    async fn edit_policy(&self, edit: PolicyEdit) -> Result<u64, StoreError> {
        on_backend!(self, s => s.edit_policy(edit).await)
    }

    async fn users(&self) -> Result<Vec<PolicyUser>, StoreError> {
        on_backend!(self, s => s.users().await)
    }

    async fn report(&self, by: ReportBy, since_ms: i64) -> Result<Vec<ReportRow>, StoreError> {
        on_backend!(self, s => s.report(by, since_ms).await)
    }

    async fn jobs_of(&self, user: String) -> Result<Vec<IndexedJob>, StoreError> {
        on_backend!(self, s => s.jobs_of(user).await)
    }

    async fn describe(&self) -> String {
        on_backend!(self, s => s.describe().await)
    }

    async fn follow_policy(&self, policy: watch::Sender<u64>) {
        on_backend!(self, s => s.follow_policy(policy).await)
    }

    async fn node_started(
        &self,
        address: String,
        certificate_sha256: [u8; 32],
    ) -> Result<(), StoreError> {
        on_backend!(self, s => s.node_started(address, certificate_sha256).await)
    }

    async fn node_alive(&self, address: String) -> Result<(), StoreError> {
        on_backend!(self, s => s.node_alive(address).await)
    }

    async fn node_by_certificate(
        &self,
        certificate_sha256: [u8; 32],
    ) -> Result<Option<String>, StoreError> {
        on_backend!(self, s => s.node_by_certificate(certificate_sha256).await)
    }

    async fn session_opened(&self, site: String, node: String) -> Result<(), StoreError> {
        on_backend!(self, s => s.session_opened(site, node).await)
    }

    async fn session_closed(&self, site: String, node: String) -> Result<(), StoreError> {
        on_backend!(self, s => s.session_closed(site, node).await)
    }

    async fn sessions_of(&self, sites: Vec<String>) -> Result<HashMap<String, String>, StoreError> {
        on_backend!(self, s => s.sessions_of(sites).await)
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>, StoreError> {
        on_backend!(self, s => s.nodes().await)
    }
}
