//! A consistent copy of a store taken while it serves (`appliance backup`),
//! and putting one back (`appliance restore`).
//!
//! **Backup.** The database is copied by `VACUUM INTO`: one read
//! transaction, so a consistent snapshot however busy the writer is. Then
//! every spool file that snapshot needs is copied. Spool files never change
//! once committed, but one may be deleted after the snapshot (its job
//! printed or expired meanwhile); then a new snapshot is taken, which no
//! longer needs it, and the files it needs that are still missing are
//! copied, until one snapshot has all its files (one round, or a few under
//! load). The installation key goes with it (cards and PIN-only PINs are
//! hashed under it: a store restored without it logs nobody in by card),
//! and so do a fleet site's identity files. The backup holds secrets: its
//! directory is 0700 and its files 0600. Everything is fsynced, and
//! `backup.json`, written last, lists every file with its size and SHA-256:
//! a backup without it is incomplete.
//!
//! **Restore** checks every file of the backup against `backup.json`,
//! copies them into `DATA_DIR/.restoring/`, moves what the data directory
//! held into `DATA_DIR/before-restore-TIME/` (only with `replace`), and
//! renames the restored files into place. It works in place, so the data
//! directory may be a mount point. A restore interrupted midway leaves
//! `.restoring/`, which stops the daemon from starting until the restore
//! is run again. It refuses a data directory an appliance is running on.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::admin::DB_FILE;
use super::jobs::{SPOOLED, needed_spool_files};

/// The manifest's file name.
pub const MANIFEST: &str = "backup.json";
/// Where a restore stages its files inside the data directory.
pub const RESTORING: &str = ".restoring";
/// The lock file an appliance holds on its data directory while it runs.
pub const LOCK_FILE: &str = "appliance.lock";
/// The files besides the database and the spool that a backup carries:
/// the installation key and a fleet site's identity.
const KEPT_FILES: &[&str] = &[
    "installation.key",
    "site.pem",
    "central-ca.pem",
    "fleet.key",
];
/// Snapshots taken before giving up on a store that deletes documents
/// faster than they can be copied.
const MAX_ROUNDS: u32 = 10;

/// Why a backup or a restore cannot be done.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Something the operator must change (a target that is not empty, an
    /// appliance running on the data directory, a damaged backup).
    #[error("{0}")]
    Refused(String),
    /// Reading or writing failed.
    #[error("{path}: {cause}")]
    Io {
        /// The file or directory.
        path: String,
        /// What the system said.
        cause: io::Error,
    },
    /// The database could not be copied or read.
    #[error("database: {0}")]
    Database(#[from] rusqlite::Error),
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> BackupError + '_ {
    move |cause| BackupError::Io {
        path: path.display().to_string(),
        cause,
    }
}

/// One file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Relative to the backup directory.
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
}

/// `backup.json`: what a complete backup holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// The format of this directory (1).
    pub format: u32,
    /// When the snapshot was taken, ms since the Unix epoch.
    pub created_ms: i64,
    /// The software that took it.
    pub software: String,
    /// Jobs in the snapshot.
    pub jobs: u64,
    /// Documents carried (in spool files or in the database).
    pub documents: u64,
    /// Snapshots taken until one had all its files.
    pub rounds: u32,
    /// Every file.
    pub files: Vec<ManifestFile>,
}

/// Copies the store under `data_dir` into `target` (which must not exist,
/// or be empty) while the appliance may be running.
pub fn backup(data_dir: &Path, target: &Path) -> Result<Manifest, BackupError> {
    let source_db = data_dir.join(DB_FILE);
    if !source_db.exists() {
        return Err(BackupError::Refused(format!(
            "no job store at {} (check data_dir)",
            source_db.display()
        )));
    }
    make_private_dir(target)?;
    if fs::read_dir(target)
        .map_err(io_error(target))?
        .next()
        .is_some()
    {
        return Err(BackupError::Refused(format!(
            "{} is not empty: back up into a new directory",
            target.display()
        )));
    }
    let spool_target = target.join("spool");
    make_private_dir(&spool_target)?;
    let source = Connection::open_with_flags(
        &source_db,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    source.busy_timeout(std::time::Duration::from_secs(30))?;
    let snapshot = target.join(DB_FILE);
    let staged = target.join(format!("{DB_FILE}.part"));
    let mut copied: HashSet<String> = HashSet::new();
    let mut rounds = 0;
    let needed = loop {
        rounds += 1;
        let _ = fs::remove_file(&staged);
        source.execute("VACUUM INTO ?1", [staged.display().to_string()])?;
        let needed = needed_spool_files(&Connection::open(&staged)?)?;
        let mut missing = false;
        for name in &needed {
            if copied.contains(name) {
                continue;
            }
            match copy_private(&data_dir.join("spool").join(name), &spool_target.join(name)) {
                Ok(()) => {
                    copied.insert(name.clone());
                }
                // Deleted since the snapshot: the next one does not need it.
                Err(e) if e.kind() == io::ErrorKind::NotFound => missing = true,
                Err(e) => return Err(io_error(&data_dir.join("spool").join(name))(e)),
            }
        }
        if !missing {
            break needed;
        }
        if rounds == MAX_ROUNDS {
            return Err(BackupError::Refused(format!(
                "documents were deleted faster than they could be copied, {MAX_ROUNDS} times: \
                 try again when the appliance is less busy"
            )));
        }
    };
    // Files the last snapshot does not need (copied for an earlier one) go.
    for name in copied.difference(&needed) {
        let _ = fs::remove_file(spool_target.join(name));
    }
    fs::rename(&staged, &snapshot).map_err(io_error(&snapshot))?;
    set_private(&snapshot)?;
    for name in KEPT_FILES {
        match copy_private(&data_dir.join(name), &target.join(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&data_dir.join(name))(e)),
        }
    }
    let (jobs, documents): (i64, i64) = Connection::open(&snapshot)?.query_row(
        &format!("SELECT count(*), count(*) FILTER (WHERE {SPOOLED}) FROM jobs"),
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut files = Vec::new();
    let mut names: Vec<String> = KEPT_FILES
        .iter()
        .map(|n| (*n).to_owned())
        .chain([DB_FILE.to_owned()])
        .chain(needed.iter().map(|name| format!("spool/{name}")))
        .filter(|n| target.join(n).exists())
        .collect();
    names.sort();
    for name in names {
        files.push(describe(target, &name)?);
    }
    sync_dir(&spool_target)?;
    sync_dir(target)?;
    let manifest = Manifest {
        format: 1,
        created_ms: crate::job::now_ms(),
        software: format!("appliance {}", env!("CARGO_PKG_VERSION")),
        jobs: u64::try_from(jobs).unwrap_or(0),
        documents: u64::try_from(documents).unwrap_or(0),
        rounds,
        files,
    };
    let text = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| BackupError::Refused(format!("cannot write {MANIFEST}: {e}")))?;
    sync_protocol::private_file::replace(target, MANIFEST, &text)
        .map_err(io_error(&target.join(MANIFEST)))?;
    Ok(manifest)
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct Restored {
    /// The backup's manifest.
    pub manifest: Manifest,
    /// Where the data directory's former contents went, if it had any.
    pub set_aside: Option<PathBuf>,
}

/// Puts the backup in `backup` into `data_dir`. A data directory that
/// already holds a store is refused unless `replace`, and then its contents
/// are kept in `before-restore-TIME/` inside it.
pub fn restore(backup: &Path, data_dir: &Path, replace: bool) -> Result<Restored, BackupError> {
    let manifest = read_manifest(backup)?;
    make_private_dir(data_dir)?;
    let _lock = lock(data_dir)?.ok_or_else(|| {
        BackupError::Refused(format!(
            "an appliance is running on {}: stop it first (systemctl stop appliance)",
            data_dir.display()
        ))
    })?;
    let staging = data_dir.join(RESTORING);
    let existing: Vec<PathBuf> = fs::read_dir(data_dir)
        .map_err(io_error(data_dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name != RESTORING && name != LOCK_FILE && !name.starts_with("before-restore-")
        })
        .collect();
    if data_dir.join(DB_FILE).exists() && !replace {
        return Err(BackupError::Refused(format!(
            "{} already holds a job store: restore into an empty directory, or add --replace \
             (its contents are then kept in {}/before-restore-TIME/)",
            data_dir.display(),
            data_dir.display()
        )));
    }
    // Staged and checked first: a damaged backup changes nothing.
    let _ = fs::remove_dir_all(&staging);
    make_private_dir(&staging.join("spool"))?;
    for file in &manifest.files {
        let from = backup.join(&file.path);
        let to = staging.join(&file.path);
        copy_private(&from, &to).map_err(io_error(&from))?;
        let found = describe(&staging, &file.path)?;
        if &found != file {
            let _ = fs::remove_dir_all(&staging);
            return Err(BackupError::Refused(format!(
                "{} in the backup is damaged (size or SHA-256 differs from {MANIFEST}); \
                 nothing was restored",
                file.path
            )));
        }
    }
    sync_dir(&staging.join("spool"))?;
    sync_dir(&staging)?;
    let set_aside = if existing.is_empty() {
        None
    } else {
        let stamp = jiff::Timestamp::now()
            .strftime("%Y%m%dT%H%M%SZ")
            .to_string();
        let aside = data_dir.join(format!("before-restore-{stamp}"));
        make_private_dir(&aside)?;
        for path in &existing {
            if let Some(name) = path.file_name() {
                fs::rename(path, aside.join(name)).map_err(io_error(path))?;
            }
        }
        sync_dir(&aside)?;
        Some(aside)
    };
    for entry in fs::read_dir(&staging).map_err(io_error(&staging))? {
        let entry = entry.map_err(io_error(&staging))?;
        let to = data_dir.join(entry.file_name());
        fs::rename(entry.path(), &to).map_err(io_error(&to))?;
    }
    fs::remove_dir(&staging).map_err(io_error(&staging))?;
    sync_dir(data_dir)?;
    Ok(Restored {
        manifest,
        set_aside,
    })
}

/// Reads and checks a backup's manifest.
pub fn read_manifest(backup: &Path) -> Result<Manifest, BackupError> {
    let path = backup.join(MANIFEST);
    let text = fs::read(&path).map_err(|e| {
        BackupError::Refused(format!(
            "{} cannot be read ({e}): not a backup, or an incomplete one",
            path.display()
        ))
    })?;
    let manifest: Manifest = serde_json::from_slice(&text)
        .map_err(|e| BackupError::Refused(format!("{} is damaged: {e}", path.display())))?;
    if manifest.format != 1 {
        return Err(BackupError::Refused(format!(
            "{} is format {}; this appliance restores format 1",
            path.display(),
            manifest.format
        )));
    }
    let safe = |p: &str| {
        Path::new(p)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
    };
    if let Some(bad) = manifest.files.iter().find(|f| !safe(&f.path)) {
        return Err(BackupError::Refused(format!(
            "{} names a file outside the backup: {}",
            path.display(),
            bad.path
        )));
    }
    Ok(manifest)
}

/// Takes the data directory's lock (held by a running appliance); none if
/// another process holds it.
pub fn lock(data_dir: &Path) -> Result<Option<File>, BackupError> {
    let path = data_dir.join(LOCK_FILE);
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(io_error(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(e)) => Err(io_error(&path)(e)),
    }
}

fn describe(dir: &Path, name: &str) -> Result<ManifestFile, BackupError> {
    let path = dir.join(name);
    let mut file = File::open(&path).map_err(io_error(&path))?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io_error(&path))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        size += n as u64;
    }
    Ok(ManifestFile {
        path: name.to_owned(),
        size,
        sha256: hex::encode(hash.finalize()),
    })
}

/// Copies `from` to `to` (0600), fsynced.
fn copy_private(from: &Path, to: &Path) -> io::Result<()> {
    let mut input = File::open(from)?;
    let mut output = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(to)?;
    io::copy(&mut input, &mut output)?;
    output.flush()?;
    output.sync_all()
}

fn set_private(path: &Path) -> Result<(), BackupError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io_error(path))
}

fn make_private_dir(dir: &Path) -> Result<(), BackupError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_error(dir))
}

fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_naming_a_file_outside_the_backup_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = Manifest {
            format: 1,
            created_ms: 0,
            software: "test".into(),
            jobs: 0,
            documents: 0,
            rounds: 1,
            files: vec![ManifestFile {
                path: "../../etc/passwd".into(),
                size: 1,
                sha256: String::new(),
            }],
        };
        fs::write(
            dir.path().join(MANIFEST),
            serde_json::to_vec(&manifest).unwrap(),
        )
        .unwrap();
        let e = read_manifest(dir.path()).unwrap_err().to_string();
        assert!(e.contains("outside the backup"), "{e}");
    }

    #[test]
    fn the_lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock(dir.path()).unwrap();
        assert!(held.is_some());
        // flock locks belong to the open file: a second open is refused.
        assert!(lock(dir.path()).unwrap().is_none());
        drop(held);
        assert!(lock(dir.path()).unwrap().is_some());
    }
}
