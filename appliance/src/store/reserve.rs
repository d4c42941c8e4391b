//! Room on the data disk kept for state changes, so that a full disk stops
//! new documents and nothing else.
//!
//! A ballast file (`DATA_DIR/reserve`, allocated, not sparse) holds the
//! room while the disk has space. When the disk fills up (documents, or
//! anything else on it), the store's writer deletes the ballast before it
//! writes: logins, releases, job progress and the journal go on in the
//! room it held. From then on intake refuses documents ("spool area
//! full") until free space is back above twice the reserve, when the
//! ballast is allocated again. Intake never takes the reserve's room: it
//! asks [`DiskReserve::accepts_documents`] before a document and as it
//! writes.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The ballast file of a data directory, and whether it is in place.
#[derive(Debug, Clone)]
pub struct DiskReserve {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    bytes: u64,
    held: AtomicBool,
}

/// Bytes the filesystem holding `path` has free for unprivileged writers.
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: a NUL-terminated path and a buffer of the right type, which
    // statvfs fills when it returns 0.
    if unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled the buffer.
    let stat = unsafe { stat.assume_init() };
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

impl DiskReserve {
    /// Keeps `bytes` of room in `data_dir` (none when 0). Allocates the
    /// ballast if it is missing and the disk has room for it twice over;
    /// otherwise starts with the reserve already spent.
    pub fn open(data_dir: &Path, bytes: u64) -> io::Result<DiskReserve> {
        let reserve = DiskReserve {
            inner: Arc::new(Inner {
                path: data_dir.join("reserve"),
                bytes,
                held: AtomicBool::new(false),
            }),
        };
        let present = fs::metadata(&reserve.inner.path).is_ok_and(|m| m.len() >= bytes);
        if bytes == 0 || present {
            reserve.inner.held.store(true, Ordering::SeqCst);
        } else if !reserve.replenish()? {
            tracing::warn!(
                reserve_bytes = bytes,
                "the data disk has less than twice the reserve free: documents are refused until \
                 space is freed (or store.reserve_bytes is lowered)"
            );
        }
        Ok(reserve)
    }

    /// Whether intake may write documents: the ballast is in place.
    pub fn accepts_documents(&self) -> bool {
        self.inner.held.load(Ordering::SeqCst)
    }

    /// The disk is (nearly) full: delete the ballast so state changes have
    /// room. Returns whether this call freed it.
    pub fn release(&self) -> bool {
        if self.inner.bytes == 0 || !self.inner.held.swap(false, Ordering::SeqCst) {
            return false;
        }
        match fs::remove_file(&self.inner.path) {
            Ok(()) => {
                tracing::error!(
                    reserve_bytes = self.inner.bytes,
                    "the data disk is full: the reserve is released for job state changes, and new \
                     documents are refused until space is freed"
                );
                true
            }
            Err(e) => {
                tracing::error!(error = %e, path = %self.inner.path.display(), "cannot release the disk reserve");
                false
            }
        }
    }

    /// Whether the disk is so full that the next writes may fail: less free
    /// than half the reserve.
    pub fn is_short(&self) -> bool {
        self.inner.bytes > 0
            && free_bytes(&self.inner.path.with_file_name("."))
                .is_ok_and(|free| free < self.inner.bytes / 2)
    }

    /// Allocates the ballast again once the disk has room for it twice
    /// over; returns whether documents are accepted now.
    pub fn replenish(&self) -> io::Result<bool> {
        if self.accepts_documents() {
            return Ok(true);
        }
        let dir = self.inner.path.with_file_name(".");
        if free_bytes(&dir)? < self.inner.bytes.saturating_mul(2) {
            return Ok(false);
        }
        allocate(&self.inner.path, self.inner.bytes)?;
        self.inner.held.store(true, Ordering::SeqCst);
        tracing::info!(
            reserve_bytes = self.inner.bytes,
            "the data disk has room again: the reserve is in place and documents are accepted"
        );
        Ok(true)
    }
}

/// Writes `path` with `bytes` of allocated (not sparse) space, durably.
fn allocate(path: &Path, bytes: u64) -> io::Result<()> {
    let file: File = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    let len = i64::try_from(bytes).map_err(io::Error::other)?;
    // SAFETY: posix_fallocate on an open descriptor we own; no pointers.
    let err = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    if err != 0 {
        let _ = fs::remove_file(path);
        return Err(io::Error::from_raw_os_error(err));
    }
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ballast_is_allocated_released_once_and_allocated_again() {
        let dir = tempfile::tempdir().unwrap();
        let reserve = DiskReserve::open(dir.path(), 1 << 20).unwrap();
        let ballast = dir.path().join("reserve");
        assert_eq!(fs::metadata(&ballast).unwrap().len(), 1 << 20);
        assert!(reserve.accepts_documents());
        assert!(reserve.release());
        assert!(!reserve.release(), "released once");
        assert!(!ballast.exists());
        assert!(!reserve.accepts_documents());
        assert!(reserve.replenish().unwrap());
        assert!(reserve.accepts_documents());
        assert!(ballast.exists());
        // A restart finds it in place.
        let again = DiskReserve::open(dir.path(), 1 << 20).unwrap();
        assert!(again.accepts_documents());
    }

    #[test]
    fn no_reserve_means_documents_always_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let reserve = DiskReserve::open(dir.path(), 0).unwrap();
        assert!(!reserve.release());
        assert!(reserve.accepts_documents());
        assert!(!reserve.is_short());
        assert!(!dir.path().join("reserve").exists());
    }
}
