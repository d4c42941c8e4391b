//! Central's SQLite schema and its migrations (version in `user_version`).

use rusqlite::Connection;
use rusqlite_migration::{M, Migrations};

use super::StoreError;

fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(
            r#"
        -- Sites: known by the SHA-256 of their certificate, never by a name in it.
        CREATE TABLE sites (
            name TEXT PRIMARY KEY NOT NULL,
            created_ms INTEGER NOT NULL,
            enrolled_ms INTEGER,
            certificate_sha256 BLOB UNIQUE,
            revoked_ms INTEGER,
            last_contact_ms INTEGER,
            policy_version INTEGER NOT NULL DEFAULT 0,
            unknown_rules TEXT NOT NULL DEFAULT ''
        ) STRICT;
        -- One-time enrollment tokens; only the secret's SHA-256 is kept.
        CREATE TABLE enrollment_tokens (
            id TEXT PRIMARY KEY NOT NULL,
            site TEXT NOT NULL REFERENCES sites (name),
            secret_sha256 BLOB NOT NULL,
            expires_ms INTEGER NOT NULL,
            used_ms INTEGER
        ) STRICT;
        -- Accounting, keyed so a resend is a no-op.
        CREATE TABLE journal (
            site TEXT NOT NULL,
            epoch TEXT NOT NULL,
            seq INTEGER NOT NULL,
            job_uuid TEXT NOT NULL,
            queue TEXT NOT NULL,
            job_id INTEGER NOT NULL,
            user_id TEXT NOT NULL,
            device TEXT NOT NULL,
            pages INTEGER,
            pages_exact INTEGER NOT NULL,
            sheets INTEGER,
            copies INTEGER NOT NULL,
            color TEXT NOT NULL,
            sides TEXT NOT NULL,
            media TEXT,
            time_ms INTEGER NOT NULL,
            outcome TEXT NOT NULL,
            PRIMARY KEY (site, epoch, seq)
        ) STRICT, WITHOUT ROWID;
        CREATE INDEX journal_by_time ON journal (time_ms);
        -- Per site and epoch: the highest sequence stored with nothing
        -- missing before it, for each log.
        CREATE TABLE log_marks (
            site TEXT NOT NULL,
            epoch TEXT NOT NULL,
            journal_acked INTEGER NOT NULL DEFAULT 0,
            jobs_acked INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (site, epoch)
        ) STRICT;
        -- The global job index: each job's latest announced state.
        CREATE TABLE job_index (
            site TEXT NOT NULL,
            uuid TEXT NOT NULL,
            epoch TEXT NOT NULL,
            seq INTEGER NOT NULL,
            owner TEXT NOT NULL,
            name TEXT NOT NULL,
            pages INTEGER,
            size INTEGER,
            submitted_ms INTEGER NOT NULL,
            state TEXT NOT NULL,
            deleted INTEGER NOT NULL,
            PRIMARY KEY (site, uuid)
        ) STRICT;
        CREATE INDEX job_index_by_owner ON job_index (owner, submitted_ms);
        -- Users as policy carries them (sync_protocol::message::PolicyUser,
        -- JSON), with the policy version that last changed each; a removed
        -- user stays as a tombstone so changes since any version are known.
        CREATE TABLE users (
            id TEXT PRIMARY KEY NOT NULL,
            version INTEGER NOT NULL,
            removed INTEGER NOT NULL DEFAULT 0,
            body TEXT NOT NULL
        ) STRICT;
        CREATE INDEX users_by_version ON users (version);
        -- Cards and PIN-only PINs find their user by value, so no two
        -- users in force may share one.
        CREATE TABLE user_lookups (
            kind TEXT NOT NULL,
            lookup TEXT NOT NULL,
            user_id TEXT NOT NULL,
            PRIMARY KEY (kind, lookup)
        ) STRICT;
        CREATE INDEX user_lookups_by_user ON user_lookups (user_id);
        -- Policy-wide values: the version counter, the rules and the
        -- version that last changed them.
        CREATE TABLE policy (
            key TEXT PRIMARY KEY NOT NULL,
            value TEXT NOT NULL
        ) STRICT;
        INSERT INTO policy (key, value) VALUES
            ('version', '0'), ('rules', '{}'), ('rules_version', '0');
        "#,
        ),
        // Job roaming: a print of a job fetched from another site names
        // the site it was submitted at.
        M::up("ALTER TABLE journal ADD COLUMN origin_site TEXT;"),
    ])
}

/// Brings a database to the current schema.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    migrations()
        .to_latest(conn)
        .map_err(|e| StoreError::Unavailable(format!("database migration failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid() {
        assert!(migrations().validate().is_ok());
    }
}
