//! Reading ahead: when a user logs in, their jobs held at other sites (up
//! to a size) start moving here, so that releasing one prints at once.
//!
//! A prefetch asks the origin for a *grant* (`ClaimRequest::prefetch`):
//! the job is described and its blocks may be read, but it stays held at
//! its origin for anyone. What arrives is verified and spooled under a
//! fresh id like any fetch, and kept only in memory as a spooled document
//! that deletes itself when dropped: nothing can print it until a release
//! claims the job for real and the claim's manifest matches; unused, it
//! goes after `[central] prefetch_keep_secs`, and a restart removes it with
//! the spool's orphans.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sync_protocol::roaming::{ClaimOutcome, RemoteJob};
use tokio::task::AbortHandle;

use super::Roaming;
use super::fetch::{partial_path, transfer};
use crate::job::{Fetching, JobUuid, Origin};
use crate::store::SpooledDocument;

/// Prefetches moving or ready at once, for all users together.
const MAX_PREFETCHES: usize = 32;

/// Prefetches by the job's UUID at its origin.
pub(super) struct Prefetches {
    entries: HashMap<String, Entry>,
    /// How long an unused prefetched document is kept.
    keep: Duration,
}

enum Entry {
    /// Its blocks are coming.
    Moving(AbortHandle),
    /// Spooled and verified (a small document in memory, a larger one in
    /// a spool file); dropped, it goes.
    Ready {
        document: SpooledDocument,
        sha256: String,
        at: Instant,
    },
}

impl Prefetches {
    /// None yet; an unused one is kept for `keep`.
    pub(super) fn new(keep: Duration) -> Prefetches {
        Prefetches {
            entries: HashMap::new(),
            keep,
        }
    }

    /// Forgets the ready ones older than `keep` (their files go).
    fn sweep(&mut self, now: Instant) {
        let keep = self.keep;
        self.entries.retain(|origin_job, entry| match entry {
            Entry::Moving(task) => !task.is_finished(),
            Entry::Ready { at, .. } => {
                let fresh = now.duration_since(*at) < keep;
                if !fresh {
                    tracing::info!(origin_job = %origin_job, "roaming: unused prefetch dropped");
                }
                fresh
            }
        });
    }

    /// How often to sweep.
    pub(super) fn sweep_every(&self) -> Duration {
        (self.keep / 2).clamp(Duration::from_secs(1), Duration::from_secs(30))
    }
}

impl Roaming {
    /// Starts prefetching `user`'s jobs at other sites of up to
    /// `max_bytes` each (in the background; nothing waits for it).
    pub fn prefetch_for(&self, user: String, max_bytes: u64) {
        let roaming = self.clone();
        tokio::spawn(async move {
            let jobs = match roaming.remote_jobs(&user).await {
                Ok(jobs) => jobs,
                Err(e) => {
                    tracing::debug!(%user, "roaming: no prefetch: {e}");
                    return;
                }
            };
            for job in jobs {
                let held = job.state == "held" && job.available;
                if held && job.size.is_some_and(|s| s <= max_bytes) {
                    roaming.start_prefetch(job, user.clone());
                }
            }
        });
    }

    fn start_prefetch(&self, job: RemoteJob, user: String) {
        let Ok(mut prefetches) = self.inner.prefetches.lock() else {
            return;
        };
        prefetches.sweep(Instant::now());
        if prefetches.entries.contains_key(&job.uuid) || prefetches.entries.len() >= MAX_PREFETCHES
        {
            return;
        }
        let uuid = job.uuid.clone();
        let task = tokio::spawn(self.clone().prefetch(job, user));
        prefetches
            .entries
            .insert(uuid, Entry::Moving(task.abort_handle()));
    }

    async fn prefetch(self, job: RemoteJob, user: String) {
        let result = self.read_ahead(&job, &user).await;
        let _ = std::fs::remove_file(partial_path(&self, &job.uuid));
        let Ok(mut prefetches) = self.inner.prefetches.lock() else {
            return;
        };
        match result {
            Ok((document, sha256)) => {
                tracing::info!(job = %job.uuid, origin = %job.site, "roaming: prefetched");
                prefetches.entries.insert(
                    job.uuid,
                    Entry::Ready {
                        document,
                        sha256,
                        at: Instant::now(),
                    },
                );
            }
            Err(why) => {
                tracing::info!(job = %job.uuid, origin = %job.site, "roaming: no prefetch: {why}");
                prefetches.entries.remove(&job.uuid);
            }
        }
    }

    async fn read_ahead(
        &self,
        job: &RemoteJob,
        user: &str,
    ) -> Result<(SpooledDocument, String), String> {
        let (result, grant) = self
            .ask_claim(&job.site, &job.uuid, user, true)
            .await
            .map_err(|e| e.to_string())?;
        let described = match (result.outcome, result.job) {
            (ClaimOutcome::Claimed, Some(described)) => described,
            _ => return Err(result.message),
        };
        let origin = Origin {
            site: job.site.clone(),
            uuid: job.uuid.clone(),
            claim: grant,
            fetching: None,
        };
        let fetching = Fetching {
            manifest: described.manifest.clone(),
            until_ms: described.until_ms,
        };
        let document = transfer(self, &origin, fetching, JobUuid::new()).await?;
        Ok((document, described.manifest.sha256))
    }

    /// The prefetched document of the origin's job `uuid`, if it is ready
    /// and is the document `sha256` names (the one just claimed); a
    /// prefetch still moving is stopped, and the fetch goes on from what
    /// it brought.
    pub(crate) fn take_prefetched(&self, uuid: &str, sha256: &str) -> Option<SpooledDocument> {
        let mut prefetches = self.inner.prefetches.lock().ok()?;
        match prefetches.entries.remove(uuid)? {
            Entry::Ready {
                document,
                sha256: prefetched,
                ..
            } => (prefetched == sha256).then_some(document),
            Entry::Moving(task) => {
                task.abort();
                None
            }
        }
    }

    /// Removes unused prefetched documents whose time is over, until
    /// `shutdown`.
    pub(super) async fn sweep_prefetches(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let every = match self.inner.prefetches.lock() {
            Ok(prefetches) => prefetches.sweep_every(),
            Err(_) => return,
        };
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            if let Ok(mut prefetches) = self.inner.prefetches.lock() {
                prefetches.sweep(Instant::now());
            }
        }
    }
}
