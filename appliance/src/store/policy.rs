//! SQL for the fleet policy a site receives from central: a snapshot is
//! staged chunk by chunk and replaces every user in one transaction;
//! changes apply in one transaction; the version and rules in force are
//! kept beside them, so a restart offline enforces the last policy had.

use rusqlite::{Connection, OptionalExtension, params};
use sync_protocol::message::{PolicyChanges, PolicyUser};
use sync_protocol::rules::Rules;

use super::{StoreError, users};
use crate::job::now_ms;
use crate::users::from_policy;

fn meta(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT value FROM store_meta WHERE key = ?1")?
        .query_row(params![key], |r| r.get(0))
        .optional()
}

/// Sets a `store_meta` value.
pub(super) fn set_meta(conn: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO store_meta (key, value) VALUES (?1, ?2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![key, value])?;
    Ok(())
}

/// A number kept in `store_meta` (0 when absent).
pub(super) fn meta_number(conn: &Connection, key: &str) -> rusqlite::Result<u64> {
    Ok(meta(conn, key)?.and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// The policy version in force and its rules (`None` before central sent any).
pub(super) fn current(conn: &Connection) -> Result<(u64, Option<Rules>), StoreError> {
    let version = meta_number(conn, "policy_version")?;
    let rules = match meta(conn, "policy_rules")? {
        Some(json) => Some(serde_json::from_str(&json).map_err(|e| {
            StoreError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the stored policy rules are unreadable: {e}"),
            ))
        })?),
        None => None,
    };
    Ok((version, rules))
}

fn set_current(conn: &Connection, version: u64, rules: Option<&Rules>) -> Result<(), StoreError> {
    set_meta(conn, "policy_version", &version.to_string())?;
    if let Some(rules) = rules {
        let json = serde_json::to_string(rules)
            .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?;
        set_meta(conn, "policy_rules", &json)?;
    }
    Ok(())
}

/// Starts receiving a snapshot: nothing staged.
pub(super) fn stage_begin(conn: &Connection) -> Result<(), StoreError> {
    conn.execute("DELETE FROM policy_staging", [])?;
    Ok(())
}

/// Stages a chunk of a snapshot's users.
pub(super) fn stage(conn: &Connection, chunk: &[PolicyUser]) -> Result<(), StoreError> {
    let mut insert =
        conn.prepare_cached("INSERT OR REPLACE INTO policy_staging (id, body) VALUES (?1, ?2)")?;
    for user in chunk {
        let body = serde_json::to_string(user)
            .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?;
        insert.execute(params![user.id, body])?;
    }
    Ok(())
}

fn damaged(user: &str, why: impl std::fmt::Display) -> StoreError {
    StoreError::Conflict(format!("policy user {user} is unusable: {why}"))
}

fn put(conn: &Connection, user: &PolicyUser, now: i64) -> Result<(), StoreError> {
    let (prepared, disabled) = from_policy(user).map_err(|e| damaged(&user.id, e))?;
    users::insert(conn, &prepared, disabled, now)
}

/// Replaces every user with the staged ones and puts `version` and `rules`
/// in force. Returns how many users there are now.
pub(super) fn commit_snapshot(
    conn: &Connection,
    version: u64,
    rules: &Rules,
) -> Result<usize, StoreError> {
    // Groups, secrets and lookups go with their users (ON DELETE CASCADE).
    conn.execute("DELETE FROM users", [])?;
    let now = now_ms();
    let mut count = 0;
    {
        let mut stmt = conn.prepare("SELECT id, body FROM policy_staging ORDER BY id")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let id: String = row.get(0)?;
            let user: PolicyUser =
                serde_json::from_str(&row.get::<_, String>(1)?).map_err(|e| damaged(&id, e))?;
            put(conn, &user, now)?;
            count += 1;
        }
    }
    conn.execute("DELETE FROM policy_staging", [])?;
    set_current(conn, version, Some(rules))?;
    Ok(count)
}

/// Applies central's changes from the version in force to `changes.to`.
pub(super) fn apply_changes(conn: &Connection, changes: &PolicyChanges) -> Result<(), StoreError> {
    let (version, _) = current(conn)?;
    if version != changes.from {
        return Err(StoreError::Conflict(format!(
            "policy changes from version {} do not apply to version {version}",
            changes.from
        )));
    }
    let delete = "DELETE FROM users WHERE id = ?1";
    // Every changed user lets go of its rows first, so a card moving from
    // one user to another within the change never collides.
    for id in changes
        .remove
        .iter()
        .chain(changes.upsert.iter().map(|u| &u.id))
    {
        conn.prepare_cached(delete)?.execute(params![id])?;
    }
    let now = now_ms();
    for user in &changes.upsert {
        put(conn, user, now)?;
    }
    set_current(conn, changes.to, changes.rules.as_ref())?;
    Ok(())
}
