//! Output: handing a stored job to a printer.
//!
//! [`crate::printer::DeviceUri`] says how a printer is reached; [`ipp`],
//! [`socket`] and [`lpd`] speak to it; [`forwarder`] decides when to send what and records the outcome;
//! [`supplies`] reads the printers' supply levels for the IPP queues.
//! Documents are streamed from the spool, decompressed on a blocking thread
//! and checked against their recorded SHA-256 on the way out, so a damaged
//! spool file fails the transfer instead of printing garbage.
//!
//! A job is sent at most once without a person asking again: when a
//! transfer fails after the whole document may have reached the printer,
//! the job is held with a message instead of being retried.

pub mod forwarder;
pub mod ipp;
pub mod lpd;
pub mod socket;
mod store_trouble;
pub mod supplies;

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::io::AsyncRead;
use tokio::sync::mpsc;

use crate::job::JobUuid;
use crate::store::Spool;

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
/// thread. The stream fails (rather than ends) if the file is damaged or its
/// SHA-256 differs from `sha256`, so the receiver never takes it as complete.
/// `finished` is set once the last byte has been handed out.
pub fn document_stream(
    spool: &Spool,
    uuid: JobUuid,
    sha256: String,
    finished: Arc<std::sync::atomic::AtomicBool>,
) -> impl AsyncRead + Send + Unpin + 'static {
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(STREAM_DEPTH);
    let spool = spool.clone();
    tokio::task::spawn_blocking(move || {
        let result = (|| -> std::io::Result<()> {
            let mut reader = spool.open_document(uuid)?;
            let mut hasher = Sha256::new();
            loop {
                let mut buf = vec![0u8; STREAM_CHUNK];
                let n = reader.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                buf.truncate(n);
                hasher.update(&buf);
                if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                    return Ok(()); // receiver gone: the transfer was abandoned
                }
            }
            if hex::encode(hasher.finalize()) != sha256 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("spool file of job {uuid} does not match its SHA-256"),
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
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::AsyncReadExt;

    fn stored(data: &[u8]) -> (tempfile::TempDir, Spool, JobUuid, String) {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("spool"), 1).unwrap();
        let uuid = JobUuid::new();
        let mut w = spool.create(uuid).unwrap();
        w.write_all(data).unwrap();
        let doc = w.finish().unwrap();
        let sha = doc.sha256.clone();
        doc.keep();
        (dir, spool, uuid, sha)
    }

    #[tokio::test]
    async fn streams_the_original_bytes() {
        let data: Vec<u8> = (0..500_000u32).map(|i| (i % 7) as u8).collect();
        let (_dir, spool, uuid, sha) = stored(&data);
        let done = Arc::new(AtomicBool::new(false));
        let mut out = Vec::new();
        document_stream(&spool, uuid, sha, done.clone())
            .read_to_end(&mut out)
            .await
            .unwrap();
        assert_eq!(out, data);
        assert!(done.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_hash_mismatch_fails_the_stream() {
        let (_dir, spool, uuid, _) = stored(b"%PDF-1.4 data");
        let mut out = Vec::new();
        let err = document_stream(&spool, uuid, "00".repeat(32), Arc::default())
            .read_to_end(&mut out)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    }
}
