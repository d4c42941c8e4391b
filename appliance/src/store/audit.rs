//! The audit log: every login (and failed login), logout, release, reprint
//! and delete, with who, where and when. Appended by the writer thread; a
//! release, reprint or delete is logged in the same savepoint as the job
//! change it records.

use rusqlite::{Connection, params};
use serde::Serialize;

/// One audited event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEvent {
    /// Sequence number (0 until stored).
    pub seq: i64,
    /// When, ms since the Unix epoch.
    pub time_ms: i64,
    /// `login`, `login-failed`, `locked-out`, `logout`, `release`, `delete`.
    pub action: String,
    /// The user concerned, when known.
    pub user: Option<String>,
    /// The printer (device) it happened at.
    pub device: Option<String>,
    /// The job concerned.
    pub job: Option<String>,
    /// Details (method, outcome, reason); never a secret.
    pub detail: String,
}

impl AuditEvent {
    /// An event happening now.
    pub fn now(
        action: &str,
        user: Option<&str>,
        device: Option<&str>,
        detail: String,
    ) -> AuditEvent {
        AuditEvent {
            seq: 0,
            time_ms: crate::job::now_ms(),
            action: action.to_owned(),
            user: user.map(str::to_owned),
            device: device.map(str::to_owned),
            job: None,
            detail,
        }
    }

    /// The same event about `job`.
    pub fn for_job(mut self, job: crate::job::JobUuid) -> AuditEvent {
        self.job = Some(job.to_string());
        self
    }
}

pub(super) fn append(conn: &Connection, event: &AuditEvent) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO audit (time_ms, action, user_id, device, job_uuid, detail) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        event.time_ms,
        event.action,
        event.user,
        event.device,
        event.job,
        event.detail
    ])?;
    Ok(())
}

pub(super) fn since(conn: &Connection, since_ms: i64) -> rusqlite::Result<Vec<AuditEvent>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, time_ms, action, user_id, device, job_uuid, detail FROM audit \
         WHERE time_ms >= ?1 ORDER BY seq",
    )?;
    let rows = stmt.query_map(params![since_ms], |r| {
        Ok(AuditEvent {
            seq: r.get(0)?,
            time_ms: r.get(1)?,
            action: r.get(2)?,
            user: r.get(3)?,
            device: r.get(4)?,
            job: r.get(5)?,
            detail: r.get(6)?,
        })
    })?;
    rows.collect()
}
