//! Spool files: the document bytes of each job, zstd-compressed on disk.
//!
//! A document is written to `spool/tmp/`, hashed (SHA-256 of the bytes as
//! sent), fsynced, renamed to `spool/<uuid>.zst`, and the spool directory
//! fsynced ([`SpoolWriter::finish`]); only then does the store commit the
//! job row. So a committed job always has a complete, durable file, and any
//! other file found at start-up is a crash leftover: [`Spool::recover`]
//! removes it. The finish steps run on each upload's own thread, so the
//! fsyncs of concurrent uploads overlap instead of queueing behind the
//! store's single writer.
//!
//! Everything here is blocking I/O; callers run it on blocking threads.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::dir_sync::DirSync;
use crate::job::JobUuid;

const SPOOL_SUFFIX: &str = "zst";
/// Write buffer in front of the compressor's output file.
const WRITE_BUFFER: usize = 64 * 1024;
/// zstd window (2^17 = 128 KiB): documents compress nearly as well as with
/// the level's default window, and each upload's compressor needs a
/// quarter of the memory.
const WINDOW_LOG: u32 = 17;

/// The spool directory of one store.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
    tmp: PathBuf,
    level: i32,
    dir_sync: Arc<DirSync>,
}

/// What start-up found and removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SpoolRecovery {
    /// Partial uploads interrupted by a crash (in `tmp/`).
    pub partial_uploads: usize,
    /// Complete files whose job row was never committed.
    pub orphans: usize,
}

impl Spool {
    /// Opens (creating if needed) the spool under `dir`.
    pub fn open(dir: &Path, level: i32) -> io::Result<Spool> {
        let tmp = dir.join("tmp");
        fs::create_dir_all(&tmp)?;
        Ok(Spool {
            dir: dir.to_owned(),
            tmp,
            level,
            dir_sync: Arc::new(DirSync::new(dir.to_owned())),
        })
    }

    /// Where a committed job's document lives.
    pub fn path(&self, uuid: JobUuid) -> PathBuf {
        self.dir.join(format!("{uuid}.{SPOOL_SUFFIX}"))
    }

    /// Starts writing a document for `uuid` into a temporary file.
    pub fn create(&self, uuid: JobUuid) -> io::Result<SpoolWriter> {
        let tmp_path = self.tmp.join(format!("{uuid}.{SPOOL_SUFFIX}.part"));
        let file = File::create(&tmp_path)?;
        let guard = TempFile(Some(tmp_path));
        let mut encoder =
            zstd::Encoder::new(BufWriter::with_capacity(WRITE_BUFFER, file), self.level)?;
        encoder.window_log(WINDOW_LOG)?;
        Ok(SpoolWriter {
            spool: self.clone(),
            uuid,
            guard,
            encoder,
            hasher: Sha256::new(),
            size: 0,
        })
    }

    /// Makes renames and removals in the spool directory durable (sharing
    /// the fsync with concurrent callers).
    pub fn sync_dir(&self) -> io::Result<()> {
        self.dir_sync.sync()
    }

    /// Opens a committed document, decompressing as it is read.
    pub fn open_document(&self, uuid: JobUuid) -> io::Result<impl Read + Send + 'static> {
        let file = File::open(self.path(uuid))?;
        zstd::Decoder::new(file)
    }

    /// A second, durable name for a stored document (a reprint is a new job
    /// on the same bytes): a hard link, so no bytes are copied. Dropped
    /// without [`SpooledDocument::keep`], the new name goes again.
    pub fn link(
        &self,
        from: JobUuid,
        to: JobUuid,
        document: &crate::job::DocumentRecord,
    ) -> io::Result<SpooledDocument> {
        let path = self.path(to);
        fs::hard_link(self.path(from), &path)?;
        let guard = TempFile(Some(path));
        self.sync_dir()?;
        Ok(SpooledDocument {
            uuid: to,
            guard,
            size: document.size,
            spool_size: document.spool_size,
            sha256: document.sha256.clone(),
        })
    }

    /// Deletes a job's document (after the job finished). Missing is fine.
    pub fn remove(&self, uuid: JobUuid) -> io::Result<()> {
        match fs::remove_file(self.path(uuid)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Removes crash leftovers: every temporary file, and every spool file
    /// whose job is not in `committed` (the uuids the store holds a document for).
    pub fn recover(&self, committed: &HashSet<JobUuid>) -> io::Result<SpoolRecovery> {
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
            let uuid = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(&format!(".{SPOOL_SUFFIX}")))
                .and_then(JobUuid::parse);
            if uuid.is_none_or(|u| !committed.contains(&u)) {
                fs::remove_file(&path)?;
                found.orphans += 1;
            }
        }
        if found != SpoolRecovery::default() {
            self.sync_dir()?;
        }
        Ok(found)
    }
}

/// Streams one document into a temporary spool file.
pub struct SpoolWriter {
    spool: Spool,
    uuid: JobUuid,
    guard: TempFile,
    encoder: zstd::Encoder<'static, BufWriter<File>>,
    hasher: Sha256,
    size: u64,
}

impl SpoolWriter {
    /// Bytes written so far (as sent, before compression).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Finishes the compressed stream, fsyncs the file, moves it to its
    /// final name and fsyncs the directory: afterwards the document survives
    /// power loss, and only the job row is missing to make it a job.
    pub fn finish(self) -> io::Result<SpooledDocument> {
        let SpoolWriter {
            spool,
            uuid,
            mut guard,
            encoder,
            hasher,
            size,
        } = self;
        let file = encoder.finish()?.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        let spool_size = file.metadata()?.len();
        drop(file);
        let target = spool.path(uuid);
        if let Some(tmp) = guard.0.take() {
            // From here on the guard owns the final name: dropped before the
            // job commits, the document is deleted.
            guard.0 = Some(target.clone());
            fs::rename(&tmp, &target)?;
        }
        spool.sync_dir()?;
        Ok(SpooledDocument {
            uuid,
            guard,
            size,
            spool_size,
            sha256: hex::encode(hasher.finalize()),
        })
    }
}

impl Write for SpoolWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.encoder.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.encoder.flush()
    }
}

/// A complete, durable document waiting for its job row to commit.
/// Dropped without [`SpooledDocument::keep`], it deletes its file.
#[derive(Debug)]
pub struct SpooledDocument {
    /// The job it belongs to.
    pub uuid: JobUuid,
    guard: TempFile,
    /// Bytes as sent.
    pub size: u64,
    /// Bytes on disk.
    pub spool_size: u64,
    /// Hex SHA-256 of the bytes as sent.
    pub sha256: String,
}

impl SpooledDocument {
    /// The job row referencing this document has committed: keep the file.
    pub fn keep(mut self) {
        self.guard.0 = None;
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

/// Recomputes the SHA-256 of a stored document (used by `appliance spool check`).
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

    fn spool() -> (tempfile::TempDir, Spool) {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("spool"), 1).unwrap();
        (dir, spool)
    }

    #[test]
    fn round_trip_keeps_bytes_and_hash() {
        let (_dir, spool) = spool();
        let uuid = JobUuid::new();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut writer = spool.create(uuid).unwrap();
        writer.write_all(&data).unwrap();
        let doc = writer.finish().unwrap();
        assert_eq!(doc.size, data.len() as u64);
        assert!(doc.spool_size < doc.size, "repetitive data compresses");
        let (doc_size, doc_sha) = (doc.size, doc.sha256.clone());
        doc.keep();
        let mut back = Vec::new();
        spool
            .open_document(uuid)
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        let (size, sha) = hash_document(&data[..]).unwrap();
        assert_eq!((size, sha), (doc_size, doc_sha));
    }

    #[test]
    fn unpublished_documents_delete_themselves() {
        let (_dir, spool) = spool();
        let mut writer = spool.create(JobUuid::new()).unwrap();
        writer.write_all(b"partial").unwrap();
        drop(writer);
        let uuid = JobUuid::new();
        let doc = spool.create(uuid).unwrap().finish().unwrap();
        assert!(spool.path(uuid).exists());
        drop(doc);
        assert!(
            !spool.path(uuid).exists(),
            "an uncommitted document is removed"
        );
        assert_eq!(fs::read_dir(&spool.tmp).unwrap().count(), 0);
    }

    #[test]
    fn recovery_removes_partials_and_orphans_only() {
        let (_dir, spool) = spool();
        let kept = JobUuid::new();
        let orphan = JobUuid::new();
        for uuid in [kept, orphan] {
            spool.create(uuid).unwrap().finish().unwrap().keep();
        }
        let partial = spool.create(JobUuid::new()).unwrap();
        std::mem::forget(partial); // as if the process died mid-upload
        fs::write(spool.dir.join("junk.zst"), b"x").unwrap();

        let found = spool.recover(&HashSet::from([kept])).unwrap();
        assert_eq!(
            found,
            SpoolRecovery {
                partial_uploads: 1,
                orphans: 2
            }
        );
        assert!(spool.path(kept).exists());
        assert!(!spool.path(orphan).exists());
    }
}
