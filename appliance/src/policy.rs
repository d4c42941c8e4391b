//! The policy in force at run time, swapped atomically while the daemon runs.
//!
//! Users and their credentials live in the store, where a change is one
//! transaction; the print rules are read on every release. Both can change
//! under a running daemon (central pushes a new policy), so the rules are
//! not a value cloned at start-up but the current [`Policy`] behind a
//! `watch` channel: a reader takes one snapshot ([`PolicyView::current`])
//! and decides a whole request with it, and a new policy replaces the old
//! one for every request that starts after it.

use std::sync::Arc;

use tokio::sync::watch;

use crate::rules::Rules;

/// One version of the policy the site enforces.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    /// Central's version of this policy; 0 for a standalone site's own.
    pub version: u64,
    /// The print rules.
    pub rules: Rules,
}

/// Publishes new policies; the daemon's sync keeps it, the readers hold
/// [`PolicyView`]s.
#[derive(Debug, Clone)]
pub struct PolicySource {
    sender: Arc<watch::Sender<Arc<Policy>>>,
}

/// A reader's handle on the policy in force.
#[derive(Debug, Clone)]
pub struct PolicyView {
    receiver: watch::Receiver<Arc<Policy>>,
}

impl PolicySource {
    /// A source whose policy in force is `initial`.
    pub fn new(initial: Policy) -> PolicySource {
        let (sender, _) = watch::channel(Arc::new(initial));
        PolicySource {
            sender: Arc::new(sender),
        }
    }

    /// A reader of this source's policy.
    pub fn view(&self) -> PolicyView {
        PolicyView {
            receiver: self.sender.subscribe(),
        }
    }

    /// Puts `policy` in force for every request that starts from now on.
    pub fn publish(&self, policy: Policy) {
        self.sender.send_replace(Arc::new(policy));
    }

    /// The policy in force.
    pub fn current(&self) -> Arc<Policy> {
        self.sender.borrow().clone()
    }
}

impl PolicyView {
    /// The policy in force now: one consistent snapshot, kept for as long
    /// as the caller holds it even if a newer one is published meanwhile.
    pub fn current(&self) -> Arc<Policy> {
        self.receiver.borrow().clone()
    }

    /// Waits until a newer policy is published; `false` once the source
    /// is gone.
    pub async fn changed(&mut self) -> bool {
        self.receiver.changed().await.is_ok()
    }

    /// A view fixed on `policy`, for tests and tools that need no source.
    pub fn fixed(policy: Policy) -> PolicyView {
        PolicySource::new(policy).view()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_limit(version: u64, max_pages_per_job: u32) -> Policy {
        Policy {
            version,
            rules: Rules {
                max_pages_per_job,
                ..Rules::default()
            },
        }
    }

    #[test]
    fn a_published_policy_reaches_every_view_and_a_held_snapshot_stays_whole() {
        let source = PolicySource::new(with_limit(0, 5));
        let a = source.view();
        let b = a.clone();
        let held = a.current();
        source.publish(with_limit(7, 10));
        assert_eq!(a.current().version, 7);
        assert_eq!(b.current().rules.max_pages_per_job, 10);
        assert_eq!(source.current().version, 7);
        // The request that took its snapshot before keeps deciding with it.
        assert_eq!(*held, with_limit(0, 5));
    }

    #[test]
    fn a_view_outlives_nothing_it_needs() {
        let view = {
            let source = PolicySource::new(with_limit(3, 1));
            source.view()
        };
        assert_eq!(view.current().version, 3);
    }
}
