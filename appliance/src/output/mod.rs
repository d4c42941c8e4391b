//! Output: handing a stored job to a printer.
//!
//! [`crate::printer::DeviceUri`] says how a printer is reached; [`ipp`],
//! [`socket`] and [`lpd`] speak to it; [`forwarder`] decides when to send what and records the outcome;
//! [`supplies`] reads the printers' supply levels for the IPP queues.
//! Documents are read back and checked against their recorded SHA-256
//! before the printer is contacted ([`verify_document`]), so a damaged
//! document is never sent: some printers print whatever arrived when a
//! transfer breaks. They are then streamed from the store and decoded on a
//! blocking thread, without hashing them a second time: a stored document
//! is never rewritten (a file is renamed into place once; a reprint links
//! it), so the bytes just checked are the bytes sent, and a second SHA-256
//! cost 0.6 ms per MB of every release.
//!
//! A job is sent at most once without a person asking again: when a
//! transfer fails after the whole document may have reached the printer,
//! the job is held with a message instead of being retried.

pub mod forwarder;
pub mod ipp;
pub mod lpd;
pub mod pool;
pub mod socket;
mod store_trouble;
pub mod supplies;

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::AsyncBufRead;
use tokio::sync::mpsc;

use crate::job::{DocumentRecord, JobUuid};
use crate::store::Documents;

/// Why a hand-over did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputError {
    /// The printer did not take the job (down, busy, not accepting); nothing
    /// printed, so trying again later is safe.
    #[error("{0}")]
    Retry(String),
    /// The transfer broke after the printer may have received the whole
    /// document; sending again could print twice.
    #[error("{0}")]
    Uncertain(String),
    /// The printer refused the job for good (format, attributes, ...).
    #[error("{0}")]
    Rejected(String),
    /// The stored document is damaged or gone; nothing was sent.
    #[error("{0}")]
    Damaged(String),
}

/// Reads a job's stored document once and checks its size and SHA-256
/// against what intake recorded, on a blocking thread. A mismatch or an
/// unreadable document is [`OutputError::Damaged`]: it must not be sent.
pub async fn verify_document(
    documents: &Documents,
    uuid: JobUuid,
    document: &DocumentRecord,
) -> Result<(), OutputError> {
    let (documents, expected) = (documents.clone(), document.clone());
    let checked = tokio::task::spawn_blocking(move || {
        documents
            .open(uuid, &expected)
            .and_then(crate::store::spool::hash_document)
            .map(|(size, sha256)| size == expected.size && sha256 == expected.sha256)
    })
    .await
    .map_err(|e| OutputError::Retry(format!("the document check did not finish: {e}")))?;
    match checked {
        Ok(true) => Ok(()),
        Ok(false) => Err(OutputError::Damaged(format!(
            "the stored document of job {uuid} does not match its SHA-256"
        ))),
        Err(e) => Err(OutputError::Damaged(format!(
            "the stored document of job {uuid} cannot be read: {e}"
        ))),
    }
}

/// The document of a job being sent (a job without one cannot be sent).
pub(crate) fn document_of(
    job: &crate::job::JobRecord,
) -> Result<&crate::job::DocumentRecord, OutputError> {
    job.document
        .as_ref()
        .ok_or_else(|| OutputError::Rejected("the job has no document".into()))
}

/// Opens a TCP connection to a printer; failing to is always safe to retry.
pub(crate) async fn connect(
    host: &str,
    port: u16,
    timeout: std::time::Duration,
) -> Result<tokio::net::TcpStream, OutputError> {
    tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port)))
        .await
        .map_err(|_| OutputError::Retry(format!("printer {host}:{port} did not answer")))?
        .map_err(|e| OutputError::Retry(format!("printer {host}:{port} not reachable: {e}")))
}

/// Chunks in flight between the decompressing thread and the network.
const STREAM_DEPTH: usize = 4;
const STREAM_CHUNK: usize = 64 * 1024;

/// A stored document as an async byte stream, decompressed on a blocking
/// thread; checked by [`verify_document`] first. The stream fails (rather
/// than ends) if the document cannot be read or decoded, or is not the
/// size recorded, so the receiver never takes a short one as complete.
/// `finished` is set once the last byte has been handed out.
///
/// Read it with `tokio::io::copy_buf`: each 64 KiB chunk then goes to the
/// socket in one write, where `copy`'s 8 KiB buffer made eight (on
/// loopback each write also runs the receiver's TCP work in the sender's
/// time: 0.7 ms of the appliance's CPU per 1 MB release, `release_bench`).
pub fn document_stream(
    documents: &Documents,
    uuid: JobUuid,
    document: &DocumentRecord,
    finished: Arc<std::sync::atomic::AtomicBool>,
) -> impl AsyncBufRead + Send + Unpin + 'static {
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(STREAM_DEPTH);
    let (documents, document) = (documents.clone(), document.clone());
    tokio::task::spawn_blocking(move || {
        let result = (|| -> std::io::Result<()> {
            let mut reader = documents.open(uuid, &document)?;
            let mut sent = 0u64;
            loop {
                let mut buf = vec![0u8; STREAM_CHUNK];
                let n = reader.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                buf.truncate(n);
                sent += n as u64;
                if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                    return Ok(()); // receiver gone: the transfer was abandoned
                }
            }
            if sent != document.size {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "the stored document of job {uuid} ended after {sent} of {} bytes",
                        document.size
                    ),
                ));
            }
            Ok(())
        })();
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(e));
        }
    });
    let stream = futures_util::stream::unfold((rx, finished), |(mut rx, finished)| async move {
        match rx.recv().await {
            Some(item) => Some((item, (rx, finished))),
            None => {
                finished.store(true, std::sync::atomic::Ordering::SeqCst);
                None
            }
        }
    });
    tokio_util::io::StreamReader::new(Box::pin(stream))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{Encoding, JobRecord, StoredIn};
    use crate::metrics::Metrics;
    use crate::store::{JobStore, test_options};
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::AsyncReadExt;

    /// A job committed with `data` as its document, wherever the store
    /// keeps it.
    async fn stored(data: &[u8]) -> (tempfile::TempDir, JobStore, JobRecord) {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) =
            JobStore::open(dir.path(), test_options(0), Arc::new(Metrics::new())).unwrap();
        let job = JobRecord::sample();
        let mut w = store.spool().create(job.uuid).unwrap();
        w.write_all(data).unwrap();
        let doc = w.finish().unwrap();
        let mut job = job;
        if let Some(record) = job.document.as_mut() {
            record.sha256 = doc.sha256.clone();
            record.size = doc.size;
        }
        let job = store.insert(job, Some(doc)).await.unwrap();
        (dir, store, job)
    }

    async fn stream(store: &JobStore, job: &JobRecord) -> (std::io::Result<usize>, Vec<u8>, bool) {
        let done = Arc::new(AtomicBool::new(false));
        let mut out = Vec::new();
        let document = job.document.as_ref().unwrap();
        let read = document_stream(&store.documents(), job.uuid, document, done.clone())
            .read_to_end(&mut out)
            .await;
        (read, out, done.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn streams_the_original_bytes_from_the_database_and_from_files() {
        let repetitive: Vec<u8> = (0..500_000u32).map(|i| (i % 7) as u8).collect();
        let mut state = 1u32;
        let noise: Vec<u8> = (0..100_000)
            .map(|_| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (state >> 16) as u8
            })
            .collect();
        for (data, place, encoding) in [
            (&repetitive, StoredIn::SpoolFile, Encoding::Zstd),
            (
                &repetitive[..100_000].to_vec(),
                StoredIn::Database,
                Encoding::Zstd,
            ),
            (&noise, StoredIn::Database, Encoding::Identity),
        ] {
            let (_dir, store, job) = stored(data).await;
            let storage = job.document.as_ref().unwrap().storage;
            assert_eq!((storage.place, storage.encoding), (place, encoding));
            let (read, out, done) = stream(&store, &job).await;
            read.unwrap();
            assert_eq!(&out, data);
            assert!(done);
        }
    }

    #[tokio::test]
    async fn a_document_shorter_than_recorded_fails_the_stream() {
        let (_dir, store, mut job) = stored(b"%PDF-1.4 data").await;
        job.document.as_mut().unwrap().size += 1;
        let (read, _, done) = stream(&store, &job).await;
        assert_eq!(read.unwrap_err().kind(), std::io::ErrorKind::InvalidData);
        assert!(!done);
    }

    #[tokio::test]
    async fn a_hash_mismatch_is_found_before_sending() {
        let (_dir, store, mut job) = stored(b"%PDF-1.4 data").await;
        job.document.as_mut().unwrap().sha256 = "00".repeat(32);
        let document = job.document.as_ref().unwrap();
        let checked = verify_document(&store.documents(), job.uuid, document).await;
        assert!(
            matches!(checked, Err(OutputError::Damaged(_))),
            "{checked:?}"
        );
    }
}
