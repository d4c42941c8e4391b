//! The installation's secret key (`DATA_DIR/installation.key`, 32 random
//! bytes, mode 0600), created at first start. It keys the lookup hashes of
//! cards and PIN-only PINs; losing it invalidates those credentials (they
//! must be registered again), so it belongs in backups with the database.

use std::io;
use std::path::Path;

use crate::credentials::LookupKey;

const FILE: &str = "installation.key";

/// Reads the key, creating it if this installation has none yet. Creation
/// is atomic and first-wins: two processes starting together agree on one key.
pub fn load_or_create(data_dir: &Path) -> io::Result<LookupKey> {
    let bytes = sync_protocol::private_file::read_or_create(data_dir, FILE, || {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| io::Error::other(format!("no randomness: {e}")))?;
        Ok(key.to_vec())
    })?;
    parse(&bytes, &data_dir.join(FILE))
}

fn parse(bytes: &[u8], path: &Path) -> io::Result<LookupKey> {
    let key: [u8; 32] = bytes.try_into().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} has {} bytes instead of 32: restore it from a backup (without it, cards and \
                 PIN-only PINs must be registered again)",
                path.display(),
                bytes.len()
            ),
        )
    })?;
    Ok(LookupKey::new(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::LookupKind;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_once_then_reused_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path()).unwrap();
        let second = load_or_create(dir.path()).unwrap();
        assert_eq!(
            first.lookup(LookupKind::Card, "1"),
            second.lookup(LookupKind::Card, "1")
        );
        let mode = fs::metadata(dir.path().join(FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    fn a_damaged_key_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE), b"short").unwrap();
        let err = load_or_create(dir.path()).unwrap_err();
        assert!(err.to_string().contains("restore it from a backup"));
    }
}
