//! The site's fleet identity on disk, written by `appliance enroll`:
//! `site.pem` (its certificate and private key), `central-ca.pem` (the only
//! CA it trusts for central) and `fleet.key` (the key PINs and cards are
//! hashed under), each 0600 in the data directory.

use std::io;
use std::path::Path;

use sync_protocol::message::Enrolled;
use sync_protocol::pki::Identity;
use sync_protocol::policy::credentials::LookupKey;
use sync_protocol::private_file;

const SITE_FILE: &str = "site.pem";
const CA_FILE: &str = "central-ca.pem";
/// The fleet key's file in the data directory.
pub const FLEET_KEY_FILE: &str = "fleet.key";

/// Why the identity cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A file is missing: the site never enrolled.
    #[error(
        "{0} is missing: enroll this site first (`appliance enroll --central HOST:PORT --token TOKEN`)"
    )]
    NotEnrolled(String),
    /// A file is damaged.
    #[error("{path} is damaged ({why}): enroll this site again")]
    Damaged {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        source: io::Error,
    },
}

/// What the site proves itself with and trusts.
#[derive(Debug, Clone)]
pub struct SiteIdentity {
    /// Its certificate and key.
    pub identity: Identity,
    /// Central's CA certificate.
    pub ca_pem: String,
}

fn read(data_dir: &Path, file: &str) -> Result<Vec<u8>, IdentityError> {
    let path = data_dir.join(file);
    std::fs::read(&path).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            IdentityError::NotEnrolled(path.display().to_string())
        } else {
            IdentityError::Io {
                path: path.display().to_string(),
                source,
            }
        }
    })
}

fn damaged(data_dir: &Path, file: &str, why: impl Into<String>) -> IdentityError {
    IdentityError::Damaged {
        path: data_dir.join(file).display().to_string(),
        why: why.into(),
    }
}

/// Keeps what central sent at enrollment with the site's key.
pub fn save(data_dir: &Path, enrolled: &Enrolled, key_pem: &str) -> Result<(), IdentityError> {
    let mut fleet_key = [0u8; 32];
    hex::decode_to_slice(&enrolled.fleet_key, &mut fleet_key).map_err(|_| {
        damaged(
            data_dir,
            FLEET_KEY_FILE,
            "central sent a fleet key that is not 32 bytes of hex",
        )
    })?;
    let identity = Identity {
        certificate_pem: enrolled.certificate_pem.clone(),
        key_pem: key_pem.to_owned(),
    };
    let write = |file: &str, contents: &[u8]| {
        private_file::replace(data_dir, file, contents).map_err(|source| IdentityError::Io {
            path: data_dir.join(file).display().to_string(),
            source,
        })
    };
    write(CA_FILE, enrolled.ca_pem.as_bytes())?;
    write(FLEET_KEY_FILE, &fleet_key)?;
    // Last: its presence says the enrollment is whole.
    write(SITE_FILE, identity.to_pem().as_bytes())
}

/// The identity `appliance enroll` saved.
pub fn load(data_dir: &Path) -> Result<SiteIdentity, IdentityError> {
    let site = String::from_utf8(read(data_dir, SITE_FILE)?)
        .map_err(|e| damaged(data_dir, SITE_FILE, e.to_string()))?;
    let identity = Identity::from_pem(&site)
        .ok_or_else(|| damaged(data_dir, SITE_FILE, "no certificate and key in it"))?;
    let ca_pem = String::from_utf8(read(data_dir, CA_FILE)?)
        .map_err(|e| damaged(data_dir, CA_FILE, e.to_string()))?;
    Ok(SiteIdentity { identity, ca_pem })
}

/// The fleet key, which replaces the installation key once enrolled.
pub fn fleet_key(data_dir: &Path) -> Result<LookupKey, IdentityError> {
    let bytes = read(data_dir, FLEET_KEY_FILE)?;
    let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
        damaged(
            data_dir,
            FLEET_KEY_FILE,
            format!("{} bytes instead of 32", bytes.len()),
        )
    })?;
    Ok(LookupKey::new(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_then_loaded_and_missing_files_say_enroll() {
        let dir = tempfile::tempdir().unwrap();
        let e = load(dir.path()).unwrap_err();
        assert!(e.to_string().contains("appliance enroll"), "{e}");
        let enrolled = Enrolled {
            site: "branch-1".into(),
            certificate_pem: "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"
                .into(),
            ca_pem: "ca".into(),
            fleet_key: "07".repeat(32),
        };
        save(
            dir.path(),
            &enrolled,
            "-----BEGIN PRIVATE KEY-----\nBB==\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let loaded = load(dir.path()).unwrap();
        assert_eq!(loaded.ca_pem, "ca");
        assert!(loaded.identity.key_pem.contains("PRIVATE KEY"));
        assert!(fleet_key(dir.path()).is_ok());
        let bad = Enrolled {
            fleet_key: "zz".into(),
            ..enrolled
        };
        assert!(save(dir.path(), &bad, "k").is_err());
    }
}
