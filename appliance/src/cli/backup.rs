//! `appliance backup DIR` and `appliance restore DIR`: the CLI shells of
//! `store::backup`.

use std::path::Path;

use appliance::config::Config;
use appliance::store::backup::{self, BackupError};

use super::Failure;

fn failure(e: BackupError) -> Failure {
    match e {
        BackupError::Refused(message) => Failure::Usage(message),
        other => Failure::Runtime(other.into()),
    }
}

/// Copies the store of `config` into `target` while it may be serving.
pub(crate) fn backup_store(config: &Config, target: &Path) -> Result<(), Failure> {
    let manifest = backup::backup(&config.data_dir, target).map_err(failure)?;
    let bytes: u64 = manifest.files.iter().map(|f| f.size).sum();
    println!(
        "backed up {} jobs and {} documents ({:.1} MiB) from {} into {} ({} snapshot{}); \
         keep the whole directory together: it holds the installation key, without which \
         cards and PIN-only PINs log nobody in",
        manifest.jobs,
        manifest.documents,
        bytes as f64 / (1024.0 * 1024.0),
        config.data_dir.display(),
        target.display(),
        manifest.rounds,
        if manifest.rounds == 1 { "" } else { "s" }
    );
    Ok(())
}

/// Puts the backup in `source` into the data directory of `config`.
pub(crate) fn restore_store(config: &Config, source: &Path, replace: bool) -> Result<(), Failure> {
    let restored = backup::restore(source, &config.data_dir, replace).map_err(failure)?;
    println!(
        "restored {} jobs and {} documents into {}",
        restored.manifest.jobs,
        restored.manifest.documents,
        config.data_dir.display()
    );
    if let Some(aside) = restored.set_aside {
        println!("its former contents are in {}", aside.display());
    }
    Ok(())
}
