//! Document bytes as they are kept: small documents in the database, in
//! the transaction that commits their job; larger ones in spool files.
//! Either is zstd-compressed only when compression pays.
//!
//! A [`SpoolWriter`] holds a document in memory until it passes
//! `inline_max` bytes (256 KiB by default). One that ends below stays
//! there: [`SpoolWriter::finish`] hands its bytes to the store, which
//! writes them in the job's own transaction, so the group commit's one
//! WAL fsync makes a whole batch of jobs durable, with no file, no file
//! fsync and no directory fsync. A document that grows past it is written
//! to `spool/tmp/`, fsynced, renamed to `spool/<uuid>.zst` (or `.raw`) and
//! the spool directory fsynced before the store commits the job row. So a
//! committed job always has its complete, durable document, and any file
//! found at start-up that no job needs is a crash leftover:
//! [`Spool::recover`] removes it. The finish steps of file documents run
//! on each upload's own thread, so the fsyncs of concurrent uploads
//! overlap instead of queueing behind the store's single writer.
//!
//! **Compress only what compresses.** PDFs gain a few per cent under zstd,
//! JPEG and most rasters nothing, PostScript and text many times. Formats
//! that are compressed already (by their leading bytes) are stored as
//! they are; everything else is measured: the first 128 KiB (or the whole
//! small document) are compressed, and zstd is kept only when it saves at
//! least an eighth. The choice is recorded with the job
//! ([`DocumentStorage`]), and output streams stored bytes as they are.
//!
//! Everything here is blocking I/O; callers run it on blocking threads.

use std::fs::{self, File};
use std::io::{self, BufWriter, Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use sha2::{Digest, Sha256};

use super::dir_sync::DirSync;
use crate::job::{DocumentRecord, DocumentStorage, Encoding, JobUuid, StoredIn};

/// Write buffer in front of a spool file.
const WRITE_BUFFER: usize = 64 * 1024;
/// zstd window (2^17 = 128 KiB): documents compress nearly as well as with
/// the level's default window, and each upload's compressor needs a
/// quarter of the memory.
const WINDOW_LOG: u32 = 17;
/// How much of a document is compressed to decide whether the rest is.
const SAMPLE: usize = 128 * 1024;
/// A spool file's written bytes are handed to the disk every this many
/// bytes, so the fsync at the end has little left to wait for: writing
/// overlaps receiving instead of following it. The window before is then
/// waited for and dropped from the page cache (see [`Writeback`]).
const WRITEBACK_EVERY: u64 = 8 * 1024 * 1024;
/// Documents up to this size are kept in the database unless configured
/// otherwise: measured on this class of disk, a spool file's two extra
/// fsyncs cost more than writing 256 KiB more into the WAL.
pub const DEFAULT_INLINE_MAX: u64 = 256 * 1024;

/// The spool directory of one store, and how documents are kept.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
    tmp: PathBuf,
    level: i32,
    inline_max: u64,
    dir_sync: Arc<DirSync>,
    compressors: Arc<CompressorPool>,
}

/// What start-up found and removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SpoolRecovery {
    /// Partial uploads interrupted by a crash (in `tmp/`).
    pub partial_uploads: usize,
    /// Complete files whose job row was never committed, or whose job no
    /// longer needs them.
    pub orphans: usize,
}

impl Spool {
    /// Opens (creating if needed) the spool under `dir`: files compressed
    /// at zstd `level`, documents up to `inline_max` bytes kept in the
    /// database.
    pub fn open(dir: &Path, level: i32, inline_max: u64) -> io::Result<Spool> {
        let tmp = dir.join("tmp");
        fs::create_dir_all(&tmp)?;
        Ok(Spool {
            dir: dir.to_owned(),
            tmp,
            level,
            inline_max,
            dir_sync: Arc::new(DirSync::new(dir.to_owned())),
            compressors: Arc::new(CompressorPool::default()),
        })
    }

    /// Where a job's spool file lives (for a document kept in a file).
    pub fn path(&self, uuid: JobUuid, encoding: Encoding) -> PathBuf {
        self.dir.join(file_name(uuid, encoding))
    }

    /// Whether taking a document of `size` bytes is cheap enough to do
    /// without a thread of its own: it stays in memory until the store
    /// commits it with its job (no file is made for it), and the zstd
    /// level is a fast one (level 19 spends milliseconds on 64 KiB).
    pub fn takes_cheaply(&self, size: u64) -> bool {
        size <= self.inline_max && self.level <= FAST_LEVEL
    }

    /// Starts taking a document for `uuid`.
    pub fn create(&self, uuid: JobUuid) -> io::Result<SpoolWriter> {
        Ok(SpoolWriter {
            spool: self.clone(),
            uuid,
            sink: Sink::Memory(Vec::new()),
            hasher: Sha256::new(),
            size: 0,
        })
    }

    /// Makes renames and removals in the spool directory durable (sharing
    /// the fsync with concurrent callers).
    pub fn sync_dir(&self) -> io::Result<()> {
        self.dir_sync.sync()
    }

    /// Opens a document kept in a spool file, decoding as it is read.
    pub fn open_file(
        &self,
        uuid: JobUuid,
        encoding: Encoding,
    ) -> io::Result<Box<dyn Read + Send + 'static>> {
        decode(File::open(self.path(uuid, encoding))?, encoding)
    }

    /// A second, durable name for a stored document (a reprint is a new job
    /// on the same bytes): a hard link for a file, a copy of the row (made
    /// by the store in the reprint's transaction) for a document in the
    /// database. Dropped without [`SpooledDocument::keep`], a new file name
    /// goes again.
    pub fn link(
        &self,
        from: JobUuid,
        to: JobUuid,
        document: &DocumentRecord,
    ) -> io::Result<SpooledDocument> {
        let body = match document.storage.place {
            StoredIn::Database => Body::SameAs(from),
            StoredIn::SpoolFile => {
                let encoding = document.storage.encoding;
                let path = self.path(to, encoding);
                fs::hard_link(self.path(from, encoding), &path)?;
                let guard = TempFile(Some(path));
                self.sync_dir()?;
                Body::File(guard)
            }
        };
        Ok(SpooledDocument {
            uuid: to,
            body,
            size: document.size,
            spool_size: document.spool_size,
            sha256: document.sha256.clone(),
            storage: document.storage,
        })
    }

    /// Deletes a job's spool file (after the job finished). Missing is fine.
    pub fn remove(&self, uuid: JobUuid, encoding: Encoding) -> io::Result<()> {
        match fs::remove_file(self.path(uuid, encoding)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Removes crash leftovers: every temporary file, and every spool file
    /// `needed` says no job needs. Asks file by file, so memory stays the
    /// same however many jobs the store holds.
    pub fn recover(
        &self,
        mut needed: impl FnMut(JobUuid, Encoding) -> io::Result<bool>,
    ) -> io::Result<SpoolRecovery> {
        let mut found = SpoolRecovery::default();
        for entry in fs::read_dir(&self.tmp)? {
            fs::remove_file(entry?.path())?;
            found.partial_uploads += 1;
        }
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if path.is_dir() {
                continue;
            }
            let keep = match path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(parse_file_name)
            {
                Some((uuid, encoding)) => needed(uuid, encoding)?,
                None => false,
            };
            if !keep {
                fs::remove_file(&path)?;
                found.orphans += 1;
            }
        }
        if found != SpoolRecovery::default() {
            self.sync_dir()?;
        }
        Ok(found)
    }

    /// The longest a document is held in memory before it goes to a file.
    fn memory_limit(&self) -> usize {
        usize::try_from(self.inline_max)
            .unwrap_or(usize::MAX)
            .max(SAMPLE)
    }
}

/// `<uuid>.zst` or `<uuid>.raw`.
pub fn file_name(uuid: JobUuid, encoding: Encoding) -> String {
    format!("{uuid}.{}", suffix(encoding))
}

fn suffix(encoding: Encoding) -> &'static str {
    match encoding {
        Encoding::Zstd => "zst",
        Encoding::Identity => "raw",
    }
}

fn parse_file_name(name: &str) -> Option<(JobUuid, Encoding)> {
    let (stem, ext) = name.rsplit_once('.')?;
    let encoding = [Encoding::Zstd, Encoding::Identity]
        .into_iter()
        .find(|e| suffix(*e) == ext)?;
    Some((JobUuid::parse(stem)?, encoding))
}

/// Stored bytes as the document they encode.
pub fn decode(
    stored: impl Read + Send + 'static,
    encoding: Encoding,
) -> io::Result<Box<dyn Read + Send + 'static>> {
    Ok(match encoding {
        Encoding::Zstd => Box::new(zstd::Decoder::new(stored)?),
        Encoding::Identity => Box::new(stored),
    })
}

/// Whether `prefix` starts a format that is compressed already (JPEG, PNG,
/// gzip, zstd, zip), so zstd is not even tried.
pub fn compressed_already(prefix: &[u8]) -> bool {
    const MAGIC: [&[u8]; 5] = [
        b"\xff\xd8\xff",
        b"\x89PNG",
        b"\x1f\x8b",
        b"\x28\xb5\x2f\xfd",
        b"PK\x03\x04",
    ];
    MAGIC.iter().any(|m| prefix.starts_with(m))
}

/// Whether compressing `original` bytes into `compressed` saves enough to
/// be worth decompressing at every output: at least an eighth.
pub fn worth_compressing(original: usize, compressed: usize) -> bool {
    compressed <= original - original / 8
}

/// The highest zstd level [`Spool::takes_cheaply`] counts as fast.
const FAST_LEVEL: i32 = 3;

impl Spool {
    /// How `sample` (the start of a document, or all of it) should be
    /// stored, with its zstd frame when that is the answer.
    fn choose_encoding(&self, sample: &[u8]) -> io::Result<(Encoding, Option<Vec<u8>>)> {
        if sample.is_empty() || compressed_already(sample) {
            return Ok((Encoding::Identity, None));
        }
        let compressed = self.compressors.compress(sample, self.level)?;
        Ok(if worth_compressing(sample.len(), compressed.len()) {
            (Encoding::Zstd, Some(compressed))
        } else {
            (Encoding::Identity, None)
        })
    }
}

/// zstd contexts kept between documents. Making one costs more than
/// compressing a one-page job (its tables, about a MiB at the fast levels,
/// are allocated and cleared: 5 % of the appliance's CPU at 16 clients
/// before they were kept), so documents borrow one; at most
/// `KEPT_COMPRESSORS` wait here, which bounds the memory they hold.
#[derive(Default)]
struct CompressorPool {
    kept: Mutex<Vec<zstd::bulk::Compressor<'static>>>,
}

/// Contexts a [`CompressorPool`] keeps: the writers that decide at once
/// are the two runtime threads and a few upload threads.
const KEPT_COMPRESSORS: usize = 4;

impl std::fmt::Debug for CompressorPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CompressorPool")
    }
}

impl CompressorPool {
    /// `data` as one zstd frame at `level`, made with a kept context when
    /// one is free.
    fn compress(&self, data: &[u8], level: i32) -> io::Result<Vec<u8>> {
        let taken = self.lock().pop();
        let mut compressor = match taken {
            Some(mut kept) => {
                kept.set_compression_level(level)?;
                kept
            }
            None => zstd::bulk::Compressor::new(level)?,
        };
        let compressed = compressor.compress(data)?;
        let mut kept = self.lock();
        if kept.len() < KEPT_COMPRESSORS {
            kept.push(compressor);
        }
        Ok(compressed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<zstd::bulk::Compressor<'static>>> {
        // A panic elsewhere cannot leave a kept context half-made.
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Takes one document: in memory while it is small, then in a temporary
/// spool file.
pub struct SpoolWriter {
    spool: Spool,
    uuid: JobUuid,
    sink: Sink,
    hasher: Sha256,
    size: u64,
}

enum Sink {
    Memory(Vec<u8>),
    File {
        guard: TempFile,
        out: FileOut,
        encoding: Encoding,
        writeback: Writeback,
    },
}

enum FileOut {
    Zstd(zstd::Encoder<'static, BufWriter<File>>),
    Identity(BufWriter<File>),
}

impl FileOut {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            FileOut::Zstd(e) => e.write_all(buf),
            FileOut::Identity(w) => w.write_all(buf),
        }
    }

    fn file(&self) -> &File {
        match self {
            FileOut::Zstd(e) => e.get_ref().get_ref(),
            FileOut::Identity(w) => w.get_ref(),
        }
    }

    fn finish(self) -> io::Result<File> {
        let buffered = match self {
            FileOut::Zstd(e) => e.finish()?,
            FileOut::Identity(w) => w,
        };
        buffered.into_inner().map_err(|e| e.into_error())
    }
}

/// Where a spool file's bytes stand between the page cache and the disk.
///
/// Every [`WRITEBACK_EVERY`] bytes the new window is handed to the disk
/// (`SYNC_FILE_RANGE_WRITE`, which does not wait), then the window before
/// it, started one window earlier, is waited for and dropped from the page
/// cache (`POSIX_FADV_DONTNEED`). A document is read once, at release, so
/// keeping its pages only pushes out the database's; and a spooler that
/// keeps every written page cached fills memory with them: on this class
/// of VM, writing into never-used guest memory halved the rate of the
/// second 1 GiB upload in a row (511 then 211 MB/s). The wait is
/// back-pressure: a client faster than the disk is slowed to the disk's
/// pace, at most two windows ahead, instead of piling up dirty pages for
/// the final fsync. None of this makes anything durable; the fsync in
/// [`SpoolWriter::finish`] still does.
#[derive(Debug, Default)]
struct Writeback {
    /// Bytes of the file handed to the disk's writeback.
    started: u64,
    /// Bytes of the file known on disk and dropped from the cache.
    settled: u64,
    /// The file system cannot (`sync_file_range` failed): the final fsync
    /// does it all.
    unsupported: bool,
}

impl Writeback {
    /// Moves the windows along once the file holds a full new one.
    fn advance(&mut self, file: &File) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        if self.unsupported {
            return Ok(());
        }
        let len = file.metadata()?.len();
        if len < self.started + WRITEBACK_EVERY {
            return Ok(());
        }
        let fd = file.as_raw_fd();
        if !sync_range(fd, self.started, len, libc::SYNC_FILE_RANGE_WRITE) {
            self.unsupported = true;
            return Ok(());
        }
        let (settled, started) = (self.settled, self.started);
        self.started = len;
        if settled < started {
            let wait = libc::SYNC_FILE_RANGE_WAIT_BEFORE
                | libc::SYNC_FILE_RANGE_WRITE
                | libc::SYNC_FILE_RANGE_WAIT_AFTER;
            if sync_range(fd, settled, started, wait) {
                drop_cached(fd, settled, started);
                self.settled = started;
            }
        }
        Ok(())
    }
}

/// `sync_file_range` over bytes `from..to` of `fd`; whether it worked.
fn sync_range(fd: std::os::fd::RawFd, from: u64, to: u64, flags: libc::c_uint) -> bool {
    let (Ok(offset), Ok(count)) = (
        libc::off64_t::try_from(from),
        libc::off64_t::try_from(to.saturating_sub(from)),
    ) else {
        return false;
    };
    // SAFETY: sync_file_range only reads the descriptor, which the caller's
    // `File` keeps open for the duration of the call.
    unsafe { libc::sync_file_range(fd, offset, count, flags) == 0 }
}

/// Asks the kernel to drop bytes `from..to` of `fd` from the page cache
/// (`to` `u64::MAX`: to the end). Advice only: pages still dirty stay, and a
/// failure changes nothing that matters, so it is not reported.
fn drop_cached(fd: std::os::fd::RawFd, from: u64, to: u64) {
    // A length of 0 means "to the end of the file" to posix_fadvise.
    let len = if to == u64::MAX {
        0
    } else {
        to.saturating_sub(from)
    };
    let (Ok(offset), Ok(len)) = (libc::off_t::try_from(from), libc::off_t::try_from(len)) else {
        return;
    };
    // SAFETY: posix_fadvise only reads the descriptor, which the caller's
    // `File` keeps open for the duration of the call.
    unsafe { libc::posix_fadvise(fd, offset, len, libc::POSIX_FADV_DONTNEED) };
}

impl SpoolWriter {
    /// Bytes taken so far (as sent, before compression).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Moves what is held in memory into a temporary spool file, encoded
    /// as its start says.
    fn spill(&mut self) -> io::Result<()> {
        let Sink::Memory(held) = &mut self.sink else {
            return Ok(());
        };
        let held = std::mem::take(held);
        let (encoding, _) = self
            .spool
            .choose_encoding(&held[..held.len().min(SAMPLE)])?;
        let tmp_path = self
            .spool
            .tmp
            .join(format!("{}.part", file_name(self.uuid, encoding)));
        let file = File::create(&tmp_path)?;
        let guard = TempFile(Some(tmp_path));
        let buffered = BufWriter::with_capacity(WRITE_BUFFER, file);
        let mut out = match encoding {
            Encoding::Zstd => {
                let mut encoder = zstd::Encoder::new(buffered, self.spool.level)?;
                encoder.window_log(WINDOW_LOG)?;
                FileOut::Zstd(encoder)
            }
            Encoding::Identity => FileOut::Identity(buffered),
        };
        out.write_all(&held)?;
        self.sink = Sink::File {
            guard,
            out,
            encoding,
            writeback: Writeback::default(),
        };
        Ok(())
    }

    /// Makes the document durable where it belongs. A small one becomes
    /// bytes for the store to write with its job (nothing touches the disk
    /// here); a file is finished, fsynced, moved to its final name and the
    /// directory fsynced: afterwards it survives power loss, and only the
    /// job row is missing to make it a job.
    pub fn finish(mut self) -> io::Result<SpooledDocument> {
        if let Sink::Memory(held) = &mut self.sink {
            if held.len() as u64 <= self.spool.inline_max {
                let held = std::mem::take(held);
                let (encoding, compressed) = self.spool.choose_encoding(&held)?;
                let stored = compressed.unwrap_or(held);
                return Ok(SpooledDocument {
                    uuid: self.uuid,
                    size: self.size,
                    spool_size: stored.len() as u64,
                    sha256: hex::encode(self.hasher.finalize()),
                    storage: DocumentStorage {
                        place: StoredIn::Database,
                        encoding,
                    },
                    body: Body::Database(stored),
                });
            }
            self.spill()?;
        }
        let SpoolWriter {
            spool,
            uuid,
            sink,
            hasher,
            size,
        } = self;
        let Sink::File {
            mut guard,
            out,
            encoding,
            writeback,
        } = sink
        else {
            return Err(io::Error::other("spool writer lost its file"));
        };
        let file = out.finish()?;
        file.sync_all()?;
        if writeback.settled > 0 {
            // A big document's rest follows its windows out of the cache;
            // a smaller one stays, for a direct queue about to send it.
            use std::os::fd::AsRawFd;
            drop_cached(file.as_raw_fd(), writeback.settled, u64::MAX);
        }
        let spool_size = file.metadata()?.len();
        drop(file);
        let target = spool.path(uuid, encoding);
        if let Some(tmp) = guard.0.take() {
            // From here on the guard owns the final name: dropped before the
            // job commits, the document is deleted.
            guard.0 = Some(target.clone());
            fs::rename(&tmp, &target)?;
        }
        spool.sync_dir()?;
        Ok(SpooledDocument {
            uuid,
            body: Body::File(guard),
            size,
            spool_size,
            sha256: hex::encode(hasher.finalize()),
            storage: DocumentStorage {
                place: StoredIn::SpoolFile,
                encoding,
            },
        })
    }
}

impl Write for SpoolWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let limit = self.spool.memory_limit();
        match &mut self.sink {
            Sink::Memory(held) if held.len() + buf.len() <= limit => held.extend_from_slice(buf),
            Sink::Memory(held) => {
                let room = limit - held.len();
                held.extend_from_slice(&buf[..room]);
                self.spill()?;
                if let Sink::File { out, .. } = &mut self.sink {
                    out.write_all(&buf[room..])?;
                }
            }
            Sink::File { out, writeback, .. } => {
                out.write_all(buf)?;
                writeback.advance(out.file())?;
            }
        }
        self.hasher.update(buf);
        self.size += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A complete, durable document (or one the store makes durable with its
/// job) waiting for its job row to commit. Dropped without
/// [`SpooledDocument::keep`], it deletes its file.
#[derive(Debug)]
pub struct SpooledDocument {
    /// The job it was taken for.
    pub uuid: JobUuid,
    body: Body,
    /// Bytes as sent.
    pub size: u64,
    /// Bytes stored.
    pub spool_size: u64,
    /// Hex SHA-256 of the bytes as sent.
    pub sha256: String,
    /// Where it is kept and how it is encoded.
    pub storage: DocumentStorage,
}

#[derive(Debug)]
enum Body {
    /// A durable spool file under its final name.
    File(TempFile),
    /// Stored bytes the store writes into the database with the job.
    Database(Vec<u8>),
    /// The database row of another job's document (a reprint), copied by
    /// the store with the job.
    SameAs(JobUuid),
}

/// What the store must write with a job for its document.
pub(super) enum DatabaseBody<'a> {
    /// Nothing: the document is a file.
    None,
    /// These stored bytes.
    Bytes(&'a [u8]),
    /// A copy of this job's row.
    CopyOf(JobUuid),
}

impl SpooledDocument {
    /// The job row referencing this document has committed: keep the file.
    pub fn keep(mut self) {
        if let Body::File(guard) = &mut self.body {
            guard.0 = None;
        }
    }

    /// What the store writes into the database for this document.
    pub(super) fn database_body(&self) -> DatabaseBody<'_> {
        match &self.body {
            Body::File(_) => DatabaseBody::None,
            Body::Database(bytes) => DatabaseBody::Bytes(bytes),
            Body::SameAs(from) => DatabaseBody::CopyOf(*from),
        }
    }

    /// The stored bytes of a document kept in memory (a prefetched copy
    /// read again to be checked), decoded.
    pub fn open_held(&self) -> io::Result<Option<Box<dyn Read + Send + 'static>>> {
        match &self.body {
            Body::Database(bytes) => {
                decode(Cursor::new(bytes.clone()), self.storage.encoding).map(Some)
            }
            Body::File(_) | Body::SameAs(_) => Ok(None),
        }
    }
}

/// Deletes a file that no committed job references.
#[derive(Debug)]
struct TempFile(Option<PathBuf>);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            // Best effort: a file left behind is removed by the next start-up.
            let _ = fs::remove_file(path);
        }
    }
}

/// Recomputes the size and SHA-256 of a stored document (used by
/// `appliance spool check`).
pub fn hash_document(mut reader: impl Read) -> io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spool(inline_max: u64) -> (tempfile::TempDir, Spool) {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("spool"), 1, inline_max).unwrap();
        (dir, spool)
    }

    fn repetitive(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    fn noise(len: usize) -> Vec<u8> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    fn take(spool: &Spool, data: &[u8]) -> SpooledDocument {
        let mut writer = spool.create(JobUuid::new()).unwrap();
        for chunk in data.chunks(100_000) {
            writer.write_all(chunk).unwrap();
        }
        writer.finish().unwrap()
    }

    fn read_file(spool: &Spool, doc: &SpooledDocument) -> Vec<u8> {
        let mut back = Vec::new();
        spool
            .open_file(doc.uuid, doc.storage.encoding)
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        back
    }

    #[test]
    fn big_documents_are_written_back_window_by_window_and_read_back_whole() {
        let (_dir, spool) = spool(DEFAULT_INLINE_MAX);
        let data = noise(20 << 20);
        let mut writer = spool.create(JobUuid::new()).unwrap();
        for chunk in data.chunks(256 * 1024) {
            writer.write_all(chunk).unwrap();
        }
        let Sink::File { writeback, .. } = &writer.sink else {
            panic!("a 20 MiB document must be in a file");
        };
        // Two full windows handed to the disk, the first of them settled and
        // out of the cache; the last 4 MiB wait for the final fsync.
        assert_eq!(writeback.started, 2 * WRITEBACK_EVERY);
        assert_eq!(writeback.settled, WRITEBACK_EVERY);
        let doc = writer.finish().unwrap();
        assert_eq!(doc.storage.encoding, Encoding::Identity);
        assert_eq!(doc.size, data.len() as u64);
        assert_eq!(doc.sha256, hex::encode(Sha256::digest(&data)));
        assert_eq!(read_file(&spool, &doc), data);
    }

    #[test]
    fn small_documents_stay_in_memory_for_the_database_and_touch_no_file() {
        let (_dir, spool) = spool(DEFAULT_INLINE_MAX);
        let data = repetitive(200_000);
        let doc = take(&spool, &data);
        assert_eq!(doc.storage.place, StoredIn::Database);
        assert_eq!(doc.storage.encoding, Encoding::Zstd, "repetitive data pays");
        assert!(doc.spool_size < doc.size / 10);
        let mut back = Vec::new();
        doc.open_held()
            .unwrap()
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        assert_eq!(
            hash_document(&data[..]).unwrap(),
            (doc.size, doc.sha256.clone())
        );
        assert_eq!(fs::read_dir(&spool.dir).unwrap().count(), 1, "only tmp/");
        assert_eq!(fs::read_dir(&spool.tmp).unwrap().count(), 0);
    }

    #[test]
    fn incompressible_documents_are_stored_as_sent() {
        let (_dir, spool) = spool(DEFAULT_INLINE_MAX);
        let small = take(&spool, &noise(10_000));
        assert_eq!(small.storage.encoding, Encoding::Identity);
        assert_eq!(small.spool_size, small.size);
        let data = noise(1_000_000);
        let big = take(&spool, &data);
        assert_eq!(
            big.storage,
            DocumentStorage {
                place: StoredIn::SpoolFile,
                encoding: Encoding::Identity
            }
        );
        assert!(spool.path(big.uuid, Encoding::Identity).exists());
        assert_eq!(
            fs::metadata(spool.path(big.uuid, Encoding::Identity))
                .unwrap()
                .len(),
            1_000_000
        );
        assert_eq!(read_file(&spool, &big), data);
    }

    #[test]
    fn large_compressible_documents_become_zstd_files() {
        let (_dir, spool) = spool(DEFAULT_INLINE_MAX);
        let data = repetitive(700_000);
        let doc = take(&spool, &data);
        assert_eq!(doc.storage.place, StoredIn::SpoolFile);
        assert_eq!(doc.storage.encoding, Encoding::Zstd);
        assert!(doc.spool_size < doc.size);
        assert_eq!(read_file(&spool, &doc), data);
        assert_eq!(
            hash_document(&data[..]).unwrap(),
            (doc.size, doc.sha256.clone())
        );
    }

    #[test]
    fn jpeg_is_not_even_tried_and_pdf_must_save_an_eighth() {
        assert!(compressed_already(b"\xff\xd8\xff\xe0\0\x10JFIF"));
        assert!(!compressed_already(b"%PDF-1.7"));
        assert!(worth_compressing(800, 700));
        assert!(
            !worth_compressing(800, 701),
            "a PDF that saves 12 % stays as sent"
        );
        let (_dir, spool) = spool(DEFAULT_INLINE_MAX);
        let mut jpeg = b"\xff\xd8\xff\xe0".to_vec();
        jpeg.extend(repetitive(5000));
        assert_eq!(take(&spool, &jpeg).storage.encoding, Encoding::Identity);
    }

    #[test]
    fn only_small_documents_at_a_fast_level_are_cheap_to_take() {
        let (_dir, fast) = spool(DEFAULT_INLINE_MAX);
        assert!(fast.takes_cheaply(4096));
        assert!(!fast.takes_cheaply(DEFAULT_INLINE_MAX + 1));
        let (_dir, files_only) = spool(0);
        assert!(!files_only.takes_cheaply(4096));
        let dir = tempfile::tempdir().unwrap();
        let slow = Spool::open(&dir.path().join("spool"), 19, DEFAULT_INLINE_MAX).unwrap();
        assert!(!slow.takes_cheaply(4096));
    }

    #[test]
    fn inline_max_zero_keeps_every_document_in_a_file() {
        let (_dir, spool) = spool(0);
        let doc = take(&spool, b"%PDF-1.4 tiny");
        assert_eq!(doc.storage.place, StoredIn::SpoolFile);
        assert_eq!(read_file(&spool, &doc), b"%PDF-1.4 tiny");
    }

    #[test]
    fn unpublished_documents_delete_themselves() {
        let (_dir, spool) = spool(0);
        let mut writer = spool.create(JobUuid::new()).unwrap();
        writer.write_all(&noise(200_000)).unwrap();
        drop(writer);
        let doc = take(&spool, &noise(10));
        let path = spool.path(doc.uuid, doc.storage.encoding);
        assert!(path.exists());
        drop(doc);
        assert!(!path.exists(), "an uncommitted document is removed");
        assert_eq!(fs::read_dir(&spool.tmp).unwrap().count(), 0);
    }

    #[test]
    fn recovery_removes_partials_and_files_no_job_needs() {
        let (_dir, spool) = spool(0);
        let kept = take(&spool, &repetitive(1000));
        let orphan = take(&spool, &noise(1000));
        let (kept_uuid, kept_encoding) = (kept.uuid, kept.storage.encoding);
        let orphan_path = spool.path(orphan.uuid, orphan.storage.encoding);
        kept.keep();
        orphan.keep();
        let mut partial = spool.create(JobUuid::new()).unwrap();
        partial.write_all(&noise(SAMPLE + 1)).unwrap();
        std::mem::forget(partial); // as if the process died mid-upload
        fs::write(spool.dir.join("junk.zst"), b"x").unwrap();
        // The right uuid under the wrong encoding is not the job's file.
        fs::write(spool.path(kept_uuid, Encoding::Identity), b"x").unwrap();

        let found = spool
            .recover(|uuid, encoding| Ok(uuid == kept_uuid && encoding == kept_encoding))
            .unwrap();
        assert_eq!(
            found,
            SpoolRecovery {
                partial_uploads: 1,
                orphans: 3
            }
        );
        assert!(spool.path(kept_uuid, kept_encoding).exists());
        assert!(!orphan_path.exists());
    }
}
