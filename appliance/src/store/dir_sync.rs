//! Coalesced directory fsyncs.
//!
//! A rename is durable once the directory is fsynced *after* it. When many
//! uploads finish at once, one fsync of the spool directory covers all of
//! their renames, so callers share fsyncs: each takes a ticket after its
//! rename, and returns once an fsync that started after its ticket has
//! completed. One caller at a time runs the fsync (the leader); the others
//! wait for it or for the next one. With N concurrent uploads this costs
//! about two fsyncs instead of N.
//!
//! A failed fsync fails every caller it was meant to cover; it is never
//! silently retried for them (a second fsync can report success for data
//! the first one lost).

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex, MutexGuard};

/// Shares fsyncs of one directory between concurrent callers.
#[derive(Debug)]
pub struct DirSync {
    dir: PathBuf,
    state: Mutex<State>,
    done: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// Last ticket handed out.
    issued: u64,
    /// Every ticket up to this one is durable.
    synced: u64,
    /// Every ticket above `synced` and up to this one saw a failed fsync.
    failed: u64,
    failure: String,
    running: bool,
}

impl DirSync {
    /// Coalesces fsyncs of `dir`.
    pub fn new(dir: PathBuf) -> DirSync {
        DirSync {
            dir,
            state: Mutex::new(State::default()),
            done: Condvar::new(),
        }
    }

    /// Returns once every change made to the directory before this call is durable.
    pub fn sync(&self) -> io::Result<()> {
        let mut state = self.lock()?;
        state.issued += 1;
        let ticket = state.issued;
        loop {
            if state.synced >= ticket {
                return Ok(());
            }
            if state.failed >= ticket {
                return Err(io::Error::other(format!(
                    "fsync of {} failed: {}",
                    self.dir.display(),
                    state.failure
                )));
            }
            if state.running {
                state = self
                    .done
                    .wait(state)
                    .map_err(|_| io::Error::other("directory sync lock poisoned"))?;
                continue;
            }
            // Lead: this fsync covers every ticket issued so far.
            state.running = true;
            let covers = state.issued;
            drop(state);
            let result = File::open(&self.dir).and_then(|d| d.sync_all());
            state = self.lock()?;
            state.running = false;
            match &result {
                Ok(()) => state.synced = state.synced.max(covers),
                Err(e) => {
                    state.failed = state.failed.max(covers);
                    state.failure = e.to_string();
                }
            }
            self.done.notify_all();
        }
    }

    fn lock(&self) -> io::Result<MutexGuard<'_, State>> {
        self.state
            .lock()
            .map_err(|_| io::Error::other("directory sync lock poisoned"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn concurrent_callers_share_fsyncs_and_all_return() {
        let dir = tempfile::tempdir().unwrap();
        let sync = Arc::new(DirSync::new(dir.path().to_owned()));
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let sync = sync.clone();
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        sync.sync().unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let state = sync.state.lock().unwrap();
        assert_eq!(state.issued, 320);
        assert_eq!(state.synced, 320);
    }

    #[test]
    fn a_failing_fsync_fails_its_callers() {
        let sync = DirSync::new(PathBuf::from("/nonexistent/spool"));
        assert!(sync.sync().is_err());
        assert!(
            sync.sync().is_err(),
            "a later call tries again and reports its own failure"
        );
    }
}
