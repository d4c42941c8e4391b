//! Central's identity on disk: its certificate authority (`ca.pem`, the
//! certificate and key together, 0600) and the fleet key (`fleet.key`, 32
//! bytes, 0600), both created at first start. The server certificate is
//! made anew from the CA at every start; it holds no state.
//!
//! Losing `ca.pem` means every site must enroll again; losing `fleet.key`
//! means every PIN and card must be registered again. Both belong in
//! backups with the database.

use std::io;
use std::path::Path;

use sync_protocol::pki::{Authority, Identity, PkiError};
use sync_protocol::policy::credentials::LookupKey;
use sync_protocol::private_file;

const CA_FILE: &str = "ca.pem";
const FLEET_KEY_FILE: &str = "fleet.key";
/// Days central's server certificate is good for (it is renewed at start).
const SERVER_CERTIFICATE_DAYS: i64 = 397;

/// Why the identity could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        source: io::Error,
    },
    /// A file is damaged.
    #[error("{path}: {message}; restore it from a backup")]
    Damaged {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// Everything central proves and signs with.
pub struct FleetIdentity {
    /// The CA.
    pub authority: Authority,
    /// This start's server certificate.
    pub server: Identity,
    /// The key PINs and cards are hashed under.
    pub fleet_key: [u8; 32],
}

impl std::fmt::Debug for FleetIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetIdentity").finish_non_exhaustive()
    }
}

impl FleetIdentity {
    /// Loads the identity from `data_dir`, creating what is missing.
    pub fn load_or_create(data_dir: &Path, fleet: &str) -> Result<FleetIdentity, IdentityError> {
        let io_error = |file: &str| {
            let path = data_dir.join(file).display().to_string();
            move |source| IdentityError::Io { path, source }
        };
        let damaged = |file: &str, message: String| IdentityError::Damaged {
            path: data_dir.join(file).display().to_string(),
            message,
        };
        let ca_pem = private_file::read_or_create(data_dir, CA_FILE, || {
            let (_, identity) = Authority::create(fleet).map_err(io::Error::other)?;
            Ok(identity.to_pem().into_bytes())
        })
        .map_err(io_error(CA_FILE))?;
        let ca_pem = String::from_utf8(ca_pem).map_err(|e| damaged(CA_FILE, e.to_string()))?;
        let ca = Identity::from_pem(&ca_pem)
            .ok_or_else(|| damaged(CA_FILE, "no certificate and key in it".into()))?;
        let authority =
            Authority::load(&ca).map_err(|e: PkiError| damaged(CA_FILE, e.to_string()))?;
        let server = authority
            .server_identity(SERVER_CERTIFICATE_DAYS)
            .map_err(|e| damaged(CA_FILE, e.to_string()))?;
        let key = private_file::read_or_create(data_dir, FLEET_KEY_FILE, || {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).map_err(|e| io::Error::other(e.to_string()))?;
            Ok(key.to_vec())
        })
        .map_err(io_error(FLEET_KEY_FILE))?;
        let fleet_key: [u8; 32] = key
            .as_slice()
            .try_into()
            .map_err(|_| damaged(FLEET_KEY_FILE, format!("{} bytes instead of 32", key.len())))?;
        Ok(FleetIdentity {
            authority,
            server,
            fleet_key,
        })
    }

    /// The fleet key as a lookup key.
    pub fn lookup_key(&self) -> LookupKey {
        LookupKey::new(self.fleet_key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_kept_after_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let first = FleetIdentity::load_or_create(dir.path(), "test").unwrap();
        let again = FleetIdentity::load_or_create(dir.path(), "test").unwrap();
        assert_eq!(
            first.authority.fingerprint().unwrap(),
            again.authority.fingerprint().unwrap()
        );
        assert_eq!(first.fleet_key, again.fleet_key);
        for file in [CA_FILE, FLEET_KEY_FILE] {
            let mode = std::fs::metadata(dir.path().join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
        std::fs::write(dir.path().join(FLEET_KEY_FILE), b"short").unwrap();
        let e = FleetIdentity::load_or_create(dir.path(), "test").unwrap_err();
        assert!(e.to_string().contains("restore it from a backup"), "{e}");
    }
}
