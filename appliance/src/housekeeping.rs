//! Housekeeping: ends jobs whose time is up, in periodic sweeps.
//!
//! - A Create-Job whose last document has not arrived within
//!   `ipp.document_timeout_secs` is aborted (`multiple-operation-time-out`),
//!   unless a Send-Document is streaming for it right now.
//! - A held job not released within `retention.held_job_secs` of its
//!   submission expires: it is aborted, its document deleted, and the
//!   expiry logged.
//! - A printed job's document kept for reprint
//!   (`retention.printed_job_secs`) is deleted when its time is over, and
//!   that is logged.
//!
//! Each sweep reads a bounded batch of candidates and ends each with a
//! compare-and-set in the store, so a job released or canceled meanwhile is
//! left alone.
//!
//! It also puts the disk reserve back once a full disk has room again.

use std::time::Duration;

use tokio::sync::watch;

use crate::job::{JobRecord, Transition, now_ms};
use crate::store::{JobStore, StoreError};
use crate::uploads::UploadRegistry;

/// Most jobs ended per sweep; the rest wait for the next one.
const SWEEP_BATCH: u32 = 500;

/// The periodic sweeps.
pub struct Housekeeping {
    store: JobStore,
    uploads: UploadRegistry,
    document_timeout: Duration,
    held_job: Duration,
    /// How long printed documents are kept for reprint, if they are.
    printed_job: Option<Duration>,
}

impl Housekeeping {
    /// Sweeps with these limits.
    pub fn new(
        store: JobStore,
        uploads: UploadRegistry,
        document_timeout: Duration,
        held_job: Duration,
        printed_job: Option<Duration>,
    ) -> Housekeeping {
        Housekeeping {
            store,
            uploads,
            document_timeout,
            held_job,
            printed_job,
        }
    }

    /// How often to sweep: often enough that a limit is overrun by at most
    /// a quarter, never more than once a second or less than once a minute.
    fn period(&self) -> Duration {
        (self
            .document_timeout
            .min(self.held_job)
            .min(self.printed_job.unwrap_or(Duration::MAX))
            / 4)
        .clamp(Duration::from_secs(1), Duration::from_secs(60))
    }

    /// Sweeps until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let period = self.period();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = shutdown.changed() => return,
            }
            self.replenish_reserve().await;
            self.abort_stale_incoming().await;
            self.expire_held().await;
            if self.printed_job.is_some() {
                self.expire_reprints().await;
            }
        }
    }

    /// Puts the disk reserve back once a full disk has room again, so
    /// intake takes documents again.
    async fn replenish_reserve(&self) {
        let reserve = self.store.reserve().clone();
        if reserve.accepts_documents() {
            return;
        }
        match tokio::task::spawn_blocking(move || reserve.replenish()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot put the disk reserve back"),
            Err(e) => tracing::error!(error = %e, "the disk reserve task failed"),
        }
    }

    /// Deletes the documents of printed jobs whose time for reprint is over.
    async fn expire_reprints(&self) {
        let store = &self.store;
        let expired = match store.reprint_expired(now_ms(), SWEEP_BATCH).await {
            Ok(jobs) => jobs,
            Err(e) => return tracing::error!(error = %e, "cannot look for expired reprints"),
        };
        for job in expired {
            match store.modify(job.uuid, None, Transition::EndReprint).await {
                Ok(j) => {
                    tracing::info!(job = %j.uuid, queue = %j.queue, id = j.ipp_job_id, owner = %j.owner, "printed job's document deleted: its time for reprint is over");
                }
                Err(e) => tracing::error!(job = %job.uuid, error = %e, "cannot end a reprint"),
            }
        }
    }

    async fn abort_stale_incoming(&self) {
        let cutoff = now_ms() - millis(self.document_timeout);
        let stale = match self.store.stale_incoming(cutoff, SWEEP_BATCH).await {
            Ok(jobs) => jobs,
            Err(e) => return tracing::error!(error = %e, "cannot look for stale Create-Job jobs"),
        };
        let secs = self.document_timeout.as_secs();
        for job in stale {
            if self.uploads.contains(job.uuid) {
                continue;
            }
            let message = format!("No last document arrived within {secs} s of Create-Job");
            let ended = self
                .end(&job, Transition::AbortIncomplete { message })
                .await;
            if let Some(j) = ended {
                tracing::warn!(job = %j.uuid, queue = %j.queue, id = j.ipp_job_id, "aborted: document never arrived");
            }
        }
    }

    async fn expire_held(&self) {
        let cutoff = now_ms() - millis(self.held_job);
        let expired = match self.store.held_since(cutoff, SWEEP_BATCH).await {
            Ok(jobs) => jobs,
            Err(e) => return tracing::error!(error = %e, "cannot look for expired held jobs"),
        };
        let after = human(self.held_job);
        for job in expired {
            let message = format!("Expired: not released within {after}; the document was deleted");
            let ended = self.end(&job, Transition::ExpireHeld { message }).await;
            if let Some(j) = ended {
                tracing::info!(job = %j.uuid, queue = %j.queue, id = j.ipp_job_id, owner = %j.owner, "held job expired; its document is deleted");
            }
        }
    }

    /// Ends a job by `transition` (or leaves it alone if it moved on).
    /// The store deletes the document when the job ends.
    async fn end(&self, job: &JobRecord, transition: Transition) -> Option<JobRecord> {
        let result = self.store.modify(job.uuid, None, transition).await;
        match result {
            Ok(j) => Some(j),
            Err(StoreError::NotPossible(_)) => None,
            Err(e) => {
                tracing::error!(job = %job.uuid, error = %e, "cannot end a job");
                None
            }
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `24 h`, `90 min`, `45 s`.
fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 3600 && secs.is_multiple_of(3600) {
        format!("{} h", secs / 3600)
    } else if secs >= 60 && secs.is_multiple_of(60) {
        format!("{} min", secs / 60)
    } else {
        format!("{secs} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_person_wrote_them() {
        assert_eq!(human(Duration::from_secs(86_400)), "24 h");
        assert_eq!(human(Duration::from_secs(5_400)), "90 min");
        assert_eq!(human(Duration::from_secs(45)), "45 s");
        assert_eq!(human(Duration::from_secs(3_601)), "3601 s");
    }
}
