//! The claimant's side of a transfer: brings the document of a job
//! claimed at another site into this site's spool, then lets the printer
//! print it.
//!
//! Blocks are written where they belong in a partial file
//! (`DATA_DIR/roaming/UUID.part`) as they are verified against the
//! manifest, so after a broken connection the fetch asks only for the
//! blocks it lacks, and after a restart it first re-checks the partial
//! file (`sync_protocol::transfer::verified_blocks`). At most a window of
//! blocks is asked for at once: that, and QUIC's flow control on both
//! legs, is the backpressure from the printer's site back to the origin.
//! Once every block is in, one pass over the file compresses it into the
//! spool and checks the whole document's hash; only then can it print.

use std::fs::{self, OpenOptions};
use std::io::{self, BufReader};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::Duration;

use sync_protocol::message::Message;
use sync_protocol::roaming::Fetch;
use sync_protocol::transfer::{Receiver, verified_blocks};
use tokio::sync::mpsc;

use super::{Roaming, TransferEvent, random_u64};
use crate::job::{Fetching, JobRecord, JobUuid, Origin, Transition, now_ms};
use crate::store::SpooledDocument;

/// Blocks asked for at once (1 MiB each): enough to fill a 100 Mbit/s
/// link with 40 ms of round trip several times over.
const WINDOW: usize = 8;
/// Nothing arrived for this long while blocks are asked for: ask again.
const STALL: Duration = Duration::from_secs(10);

/// Fetches `job`'s document and hands the job to its printer; on failure
/// ends the job here, which gives it back to its origin.
pub(super) async fn run(roaming: Roaming, job: JobRecord) {
    let Some(origin) = job.origin.clone() else {
        return;
    };
    let Some(fetching) = origin.fetching.clone() else {
        return;
    };
    let outcome = transfer(&roaming, &origin, fetching, job.uuid).await;
    let store = &roaming.inner.store;
    let path = partial_path(&roaming, &origin.uuid);
    match outcome {
        Ok(spooled) => {
            let spool_size = spooled.spool_size;
            match store
                .modify(job.uuid, Some(spooled), Transition::Fetched { spool_size })
                .await
            {
                Ok(job) => {
                    tracing::info!(job = %job.uuid, origin = %origin.site, "roaming: document in; printing");
                    if let Some(printer) = &job.printer {
                        roaming.inner.wake.wake(printer);
                    }
                }
                // The spooled copy went with the failed change.
                Err(e) => {
                    tracing::warn!(job = %job.uuid, error = %e, "roaming: the fetched document is not needed any more");
                }
            }
            let _ = fs::remove_file(&path);
        }
        Err(why) => {
            tracing::warn!(job = %job.uuid, origin = %origin.site, "roaming: fetch failed: {why}");
            let message = format!("Could not be fetched from site {}: {why}", origin.site);
            if let Err(e) = store
                .modify(job.uuid, None, Transition::AbortIncomplete { message })
                .await
            {
                tracing::warn!(job = %job.uuid, error = %e, "roaming: cannot end a failed fetch");
            }
            let _ = fs::remove_file(&path);
        }
    }
}

/// Where the blocks of the origin's job `origin_uuid` gather: one file per
/// job, so a fetch goes on from what a prefetch of the same job brought.
pub(super) fn partial_path(roaming: &Roaming, origin_uuid: &str) -> PathBuf {
    roaming
        .inner
        .partial_dir
        .join(format!("{origin_uuid}.part"))
}

/// Moves the document of `origin`'s job into the spool as `spool_as`
/// (the partial file stays for the caller to remove), or says why not.
pub(super) async fn transfer(
    roaming: &Roaming,
    origin: &Origin,
    fetching: Fetching,
    spool_as: JobUuid,
) -> Result<SpooledDocument, String> {
    let metrics = &roaming.inner.metrics;
    metrics.roaming_transfers.inc();
    let moved = bring(roaming, origin, fetching, spool_as).await;
    metrics.roaming_transfers.dec();
    moved
}

async fn bring(
    roaming: &Roaming,
    origin: &Origin,
    fetching: Fetching,
    spool_as: JobUuid,
) -> Result<SpooledDocument, String> {
    let Fetching { manifest, until_ms } = fetching;
    let path = partial_path(roaming, &origin.uuid);
    let dir = roaming.inner.partial_dir.clone();
    let file_manifest = manifest.clone();
    let (file, verified) = blocking(move || {
        fs::create_dir_all(&dir)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let verified = verified_blocks(&file_manifest, BufReader::new(&file))?;
        Ok((file, verified))
    })
    .await?;
    let metrics = &roaming.inner.metrics;
    let received = metrics.roaming(&metrics.roaming_bytes, "received");
    if !verified.is_empty() {
        metrics.roaming_resumes.inc();
        tracing::info!(job = %origin.uuid, blocks = verified.len(), "roaming: resuming from verified blocks");
    }
    let mut receiver =
        Receiver::new(manifest.clone(), verified, WINDOW).map_err(|e| e.to_string())?;
    let file = std::sync::Arc::new(file);
    let transfer = random_u64();
    let (events_tx, mut events) = mpsc::channel(WINDOW * 2);
    if let Ok(mut transfers) = roaming.inner.transfers.lock() {
        transfers.insert(transfer, events_tx);
    }
    let _registered = Registered { roaming, transfer };
    let mut link = roaming.inner.link.subscribe();
    while !receiver.is_complete() {
        if now_ms() >= until_ms {
            return Err("the claim lapsed before the document arrived".into());
        }
        if roaming.link().is_ok() {
            let wanted = receiver.next_requests();
            if !wanted.is_empty() {
                let fetch = Message::Fetch(Fetch {
                    transfer,
                    origin: origin.site.clone(),
                    claimant: String::new(),
                    job: origin.uuid.clone(),
                    claim: origin.claim.clone(),
                    blocks: wanted,
                });
                if roaming.send(fetch).await.is_err() {
                    receiver.lost();
                }
            }
        }
        tokio::select! {
            event = events.recv() => match event {
                Some(TransferEvent::Block { index, data }) => {
                    if let Err(e) = receiver.received(index, &data) {
                        tracing::warn!(job = %origin.uuid, error = %e, "roaming: block refused; asking again");
                        continue;
                    }
                    let offset = manifest.offset(index);
                    let len = data.len() as u64;
                    let file = file.clone();
                    blocking(move || file.write_all_at(&data, offset)).await?;
                    received.inc_by(len);
                }
                Some(TransferEvent::Failed(why)) => return Err(why),
                None => return Err("the transfer was dropped".into()),
            },
            _ = link.changed() => {
                // A session ended or began: what was asked will not come.
                receiver.lost();
                if roaming.link().is_ok() {
                    metrics.roaming_resumes.inc();
                }
            }
            () = tokio::time::sleep(STALL) => receiver.lost(),
        }
    }
    // Every block verified: one pass compresses it into the spool and
    // checks the whole document.
    let spool = roaming.inner.store.spool().clone();
    let uuid = spool_as;
    let expected = manifest.sha256.clone();
    let file = file.clone();
    blocking(move || {
        let mut writer = spool.create(uuid)?;
        let mut reader = BufReader::with_capacity(256 * 1024, file.try_clone()?);
        std::io::Seek::rewind(&mut reader)?;
        io::copy(&mut reader, &mut writer)?;
        // Dropped on error, the spooled copy deletes itself.
        let spooled = writer.finish()?;
        if spooled.sha256 != expected {
            return Err(io::Error::other(
                "the document's hash differs from its origin's although every block matched",
            ));
        }
        Ok(spooled)
    })
    .await
}

/// Removes a transfer's registration when its fetch ends.
struct Registered<'a> {
    roaming: &'a Roaming,
    transfer: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        if let Ok(mut transfers) = self.roaming.inner.transfers.lock() {
            transfers.remove(&self.transfer);
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(format!("local disk: {e}")),
        Err(_) => Err("interrupted".into()),
    }
}
