//! One forwarder per printer: takes the oldest due job of its [`Feed`] (the
//! direct queues that forward to the printer, and the jobs users released
//! there), sends it, follows it until the printer has finished it, and
//! records every step in the store. One job at a time per printer, in
//! submission order, as a printer prints them.
//!
//! Failures follow [`OutputError`]: retried later with a doubling delay
//! (the job stays pending with a message saying why and when), held for a
//! person to decide, or aborted. A released job is retried a bounded number
//! of times and then goes back to held with a message, so its owner can
//! release it again or at another printer; it is never aborted. After a
//! restart, a job that was being sent is resumed if the printer had given
//! it an id; an IPP printer that had not is asked whether it got the job
//! (by the mark in its name): if it did, the job is followed there (and
//! journaled when it prints), if not, it certainly did not print and waits
//! to be sent (or released) again. Where the printer cannot tell (raw
//! 9100, LPD, a printer that does not answer), the job is held for its
//! owner and the attempt journaled as `uncertain`.
//!
//! A member of a printer pool also takes the pool's jobs while the pool
//! says it may ([`super::pool`]). A pool's job that certainly did not reach
//! the member (it could not be reached, or refused it for now) is passed
//! on at once to the pool's next fit member, and the member is taken out
//! until the prober finds it fit again; one that may have reached it is
//! held like any other, so a pool never prints a job twice.
//!
//! A step the store cannot record (a full disk) is retried with a doubling
//! delay until it is recorded or the appliance stops (`StoreTrouble`): a
//! job the printer has finished is always recorded, and so journaled, once
//! the store can write again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::ipp::{self as ipp_output, CutOff, DeviceJobState, SentJob, judge_cut_off};
use super::pool::{Fitness, Pools};
use super::store_trouble::{StoreTrouble, TroubleLog};
use super::{OutputError, lpd, socket};
use crate::config::{OutputConfig, PrintedWhen, PrinterConfig};
use crate::job::{JobRecord, JobState, Transition, now_ms};
use crate::metrics::{Metrics, OutputLabels, PrinterLabels};
use crate::printer::{DeviceUri, IppPrinter, OutputWake, PrinterHealth};
use crate::store::{Feed, JobStore, PoolFeed, StoreError};

/// Delay before attempt `attempts + 1`: doubling from `initial`, capped at `max`.
pub fn retry_delay(attempts: u32, initial: Duration, max: Duration) -> Duration {
    let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(16));
    initial.saturating_mul(factor).min(max)
}

/// Time allowed for one transfer: the base timeout plus 1 s per MiB, so a
/// large document on a slow link is not cut off.
fn transfer_timeout(base: Duration, bytes: u64) -> Duration {
    base + Duration::from_secs(bytes / (1024 * 1024))
}

/// What every forwarder of an appliance shares.
#[derive(Clone)]
pub struct OutputShared {
    /// The job store.
    pub store: JobStore,
    /// Printer conditions, reported back to IPP clients.
    pub health: PrinterHealth,
    /// Wake-ups for new work.
    pub wake: OutputWake,
    /// The printer pools and how fit their members are.
    pub pools: Pools,
    /// Retry and timeout settings.
    pub config: OutputConfig,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// This site's name (the client host name LPD servers see).
    pub site: String,
}

/// Sends the jobs of one printer.
pub struct Forwarder {
    printer: PrinterConfig,
    device: DeviceUri,
    /// Its own jobs: its direct queues', and those released to it.
    feed: Feed,
    /// Its pool's jobs, if it is in a pool.
    pool: Option<PoolFeed>,
    pools: Pools,
    store: JobStore,
    health: PrinterHealth,
    wake: Arc<Notify>,
    config: OutputConfig,
    metrics: Arc<Metrics>,
    site: String,
    trouble: Mutex<StoreTrouble>,
    /// The shutdown signal, once running.
    stop: Option<watch::Receiver<bool>>,
}

impl Forwarder {
    /// A forwarder for `printer`, fed by `queues`.
    pub fn new(
        printer: PrinterConfig,
        queues: Vec<String>,
        shared: &OutputShared,
    ) -> Result<Forwarder, String> {
        let device = DeviceUri::with_trust(&printer.uri, printer.tls_ca.as_deref())?;
        let wake = shared.wake.handle(&printer.id);
        let feed = Feed {
            queues,
            printer: printer.id.clone(),
            pool: None,
        };
        Ok(Forwarder {
            pool: shared.pools.feed_of(&printer.id),
            pools: shared.pools.clone(),
            printer,
            device,
            feed,
            store: shared.store.clone(),
            health: shared.health.clone(),
            wake,
            config: shared.config.clone(),
            metrics: shared.metrics.clone(),
            site: shared.site.clone(),
            trouble: Mutex::new(StoreTrouble::default()),
            stop: None,
        })
    }

    fn label(&self) -> &str {
        self.printer.name.as_deref().unwrap_or(&self.printer.id)
    }

    /// The jobs it takes now: its own, and its pool's while the pool says
    /// it may.
    fn current_feed(&self) -> Feed {
        let mut feed = self.feed.clone();
        feed.pool = self
            .pool
            .clone()
            .filter(|_| self.pools.takes(&self.printer.id));
        feed
    }

    /// The pool `job` came to this printer through, if it is a pool's.
    fn pool_of(&self, job: &JobRecord) -> Option<&PoolFeed> {
        self.pool.as_ref().filter(|pool| pool.holds(job))
    }

    /// Runs until `shutdown` turns true. A job being printed when it does
    /// stays `processing` and is picked up again at the next start.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        self.stop = Some(shutdown.clone());
        self.recover(&mut shutdown).await;
        while !*shutdown.borrow() {
            match self.store.next_due(self.current_feed(), now_ms()).await {
                Ok(Some(job)) => self.deliver(job, &mut shutdown).await,
                Ok(None) => self.idle(&mut shutdown).await,
                Err(e) => {
                    let delay = self.store_failed(&e);
                    self.pause(delay, &mut shutdown).await;
                }
            }
        }
    }

    /// Waits for a wake-up, the next retry time, or shutdown.
    async fn idle(&self, shutdown: &mut watch::Receiver<bool>) {
        let next = self
            .store
            .next_retry_ms(self.current_feed())
            .await
            .ok()
            .flatten();
        let sleep = match next {
            Some(at) => Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0)),
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            _ = self.wake.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
            _ = shutdown.changed() => {}
        }
    }

    async fn pause(&self, d: Duration, shutdown: &mut watch::Receiver<bool>) {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = shutdown.changed() => {}
        }
    }

    async fn recover(&self, shutdown: &mut watch::Receiver<bool>) {
        let interrupted = match self
            .store
            .jobs_at(self.feed.clone(), JobState::Processing)
            .await
        {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::error!(printer = %self.printer.id, error = %e, "cannot list interrupted jobs");
                return;
            }
        };
        let timeout = Duration::from_secs(self.config.request_timeout_secs);
        for job in interrupted {
            match (job.device_job_id, &self.device) {
                (Some(device_job_id), DeviceUri::Ipp(uri)) => {
                    tracing::info!(job = %job.uuid, device_job_id, "resuming a job the printer had accepted");
                    self.follow(uri, device_job_id, job, shutdown).await;
                }
                (None, DeviceUri::Ipp(uri)) => {
                    let found = ipp_output::find_sent(uri, &job, timeout).await;
                    match self.settle_cut_off(uri, &job, found, shutdown).await {
                        Some(CutOff::Missing) => {
                            tracing::info!(job = %job.uuid, "the printer never got the job; it did not print");
                            self.not_printed(&job).await;
                        }
                        Some(_) => {}
                        None => {
                            let message = format!(
                                "The appliance restarted while sending this job to {}, and the \
                                 printer cannot say whether it got it; it may or may not have \
                                 printed. Check the printer, then release the job to send it again.",
                                self.label()
                            );
                            self.hold_interrupted(&job, message).await;
                        }
                    }
                }
                _ => {
                    let message = format!(
                        "The appliance restarted while sending this job to {}; it may or may not have \
                         printed. Check the printer, then release the job to send it again.",
                        self.label()
                    );
                    self.hold_interrupted(&job, message).await;
                }
            }
        }
    }

    /// Acts on what the printer says about a job whose sending was cut off
    /// (a restart, a broken connection): follows a job it has whole, holds
    /// one it has in part (journaled as uncertain). Returns the verdict, or
    /// `None` when the printer could not be asked.
    async fn settle_cut_off(
        &self,
        printer: &IppPrinter,
        job: &JobRecord,
        found: Result<Option<SentJob>, OutputError>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<CutOff> {
        let found = match found {
            Ok(found) => found,
            Err(e) => {
                tracing::debug!(job = %job.uuid, error = %e, "cannot ask the printer whether it got the job");
                return None;
            }
        };
        let size = job.document.as_ref().map_or(0, |d| d.size);
        let verdict = judge_cut_off(found, size);
        match &verdict {
            CutOff::Whole(device_job_id) => {
                let device_job_id = *device_job_id;
                tracing::info!(job = %job.uuid, device_job_id, "the printer got the whole job; following it");
                if let Some(job) = self.accepted(job, device_job_id).await {
                    self.follow(printer, device_job_id, job, shutdown).await;
                }
            }
            CutOff::Partial(what) => {
                let message = format!(
                    "Sending this job to {} was cut off and {what}; part of it may have printed. \
                     Check the printer, then release the job to send it again.",
                    self.label()
                );
                self.hold_interrupted(job, message).await;
            }
            CutOff::Missing => {}
        }
        Some(verdict)
    }

    async fn hold_interrupted(&self, job: &JobRecord, message: String) {
        tracing::warn!(job = %job.uuid, "job interrupted mid-transfer; holding it, journaled as uncertain");
        self.hold_uncertain(job, message).await;
    }

    /// A job interrupted on its way to the printer that certainly did not
    /// print: a released one is held for its owner again, a direct queue's
    /// is sent again.
    async fn not_printed(&self, job: &JobRecord) {
        let message = format!(
            "The appliance restarted before {} received this job; it did not print.",
            self.label()
        );
        let released = self.is_release(job);
        self.update(job, Transition::NotPrinted { message, released })
            .await;
    }

    async fn deliver(&self, job: JobRecord, shutdown: &mut watch::Receiver<bool>) {
        // Known before the sending names this printer in the job.
        let pool = self.pool_of(&job).cloned();
        // Under failover, no other member sends a later job of the pool
        // until this send has ended one way or the other.
        let sending_for_pool = pool.as_ref().map(|_| self.pools.sending(&self.printer.id));
        let sending = Transition::Sending {
            printer: self.printer.id.clone(),
            label: self.label().to_owned(),
        };
        // The document is checked while the claim commits: both must be
        // done before the first byte goes out, neither needs the other.
        let documents = self.store.documents();
        let check = async {
            match &job.document {
                Some(document) => super::verify_document(&documents, job.uuid, document).await,
                None => Ok(()),
            }
        };
        let (claimed, verified) = tokio::join!(self.update(&job, sending), check);
        let Some(job) = claimed else { return };
        let size = job.document.as_ref().map_or(0, |d| d.size);
        let timeout = transfer_timeout(Duration::from_secs(self.config.request_timeout_secs), size);
        tracing::info!(job = %job.uuid, printer = %self.printer.id, attempt = job.attempts, "sending job");
        let result = match (verified, &self.device) {
            (Err(e), _) => Err(e),
            (Ok(()), device) => self.submit(device, &job, timeout).await,
        };
        match result {
            Ok(device_job_id) => {
                drop(sending_for_pool);
                self.count("accepted");
                self.health.set(&self.printer.id, true, None);
                match (device_job_id, &self.device) {
                    (Some(device_job_id), DeviceUri::Ipp(uri)) => {
                        match self.accepted(&job, device_job_id).await {
                            Some(job) if self.config.printed_when == PrintedWhen::Completed => {
                                self.follow(uri, device_job_id, job, shutdown).await;
                            }
                            Some(job) => self.finish(&job, Ok(())).await,
                            None => {}
                        }
                    }
                    _ => self.finish(&job, Ok(())).await,
                }
            }
            Err(OutputError::Retry(reason)) if self.printer_took_part(&job, shutdown).await => {
                tracing::info!(job = %job.uuid, %reason, "the transfer broke, but the printer has the job");
            }
            Err(OutputError::Retry(reason))
                if pool.is_some()
                    && !(self.is_release(&job) && job.attempts >= self.config.release_attempts) =>
            {
                if let Some(pool) = pool {
                    self.pass_on(&job, &pool, reason).await;
                }
            }
            Err(OutputError::Retry(reason))
                if self.is_release(&job) && job.attempts >= self.config.release_attempts =>
            {
                self.unfit(&reason);
                let message = format!(
                    "{} could not be reached ({reason}). Your job is still held: release it \
                     again, or at another printer.",
                    self.label()
                );
                self.return_to_owner(&job, message).await;
            }
            Err(OutputError::Retry(reason)) => self.retry_later(&job, reason).await,
            Err(OutputError::Uncertain(reason)) => {
                self.hold_uncertain(
                    &job,
                    format!("{reason}. Check the printer, then release the job to send it again."),
                )
                .await
            }
            Err(OutputError::Rejected(reason)) if self.is_release(&job) => {
                let message = format!(
                    "{} refused the job: {reason}. It is still held: release it at another printer.",
                    self.label()
                );
                self.return_to_owner(&job, message).await;
            }
            Err(OutputError::Rejected(reason)) => self.finish(&job, Err(reason)).await,
            Err(OutputError::Damaged(reason)) => {
                tracing::error!(job = %job.uuid, %reason, "stored document damaged; not sent (appliance spool check lists every damaged document)");
                self.count("damaged");
                let message = format!(
                    "Not printed: {reason}. Nothing was sent to {}; print the document again.",
                    self.label()
                );
                if self.is_release(&job) {
                    self.return_to_owner(&job, message).await;
                } else {
                    self.finish(&job, Err(message)).await;
                }
            }
        }
    }

    /// Sends `job` to the printer the way `device` says.
    async fn submit(
        &self,
        device: &DeviceUri,
        job: &JobRecord,
        timeout: Duration,
    ) -> Result<Option<i32>, OutputError> {
        match device {
            DeviceUri::Ipp(uri) => {
                ipp_output::submit(uri, &self.store.documents(), job, timeout).await
            }
            DeviceUri::Socket { host, port } => {
                socket::submit(host, *port, &self.store.documents(), job, timeout)
                    .await
                    .map(|()| None)
            }
            DeviceUri::Lpd { host, port, queue } => lpd::submit(
                host,
                *port,
                queue,
                &self.site,
                &self.store.documents(),
                job,
                timeout,
            )
            .await
            .map(|()| None),
        }
    }

    /// After a failed transfer to an IPP printer: whether the printer has
    /// the job after all (some take a broken connection as the end of the
    /// document), in which case it is followed or held as uncertain instead
    /// of being sent again.
    async fn printer_took_part(
        &self,
        job: &JobRecord,
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        let DeviceUri::Ipp(printer) = &self.device else {
            return false;
        };
        let timeout = Duration::from_secs(self.config.request_timeout_secs);
        let found = ipp_output::find_sent(printer, job, timeout).await;
        matches!(
            self.settle_cut_off(printer, job, found, shutdown).await,
            Some(CutOff::Whole(_) | CutOff::Partial(_))
        )
    }

    /// Whether `job` was released here from a pull queue (rather than
    /// submitted to a direct queue of this printer or its pool).
    fn is_release(&self, job: &JobRecord) -> bool {
        !self.feed.queues.contains(&job.queue)
            && !self
                .pool
                .as_ref()
                .is_some_and(|pool| pool.queues.contains(&job.queue))
    }

    /// A pool's job this printer certainly did not take: the job goes back
    /// to the pool, then the printer is taken out of it, which wakes the
    /// member taking over (this one sends nothing meanwhile: it is here).
    async fn pass_on(&self, job: &JobRecord, pool: &PoolFeed, reason: String) {
        self.count("passed-on");
        self.health.set(
            &self.printer.id,
            false,
            Some(format!("{}: {reason}", self.label())),
        );
        tracing::warn!(job = %job.uuid, printer = %self.printer.id, pool = %pool.id, %reason, "printer did not take the pool's job; passing it on");
        let next = if self.pools.others_fit(&self.printer.id) {
            "the next printer of the pool takes it"
        } else {
            "no other printer of the pool can print now: it waits for the first that can"
        };
        let message = format!("{} did not take the job ({reason}); {next}.", self.label());
        let released = self.is_release(job);
        let to = Transition::PassOn {
            message,
            pool: released.then(|| pool.id.clone()),
        };
        // Out only once the job is back in the pool, so the member taking
        // over finds it first.
        self.update(job, to).await;
        self.unfit(&reason);
    }

    /// Puts a released job that certainly did not print back on hold for
    /// its owner, as if never released (no journal record will name this
    /// printer).
    async fn return_to_owner(&self, job: &JobRecord, message: String) {
        self.count("returned");
        self.health.set(
            &self.printer.id,
            false,
            Some(format!("{}: {message}", self.label())),
        );
        tracing::warn!(job = %job.uuid, printer = %self.printer.id, %message, "released job back on hold");
        self.update(job, Transition::ReturnToOwner { message })
            .await;
    }

    /// Polls the printer about an accepted job until it is finished there.
    async fn follow(
        &self,
        printer: &IppPrinter,
        device_job_id: i32,
        job: JobRecord,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        let poll = Duration::from_secs(self.config.poll_interval_secs);
        let timeout = Duration::from_secs(self.config.request_timeout_secs);
        let mut failures = 0u32;
        let mut last_message = job.state_message.clone();
        loop {
            let delay = if failures == 0 {
                poll
            } else {
                retry_delay(
                    failures,
                    Duration::from_secs(self.config.retry_initial_secs),
                    Duration::from_secs(self.config.retry_max_secs),
                )
            };
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.wake.notified() => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
            if let Ok(Some(current)) = self.store.job(job.uuid).await
                && current.state == JobState::Canceled
            {
                ipp_output::cancel(printer, device_job_id, &job.owner, timeout).await;
                self.health.set(&self.printer.id, false, None);
                return;
            }
            match ipp_output::query(printer, device_job_id, &job.owner, timeout).await {
                Ok(DeviceJobState::Completed) => return self.finish(&job, Ok(())).await,
                Ok(DeviceJobState::Aborted(m)) => {
                    return self
                        .finish(&job, Err(format!("the printer aborted the job: {m}")))
                        .await;
                }
                Ok(DeviceJobState::Canceled(m)) => {
                    return self
                        .finish(
                            &job,
                            Err(format!("the job was canceled at the printer: {m}")),
                        )
                        .await;
                }
                Ok(DeviceJobState::Active(m)) => {
                    failures = 0;
                    let message = if m.is_empty() {
                        format!("Printing on {} (printer job {device_job_id})", self.label())
                    } else {
                        format!("Printing on {}: {m}", self.label())
                    };
                    if message != last_message {
                        let text = message.clone();
                        self.update(&job, Transition::PrinterSays { message: text })
                            .await;
                        last_message = message;
                    }
                }
                Err(e) => {
                    failures += 1;
                    self.health.set(
                        &self.printer.id,
                        true,
                        Some(format!("{}: {e}", self.label())),
                    );
                }
            }
        }
    }

    async fn finish(&self, job: &JobRecord, outcome: Result<(), String>) {
        let label = self.label().to_owned();
        let ok = outcome.is_ok();
        self.count(if ok { "completed" } else { "aborted" });
        self.health.set(&self.printer.id, false, None);
        let transition = match outcome {
            Ok(()) => Transition::Printed { label },
            Err(reason) => Transition::PrintFailed { reason },
        };
        self.update(job, transition).await;
        if ok {
            tracing::info!(job = %job.uuid, printer = %self.printer.id, "job printed");
        } else {
            tracing::warn!(job = %job.uuid, printer = %self.printer.id, "job aborted");
        }
    }

    /// Takes this printer out of its pool, if it is in one, after it could
    /// not take a job: the prober puts it back once it answers.
    fn unfit(&self, reason: &str) {
        if self.pool.is_some() {
            self.pools
                .report(&self.printer.id, Fitness::Out(reason.to_owned()));
        }
    }

    async fn retry_later(&self, job: &JobRecord, reason: String) {
        self.count("retry");
        self.unfit(&reason);
        let delay = retry_delay(
            job.attempts,
            Duration::from_secs(self.config.retry_initial_secs),
            Duration::from_secs(self.config.retry_max_secs),
        );
        tracing::warn!(job = %job.uuid, printer = %self.printer.id, %reason, retry_in_s = delay.as_secs(), "printer did not take the job");
        self.health.set(
            &self.printer.id,
            false,
            Some(format!("{}: {reason}", self.label())),
        );
        let message = format!(
            "{reason}; trying again in {} s (attempt {})",
            delay.as_secs(),
            job.attempts
        );
        let at_ms = now_ms().saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
        self.update(job, Transition::RetryLater { message, at_ms })
            .await;
    }

    async fn hold_uncertain(&self, job: &JobRecord, message: String) {
        self.count("uncertain");
        self.update(job, Transition::HoldUncertain { message })
            .await;
    }

    /// Applies a transition; `None` when the job moved on meanwhile
    /// (canceled) or the appliance is stopping. A transition the store
    /// cannot write is tried again, with a doubling delay, until it is
    /// written.
    async fn update(&self, job: &JobRecord, transition: Transition) -> Option<JobRecord> {
        loop {
            match self.store.modify(job.uuid, None, transition.clone()).await {
                Ok(updated) => {
                    self.store_succeeded();
                    return Some(updated);
                }
                Err(StoreError::NotPossible(reason)) => {
                    self.store_succeeded();
                    tracing::info!(job = %job.uuid, %reason, "job changed meanwhile");
                    return None;
                }
                Err(e) => {
                    let delay = self.store_failed(&e);
                    let mut stop = self.stop.clone()?;
                    if *stop.borrow() {
                        return None;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop.changed() => return None,
                    }
                }
            }
        }
    }

    /// Records the printer's job-id for `job` (which it accepted).
    async fn accepted(&self, job: &JobRecord, device_job_id: i32) -> Option<JobRecord> {
        let label = self.label().to_owned();
        self.update(
            job,
            Transition::AcceptedByPrinter {
                device_job_id,
                label,
            },
        )
        .await
    }

    /// Counts a store failure; returns how long to wait before trying again.
    fn store_failed(&self, error: &StoreError) -> Duration {
        let (delay, log) = self
            .trouble
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .failed(now_ms());
        let printer = &self.printer.id;
        match log {
            TroubleLog::First => tracing::error!(
                %printer, %error,
                "cannot record print progress in the store; this printer's jobs wait until it can \
                 (free space on the data disk)"
            ),
            TroubleLog::StillFailing {
                failures,
                untold,
                secs,
            } => tracing::error!(
                %printer, %error, failures, untold, secs,
                "still cannot record print progress in the store"
            ),
            TroubleLog::Quiet => {}
        }
        self.failing_gauge().set(1);
        self.health.set(
            printer,
            false,
            Some(format!(
                "{}: the appliance cannot record print progress ({error}); jobs wait",
                self.label()
            )),
        );
        delay
    }

    fn store_succeeded(&self) {
        let recovered = self
            .trouble
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .succeeded(now_ms());
        if let Some(r) = recovered {
            tracing::info!(
                printer = %self.printer.id, failures = r.failures, secs = r.secs,
                "the store records print progress again"
            );
            self.failing_gauge().set(0);
            self.health.set(&self.printer.id, false, None);
        }
    }

    fn failing_gauge(&self) -> prometheus_client::metrics::gauge::Gauge {
        self.metrics
            .output_store_failing
            .get_or_create(&PrinterLabels {
                printer: self.printer.id.clone(),
            })
            .clone()
    }

    fn count(&self, outcome: &'static str) {
        self.metrics
            .output_attempts
            .get_or_create(&OutputLabels {
                printer: self.printer.id.clone(),
                outcome,
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_doubles_up_to_the_cap() {
        let d = |n| retry_delay(n, Duration::from_secs(5), Duration::from_secs(60)).as_secs();
        assert_eq!(
            [d(1), d(2), d(3), d(4), d(5), d(50)],
            [5, 10, 20, 40, 60, 60]
        );
        assert_eq!(d(0), 5);
    }

    #[test]
    fn big_documents_get_more_time() {
        let base = Duration::from_secs(60);
        assert_eq!(transfer_timeout(base, 0), base);
        assert_eq!(
            transfer_timeout(base, 1 << 30),
            Duration::from_secs(60 + 1024)
        );
    }
}
