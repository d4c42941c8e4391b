//! One answer per question "what changed since version v?" for every
//! session that asks it while the policy stays at one version. A policy
//! edit moves every connected site from the same version to the next at
//! the same moment: a thousand sessions would ask the storage the same
//! question a thousand times (through a pool of connections, for
//! PostgreSQL). The first asks; the rest take its answer.
//!
//! An answer is kept only while it reaches the version this node
//! announces, and all are dropped when that moves; one that reaches a
//! newer version (another node's edit, not yet heard of here) is passed on
//! but not kept, so nothing stale is ever handed out as current.

use std::collections::HashMap;

use tokio::sync::Mutex;

use crate::store::{CentralStore, PolicyDelta, StoreError};

/// Answers at most kept: sites lag behind by a few versions at most;
/// beyond this the oldest question is asked of the storage again.
const KEPT: usize = 64;

/// The answers for the version they were read at.
#[derive(Debug, Default)]
pub struct Deltas {
    kept: Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    /// The announced version the answers reach.
    version: u64,
    /// By the version asked from.
    answers: HashMap<u64, PolicyDelta>,
}

impl Deltas {
    /// What a site at `since` needs when this node announces `current`.
    /// Sessions asking at once wait for the one answer rather than each
    /// asking the storage.
    pub async fn since<S: CentralStore>(
        &self,
        store: &S,
        since: u64,
        current: u64,
    ) -> Result<PolicyDelta, StoreError> {
        let mut kept = self.kept.lock().await;
        if kept.version != current {
            kept.version = current;
            kept.answers.clear();
        }
        if let Some(answer) = kept.answers.get(&since) {
            return Ok(answer.clone());
        }
        let answer = store.policy_since(since).await?;
        if reaches(&answer, since) == Some(current) && kept.answers.len() < KEPT {
            kept.answers.insert(since, answer.clone());
        }
        Ok(answer)
    }
}

/// The version a site at `since` is at after `answer`, when it can be told
/// without reading a snapshot.
fn reaches(answer: &PolicyDelta, since: u64) -> Option<u64> {
    match answer {
        PolicyDelta::Current => Some(since),
        PolicyDelta::Changes(changes) => Some(changes.to),
        PolicyDelta::Snapshot { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{PolicyEdit, SqliteStore};

    #[tokio::test]
    async fn one_question_per_version_is_asked_and_a_newer_policy_is_never_answered_stale() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let deltas = Deltas::default();
        let edit = |max| {
            PolicyEdit::SetRules(sync_protocol::rules::Rules {
                max_pages_per_job: max,
                ..Default::default()
            })
        };
        store.edit_policy(edit(10)).await.unwrap();
        store.edit_policy(edit(20)).await.unwrap();
        let first = deltas.since(&store, 1, 2).await.unwrap();
        assert!(
            matches!(&first, PolicyDelta::Changes(c) if c.to == 2),
            "{first:?}"
        );
        // The storage moves on; while this node announces 2 the kept answer
        // stands (it is what version 2 was) ...
        store.edit_policy(edit(30)).await.unwrap();
        assert_eq!(deltas.since(&store, 1, 2).await.unwrap(), first);
        // ... and once it announces 3, the answer is read again.
        let second = deltas.since(&store, 1, 3).await.unwrap();
        assert!(
            matches!(&second, PolicyDelta::Changes(c) if c.to == 3),
            "{second:?}"
        );
        // An answer reaching past the announced version is not kept.
        store.edit_policy(edit(40)).await.unwrap();
        let ahead = deltas.since(&store, 2, 3).await.unwrap();
        assert!(
            matches!(&ahead, PolicyDelta::Changes(c) if c.to == 4),
            "{ahead:?}"
        );
        assert!(!deltas.kept.lock().await.answers.contains_key(&2));
    }
}
