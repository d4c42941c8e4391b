//! The nodes sharing the database and the site sessions each holds: what
//! lets any node pass a roaming message or block to a site whose session
//! is on another, and what `central status` lists. SQL for SQLite here;
//! PostgreSQL's in `postgres`, reading the database's clock so that nodes
//! whose clocks disagree still agree on who is alive.
//!
//! A node writes its row at start and its heartbeat every
//! [`HEARTBEAT`]; one not heard from for [`ALIVE_MS`] is taken for dead,
//! and the sessions it held count for nothing (their sites have dialed
//! another node by then, which took them over).

use std::collections::HashMap;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;

/// How often a node says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// A node silent this long is taken for dead: five heartbeats missed.
pub const ALIVE_MS: i64 = 10_000;
/// A dead node's row is dropped after this long (kept until then so that
/// `central status` shows it gone).
pub const FORGET_MS: i64 = 7 * 24 * 3600 * 1000;

/// A node as the database knows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeInfo {
    /// Where the other nodes reach it (`[sync] advertise`).
    pub address: String,
    /// When it last started.
    pub started_ms: i64,
    /// When it last said it was alive.
    pub seen_ms: i64,
    /// Whether it said so within [`ALIVE_MS`].
    pub alive: bool,
    /// The sites whose session it holds, by name.
    pub sites: Vec<String>,
}

/// Writes the row of the node at `address` and forgets the sessions it held
/// before it (re)started, and nodes gone for [`FORGET_MS`].
pub(crate) fn started(
    c: &Connection,
    address: &str,
    certificate: &[u8; 32],
    now_ms: i64,
) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO nodes (address, certificate_sha256, started_ms, seen_ms) \
         VALUES (?1, ?2, ?3, ?3) ON CONFLICT (address) DO UPDATE SET \
         certificate_sha256 = excluded.certificate_sha256, started_ms = excluded.started_ms, \
         seen_ms = excluded.seen_ms",
        params![address, &certificate[..], now_ms],
    )?;
    c.execute("DELETE FROM site_sessions WHERE node = ?1", [address])?;
    c.execute("DELETE FROM nodes WHERE seen_ms < ?1", [now_ms - FORGET_MS])?;
    Ok(())
}

/// The node at `address` is alive at `now_ms`.
pub(crate) fn alive(c: &Connection, address: &str, now_ms: i64) -> Result<(), StoreError> {
    c.execute(
        "UPDATE nodes SET seen_ms = ?2 WHERE address = ?1",
        params![address, now_ms],
    )?;
    Ok(())
}

/// The live node whose certificate has this SHA-256.
pub(crate) fn by_certificate(
    c: &Connection,
    certificate: &[u8; 32],
    now_ms: i64,
) -> Result<Option<String>, StoreError> {
    Ok(c.query_row(
        "SELECT address FROM nodes WHERE certificate_sha256 = ?1 AND seen_ms > ?2",
        params![&certificate[..], now_ms - ALIVE_MS],
        |r| r.get(0),
    )
    .optional()?)
}

/// `site`'s session is on `node` from `now_ms`.
pub(crate) fn session_opened(
    c: &Connection,
    site: &str,
    node: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO site_sessions (site, node, since_ms) VALUES (?1, ?2, ?3) \
         ON CONFLICT (site) DO UPDATE SET node = excluded.node, since_ms = excluded.since_ms",
        params![site, node, now_ms],
    )?;
    Ok(())
}

/// `site` has no session on `node` any more (a newer one elsewhere stays).
pub(crate) fn session_closed(c: &Connection, site: &str, node: &str) -> Result<(), StoreError> {
    c.execute(
        "DELETE FROM site_sessions WHERE site = ?1 AND node = ?2",
        params![site, node],
    )?;
    Ok(())
}

/// The live node holding each of `sites`' sessions; sites without one are
/// left out.
pub(crate) fn sessions_of(
    c: &Connection,
    sites: &[String],
    now_ms: i64,
) -> Result<HashMap<String, String>, StoreError> {
    let mut statement = c.prepare_cached(
        "SELECT s.node FROM site_sessions s JOIN nodes n ON n.address = s.node \
         WHERE s.site = ?1 AND n.seen_ms > ?2",
    )?;
    let mut found = HashMap::new();
    for site in sites {
        let node: Option<String> = statement
            .query_row(params![site, now_ms - ALIVE_MS], |r| r.get(0))
            .optional()?;
        if let Some(node) = node {
            found.insert(site.clone(), node);
        }
    }
    Ok(found)
}

/// Every node, by address, with the sites on it.
pub(crate) fn list(c: &Connection, now_ms: i64) -> Result<Vec<NodeInfo>, StoreError> {
    let mut nodes = c
        .prepare("SELECT address, started_ms, seen_ms FROM nodes ORDER BY address")?
        .query_map([], |r| {
            let seen_ms: i64 = r.get(2)?;
            Ok(NodeInfo {
                address: r.get(0)?,
                started_ms: r.get(1)?,
                seen_ms,
                alive: seen_ms > now_ms - ALIVE_MS,
                sites: Vec::new(),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let sessions = c
        .prepare("SELECT node, site FROM site_sessions ORDER BY site")?
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    attach_sites(&mut nodes, sessions);
    Ok(nodes)
}

/// Puts each (node, site) session under its node.
pub(crate) fn attach_sites(nodes: &mut [NodeInfo], sessions: Vec<(String, String)>) {
    for (node, site) in sessions {
        if let Some(n) = nodes.iter_mut().find(|n| n.address == node) {
            n.sites.push(site);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_site_is_on_the_node_that_last_opened_its_session_while_that_node_lives() {
        let c = super::super::test_db();
        let (one, two) = ("10.0.0.1:7443", "10.0.0.2:7443");
        started(&c, one, &[1; 32], 1_000).unwrap();
        started(&c, two, &[2; 32], 1_000).unwrap();
        session_opened(&c, "branch-1", one, 1_100).unwrap();
        session_opened(&c, "branch-2", one, 1_100).unwrap();
        // branch-1 moved to node two; its old session's end changes nothing.
        session_opened(&c, "branch-1", two, 1_200).unwrap();
        session_closed(&c, "branch-1", one).unwrap();
        let sites = ["branch-1".to_owned(), "branch-2".to_owned(), "x".to_owned()];
        let on = sessions_of(&c, &sites, 2_000).unwrap();
        assert_eq!(on.get("branch-1").map(String::as_str), Some(two));
        assert_eq!(on.get("branch-2").map(String::as_str), Some(one));
        assert_eq!(on.len(), 2);
        assert_eq!(
            by_certificate(&c, &[2; 32], 2_000).unwrap().as_deref(),
            Some(two)
        );
        assert_eq!(by_certificate(&c, &[3; 32], 2_000).unwrap(), None);

        // Node one stops saying it lives: its sessions count for nothing,
        // and it cannot link in.
        alive(&c, two, 1_000 + ALIVE_MS).unwrap();
        let later = 1_001 + ALIVE_MS;
        let on = sessions_of(&c, &sites, later).unwrap();
        assert_eq!(on.len(), 1, "{on:?}");
        assert_eq!(by_certificate(&c, &[1; 32], later).unwrap(), None);
        let listed = list(&c, later).unwrap();
        assert_eq!(listed.len(), 2);
        assert!(!listed[0].alive && listed[1].alive, "{listed:?}");
        assert_eq!(listed[0].sites, ["branch-2"]);
        assert_eq!(listed[1].sites, ["branch-1"]);

        // Started again, it holds nothing until sites come back to it.
        started(&c, one, &[9; 32], later).unwrap();
        let on = sessions_of(&c, &sites, later).unwrap();
        assert_eq!(on.len(), 1, "{on:?}");
        assert_eq!(
            by_certificate(&c, &[9; 32], later).unwrap().as_deref(),
            Some(one)
        );
    }
}
