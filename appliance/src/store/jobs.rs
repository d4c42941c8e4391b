//! SQL over the jobs table shared by the daemon's store and the offline
//! tools: find, list, count, and the documents the spool must hold.

use std::collections::HashSet;

use rusqlite::{Connection, OptionalExtension, params};

use super::JobQuery;
use super::schema::{self, JOB_COLUMNS};
use crate::job::{JobRecord, JobState, JobUuid};

/// The jobs whose document must be in the spool: unfinished, or printed
/// and kept for reprint.
pub(super) const SPOOLED: &str =
    "doc_sha256 IS NOT NULL AND (state IN (3, 4, 5, 6) OR kept_until_ms IS NOT NULL)";

pub(super) fn find_job(conn: &Connection, uuid: JobUuid) -> rusqlite::Result<Option<JobRecord>> {
    conn.prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE uuid = ?1"))?
        .query_row(params![uuid.to_string()], schema::job_from_row)
        .optional()
}

pub(super) fn list_jobs(conn: &Connection, query: &JobQuery) -> rusqlite::Result<Vec<JobRecord>> {
    let states = query
        .states
        .iter()
        .map(|s| (*s as i64).to_string())
        .collect::<Vec<_>>()
        .join(",");
    let finished_only = !query.states.is_empty() && query.states.iter().all(|s| s.is_terminal());
    let order = if finished_only {
        "completed_ms DESC, created_ms DESC"
    } else {
        "created_ms, uuid"
    };
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE state IN ({states}) \
         AND (?1 IS NULL OR queue = ?1) AND (?2 IS NULL OR owner = ?2) \
         ORDER BY {order} LIMIT ?3"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(
        params![query.queue, query.owner, i64::from(query.limit)],
        schema::job_from_row,
    )?;
    rows.collect()
}

pub(super) fn count_by_state(
    conn: &Connection,
    queue: Option<&str>,
) -> rusqlite::Result<Vec<(JobState, u64)>> {
    let mut stmt = conn.prepare(
        "SELECT state, count(*) FROM jobs WHERE (?1 IS NULL OR queue = ?1) GROUP BY state",
    )?;
    let rows = stmt.query_map(params![queue], |row| {
        Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
    })?;
    let mut counts = Vec::new();
    for row in rows {
        let (state, n) = row?;
        if let Some(state) = JobState::from_i64(state) {
            counts.push((state, n.max(0) as u64));
        }
    }
    Ok(counts)
}

/// Jobs whose spool file must exist: they have a document and are not finished.
pub(super) fn committed_documents(conn: &Connection) -> rusqlite::Result<HashSet<JobUuid>> {
    let mut stmt = conn.prepare(&format!("SELECT uuid FROM jobs WHERE {SPOOLED}"))?;
    let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
    let mut set = HashSet::new();
    for uuid in rows {
        if let Some(uuid) = JobUuid::parse(&uuid?) {
            set.insert(uuid);
        }
    }
    Ok(set)
}
