//! Policy as files: in `[policy] dir`, `users.csv` (the appliance's import
//! format) and `rules.toml` (the `[rules]` shape), when present, are the
//! fleet's users and rules. The directory is watched; a file that fails
//! validation is refused with a message naming the file and line, and the
//! last good policy stays in force. Admins keep these files in git.
//!
//! Hashing is the cost of a reload (argon2 for passwords), so a user whose
//! row did not change since the last load keeps its hashes, and a password
//! that still matches the stored hash keeps it (a new salt would make every
//! reload a change for every site).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use sync_protocol::message::PolicyUser;
use sync_protocol::policy::credentials::HashChecker;
use sync_protocol::policy::users::{self, NewUser, policy_user};
use sync_protocol::rules::Rules;
use tokio::sync::{mpsc, watch};

use crate::admin::{self, AdminReply, UserInput};
use crate::store::{CentralStore, PolicyEdit};
use crate::sync::Shared;

/// The users file.
pub const USERS_FILE: &str = "users.csv";
/// The rules file.
pub const RULES_FILE: &str = "rules.toml";
/// Edits arriving within this are read together (editors write in steps).
const SETTLE: Duration = Duration::from_millis(200);

/// Why a policy file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct FileRefusal {
    /// The file.
    pub path: String,
    /// What is wrong, with the line.
    pub message: String,
}

/// Reads `rules.toml`: the rules, or what is wrong with line numbers.
pub fn parse_rules(text: &str, path: &Path) -> Result<Rules, FileRefusal> {
    let refused = |message: String| FileRefusal {
        path: path.display().to_string(),
        message,
    };
    let rules: Rules = toml::from_str(text).map_err(|e: toml::de::Error| {
        // One line for the log: where, then what.
        let at = e.span().map_or(String::new(), |span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: ")
        });
        refused(format!("{at}{}", e.message().trim()))
    })?;
    if let Some(key) = rules.unknown_keys().first() {
        let line = text
            .lines()
            .position(|l| l.trim_start().starts_with(key.as_str()))
            .map_or(String::new(), |i| format!("line {}: ", i + 1));
        return Err(refused(format!(
            "{line}{key} is not a rule; the rules are force_mono_groups, \
             force_duplex_above_pages, max_pages_per_job and quota"
        )));
    }
    Ok(rules)
}

/// Reads `users.csv` into users to hash, or every problem with its line.
pub fn parse_users(bytes: &[u8], path: &Path) -> Result<Vec<NewUser>, FileRefusal> {
    users::parse_csv(bytes).map_err(|problems| FileRefusal {
        path: path.display().to_string(),
        message: problems.join("; "),
    })
}

/// The hashes made for each user at the last load, by the digest of the
/// row they came from.
#[derive(Default)]
struct HashCache {
    rows: HashMap<String, ([u8; 32], PolicyUser)>,
}

fn row_digest(user: &NewUser) -> [u8; 32] {
    let input = UserInput::from(user.clone());
    Sha256::digest(serde_json::to_vec(&input).unwrap_or_default()).into()
}

impl HashCache {
    /// The policy form of `users`, reusing what can be reused.
    fn prepare(
        &mut self,
        users: &[NewUser],
        stored: &HashMap<String, PolicyUser>,
        key: &sync_protocol::policy::credentials::LookupKey,
        pin_only: bool,
        path: &Path,
    ) -> Result<Vec<PolicyUser>, FileRefusal> {
        let mut checker = HashChecker::new();
        let mut out = Vec::with_capacity(users.len());
        let mut rows = HashMap::with_capacity(users.len());
        for user in users {
            let digest = row_digest(user);
            let prepared = match self.rows.get(&user.id) {
                Some((d, p)) if *d == digest => p.clone(),
                _ => {
                    let mut fresh = policy_user(user, key, pin_only).map_err(|e| FileRefusal {
                        path: path.display().to_string(),
                        message: e.to_string(),
                    })?;
                    if let (Some(password), Some(old)) = (
                        &user.password,
                        stored.get(&user.id).and_then(|u| u.password.as_ref()),
                    ) && checker.verify_for_user(old, &user.id, password.expose())
                    {
                        fresh.password = Some(old.clone());
                    }
                    fresh
                }
            };
            rows.insert(user.id.clone(), (digest, prepared.clone()));
            out.push(prepared);
        }
        self.rows = rows;
        Ok(out)
    }
}

/// Loads the directory's files now and whenever they change, until
/// `shutdown` turns true.
pub async fn watch<S: CentralStore>(
    dir: PathBuf,
    shared: Arc<Shared<S>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (tx, mut changed) = mpsc::channel::<()>(16);
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Only writes, creations, renames and removals of the policy files:
        // reading them (which this watcher does) is an event too.
        let Ok(event) = event else { return };
        let ours = event.paths.iter().any(|p| {
            p.file_name()
                .is_some_and(|n| n == USERS_FILE || n == RULES_FILE)
        });
        if ours && !event.kind.is_access() && !event.kind.is_other() {
            let _ = tx.try_send(());
        }
    })
    .and_then(|mut w| w.watch(&dir, RecursiveMode::NonRecursive).map(|()| w));
    let _watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(dir = %dir.display(), error = %e,
                "policy directory cannot be watched; its files are not applied");
            return;
        }
    };
    let mut cache = HashCache::default();
    tracing::info!(dir = %dir.display(), "policy directory watched");
    loop {
        load(&dir, &shared, &mut cache).await;
        tokio::select! {
            Some(()) = changed.recv() => {
                // Let the editor finish, then read once for the whole burst.
                tokio::time::sleep(SETTLE).await;
                while changed.try_recv().is_ok() {}
            }
            _ = crate::service::stopped(&mut shutdown) => return,
        }
    }
}

async fn load<S: CentralStore>(dir: &Path, shared: &Arc<Shared<S>>, cache: &mut HashCache) {
    let rules_path = dir.join(RULES_FILE);
    if let Ok(text) = std::fs::read_to_string(&rules_path) {
        match parse_rules(&text, &rules_path) {
            Ok(rules) => report(
                admin::edit(shared, PolicyEdit::SetRules(rules), serde_json::json!({})).await,
                &rules_path,
            ),
            Err(refusal) => refused(&refusal),
        }
    }
    let users_path = dir.join(USERS_FILE);
    if let Ok(bytes) = std::fs::read(&users_path) {
        let parsed = match parse_users(&bytes, &users_path) {
            Ok(users) => users,
            Err(refusal) => return refused(&refusal),
        };
        let stored: HashMap<String, PolicyUser> = match shared.store.users().await {
            Ok(users) => users.into_iter().map(|u| (u.id.clone(), u)).collect(),
            Err(e) => {
                tracing::error!(error = %e, "policy directory: cannot read the users in force");
                return;
            }
        };
        let key = shared.identity.lookup_key();
        let pin_only = shared.config.policy.pin_only_login;
        let mut taken = std::mem::take(cache);
        let path = users_path.clone();
        let prepared = tokio::task::spawn_blocking(move || {
            let result = taken.prepare(&parsed, &stored, &key, pin_only, &path);
            (taken, result)
        })
        .await;
        match prepared {
            Ok((kept, Ok(users))) => {
                *cache = kept;
                report(
                    admin::edit(
                        shared,
                        PolicyEdit::ReplaceAllUsers(users),
                        serde_json::json!({}),
                    )
                    .await,
                    &users_path,
                );
            }
            Ok((kept, Err(refusal))) => {
                *cache = kept;
                refused(&refusal);
            }
            Err(e) => tracing::error!(error = %e, "policy directory: hashing failed"),
        }
    }
}

fn report(reply: AdminReply, path: &Path) {
    match reply {
        AdminReply::Ok(done) => tracing::info!(
            file = %path.display(),
            policy_version = %done["policy_version"],
            "policy file applied"
        ),
        AdminReply::Error { message, .. } => tracing::error!(
            file = %path.display(),
            "policy file refused, the previous policy stays in force: {message}"
        ),
    }
}

fn refused(refusal: &FileRefusal) {
    tracing::error!(
        file = %refusal.path,
        "policy file refused, the previous policy stays in force: {}",
        refusal.message
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_errors_name_the_file_and_line() {
        let path = Path::new("/policy/rules.toml");
        let e =
            parse_rules("max_pages_per_job = 5\nquota = { pages = \"x\" }\n", path).unwrap_err();
        assert!(e.to_string().starts_with("/policy/rules.toml: "), "{e}");
        assert!(e.message.contains("line 2"), "{e}");
        let e = parse_rules("max_pages_per_job = 5\nmax_colour = 3\n", path).unwrap_err();
        assert!(
            e.message.contains("line 2") && e.message.contains("max_colour"),
            "{e}"
        );
        let good = parse_rules("force_mono_groups = [\"students\"]\n", path).unwrap();
        assert_eq!(good.force_mono_groups, ["students"]);
    }

    #[test]
    fn users_errors_name_the_file_and_line() {
        let path = Path::new("/policy/users.csv");
        let e = parse_users(b"id,display_name,pin\ncarol,Carol,12\n", path).unwrap_err();
        assert!(
            e.to_string().contains("/policy/users.csv") && e.message.contains("line 2"),
            "{e}"
        );
    }

    #[test]
    fn an_unchanged_row_keeps_its_hashes_and_a_matching_password_its_salt() {
        let key = sync_protocol::policy::credentials::LookupKey::new([3; 32]);
        let path = Path::new("users.csv");
        let rows = b"id,display_name,password\ndave,Dave,correct horse\n";
        let users = parse_users(rows, path).unwrap();
        let mut cache = HashCache::default();
        let first = cache
            .prepare(&users, &HashMap::new(), &key, false, path)
            .unwrap();
        let again = cache
            .prepare(&users, &HashMap::new(), &key, false, path)
            .unwrap();
        assert_eq!(first, again);
        // A new process (empty cache) keeps the stored hash when it matches.
        let stored = HashMap::from([("dave".to_string(), first[0].clone())]);
        let restarted = HashCache::default()
            .prepare(&users, &stored, &key, false, path)
            .unwrap();
        assert_eq!(restarted, first);
    }
}
