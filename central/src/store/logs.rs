//! SQL for the logs sites upload: accounting journal records and job
//! announcements, each with its acknowledged mark per (site, epoch),
//! moved in the transaction that stores the batch.

use rusqlite::{Connection, params};
use sync_protocol::message::{JobBatch, JournalBatch};

use super::StoreError;

fn seq(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn marks(conn: &Connection, site: &str, epoch: &str) -> Result<(u64, u64), StoreError> {
    conn.prepare_cached(
        "INSERT INTO log_marks (site, epoch) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
    )?
    .execute(params![site, epoch])?;
    let (journal, jobs): (i64, i64) = conn
        .prepare_cached(
            "SELECT journal_acked, jobs_acked FROM log_marks WHERE site = ?1 AND epoch = ?2",
        )?
        .query_row(params![site, epoch], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok((journal.max(0) as u64, jobs.max(0) as u64))
}

pub(super) fn begin_session(
    conn: &Connection,
    site: &str,
    epoch: &str,
    now_ms: i64,
) -> Result<(u64, u64), StoreError> {
    conn.prepare_cached("UPDATE sites SET last_contact_ms = ?2 WHERE name = ?1")?
        .execute(params![site, now_ms])?;
    marks(conn, site, epoch)
}

/// The error for a batch that does not continue what is stored.
pub(super) fn gap(what: &str, after: u64, acked: u64) -> StoreError {
    StoreError::Invalid(format!(
        "{what} batch continues from {after}, but central holds only through {acked}"
    ))
}

pub(super) fn store_journal(
    conn: &Connection,
    site: &str,
    batch: &JournalBatch,
) -> Result<u64, StoreError> {
    let (acked, _) = marks(conn, site, &batch.epoch)?;
    if batch.after > acked {
        return Err(gap("journal", batch.after, acked));
    }
    let mut insert = conn.prepare_cached(
        "INSERT INTO journal (site, epoch, seq, job_uuid, queue, job_id, user_id, device, pages, \
         pages_exact, sheets, copies, color, sides, media, time_ms, outcome, origin_site) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18) \
         ON CONFLICT DO NOTHING",
    )?;
    for r in batch.records.iter().filter(|r| r.seq > acked) {
        insert.execute(params![
            site,
            batch.epoch,
            seq(r.seq),
            r.job,
            r.queue,
            r.job_id,
            r.user,
            r.device,
            r.pages,
            r.pages_exact,
            r.sheets,
            r.copies,
            r.color,
            r.sides,
            r.media,
            r.time_ms,
            r.outcome,
            r.origin_site,
        ])?;
    }
    let through = batch.records.last().map_or(acked, |r| r.seq.max(acked));
    conn.prepare_cached("UPDATE log_marks SET journal_acked = ?3 WHERE site = ?1 AND epoch = ?2")?
        .execute(params![site, batch.epoch, seq(through)])?;
    Ok(through)
}

pub(super) fn store_jobs(
    conn: &Connection,
    site: &str,
    batch: &JobBatch,
) -> Result<u64, StoreError> {
    let (_, acked) = marks(conn, site, &batch.epoch)?;
    if batch.after > acked {
        return Err(gap("jobs", batch.after, acked));
    }
    // The latest announcement of a job wins: a resend of an older one, or
    // one from an earlier epoch's numbering, does not undo a newer state.
    let mut upsert = conn.prepare_cached(
        "INSERT INTO job_index (site, uuid, epoch, seq, owner, name, pages, size, submitted_ms, \
         state, deleted) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
         ON CONFLICT (site, uuid) DO UPDATE SET epoch = excluded.epoch, seq = excluded.seq, \
         owner = excluded.owner, name = excluded.name, pages = excluded.pages, \
         size = excluded.size, submitted_ms = excluded.submitted_ms, state = excluded.state, \
         deleted = excluded.deleted \
         WHERE excluded.epoch <> job_index.epoch OR excluded.seq > job_index.seq",
    )?;
    for j in batch.jobs.iter().filter(|j| j.seq > acked) {
        upsert.execute(params![
            site,
            j.uuid,
            batch.epoch,
            seq(j.seq),
            j.owner,
            j.name,
            j.pages,
            j.size.map(seq),
            j.submitted_ms,
            j.state,
            j.deleted,
        ])?;
    }
    let through = batch.jobs.last().map_or(acked, |j| j.seq.max(acked));
    conn.prepare_cached("UPDATE log_marks SET jobs_acked = ?3 WHERE site = ?1 AND epoch = ?2")?
        .execute(params![site, batch.epoch, seq(through)])?;
    Ok(through)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sync_protocol::message::{JobAnnouncement, JournalRecord};

    use super::super::test_db as db;

    fn record(seq: u64) -> JournalRecord {
        JournalRecord {
            seq,
            job: format!("job-{seq}"),
            queue: "secure".into(),
            job_id: 1,
            user: "alice".into(),
            device: "lobby".into(),
            pages: Some(2),
            pages_exact: true,
            sheets: Some(2),
            copies: 1,
            color: "color".into(),
            sides: "one-sided".into(),
            media: None,
            time_ms: 0,
            outcome: "completed".into(),
            origin_site: None,
        }
    }

    fn journal(epoch: &str, after: u64, seqs: std::ops::RangeInclusive<u64>) -> JournalBatch {
        JournalBatch {
            epoch: epoch.into(),
            after,
            records: seqs.map(record).collect(),
        }
    }

    fn count(conn: &Connection) -> i64 {
        conn.query_row("SELECT count(*) FROM journal", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_resent_batch_is_stored_once_and_a_gap_is_refused() {
        let conn = db();
        assert_eq!(begin_session(&conn, "b1", "e1", 0).unwrap(), (0, 0));
        assert_eq!(
            store_journal(&conn, "b1", &journal("e1", 0, 1..=3)).unwrap(),
            3
        );
        assert_eq!(
            store_journal(&conn, "b1", &journal("e1", 0, 1..=3)).unwrap(),
            3
        );
        assert_eq!(
            store_journal(&conn, "b1", &journal("e1", 2, 3..=5)).unwrap(),
            5
        );
        assert_eq!(count(&conn), 5);
        assert!(matches!(
            store_journal(&conn, "b1", &journal("e1", 9, 10..=10)),
            Err(StoreError::Invalid(_))
        ));
        // A recreated database at the site is a new epoch: numbers restart.
        assert_eq!(begin_session(&conn, "b1", "e2", 1).unwrap(), (0, 0));
        assert_eq!(
            store_journal(&conn, "b1", &journal("e2", 0, 1..=2)).unwrap(),
            2
        );
        assert_eq!(count(&conn), 7);
        assert_eq!(begin_session(&conn, "b1", "e1", 2).unwrap(), (5, 0));
    }

    #[test]
    fn the_latest_announcement_of_a_job_wins() {
        let conn = db();
        let announce = |seq, state: &str| JobAnnouncement {
            seq,
            uuid: "u1".into(),
            owner: "alice".into(),
            name: "report.pdf".into(),
            pages: Some(3),
            size: Some(1000),
            submitted_ms: 5,
            state: state.into(),
            deleted: false,
        };
        let batch = |after, jobs| JobBatch {
            epoch: "e1".into(),
            after,
            jobs,
        };
        store_jobs(&conn, "b1", &batch(0, vec![announce(1, "held")])).unwrap();
        store_jobs(&conn, "b1", &batch(1, vec![announce(4, "completed")])).unwrap();
        // A resend of the old announcement after the ack mark moved is skipped.
        store_jobs(&conn, "b1", &batch(0, vec![announce(1, "held")])).unwrap();
        let state: String = conn
            .query_row("SELECT state FROM job_index WHERE uuid = 'u1'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(state, "completed");
    }
}
