//! The writer thread: the only write connection. It takes write operations
//! from a queue, applies everything queued in one transaction (group
//! commit: one WAL fsync for the batch), each in its own savepoint, and
//! answers each caller only after the commit.

use std::io;
use std::sync::Arc;

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::jobs::find_job;
use super::spool::DatabaseBody;
use super::{
    AuditEvent, DiskReserve, Spool, SpooledDocument, StoreError, audit, documents, journal, outbox,
    roaming, schema,
};
use crate::accounting;
use crate::job::{JobRecord, JobState, JobUuid, StoredIn, Transition};
use crate::metrics::Metrics;

/// Most write operations committed in one transaction.
const MAX_BATCH: usize = 512;

type Reply = oneshot::Sender<Result<JobRecord, StoreError>>;
/// A write that is neither a job nor an audit event.
pub(super) type ExecFn = Box<dyn FnOnce(&Connection) -> Result<(), StoreError> + Send>;

/// Where a write operation's outcome goes.
enum Answer {
    Job(Reply),
    Done(oneshot::Sender<Result<(), StoreError>>),
}

impl Answer {
    fn send(self, result: Result<Option<JobRecord>, StoreError>) {
        match self {
            Answer::Job(tx) => {
                let _ = tx.send(result.and_then(|job| job.ok_or(StoreError::NotFound)));
            }
            Answer::Done(tx) => {
                let _ = tx.send(result.map(|_| ()));
            }
        }
    }
}

pub(super) enum WriteOp {
    Insert {
        job: Box<JobRecord>,
        document: Option<SpooledDocument>,
        /// Logged in the same savepoint when the insert succeeds.
        audit: Option<AuditEvent>,
        reply: Reply,
    },
    Modify {
        uuid: JobUuid,
        document: Option<SpooledDocument>,
        transition: Transition,
        /// Logged in the same savepoint when the change succeeds.
        audit: Option<AuditEvent>,
        reply: Reply,
    },
    Audit {
        event: AuditEvent,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Central acknowledged the outbox through a sequence.
    TrimOutbox {
        through: u64,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Any other write (the fleet policy, sync marks): its own savepoint.
    Exec {
        f: ExecFn,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

/// The writer thread's state: the only write connection.
pub(super) struct Writer {
    pub(super) conn: Connection,
    pub(super) spool: Spool,
    /// This site's name, for journal records.
    pub(super) site: String,
    /// How long printed documents are kept for reprint, in ms.
    pub(super) keep_printed_ms: i64,
    pub(super) reserve: DiskReserve,
    pub(super) metrics: Arc<Metrics>,
    /// Moves after every committed batch (the sync reads new records then).
    pub(super) commits: tokio::sync::watch::Sender<u64>,
}

impl Writer {
    pub(super) fn run(mut self, mut rx: mpsc::Receiver<WriteOp>) {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            // A nearly full disk: free the reserve before writing, so this
            // batch of state changes has room.
            if self.reserve.is_short() {
                self.reserve.release();
            }
            self.metrics.store_commit_batch.observe(batch.len() as f64);
            let started = std::time::Instant::now();
            self.commit_batch(batch);
            self.metrics
                .store_commit_seconds
                .observe(started.elapsed().as_secs_f64());
        }
    }

    fn commit_batch(&mut self, batch: Vec<WriteOp>) {
        let metrics = self.metrics.clone();
        let site = self.site.clone();
        let keep_printed_ms = self.keep_printed_ms;
        let mut replies: Vec<(Answer, Result<Applied, StoreError>)> =
            Vec::with_capacity(batch.len());
        let mut tx = match self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
        {
            Ok(tx) => tx,
            Err(e) => {
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
                    self.reserve.release();
                }
                tracing::error!(error = %e, "store: cannot begin a transaction");
                for op in batch {
                    metrics.store_errors.inc();
                    let answer = match op {
                        WriteOp::Insert { reply, .. } | WriteOp::Modify { reply, .. } => {
                            Answer::Job(reply)
                        }
                        WriteOp::Audit { reply, .. }
                        | WriteOp::TrimOutbox { reply, .. }
                        | WriteOp::Exec { reply, .. } => Answer::Done(reply),
                    };
                    answer.send(Err(StoreError::from(clone_sqlite_error(&e))));
                }
                return;
            }
        };
        // A document kept in the database takes disk room like a spool file:
        // once the reserve is spent (the disk is full), new ones are refused
        // here as intake refuses files, so they never eat the room kept for
        // state changes.
        let takes_documents = self.reserve.accepts_documents();
        for op in batch {
            let (answer, result) = match op {
                WriteOp::Insert {
                    document: Some(document),
                    reply,
                    ..
                } if !takes_documents
                    && matches!(document.database_body(), DatabaseBody::Bytes(_)) =>
                {
                    (
                        Answer::Job(reply),
                        Err(StoreError::DiskFull(
                            "the data disk is full; documents are refused until space is freed"
                                .into(),
                        )),
                    )
                }
                WriteOp::Insert {
                    job,
                    document,
                    audit,
                    reply,
                } => (
                    Answer::Job(reply),
                    apply_in_savepoint(&mut tx, |sp| apply_insert(sp, *job, document, audit)),
                ),
                WriteOp::Modify {
                    uuid,
                    document,
                    transition,
                    audit,
                    reply,
                } => (
                    Answer::Job(reply),
                    apply_in_savepoint(&mut tx, |sp| {
                        apply_modify(
                            sp,
                            &site,
                            keep_printed_ms,
                            uuid,
                            document,
                            &transition,
                            audit,
                        )
                    }),
                ),
                WriteOp::Audit { event, reply } => (
                    Answer::Done(reply),
                    apply_in_savepoint(&mut tx, |sp| {
                        audit::append(sp, &event)?;
                        Ok(Applied::nothing())
                    }),
                ),
                WriteOp::TrimOutbox { through, reply } => (
                    Answer::Done(reply),
                    apply_in_savepoint(&mut tx, |sp| {
                        outbox::trim(sp, through)?;
                        Ok(Applied::nothing())
                    }),
                ),
                WriteOp::Exec { f, reply } => (
                    Answer::Done(reply),
                    apply_in_savepoint(&mut tx, |sp| {
                        f(sp)?;
                        Ok(Applied::nothing())
                    }),
                ),
            };
            replies.push((answer, result));
        }

        if let Err(e) = tx.commit().map_err(StoreError::from) {
            if matches!(e, StoreError::DiskFull(_)) {
                // The next batch (a retry of this one) gets the reserve.
                self.reserve.release();
            }
            tracing::error!(error = %e, "store: batch commit failed; nothing in it was acknowledged");
            // Dropping the results deletes the documents they carried.
            for (answer, _) in replies {
                metrics.store_errors.inc();
                answer.send(Err(match &e {
                    StoreError::DiskFull(m) => StoreError::DiskFull(m.clone()),
                    other => StoreError::Io(io::Error::other(other.to_string())),
                }));
            }
            return;
        }

        self.commits.send_modify(|n| *n = n.wrapping_add(1));
        for (answer, result) in replies {
            let result = result.map(|applied| {
                if let Some(document) = applied.document {
                    document.keep();
                }
                if let Some(job) = &applied.job
                    && applied.release_file
                    && let Some(document) = &job.document
                    && let Err(e) = self.spool.remove(job.uuid, document.storage.encoding)
                {
                    // The file is an orphan now; start-up recovery removes it.
                    tracing::warn!(job = %job.uuid, error = %e, "store: could not remove spool file");
                }
                applied.job
            });
            if let Err(e) = &result
                && !matches!(e, StoreError::NotFound | StoreError::NotPossible(_))
            {
                metrics.store_errors.inc();
            }
            answer.send(result);
        }
    }
}

/// The result of one operation inside a batch, before the batch commits.
pub(super) struct Applied {
    job: Option<JobRecord>,
    /// The document this operation attached: kept once the batch commits,
    /// deleted (by its drop) if it does not.
    document: Option<SpooledDocument>,
    /// The job just finished: its spool file can go once the batch
    /// commits (a document in the database went in the same savepoint).
    release_file: bool,
}

impl Applied {
    /// An operation that changed no job.
    fn nothing() -> Applied {
        Applied {
            job: None,
            document: None,
            release_file: false,
        }
    }
}

/// Runs one operation so that its failure undoes only its own writes.
pub(super) fn apply_in_savepoint(
    tx: &mut rusqlite::Transaction<'_>,
    f: impl FnOnce(&Connection) -> Result<Applied, StoreError>,
) -> Result<Applied, StoreError> {
    let sp = tx.savepoint()?;
    let result = f(&sp);
    if result.is_ok() {
        sp.commit()?;
    }
    // Dropping an uncommitted savepoint rolls it back.
    result
}

pub(super) fn apply_insert(
    conn: &Connection,
    mut job: JobRecord,
    document: Option<SpooledDocument>,
    audit: Option<AuditEvent>,
) -> Result<Applied, StoreError> {
    job.ipp_job_id = schema::next_ipp_job_id(conn, &job.queue)?;
    store_document(conn, &mut job, document.as_ref())?;
    schema::save_job(conn, &job)?;
    announce(conn, &job)?;
    if let Some(mut event) = audit {
        event.job = Some(job.uuid.to_string());
        audit::append(conn, &event)?;
    }
    Ok(Applied {
        job: Some(job),
        document,
        release_file: false,
    })
}

/// Applies a transition and, when it ends a print, appends the journal record
/// (and the audit event, if any) in the same savepoint: all or nothing.
pub(super) fn apply_modify(
    conn: &Connection,
    site: &str,
    keep_printed_ms: i64,
    uuid: JobUuid,
    document: Option<SpooledDocument>,
    transition: &Transition,
    audit: Option<AuditEvent>,
) -> Result<Applied, StoreError> {
    let mut job = find_job(conn, uuid)?.ok_or(StoreError::NotFound)?;
    let (before, was_kept) = (job.state, job.kept_until_ms.is_some());
    job.apply(transition, crate::job::now_ms())?;
    store_document(conn, &mut job, document.as_ref())?;
    if !before.is_terminal() && job.state == JobState::Completed && keep_printed_ms > 0 {
        let printed = job.completed_ms.unwrap_or_else(crate::job::now_ms);
        job.kept_until_ms = Some(printed.saturating_add(keep_printed_ms));
    }
    schema::save_job(conn, &job)?;
    announce(conn, &job)?;
    if let Some(entry) = accounting::entry_for(before, &job, site) {
        journal::append(conn, &entry)?;
    }
    if let Some(end) = crate::roaming::report::report_for(before, &job) {
        roaming::add_report(conn, &end)?;
    }
    if let Some(event) = audit {
        audit::append(conn, &event)?;
    }
    // A finished job's document goes when it finishes, or when its time
    // for reprint is over.
    let release_document = job.document.is_some()
        && job.state.is_terminal()
        && job.kept_until_ms.is_none()
        && (!before.is_terminal() || was_kept);
    let in_database = job
        .document
        .as_ref()
        .is_some_and(|d| d.storage.place == StoredIn::Database);
    if release_document && in_database {
        documents::detach(conn, uuid)?;
    }
    Ok(Applied {
        release_file: release_document && !in_database,
        job: Some(job),
        document,
    })
}

/// Writes what a document attached to `job` needs in the database, and
/// records on the job where and how it is kept: the store, not the
/// caller, says what it wrote.
fn store_document(
    conn: &Connection,
    job: &mut JobRecord,
    document: Option<&SpooledDocument>,
) -> Result<(), StoreError> {
    let Some(document) = document else {
        return Ok(());
    };
    documents::attach(conn, job.uuid, document)?;
    if let Some(record) = job.document.as_mut() {
        record.storage = document.storage;
        record.spool_size = document.spool_size;
    }
    Ok(())
}

/// Tells central of a change to a job of this site. A job fetched from
/// another site is that site's to announce: central's index keeps the
/// original, and its claim says where it prints.
fn announce(conn: &Connection, job: &JobRecord) -> rusqlite::Result<()> {
    if job.origin.is_some() {
        return Ok(());
    }
    outbox::touch(conn, job.uuid)
}

pub(super) fn clone_sqlite_error(e: &rusqlite::Error) -> rusqlite::Error {
    match e.sqlite_error() {
        Some(ffi) => rusqlite::Error::SqliteFailure(*ffi, Some(e.to_string())),
        None => rusqlite::Error::InvalidQuery,
    }
}
