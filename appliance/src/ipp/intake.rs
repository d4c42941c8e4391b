//! Document intake: streams a request's document into a spool file.
//!
//! Two stages run side by side: the async side reads the body in chunks of
//! up to 256 KiB into a channel holding at most `DEPTH` of them, and a
//! blocking thread hashes, compresses, analyses and writes each chunk (zstd
//! and SHA-256 are CPU work, fsync blocks). So the network and the disk
//! overlap, and memory stays at a few chunks however large the document.
//! Every chunk in flight, and every spool writer, holds a permit of one
//! [`UploadBudget`] shared by all uploads, so many concurrent uploads wait
//! for each other instead of multiplying the buffers; one client address
//! takes at most a quarter of the writers, and nobody waits for a permit
//! longer than 10 s (`BUSY_WAIT`; then `server-error-busy`). Slow clients do
//! not keep theirs: the body reader cuts an upload under the rate floor. The first bytes are checked against the
//! declared format before anything is written; the size limit is enforced
//! while copying; any failure drops the temporary file. Documents never
//! take the room the [`DiskReserve`] keeps for state changes: once it is
//! released (the disk is full), intake refuses them, also mid-upload.

use std::io::{self, Write};

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::body::TooSlow;
use super::error::IppError;
use crate::analysis::{Analysis, Analyzer};
use crate::format;
use crate::job::JobUuid;
use crate::store::{DiskReserve, Spool, SpooledDocument};

const CHUNK: usize = 256 * 1024;
/// Chunks read ahead of the writing thread.
const DEPTH: usize = 4;
/// Chunks in flight across all uploads (8 MiB).
const BUDGET_CHUNKS: usize = 32;
/// Documents written to the spool at once (each needs a compressor and
/// write buffer, about 0.5 MiB); further uploads wait for a turn.
const BUDGET_WRITERS: usize = 16;
/// Spool writers one client address holds at most: a few hosts cannot
/// take them all.
const WRITERS_PER_CLIENT: usize = BUDGET_WRITERS / 4;
/// Longest wait for a spool writer or a buffer before the client is told
/// the appliance is busy (`server-error-busy`, which clients retry).
const BUSY_WAIT: Duration = Duration::from_secs(10);
/// Client addresses remembered before idle ones are forgotten.
const MAX_CLIENTS_TRACKED: usize = 4096;

/// The document buffers and spool writers all uploads share, and each
/// client address's share of the writers.
#[derive(Debug, Clone)]
pub struct UploadBudget {
    chunks: Arc<Semaphore>,
    writers: Arc<Semaphore>,
    per_client: Arc<Mutex<HashMap<IpAddr, Arc<Semaphore>>>>,
}

impl Default for UploadBudget {
    fn default() -> Self {
        UploadBudget {
            chunks: Arc::new(Semaphore::new(BUDGET_CHUNKS)),
            writers: Arc::new(Semaphore::new(BUDGET_WRITERS)),
            per_client: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

/// An upload's turn at a spool writer, and its way to the shared buffers.
pub struct WriterTurn {
    _writer: OwnedSemaphorePermit,
    _client: Option<OwnedSemaphorePermit>,
    chunks: Arc<Semaphore>,
}

impl UploadBudget {
    /// Waits at most 10 s (`BUSY_WAIT`) for a spool writer within `client`'s
    /// share; [`IppError::Busy`] if none comes free.
    pub async fn writer_turn(&self, client: Option<IpAddr>) -> Result<WriterTurn, IppError> {
        let share = client.map(|ip| self.share_of(ip));
        let waited = tokio::time::timeout(BUSY_WAIT, async {
            let own = match share {
                Some(share) => Some(share.acquire_owned().await.map_err(|_| IppError::Busy)?),
                None => None,
            };
            let writer = self
                .writers
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| IppError::Busy)?;
            Ok(WriterTurn {
                _writer: writer,
                _client: own,
                chunks: self.chunks.clone(),
            })
        })
        .await;
        waited.unwrap_or(Err(IppError::Busy))
    }

    fn share_of(&self, client: IpAddr) -> Arc<Semaphore> {
        let mut shares = self
            .per_client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if shares.len() >= MAX_CLIENTS_TRACKED && !shares.contains_key(&client) {
            // Forget the clients with nothing in flight.
            shares.retain(|_, s| Arc::strong_count(s) > 1);
        }
        shares
            .entry(client)
            .or_insert_with(|| Arc::new(Semaphore::new(WRITERS_PER_CLIENT)))
            .clone()
    }
}

/// A chunk of a document, holding its share of the budget until written.
struct Chunk {
    data: Bytes,
    _permit: Option<OwnedSemaphorePermit>,
}

impl std::ops::Deref for Chunk {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.data
    }
}

/// A document safely in the spool, with its stored format.
#[derive(Debug)]
pub struct Received {
    /// The durable document, ready for the store to commit.
    pub document: SpooledDocument,
    /// Declared format, or the detected one for `application/octet-stream`.
    pub format: String,
    /// Pages and colour, read on the way in.
    pub analysis: Analysis,
}

/// Copies `body` into the spool for job `uuid`. Returns `None` when the body
/// is empty (a Send-Document that only closes the job).
pub async fn receive<R>(
    spool: Spool,
    reserve: DiskReserve,
    uuid: JobUuid,
    body: &mut R,
    declared_format: String,
    limits: (u64, u64),
    turn: WriterTurn,
) -> Result<Option<Received>, IppError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let (max_bytes, idle_timeout_secs) = limits;
    let chunks = turn.chunks.clone();
    let (tx, mut rx) = mpsc::channel::<io::Result<Chunk>>(DEPTH);
    let writer = tokio::task::spawn_blocking(move || {
        let chunks = std::iter::from_fn(|| rx.blocking_recv());
        let copied = copy_to_spool(&spool, &reserve, uuid, chunks, &declared_format, max_bytes);
        drop(turn);
        copied
    });
    loop {
        let permit = match tokio::time::timeout(BUSY_WAIT, chunks.clone().acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => break,
            Err(_) => {
                let busy = io::Error::new(io::ErrorKind::WouldBlock, "no buffer came free");
                let _ = tx.send(Err(busy)).await;
                break;
            }
        };
        let mut buf = BytesMut::with_capacity(CHUNK);
        let read = body.read_buf(&mut buf).await;
        let item = match read {
            Ok(0) => break,
            Ok(_) => Ok(Chunk {
                data: buf.freeze(),
                _permit: Some(permit),
            }),
            Err(e) => Err(e),
        };
        let failed = item.is_err();
        // The writer stops taking chunks when it gave up (too large, bad
        // format, disk error); its result says why.
        if tx.send(item).await.is_err() || failed {
            break;
        }
    }
    drop(tx);
    writer
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
                match e
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<TooSlow>())
                {
                    Some(slow) => IppError::TooSlow(slow.to_string()),
                    None => IppError::Timeout(idle_timeout_secs),
                }
            }
            CopyError::Client(e) if e.kind() == io::ErrorKind::WouldBlock => IppError::Busy,
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
    reserve: &DiskReserve,
    uuid: JobUuid,
    chunks: impl Iterator<Item = io::Result<Chunk>>,
    declared_format: &str,
    max_bytes: u64,
) -> Result<Option<Received>, CopyError> {
    let mut chunks = chunks.map(|c| c.map_err(CopyError::Client));
    // Gather enough of the start to recognise the format.
    let mut head = Vec::new();
    while head.len() < format::PREFIX_LEN {
        match chunks.next() {
            Some(chunk) => head.extend_from_slice(&chunk?),
            None => break,
        }
    }
    if head.is_empty() {
        return Ok(None);
    }
    let prefix = &head[..head.len().min(format::PREFIX_LEN)];
    let format = format::check_prefix(declared_format, prefix).map_err(CopyError::Format)?;
    let mut writer = spool.create(uuid).map_err(CopyError::Disk)?;
    let mut analyzer = Analyzer::new(&format);
    let mut write = |data: &[u8]| -> Result<(), CopyError> {
        if writer.size() + data.len() as u64 > max_bytes {
            return Err(CopyError::TooLarge(max_bytes));
        }
        if !reserve.accepts_documents() {
            return Err(CopyError::Disk(io::ErrorKind::StorageFull.into()));
        }
        analyzer.feed(data);
        writer.write_all(data).map_err(CopyError::Disk)
    };
    write(&head)?;
    for chunk in chunks {
        write(&chunk?)?;
    }
    let document = writer.finish().map_err(CopyError::Disk)?;
    Ok(Some(Received {
        document,
        format,
        analysis: analyzer.finish(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(data: &[u8]) -> Chunk {
        Chunk {
            data: Bytes::copy_from_slice(data),
            _permit: None,
        }
    }

    /// The document in 1000-byte chunks, as the channel would deliver it.
    fn chunks(data: &[u8]) -> impl Iterator<Item = io::Result<Chunk>> + '_ {
        data.chunks(1000).map(|c| Ok(chunk(c)))
    }

    fn spool() -> (tempfile::TempDir, Spool) {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("spool"), 1).unwrap();
        (dir, spool)
    }

    fn no_reserve(dir: &tempfile::TempDir) -> DiskReserve {
        DiskReserve::open(dir.path(), 0).unwrap()
    }

    #[test]
    fn a_released_reserve_stops_an_upload_in_flight() {
        let (dir, spool) = spool();
        let reserve = DiskReserve::open(dir.path(), 4096).unwrap();
        let doc = b"%PDF-1.4 ".repeat(1000);
        let mut released = false;
        let pieces = chunks(&doc).inspect(|_| {
            if !released {
                released = reserve.release();
            }
        });
        let err = copy_to_spool(
            &spool,
            &reserve,
            JobUuid::new(),
            pieces,
            "application/pdf",
            1 << 20,
        )
        .unwrap_err();
        assert!(matches!(err.into_ipp(30), IppError::DiskFull));
        assert_eq!(tmp_files(&dir), 0);
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
            &no_reserve(&dir),
            JobUuid::new(),
            chunks(&doc),
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
            copy_to_spool(
                &spool,
                &no_reserve(&_dir),
                JobUuid::new(),
                chunks(b""),
                "application/pdf",
                10
            )
            .unwrap()
            .is_none()
        );
    }

    #[test]
    fn over_the_limit_leaves_nothing_behind() {
        let (dir, spool) = spool();
        let doc = b"%PDF-".repeat(100_000);
        let err = copy_to_spool(
            &spool,
            &no_reserve(&dir),
            JobUuid::new(),
            chunks(&doc),
            "application/pdf",
            200_000,
        )
        .unwrap_err();
        assert!(matches!(err, CopyError::TooLarge(200_000)));
        assert_eq!(tmp_files(&dir), 0);
    }

    #[test]
    fn mislabelled_documents_are_refused_before_writing() {
        let (dir, spool) = spool();
        let err = copy_to_spool(
            &spool,
            &no_reserve(&dir),
            JobUuid::new(),
            chunks(b"%!PS-Adobe-3.0\n"),
            "application/pdf",
            1000,
        )
        .unwrap_err();
        assert!(matches!(err, CopyError::Format(_)));
        assert_eq!(tmp_files(&dir), 0);
    }

    #[test]
    fn a_client_error_mid_document_leaves_nothing() {
        let (dir, spool) = spool();
        let broken = [
            Ok(chunk(b"%PDF-1.4 first part")),
            Err(io::Error::new(io::ErrorKind::TimedOut, "stalled")),
        ];
        let err = copy_to_spool(
            &spool,
            &no_reserve(&dir),
            JobUuid::new(),
            broken.into_iter(),
            "application/pdf",
            1000,
        )
        .unwrap_err();
        assert!(matches!(err.into_ipp(30), IppError::Timeout(30)));
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
