//! The store's one error type, and what SQLite and I/O errors become.

use std::io;

use crate::job::NotPossible;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No job with that identity.
    #[error("job not found")]
    NotFound,
    /// The job's state does not allow the change.
    #[error(transparent)]
    NotPossible(#[from] NotPossible),
    /// The disk holding the data directory is full.
    #[error("disk full: {0}")]
    DiskFull(String),
    /// SQLite failed.
    #[error("database error: {0}")]
    Database(rusqlite::Error),
    /// The schema could not be brought up to date.
    #[error("database migration failed: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    /// Reading or writing spool files failed.
    #[error("spool I/O error: {0}")]
    Io(io::Error),
    /// The store is shutting down.
    #[error("the job store is shut down")]
    Closed,
    /// The write would duplicate something that must be unique.
    #[error("{0}")]
    Conflict(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => StoreError::DiskFull(e.to_string()),
            _ => StoreError::Database(e),
        }
    }
}

impl From<io::Error> for StoreError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::StorageFull {
            StoreError::DiskFull(e.to_string())
        } else {
            StoreError::Io(e)
        }
    }
}
