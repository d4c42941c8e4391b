//! Job roaming at a site: a user releases here a job they printed at
//! another site of the fleet, and this site serves its own jobs to the
//! others. Everything passes through central over the sync connection
//! (sites dial out only): questions and answers as messages on the session
//! stream, document blocks one per unidirectional QUIC stream
//! (`sync_protocol::roaming` describes the exchange).
//!
//! - As the site where the user stands (the *claimant*), `fetch` claims
//!   the job at its origin, keeps a local job for it (pending at the
//!   printer, its document on the way), brings the document in verified
//!   blocks into a partial file that survives restarts, spools it, and
//!   lets the printer's forwarder print it in submission order. How the
//!   claim ended goes back to the origin (`report`), kept in the store
//!   until the origin acknowledges it.
//! - As the *origin*, `origin` grants claims (a compare-and-set on the
//!   held job), describes the document with a manifest, serves its blocks,
//!   and applies the claimant's report.
//!
//! This module only moves work between the store, the sync connection and
//! the printers; the decisions are pure: `job::Transition` (claims, the
//! fetched job's end), `report::report_for`, `sync_protocol::transfer`.

mod fetch;
mod origin;
mod prefetch;
pub mod report;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sync_protocol::message::Message;
use sync_protocol::roaming::{
    ClaimOutcome, ClaimReport, ClaimRequest, ClaimResult, RemoteJob, RemoteJobsRequest,
};
use sync_protocol::transfer::{BLOCK_SIZE, BlockHeader, unpack_block};
use tokio::sync::{mpsc, oneshot, watch};

use crate::job::JobRecord;
use crate::metrics::Metrics;
use crate::printer::OutputWake;
use crate::store::JobStore;

/// How long a claim holds at its origin unless its end is reported: long
/// enough for a large document over a slow link and its print, short
/// enough that a job whose claimant died is back within the quarter hour.
const CLAIM_TTL: Duration = Duration::from_secs(15 * 60);
/// How long a question to central (the remote job list) may take.
const LIST_TIME: Duration = Duration::from_secs(3);
/// How long a claim may take (the origin reads the whole document once to
/// describe it).
const CLAIM_TIME: Duration = Duration::from_secs(30);
/// Unacknowledged claim reports are sent again this often.
const REPORT_EVERY: Duration = Duration::from_secs(30);

/// Why a roaming request got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoamingError {
    /// Not connected to central now.
    #[error("central cannot be reached now ({0}); only this site's jobs are available")]
    Disconnected(String),
    /// Central or the other site did not answer in time.
    #[error("no answer from central within {0} s; try again")]
    Timeout(u64),
}

/// The sync session this site has now, as far as roaming needs it.
#[derive(Clone)]
struct Link {
    /// Messages to send to central, in order, on the session stream.
    messages: mpsc::Sender<Message>,
    /// The connection, for block streams.
    connection: quinn::Connection,
}

/// An event of one transfer: a block, the origin's refusal, or word that
/// the origin is out of reach.
enum TransferEvent {
    /// A block's bytes as they came (the receiver checks them).
    Block { index: u32, data: Vec<u8> },
    /// The origin refused: the transfer stops.
    Refused(String),
    /// Central could not reach the origin: the transfer asks again later.
    Unreachable(String),
}

/// The roaming service; cheap to clone.
#[derive(Clone)]
pub struct Roaming {
    inner: Arc<Inner>,
}

struct Inner {
    store: JobStore,
    wake: OutputWake,
    /// Where partial documents of fetches in progress live.
    partial_dir: PathBuf,
    link: watch::Sender<Option<Link>>,
    /// Why there is no link, for answers.
    offline: Mutex<String>,
    /// This site's name at central, once a session told it.
    site: Mutex<String>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Message>>>,
    transfers: Mutex<HashMap<u64, mpsc::Sender<TransferEvent>>>,
    /// The origin's serving queues, one per claim being served.
    serving: Mutex<HashMap<String, mpsc::Sender<sync_protocol::roaming::Fetch>>>,
    /// Documents read ahead for users logged in here.
    prefetches: Mutex<prefetch::Prefetches>,
    /// The origin's prefetch grants, by id.
    grants: Mutex<HashMap<String, origin::Grant>>,
    /// The origin's recent manifests, by job.
    manifests: Mutex<HashMap<crate::job::JobUuid, sync_protocol::transfer::Manifest>>,
    metrics: Arc<Metrics>,
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // An all-zero id if the system has no randomness: the request still
    // works, only less well separated from others.
    let _ = getrandom::fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

impl Roaming {
    /// The roaming service of a site whose data directory is `data_dir`.
    pub fn new(
        store: JobStore,
        wake: OutputWake,
        data_dir: &std::path::Path,
        prefetch_keep: Duration,
        metrics: Arc<Metrics>,
    ) -> Roaming {
        let (link, _) = watch::channel(None);
        Roaming {
            inner: Arc::new(Inner {
                store,
                wake,
                partial_dir: data_dir.join("roaming"),
                link,
                offline: Mutex::new("not connected yet".into()),
                site: Mutex::new(String::new()),
                pending: Mutex::new(HashMap::new()),
                transfers: Mutex::new(HashMap::new()),
                serving: Mutex::new(HashMap::new()),
                grants: Mutex::new(HashMap::new()),
                prefetches: Mutex::new(prefetch::Prefetches::new(prefetch_keep)),
                manifests: Mutex::new(HashMap::new()),
                metrics,
            }),
        }
    }

    /// Starts the background work: fetches interrupted by the last stop
    /// resume, and claim reports go out whenever central is reachable.
    pub async fn start(&self, shutdown: watch::Receiver<bool>) {
        match self.inner.store.fetching().await {
            Ok(jobs) => {
                for job in jobs {
                    tracing::info!(job = %job.uuid, "roaming: resuming a fetch");
                    self.spawn_fetch(job);
                }
            }
            Err(e) => tracing::error!(error = %e, "roaming: cannot list fetches to resume"),
        }
        tokio::spawn(self.clone().send_reports(shutdown.clone()));
        tokio::spawn(self.clone().sweep_prefetches(shutdown));
    }

    /// A sync session speaking roaming runs: requests go through it.
    pub(crate) fn linked(
        &self,
        site: &str,
        messages: mpsc::Sender<Message>,
        connection: quinn::Connection,
    ) {
        if let Ok(mut name) = self.inner.site.lock() {
            *name = site.to_owned();
        }
        self.inner.link.send_replace(Some(Link {
            messages,
            connection,
        }));
    }

    /// The session ended: requests waiting for an answer get none.
    pub(crate) fn unlinked(&self, why: &str) {
        if let Ok(mut offline) = self.inner.offline.lock() {
            *offline = why.to_owned();
        }
        self.inner.link.send_replace(None);
        if let Ok(mut pending) = self.inner.pending.lock() {
            pending.clear();
        }
    }

    fn link(&self) -> Result<Link, RoamingError> {
        self.inner.link.borrow().clone().ok_or_else(|| {
            RoamingError::Disconnected(
                self.inner
                    .offline
                    .lock()
                    .map(|o| o.clone())
                    .unwrap_or_default(),
            )
        })
    }

    fn site(&self) -> String {
        self.inner
            .site
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Sends `message` to central on the current session.
    async fn send(&self, message: Message) -> Result<(), RoamingError> {
        let link = self.link()?;
        link.messages
            .send(message)
            .await
            .map_err(|_| RoamingError::Disconnected("the session just ended".into()))
    }

    /// Sends a request with id `id` and waits up to `time` for its answer.
    async fn ask(
        &self,
        id: u64,
        message: Message,
        time: Duration,
    ) -> Result<Message, RoamingError> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut pending) = self.inner.pending.lock() {
            pending.insert(id, tx);
        }
        let answer = async {
            self.send(message).await?;
            match tokio::time::timeout(time, rx).await {
                Ok(Ok(answer)) => Ok(answer),
                Ok(Err(_)) => Err(self
                    .link()
                    .err()
                    .unwrap_or(RoamingError::Disconnected("the session ended".into()))),
                Err(_) => Err(RoamingError::Timeout(time.as_secs())),
            }
        }
        .await;
        if let Ok(mut pending) = self.inner.pending.lock() {
            pending.remove(&id);
        }
        answer
    }

    /// `user`'s jobs held at other sites, oldest first, from central's index.
    pub async fn remote_jobs(&self, user: &str) -> Result<Vec<RemoteJob>, RoamingError> {
        let request = random_u64();
        let message = Message::RemoteJobsRequest(RemoteJobsRequest {
            request,
            user: user.to_owned(),
        });
        match self.ask(request, message, LIST_TIME).await? {
            Message::RemoteJobs(answer) => match answer.unavailable {
                Some(why) => Err(RoamingError::Disconnected(why)),
                None => Ok(answer.jobs),
            },
            _ => Err(RoamingError::Disconnected(
                "central answered something else".into(),
            )),
        }
    }

    /// Claims job `job` of `user` at site `origin` for this site; the
    /// answer and the claim's id.
    pub async fn claim(
        &self,
        origin: &str,
        job: &str,
        user: &str,
    ) -> Result<(ClaimResult, String), RoamingError> {
        let answer = self.ask_claim(origin, job, user, false).await;
        let kind = match &answer {
            Ok((result, _)) => match result.outcome {
                ClaimOutcome::Claimed => "granted",
                ClaimOutcome::Unavailable | ClaimOutcome::Other => "unavailable",
                _ => "refused",
            },
            Err(_) => "unavailable",
        };
        let m = &self.inner.metrics;
        m.roaming(&m.roaming_claims, kind).inc();
        answer
    }

    /// Asks for a claim, or for a prefetch grant.
    async fn ask_claim(
        &self,
        origin: &str,
        job: &str,
        user: &str,
        prefetch: bool,
    ) -> Result<(ClaimResult, String), RoamingError> {
        let request = random_u64();
        let claim =
            hex::encode(random_u64().to_be_bytes()) + &hex::encode(random_u64().to_be_bytes());
        let message = Message::Claim(ClaimRequest {
            request,
            origin: origin.to_owned(),
            claimant: String::new(),
            job: job.to_owned(),
            user: user.to_owned(),
            claim: claim.clone(),
            prefetch,
        });
        match self.ask(request, message, CLAIM_TIME).await? {
            Message::ClaimResult(result) => Ok((result, claim)),
            _ => Err(RoamingError::Disconnected(
                "central answered something else".into(),
            )),
        }
    }

    /// Gives a claim back unused (the rules refused the job here, or it
    /// could not be recorded): kept as a report until the origin has it,
    /// so the job is held there again at once rather than when the claim
    /// lapses.
    pub async fn give_back(&self, origin: &str, job: &str, claim: &str) {
        let end = report::ClaimEnd {
            origin_site: origin.to_owned(),
            origin_uuid: job.to_owned(),
            claim: claim.to_owned(),
            printed: false,
        };
        if let Err(e) = self.inner.store.add_claim_report(end).await {
            tracing::warn!(job, error = %e, "roaming: a claim given back stays until it lapses");
        }
    }

    /// Starts bringing the document of `job` (a fetched job just committed,
    /// or one found unfinished at start-up) and printing it.
    pub fn spawn_fetch(&self, job: JobRecord) {
        tokio::spawn(fetch::run(self.clone(), job));
    }

    /// A roaming message from central.
    pub(crate) fn handle(&self, message: Message) {
        match message {
            Message::RemoteJobs(answer) => {
                self.answered(answer.request, Message::RemoteJobs(answer))
            }
            Message::ClaimResult(result) => {
                self.answered(result.request, Message::ClaimResult(result))
            }
            Message::FetchFailed(failed) => {
                let event = if failed.unreachable {
                    TransferEvent::Unreachable(failed.message)
                } else {
                    TransferEvent::Refused(failed.message)
                };
                self.transfer_event(failed.transfer, event)
            }
            Message::ClaimReportAck(ack) => {
                let store = self.inner.store.clone();
                tokio::spawn(async move {
                    if let Err(e) = store.claim_report_done(ack.claim).await {
                        tracing::warn!(error = %e, "roaming: cannot forget an acknowledged report");
                    }
                });
            }
            Message::Claim(request) => {
                tokio::spawn(origin::claim(self.clone(), request));
            }
            Message::Fetch(fetch) => origin::fetch(self, fetch),
            Message::ClaimReport(report) => {
                tokio::spawn(origin::report(self.clone(), report));
            }
            other => tracing::debug!(kind = other.kind(), "roaming: ignored"),
        }
    }

    fn answered(&self, request: u64, answer: Message) {
        let waiting = self
            .inner
            .pending
            .lock()
            .ok()
            .and_then(|mut p| p.remove(&request));
        if let Some(waiting) = waiting {
            let _ = waiting.send(answer);
        }
    }

    fn transfer_event(&self, transfer: u64, event: TransferEvent) {
        let to = self
            .inner
            .transfers
            .lock()
            .ok()
            .and_then(|t| t.get(&transfer).cloned());
        if let Some(to) = to {
            // A full queue means the fetch is behind: the block is asked again.
            let _ = to.try_send(event);
        }
    }

    /// A block stream from central: reads the block and hands it to its
    /// transfer. A stream for no transfer of ours is dropped.
    pub(crate) fn block_stream(&self, mut stream: quinn::RecvStream) {
        let roaming = self.clone();
        tokio::spawn(async move {
            let mut head = [0u8; BlockHeader::LEN];
            if stream.read_exact(&mut head).await.is_err() {
                return;
            }
            let max = BLOCK_SIZE + BLOCK_SIZE / 8;
            let Ok(header) = BlockHeader::decode(&head, max) else {
                let _ = stream.stop(0u32.into());
                return;
            };
            let known = roaming
                .inner
                .transfers
                .lock()
                .is_ok_and(|t| t.contains_key(&header.transfer));
            if !known {
                let _ = stream.stop(0u32.into());
                return;
            }
            let mut payload = vec![0u8; header.len as usize];
            if stream.read_exact(&mut payload).await.is_err() {
                return;
            }
            let unpacked =
                tokio::task::spawn_blocking(move || unpack_block(&header, payload, BLOCK_SIZE))
                    .await;
            match unpacked {
                Ok(Ok(data)) => roaming.transfer_event(
                    header.transfer,
                    TransferEvent::Block {
                        index: header.index,
                        data,
                    },
                ),
                Ok(Err(e)) => tracing::warn!(error = %e, "roaming: a block could not be unpacked"),
                Err(_) => {}
            }
        });
    }

    /// Sends the claim reports the store keeps whenever a session runs:
    /// at once when one starts, and again every [`REPORT_EVERY`] until
    /// each is acknowledged.
    async fn send_reports(self, mut shutdown: watch::Receiver<bool>) {
        let mut link = self.inner.link.subscribe();
        let mut commits = self.inner.store.commits();
        let mut sent: HashMap<String, tokio::time::Instant> = HashMap::new();
        let mut tick = tokio::time::interval(REPORT_EVERY);
        loop {
            tokio::select! {
                _ = link.changed() => sent.clear(),
                _ = commits.changed() => {}
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            if self.link().is_err() {
                continue;
            }
            let reports = match self.inner.store.claim_reports().await {
                Ok(reports) => reports,
                Err(e) => {
                    tracing::warn!(error = %e, "roaming: cannot read claim reports");
                    continue;
                }
            };
            let now = tokio::time::Instant::now();
            sent.retain(|claim, _| reports.iter().any(|r| r.claim == *claim));
            for end in reports {
                let due = sent
                    .get(&end.claim)
                    .is_none_or(|at| now.duration_since(*at) >= REPORT_EVERY);
                if !due {
                    continue;
                }
                sent.insert(end.claim.clone(), now);
                let report = Message::ClaimReport(ClaimReport {
                    origin: end.origin_site,
                    claimant: String::new(),
                    job: end.origin_uuid,
                    claim: end.claim,
                    printed: end.printed,
                });
                if self.send(report).await.is_err() {
                    break;
                }
            }
        }
    }
}
