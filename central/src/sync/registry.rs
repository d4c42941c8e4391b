//! The sessions open now, by site: what `site revoke` ends, what status
//! reports, and where job roaming relays a message or a block for a site.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sync_protocol::message::{Message, Refusal};
use tokio::sync::mpsc;

/// Open sessions by site; each can be told to end with a refusal.
#[derive(Debug, Default)]
pub struct Registry {
    sessions: Mutex<HashMap<String, HashMap<u64, Entry>>>,
    next: AtomicU64,
}

/// One open session.
#[derive(Debug)]
struct Entry {
    end: mpsc::Sender<Refusal>,
    link: Option<Link>,
}

/// How to reach a session that speaks job roaming.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    /// Messages for the session to send to its site.
    pub(crate) inbox: mpsc::Sender<Message>,
    /// Its connection, for the streams that carry blocks.
    pub(crate) connection: quinn::Connection,
}

/// A session's place in the registry, given up when dropped.
#[derive(Debug)]
pub(crate) struct Registration {
    registry: Arc<Registry>,
    site: String,
    id: u64,
}

impl Registry {
    /// Registers a session of `site`; it is told to end through `end`.
    pub(crate) fn register(
        self: &Arc<Self>,
        site: &str,
        end: mpsc::Sender<Refusal>,
    ) -> Registration {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions
                .entry(site.to_owned())
                .or_default()
                .insert(id, Entry { end, link: None });
        }
        Registration {
            registry: self.clone(),
            site: site.to_owned(),
            id,
        }
    }

    /// Tells every session of `site` to end with `refusal`; how many there were.
    pub fn end_site(&self, site: &str, refusal: &Refusal) -> usize {
        let ends: Vec<_> = self
            .sessions
            .lock()
            .ok()
            .and_then(|s| {
                s.get(site)
                    .map(|m| m.values().map(|e| e.end.clone()).collect())
            })
            .unwrap_or_default();
        for end in &ends {
            // A session already ending has dropped its receiver: fine.
            let _ = end.try_send(refusal.clone());
        }
        ends.len()
    }

    /// The newest session of `site` that speaks job roaming.
    pub(crate) fn link(&self, site: &str) -> Option<Link> {
        let sessions = self.sessions.lock().ok()?;
        let of_site = sessions.get(site)?;
        let newest = of_site
            .iter()
            .filter_map(|(id, e)| e.link.as_ref().map(|l| (id, l)))
            .max_by_key(|(id, _)| **id)?;
        Some(newest.1.clone())
    }

    /// Whether `site` has a session open on this node now.
    pub(crate) fn connected_now(&self, site: &str) -> bool {
        self.sessions
            .lock()
            .map(|s| s.contains_key(site))
            .unwrap_or(false)
    }

    /// The sites with a session open now.
    pub fn connected(&self) -> Vec<String> {
        let mut sites: Vec<String> = self
            .sessions
            .lock()
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default();
        sites.sort();
        sites
    }
}

impl Registration {
    /// The session runs and speaks job roaming: messages and blocks for
    /// its site come to it from now on.
    pub(crate) fn link(&self, link: Link) {
        if let Ok(mut sessions) = self.registry.sessions.lock()
            && let Some(entry) = sessions
                .get_mut(&self.site)
                .and_then(|of_site| of_site.get_mut(&self.id))
        {
            entry.link = Some(link);
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut sessions) = self.registry.sessions.lock()
            && let Some(of_site) = sessions.get_mut(&self.site)
        {
            of_site.remove(&self.id);
            if of_site.is_empty() {
                sessions.remove(&self.site);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sync_protocol::message::RefusalCode;

    #[test]
    fn ending_a_site_reaches_each_of_its_sessions_and_dropping_unregisters() {
        let registry = Arc::new(Registry::default());
        let (a, mut a_rx) = mpsc::channel(1);
        let (b, mut b_rx) = mpsc::channel(1);
        let first = registry.register("branch-1", a);
        let _second = registry.register("branch-1", b);
        assert_eq!(registry.connected(), ["branch-1"]);
        let revoked = Refusal::new(RefusalCode::Revoked, "revoked");
        assert_eq!(registry.end_site("branch-1", &revoked), 2);
        assert_eq!(a_rx.try_recv().unwrap(), revoked);
        assert_eq!(b_rx.try_recv().unwrap(), revoked);
        drop(first);
        assert_eq!(registry.end_site("branch-2", &revoked), 0);
        assert_eq!(registry.connected(), ["branch-1"]);
    }
}
