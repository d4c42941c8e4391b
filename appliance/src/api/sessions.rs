//! Login sessions at printers: a random bearer token per login, bound to
//! the printer it was made at, ending after a short idle time.
//!
//! Tokens are 256 random bits, handed out once and kept only as their
//! SHA-256, so the table leaks nothing usable and lookups do not compare
//! secret bytes. Time is passed in, so expiry is tested without waiting.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

/// Most sessions kept; beyond it the least recently used one ends.
const MAX_SESSIONS: usize = 10_000;

/// Who is logged in where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Session {
    /// User id.
    pub(super) user: String,
    /// Name to greet them with.
    pub(super) display_name: String,
    /// The user's groups, for rules.
    pub(super) groups: Vec<String>,
    /// The printer the session belongs to.
    pub(super) device: String,
    last_used_ms: i64,
}

impl Session {
    /// A session for `user` at `device`, used now.
    pub(super) fn new(user: crate::users::LoginUser, device: String, now_ms: i64) -> Session {
        Session {
            user: user.id,
            display_name: user.display_name,
            groups: user.groups,
            device,
            last_used_ms: now_ms,
        }
    }
}

/// The live sessions.
#[derive(Debug)]
pub(super) struct Sessions {
    idle_ms: i64,
    by_digest: HashMap<[u8; 32], Session>,
}

/// A fresh token: 32 bytes from the operating system's CSPRNG, hex.
fn new_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Sessions {
    /// Sessions that end after `idle_secs` unused.
    pub(super) fn new(idle_secs: u64) -> Sessions {
        Sessions {
            idle_ms: i64::try_from(idle_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
            by_digest: HashMap::new(),
        }
    }

    /// Starts a session; returns its token.
    pub(super) fn create(&mut self, session: Session) -> Result<String, getrandom::Error> {
        let now = session.last_used_ms;
        if self.by_digest.len() >= MAX_SESSIONS {
            self.by_digest
                .retain(|_, s| now - s.last_used_ms < self.idle_ms);
            if self.by_digest.len() >= MAX_SESSIONS
                && let Some(oldest) = self
                    .by_digest
                    .iter()
                    .min_by_key(|(_, s)| s.last_used_ms)
                    .map(|(k, _)| *k)
            {
                self.by_digest.remove(&oldest);
            }
        }
        let token = new_token()?;
        self.by_digest.insert(digest(&token), session);
        Ok(token)
    }

    /// The session of `token` if it is live, marking it used now.
    pub(super) fn touch(&mut self, token: &str, now_ms: i64) -> Option<Session> {
        let key = digest(token);
        let live = self
            .by_digest
            .get(&key)
            .is_some_and(|s| now_ms - s.last_used_ms < self.idle_ms);
        if !live {
            self.by_digest.remove(&key);
            return None;
        }
        let session = self.by_digest.get_mut(&key)?;
        session.last_used_ms = now_ms;
        Some(session.clone())
    }

    /// Ends the session of `token`.
    pub(super) fn remove(&mut self, token: &str) -> Option<Session> {
        self.by_digest.remove(&digest(token))
    }

    /// The users with a session.
    pub(super) fn users(&self) -> Vec<String> {
        let mut users: Vec<String> = self.by_digest.values().map(|s| s.user.clone()).collect();
        users.sort();
        users.dedup();
        users
    }

    /// The policy changed for `id`: their sessions take the new name and
    /// groups, or end if the user is gone or disabled. How many ended.
    pub(super) fn follow_policy(
        &mut self,
        id: &str,
        now: Option<&crate::users::LoginUser>,
    ) -> usize {
        let before = self.by_digest.len();
        match now {
            Some(user) if !user.disabled => {
                for session in self.by_digest.values_mut().filter(|s| s.user == id) {
                    session.display_name = user.display_name.clone();
                    session.groups = user.groups.clone();
                }
            }
            _ => self.by_digest.retain(|_, s| s.user != id),
        }
        before - self.by_digest.len()
    }

    /// The idle timeout in seconds, as told to clients.
    pub(super) fn idle_secs(&self) -> i64 {
        self.idle_ms / 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::LoginUser;

    fn alice(now: i64) -> Session {
        Session::new(
            LoginUser {
                id: "alice".into(),
                display_name: "Alice".into(),
                groups: vec![],
                disabled: false,
            },
            "lobby".into(),
            now,
        )
    }

    #[test]
    fn tokens_are_long_random_and_unguessable() {
        let mut sessions = Sessions::new(60);
        let a = sessions.create(alice(0)).unwrap();
        let b = sessions.create(alice(0)).unwrap();
        assert_eq!(a.len(), 64, "256 bits, hex");
        assert_ne!(a, b);
        assert!(sessions.touch(&a, 1).is_some());
        assert!(sessions.touch(&a[..63], 1).is_none());
    }

    #[test]
    fn idle_sessions_end_and_use_keeps_them_alive() {
        let mut sessions = Sessions::new(60);
        let token = sessions.create(alice(0)).unwrap();
        assert!(sessions.touch(&token, 59_000).is_some());
        assert!(sessions.touch(&token, 118_000).is_some());
        assert!(sessions.touch(&token, 178_000).is_none());
        assert!(sessions.touch(&token, 178_001).is_none(), "gone for good");
    }

    #[test]
    fn logout_ends_the_session() {
        let mut sessions = Sessions::new(60);
        let token = sessions.create(alice(0)).unwrap();
        assert_eq!(
            sessions.remove(&token).map(|s| s.device),
            Some("lobby".into())
        );
        assert!(sessions.touch(&token, 1).is_none());
    }

    #[test]
    fn sessions_follow_the_policy_of_their_user() {
        let mut sessions = Sessions::new(60);
        let token = sessions.create(alice(0)).unwrap();
        assert_eq!(sessions.users(), ["alice"]);
        let moved = LoginUser {
            id: "alice".into(),
            display_name: "Alice S.".into(),
            groups: vec!["students".into()],
            disabled: false,
        };
        assert_eq!(sessions.follow_policy("alice", Some(&moved)), 0);
        assert_eq!(sessions.touch(&token, 1).unwrap().groups, ["students"]);
        let disabled = LoginUser {
            disabled: true,
            ..moved
        };
        assert_eq!(sessions.follow_policy("alice", Some(&disabled)), 1);
        assert!(sessions.touch(&token, 2).is_none());
    }
}
