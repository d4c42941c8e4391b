//! Documents kept in the database (small ones, see [`super::spool`]): the
//! `documents` table written and emptied inside the job's own savepoint,
//! and [`Documents`], which opens a job's document wherever it is kept.

use std::io::{self, Cursor, Read};
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;
use super::read_pool::ReadPool;
use super::spool::{DatabaseBody, Spool, SpooledDocument, decode};
use crate::job::{DocumentRecord, JobUuid, StoredIn};

/// Writes what `document` needs in the database for job `uuid`, in the
/// caller's savepoint: its bytes, or a copy of the row it shares (a
/// reprint). A file document needs nothing.
pub(super) fn attach(
    conn: &Connection,
    uuid: JobUuid,
    document: &SpooledDocument,
) -> Result<(), StoreError> {
    match document.database_body() {
        DatabaseBody::None => Ok(()),
        DatabaseBody::Bytes(bytes) => {
            conn.prepare_cached(
                "INSERT INTO documents (uuid, bytes) VALUES (?1, ?2) \
                 ON CONFLICT (uuid) DO UPDATE SET bytes = excluded.bytes",
            )?
            .execute(params![uuid.to_string(), bytes])?;
            Ok(())
        }
        DatabaseBody::CopyOf(from) => {
            let copied = conn
                .prepare_cached(
                    "INSERT INTO documents (uuid, bytes) SELECT ?1, bytes FROM documents \
                     WHERE uuid = ?2",
                )?
                .execute(params![uuid.to_string(), from.to_string()])?;
            if copied == 1 {
                Ok(())
            } else {
                Err(StoreError::NotPossible(crate::job::NotPossible(
                    "the document is no longer kept".into(),
                )))
            }
        }
    }
}

/// Deletes job `uuid`'s document row, in the caller's savepoint.
pub(super) fn detach(conn: &Connection, uuid: JobUuid) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM documents WHERE uuid = ?1")?
        .execute(params![uuid.to_string()])?;
    Ok(())
}

/// The stored bytes of job `uuid`'s document row.
pub(super) fn stored_bytes(conn: &Connection, uuid: JobUuid) -> rusqlite::Result<Option<Vec<u8>>> {
    conn.prepare_cached("SELECT bytes FROM documents WHERE uuid = ?1")?
        .query_row(params![uuid.to_string()], |row| row.get(0))
        .optional()
}

/// Opens jobs' documents wherever they are kept; cheap to clone, used
/// from blocking threads (output, roaming, `spool check`).
#[derive(Clone)]
pub struct Documents {
    spool: Spool,
    readers: Arc<ReadPool>,
}

impl Documents {
    pub(super) fn new(spool: Spool, readers: Arc<ReadPool>) -> Documents {
        Documents { spool, readers }
    }

    /// Job `uuid`'s document, decoded as it is read. Blocking. A document
    /// kept in the database is read whole (it is at most `inline_max`
    /// bytes); a file streams.
    pub fn open(
        &self,
        uuid: JobUuid,
        record: &DocumentRecord,
    ) -> io::Result<Box<dyn Read + Send + 'static>> {
        match record.storage.place {
            StoredIn::SpoolFile => self.spool.open_file(uuid, record.storage.encoding),
            StoredIn::Database => {
                let bytes = self
                    .readers
                    .with(|conn| stored_bytes(conn, uuid))
                    .map_err(|e| io::Error::other(e.to_string()))?
                    .ok_or_else(|| {
                        io::Error::new(
                            io::ErrorKind::NotFound,
                            format!("the document of job {uuid} is missing from the database"),
                        )
                    })?;
                decode(Cursor::new(bytes), record.storage.encoding)
            }
        }
    }
}
