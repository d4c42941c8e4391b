//! SQL for what central must learn: the job outbox and the journal read in
//! sequence order, and the site's journal epoch.
//!
//! The outbox keeps one row per job whose latest change central has not
//! acknowledged: a change deletes the job's row and appends a new one, so a
//! job that changed five times while the WAN was down is announced once, in
//! its latest state, and the outbox never holds more rows than there are
//! jobs. Rows are written in the savepoint of the change they announce and
//! deleted only when central acknowledges them.

use rusqlite::{Connection, OptionalExtension, params};

use super::schema::{self, JOB_COLUMNS};
use crate::accounting::JournalEntry;
use crate::job::{JobRecord, JobUuid};

/// Announces a change of `uuid`: its row moves to the end of the outbox.
pub(super) fn touch(conn: &Connection, uuid: JobUuid) -> rusqlite::Result<()> {
    let uuid = uuid.to_string();
    conn.prepare_cached("DELETE FROM outbox WHERE job_uuid = ?1")?
        .execute(params![uuid])?;
    conn.prepare_cached("INSERT INTO outbox (job_uuid) VALUES (?1)")?
        .execute(params![uuid])?;
    Ok(())
}

/// Up to `limit` announcements after sequence `after`, with the job as it
/// is now (`None`: the job is gone).
pub(super) fn after(
    conn: &Connection,
    after: u64,
    limit: usize,
) -> rusqlite::Result<Vec<(u64, String, Option<JobRecord>)>> {
    let columns = JOB_COLUMNS
        .split(", ")
        .map(|c| format!("j.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT o.seq, o.job_uuid, j.uuid IS NOT NULL, {columns} FROM outbox o \
         LEFT JOIN jobs j ON j.uuid = o.job_uuid WHERE o.seq > ?1 ORDER BY o.seq LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![seq_param(after), limit as i64], |row| {
        let seq: i64 = row.get(0)?;
        let uuid: String = row.get(1)?;
        let present: bool = row.get(2)?;
        let job = if present {
            Some(schema::job_from_row_at(row, 3)?)
        } else {
            None
        };
        Ok((seq.max(0) as u64, uuid, job))
    })?;
    rows.collect()
}

/// Central holds every announcement through `through`: they go.
pub(super) fn trim(conn: &Connection, through: u64) -> rusqlite::Result<usize> {
    conn.prepare_cached("DELETE FROM outbox WHERE seq <= ?1")?
        .execute(params![seq_param(through)])
}

/// The highest outbox sequence (0: none yet).
pub(super) fn latest(conn: &Connection) -> rusqlite::Result<u64> {
    let seq: Option<i64> = conn
        .prepare_cached("SELECT max(seq) FROM outbox")?
        .query_row([], |r| r.get(0))?;
    Ok(seq.unwrap_or(0).max(0) as u64)
}

/// Announcements not yet acknowledged.
pub(super) fn pending(conn: &Connection) -> rusqlite::Result<u64> {
    let n: i64 = conn
        .prepare_cached("SELECT count(*) FROM outbox")?
        .query_row([], |r| r.get(0))?;
    Ok(n.max(0) as u64)
}

/// The highest journal sequence (0: none yet).
pub(super) fn journal_latest(conn: &Connection) -> rusqlite::Result<u64> {
    let seq: Option<i64> = conn
        .prepare_cached("SELECT max(seq) FROM journal")?
        .query_row([], |r| r.get(0))?;
    Ok(seq.unwrap_or(0).max(0) as u64)
}

/// Up to `limit` journal records after sequence `after`, in order.
pub(super) fn journal_after(
    conn: &Connection,
    after: u64,
    limit: usize,
) -> rusqlite::Result<Vec<JournalEntry>> {
    super::journal::after(conn, seq_param(after), limit as i64)
}

/// The journal epoch: made with the database, so a database created anew
/// numbers its journal in a new epoch.
pub(super) fn journal_epoch(conn: &Connection) -> rusqlite::Result<String> {
    conn.prepare_cached("SELECT value FROM store_meta WHERE key = 'journal_epoch'")?
        .query_row([], |r| r.get(0))
        .optional()
        .map(|epoch| epoch.unwrap_or_default())
}

fn seq_param(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}
