//! SQL for what admins read: accounting totals and the global job index.

use rusqlite::{Connection, params};

use super::StoreError;

/// How accounting totals are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportBy {
    /// Per user.
    User,
    /// Per site.
    Site,
    /// Per printer (site and printer id).
    Device,
    /// Per UTC day.
    Day,
}

/// One line of a report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReportRow {
    /// The group: a user, a site, `site/printer` or a date.
    pub key: String,
    /// Prints that completed.
    pub jobs: u64,
    /// Impressions of completed prints.
    pub pages: u64,
    /// Sheets of completed prints.
    pub sheets: u64,
    /// Impressions of completed colour prints.
    pub color_pages: u64,
    /// Prints that ended otherwise (aborted, canceled, uncertain).
    pub not_completed: u64,
    /// Completed prints whose page count is unknown.
    pub pages_unknown: u64,
}

/// A job in the global index.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IndexedJob {
    /// The site holding it.
    pub site: String,
    /// Its UUID.
    pub uuid: String,
    /// Owner.
    pub owner: String,
    /// Name.
    pub name: String,
    /// Pages of one copy, when known.
    pub pages: Option<u32>,
    /// Document size.
    pub size: Option<u64>,
    /// Submitted, ms since the epoch.
    pub submitted_ms: i64,
    /// Latest state announced.
    pub state: String,
    /// Gone from its site.
    pub deleted: bool,
}

pub(super) fn report(
    conn: &Connection,
    by: ReportBy,
    since_ms: i64,
) -> Result<Vec<ReportRow>, StoreError> {
    let key = match by {
        ReportBy::User => "user_id",
        ReportBy::Site => "site",
        ReportBy::Device => "site || '/' || device",
        ReportBy::Day => "date(time_ms / 1000, 'unixepoch')",
    };
    let sql = format!(
        "SELECT {key} AS k, \
         sum(outcome = 'completed'), \
         coalesce(sum(CASE WHEN outcome = 'completed' THEN pages END), 0), \
         coalesce(sum(CASE WHEN outcome = 'completed' THEN sheets END), 0), \
         coalesce(sum(CASE WHEN outcome = 'completed' AND color = 'color' THEN pages END), 0), \
         sum(outcome <> 'completed'), \
         sum(outcome = 'completed' AND pages IS NULL) \
         FROM journal WHERE time_ms >= ?1 GROUP BY k ORDER BY k"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![since_ms], |r| {
        let n = |i| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
        Ok(ReportRow {
            key: r.get(0)?,
            jobs: n(1)?,
            pages: n(2)?,
            sheets: n(3)?,
            color_pages: n(4)?,
            not_completed: n(5)?,
            pages_unknown: n(6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn jobs_of(conn: &Connection, user: &str) -> Result<Vec<IndexedJob>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT site, uuid, owner, name, pages, size, submitted_ms, state, deleted \
         FROM job_index WHERE owner = ?1 ORDER BY submitted_ms DESC, uuid LIMIT 1000",
    )?;
    let rows = stmt.query_map(params![user], |r| {
        Ok(IndexedJob {
            site: r.get(0)?,
            uuid: r.get(1)?,
            owner: r.get(2)?,
            name: r.get(3)?,
            pages: r.get(4)?,
            size: r.get::<_, Option<i64>>(5)?.map(|s| s.max(0) as u64),
            submitted_ms: r.get(6)?,
            state: r.get(7)?,
            deleted: r.get(8)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
