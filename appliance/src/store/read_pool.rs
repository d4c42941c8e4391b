//! Read-only connections reused across blocking calls.

use std::io;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};

use rusqlite::{Connection, OpenFlags};

use super::StoreError;

/// Read connections at most (each has its own page cache).
pub(super) const READERS: usize = 8;

/// Read-only connections reused across blocking calls: at most
/// [`READERS`] exist, and a read waits for a free one, so a burst of
/// requests cannot open a connection (and a page cache) each.
pub(super) struct ReadPool {
    path: PathBuf,
    state: Mutex<PoolState>,
    freed: Condvar,
}

#[derive(Default)]
pub(super) struct PoolState {
    idle: Vec<Connection>,
    open: usize,
}

impl ReadPool {
    pub(super) fn new(path: PathBuf) -> ReadPool {
        ReadPool {
            path,
            state: Mutex::new(PoolState::default()),
            freed: Condvar::new(),
        }
    }

    pub(super) fn with<T, E>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, E>,
    ) -> Result<T, StoreError>
    where
        StoreError: From<E>,
    {
        let conn = self.take()?;
        let result = f(&conn);
        if let Ok(mut state) = self.state.lock() {
            state.idle.push(conn);
            self.freed.notify_one();
        }
        Ok(result?)
    }

    /// An idle connection, a new one while fewer than [`READERS`] exist,
    /// or the next one given back.
    fn take(&self) -> Result<Connection, StoreError> {
        let poisoned = || StoreError::Io(io::Error::other("the read pool is poisoned"));
        let mut state = self.state.lock().map_err(|_| poisoned())?;
        loop {
            if let Some(conn) = state.idle.pop() {
                return Ok(conn);
            }
            if state.open < READERS {
                state.open += 1;
                drop(state);
                let opened = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .and_then(|conn| {
                    conn.busy_timeout(std::time::Duration::from_secs(10))?;
                    Ok(conn)
                });
                if opened.is_err()
                    && let Ok(mut state) = self.state.lock()
                {
                    state.open -= 1;
                }
                return Ok(opened?);
            }
            state = self.freed.wait(state).map_err(|_| poisoned())?;
        }
    }
}
