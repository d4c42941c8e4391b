//! The job store: SQLite for job rows, [`spool`] files for document bytes.
//!
//! This is the only module that touches SQLite. One writer thread owns the
//! write connection and commits whatever has queued up in one transaction
//! (group commit: one WAL fsync for the whole batch), and only then answers
//! each caller. Documents arrive already durable under their final name
//! ([`SpoolWriter::finish`]), so an acknowledged job is on disk, and a
//! visible job always has its complete document. Reads use a small pool of read-only
//! connections on blocking threads; WAL lets them run beside the writer.
//!
//! Every state change is a [`Transition`] the writer applies against the
//! current row ([`JobStore::modify`]), so checks like "only a held job can
//! be released" are atomic with the write: a compare-and-set.

mod admin;
mod audit;
pub mod backup;
pub mod dir_sync;
mod documents;
mod error;
mod jobs;
mod journal;
mod outbox;
mod policy;
mod read_pool;
mod reserve;
mod roaming;
pub mod schema;
pub mod secret;
pub mod spool;
mod users;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use crate::accounting::JournalEntry;
use crate::credentials::LookupKind;
use crate::job::{JobRecord, JobState, JobUuid, Transition};
use crate::metrics::Metrics;
use crate::roaming::report::ClaimEnd;
use crate::rules::Rules;
use crate::users::LoginUser;
use admin::open_writer;
pub use admin::{StoreReader, UserAdmin, keep_savepoint_journals_in_memory};
pub use audit::AuditEvent;
pub use documents::Documents;
pub use error::StoreError;
use jobs::{count_by_state, find_job, list_jobs, needs_spool_file};
use read_pool::ReadPool;
pub use reserve::{DiskReserve, free_bytes};
use schema::JOB_COLUMNS;
pub use spool::{Spool, SpoolRecovery, SpoolWriter, SpooledDocument};
use sync_protocol::message::{PolicyChanges, PolicyUser};
use writer::{WriteOp, Writer};

/// Write operations that may wait for the writer; senders wait beyond this.
const WRITE_QUEUE: usize = 4096;

/// What start-up found and cleaned after an unclean stop.
#[derive(Debug, Default, Clone, Copy)]
pub struct Recovery {
    /// Spool leftovers removed.
    pub spool: SpoolRecovery,
    /// Jobs that were being sent to a printer when the appliance stopped.
    pub interrupted_outputs: usize,
}

/// Which jobs a listing returns.
#[derive(Debug, Clone)]
pub struct JobQuery {
    /// Only this queue, or every queue.
    pub queue: Option<String>,
    /// Only jobs in these states.
    pub states: Vec<JobState>,
    /// Only this owner's jobs.
    pub owner: Option<String>,
    /// At most this many (the oldest first for active jobs, newest first for finished ones).
    pub limit: u32,
}

/// The jobs one printer takes: those of the direct queues that feed it,
/// and those released to it from pull queues; while it may take its
/// pool's work, those of the pool as well.
#[derive(Debug, Clone)]
pub struct Feed {
    /// Direct queues forwarding to the printer.
    pub queues: Vec<String>,
    /// The printer's id.
    pub printer: String,
    /// Its pool's jobs, when it takes them now.
    pub pool: Option<PoolFeed>,
}

/// The jobs of a pool: its direct queues', and those released to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolFeed {
    /// The pool's id.
    pub id: String,
    /// Direct queues forwarding to the pool.
    pub queues: Vec<String>,
}

impl PoolFeed {
    /// Whether `job` is the pool's (rather than its member's own).
    pub fn holds(&self, job: &JobRecord) -> bool {
        self.queues.contains(&job.queue) || job.printer.as_deref() == Some(self.id.as_str())
    }
}

impl Feed {
    /// SQL condition selecting the feed's jobs, and its parameters.
    fn condition(&self) -> (String, Vec<String>) {
        let mut queues = self.queues.clone();
        let mut params = vec![self.printer.clone()];
        if let Some(pool) = &self.pool {
            queues.extend(pool.queues.iter().cloned());
            params.push(pool.id.clone());
        }
        let queue_marks = vec!["?"; queues.len()].join(",");
        let printer_marks = vec!["?"; params.len()].join(",");
        queues.extend(params);
        (
            format!("(queue IN ({queue_marks}) OR printer IN ({printer_marks}))"),
            queues,
        )
    }
}

/// How a store is opened.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// zstd level of documents that compress.
    pub compression_level: i32,
    /// Documents up to this many bytes are kept in the database.
    pub inline_max: u64,
    /// This site's name, for journal records.
    pub site: String,
    /// How long a printed job's document is kept for reprint (0: deleted
    /// when the job completes), in ms.
    pub keep_printed_ms: i64,
    /// Room on the data disk kept for state changes ([`DiskReserve`]).
    pub reserve_bytes: u64,
    /// The fleet key, which replaces the installation key for PINs and
    /// cards once the site is enrolled with central.
    pub fleet_key: Option<crate::credentials::LookupKey>,
}

/// Where the logs central must learn stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncMarks {
    /// The journal epoch (made with the database).
    pub epoch: String,
    /// Highest journal sequence (0: none).
    pub journal_latest: u64,
    /// Highest outbox sequence (0: none).
    pub outbox_latest: u64,
    /// Highest journal sequence central acknowledged.
    pub journal_acked: u64,
    /// Job announcements not yet acknowledged.
    pub outbox_pending: u64,
}

fn sync_marks(conn: &Connection) -> rusqlite::Result<SyncMarks> {
    Ok(SyncMarks {
        epoch: outbox::journal_epoch(conn)?,
        journal_latest: outbox::journal_latest(conn)?,
        outbox_latest: outbox::latest(conn)?,
        journal_acked: policy::meta_number(conn, "journal_acked")?,
        outbox_pending: outbox::pending(conn)?,
    })
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct JobStore {
    inner: Arc<Inner>,
}

// Field order matters: the sender drops first, which ends the writer
// thread, which `WriterThread` then joins, so every queued write is
// committed before the last handle is gone.
struct Inner {
    writer: mpsc::Sender<WriteOp>,
    readers: Arc<ReadPool>,
    spool: Spool,
    reserve: DiskReserve,
    key: crate::credentials::LookupKey,
    commits: tokio::sync::watch::Receiver<u64>,
    _thread: WriterThread,
    /// The data directory's lock, held while this store is open (a restore
    /// refuses a directory whose lock is held).
    _lock: std::fs::File,
}

struct WriterThread(Option<JoinHandle<()>>);

impl Drop for WriterThread {
    fn drop(&mut self) {
        if let Some(thread) = self.0.take() {
            let _ = thread.join();
        }
    }
}

impl JobStore {
    /// Opens (creating and migrating if needed) the store under `data_dir`,
    /// cleans crash leftovers and starts the writer thread.
    pub fn open(
        data_dir: &Path,
        options: StoreOptions,
        metrics: Arc<Metrics>,
    ) -> Result<(JobStore, Recovery), StoreError> {
        let lock = backup::lock(data_dir)
            .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?
            .ok_or_else(|| {
                StoreError::Conflict(format!(
                    "another appliance is running on {}; stop it first",
                    data_dir.display()
                ))
            })?;
        let (conn, db_path) = open_writer(data_dir)?;
        // Created at first start, so it exists before anyone registers a card.
        let installation_key = secret::load_or_create(data_dir)?;
        let key = options.fleet_key.unwrap_or(installation_key);

        let spool = Spool::open(
            &data_dir.join("spool"),
            options.compression_level,
            options.inline_max,
        )?;
        let reserve = DiskReserve::open(data_dir, options.reserve_bytes)?;
        let recovery = Recovery {
            spool: spool.recover(|uuid, encoding| {
                needs_spool_file(&conn, uuid, encoding).map_err(std::io::Error::other)
            })?,
            interrupted_outputs: conn.query_row(
                "SELECT count(*) FROM jobs WHERE state = ?1",
                params![JobState::Processing as i64],
                |row| row.get::<_, i64>(0),
            )? as usize,
        };

        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let (commits, commits_rx) = tokio::sync::watch::channel(0);
        let writer = Writer {
            conn,
            spool: spool.clone(),
            site: options.site,
            keep_printed_ms: options.keep_printed_ms,
            reserve: reserve.clone(),
            metrics,
            commits,
        };
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run(rx))?;
        let store = JobStore {
            inner: Arc::new(Inner {
                writer: tx,
                readers: Arc::new(ReadPool::new(db_path)),
                spool,
                reserve,
                key,
                commits: commits_rx,
                _thread: WriterThread(Some(thread)),
                _lock: lock,
            }),
        };
        Ok((store, recovery))
    }

    /// The spool: where new documents are taken.
    pub fn spool(&self) -> &Spool {
        &self.inner.spool
    }

    /// Opens stored documents, wherever each is kept.
    pub fn documents(&self) -> Documents {
        Documents::new(self.inner.spool.clone(), self.inner.readers.clone())
    }

    /// The room kept on the data disk for state changes.
    pub fn reserve(&self) -> &DiskReserve {
        &self.inner.reserve
    }

    /// Commits a new job (with its document, if it has one already) and
    /// returns it with its IPP job-id assigned.
    pub async fn insert(
        &self,
        job: JobRecord,
        document: Option<SpooledDocument>,
    ) -> Result<JobRecord, StoreError> {
        self.insert_op(job, document, None).await
    }

    /// Commits a new job (with its document, if it has one already) and
    /// its audit record.
    pub async fn insert_audited(
        &self,
        job: JobRecord,
        document: Option<SpooledDocument>,
        audit: AuditEvent,
    ) -> Result<JobRecord, StoreError> {
        self.insert_op(job, document, Some(audit)).await
    }

    async fn insert_op(
        &self,
        job: JobRecord,
        document: Option<SpooledDocument>,
        audit: Option<AuditEvent>,
    ) -> Result<JobRecord, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(WriteOp::Insert {
            job: Box::new(job),
            document,
            audit,
            reply,
        })
        .await?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Applies `transition` to a job atomically, against the row as it is
    /// at commit time, keeping `document` (a document the transition
    /// attaches) only if it commits.
    pub async fn modify(
        &self,
        uuid: JobUuid,
        document: Option<SpooledDocument>,
        transition: Transition,
    ) -> Result<JobRecord, StoreError> {
        self.modify_op(uuid, document, transition, None).await
    }

    /// Applies `transition` like [`JobStore::modify`] and, if it succeeds,
    /// writes `audit` in the same transaction.
    pub async fn modify_audited(
        &self,
        uuid: JobUuid,
        transition: Transition,
        audit: AuditEvent,
    ) -> Result<JobRecord, StoreError> {
        self.modify_op(uuid, None, transition, Some(audit)).await
    }

    async fn modify_op(
        &self,
        uuid: JobUuid,
        document: Option<SpooledDocument>,
        transition: Transition,
        audit: Option<AuditEvent>,
    ) -> Result<JobRecord, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(WriteOp::Modify {
            uuid,
            document,
            transition,
            audit,
            reply,
        })
        .await?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Appends an event to the audit log, durably.
    pub async fn audit(&self, event: AuditEvent) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(WriteOp::Audit { event, reply }).await?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Audit events from `since_ms` on, in order.
    pub async fn audit_since(&self, since_ms: i64) -> Result<Vec<AuditEvent>, StoreError> {
        self.read(move |conn| audit::since(conn, since_ms)).await
    }

    /// Where the logs central must learn stand: the journal epoch and the
    /// highest journal and outbox sequences.
    pub async fn sync_marks(&self) -> Result<SyncMarks, StoreError> {
        self.read(sync_marks).await
    }

    /// Up to `limit` journal records with a sequence above `after`.
    pub async fn journal_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<JournalEntry>, StoreError> {
        self.read(move |conn| outbox::journal_after(conn, after, limit))
            .await
    }

    /// Up to `limit` outbox announcements with a sequence above `after`:
    /// the sequence, the job's UUID and the job as it is now (`None` once
    /// it is gone).
    pub async fn outbox_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String, Option<JobRecord>)>, StoreError> {
        self.read(move |conn| outbox::after(conn, after, limit))
            .await
    }

    /// Central holds the outbox through `through`: those rows go, durably.
    pub async fn outbox_acknowledged(&self, through: u64) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(WriteOp::TrimOutbox { through, reply }).await?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Moves after every committed write batch.
    pub fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.commits.clone()
    }

    /// Central holds the journal through `through` (kept for status).
    pub async fn journal_acknowledged(&self, through: u64) -> Result<(), StoreError> {
        self.exec(move |c| Ok(policy::set_meta(c, "journal_acked", &through.to_string())?))
            .await
    }

    /// The fleet policy version in force and its rules (`None` before
    /// central sent any).
    pub async fn policy(&self) -> Result<(u64, Option<Rules>), StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.readers.with(policy::current))
            .await
            .map_err(|_| StoreError::Closed)?
    }

    /// A policy snapshot begins: nothing staged.
    pub async fn policy_stage_begin(&self) -> Result<(), StoreError> {
        self.exec(policy::stage_begin).await
    }

    /// Stages a chunk of a snapshot's users.
    pub async fn policy_stage(&self, users: Vec<PolicyUser>) -> Result<(), StoreError> {
        self.exec(move |c| policy::stage(c, &users)).await
    }

    /// Replaces every user with the staged ones and puts `version` and
    /// `rules` in force, in one transaction.
    pub async fn policy_commit_snapshot(
        &self,
        version: u64,
        rules: Rules,
    ) -> Result<(), StoreError> {
        self.exec(move |c| policy::commit_snapshot(c, version, &rules).map(drop))
            .await
    }

    /// Applies central's changes in one transaction.
    pub async fn policy_apply_changes(&self, changes: PolicyChanges) -> Result<(), StoreError> {
        self.exec(move |c| policy::apply_changes(c, &changes)).await
    }

    /// Claim ends other sites must still learn, oldest first.
    pub async fn claim_reports(&self) -> Result<Vec<ClaimEnd>, StoreError> {
        self.read(roaming::reports).await
    }

    /// Keeps the end of a claim that no job of this site carries (given
    /// back before a job was made for it) until its origin has it.
    pub async fn add_claim_report(&self, end: ClaimEnd) -> Result<(), StoreError> {
        self.exec(move |c| Ok(roaming::add_report(c, &end)?)).await
    }

    /// The origin applied the end of `claim`: forget it.
    pub async fn claim_report_done(&self, claim: String) -> Result<(), StoreError> {
        self.exec(move |c| Ok(roaming::report_done(c, &claim)?))
            .await
    }

    /// Jobs whose document is still on its way from another site.
    pub async fn fetching(&self) -> Result<Vec<JobRecord>, StoreError> {
        self.read(roaming::fetching).await
    }

    async fn exec(
        &self,
        f: impl FnOnce(&Connection) -> Result<(), StoreError> + Send + 'static,
    ) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(WriteOp::Exec {
            f: Box::new(f),
            reply,
        })
        .await?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn submit(&self, op: WriteOp) -> Result<(), StoreError> {
        self.inner
            .writer
            .send(op)
            .await
            .map_err(|_| StoreError::Closed)
    }

    /// Looks a job up by queue and IPP job-id.
    pub async fn job_by_ipp_id(
        &self,
        queue: &str,
        ipp_job_id: i32,
    ) -> Result<Option<JobRecord>, StoreError> {
        let queue = queue.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE queue = ?1 AND ipp_job_id = ?2"
            ))?
            .query_row(params![queue, ipp_job_id], schema::job_from_row)
            .optional()
        })
        .await
    }

    /// Looks a job up by its global identity.
    pub async fn job(&self, uuid: JobUuid) -> Result<Option<JobRecord>, StoreError> {
        self.read(move |conn| find_job(conn, uuid)).await
    }

    /// Lists jobs.
    pub async fn list(&self, query: JobQuery) -> Result<Vec<JobRecord>, StoreError> {
        self.read(move |conn| list_jobs(conn, &query)).await
    }

    /// The next job due at a printer (oldest first), if any. A user's job
    /// released here waits while one of theirs submitted earlier is still
    /// on its way from another site, so "print all" comes out in
    /// submission order.
    pub async fn next_due(&self, feed: Feed, now_ms: i64) -> Result<Option<JobRecord>, StoreError> {
        self.read(move |conn| {
            let (fed, params) = feed.condition();
            let sql = format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE state = {pending} AND documents_complete = 1 \
                 AND (next_attempt_ms IS NULL OR next_attempt_ms <= {now_ms}) \
                 AND {fed} AND NOT EXISTS (SELECT 1 FROM jobs f WHERE \
                   f.origin_fetch IS NOT NULL AND f.state = {pending} \
                   AND f.printer = jobs.printer AND f.owner = jobs.owner \
                   AND f.created_ms < jobs.created_ms) \
                 ORDER BY created_ms, uuid LIMIT 1",
                pending = JobState::Pending as i64
            );
            conn.query_row(
                &sql,
                rusqlite::params_from_iter(params),
                schema::job_from_row,
            )
            .optional()
        })
        .await
    }

    /// The earliest pending retry time at a printer, to know how long to sleep.
    pub async fn next_retry_ms(&self, feed: Feed) -> Result<Option<i64>, StoreError> {
        self.read(move |conn| {
            let (fed, params) = feed.condition();
            conn.query_row(
                &format!(
                    "SELECT min(next_attempt_ms) FROM jobs WHERE state = {} \
                     AND documents_complete = 1 AND {fed}",
                    JobState::Pending as i64
                ),
                rusqlite::params_from_iter(params),
                |row| row.get(0),
            )
        })
        .await
    }

    /// Jobs at a printer in `state`, oldest first.
    pub async fn jobs_at(&self, feed: Feed, state: JobState) -> Result<Vec<JobRecord>, StoreError> {
        let (fed, params) = feed.condition();
        self.select_jobs(
            format!(
                "state = {} AND {fed} ORDER BY created_ms, uuid",
                state as i64
            ),
            params.into_iter().map(Value::Text).collect(),
        )
        .await
    }

    /// Up to `limit` unfinished jobs created before `cutoff_ms` that still
    /// wait for their last document, oldest first.
    pub async fn stale_incoming(
        &self,
        cutoff_ms: i64,
        limit: u32,
    ) -> Result<Vec<JobRecord>, StoreError> {
        self.created_before(jobs::AWAITING_DOCUMENT, cutoff_ms, limit)
            .await
    }

    /// Up to `limit` held jobs, complete with their document, submitted
    /// before `cutoff_ms`, oldest first.
    pub async fn held_since(
        &self,
        cutoff_ms: i64,
        limit: u32,
    ) -> Result<Vec<JobRecord>, StoreError> {
        self.created_before(jobs::HELD_COMPLETE, cutoff_ms, limit)
            .await
    }

    async fn created_before(
        &self,
        condition: &'static str,
        cutoff_ms: i64,
        limit: u32,
    ) -> Result<Vec<JobRecord>, StoreError> {
        self.select_jobs(
            jobs::created_before(condition),
            vec![Value::Integer(cutoff_ms), Value::Integer(i64::from(limit))],
        )
        .await
    }

    /// Jobs matching `condition` (the SQL after `WHERE`, with `?N`
    /// placeholders for `params`).
    async fn select_jobs(
        &self,
        condition: String,
        params: Vec<Value>,
    ) -> Result<Vec<JobRecord>, StoreError> {
        self.read(move |conn| {
            let mut stmt =
                conn.prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE {condition}"))?;
            let rows = stmt.query_map(rusqlite::params_from_iter(params), schema::job_from_row)?;
            rows.collect()
        })
        .await
    }

    /// The installation key that card and PIN-only lookups are hashed with.
    pub fn lookup_key(&self) -> &crate::credentials::LookupKey {
        &self.inner.key
    }

    /// How many users may log in (not disabled).
    pub async fn enabled_users(&self) -> Result<u64, StoreError> {
        self.read(users::enabled_count).await
    }

    /// A user by id, as a login sees them (no secret).
    pub async fn user(&self, id: String) -> Result<Option<LoginUser>, StoreError> {
        self.read(move |conn| users::login_user(conn, &id)).await
    }

    /// A user by id, with the PHC string of their `pin` or `password`.
    pub async fn login_by_id(
        &self,
        id: String,
        kind: &'static str,
    ) -> Result<Option<(LoginUser, Option<String>)>, StoreError> {
        self.read(move |conn| users::login_by_id(conn, &id, kind))
            .await
    }

    /// The user a card or PIN-only lookup hash belongs to.
    pub async fn login_by_lookup(
        &self,
        kind: LookupKind,
        lookup: [u8; 32],
    ) -> Result<Option<LoginUser>, StoreError> {
        self.read(move |conn| users::login_by_lookup(conn, kind, &lookup))
            .await
    }

    /// Impressions `user` printed (completed) since `since_ms`, from the journal.
    pub async fn pages_printed_since(
        &self,
        user: String,
        since_ms: i64,
    ) -> Result<u64, StoreError> {
        self.read(move |conn| journal::pages_since(conn, &user, since_ms))
            .await
    }

    /// Journal records from `since_ms` on, in sequence order.
    pub async fn journal_since(&self, since_ms: i64) -> Result<Vec<JournalEntry>, StoreError> {
        self.read(move |conn| journal::since(conn, since_ms)).await
    }

    /// Printed jobs of `owner` whose document is kept for reprint, newest first.
    pub async fn reprintable(
        &self,
        owner: String,
        now_ms: i64,
    ) -> Result<Vec<JobRecord>, StoreError> {
        self.select_jobs(
            jobs::REPRINTABLE.into(),
            vec![Value::Text(owner), Value::Integer(now_ms)],
        )
        .await
    }

    /// Up to `limit` printed jobs whose time for reprint ended before `now_ms`.
    pub async fn reprint_expired(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<JobRecord>, StoreError> {
        self.select_jobs(
            jobs::REPRINT_EXPIRED.into(),
            vec![Value::Integer(now_ms), Value::Integer(i64::from(limit))],
        )
        .await
    }

    /// Commits `job`, a new job printing the document of `original` again
    /// (a spool file is linked, a document in the database copied in the
    /// same transaction), with its audit record.
    pub async fn insert_reprint(
        &self,
        original: &JobRecord,
        job: JobRecord,
        audit: AuditEvent,
    ) -> Result<JobRecord, StoreError> {
        let record = original.document.as_ref().ok_or(StoreError::NotFound)?;
        let spool = self.spool().clone();
        let (from, to, record) = (original.uuid, job.uuid, record.clone());
        let linked = tokio::task::spawn_blocking(move || spool.link(from, to, &record))
            .await
            .map_err(|_| StoreError::Closed)??;
        self.insert_op(job, Some(linked), Some(audit)).await
    }

    /// Number of jobs per state, over every queue or one.
    pub async fn count_by_state(
        &self,
        queue: Option<String>,
    ) -> Result<Vec<(JobState, u64)>, StoreError> {
        self.read(move |conn| count_by_state(conn, queue.as_deref()))
            .await
    }

    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.readers.with(f))
            .await
            .map_err(|_| StoreError::Closed)?
    }
}

/// Options for tests: level 1, site `test-site`, keeping printed documents
/// for `keep_printed_ms`.
#[cfg(test)]
pub(crate) fn test_options(keep_printed_ms: i64) -> StoreOptions {
    StoreOptions {
        compression_level: 1,
        inline_max: spool::DEFAULT_INLINE_MAX,
        site: "test-site".into(),
        keep_printed_ms,
        reserve_bytes: 0,
        fleet_key: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Commits a held sample job without a document.
    async fn insert_sample(store: &JobStore) -> JobRecord {
        let job = JobRecord {
            document: None,
            ..JobRecord::sample()
        };
        store.insert(job, None).await.unwrap()
    }

    fn release_to_lobby(job: &JobRecord) -> Transition {
        Transition::ReleaseAtPrinter {
            user: job.owner.clone(),
            device: "lobby".into(),
            device_label: "Lobby".into(),
            copies: 1,
            mono: false,
            sides: None,
        }
    }

    fn sending() -> Transition {
        Transition::Sending {
            printer: "lobby".into(),
            label: "Lobby".into(),
        }
    }

    fn printed() -> Transition {
        Transition::Printed {
            label: "Lobby".into(),
        }
    }

    #[tokio::test]
    async fn every_column_a_transition_changes_is_saved() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) =
            JobStore::open(dir.path(), test_options(0), Arc::new(Metrics::new())).unwrap();
        let job = insert_sample(&store).await;
        assert_eq!(job.ipp_job_id, 1);
        let release = Transition::ReleaseAtPrinter {
            user: job.owner.clone(),
            device: "lobby".into(),
            device_label: "Lobby".into(),
            copies: 3,
            mono: true,
            sides: None,
        };
        store.modify(job.uuid, None, release).await.unwrap();
        let changed = store.modify(job.uuid, None, sending()).await.unwrap();
        let stored = store.job(job.uuid).await.unwrap().unwrap();
        assert_eq!(stored, changed, "what the writer answered is what it saved");
        assert_eq!(
            (
                stored.state,
                stored.hold_until.as_deref(),
                stored.attempts,
                stored.printer.as_deref()
            ),
            (JobState::Processing, None, 1, Some("lobby"))
        );
        assert!(stored.processing_ms.is_some());
        let settings = crate::ipp_wire::stored_template::settings(&stored.template);
        assert_eq!(
            (settings.copies, settings.color_mode.as_deref()),
            (3, Some("monochrome"))
        );
        assert_eq!(stored.owner, job.owner);
    }

    #[tokio::test]
    async fn finishing_a_print_appends_one_journal_record() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            site: "branch-7".into(),
            ..test_options(0)
        };
        let (store, _) = JobStore::open(dir.path(), options, Arc::new(Metrics::new())).unwrap();
        let mut seqs = Vec::new();
        for _ in 0..2 {
            let job = insert_sample(&store).await;
            store
                .modify(job.uuid, None, release_to_lobby(&job))
                .await
                .unwrap();
            store.modify(job.uuid, None, sending()).await.unwrap();
            assert!(store.journal_since(0).await.unwrap().len() == seqs.len());
            store.modify(job.uuid, None, printed()).await.unwrap();
            // A later change to the finished job adds nothing.
            let touch = Transition::PrinterSays {
                message: "noted".into(),
            };
            store.modify(job.uuid, None, touch).await.unwrap();
            let journal = store.journal_since(0).await.unwrap();
            let last = journal.last().unwrap();
            assert_eq!(
                (last.job.as_str(), last.site.as_str()),
                (job.uuid.to_string().as_str(), "branch-7")
            );
            seqs.push(last.seq);
        }
        assert_eq!(store.journal_since(0).await.unwrap().len(), 2);
        assert!(seqs[0] < seqs[1]);
    }

    /// Whether `job`'s document can be read back, wherever it is kept.
    fn document_readable(store: &JobStore, job: &JobRecord) -> bool {
        let record = job.document.as_ref().unwrap();
        store
            .documents()
            .open(job.uuid, record)
            .and_then(spool::hash_document)
            .is_ok_and(|(_, sha)| sha == record.sha256)
    }

    #[tokio::test]
    async fn printed_documents_are_kept_for_reprint_until_released() {
        // A small document lives in the database, a large one in a file.
        let large: Vec<u8> = (0..400_000u32).map(|i| (i * 7919 % 256) as u8).collect();
        for (content, place) in [
            (b"%PDF-1.4 kept".to_vec(), crate::job::StoredIn::Database),
            (large, crate::job::StoredIn::SpoolFile),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let open =
                || JobStore::open(dir.path(), test_options(60_000), Arc::new(Metrics::new()));
            let (store, _) = open().unwrap();
            let uuid = JobUuid::new();
            let mut writer = store.spool().create(uuid).unwrap();
            std::io::Write::write_all(&mut writer, &content).unwrap();
            let document = writer.finish().unwrap();
            let mut job = JobRecord {
                uuid,
                ..JobRecord::sample()
            };
            job.document.as_mut().unwrap().sha256 = document.sha256.clone();
            let job = store.insert(job, Some(document)).await.unwrap();
            assert_eq!(job.document.as_ref().unwrap().storage.place, place);
            assert!(document_readable(&store, &job));
            store
                .modify(uuid, None, release_to_lobby(&job))
                .await
                .unwrap();
            store.modify(uuid, None, sending()).await.unwrap();
            let done = store.modify(uuid, None, printed()).await.unwrap();
            let kept_until = done.completed_ms.unwrap() + 60_000;
            assert_eq!(done.kept_until_ms, Some(kept_until));
            assert!(document_readable(&store, &done), "kept for reprint");

            // A reprint shares the document; it outlives the original's.
            let reprint = JobRecord {
                uuid: JobUuid::new(),
                ..job.clone()
            };
            let audit = AuditEvent::now("reprint", None, None, String::new());
            let reprint = store.insert_reprint(&done, reprint, audit).await.unwrap();
            drop(store);

            // A restart keeps it too; expiry then removes it.
            let (store, recovery) = open().unwrap();
            assert_eq!(recovery.spool.orphans, 0);
            assert!(document_readable(&store, &done));
            assert_eq!(
                store.reprint_expired(kept_until, 10).await.unwrap().len(),
                1
            );
            store
                .modify(uuid, None, Transition::EndReprint)
                .await
                .unwrap();
            assert!(
                !document_readable(&store, &done),
                "deleted once its time is over"
            );
            assert!(document_readable(&store, &reprint), "{place:?}");
        }
    }

    #[tokio::test]
    async fn the_outbox_announces_each_job_once_in_its_latest_state_until_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) =
            JobStore::open(dir.path(), test_options(0), Arc::new(Metrics::new())).unwrap();
        let first = insert_sample(&store).await;
        let second = insert_sample(&store).await;
        store
            .modify(first.uuid, None, release_to_lobby(&first))
            .await
            .unwrap();
        store.modify(first.uuid, None, sending()).await.unwrap();

        let all = store.outbox_after(0, 100).await.unwrap();
        let order: Vec<_> = all.iter().map(|(_, uuid, _)| uuid.clone()).collect();
        // One row per job; the job changed last comes last.
        assert_eq!(order, [second.uuid.to_string(), first.uuid.to_string()]);
        let (seq, _, job) = &all[1];
        assert_eq!(job.as_ref().unwrap().state, JobState::Processing);
        let marks = store.sync_marks().await.unwrap();
        assert_eq!(marks.outbox_latest, *seq);
        assert_eq!(marks.epoch.len(), 32);

        // Reading in batches continues where the last one ended.
        let page = store.outbox_after(all[0].0, 1).await.unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].0, *seq);

        // Acknowledged rows go; a later change is announced again, after them.
        store.outbox_acknowledged(*seq).await.unwrap();
        assert!(store.outbox_after(0, 100).await.unwrap().is_empty());
        store.modify(first.uuid, None, printed()).await.unwrap();
        let again = store.outbox_after(0, 100).await.unwrap();
        assert_eq!(again.len(), 1);
        assert!(again[0].0 > *seq);
        assert_eq!(again[0].2.as_ref().unwrap().state, JobState::Completed);
    }

    #[tokio::test]
    async fn the_journal_reads_in_sequence_batches_within_an_epoch_born_with_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let open = |path: &Path| JobStore::open(path, test_options(0), Arc::new(Metrics::new()));
        let (store, _) = open(dir.path()).unwrap();
        for _ in 0..3 {
            let job = insert_sample(&store).await;
            store
                .modify(job.uuid, None, release_to_lobby(&job))
                .await
                .unwrap();
            store.modify(job.uuid, None, sending()).await.unwrap();
            store.modify(job.uuid, None, printed()).await.unwrap();
        }
        let marks = store.sync_marks().await.unwrap();
        assert_eq!(marks.journal_latest, 3);
        let first = store.journal_after(0, 2).await.unwrap();
        assert_eq!(first.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
        let rest = store.journal_after(2, 2).await.unwrap();
        assert_eq!(rest.iter().map(|e| e.seq).collect::<Vec<_>>(), [3]);
        assert!(store.journal_after(3, 2).await.unwrap().is_empty());
        drop(store);

        // The epoch survives a restart; a database created anew has another.
        let (store, _) = open(dir.path()).unwrap();
        assert_eq!(store.sync_marks().await.unwrap().epoch, marks.epoch);
        let other = tempfile::tempdir().unwrap();
        let (fresh, _) = open(other.path()).unwrap();
        let fresh_marks = fresh.sync_marks().await.unwrap();
        assert_ne!(fresh_marks.epoch, marks.epoch);
        assert_eq!(
            (fresh_marks.journal_latest, fresh_marks.outbox_latest),
            (0, 0)
        );
    }

    #[tokio::test]
    async fn a_claim_is_kept_with_its_job_and_lapses_by_time() {
        let dir = tempfile::tempdir().unwrap();
        let open = || JobStore::open(dir.path(), test_options(0), Arc::new(Metrics::new()));
        let (store, _) = open().unwrap();
        let job = insert_sample(&store).await;
        let until_ms = crate::job::now_ms() + 60_000;
        let claim = Transition::Claim {
            site: "branch-2".into(),
            claim: "c1".into(),
            until_ms,
        };
        store.modify(job.uuid, None, claim.clone()).await.unwrap();
        // Two sites at once: the store's compare-and-set lets one win.
        let second = Transition::Claim {
            site: "branch-3".into(),
            claim: "c2".into(),
            until_ms,
        };
        assert!(matches!(
            store.modify(job.uuid, None, second).await,
            Err(StoreError::NotPossible(_))
        ));
        drop(store);
        let (store, _) = open().unwrap();
        let kept = store.job(job.uuid).await.unwrap().unwrap();
        let held = kept.claim.as_ref().unwrap();
        assert_eq!(
            (held.site.as_str(), held.id.as_str(), held.until_ms),
            ("branch-2", "c1", until_ms)
        );
        assert_eq!(kept.live_claim(until_ms), None, "lapsed at its time");
    }

    /// A job of alice's fetched from branch-1, released to `lobby`,
    /// submitted at `created_ms`, its document still on its way.
    fn fetched(created_ms: i64) -> JobRecord {
        let manifest =
            sync_protocol::transfer::ManifestBuilder::of_reader(1024, &b"doc"[..]).unwrap();
        let mut job = JobRecord {
            state: JobState::Pending,
            printer: Some("lobby".into()),
            documents_complete: false,
            created_ms,
            ..JobRecord::sample()
        };
        job.origin = Some(crate::job::Origin {
            site: "branch-1".into(),
            uuid: "origin-uuid".into(),
            claim: "c1".into(),
            fetching: Some(crate::job::Fetching {
                manifest,
                until_ms: i64::MAX,
            }),
        });
        job
    }

    #[tokio::test]
    async fn a_later_job_waits_for_one_of_its_owner_still_on_its_way_and_a_fetched_one_reports() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) =
            JobStore::open(dir.path(), test_options(0), Arc::new(Metrics::new())).unwrap();
        let feed = Feed {
            queues: vec![],
            printer: "lobby".into(),
            pool: None,
        };
        let away = store.insert(fetched(1_000), None).await.unwrap();
        let here = store
            .insert(
                JobRecord {
                    state: JobState::Pending,
                    printer: Some("lobby".into()),
                    created_ms: 2_000,
                    ..JobRecord::sample()
                },
                None,
            )
            .await
            .unwrap();
        let bob = store
            .insert(
                JobRecord {
                    state: JobState::Pending,
                    printer: Some("lobby".into()),
                    owner: "bob".into(),
                    created_ms: 3_000,
                    ..JobRecord::sample()
                },
                None,
            )
            .await
            .unwrap();
        let now = crate::job::now_ms();
        let next = store.next_due(feed.clone(), now).await.unwrap();
        assert_eq!(
            next.map(|j| j.uuid),
            Some(bob.uuid),
            "alice's later job waits for her earlier one; bob's does not"
        );
        store
            .modify(away.uuid, None, Transition::Fetched { spool_size: 10 })
            .await
            .unwrap();
        let next = store.next_due(feed.clone(), now).await.unwrap();
        assert_eq!(next.map(|j| j.uuid), Some(away.uuid), "in submission order");
        assert!(here.origin.is_none());
        // Printed here: its origin is to learn it, until it acknowledges.
        store.modify(away.uuid, None, sending()).await.unwrap();
        store
            .modify(
                away.uuid,
                None,
                Transition::Printed {
                    label: "Lobby".into(),
                },
            )
            .await
            .unwrap();
        let reports = store.claim_reports().await.unwrap();
        assert_eq!(reports.len(), 1);
        assert!(reports[0].printed && reports[0].claim == "c1");
        let journal = store.journal_since(0).await.unwrap();
        assert_eq!(journal[0].origin_site.as_deref(), Some("branch-1"));
        store.claim_report_done("c1".into()).await.unwrap();
        assert!(store.claim_reports().await.unwrap().is_empty());
        // Its origin announces it, not this site.
        let announced = store.outbox_after(0, 100).await.unwrap();
        assert!(
            announced
                .iter()
                .all(|(_, uuid, _)| *uuid != away.uuid.to_string())
        );
    }
}
