//! The store without the daemon: opening the database for writing (and
//! migrating it), user management for the operator CLI, and read-only
//! access for tools while the daemon runs.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{Connection, params};

use super::jobs::{SPOOLED, list_jobs};
use super::read_pool::ReadPool;
use super::schema::{self, JOB_COLUMNS};
use super::{AuditEvent, Documents, JobQuery, Spool, StoreError, audit, journal, secret, users};
use crate::accounting::JournalEntry;
use crate::job::{JobRecord, JobUuid};

pub(super) const DB_FILE: &str = "appliance.db";

/// Largest savepoint journal SQLite keeps in memory before it moves it to
/// a temporary file.
const SAVEPOINT_JOURNAL_IN_MEMORY: i32 = 1 << 20;

/// Lets SQLite keep a savepoint's journal (the original pages one write
/// operation changed, kept to undo it) in memory up to 1 MiB instead of
/// its default 64 KiB. Each write the writer commits runs in its own
/// savepoint, and a job's insert touches more than 64 KiB of pages (its
/// row, its indexes, its document, the outbox), so at the default commits
/// kept creating and deleting temporary files in `/var/tmp` (`strace`: 27
/// in about 300 commits of one client; `perf` showed the inode
/// allocations). Larger operations (a fleet policy of many users) still
/// spill to a file. Process-wide: call it before any database is
/// opened; `false` if SQLite was already in use (its default stays).
pub fn keep_savepoint_journals_in_memory() -> bool {
    // SAFETY: sqlite3_config with SQLITE_CONFIG_STMTJRNL_SPILL takes one
    // int; before SQLite is initialised it only stores that value, after
    // it changes nothing and returns SQLITE_MISUSE.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_config(
            rusqlite::ffi::SQLITE_CONFIG_STMTJRNL_SPILL,
            SAVEPOINT_JOURNAL_IN_MEMORY,
        )
    };
    rc == rusqlite::ffi::SQLITE_OK
}

/// Opens (creating and migrating if needed) the database for writing.
pub(super) fn open_writer(data_dir: &Path) -> Result<(Connection, PathBuf), StoreError> {
    // Private from the start: it holds documents and credential hashes.
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(data_dir)?;
    let db_path = data_dir.join(DB_FILE);
    let mut conn = Connection::open(&db_path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: every commit fsyncs the WAL, so an acknowledged write survives power loss.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // 16 MiB of page cache for the one writer (SQLite's default is 2 MB):
    // every insert touches a leaf of each index, and with a million stored
    // jobs the owners' leaves alone are more than 2 MB; measured by
    // `tests/bench store`.
    conn.pragma_update(None, "cache_size", -16 * 1024)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    schema::migrate(&mut conn)?;
    Ok((conn, db_path))
}

/// User management for the operator CLI (blocking; works beside a running
/// daemon, SQLite serialising the writers).
pub struct UserAdmin {
    conn: Connection,
    key: crate::credentials::LookupKey,
}

impl UserAdmin {
    /// Opens the store under `data_dir`, creating it and the installation
    /// key if this is the first use.
    pub fn open(data_dir: &Path) -> Result<UserAdmin, StoreError> {
        let (conn, _) = open_writer(data_dir)?;
        let key = secret::load_or_create(data_dir)?;
        Ok(UserAdmin { conn, key })
    }

    /// The installation key, for preparing lookup hashes.
    pub fn key(&self) -> &crate::credentials::LookupKey {
        &self.key
    }

    /// Adds users, all or none.
    pub fn add(&mut self, users: &[crate::users::PreparedUser]) -> Result<(), StoreError> {
        users::add(&mut self.conn, users)
    }

    /// Disables (or enables again) a user's logins.
    pub fn set_disabled(&self, id: &str, disabled: bool) -> Result<(), StoreError> {
        users::set_disabled(&self.conn, id, disabled)
    }

    /// Every user, without secrets.
    pub fn list(&self) -> Result<Vec<crate::users::UserSummary>, StoreError> {
        users::list(&self.conn)
    }
}

/// Read-only access for tools (`appliance jobs list`) while the daemon runs.
pub struct StoreReader {
    readers: Arc<ReadPool>,
    documents: Documents,
}

impl StoreReader {
    /// Opens the store under `data_dir` without writing to it.
    pub fn open(data_dir: &Path) -> Result<StoreReader, StoreError> {
        let db_path = data_dir.join(DB_FILE);
        if !db_path.exists() {
            return Err(StoreError::Io(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "no job store at {} (check data_dir, or start the appliance once)",
                    db_path.display()
                ),
            )));
        }
        let readers = Arc::new(ReadPool::new(db_path));
        // Level and size limit only matter to writing, which this never does.
        let spool = Spool::open(&data_dir.join("spool"), 1, 0)?;
        Ok(StoreReader {
            documents: Documents::new(spool, readers.clone()),
            readers,
        })
    }

    /// Lists jobs (see [`JobQuery`]).
    pub fn list(&self, query: &JobQuery) -> Result<Vec<JobRecord>, StoreError> {
        self.readers.with(|conn| list_jobs(conn, query))
    }

    /// Opens stored documents, to verify them.
    pub fn documents(&self) -> &Documents {
        &self.documents
    }

    /// Journal records from `since_ms` on, in sequence order.
    pub fn journal_since(&self, since_ms: i64) -> Result<Vec<JournalEntry>, StoreError> {
        self.readers.with(|conn| journal::since(conn, since_ms))
    }

    /// Where the logs central must learn stand.
    pub fn sync_marks(&self) -> Result<super::SyncMarks, StoreError> {
        self.readers.with(super::sync_marks)
    }

    /// The fleet policy version in force and its rules.
    pub fn policy(&self) -> Result<(u64, Option<crate::rules::Rules>), StoreError> {
        self.readers.with(super::policy::current)
    }

    /// Up to `limit` jobs whose document must be in the spool (unfinished,
    /// or kept for reprint), in identity order after `after`: page through
    /// them without holding them all.
    pub fn documents_after(
        &self,
        after: Option<JobUuid>,
        limit: u32,
    ) -> Result<Vec<JobRecord>, StoreError> {
        let after = after.map(|u| u.to_string()).unwrap_or_default();
        self.readers.with(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE uuid > ?1 AND {SPOOLED} \
                 ORDER BY uuid LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![after, limit], schema::job_from_row)?;
            rows.collect()
        })
    }

    /// Audit events from `since_ms` on, in order.
    pub fn audit_since(&self, since_ms: i64) -> Result<Vec<AuditEvent>, StoreError> {
        self.readers.with(|conn| audit::since(conn, since_ms))
    }
}
