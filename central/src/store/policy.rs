//! SQL for the fleet policy: users (as `PolicyUser` JSON, with the version
//! that last changed each, removed ones kept as tombstones) and the rules,
//! under one version counter that every effective edit moves by one.

use std::collections::{HashMap, HashSet};

use rusqlite::{Connection, OptionalExtension, params};
use sync_protocol::message::{PolicyChanges, PolicyUser};
use sync_protocol::rules::Rules;
use tokio::sync::mpsc;

use super::{CHUNK_USERS, PolicyDelta, SnapshotHead, SnapshotPart, StoreError};

/// A change an admin (or the policy directory) makes.
#[derive(Debug, Clone, PartialEq)]
pub enum PolicyEdit {
    /// Adds users, all or none: one that exists already is a conflict.
    AddUsers(Vec<PolicyUser>),
    /// Disables or enables users, all or none: an unknown one is an error.
    SetDisabled {
        /// Who.
        ids: Vec<String>,
        /// Disabled (true) or enabled.
        disabled: bool,
    },
    /// Replaces the rules.
    SetRules(Rules),
    /// Makes the users exactly these (the policy directory's `users.csv`):
    /// changed ones replaced, missing ones removed.
    ReplaceAllUsers(Vec<PolicyUser>),
}

/// What an edit needs read before it can be decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum EditNeeds {
    /// The stored bodies of these users, where in force.
    Users(Vec<String>),
    /// Every user in force.
    AllUsers,
    /// The rules.
    Rules,
}

impl PolicyEdit {
    /// What must be read to decide this edit.
    pub(super) fn needs(&self) -> EditNeeds {
        match self {
            PolicyEdit::AddUsers(users) => {
                EditNeeds::Users(users.iter().map(|u| u.id.clone()).collect())
            }
            PolicyEdit::SetDisabled { ids, .. } => EditNeeds::Users(ids.clone()),
            PolicyEdit::SetRules(_) => EditNeeds::Rules,
            PolicyEdit::ReplaceAllUsers(_) => EditNeeds::AllUsers,
        }
    }
}

/// What an edit changes, decided from what was stored before it; both
/// backends apply it the same way: removals, then every put user's card and
/// PIN lookups let go, then each put user's lookups taken (so a card may
/// move between two users within one edit) and its body stored.
#[derive(Debug, Default, PartialEq)]
pub(super) struct PolicyChange {
    /// Users to remove (kept as tombstones).
    pub(super) remove: Vec<String>,
    /// Users to store, new or changed.
    pub(super) put: Vec<PolicyUser>,
    /// The new rules, when they change.
    pub(super) rules: Option<Rules>,
}

impl PolicyChange {
    /// Whether the edit changes nothing (no new version).
    pub(super) fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.put.is_empty() && self.rules.is_none()
    }
}

/// Decides `edit` against the stored bodies of the users in force it needs
/// (`current`, by id) and the stored rules (read only for
/// [`EditNeeds::Rules`]).
pub(super) fn decide(
    edit: PolicyEdit,
    current: &HashMap<String, String>,
    rules: Option<&Rules>,
) -> Result<PolicyChange, StoreError> {
    let mut change = PolicyChange::default();
    match edit {
        PolicyEdit::AddUsers(users) => {
            if let Some(user) = users.iter().find(|u| current.contains_key(&u.id)) {
                return Err(StoreError::Conflict(format!(
                    "user {} exists already; nobody was added",
                    user.id
                )));
            }
            change.put = users;
        }
        PolicyEdit::SetDisabled { ids, disabled } => {
            for id in &ids {
                let body = current.get(id).ok_or_else(|| {
                    StoreError::NotFound(format!("no user {id}; nobody was changed"))
                })?;
                let mut user = decode(body)?;
                if user.disabled != disabled {
                    user.disabled = disabled;
                    change.put.push(user);
                }
            }
        }
        PolicyEdit::SetRules(new) => {
            if rules != Some(&new) {
                change.rules = Some(new);
            }
        }
        PolicyEdit::ReplaceAllUsers(users) => {
            let keep: HashSet<&str> = users.iter().map(|u| u.id.as_str()).collect();
            change.remove = current
                .keys()
                .filter(|id| !keep.contains(id.as_str()))
                .cloned()
                .collect();
            change.remove.sort();
            for user in users {
                if current.get(&user.id).map(String::as_str) != Some(encode(&user)?.as_str()) {
                    change.put.push(user);
                }
            }
        }
    }
    Ok(change)
}

/// A user's card and PIN-only lookups, as (kind, value).
pub(super) fn lookups(user: &PolicyUser) -> impl Iterator<Item = (&'static str, &str)> {
    user.cards
        .iter()
        .map(|c| ("card", c.as_str()))
        .chain(user.pin_only.iter().map(|p| ("pin_only", p.as_str())))
}

/// The error for `user` taking a lookup of `kind` that `holder` has.
pub(super) fn lookup_taken(user: &PolicyUser, kind: &str, holder: &str) -> StoreError {
    StoreError::Conflict(match kind {
        "card" => format!(
            "user {}: a card given is registered to {holder} already",
            user.id
        ),
        _ => format!(
            "user {}: the PIN is {holder}'s already (PIN-only login needs unique PINs)",
            user.id
        ),
    })
}

pub(super) fn decode(body: &str) -> Result<PolicyUser, StoreError> {
    serde_json::from_str(body)
        .map_err(|e| StoreError::Unavailable(format!("stored user unreadable: {e}")))
}

pub(super) fn encode(user: &PolicyUser) -> Result<String, StoreError> {
    serde_json::to_string(user).map_err(|e| StoreError::Invalid(e.to_string()))
}

pub(super) fn encode_rules(rules: &Rules) -> Result<String, StoreError> {
    serde_json::to_string(rules).map_err(|e| StoreError::Invalid(e.to_string()))
}

pub(super) fn decode_rules(json: &str) -> Result<Rules, StoreError> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::Unavailable(format!("stored rules unreadable: {e}")))
}

pub(super) fn parse_number(key: &str, value: &str) -> Result<u64, StoreError> {
    value
        .parse()
        .map_err(|_| StoreError::Unavailable(format!("policy.{key} is not a number")))
}

/// What a site at `since` gets when the current version is `now`, before
/// anything else is read: `None` means the changes since it, unless more
/// than [`CHUNK_USERS`] users changed.
pub(super) fn delta_without_reading(since: u64, now: u64) -> Option<PolicyDelta> {
    if since == now {
        return Some(PolicyDelta::Current);
    }
    // A site that never had policy, or claims a version this central never
    // reached (its database was recreated), gets everything.
    (since == 0 || since > now).then_some(PolicyDelta::Snapshot { version: now })
}

fn get(conn: &Connection, key: &str) -> Result<String, StoreError> {
    Ok(conn
        .prepare_cached("SELECT value FROM policy WHERE key = ?1")?
        .query_row(params![key], |r| r.get(0))?)
}

fn set(conn: &Connection, key: &str, value: &str) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE policy SET value = ?2 WHERE key = ?1")?
        .execute(params![key, value])?;
    Ok(())
}

fn number(conn: &Connection, key: &str) -> Result<u64, StoreError> {
    parse_number(key, &get(conn, key)?)
}

pub(super) fn version(conn: &Connection) -> Result<u64, StoreError> {
    number(conn, "version")
}

fn rules(conn: &Connection) -> Result<Rules, StoreError> {
    decode_rules(&get(conn, "rules")?)
}

/// The stored body of a user in force (not removed).
fn current(conn: &Connection, id: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT body FROM users WHERE id = ?1 AND removed = 0")?
        .query_row(params![id], |r| r.get(0))
        .optional()?)
}

fn drop_lookups(conn: &Connection, id: &str) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM user_lookups WHERE user_id = ?1")?
        .execute(params![id])?;
    Ok(())
}

/// Registers the user's lookups; one another user in force has is a conflict.
fn add_lookups(conn: &Connection, user: &PolicyUser) -> Result<(), StoreError> {
    for (kind, lookup) in lookups(user) {
        let holder: Option<String> = conn
            .prepare_cached("SELECT user_id FROM user_lookups WHERE kind = ?1 AND lookup = ?2")?
            .query_row(params![kind, lookup], |r| r.get(0))
            .optional()?;
        match holder {
            Some(other) if other != user.id => return Err(lookup_taken(user, kind, &other)),
            Some(_) => {}
            None => {
                conn.prepare_cached(
                    "INSERT INTO user_lookups (kind, lookup, user_id) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![kind, lookup, user.id])?;
            }
        }
    }
    Ok(())
}

pub(super) fn edit(conn: &Connection, edit: PolicyEdit) -> Result<u64, StoreError> {
    let before = version(conn)?;
    let mut current = HashMap::new();
    let mut stored_rules = None;
    match edit.needs() {
        EditNeeds::Users(ids) => {
            for id in ids {
                if let Some(body) = self::current(conn, &id)? {
                    current.insert(id, body);
                }
            }
        }
        EditNeeds::AllUsers => {
            let mut stmt = conn.prepare_cached("SELECT id, body FROM users WHERE removed = 0")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            for row in rows {
                let (id, body): (String, String) = row?;
                current.insert(id, body);
            }
        }
        EditNeeds::Rules => stored_rules = Some(rules(conn)?),
    }
    let change = decide(edit, &current, stored_rules.as_ref())?;
    if change.is_empty() {
        return Ok(before);
    }
    let next = before + 1;
    for id in &change.remove {
        drop_lookups(conn, id)?;
        conn.prepare_cached("UPDATE users SET removed = 1, version = ?2 WHERE id = ?1")?
            .execute(params![id, next as i64])?;
    }
    for user in &change.put {
        drop_lookups(conn, &user.id)?;
    }
    for user in &change.put {
        add_lookups(conn, user)?;
        conn.prepare_cached(
            "INSERT INTO users (id, version, removed, body) VALUES (?1, ?2, 0, ?3) \
             ON CONFLICT (id) DO UPDATE SET version = excluded.version, removed = 0, \
             body = excluded.body",
        )?
        .execute(params![user.id, next as i64, encode(user)?])?;
    }
    if let Some(new) = &change.rules {
        set(conn, "rules", &encode_rules(new)?)?;
        set(conn, "rules_version", &next.to_string())?;
    }
    set(conn, "version", &next.to_string())?;
    Ok(next)
}

pub(super) fn since(conn: &Connection, since: u64) -> Result<PolicyDelta, StoreError> {
    let tx = conn.unchecked_transaction()?;
    let now = version(&tx)?;
    if let Some(delta) = delta_without_reading(since, now) {
        return Ok(delta);
    }
    let changed: i64 = tx
        .prepare_cached("SELECT count(*) FROM users WHERE version > ?1")?
        .query_row(params![since as i64], |r| r.get(0))?;
    if changed as usize > CHUNK_USERS {
        return Ok(PolicyDelta::Snapshot { version: now });
    }
    let mut upsert = Vec::new();
    let mut remove = Vec::new();
    {
        let mut stmt = tx
            .prepare_cached("SELECT id, removed, body FROM users WHERE version > ?1 ORDER BY id")?;
        let mut rows = stmt.query(params![since as i64])?;
        while let Some(row) = rows.next()? {
            if row.get::<_, bool>(1)? {
                remove.push(row.get(0)?);
            } else {
                upsert.push(decode(&row.get::<_, String>(2)?)?);
            }
        }
    }
    let rules = (number(&tx, "rules_version")? > since)
        .then(|| rules(&tx))
        .transpose()?;
    tx.commit()?;
    Ok(PolicyDelta::Changes(PolicyChanges {
        from: since,
        to: now,
        upsert,
        remove,
        rules,
    }))
}

pub(super) fn snapshot(
    conn: &Connection,
    parts: &mpsc::Sender<SnapshotPart>,
) -> Result<(), StoreError> {
    let tx = conn.unchecked_transaction()?;
    let users: i64 = tx
        .prepare_cached("SELECT count(*) FROM users WHERE removed = 0")?
        .query_row([], |r| r.get(0))?;
    let head = SnapshotHead {
        version: version(&tx)?,
        users: users.max(0) as u64,
        rules: rules(&tx)?,
    };
    let send = |part| parts.blocking_send(part).map_err(|_| StoreError::Closed);
    send(SnapshotPart::Head(head))?;
    let mut stmt = tx.prepare_cached("SELECT body FROM users WHERE removed = 0 ORDER BY id")?;
    let mut rows = stmt.query([])?;
    let mut chunk = Vec::with_capacity(CHUNK_USERS);
    while let Some(row) = rows.next()? {
        chunk.push(decode(&row.get::<_, String>(0)?)?);
        if chunk.len() == CHUNK_USERS {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_USERS));
            send(SnapshotPart::Users(full))?;
        }
    }
    if !chunk.is_empty() {
        send(SnapshotPart::Users(chunk))?;
    }
    drop(rows);
    drop(stmt);
    tx.commit()?;
    Ok(())
}

pub(super) fn users(conn: &Connection) -> Result<Vec<PolicyUser>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT body FROM users WHERE removed = 0 ORDER BY id")?;
    let bodies = stmt.query_map([], |r| r.get::<_, String>(0))?;
    bodies.map(|b| decode(&b?)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::test_db as db;

    fn user(id: &str) -> PolicyUser {
        PolicyUser {
            id: id.into(),
            name: id.to_uppercase(),
            email: None,
            groups: vec![],
            disabled: false,
            password: None,
            pin: Some(format!("{id}-pin")),
            pin_only: None,
            cards: vec![],
        }
    }

    #[test]
    fn each_effective_edit_is_one_version_and_changes_since_any_are_known() {
        let conn = db();
        assert_eq!(since(&conn, 0).unwrap(), PolicyDelta::Current);
        assert_eq!(
            edit(
                &conn,
                PolicyEdit::AddUsers(vec![user("alice"), user("bob")])
            )
            .unwrap(),
            1
        );
        assert!(matches!(
            edit(
                &conn,
                PolicyEdit::AddUsers(vec![user("carol"), user("bob")])
            ),
            Err(StoreError::Conflict(_))
        ));
        let disable = |disabled| PolicyEdit::SetDisabled {
            ids: vec!["bob".into()],
            disabled,
        };
        assert_eq!(edit(&conn, disable(true)).unwrap(), 2);
        // Disabling again changes nothing: no new version.
        assert_eq!(edit(&conn, disable(true)).unwrap(), 2);
        let limit = Rules {
            max_pages_per_job: 5,
            ..Rules::default()
        };
        assert_eq!(edit(&conn, PolicyEdit::SetRules(limit.clone())).unwrap(), 3);
        assert_eq!(
            since(&conn, 0).unwrap(),
            PolicyDelta::Snapshot { version: 3 }
        );
        assert_eq!(
            since(&conn, 9).unwrap(),
            PolicyDelta::Snapshot { version: 3 }
        );
        let PolicyDelta::Changes(c) = since(&conn, 1).unwrap() else {
            panic!("changes expected")
        };
        assert_eq!((c.from, c.to), (1, 3));
        assert_eq!(c.upsert.len(), 1);
        assert!(c.upsert[0].disabled);
        assert_eq!(c.rules, Some(limit));
        let PolicyDelta::Changes(c) = since(&conn, 2).unwrap() else {
            panic!("changes expected")
        };
        assert!(c.upsert.is_empty() && c.rules.is_some());
    }

    #[test]
    fn replacing_all_users_removes_the_missing_as_tombstones() {
        let conn = db();
        edit(
            &conn,
            PolicyEdit::AddUsers(vec![user("alice"), user("bob")]),
        )
        .unwrap();
        let mut alice = user("alice");
        alice.groups = vec!["staff".into()];
        assert_eq!(
            edit(
                &conn,
                PolicyEdit::ReplaceAllUsers(vec![alice.clone(), user("carol")])
            )
            .unwrap(),
            2
        );
        // The same set again is no change.
        assert_eq!(
            edit(
                &conn,
                PolicyEdit::ReplaceAllUsers(vec![alice.clone(), user("carol")])
            )
            .unwrap(),
            2
        );
        let PolicyDelta::Changes(c) = since(&conn, 1).unwrap() else {
            panic!("changes expected")
        };
        assert_eq!(c.remove, ["bob"]);
        assert_eq!(
            c.upsert.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(),
            ["alice", "carol"]
        );
        assert_eq!(users(&conn).unwrap().len(), 2);
    }

    #[test]
    fn a_card_belongs_to_one_user_but_may_move_within_one_edit() {
        let conn = db();
        let with_card = |id: &str, card: &str| PolicyUser {
            cards: vec![card.into()],
            ..user(id)
        };
        edit(&conn, PolicyEdit::AddUsers(vec![with_card("alice", "c1")])).unwrap();
        let e = edit(&conn, PolicyEdit::AddUsers(vec![with_card("bob", "c1")])).unwrap_err();
        assert!(e.to_string().contains("registered to alice"), "{e}");
        // The file moves the card from alice to bob: one edit, no conflict.
        let moved = edit(
            &conn,
            PolicyEdit::ReplaceAllUsers(vec![with_card("bob", "c1"), with_card("alice", "c2")]),
        )
        .unwrap();
        assert_eq!(moved, 2);
        let e = edit(&conn, PolicyEdit::AddUsers(vec![with_card("carol", "c2")])).unwrap_err();
        assert!(e.to_string().contains("registered to alice"), "{e}");
    }

    #[test]
    fn a_snapshot_comes_in_bounded_chunks_at_one_version() {
        let conn = db();
        let many: Vec<_> = (0..2500).map(|i| user(&format!("u{i:05}"))).collect();
        edit(&conn, PolicyEdit::AddUsers(many)).unwrap();
        let (tx, mut rx) = mpsc::channel::<SnapshotPart>(2);
        let parts = std::thread::scope(|s| {
            let reader = s.spawn(|| std::iter::from_fn(|| rx.blocking_recv()).collect::<Vec<_>>());
            snapshot(&conn, &tx).unwrap();
            drop(tx);
            reader.join().unwrap()
        });
        let SnapshotPart::Head(head) = &parts[0] else {
            panic!("the head comes first")
        };
        assert_eq!((head.version, head.users), (1, 2500));
        let sizes: Vec<usize> = parts[1..]
            .iter()
            .map(|p| match p {
                SnapshotPart::Users(u) => u.len(),
                SnapshotPart::Head(_) => 0,
            })
            .collect();
        assert_eq!(sizes, [1000, 1000, 500]);
    }
}
