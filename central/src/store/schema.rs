//! Central's schema and its migrations, one list for both backends:
//! SQLite keeps the applied count in `user_version`, PostgreSQL in
//! `schema_version` (see `postgres`).

use std::sync::LazyLock;

use rusqlite::Connection;
use rusqlite_migration::{M, Migrations};

use super::StoreError;

/// The schema's steps, oldest first: the one source of truth for both
/// backends. Each is SQL that SQLite and PostgreSQL both speak, but for the
/// few words they spell differently, written as placeholders that
/// [`render`] fills in. A step, once released, is never edited: a new one
/// is appended.
const STEPS: &[&str] = &[
    r#"
        -- Sites: known by the SHA-256 of their certificate, never by a name in it.
        CREATE TABLE sites (
            name TEXT PRIMARY KEY NOT NULL,
            created_ms {int} NOT NULL,
            enrolled_ms {int},
            certificate_sha256 {blob} UNIQUE,
            revoked_ms {int},
            last_contact_ms {int},
            policy_version {int} NOT NULL DEFAULT 0,
            unknown_rules TEXT NOT NULL DEFAULT ''
        ) {strict};
        -- One-time enrollment tokens; only the secret's SHA-256 is kept.
        CREATE TABLE enrollment_tokens (
            id TEXT PRIMARY KEY NOT NULL,
            site TEXT NOT NULL REFERENCES sites (name),
            secret_sha256 {blob} NOT NULL,
            expires_ms {int} NOT NULL,
            used_ms {int}
        ) {strict};
        -- Accounting, keyed so a resend is a no-op.
        CREATE TABLE journal (
            site TEXT NOT NULL,
            epoch TEXT NOT NULL,
            seq {int} NOT NULL,
            job_uuid TEXT NOT NULL,
            queue TEXT NOT NULL,
            job_id {int} NOT NULL,
            user_id TEXT NOT NULL,
            device TEXT NOT NULL,
            pages {int},
            pages_exact {int} NOT NULL,
            sheets {int},
            copies {int} NOT NULL,
            color TEXT NOT NULL,
            sides TEXT NOT NULL,
            media TEXT,
            time_ms {int} NOT NULL,
            outcome TEXT NOT NULL,
            PRIMARY KEY (site, epoch, seq)
        ) {strict_without_rowid};
        CREATE INDEX journal_by_time ON journal (time_ms);
        -- Per site and epoch: the highest sequence stored with nothing
        -- missing before it, for each log.
        CREATE TABLE log_marks (
            site TEXT NOT NULL,
            epoch TEXT NOT NULL,
            journal_acked {int} NOT NULL DEFAULT 0,
            jobs_acked {int} NOT NULL DEFAULT 0,
            PRIMARY KEY (site, epoch)
        ) {strict};
        -- The global job index: each job's latest announced state.
        CREATE TABLE job_index (
            site TEXT NOT NULL,
            uuid TEXT NOT NULL,
            epoch TEXT NOT NULL,
            seq {int} NOT NULL,
            owner TEXT NOT NULL,
            name TEXT NOT NULL,
            pages {int},
            size {int},
            submitted_ms {int} NOT NULL,
            state TEXT NOT NULL,
            deleted {int} NOT NULL,
            PRIMARY KEY (site, uuid)
        ) {strict};
        CREATE INDEX job_index_by_owner ON job_index (owner, submitted_ms);
        -- Users as policy carries them (sync_protocol::message::PolicyUser,
        -- JSON), with the policy version that last changed each; a removed
        -- user stays as a tombstone so changes since any version are known.
        CREATE TABLE users (
            id TEXT PRIMARY KEY NOT NULL,
            version {int} NOT NULL,
            removed {int} NOT NULL DEFAULT 0,
            body TEXT NOT NULL
        ) {strict};
        CREATE INDEX users_by_version ON users (version);
        -- Cards and PIN-only PINs find their user by value, so no two
        -- users in force may share one.
        CREATE TABLE user_lookups (
            kind TEXT NOT NULL,
            lookup TEXT NOT NULL,
            user_id TEXT NOT NULL,
            PRIMARY KEY (kind, lookup)
        ) {strict};
        CREATE INDEX user_lookups_by_user ON user_lookups (user_id);
        -- Policy-wide values: the version counter, the rules and the
        -- version that last changed them.
        CREATE TABLE policy (
            key TEXT PRIMARY KEY NOT NULL,
            value TEXT NOT NULL
        ) {strict};
        INSERT INTO policy (key, value) VALUES
            ('version', '0'), ('rules', '{}'), ('rules_version', '0');
        "#,
    // Job roaming: a print of a job fetched from another site names the
    // site it was submitted at.
    "ALTER TABLE journal ADD COLUMN origin_site TEXT;",
    r#"
        -- Central nodes sharing the database: where the others reach each,
        -- the SHA-256 of the certificate it proves itself with to them, and
        -- when it last said it was alive (see `nodes`).
        CREATE TABLE nodes (
            address TEXT PRIMARY KEY NOT NULL,
            certificate_sha256 {blob} NOT NULL,
            started_ms {int} NOT NULL,
            seen_ms {int} NOT NULL
        ) {strict};
        -- The node holding each site's session now.
        CREATE TABLE site_sessions (
            site TEXT PRIMARY KEY NOT NULL,
            node TEXT NOT NULL,
            since_ms {int} NOT NULL
        ) {strict};
        CREATE INDEX site_sessions_by_node ON site_sessions (node);
        "#,
];

/// The SQL engine a step is rendered for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// The embedded default: 64-bit INTEGER, BLOB, STRICT tables.
    Sqlite,
    /// The shared database of several nodes: BIGINT, BYTEA.
    Postgres,
}

/// `step` in `dialect`'s words.
pub(crate) fn render(step: &str, dialect: Dialect) -> String {
    let words: [(&str, &str); 4] = match dialect {
        Dialect::Sqlite => [
            ("{int}", "INTEGER"),
            ("{blob}", "BLOB"),
            ("{strict_without_rowid}", "STRICT, WITHOUT ROWID"),
            ("{strict}", "STRICT"),
        ],
        Dialect::Postgres => [
            ("{int}", "BIGINT"),
            ("{blob}", "BYTEA"),
            ("{strict_without_rowid}", ""),
            ("{strict}", ""),
        ],
    };
    words.iter().fold(step.to_owned(), |sql, (word, spelled)| {
        sql.replace(word, spelled)
    })
}

/// Every step, in `dialect`'s words, oldest first.
pub(crate) fn steps(dialect: Dialect) -> Vec<String> {
    STEPS.iter().map(|step| render(step, dialect)).collect()
}

/// The steps in SQLite's words, rendered once (the migration crate takes
/// `'static` SQL).
static SQLITE_STEPS: LazyLock<Vec<String>> = LazyLock::new(|| steps(Dialect::Sqlite));

fn migrations() -> Migrations<'static> {
    Migrations::new(SQLITE_STEPS.iter().map(|step| M::up(step)).collect())
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

    #[test]
    fn no_placeholder_is_left_in_either_dialect() {
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            for step in steps(dialect) {
                assert!(
                    !step.contains("{int}") && !step.contains("{blob}"),
                    "{step}"
                );
                assert!(!step.contains("{strict"), "{step}");
            }
        }
        // The rules' JSON default is not a placeholder.
        assert!(steps(Dialect::Postgres)[0].contains("('rules', '{}')"));
    }
}
