//! The hot folder on disk. A dropped file moves, by renames within the
//! folder's own file system, from where it was dropped into
//! `.taking/<job id>/` (made durable before its job is stored, so a power
//! cut cannot bring the file back beside its job), then to `done/`,
//! `rejected/` (beside a `.reason.txt`) or away. After a crash, a file in
//! `.taking/` is finished if its job is in the store and taken again if
//! not: no file is lost or printed twice. Blocking calls, for the blocking
//! pool.

use std::fs::{self, File};
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};

use super::naming::{self, DONE, REJECTED, TAKING};
use super::settle::Stamp;
use crate::job::JobUuid;

/// A file on its way to becoming a job.
#[derive(Debug, Clone)]
pub struct Taken {
    /// Its job's id, which names its directory in `.taking/`.
    pub uuid: JobUuid,
    /// Its path below the folder where it was dropped.
    pub relative: PathBuf,
}

/// What a listing of the folder found.
#[derive(Debug, Default)]
pub struct Dropped {
    /// The files, by path below the folder, with their size and time.
    pub files: Vec<(PathBuf, Stamp)>,
    /// The owners' directories (with `owner_from = "directory"`).
    pub directories: Vec<PathBuf>,
}

/// One watched folder.
#[derive(Debug)]
pub struct Folder {
    root: PathBuf,
    /// How deep dropped files sit (2 with owners' directories).
    depth: usize,
}

impl Folder {
    /// The folder at `root`, with files `depth` levels down.
    pub fn new(root: PathBuf, depth: usize) -> Folder {
        Folder { root, depth }
    }

    /// The watched directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the folder and the appliance's directories in it.
    pub fn prepare(&self, keep_done: bool) -> io::Result<()> {
        fs::create_dir_all(self.root.join(TAKING))?;
        fs::create_dir_all(self.root.join(REJECTED))?;
        if keep_done {
            fs::create_dir_all(self.root.join(DONE))?;
        }
        Ok(())
    }

    /// The dropped files and what each looks like now, and the owners'
    /// directories. Symbolic links are never followed: a link dropped in
    /// must not print what it points at.
    pub fn dropped(&self) -> io::Result<Dropped> {
        let mut found = Dropped::default();
        self.collect(Path::new(""), 1, &mut found)?;
        Ok(found)
    }

    fn collect(&self, below: &Path, level: usize, found: &mut Dropped) -> io::Result<()> {
        for entry in fs::read_dir(self.root.join(below))? {
            let entry = entry?;
            let name = entry.file_name();
            if !naming::is_candidate(&name.to_string_lossy(), level) {
                continue;
            }
            let relative = below.join(&name);
            let kind = entry.file_type()?;
            // A file above its depth (outside an owner's directory) is
            // listed too, to be rejected with the reason.
            if kind.is_file() {
                let meta = entry.metadata()?;
                let stamp = Stamp {
                    len: meta.len(),
                    modified: meta.modified().ok(),
                };
                found.files.push((relative, stamp));
            } else if kind.is_dir() && level < self.depth {
                found.directories.push(self.root.join(&relative));
                match self.collect(&relative, level + 1, found) {
                    // Removed while being listed.
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    other => other?,
                }
            }
        }
        Ok(())
    }

    /// The files a crash left in `.taking/`, and the directories it left
    /// empty (removed here).
    pub fn left_taking(&self) -> io::Result<Vec<Taken>> {
        let mut left = Vec::new();
        for entry in fs::read_dir(self.root.join(TAKING))? {
            let entry = entry?;
            let Some(uuid) = entry.file_name().to_str().and_then(JobUuid::parse) else {
                continue;
            };
            let dir = entry.path();
            let mut files = Vec::new();
            collect_files(&dir, Path::new(""), self.depth, &mut files)?;
            match files.into_iter().next() {
                Some(relative) => left.push(Taken { uuid, relative }),
                None => remove_tree(&dir)?,
            }
        }
        Ok(left)
    }

    /// Moves each of `relatives` into `.taking/`, durably; a file that is
    /// gone by now is skipped, one that cannot be moved is logged and left.
    pub fn take(&self, relatives: Vec<PathBuf>) -> io::Result<Vec<Taken>> {
        let mut taken = Vec::with_capacity(relatives.len());
        let mut sources = Vec::new();
        for relative in relatives {
            let uuid = JobUuid::new();
            let home = self.taking_dir(uuid);
            let destination = home.join(&relative);
            let parent = destination.parent().unwrap_or(&home).to_owned();
            fs::create_dir_all(&parent)?;
            match fs::rename(self.root.join(&relative), &destination) {
                Ok(()) => {}
                Err(e) => {
                    remove_tree(&home)?;
                    if e.kind() != ErrorKind::NotFound {
                        tracing::warn!(folder = %self.root.display(), file = %relative.display(), error = %e,
                            "hot folder cannot move the file into .taking/; it stays where it is");
                    }
                    continue;
                }
            }
            sync_dir(&parent)?;
            if parent != home {
                sync_dir(&home)?;
            }
            let source = self.root.join(&relative);
            if let Some(dir) = source.parent()
                && !sources.iter().any(|d: &PathBuf| d == dir)
            {
                sources.push(dir.to_owned());
            }
            taken.push(Taken { uuid, relative });
        }
        if !taken.is_empty() {
            sync_dir(&self.root.join(TAKING))?;
            for dir in &sources {
                sync_dir(dir)?;
            }
        }
        Ok(taken)
    }

    /// Where a taken file is now.
    pub fn path_of(&self, taken: &Taken) -> PathBuf {
        self.taking_dir(taken.uuid).join(&taken.relative)
    }

    /// After its job is stored: the file moves to `done/` (under a free
    /// name) or is deleted. Safe to repeat.
    pub fn finish(&self, taken: &Taken, keep_done: bool) -> io::Result<()> {
        let current = self.path_of(taken);
        let moved = if keep_done {
            let done = self.root.join(DONE);
            let name = naming::free_name(&taken.relative, |p| done.join(p).exists());
            move_into(&current, &done.join(name))
        } else {
            fs::remove_file(&current)
        };
        match moved {
            Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        remove_tree(&self.taking_dir(taken.uuid))
    }

    /// Moves a file that cannot become a job to `rejected/`, beside a
    /// `.reason.txt` saying why; returns where it went.
    pub fn reject(&self, taken: &Taken, reason: &str) -> io::Result<PathBuf> {
        let rejected = self.root.join(REJECTED);
        let name = naming::free_name(&taken.relative, |p| {
            let path = rejected.join(p);
            path.exists() || naming::reason_file(&path).exists()
        });
        let destination = rejected.join(name);
        if let Some(parent) = destination.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(naming::reason_file(&destination), format!("{reason}\n"))?;
        move_into(&self.path_of(taken), &destination)?;
        remove_tree(&self.taking_dir(taken.uuid))?;
        Ok(destination)
    }

    fn taking_dir(&self, uuid: JobUuid) -> PathBuf {
        self.root.join(TAKING).join(uuid.to_string())
    }
}

fn collect_files(
    dir: &Path,
    below: &Path,
    levels: usize,
    found: &mut Vec<PathBuf>,
) -> io::Result<()> {
    for entry in fs::read_dir(dir.join(below))? {
        let entry = entry?;
        let relative = below.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_file() {
            found.push(relative);
        } else if kind.is_dir() && levels > 1 {
            collect_files(dir, &relative, levels - 1, found)?;
        }
    }
    Ok(())
}

fn move_into(from: &Path, to: &Path) -> io::Result<()> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::rename(from, to)
}

fn remove_tree(dir: &Path) -> io::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Makes the renames into or out of `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(depth: usize) -> (tempfile::TempDir, Folder) {
        let dir = tempfile::tempdir().unwrap();
        let folder = Folder::new(dir.path().join("drop"), depth);
        folder.prepare(true).unwrap();
        (dir, folder)
    }

    #[test]
    fn files_move_through_taking_to_done() {
        let (_dir, folder) = folder(2);
        fs::create_dir_all(folder.root().join("alice")).unwrap();
        fs::write(folder.root().join("alice/scan.pdf"), b"%PDF-").unwrap();
        fs::write(folder.root().join("stray.pdf"), b"%PDF-").unwrap();
        fs::write(folder.root().join("alice/.scan.pdf.tmp"), b"%PDF-").unwrap();

        let dropped = folder.dropped().unwrap();
        let mut names: Vec<_> = dropped.files.iter().map(|(p, _)| p.clone()).collect();
        names.sort();
        let expected = ["alice/scan.pdf", "stray.pdf"].map(PathBuf::from);
        assert_eq!(names, expected, "a stray file is listed, to be rejected");
        assert_eq!(dropped.directories, vec![folder.root().join("alice")]);

        let taken = folder.take(names).unwrap();
        assert_eq!(taken.len(), 2);
        assert!(folder.path_of(&taken[0]).is_file());
        assert!(folder.dropped().unwrap().files.is_empty());
        assert_eq!(
            folder.left_taking().unwrap().len(),
            2,
            "found after a crash"
        );

        for taken in &taken {
            folder.finish(taken, true).unwrap();
            // Repeated after a crash: nothing left to do.
            folder.finish(taken, true).unwrap();
        }
        assert!(folder.root().join("done/alice/scan.pdf").is_file());
        assert!(folder.root().join("done/stray.pdf").is_file());
        assert!(folder.left_taking().unwrap().is_empty());
    }

    #[test]
    fn rejected_files_keep_their_reason_and_never_overwrite() {
        let (_dir, folder) = folder(1);
        for round in 0..2 {
            fs::write(folder.root().join("memo.docx"), format!("{round}")).unwrap();
            let taken = folder.take(vec!["memo.docx".into()]).unwrap();
            folder.reject(&taken[0], "not a print format").unwrap();
        }
        let rejected = folder.root().join(REJECTED);
        assert_eq!(fs::read_to_string(rejected.join("memo.docx")).unwrap(), "0");
        assert_eq!(
            fs::read_to_string(rejected.join("memo (2).docx")).unwrap(),
            "1"
        );
        assert_eq!(
            fs::read_to_string(rejected.join("memo (2).docx.reason.txt")).unwrap(),
            "not a print format\n"
        );
        assert!(folder.left_taking().unwrap().is_empty());
    }

    #[test]
    fn links_are_not_followed_and_vanished_files_are_skipped() {
        let (dir, folder) = folder(1);
        let secret = dir.path().join("secret.key");
        fs::write(&secret, b"%PDF-").unwrap();
        std::os::unix::fs::symlink(&secret, folder.root().join("link.pdf")).unwrap();
        assert!(folder.dropped().unwrap().files.is_empty());
        assert!(folder.take(vec!["gone.pdf".into()]).unwrap().is_empty());
        assert!(folder.left_taking().unwrap().is_empty());
    }
}
