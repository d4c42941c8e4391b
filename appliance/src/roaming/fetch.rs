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

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sync_protocol::message::Message;
use sync_protocol::roaming::Fetch;
use sync_protocol::transfer::{Receiver, verified_blocks};
use tokio::sync::mpsc;

use super::{Roaming, TransferEvent, random_u64};
use crate::job::{Fetching, JobRecord, JobUuid, Origin, Transition, now_ms};
use crate::store::{SpoolWriter, SpooledDocument};

/// Blocks asked for at once (1 MiB each): enough to fill a 100 Mbit/s
/// link with 40 ms of round trip several times over.
const WINDOW: usize = 8;
/// Nothing arrived for this long (or four times the usual time between
/// blocks, on a slow link) while blocks are asked for: ask again.
const STALL: Duration = Duration::from_secs(10);
/// No block at all for this long: give up and give the claim back, so the
/// user's later jobs at the printer stop waiting for this one and the job
/// is held at its origin again.
const GIVE_UP: Duration = Duration::from_secs(120);
/// Central could not reach the origin (its session is moving to another
/// node, or its link is down): ask again after this long, doubling up to
/// [`STALL`], until a block comes or [`GIVE_UP`] runs out.
const FIRST_RETRY: Duration = Duration::from_millis(500);

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
    let started = std::time::Instant::now();
    let moved = bring(roaming, origin, fetching, spool_as).await;
    metrics.roaming_transfers.dec();
    if moved.is_ok() {
        metrics
            .roaming_transfer_seconds
            .observe(started.elapsed().as_secs_f64());
    }
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
    let file = Arc::new(file);
    let spool = roaming.inner.store.spool().clone();
    let mut spooling = Spooling {
        writer: Some(blocking(move || spool.create(spool_as)).await?),
        next: 0,
    };
    let transfer = random_u64();
    let (events_tx, mut events) = mpsc::channel(WINDOW * 2);
    if let Ok(mut transfers) = roaming.inner.transfers.lock() {
        transfers.insert(transfer, events_tx);
    }
    let _registered = Registered { roaming, transfer };
    let mut link = roaming.inner.link.subscribe();
    let mut progress = Progress::new();
    while !receiver.is_complete() {
        if now_ms() >= until_ms {
            return Err("the claim lapsed before the document arrived".into());
        }
        if progress.since_block() >= GIVE_UP {
            return Err(format!(
                "nothing arrived for {} s; it is held there again",
                GIVE_UP.as_secs()
            ));
        }
        if roaming.link().is_ok() && progress.retry_at.is_none() {
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
                    let len = data.len() as u64;
                    spooling.take(&receiver, &file, Some((index, data))).await?;
                    received.inc_by(len);
                    progress.block();
                }
                Some(TransferEvent::Refused(why)) => return Err(why),
                Some(TransferEvent::Unreachable(why)) => {
                    // The claim still holds at the origin as far as anyone
                    // knows; this is a routing failure, not a refusal.
                    let after = progress.unreachable();
                    tracing::info!(job = %origin.uuid, origin = %origin.site,
                        "roaming: the origin cannot be reached ({why}); asking again in {after:?}");
                }
                None => return Err("the transfer was dropped".into()),
            },
            () = sleep_until_some(progress.retry_at) => {
                progress.retry_at = None;
                receiver.lost();
                progress.restart();
            }
            _ = link.changed() => {
                // A session ended or began: what was asked will not come.
                receiver.lost();
                progress.restart();
                if roaming.link().is_ok() {
                    metrics.roaming_resumes.inc();
                }
            }
            () = tokio::time::sleep_until(progress.stalled_at().min(progress.last_block + GIVE_UP)) => {
                receiver.lost();
                progress.restart();
            }
        }
    }
    // Every block verified: the rest goes into the spool, and the whole
    // document's hash is checked.
    spooling.take(&receiver, &file, None).await?;
    let writer = spooling.writer.take().ok_or("the spool writer was lost")?;
    let expected = manifest.sha256.clone();
    blocking(move || {
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

/// When blocks arrive, to tell a stalled transfer from a slow link, and
/// when to ask again an origin central could not reach.
struct Progress {
    /// The last block, or the last time blocks were asked for again.
    last: tokio::time::Instant,
    /// The last block (or the start).
    last_block: tokio::time::Instant,
    /// Usual time between two blocks (moving average).
    interval: Duration,
    /// Set while waiting to ask an unreachable origin again: nothing is
    /// asked until then.
    retry_at: Option<tokio::time::Instant>,
    /// The wait before the next retry if the origin is unreachable again.
    backoff: Duration,
}

impl Progress {
    fn new() -> Progress {
        let now = tokio::time::Instant::now();
        Progress {
            last: now,
            last_block: now,
            interval: Duration::ZERO,
            retry_at: None,
            backoff: FIRST_RETRY,
        }
    }

    /// Central said the origin cannot be reached: when to ask again (one
    /// wait for every answer to the fetches of one round).
    fn unreachable(&mut self) -> Duration {
        if self.retry_at.is_none() {
            self.retry_at = Some(tokio::time::Instant::now() + self.backoff);
            self.backoff = (self.backoff * 2).min(STALL);
        }
        self.retry_at.map_or(Duration::ZERO, |at| {
            at.saturating_duration_since(tokio::time::Instant::now())
        })
    }

    fn block(&mut self) {
        self.backoff = FIRST_RETRY;
        let now = tokio::time::Instant::now();
        let gap = now.duration_since(self.last);
        self.interval = if self.interval.is_zero() {
            gap
        } else {
            (self.interval * 3 + gap) / 4
        };
        self.last = now;
        self.last_block = now;
    }

    fn since_block(&self) -> Duration {
        self.last_block.elapsed()
    }

    fn restart(&mut self) {
        self.last = tokio::time::Instant::now();
    }

    fn stalled_at(&self) -> tokio::time::Instant {
        self.last + STALL.max(self.interval * 4)
    }
}

/// Sleeps until `at`, or for ever if there is no `at`.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The spool file being written while blocks arrive: blocks go in in
/// order, as soon as every one before them is verified, so compressing
/// overlaps the network and nothing is left to do but finish at the end.
struct Spooling {
    writer: Option<SpoolWriter>,
    /// Blocks written into the spool so far.
    next: u32,
}

impl Spooling {
    /// Writes `arrived` (a verified block) at its place in the partial
    /// file, then every verified block from `next` on into the spool.
    async fn take(
        &mut self,
        receiver: &Receiver,
        file: &Arc<File>,
        arrived: Option<(u32, Vec<u8>)>,
    ) -> Result<(), String> {
        let manifest = receiver.manifest();
        let start = self.next;
        let mut end = start;
        while end < manifest.block_count() && receiver.is_verified(end) {
            end += 1;
        }
        let spans: Vec<(u32, u64, u64)> = (start..end)
            .map(|i| (i, manifest.offset(i), manifest.block_len(i)))
            .collect();
        let arrived = arrived.map(|(i, data)| (i, manifest.offset(i), data));
        let mut writer = self.writer.take().ok_or("the spool writer was lost")?;
        let file = file.clone();
        let writer = blocking(move || {
            if let Some((_, offset, data)) = &arrived {
                file.write_all_at(data, *offset)?;
            }
            let mut buf = Vec::new();
            for (index, offset, len) in spans {
                match &arrived {
                    Some((i, _, data)) if *i == index => writer.write_all(data)?,
                    _ => {
                        buf.resize(len as usize, 0);
                        file.read_exact_at(&mut buf, offset)?;
                        writer.write_all(&buf)?;
                    }
                }
            }
            Ok(writer)
        })
        .await?;
        self.writer = Some(writer);
        self.next = end;
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_origin_is_asked_again_later_and_later_until_a_block_comes() {
        let mut progress = Progress::new();
        let first = progress.unreachable();
        assert!(first > FIRST_RETRY / 2 && first <= FIRST_RETRY, "{first:?}");
        // The answers to the other fetches of that round wait for the
        // same retry rather than pushing it back.
        assert!(progress.unreachable() <= first);
        assert_eq!(progress.backoff, FIRST_RETRY * 2);

        progress.retry_at = None; // asked again, unreachable again
        let second = progress.unreachable();
        assert!(
            second > FIRST_RETRY && second <= FIRST_RETRY * 2,
            "{second:?}"
        );
        for _ in 0..8 {
            progress.retry_at = None;
            progress.unreachable();
        }
        assert_eq!(progress.backoff, STALL, "no longer than a stall");

        progress.block();
        progress.retry_at = None;
        assert!(progress.unreachable() <= FIRST_RETRY, "a block starts over");
    }
}
