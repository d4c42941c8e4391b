//! SQL for the accounting journal ([`crate::accounting`]).

use rusqlite::{Connection, Row, params};

use crate::accounting::JournalEntry;

/// Appends a record; its sequence number is assigned here.
pub(super) fn append(conn: &Connection, entry: &JournalEntry) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "INSERT INTO journal (job_uuid, queue, ipp_job_id, user_id, device, site, pages, \
         pages_exact, sheets, copies, color, sides, media, time_ms, outcome, origin_site) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
    )?
    .execute(params![
        entry.job,
        entry.queue,
        entry.job_id,
        entry.user,
        entry.device,
        entry.site,
        entry.pages,
        entry.pages_exact,
        entry.sheets,
        entry.copies,
        entry.color,
        entry.sides,
        entry.media,
        entry.time_ms,
        entry.outcome,
        entry.origin_site,
    ])?;
    Ok(conn.last_insert_rowid())
}

/// Records from `since_ms` on, in sequence order.
pub(super) fn since(conn: &Connection, since_ms: i64) -> rusqlite::Result<Vec<JournalEntry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, job_uuid, queue, ipp_job_id, user_id, device, site, pages, pages_exact, \
         sheets, copies, color, sides, media, time_ms, outcome, origin_site \
         FROM journal WHERE time_ms >= ?1 ORDER BY seq",
    )?;
    let rows = stmt.query_map(params![since_ms], entry_from_row)?;
    rows.collect()
}

/// Up to `limit` records with a sequence above `after`, in sequence order.
pub(super) fn after(
    conn: &Connection,
    after: i64,
    limit: i64,
) -> rusqlite::Result<Vec<JournalEntry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, job_uuid, queue, ipp_job_id, user_id, device, site, pages, pages_exact, \
         sheets, copies, color, sides, media, time_ms, outcome, origin_site \
         FROM journal WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![after, limit], entry_from_row)?;
    rows.collect()
}

/// Impressions a user printed to completion since `since_ms`.
pub(super) fn pages_since(conn: &Connection, user: &str, since_ms: i64) -> rusqlite::Result<u64> {
    let total: i64 = conn
        .prepare_cached(
            "SELECT coalesce(sum(pages), 0) FROM journal \
             WHERE user_id = ?1 AND time_ms >= ?2 AND outcome = 'completed'",
        )?
        .query_row(params![user, since_ms], |r| r.get(0))?;
    Ok(total.max(0) as u64)
}

fn entry_from_row(row: &Row<'_>) -> rusqlite::Result<JournalEntry> {
    let color: String = row.get(11)?;
    let outcome: String = row.get(15)?;
    Ok(JournalEntry {
        seq: row.get(0)?,
        job: row.get(1)?,
        queue: row.get(2)?,
        job_id: row.get(3)?,
        user: row.get(4)?,
        device: row.get(5)?,
        site: row.get(6)?,
        pages: row.get(7)?,
        pages_exact: row.get(8)?,
        sheets: row.get(9)?,
        copies: row.get(10)?,
        color: if color == "monochrome" {
            "monochrome"
        } else {
            "color"
        },
        sides: row.get(12)?,
        media: row.get(13)?,
        time_ms: row.get(14)?,
        outcome: match outcome.as_str() {
            "completed" => "completed",
            "canceled" => "canceled",
            "uncertain" => "uncertain",
            _ => "aborted",
        },
        origin_site: row.get(16)?,
    })
}
