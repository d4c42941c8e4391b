//! SQL over the jobs table shared by the daemon's store and the offline
//! tools: find, list, count, and the documents the spool must hold.

use std::collections::HashSet;

use rusqlite::{Connection, OptionalExtension, params};

use super::JobQuery;
use super::schema::{self, JOB_COLUMNS};
use super::spool::file_name;
use crate::job::{Encoding, JobRecord, JobState, JobUuid};

/// The jobs whose document must be in the spool: unfinished, or printed
/// and kept for reprint.
pub(super) const SPOOLED: &str =
    "doc_sha256 IS NOT NULL AND (state IN (3, 4, 5, 6) OR kept_until_ms IS NOT NULL)";

/// Local jobs still waiting for their last document (the housekeeping
/// sweep aborts them after a while); `jobs_incomplete` indexes them, so
/// the sweep never walks the held jobs. The `+` keeps SQLite from taking
/// `jobs_by_state` instead, which would visit every old held job.
pub(super) const AWAITING_DOCUMENT: &str = "documents_complete = 0 \
    AND +state IN (3, 4, 5, 6) AND origin_site IS NULL";

/// Held jobs with their document (the housekeeping sweep expires them).
pub(super) const HELD_COMPLETE: &str = "documents_complete = 1 AND state = 4";

/// A user's printed jobs still kept for reprint, newest first.
pub(super) const REPRINTABLE: &str = "owner = ?1 AND state = 9 AND kept_until_ms > ?2 \
    ORDER BY completed_ms DESC LIMIT 100";

/// Printed jobs whose time for reprint is over.
pub(super) const REPRINT_EXPIRED: &str = "kept_until_ms IS NOT NULL AND kept_until_ms <= ?1 \
    ORDER BY kept_until_ms LIMIT ?2";

/// The oldest `?2` jobs matching `condition` submitted before `?1`.
pub(super) fn created_before(condition: &str) -> String {
    format!("{condition} AND created_ms < ?1 ORDER BY created_ms LIMIT ?2")
}

pub(super) fn find_job(conn: &Connection, uuid: JobUuid) -> rusqlite::Result<Option<JobRecord>> {
    conn.prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE uuid = ?1"))?
        .query_row(params![uuid.to_string()], schema::job_from_row)
        .optional()
}

pub(super) fn list_jobs(conn: &Connection, query: &JobQuery) -> rusqlite::Result<Vec<JobRecord>> {
    let mut stmt = conn.prepare_cached(&list_sql(query))?;
    let rows = stmt.query_map(
        params![query.queue, query.owner, i64::from(query.limit)],
        schema::job_from_row,
    )?;
    rows.collect()
}

/// The statement [`list_jobs`] runs, with `?1` queue, `?2` owner, `?3` limit.
fn list_sql(query: &JobQuery) -> String {
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
    // Only the filters asked for are written out: `(?1 IS NULL OR owner =
    // ?1)` would hide the owner from the planner, which then walks every
    // job instead of the owner's index.
    let queue = if query.queue.is_some() {
        "AND queue = ?1"
    } else {
        "AND ?1 IS NULL"
    };
    let owner = if query.owner.is_some() {
        "AND owner = ?2"
    } else {
        "AND ?2 IS NULL"
    };
    format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE state IN ({states}) {queue} {owner} \
         ORDER BY {order} LIMIT ?3"
    )
}

pub(super) fn count_by_state(
    conn: &Connection,
    queue: Option<&str>,
) -> rusqlite::Result<Vec<(JobState, u64)>> {
    // Kept by triggers (schema), so this reads a handful of rows however
    // many jobs are stored.
    let mut stmt = conn.prepare_cached(
        "SELECT state, sum(n) FROM job_counts WHERE (?1 IS NULL OR queue = ?1) GROUP BY state",
    )?;
    let rows = stmt.query_map(params![queue], |row| {
        Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
    })?;
    let mut counts = Vec::new();
    for row in rows {
        let (state, n) = row?;
        if let Some(state) = JobState::from_i64(state)
            && n > 0
        {
            counts.push((state, n as u64));
        }
    }
    Ok(counts)
}

/// Whether a job needs the spool file `uuid` with `encoding`: its document
/// is kept in that file, and the job is unfinished or kept for reprint.
pub(super) fn needs_spool_file(
    conn: &Connection,
    uuid: JobUuid,
    encoding: Encoding,
) -> rusqlite::Result<bool> {
    conn.prepare_cached(&format!(
        "SELECT EXISTS (SELECT 1 FROM jobs WHERE uuid = ?1 AND doc_stored = 'file' \
         AND doc_encoding = ?2 AND {SPOOLED})"
    ))?
    .query_row(params![uuid.to_string(), encoding.keyword()], |row| {
        row.get(0)
    })
}

/// The spool file names (`<uuid>.zst` or `.raw`) the jobs need (for a
/// backup, which copies them).
pub(super) fn needed_spool_files(conn: &Connection) -> rusqlite::Result<HashSet<String>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT uuid, doc_encoding FROM jobs WHERE doc_stored = 'file' AND {SPOOLED}"
    ))?;
    let rows = stmt.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
    })?;
    let mut set = HashSet::new();
    for row in rows {
        let (uuid, encoding) = row?;
        if let (Some(uuid), Some(encoding)) =
            (JobUuid::parse(&uuid), Encoding::from_keyword(&encoding))
        {
            set.insert(file_name(uuid, encoding));
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite's plan for `sql`, one step per line.
    fn plan(conn: &Connection, sql: &str) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        for i in 1..=stmt.parameter_count() {
            stmt.raw_bind_parameter(i, "x").unwrap();
        }
        let mut rows = stmt.raw_query();
        let mut steps = Vec::new();
        while let Some(row) = rows.next().unwrap() {
            steps.push(row.get::<_, String>(3).unwrap());
        }
        steps.join("\n")
    }

    fn query(states: &[JobState], queue: Option<&str>, owner: Option<&str>) -> JobQuery {
        JobQuery {
            states: states.to_vec(),
            queue: queue.map(str::to_owned),
            owner: owner.map(str::to_owned),
            limit: 100,
        }
    }

    /// The queries a login, a user's list, IPP Get-Jobs, the quota sum and
    /// the housekeeping sweeps run must cost the same with a thousand or a
    /// million stored jobs: each goes through an index to what it needs,
    /// never through every job.
    #[test]
    fn the_hot_queries_never_walk_every_job() {
        let mut conn = Connection::open_in_memory().unwrap();
        schema::migrate(&mut conn).unwrap();
        use JobState::*;
        let unfinished = [Pending, PendingHeld, Processing, ProcessingStopped];
        let cases: Vec<(&str, String, &str)> = vec![
            (
                "a user's held jobs",
                list_sql(&query(&[PendingHeld], None, Some("alice"))),
                "jobs_by_owner",
            ),
            (
                "Get-Jobs my-jobs on a queue",
                list_sql(&query(&unfinished, Some("secure"), Some("alice"))),
                "jobs_by_owner",
            ),
            (
                "Get-Jobs completed on a queue",
                list_sql(&query(
                    &[Canceled, Aborted, Completed],
                    Some("secure"),
                    None,
                )),
                "jobs_by_completion",
            ),
            (
                "documents that never came",
                format!(
                    "SELECT uuid FROM jobs WHERE {}",
                    created_before(AWAITING_DOCUMENT)
                ),
                "jobs_incomplete",
            ),
            (
                "held jobs to expire",
                format!(
                    "SELECT uuid FROM jobs WHERE {}",
                    created_before(HELD_COMPLETE)
                ),
                "jobs_by_state",
            ),
            (
                "a user's reprints",
                format!("SELECT uuid FROM jobs WHERE {REPRINTABLE}"),
                "jobs_by_owner",
            ),
            (
                "reprints to forget",
                format!("SELECT uuid FROM jobs WHERE {REPRINT_EXPIRED}"),
                "jobs_kept",
            ),
            (
                "the spool file check at start",
                format!(
                    "SELECT 1 FROM jobs WHERE uuid = ?1 AND doc_stored = 'file' \
                     AND doc_encoding = ?2 AND {SPOOLED}"
                ),
                "",
            ),
            (
                "jobs per state",
                "SELECT state, sum(n) FROM job_counts WHERE (?1 IS NULL OR queue = ?1) \
                 GROUP BY state"
                    .to_owned(),
                "",
            ),
            (
                "the quota sum",
                "SELECT coalesce(sum(pages), 0) FROM journal WHERE user_id = ?1 \
                 AND time_ms >= ?2 AND outcome = 'completed'"
                    .to_owned(),
                "journal_by_user",
            ),
        ];
        for (what, sql, index) in cases {
            let plan = plan(&conn, &sql);
            for step in plan.lines() {
                let walks_jobs = step.starts_with("SCAN jobs") && !step.contains("USING");
                assert!(
                    !walks_jobs && !step.starts_with("SCAN journal"),
                    "{what} walks a whole table:\n{plan}"
                );
            }
            assert!(plan.contains(index), "{what} does not use {index}:\n{plan}");
            assert!(
                !(index == "jobs_by_completion" && plan.contains("TEMP B-TREE FOR ORDER BY")),
                "{what} sorts every finished job of the queue:\n{plan}"
            );
        }
    }
}
