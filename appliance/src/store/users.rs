//! User rows: the only place user data meets SQL. Adding users is one
//! transaction for the whole batch (an import lands whole or not at all).

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;
use crate::credentials::LookupKind;
use crate::job::now_ms;
use crate::users::{LoginUser, PreparedUser, UserSummary};

/// Adds users. Refuses (and writes nothing) if an id exists or a card or
/// PIN-only PIN is already registered to someone.
pub(super) fn add(conn: &mut Connection, users: &[PreparedUser]) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let now = now_ms();
    for user in users {
        let exists: Option<i64> = tx
            .prepare_cached("SELECT 1 FROM users WHERE id = ?1")?
            .query_row(params![user.id], |r| r.get(0))
            .optional()?;
        if exists.is_some() {
            return Err(StoreError::Conflict(format!(
                "user {} already exists",
                user.id
            )));
        }
        insert(&tx, user, false, now)?;
    }
    tx.commit()?;
    Ok(())
}

/// Writes one user's rows (the caller checked what must be checked).
pub(super) fn insert(
    conn: &Connection,
    user: &PreparedUser,
    disabled: bool,
    now: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO users (id, display_name, email, disabled, created_ms, updated_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
    )?
    .execute(params![
        user.id,
        user.display_name,
        user.email,
        disabled,
        now
    ])?;
    for group in &user.groups {
        conn.prepare_cached("INSERT INTO user_groups (user_id, group_name) VALUES (?1, ?2)")?
            .execute(params![user.id, group])?;
    }
    for (kind, phc) in [("password", &user.password_phc), ("pin", &user.pin_phc)] {
        if let Some(phc) = phc {
            conn.prepare_cached(
                "INSERT INTO user_secrets (user_id, kind, phc) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![user.id, kind, phc])?;
        }
    }
    for (kind, lookup) in &user.lookups {
        let taken: Option<i64> = conn
            .prepare_cached("SELECT 1 FROM credential_lookups WHERE kind = ?1 AND lookup = ?2")?
            .query_row(params![kind.as_str(), &lookup[..]], |r| r.get(0))
            .optional()?;
        if taken.is_some() {
            return Err(StoreError::Conflict(match kind {
                crate::credentials::LookupKind::Card => format!(
                    "user {}: a card given is already registered to another user",
                    user.id
                ),
                crate::credentials::LookupKind::PinOnly | crate::credentials::LookupKind::Pin => {
                    format!(
                        "user {}: the PIN is already used by another user (PIN-only login needs \
                     unique PINs)",
                        user.id
                    )
                }
            }));
        }
        conn.prepare_cached(
            "INSERT INTO credential_lookups (kind, lookup, user_id) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![kind.as_str(), &lookup[..], user.id])?;
    }
    Ok(())
}

/// Disables or enables a user's logins.
pub(super) fn set_disabled(conn: &Connection, id: &str, disabled: bool) -> Result<(), StoreError> {
    let changed = conn.execute(
        "UPDATE users SET disabled = ?2, updated_ms = ?3 WHERE id = ?1",
        params![id, disabled, now_ms()],
    )?;
    if changed == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// How many users may log in (not disabled).
pub(super) fn enabled_count(conn: &Connection) -> rusqlite::Result<u64> {
    conn.prepare_cached("SELECT count(*) FROM users WHERE NOT disabled")?
        .query_row([], |row| row.get::<_, i64>(0))
        .map(|n| n.max(0) as u64)
}

/// Every user, by id, with which kinds of login each has.
pub(super) fn list(conn: &Connection) -> Result<Vec<UserSummary>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT u.id, u.display_name, u.email, u.disabled, \
           (SELECT group_concat(group_name, ',') FROM \
              (SELECT group_name FROM user_groups g WHERE g.user_id = u.id ORDER BY group_name)), \
           EXISTS (SELECT 1 FROM user_secrets s WHERE s.user_id = u.id AND s.kind = 'password'), \
           EXISTS (SELECT 1 FROM user_secrets s WHERE s.user_id = u.id AND s.kind = 'pin'), \
           EXISTS (SELECT 1 FROM credential_lookups c WHERE c.user_id = u.id AND c.kind = 'pin_only'), \
           (SELECT count(*) FROM credential_lookups c WHERE c.user_id = u.id AND c.kind = 'card') \
         FROM users u ORDER BY u.id",
    )?;
    let rows = stmt.query_map([], |row| {
        let groups: Option<String> = row.get(4)?;
        Ok(UserSummary {
            id: row.get(0)?,
            display_name: row.get(1)?,
            email: row.get(2)?,
            disabled: row.get(3)?,
            groups: groups
                .map(|g| g.split(',').map(str::to_owned).collect())
                .unwrap_or_default(),
            password: row.get(5)?,
            pin: row.get(6)?,
            pin_only: row.get(7)?,
            cards: row.get::<_, i64>(8)?.max(0) as usize,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A user by id, with the argon2 PHC string of their `kind` secret
/// (`pin` or `password`) if they have one.
pub(super) fn login_by_id(
    conn: &Connection,
    id: &str,
    kind: &str,
) -> rusqlite::Result<Option<(LoginUser, Option<String>)>> {
    let Some(user) = login_user(conn, id)? else {
        return Ok(None);
    };
    let phc = conn
        .prepare_cached("SELECT phc FROM user_secrets WHERE user_id = ?1 AND kind = ?2")?
        .query_row(params![id, kind], |r| r.get(0))
        .optional()?;
    Ok(Some((user, phc)))
}

/// The user a card or PIN-only lookup hash belongs to.
pub(super) fn login_by_lookup(
    conn: &Connection,
    kind: LookupKind,
    lookup: &[u8; 32],
) -> rusqlite::Result<Option<LoginUser>> {
    let id: Option<String> = conn
        .prepare_cached("SELECT user_id FROM credential_lookups WHERE kind = ?1 AND lookup = ?2")?
        .query_row(params![kind.as_str(), &lookup[..]], |r| r.get(0))
        .optional()?;
    match id {
        Some(id) => login_user(conn, &id),
        None => Ok(None),
    }
}

/// A user as a login sees them, without any secret.
pub(super) fn login_user(conn: &Connection, id: &str) -> rusqlite::Result<Option<LoginUser>> {
    let found = conn
        .prepare_cached("SELECT display_name, disabled FROM users WHERE id = ?1")?
        .query_row(params![id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?))
        })
        .optional()?;
    let Some((display_name, disabled)) = found else {
        return Ok(None);
    };
    let mut stmt = conn.prepare_cached(
        "SELECT group_name FROM user_groups WHERE user_id = ?1 ORDER BY group_name",
    )?;
    let groups = stmt
        .query_map(params![id], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(Some(LoginUser {
        id: id.to_owned(),
        display_name,
        groups,
        disabled,
    }))
}

#[cfg(test)]
mod tests {
    use crate::credentials::{LookupKey, Secret};
    use crate::store::{StoreError, UserAdmin};
    use crate::users::{NewUser, prepare};

    fn user(id: &str, card: &str) -> NewUser {
        NewUser {
            id: id.into(),
            display_name: id.into(),
            cards: vec![Secret::new(card)],
            ..NewUser::default()
        }
    }

    #[test]
    fn a_conflict_anywhere_in_a_batch_adds_nobody() {
        let dir = tempfile::tempdir().unwrap();
        let mut admin = UserAdmin::open(dir.path()).unwrap();
        let key: LookupKey = admin.key().clone();
        let first = prepare(&user("ann", "1111AAAA"), &key, false).unwrap();
        admin.add(&[first]).unwrap();

        let batch = [
            prepare(&user("ben", "2222BBBB"), &key, false).unwrap(),
            prepare(&user("cat", "11-11-aa-aa"), &key, false).unwrap(),
        ];
        let err = admin.add(&batch).unwrap_err();
        assert!(
            matches!(err, StoreError::Conflict(ref m) if m.contains("cat")),
            "{err}"
        );
        let ids: Vec<String> = admin.list().unwrap().into_iter().map(|u| u.id).collect();
        assert_eq!(ids, ["ann"], "ben must not be added when cat conflicts");
    }
}
