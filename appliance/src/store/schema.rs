//! The SQLite schema, its migrations, and the mapping between rows and
//! [`JobRecord`]s. The schema version lives in the database (`user_version`),
//! so an old data directory is upgraded in place at start-up.

use rusqlite::{Connection, Row, params};
use rusqlite_migration::{M, Migrations};

use crate::analysis::{Analysis, DocumentColor};
use crate::job::{
    Claim, DocumentRecord, DocumentStorage, Encoding, JobRecord, JobState, JobUuid, Origin,
    StoredIn,
};

/// Ordered migrations; append only, never edit a released one.
fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(
            r#"
        CREATE TABLE jobs (
            uuid TEXT PRIMARY KEY NOT NULL,
            queue TEXT NOT NULL,
            ipp_job_id INTEGER NOT NULL,
            owner TEXT NOT NULL,
            name TEXT NOT NULL,
            state INTEGER NOT NULL CHECK (state BETWEEN 3 AND 9),
            state_reasons TEXT NOT NULL,
            state_message TEXT NOT NULL,
            hold_until TEXT,
            template BLOB NOT NULL,
            doc_format TEXT,
            doc_name TEXT,
            doc_size INTEGER,
            doc_spool_size INTEGER,
            doc_sha256 TEXT,
            documents_complete INTEGER NOT NULL,
            created_ms INTEGER NOT NULL,
            processing_ms INTEGER,
            completed_ms INTEGER,
            printer TEXT,
            device_job_id INTEGER,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_ms INTEGER,
            UNIQUE (queue, ipp_job_id),
            CHECK ((doc_sha256 IS NULL) = (doc_size IS NULL))
        ) STRICT;
        CREATE INDEX jobs_by_state ON jobs (state, created_ms);
        CREATE INDEX jobs_by_queue ON jobs (queue, ipp_job_id);
        CREATE TABLE queue_job_ids (
            queue TEXT PRIMARY KEY NOT NULL,
            last_job_id INTEGER NOT NULL
        ) STRICT;
        "#,
        ),
        // Users and their credentials (see crate::credentials for the hashes).
        M::up(
            r#"
        CREATE TABLE users (
            id TEXT PRIMARY KEY NOT NULL,
            display_name TEXT NOT NULL,
            email TEXT,
            disabled INTEGER NOT NULL DEFAULT 0,
            created_ms INTEGER NOT NULL,
            updated_ms INTEGER NOT NULL
        ) STRICT;
        CREATE TABLE user_groups (
            user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            group_name TEXT NOT NULL,
            PRIMARY KEY (user_id, group_name)
        ) STRICT;
        -- argon2id PHC strings, verified once the user is known
        CREATE TABLE user_secrets (
            user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            kind TEXT NOT NULL CHECK (kind IN ('password', 'pin')),
            phc TEXT NOT NULL,
            PRIMARY KEY (user_id, kind)
        ) STRICT;
        -- HMAC-SHA256 under the installation key, found by value
        CREATE TABLE credential_lookups (
            kind TEXT NOT NULL CHECK (kind IN ('card', 'pin_only')),
            lookup BLOB NOT NULL,
            user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            PRIMARY KEY (kind, lookup)
        ) STRICT;
        CREATE INDEX credential_lookups_by_user ON credential_lookups (user_id);
        "#,
        ),
        // Document analysis (crate::analysis): pages and colour.
        M::up(
            r#"
        ALTER TABLE jobs ADD COLUMN doc_pages INTEGER;
        ALTER TABLE jobs ADD COLUMN doc_pages_exact INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE jobs ADD COLUMN doc_color TEXT NOT NULL DEFAULT 'unknown';
        "#,
        ),
        // The accounting journal (crate::accounting). AUTOINCREMENT: a
        // sequence number is never reused, even after old records go.
        M::up(
            r#"
        CREATE TABLE journal (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            job_uuid TEXT NOT NULL,
            queue TEXT NOT NULL,
            ipp_job_id INTEGER NOT NULL,
            user_id TEXT NOT NULL,
            device TEXT NOT NULL,
            site TEXT NOT NULL,
            pages INTEGER,
            pages_exact INTEGER NOT NULL,
            sheets INTEGER,
            copies INTEGER NOT NULL,
            color TEXT NOT NULL CHECK (color IN ('color', 'monochrome')),
            sides TEXT NOT NULL,
            media TEXT,
            time_ms INTEGER NOT NULL,
            outcome TEXT NOT NULL CHECK (outcome IN ('completed', 'aborted', 'canceled'))
        ) STRICT;
        CREATE INDEX journal_by_time ON journal (time_ms);
        CREATE INDEX journal_by_user ON journal (user_id, time_ms);
        "#,
        ),
        // The audit log (store::audit).
        M::up(
            r#"
        CREATE TABLE audit (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            time_ms INTEGER NOT NULL,
            action TEXT NOT NULL,
            user_id TEXT,
            device TEXT,
            job_uuid TEXT,
            detail TEXT NOT NULL
        ) STRICT;
        CREATE INDEX audit_by_time ON audit (time_ms);
        "#,
        ),
        // Printed jobs' documents kept for reprint ([retention] printed_job_secs).
        M::up(
            r#"
        ALTER TABLE jobs ADD COLUMN kept_until_ms INTEGER;
        CREATE INDEX jobs_kept ON jobs (kept_until_ms) WHERE kept_until_ms IS NOT NULL;
        "#,
        ),
        // Journal outcome `uncertain`: an attempt that may or may not have
        // printed. SQLite cannot change a CHECK in place, so the table is
        // rebuilt, keeping its sequence (never reused) where it was.
        M::up(
            r#"
        CREATE TABLE journal_v2 (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            job_uuid TEXT NOT NULL,
            queue TEXT NOT NULL,
            ipp_job_id INTEGER NOT NULL,
            user_id TEXT NOT NULL,
            device TEXT NOT NULL,
            site TEXT NOT NULL,
            pages INTEGER,
            pages_exact INTEGER NOT NULL,
            sheets INTEGER,
            copies INTEGER NOT NULL,
            color TEXT NOT NULL CHECK (color IN ('color', 'monochrome')),
            sides TEXT NOT NULL,
            media TEXT,
            time_ms INTEGER NOT NULL,
            outcome TEXT NOT NULL
                CHECK (outcome IN ('completed', 'aborted', 'canceled', 'uncertain'))
        ) STRICT;
        INSERT INTO journal_v2 SELECT * FROM journal;
        DELETE FROM sqlite_sequence WHERE name = 'journal_v2';
        INSERT INTO sqlite_sequence (name, seq)
            SELECT 'journal_v2', seq FROM sqlite_sequence WHERE name = 'journal';
        DROP TABLE journal;
        ALTER TABLE journal_v2 RENAME TO journal;
        CREATE INDEX journal_by_time ON journal (time_ms);
        CREATE INDEX journal_by_user ON journal (user_id, time_ms);
        "#,
        ),
        // What central must learn (store::outbox): one row per job whose
        // latest change is not yet acknowledged, every existing job
        // included, so a site enrolled later announces what it holds; and
        // the journal epoch, born with the database.
        M::up(
            r#"
        CREATE TABLE outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            job_uuid TEXT NOT NULL UNIQUE
        ) STRICT;
        INSERT INTO outbox (job_uuid) SELECT uuid FROM jobs ORDER BY created_ms, uuid;
        CREATE TABLE store_meta (
            key TEXT PRIMARY KEY NOT NULL,
            value TEXT NOT NULL
        ) STRICT;
        INSERT INTO store_meta (key, value) VALUES ('journal_epoch', lower(hex(randomblob(16))));
        "#,
        ),
        // Fleet policy (store::policy): users of a snapshot arrive in
        // chunks and are staged until the snapshot ends.
        M::up(
            r#"
        CREATE TABLE policy_staging (
            id TEXT PRIMARY KEY NOT NULL,
            body TEXT NOT NULL
        ) STRICT;
        "#,
        ),
        // Job roaming: another site's claim on a held job (job::Claim).
        M::up(
            r#"
        ALTER TABLE jobs ADD COLUMN claim_site TEXT;
        ALTER TABLE jobs ADD COLUMN claim_id TEXT;
        ALTER TABLE jobs ADD COLUMN claim_until_ms INTEGER;
        "#,
        ),
        // Job roaming, the other end: a job fetched from another site
        // (job::Origin), the claims whose end that site must still learn,
        // and the origin of a print in the journal.
        M::up(
            r#"
        ALTER TABLE jobs ADD COLUMN origin_site TEXT;
        ALTER TABLE jobs ADD COLUMN origin_uuid TEXT;
        ALTER TABLE jobs ADD COLUMN origin_claim TEXT;
        ALTER TABLE jobs ADD COLUMN origin_fetch TEXT;
        CREATE INDEX jobs_fetching ON jobs (origin_site) WHERE origin_fetch IS NOT NULL;
        CREATE TABLE claim_reports (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            claim TEXT NOT NULL UNIQUE,
            origin_site TEXT NOT NULL,
            origin_uuid TEXT NOT NULL,
            printed INTEGER NOT NULL
        ) STRICT;
        ALTER TABLE journal ADD COLUMN origin_site TEXT;
        "#,
        ),
        // Small documents in the database, committed with their job; and
        // each document's encoding (store::spool). Rows from before are
        // zstd spool files, which the defaults say.
        M::up(
            r#"
        ALTER TABLE jobs ADD COLUMN doc_stored TEXT NOT NULL DEFAULT 'file'
            CHECK (doc_stored IN ('file', 'database'));
        ALTER TABLE jobs ADD COLUMN doc_encoding TEXT NOT NULL DEFAULT 'zstd'
            CHECK (doc_encoding IN ('zstd', 'identity'));
        CREATE TABLE documents (
            uuid TEXT PRIMARY KEY NOT NULL,
            bytes BLOB NOT NULL
        ) STRICT;
        "#,
        ),
        // Queries that cost the same with a thousand or a million stored
        // jobs: a user's jobs by owner, the housekeeping sweep of jobs
        // still waiting for their document, a queue's finished jobs newest
        // first (IPP Get-Jobs which-jobs=completed),
        // and the number of jobs per queue and state kept by triggers
        // instead of counted.
        M::up(
            r#"
        CREATE INDEX jobs_by_owner ON jobs (owner, state, created_ms);
        CREATE INDEX jobs_incomplete ON jobs (created_ms) WHERE documents_complete = 0;
        CREATE INDEX jobs_by_completion ON jobs (queue, completed_ms);
        CREATE TABLE job_counts (
            queue TEXT NOT NULL,
            state INTEGER NOT NULL,
            n INTEGER NOT NULL,
            PRIMARY KEY (queue, state)
        ) STRICT;
        INSERT INTO job_counts (queue, state, n)
            SELECT queue, state, count(*) FROM jobs GROUP BY queue, state;
        CREATE TRIGGER job_counts_insert AFTER INSERT ON jobs BEGIN
            INSERT INTO job_counts (queue, state, n) VALUES (new.queue, new.state, 1)
                ON CONFLICT (queue, state) DO UPDATE SET n = n + 1;
        END;
        CREATE TRIGGER job_counts_update AFTER UPDATE OF state ON jobs
        WHEN old.state IS NOT new.state BEGIN
            UPDATE job_counts SET n = n - 1 WHERE queue = old.queue AND state = old.state;
            INSERT INTO job_counts (queue, state, n) VALUES (new.queue, new.state, 1)
                ON CONFLICT (queue, state) DO UPDATE SET n = n + 1;
        END;
        CREATE TRIGGER job_counts_delete AFTER DELETE ON jobs BEGIN
            UPDATE job_counts SET n = n - 1 WHERE queue = old.queue AND state = old.state;
        END;
        "#,
        ),
    ])
}

/// Brings a database to the current schema version.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), rusqlite_migration::Error> {
    migrations().to_latest(conn)
}

/// Columns in the order [`job_from_row`] reads them.
pub(super) const JOB_COLUMNS: &str = "uuid, queue, ipp_job_id, owner, name, state, \
    state_reasons, state_message, hold_until, template, doc_format, doc_name, doc_size, \
    doc_spool_size, doc_sha256, documents_complete, created_ms, processing_ms, completed_ms, \
    printer, device_job_id, attempts, next_attempt_ms, doc_pages, doc_pages_exact, doc_color, kept_until_ms, \
    claim_site, claim_id, claim_until_ms, origin_site, origin_uuid, origin_claim, origin_fetch, \
    doc_stored, doc_encoding";

/// Reads one `SELECT {JOB_COLUMNS}` row.
pub(super) fn job_from_row(row: &Row<'_>) -> rusqlite::Result<JobRecord> {
    job_from_row_at(row, 0)
}

/// Reads the job columns of a row where they start at column `base`.
pub(super) fn job_from_row_at(row: &Row<'_>, base: usize) -> rusqlite::Result<JobRecord> {
    let uuid: String = row.get(base)?;
    let uuid = JobUuid::parse(&uuid).ok_or_else(|| corrupt(base, "uuid"))?;
    let state: i64 = row.get(base + 5)?;
    let state = JobState::from_i64(state).ok_or_else(|| corrupt(base + 5, "state"))?;
    let document = match (row.get::<_, Option<i64>>(base + 12)?, row.get(base + 14)?) {
        (Some(size), Some(sha256)) => Some(DocumentRecord {
            format: row.get(base + 10)?,
            name: row.get(base + 11)?,
            size: u64::try_from(size).map_err(|_| corrupt(base + 12, "doc_size"))?,
            spool_size: u64::try_from(row.get::<_, i64>(base + 13)?)
                .map_err(|_| corrupt(base + 13, "doc_spool_size"))?,
            sha256,
            analysis: Analysis {
                pages: row.get(base + 23)?,
                pages_exact: row.get(base + 24)?,
                color: DocumentColor::from_keyword(&row.get::<_, String>(base + 25)?),
            },
            storage: DocumentStorage {
                place: StoredIn::from_keyword(&row.get::<_, String>(base + 34)?)
                    .ok_or_else(|| corrupt(base + 34, "doc_stored"))?,
                encoding: Encoding::from_keyword(&row.get::<_, String>(base + 35)?)
                    .ok_or_else(|| corrupt(base + 35, "doc_encoding"))?,
            },
        }),
        _ => None,
    };
    Ok(JobRecord {
        uuid,
        queue: row.get(base + 1)?,
        ipp_job_id: row.get(base + 2)?,
        owner: row.get(base + 3)?,
        name: row.get(base + 4)?,
        state,
        state_reasons: row.get(base + 6)?,
        state_message: row.get(base + 7)?,
        hold_until: row.get(base + 8)?,
        template: row.get(base + 9)?,
        document,
        documents_complete: row.get(base + 15)?,
        created_ms: row.get(base + 16)?,
        processing_ms: row.get(base + 17)?,
        completed_ms: row.get(base + 18)?,
        printer: row.get(base + 19)?,
        device_job_id: row.get(base + 20)?,
        attempts: row.get(base + 21)?,
        next_attempt_ms: row.get(base + 22)?,
        kept_until_ms: row.get(base + 26)?,
        claim: match (
            row.get::<_, Option<String>>(base + 27)?,
            row.get::<_, Option<String>>(base + 28)?,
            row.get::<_, Option<i64>>(base + 29)?,
        ) {
            (Some(site), Some(id), Some(until_ms)) => Some(Claim { site, id, until_ms }),
            _ => None,
        },
        origin: match (
            row.get::<_, Option<String>>(base + 30)?,
            row.get::<_, Option<String>>(base + 31)?,
            row.get::<_, Option<String>>(base + 32)?,
        ) {
            (Some(site), Some(uuid), Some(claim)) => Some(Origin {
                site,
                uuid,
                claim,
                fetching: match row.get::<_, Option<String>>(base + 33)? {
                    Some(json) => Some(
                        serde_json::from_str(&json)
                            .map_err(|_| corrupt(base + 33, "origin_fetch"))?,
                    ),
                    None => None,
                },
            }),
            _ => None,
        },
    })
}

fn corrupt(column: usize, name: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        column,
        rusqlite::types::Type::Text,
        format!("invalid value in jobs.{name}").into(),
    )
}

/// Takes the next IPP job-id of `queue` (1, 2, 3, ... never reused).
pub(super) fn next_ipp_job_id(conn: &Connection, queue: &str) -> rusqlite::Result<i32> {
    conn.prepare_cached(
        "INSERT INTO queue_job_ids (queue, last_job_id) VALUES (?1, 1)
         ON CONFLICT (queue) DO UPDATE SET last_job_id = last_job_id + 1
         RETURNING last_job_id",
    )?
    .query_row(params![queue], |row| row.get(0))
}

/// Writes a job: inserts a new one, or writes back every mutable column
/// of an existing one. One statement for both, so the two can never
/// disagree about which columns a change may touch; identity, queue,
/// job-id, owner and submission time are never rewritten.
pub(super) fn save_job(conn: &Connection, job: &JobRecord) -> rusqlite::Result<()> {
    let doc = job.document.as_ref();
    let origin = job.origin.as_ref();
    let fetching = match origin.and_then(|o| o.fetching.as_ref()) {
        Some(m) => Some(
            serde_json::to_string(m)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?,
        ),
        None => None,
    };
    conn.prepare_cached(&format!(
        "INSERT INTO jobs ({JOB_COLUMNS}) VALUES \
         (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, \
          ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34, \
          ?35, ?36) \
         ON CONFLICT (uuid) DO UPDATE SET name = excluded.name, state = excluded.state, \
         state_reasons = excluded.state_reasons, state_message = excluded.state_message, \
         hold_until = excluded.hold_until, template = excluded.template, \
         doc_format = excluded.doc_format, doc_name = excluded.doc_name, \
         doc_size = excluded.doc_size, doc_spool_size = excluded.doc_spool_size, \
         doc_sha256 = excluded.doc_sha256, documents_complete = excluded.documents_complete, \
         processing_ms = excluded.processing_ms, completed_ms = excluded.completed_ms, \
         printer = excluded.printer, device_job_id = excluded.device_job_id, \
         attempts = excluded.attempts, next_attempt_ms = excluded.next_attempt_ms, \
         doc_pages = excluded.doc_pages, doc_pages_exact = excluded.doc_pages_exact, \
         doc_color = excluded.doc_color, kept_until_ms = excluded.kept_until_ms, \
         claim_site = excluded.claim_site, claim_id = excluded.claim_id, \
         claim_until_ms = excluded.claim_until_ms, origin_fetch = excluded.origin_fetch, \
         doc_stored = excluded.doc_stored, doc_encoding = excluded.doc_encoding"
    ))?
    .execute(params![
        job.uuid.to_string(),
        job.queue,
        job.ipp_job_id,
        job.owner,
        job.name,
        job.state as i64,
        job.state_reasons,
        job.state_message,
        job.hold_until,
        job.template,
        doc.map(|d| &d.format),
        doc.and_then(|d| d.name.as_ref()),
        doc.map(|d| d.size as i64),
        doc.map(|d| d.spool_size as i64),
        doc.map(|d| &d.sha256),
        job.documents_complete,
        job.created_ms,
        job.processing_ms,
        job.completed_ms,
        job.printer,
        job.device_job_id,
        job.attempts,
        job.next_attempt_ms,
        doc.and_then(|d| d.analysis.pages),
        doc.is_some_and(|d| d.analysis.pages_exact),
        doc.map_or("unknown", |d| d.analysis.color.keyword()),
        job.kept_until_ms,
        job.claim.as_ref().map(|c| &c.site),
        job.claim.as_ref().map(|c| &c.id),
        job.claim.as_ref().map(|c| c.until_ms),
        origin.map(|o| &o.site),
        origin.map(|o| &o.uuid),
        origin.map(|o| &o.claim),
        fetching,
        doc.map_or(DocumentStorage::LEGACY, |d| d.storage)
            .place
            .keyword(),
        doc.map_or(DocumentStorage::LEGACY, |d| d.storage)
            .encoding
            .keyword(),
    ])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid() {
        assert!(migrations().validate().is_ok());
    }

    #[test]
    fn the_journal_rebuild_keeps_records_and_never_reuses_a_sequence_number() {
        let mut conn = Connection::open_in_memory().unwrap();
        // The rebuild is the seventh migration.
        let before_rebuild = 6;
        migrations().to_version(&mut conn, before_rebuild).unwrap();
        let insert = |conn: &Connection, seq: Option<i64>, outcome: &str| {
            conn.execute(
                "INSERT INTO journal (seq, job_uuid, queue, ipp_job_id, user_id, device, site, \
                 pages, pages_exact, sheets, copies, color, sides, media, time_ms, outcome) \
                 VALUES (?1, 'u', 'q', 1, 'alice', 'lobby', 's', 1, 1, 1, 1, 'color', \
                 'one-sided', NULL, 0, ?2)",
                rusqlite::params![seq, outcome],
            )
        };
        insert(&conn, Some(5), "completed").unwrap();
        insert(&conn, Some(7), "aborted").unwrap();
        conn.execute("DELETE FROM journal WHERE seq = 7", [])
            .unwrap();
        assert!(insert(&conn, None, "uncertain").is_err(), "not allowed yet");
        migrate(&mut conn).unwrap();
        insert(&conn, None, "uncertain").unwrap();
        let seqs: Vec<i64> = conn
            .prepare("SELECT seq FROM journal ORDER BY seq")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(seqs, [5, 8], "7 (deleted) is never reused");
    }
}
