//! SQL for job roaming at this site: the claims whose end another site
//! must still learn (`roaming::report`), and the jobs whose document is
//! still on its way from another site.

use rusqlite::{Connection, params};

use super::schema::{self, JOB_COLUMNS};
use crate::job::{JobRecord, JobState};
use crate::roaming::report::ClaimEnd;

/// Keeps a claim's end until its origin acknowledges it (once per claim).
pub(super) fn add_report(conn: &Connection, end: &ClaimEnd) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO claim_reports (claim, origin_site, origin_uuid, printed) \
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (claim) DO NOTHING",
    )?
    .execute(params![
        end.claim,
        end.origin_site,
        end.origin_uuid,
        end.printed
    ])?;
    Ok(())
}

/// Every claim end not yet acknowledged, oldest first.
pub(super) fn reports(conn: &Connection) -> rusqlite::Result<Vec<ClaimEnd>> {
    let mut stmt = conn.prepare_cached(
        "SELECT claim, origin_site, origin_uuid, printed FROM claim_reports ORDER BY seq",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(ClaimEnd {
            claim: r.get(0)?,
            origin_site: r.get(1)?,
            origin_uuid: r.get(2)?,
            printed: r.get(3)?,
        })
    })?;
    rows.collect()
}

/// The origin has applied the end of `claim`.
pub(super) fn report_done(conn: &Connection, claim: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM claim_reports WHERE claim = ?1")?
        .execute(params![claim])?;
    Ok(())
}

/// Jobs whose document is still being fetched from another site.
pub(super) fn fetching(conn: &Connection) -> rusqlite::Result<Vec<JobRecord>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE origin_fetch IS NOT NULL AND state = {} \
         ORDER BY created_ms, uuid",
        JobState::Pending as i64
    ))?;
    let rows = stmt.query_map([], schema::job_from_row)?;
    rows.collect()
}
