//! The origin's side of roaming: another site claims one of this site's
//! held jobs, fetches its document, and reports how the claim ended.
//!
//! The claim is a compare-and-set in the store (`Transition::Claim`), so of
//! two sites racing for a job exactly one wins and the other is told where
//! it went. Blocks are served in the order asked, by one task per claim
//! that keeps its place in the compressed spool file, so a document is
//! decompressed once however many blocks it has.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use sync_protocol::message::Message;
use sync_protocol::roaming::{
    ClaimOutcome, ClaimReport, ClaimReportAck, ClaimRequest, ClaimResult, ClaimedJob, Fetch,
    FetchFailed, Route,
};
use sync_protocol::transfer::{BLOCK_SIZE, BlockHeader, Manifest, ManifestBuilder, pack_block};
use tokio::sync::mpsc;

use super::{CLAIM_TTL, Roaming};
use crate::analysis::DocumentColor;
use crate::job::{JobRecord, JobState, JobUuid, Transition, now_ms};
use crate::store::StoreError;

/// How long a prefetch may read a job's blocks.
const GRANT_TTL: Duration = Duration::from_secs(10 * 60);
/// Prefetch grants kept at once (beyond, a prefetch is described but not served).
const MAX_GRANTS: usize = 4096;
/// Manifests kept for the claims that follow prefetches.
const MAX_MANIFESTS: usize = 256;

/// Leave to read a held job's blocks ahead of a claim (a prefetch).
pub(super) struct Grant {
    job: JobUuid,
    claimant: String,
    until: Instant,
}

/// A claim's serving task ends after this long without a fetch.
const SERVE_IDLE: Duration = Duration::from_secs(60);
/// Fetches queued for one claim's serving task.
const SERVE_QUEUE: usize = 64;

/// Answers a claim of one of this site's jobs.
pub(super) async fn claim(roaming: Roaming, request: ClaimRequest) {
    let result = decide_claim(&roaming, &request).await;
    let answer = Message::ClaimResult(ClaimResult {
        request: request.request,
        claimant: request.claimant.clone(),
        origin: String::new(),
        outcome: result.outcome,
        message: result.message,
        site: result.site,
        job: result.job,
    });
    if roaming.send(answer).await.is_err() {
        tracing::info!(job = %request.job, "roaming: the answer to a claim could not be sent");
    }
}

struct Decision {
    outcome: ClaimOutcome,
    message: String,
    site: Option<String>,
    job: Option<Box<ClaimedJob>>,
}

fn refused(outcome: ClaimOutcome, message: String, site: Option<String>) -> Decision {
    Decision {
        outcome,
        message,
        site,
        job: None,
    }
}

async fn decide_claim(roaming: &Roaming, request: &ClaimRequest) -> Decision {
    let store = &roaming.inner.store;
    let not_found = || {
        refused(
            ClaimOutcome::NotFound,
            "no such job of this user here".into(),
            None,
        )
    };
    let Some(uuid) = JobUuid::parse(&request.job) else {
        return not_found();
    };
    let found = match store.job(uuid).await {
        Ok(Some(job)) if job.is_owned_by(&request.user) && job.origin.is_none() => job,
        Ok(_) => return not_found(),
        Err(e) => return unavailable(&e),
    };
    if request.prefetch {
        return read_ahead(roaming, request, found).await;
    }
    let until_ms = now_ms().saturating_add(CLAIM_TTL.as_millis() as i64);
    let transition = Transition::Claim {
        site: request.claimant.clone(),
        claim: request.claim.clone(),
        until_ms,
    };
    let job = match store.modify(uuid, None, transition).await {
        Ok(job) => job,
        Err(StoreError::NotPossible(why)) => {
            return match store.job(uuid).await {
                Ok(Some(job)) => why_not(roaming, &job, why.0),
                Ok(None) => not_found(),
                Err(e) => unavailable(&e),
            };
        }
        Err(e) => return unavailable(&e),
    };
    match describe(roaming, &job).await {
        Ok(manifest) => {
            tracing::info!(job = %job.uuid, claimant = %request.claimant, "roaming: job claimed");
            Decision {
                outcome: ClaimOutcome::Claimed,
                message: String::new(),
                site: None,
                job: Some(Box::new(claimed_job(&job, until_ms, manifest))),
            }
        }
        Err(why) => {
            tracing::error!(job = %job.uuid, "roaming: cannot read a claimed job's document: {why}");
            let back = Transition::ClaimEnded {
                claim: request.claim.clone(),
            };
            if let Err(e) = store.modify(uuid, None, back).await {
                tracing::warn!(job = %job.uuid, error = %e, "roaming: the claim stays until it lapses");
            }
            refused(
                ClaimOutcome::Unavailable,
                format!("the job's document cannot be read at its site: {why}"),
                None,
            )
        }
    }
}

/// A prefetch: the job is described and its blocks may be read under the
/// request's id for [`GRANT_TTL`], while it stays held here for anyone.
async fn read_ahead(roaming: &Roaming, request: &ClaimRequest, job: JobRecord) -> Decision {
    let now = now_ms();
    let held = job.state == JobState::PendingHeld && job.documents_complete;
    if !held || job.live_claim(now).is_some() {
        return refused(
            ClaimOutcome::NotHeld,
            "not held for release now".into(),
            None,
        );
    }
    let manifest = match describe(roaming, &job).await {
        Ok(manifest) => manifest,
        Err(why) => {
            return refused(
                ClaimOutcome::Unavailable,
                format!("the job's document cannot be read at its site: {why}"),
                None,
            );
        }
    };
    if let Ok(mut grants) = roaming.inner.grants.lock() {
        let at = Instant::now();
        grants.retain(|_, g| g.until > at);
        if grants.len() < MAX_GRANTS {
            grants.insert(
                request.claim.clone(),
                Grant {
                    job: job.uuid,
                    claimant: request.claimant.clone(),
                    until: at + GRANT_TTL,
                },
            );
        }
    }
    let until_ms = now.saturating_add(GRANT_TTL.as_millis() as i64);
    Decision {
        outcome: ClaimOutcome::Claimed,
        message: String::new(),
        site: None,
        job: Some(Box::new(claimed_job(&job, until_ms, manifest))),
    }
}

/// Why a claim of `job` was refused, as the claimant's user should hear it.
fn why_not(roaming: &Roaming, job: &JobRecord, why: String) -> Decision {
    let now = now_ms();
    match (job.state, &job.claim) {
        (JobState::Completed, Some(claim)) => refused(
            ClaimOutcome::PrintedElsewhere,
            format!("printed at site {}", claim.site),
            Some(claim.site.clone()),
        ),
        (JobState::Completed, None) => {
            let here = roaming.site();
            refused(
                ClaimOutcome::PrintedElsewhere,
                format!("printed at site {here}"),
                Some(here),
            )
        }
        (JobState::PendingHeld, _) if job.live_claim(now).is_some() => {
            let site = job.live_claim(now).map(|c| c.site.clone());
            refused(
                ClaimOutcome::ClaimedElsewhere,
                format!(
                    "being released at site {}",
                    site.as_deref().unwrap_or("another site")
                ),
                site,
            )
        }
        _ => refused(ClaimOutcome::NotHeld, why, None),
    }
}

fn unavailable(e: &StoreError) -> Decision {
    tracing::error!(error = %e, "roaming: the store cannot answer a claim");
    refused(
        ClaimOutcome::Unavailable,
        "the job's site cannot answer now; try again".into(),
        None,
    )
}

/// The manifest of `job`'s document: one pass over the spool file, checked
/// against the hash taken at intake; kept a while, so the claim that
/// follows a prefetch does not read the document again.
async fn describe(roaming: &Roaming, job: &JobRecord) -> Result<Manifest, String> {
    let expected = job.document.as_ref().map(|d| d.sha256.clone());
    let cached = roaming
        .inner
        .manifests
        .lock()
        .ok()
        .and_then(|m| m.get(&job.uuid).cloned());
    if let Some(manifest) = cached.filter(|m| Some(&m.sha256) == expected.as_ref()) {
        return Ok(manifest);
    }
    let (documents, uuid) = (roaming.inner.store.documents(), job.uuid);
    let record = job
        .document
        .clone()
        .ok_or_else(|| "the job has no document".to_owned())?;
    let manifest = tokio::task::spawn_blocking(move || {
        let reader = documents.open(uuid, &record).map_err(|e| e.to_string())?;
        let manifest = ManifestBuilder::of_reader(BLOCK_SIZE, reader).map_err(|e| e.to_string())?;
        if expected.is_some_and(|e| e != manifest.sha256) {
            return Err("the stored document does not match the hash taken at intake".to_owned());
        }
        Ok(manifest)
    })
    .await
    .map_err(|e| e.to_string())??;
    if let Ok(mut cache) = roaming.inner.manifests.lock() {
        if cache.len() >= MAX_MANIFESTS {
            cache.clear();
        }
        cache.insert(uuid, manifest.clone());
    }
    Ok(manifest)
}

fn claimed_job(job: &JobRecord, until_ms: i64, manifest: Manifest) -> ClaimedJob {
    let document = job.document.as_ref();
    let analysis = document.map(|d| d.analysis);
    ClaimedJob {
        uuid: job.uuid.to_string(),
        owner: job.owner.clone(),
        name: job.name.clone(),
        queue: job.queue.clone(),
        format: document.map_or_else(String::new, |d| d.format.clone()),
        document_name: document.and_then(|d| d.name.clone()),
        template: hex::encode(&job.template),
        pages: analysis.and_then(|a| a.pages),
        pages_exact: analysis.is_some_and(|a| a.pages_exact),
        color: analysis
            .map_or(DocumentColor::Unknown, |a| a.color)
            .keyword()
            .to_owned(),
        submitted_ms: job.created_ms,
        until_ms,
        manifest,
    }
}

/// A fetch of blocks under a claim: queued for the claim's serving task
/// (started if there is none).
pub(super) fn fetch(roaming: &Roaming, fetch: Fetch) {
    let Ok(mut serving) = roaming.inner.serving.lock() else {
        return;
    };
    let claim = fetch.claim.clone();
    let fetch = match serving.get(&claim) {
        Some(queue) => match queue.try_send(fetch) {
            // Queued; or too far behind: dropped, the claimant asks again.
            Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => return,
            Err(mpsc::error::TrySendError::Closed(fetch)) => fetch,
        },
        None => fetch,
    };
    start_serving(roaming, &mut serving, fetch);
}

fn start_serving(
    roaming: &Roaming,
    serving: &mut std::collections::HashMap<String, mpsc::Sender<Fetch>>,
    first: Fetch,
) {
    let (tx, rx) = mpsc::channel(SERVE_QUEUE);
    let claim = first.claim.clone();
    let _ = tx.try_send(first);
    serving.insert(claim.clone(), tx);
    let roaming = roaming.clone();
    tokio::spawn(async move {
        serve(&roaming, rx).await;
        if let Ok(mut serving) = roaming.inner.serving.lock()
            && serving.get(&claim).is_some_and(|q| q.is_closed())
        {
            serving.remove(&claim);
        }
    });
}

/// Where a serving task is in a document.
struct Cursor {
    reader: Box<dyn Read + Send>,
    at: u64,
}

/// Serves one claim's fetches in order until none comes for a while.
async fn serve(roaming: &Roaming, mut fetches: mpsc::Receiver<Fetch>) {
    let store = &roaming.inner.store;
    let metrics = &roaming.inner.metrics;
    let served = metrics.roaming(&metrics.roaming_bytes, "served");
    let mut cursor: Option<Cursor> = None;
    while let Ok(Some(fetch)) = tokio::time::timeout(SERVE_IDLE, fetches.recv()).await {
        let job = match JobUuid::parse(&fetch.job) {
            Some(uuid) => store.job(uuid).await.ok().flatten(),
            None => None,
        };
        let Some(job) = job.filter(|j| serves(roaming, j, &fetch)) else {
            let failed = Message::FetchFailed(FetchFailed {
                transfer: fetch.transfer,
                claimant: fetch.claimant.clone(),
                origin: String::new(),
                message: "the claim on this job no longer holds at its site".into(),
                unreachable: false,
            });
            let _ = roaming.send(failed).await;
            return;
        };
        let Some(record) = job.document.clone() else {
            return;
        };
        let size = record.size;
        let Ok(link) = roaming.link() else { return };
        let Some(route) = (Route {
            claimant: fetch.claimant.clone(),
        })
        .encode() else {
            return;
        };
        for index in fetch.blocks {
            let offset = u64::from(index) * u64::from(BLOCK_SIZE);
            if offset >= size {
                continue;
            }
            let len = (size - offset).min(u64::from(BLOCK_SIZE)) as usize;
            let (documents, record) = (store.documents(), record.clone());
            let uuid = job.uuid;
            let taken = cursor.take();
            let read = tokio::task::spawn_blocking(move || {
                let mut cursor = match taken {
                    Some(c) if c.at <= offset => c,
                    _ => Cursor {
                        reader: documents.open(uuid, &record)?,
                        at: 0,
                    },
                };
                let skipped = io::copy(
                    &mut (&mut cursor.reader).take(offset - cursor.at),
                    &mut io::sink(),
                )?;
                cursor.at += skipped;
                let mut data = vec![0u8; len];
                cursor.reader.read_exact(&mut data)?;
                cursor.at += len as u64;
                let (compressed, payload) = pack_block(&data);
                Ok::<_, io::Error>((cursor, compressed, payload))
            })
            .await;
            let (next, compressed, payload) = match read {
                Ok(Ok(read)) => read,
                Ok(Err(e)) => {
                    tracing::error!(job = %job.uuid, error = %e, "roaming: cannot read a block to serve");
                    return;
                }
                Err(_) => return,
            };
            cursor = Some(next);
            let header = BlockHeader {
                transfer: fetch.transfer,
                index,
                compressed,
                len: payload.len() as u32,
            };
            let sent = async {
                let mut stream = link.connection.open_uni().await?;
                stream.set_priority(header.priority())?;
                stream.write_all(&route).await?;
                stream.write_all(&header.encode()).await?;
                stream.write_all(&payload).await?;
                stream.finish()?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            }
            .await;
            if let Err(e) = sent {
                tracing::info!(job = %job.uuid, error = %e, "roaming: a block could not be sent");
                return;
            }
            served.inc_by(len as u64);
        }
    }
}

/// Whether `job` is held under the claim `fetch` names, for its claimant,
/// or, for a prefetch, still held for anyone under a grant in force.
fn serves(roaming: &Roaming, job: &JobRecord, fetch: &Fetch) -> bool {
    if job.state != JobState::PendingHeld {
        return false;
    }
    let claimed = job
        .claim
        .as_ref()
        .is_some_and(|c| c.id == fetch.claim && c.site == fetch.claimant);
    let granted = || {
        job.live_claim(now_ms()).is_none()
            && roaming.inner.grants.lock().is_ok_and(|grants| {
                grants.get(&fetch.claim).is_some_and(|g| {
                    g.job == job.uuid && g.claimant == fetch.claimant && g.until > Instant::now()
                })
            })
    };
    claimed || granted()
}

/// Applies a claimant's report and acknowledges it; a report that no
/// longer applies (already applied, or the claim was superseded) is
/// acknowledged too, since nothing more can come of it.
pub(super) async fn report(roaming: Roaming, report: ClaimReport) {
    let Some(uuid) = JobUuid::parse(&report.job) else {
        return;
    };
    let transition = if report.printed {
        Transition::PrintedElsewhere {
            claim: report.claim.clone(),
        }
    } else {
        Transition::ClaimEnded {
            claim: report.claim.clone(),
        }
    };
    match roaming.inner.store.modify(uuid, None, transition).await {
        Ok(_) => tracing::info!(job = %uuid, claimant = %report.claimant, printed = report.printed,
            "roaming: claim ended"),
        Err(StoreError::NotPossible(_) | StoreError::NotFound) => {}
        // Not recorded: no acknowledgement, the claimant sends it again.
        Err(e) => {
            tracing::warn!(job = %uuid, error = %e, "roaming: cannot record a claim's end");
            return;
        }
    }
    let ack = Message::ClaimReportAck(ClaimReportAck {
        claimant: report.claimant,
        origin: String::new(),
        claim: report.claim,
    });
    let _ = roaming.send(ack).await;
}
