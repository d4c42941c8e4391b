//! Document intake: streams a request's document into a spool file.
//!
//! The copy runs on a blocking thread (zstd and SHA-256 are CPU work, fsync
//! is blocking I/O) and reads the body through a bridge, so memory stays at
//! one buffer however large the document. The first bytes are checked
//! against the declared format before anything is written; the size limit
//! is enforced while copying; any failure drops the temporary file.

use std::io::{self, Read, Write};

use tokio::io::AsyncRead;
use tokio_util::io::SyncIoBridge;

use super::error::IppError;
use crate::format;
use crate::job::JobUuid;
use crate::store::{Spool, SpooledDocument};

const CHUNK: usize = 64 * 1024;

/// A document safely in the spool's temporary area, with its stored format.
#[derive(Debug)]
pub struct Received {
    /// The fsynced temporary file, ready for the store to commit.
    pub document: SpooledDocument,
    /// Declared format, or the detected one for `application/octet-stream`.
    pub format: String,
}

/// Copies `body` into the spool for job `uuid`. Returns `None` when the body
/// is empty (a Send-Document that only closes the job).
pub async fn receive<R>(
    spool: Spool,
    uuid: JobUuid,
    body: R,
    declared_format: String,
    max_bytes: u64,
    idle_timeout_secs: u64,
) -> Result<Option<Received>, IppError>
where
    R: AsyncRead + Send + Unpin + 'static,
{
    let reader = SyncIoBridge::new(body);
    tokio::task::spawn_blocking(move || {
        copy_to_spool(&spool, uuid, reader, &declared_format, max_bytes)
    })
    .await
    .map_err(|e| IppError::Internal(format!("intake task failed: {e}")))?
    .map_err(|e| e.into_ipp(idle_timeout_secs))
}

/// Where a copy failed: the client side or the disk side.
#[derive(Debug)]
enum CopyError {
    Client(io::Error),
    Disk(io::Error),
    TooLarge(u64),
    Format(format::FormatMismatch),
}

impl CopyError {
    fn into_ipp(self, idle_timeout_secs: u64) -> IppError {
        match self {
            CopyError::Client(e) if e.kind() == io::ErrorKind::TimedOut => {
                IppError::Timeout(idle_timeout_secs)
            }
            CopyError::Client(e) => {
                IppError::BadRequest(format!("the document could not be read: {e}"))
            }
            CopyError::Disk(e) if e.kind() == io::ErrorKind::StorageFull => IppError::DiskFull,
            CopyError::Disk(e) => IppError::Internal(format!("spool write failed: {e}")),
            CopyError::TooLarge(limit) => IppError::TooLarge(format!(
                "the document exceeds this appliance's limit of {limit} bytes"
            )),
            CopyError::Format(mismatch) => IppError::FormatError(mismatch.to_string()),
        }
    }
}

fn copy_to_spool(
    spool: &Spool,
    uuid: JobUuid,
    mut reader: impl Read,
    declared_format: &str,
    max_bytes: u64,
) -> Result<Option<Received>, CopyError> {
    let mut buf = vec![0u8; CHUNK];
    let mut prefix_len = 0;
    while prefix_len < format::PREFIX_LEN {
        let n = reader
            .read(&mut buf[prefix_len..format::PREFIX_LEN])
            .map_err(CopyError::Client)?;
        if n == 0 {
            break;
        }
        prefix_len += n;
    }
    if prefix_len == 0 {
        return Ok(None);
    }
    if prefix_len as u64 > max_bytes {
        return Err(CopyError::TooLarge(max_bytes));
    }
    let format =
        format::check_prefix(declared_format, &buf[..prefix_len]).map_err(CopyError::Format)?;
    let mut writer = spool.create(uuid).map_err(CopyError::Disk)?;
    writer
        .write_all(&buf[..prefix_len])
        .map_err(CopyError::Disk)?;
    loop {
        let n = reader.read(&mut buf).map_err(CopyError::Client)?;
        if n == 0 {
            break;
        }
        if writer.size() + n as u64 > max_bytes {
            return Err(CopyError::TooLarge(max_bytes));
        }
        writer.write_all(&buf[..n]).map_err(CopyError::Disk)?;
    }
    let document = writer.finish().map_err(CopyError::Disk)?;
    Ok(Some(Received { document, format }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spool() -> (tempfile::TempDir, Spool) {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("spool"), 1).unwrap();
        (dir, spool)
    }

    fn tmp_files(dir: &tempfile::TempDir) -> usize {
        std::fs::read_dir(dir.path().join("spool/tmp"))
            .unwrap()
            .count()
    }

    #[test]
    fn copies_and_detects() {
        let (dir, spool) = spool();
        let doc = b"%PDF-1.4 hello".repeat(10_000);
        let got = copy_to_spool(
            &spool,
            JobUuid::new(),
            &doc[..],
            "application/octet-stream",
            1 << 20,
        )
        .unwrap()
        .unwrap();
        assert_eq!(got.format, "application/pdf");
        assert_eq!(got.document.size, doc.len() as u64);
        drop(got);
        assert_eq!(tmp_files(&dir), 0);
    }

    #[test]
    fn empty_body_is_no_document() {
        let (_dir, spool) = spool();
        assert!(
            copy_to_spool(&spool, JobUuid::new(), &b""[..], "application/pdf", 10)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn over_the_limit_leaves_nothing_behind() {
        let (dir, spool) = spool();
        let doc = b"%PDF-".repeat(100_000);
        let err = copy_to_spool(&spool, JobUuid::new(), &doc[..], "application/pdf", 200_000)
            .unwrap_err();
        assert!(matches!(err, CopyError::TooLarge(200_000)));
        assert_eq!(tmp_files(&dir), 0);
    }

    #[test]
    fn mislabelled_documents_are_refused_before_writing() {
        let (dir, spool) = spool();
        let err = copy_to_spool(
            &spool,
            JobUuid::new(),
            &b"%!PS-Adobe-3.0\n"[..],
            "application/pdf",
            1000,
        )
        .unwrap_err();
        assert!(matches!(err, CopyError::Format(_)));
        assert_eq!(tmp_files(&dir), 0);
    }

    #[test]
    fn client_errors_and_timeouts_map_to_ipp() {
        let timeout = CopyError::Client(io::Error::new(io::ErrorKind::TimedOut, "x"));
        assert!(matches!(timeout.into_ipp(30), IppError::Timeout(30)));
        let full = CopyError::Disk(io::Error::new(io::ErrorKind::StorageFull, "x"));
        assert!(matches!(full.into_ipp(30), IppError::DiskFull));
    }
}
