//! Document intake: streams a request's document into a spool file.
//!
//! Two stages run side by side: the async side reads the body in chunks of
//! 256 KiB (each filled before it is handed over, so the thread wakes once
//! per chunk, not once per network read) into a channel holding at most
//! `DEPTH` of them, and a blocking thread hashes, compresses, analyses and
//! writes each chunk (zstd and SHA-256 are CPU work, fsync blocks). So the
//! network and the disk overlap, and memory stays at a few chunks however
//! large the document.
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
//! A compressed document (`compression` gzip or deflate) is decompressed
//! in the writing thread before all of that, one chunk of output at a
//! time, so the format check, the analysis, the hash and the size limit
//! see what a printer will get, and a small body that expands enormously
//! stops at the limit.
//! A small document that ends within its first chunk (a one-page job,
//! most of them) skips the thread: it stays in memory for the store's
//! commit anyway, so copying it in place blocks nothing.

use std::io::{self, Read, Write};

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::body::TooSlow;
use super::compression::{Compression, Decompressor};
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
/// The largest document copied on the async side when it ends within its
/// first chunk: it stays in memory for the store's commit, so the
/// copy touches no disk, and its format check, hash, analysis and
/// compression (at a fast level) take microseconds, less than handing it
/// to a thread.
const COPY_IN_PLACE_MAX: usize = 64 * 1024;

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
/// `document` is the declared format and the compression on the wire;
/// `limits` the largest document (decompressed) and the idle timeout.
pub async fn receive<R>(
    spool: Spool,
    reserve: DiskReserve,
    uuid: JobUuid,
    body: &mut R,
    document: (String, Compression),
    limits: (u64, u64),
    turn: WriterTurn,
) -> Result<Option<Received>, IppError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let (max_bytes, idle_timeout_secs) = limits;
    let (declared_format, compression) = document;
    let destination = Destination {
        spool,
        reserve,
        uuid,
        declared_format,
        max_bytes,
    };
    let chunks = turn.chunks.clone();
    let mut read = vec![next_chunk(&chunks, body).await];
    let small = match &read[0] {
        Some(Ok(chunk)) => {
            chunk.len() <= COPY_IN_PLACE_MAX
                && destination.spool.takes_cheaply(chunk.len() as u64)
                && compression == Compression::None
        }
        _ => false,
    };
    if small {
        match next_chunk(&chunks, body).await {
            None => {
                let received = read.into_iter().flatten();
                let copied = destination.copy(received.map(|c| c.map_err(CopyError::Client)));
                drop(turn);
                return copied.map_err(|e| e.into_ipp(idle_timeout_secs));
            }
            more => read.push(more),
        }
    }
    let through = (compression, idle_timeout_secs);
    receive_in_thread(destination, body, through, turn, read).await
}

/// Where a document goes and what it must be: the spool and job it is for,
/// the disk reserve it must leave alone, its declared format and its
/// largest size.
struct Destination {
    spool: Spool,
    reserve: DiskReserve,
    uuid: JobUuid,
    declared_format: String,
    max_bytes: u64,
}

impl Destination {
    fn copy(
        &self,
        chunks: impl Iterator<Item = Result<Chunk, CopyError>>,
    ) -> Result<Option<Received>, CopyError> {
        copy_to_spool(
            &self.spool,
            &self.reserve,
            self.uuid,
            chunks,
            &self.declared_format,
            self.max_bytes,
        )
    }
}

/// The next chunk of `body` (`None` at its end), holding a permit of the
/// shared buffers; an error when none comes free within `BUSY_WAIT`.
async fn next_chunk<R>(chunks: &Arc<Semaphore>, body: &mut R) -> Option<io::Result<Chunk>>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let permit = match tokio::time::timeout(BUSY_WAIT, chunks.clone().acquire_owned()).await {
        Ok(Ok(permit)) => permit,
        Ok(Err(_)) => return None,
        Err(_) => {
            let busy = io::Error::new(io::ErrorKind::WouldBlock, "no buffer came free");
            return Some(Err(busy));
        }
    };
    // A whole chunk per hand-over, not what one read happened to find: the
    // writing thread is woken once per 256 KiB instead of once per network
    // read, and its writes bypass the file's write buffer.
    let mut buf = BytesMut::with_capacity(CHUNK);
    while buf.len() < CHUNK {
        match body.read_buf(&mut buf).await {
            Ok(0) => break,
            Ok(_) => {}
            // What was read with it is dropped: the upload fails anyway.
            Err(e) => return Some(Err(e)),
        }
    }
    if buf.is_empty() {
        return None;
    }
    Some(Ok(Chunk {
        data: buf.freeze(),
        _permit: Some(permit),
    }))
}

/// [`receive`] for a document that did not end within one small chunk:
/// what `read` took already (each as [`next_chunk`] gave it) and the rest of
/// `body` go through a channel to a blocking thread that decompresses them
/// if the wire's `compression` says so and writes them.
async fn receive_in_thread<R>(
    destination: Destination,
    body: &mut R,
    (compression, idle_timeout_secs): (Compression, u64),
    turn: WriterTurn,
    read: Vec<Option<io::Result<Chunk>>>,
) -> Result<Option<Received>, IppError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let chunks = turn.chunks.clone();
    let (tx, mut rx) = mpsc::channel::<io::Result<Chunk>>(DEPTH);
    let writer = tokio::task::spawn_blocking(move || {
        let received =
            std::iter::from_fn(|| rx.blocking_recv()).map(|c| c.map_err(CopyError::Client));
        let copied = if compression == Compression::None {
            destination.copy(received)
        } else {
            destination.copy(decompressed(received, compression))
        };
        drop(turn);
        copied
    });
    let mut read = read.into_iter();
    loop {
        let next = match read.next() {
            Some(taken) => taken,
            None => next_chunk(&chunks, body).await,
        };
        let Some(item) = next else { break };
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
    Compression(String),
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
            CopyError::Compression(why) => IppError::CompressionError(why),
        }
    }
}

/// The received chunks as a byte stream, for a decompressor to read; a
/// failure of the client's side is kept, to be told apart from bad
/// compressed data.
struct ChunkReader<I> {
    chunks: I,
    current: Option<Chunk>,
    at: usize,
    failure: Option<CopyError>,
}

impl<I: Iterator<Item = Result<Chunk, CopyError>>> Read for ChunkReader<I> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(chunk) = &self.current
                && self.at < chunk.len()
            {
                let n = buf.len().min(chunk.len() - self.at);
                buf[..n].copy_from_slice(&chunk[self.at..self.at + n]);
                self.at += n;
                return Ok(n);
            }
            match self.chunks.next() {
                Some(Ok(chunk)) => {
                    self.current = Some(chunk);
                    self.at = 0;
                }
                Some(Err(e)) => {
                    self.failure = Some(e);
                    return Err(io::Error::other("the document stopped coming"));
                }
                None => return Ok(0),
            }
        }
    }
}

/// The decompressed bytes of `received`, in chunks of up to `CHUNK` bytes,
/// made one at a time as the copy asks for them.
fn decompressed(
    received: impl Iterator<Item = Result<Chunk, CopyError>>,
    compression: Compression,
) -> impl Iterator<Item = Result<Chunk, CopyError>> {
    let reader = ChunkReader {
        chunks: received,
        current: None,
        at: 0,
        failure: None,
    };
    let mut decompressor = Some(Decompressor::new(compression, reader));
    std::iter::from_fn(move || {
        let source = decompressor.as_mut()?;
        let mut buf = vec![0u8; CHUNK];
        let item = match source.read(&mut buf) {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                return Some(Ok(Chunk {
                    data: Bytes::from(buf),
                    _permit: None,
                }));
            }
            Err(e) => Some(Err(source.get_mut().failure.take().unwrap_or_else(|| {
                CopyError::Compression(format!("{} data: {e}", compression.keyword()))
            }))),
        };
        decompressor = None;
        item
    })
}

fn copy_to_spool(
    spool: &Spool,
    reserve: &DiskReserve,
    uuid: JobUuid,
    mut chunks: impl Iterator<Item = Result<Chunk, CopyError>>,
    declared_format: &str,
    max_bytes: u64,
) -> Result<Option<Received>, CopyError> {
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
    fn chunks(data: &[u8]) -> impl Iterator<Item = Result<Chunk, CopyError>> + '_ {
        data.chunks(1000).map(|c| Ok(chunk(c)))
    }

    /// The client stopped sending.
    fn stalled() -> CopyError {
        CopyError::Client(io::Error::new(io::ErrorKind::TimedOut, "stalled"))
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(data).unwrap();
        gz.finish().unwrap()
    }

    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut d = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        d.write_all(data).unwrap();
        d.finish().unwrap()
    }

    fn copy_compressed(
        dir: &tempfile::TempDir,
        spool: &Spool,
        wire: &[u8],
        compression: Compression,
        max_bytes: u64,
    ) -> Result<Option<Received>, CopyError> {
        copy_to_spool(
            spool,
            &no_reserve(dir),
            JobUuid::new(),
            decompressed(chunks(wire), compression),
            "application/octet-stream",
            max_bytes,
        )
    }

    #[test]
    fn gzip_and_deflate_documents_are_stored_as_the_printer_gets_them() {
        let doc = b"%PDF-1.4 page after page ".repeat(50_000);
        for (wire, compression) in [
            (gzip(&doc), Compression::Gzip),
            (deflate(&doc), Compression::Deflate),
        ] {
            assert!(wire.len() < doc.len() / 10);
            let (dir, spool) = spool();
            let got = copy_compressed(&dir, &spool, &wire, compression, 1 << 24)
                .unwrap()
                .unwrap();
            assert_eq!(got.format, "application/pdf", "{compression:?}");
            assert_eq!(got.document.size, doc.len() as u64);
            let expected = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&doc));
            assert_eq!(got.document.sha256, expected, "{compression:?}");
        }
    }

    #[test]
    fn a_document_that_expands_past_the_limit_stops_there() {
        let (dir, spool) = spool();
        let bomb = gzip(&vec![b'%'; 64 << 20]);
        assert!(bomb.len() < 256 << 10);
        let err = copy_compressed(&dir, &spool, &bomb, Compression::Gzip, 1 << 20).unwrap_err();
        assert!(matches!(err, CopyError::TooLarge(_)));
        assert_eq!(tmp_files(&dir), 0);
    }

    #[test]
    fn bad_compressed_data_is_a_compression_error_and_leaves_nothing() {
        let (dir, spool) = spool();
        let mut wire = gzip(&b"%PDF-1.4 something ".repeat(10_000));
        let middle = wire.len() / 2;
        wire[middle..middle + 16].fill(0xff);
        let err = copy_compressed(&dir, &spool, &wire, Compression::Gzip, 1 << 24).unwrap_err();
        assert!(
            matches!(err.into_ipp(30), IppError::CompressionError(ref why) if why.starts_with("gzip")),
        );
        let plain = copy_compressed(&dir, &spool, b"%PDF-1.4 not gzip", Compression::Gzip, 1000);
        assert!(matches!(plain, Err(CopyError::Compression(_))));
        assert_eq!(tmp_files(&dir), 0);
    }

    #[test]
    fn a_client_error_inside_compressed_data_stays_a_client_error() {
        let (dir, spool) = spool();
        let wire = gzip(&b"%PDF-1.4 something ".repeat(10_000));
        let broken = [Ok(chunk(&wire[..wire.len() / 2])), Err(stalled())];
        let err = copy_to_spool(
            &spool,
            &no_reserve(&dir),
            JobUuid::new(),
            decompressed(broken.into_iter(), Compression::Gzip),
            "application/pdf",
            1 << 24,
        )
        .unwrap_err();
        assert!(matches!(err.into_ipp(30), IppError::Timeout(30)));
        assert_eq!(tmp_files(&dir), 0);
    }

    fn spool() -> (tempfile::TempDir, Spool) {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("spool"), 1, 0).unwrap();
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
        let broken = [Ok(chunk(b"%PDF-1.4 first part")), Err(stalled())];
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

    /// `data` through [`receive`], from a body that hands out at most
    /// `read_size` bytes per read, into a spool that keeps small documents
    /// in memory.
    async fn received(data: &[u8], read_size: usize) -> Result<Option<Received>, IppError> {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("spool"), 1, 256 * 1024).unwrap();
        let pieces: Vec<io::Result<Bytes>> = data
            .chunks(read_size)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let mut body = tokio_util::io::StreamReader::new(futures_util::stream::iter(pieces));
        let turn = UploadBudget::default().writer_turn(None).await.unwrap();
        let declared = ("application/pdf".to_owned(), Compression::None);
        let reserve = no_reserve(&dir);
        receive(
            spool,
            reserve,
            JobUuid::new(),
            &mut body,
            declared,
            (1 << 20, 30),
            turn,
        )
        .await
    }

    #[tokio::test]
    async fn a_document_read_whole_is_stored_as_one_read_in_pieces() {
        let doc = b"%PDF-1.4 one page ".repeat(200);
        let whole = received(&doc, doc.len()).await.unwrap().unwrap();
        let pieces = received(&doc, 1000).await.unwrap().unwrap();
        for got in [&whole, &pieces] {
            assert_eq!(got.document.size, doc.len() as u64);
            assert_eq!(
                got.document.sha256,
                crate::store::spool::hash_document(&doc[..]).unwrap().1
            );
            assert_eq!(got.format, "application/pdf");
        }
        assert_eq!(whole.document.storage, pieces.document.storage);
        assert_eq!(whole.document.spool_size, pieces.document.spool_size);
    }

    #[tokio::test]
    async fn a_small_document_read_whole_is_still_checked() {
        let refused = received(b"plain text, not a PDF", 4096).await;
        assert!(
            matches!(refused, Err(IppError::FormatError(_))),
            "{refused:?}"
        );
        assert!(received(b"", 4096).await.unwrap().is_none());
    }

    #[test]
    fn client_errors_and_timeouts_map_to_ipp() {
        let timeout = CopyError::Client(io::Error::new(io::ErrorKind::TimedOut, "x"));
        assert!(matches!(timeout.into_ipp(30), IppError::Timeout(30)));
        let full = CopyError::Disk(io::Error::new(io::ErrorKind::StorageFull, "x"));
        assert!(matches!(full.into_ipp(30), IppError::DiskFull));
    }
}
