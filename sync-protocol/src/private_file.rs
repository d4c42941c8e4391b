//! Secret files (keys, certificates) in a data directory: mode 0600,
//! written whole or not at all, and fsynced with their directory, so a
//! crash never leaves a half key behind.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

fn write_temp(dir: &Path, name: &str, contents: &[u8]) -> io::Result<std::path::PathBuf> {
    let tmp = dir.join(format!("{name}.{}.tmp", std::process::id()));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(tmp)
}

/// Reads `dir/name`, creating it from `make()` if it does not exist yet.
/// Creation is atomic and first-wins: two processes starting together
/// read the same contents.
pub fn read_or_create(
    dir: &Path,
    name: &str,
    make: impl FnOnce() -> io::Result<Vec<u8>>,
) -> io::Result<Vec<u8>> {
    let path = dir.join(name);
    match fs::read(&path) {
        Ok(bytes) => return Ok(bytes),
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    let contents = make()?;
    let tmp = write_temp(dir, name, &contents)?;
    // A hard link fails if the file appeared meanwhile; then the other wins.
    let linked = fs::hard_link(&tmp, &path);
    fs::remove_file(&tmp)?;
    match linked {
        Ok(()) => {
            fs::File::open(dir)?.sync_all()?;
            Ok(contents)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => fs::read(&path),
        Err(e) => Err(e),
    }
}

/// Writes `dir/name` (mode 0600), replacing any earlier version atomically.
pub fn replace(dir: &Path, name: &str, contents: &[u8]) -> io::Result<()> {
    let tmp = write_temp(dir, name, contents)?;
    if let Err(e) = fs::rename(&tmp, dir.join(name)) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_once_then_read_private_and_no_temp_left() {
        let dir = tempfile::tempdir().unwrap();
        let first = read_or_create(dir.path(), "k", || Ok(b"one".to_vec())).unwrap();
        let second = read_or_create(dir.path(), "k", || Ok(b"two".to_vec())).unwrap();
        assert_eq!(
            (first.as_slice(), second.as_slice()),
            (&b"one"[..], &b"one"[..])
        );
        let mode = fs::metadata(dir.path().join("k"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        replace(dir.path(), "k", b"three").unwrap();
        assert_eq!(fs::read(dir.path().join("k")).unwrap(), b"three");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
