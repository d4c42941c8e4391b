//! Releasing held jobs at a printer: the request, the rules, the state
//! change, and the progress of a release (the release use case of
//! [`ApiService`]; the HTTP layer only routes to it).
//!
//! A release moves each chosen job from held to pending at the session's
//! printer, with the user's overrides as the rules allow them, in one
//! store change per job (checked against the row at commit time, so a job
//! is never released twice) that also writes the audit record. The
//! printer's forwarder then sends the jobs in submission order. Progress
//! is read back from the jobs' states; the registry only remembers which
//! jobs a release covered.

use std::collections::HashMap;

use serde::Deserialize;

use std::sync::Arc;

use futures_util::future::Either;
use http::{HeaderMap, StatusCode};

use super::error::ApiError;
use super::remote::Candidate;
use super::reply::json;
use super::sessions::Session;
use super::{ApiService, MAX_JOBS_LISTED, poisoned};
use crate::analysis::{Analysis, DocumentColor};
use crate::http_server::Response;
use crate::ipp::template::{self, SIDES};
use crate::ipp_wire::stored_template;
use crate::job::{
    DocumentRecord, Fetching, JobRecord, JobState, JobUuid, NotPossible, Origin, Transition, now_ms,
};
use crate::metrics::PrinterLabels;
use crate::rules;
use crate::rules::{Decision, JobFacts, Overrides};
use crate::store::{AuditEvent, JobQuery, StoreError};
use sync_protocol::roaming::{ClaimedJob, RemoteJob};

/// Releases remembered for progress queries.
const MAX_RELEASES: usize = 10_000;
/// How long a release's progress can be asked for.
const RELEASE_TTL_MS: i64 = 3600 * 1000;

/// `POST /api/v1/jobs/release` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseBody {
    jobs: Selection,
    #[serde(default)]
    copies: Option<u32>,
    #[serde(default)]
    color: Option<String>,
    #[serde(default)]
    sides: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Selection {
    Ids(Vec<String>),
    Keyword(String),
}

/// Which jobs a release asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Chosen {
    /// Every held job of the user, oldest first.
    All,
    /// These, in this order.
    Ids(Vec<String>),
}

/// Reads and checks a release request.
pub(super) fn parse_request(body: &[u8]) -> Result<(Chosen, Overrides), ApiError> {
    let body: ReleaseBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid release request: {e}")))?;
    let chosen = match body.jobs {
        Selection::Keyword(k) if k == "all" => Chosen::All,
        Selection::Keyword(k) => {
            return Err(ApiError::bad_request(format!(
                "`jobs` must be \"all\" or a list of job ids, not {k:?}"
            )));
        }
        Selection::Ids(ids) if ids.is_empty() => {
            return Err(ApiError::bad_request("`jobs` lists no job"));
        }
        Selection::Ids(ids) if ids.len() > 500 => {
            return Err(ApiError::bad_request("at most 500 jobs per release"));
        }
        Selection::Ids(ids) => Chosen::Ids(ids),
    };
    if let Some(c) = body.copies
        && !(1..=template::MAX_COPIES as u32).contains(&c)
    {
        return Err(ApiError::bad_request(format!(
            "`copies` must be 1 to {}",
            template::MAX_COPIES
        )));
    }
    let mono = match body.color.as_deref() {
        None => false,
        Some("mono") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "`color` can only be \"mono\" (to print in black and white), not {other:?}"
            )));
        }
    };
    if let Some(s) = &body.sides
        && !SIDES.contains(&s.as_str())
    {
        return Err(ApiError::bad_request(format!(
            "`sides` must be one of {}",
            SIDES.join(", ")
        )));
    }
    Ok((
        chosen,
        Overrides {
            copies: body.copies,
            mono,
            sides: body.sides,
        },
    ))
}

/// What the rules read about a job.
pub(super) fn facts(job: &JobRecord) -> JobFacts {
    let settings = stored_template::settings(&job.template);
    JobFacts {
        pages: job
            .document
            .as_ref()
            .and_then(|d| d.analysis.pages)
            .map(|p| settings.pages_printed(p)),
        copies: settings.copies,
        sides: settings.sides,
    }
}

/// The transition that releases a held job to `device` as `decision` says.
pub(super) fn release_transition(
    user: String,
    device: String,
    device_label: String,
    decision: Decision,
) -> Transition {
    Transition::ReleaseAtPrinter {
        user,
        device,
        device_label,
        copies: decision.copies,
        mono: decision.mono,
        sides: decision.sides,
    }
}

/// A new job that prints `original`'s document again, released to
/// `device` as `decision` says (the caller links the document).
pub(super) fn reprint_of(
    original: &JobRecord,
    user: String,
    device: String,
    device_label: String,
    decision: Decision,
) -> Result<JobRecord, NotPossible> {
    let mut copy = JobRecord {
        uuid: JobUuid::new(),
        ipp_job_id: 0,
        documents_complete: true,
        created_ms: now_ms(),
        completed_ms: None,
        kept_until_ms: None,
        claim: None,
        origin: None,
        ..original.clone()
    };
    copy.hold_indefinitely(String::new());
    copy.clear_output();
    copy.apply(
        &release_transition(user, device, device_label, decision),
        now_ms(),
    )?;
    copy.state_message = format!(
        "Reprint of job {}: {}",
        original.ipp_job_id, copy.state_message
    );
    Ok(copy)
}

/// The job this site keeps for `claimed`, a job of another site claimed
/// to print here: released to `device` as `decision` says, its document
/// still to come from `origin` under `claim`.
pub(super) fn fetched_job(
    claimed: &ClaimedJob,
    origin: &str,
    claim: String,
    user: String,
    device: String,
    device_label: String,
    decision: Decision,
) -> Result<JobRecord, NotPossible> {
    let mut job = held_copy_of(claimed, origin, claim)?;
    job.apply(
        &release_transition(user, device, device_label, decision),
        now_ms(),
    )?;
    // Released with its document still away: the forwarder takes it only
    // once the fetch has it whole (`Transition::Fetched`).
    job.documents_complete = false;
    job.state_message = format!("Coming from site {origin}; it prints when it arrives.");
    Ok(job)
}

/// `claimed` as a held job of this site, whole, for the rules to read.
pub(super) fn held_copy_of(
    claimed: &ClaimedJob,
    origin: &str,
    claim: String,
) -> Result<JobRecord, NotPossible> {
    let template = hex::decode(&claimed.template)
        .map_err(|_| NotPossible("the job's settings arrived damaged".into()))?;
    let mut job = JobRecord {
        uuid: JobUuid::new(),
        queue: claimed.queue.clone(),
        ipp_job_id: 0,
        owner: claimed.owner.clone(),
        name: claimed.name.clone(),
        state: JobState::PendingHeld,
        state_reasons: String::new(),
        state_message: String::new(),
        hold_until: None,
        template,
        document: Some(DocumentRecord {
            format: claimed.format.clone(),
            name: claimed.document_name.clone(),
            size: claimed.manifest.size,
            spool_size: 0,
            sha256: claimed.manifest.sha256.clone(),
            analysis: Analysis {
                pages: claimed.pages,
                pages_exact: claimed.pages_exact,
                color: DocumentColor::from_keyword(&claimed.color),
            },
            // Until the document arrives; the store records where it went.
            storage: crate::job::DocumentStorage::LEGACY,
        }),
        documents_complete: true,
        created_ms: claimed.submitted_ms,
        processing_ms: None,
        completed_ms: None,
        printer: None,
        device_job_id: None,
        attempts: 0,
        next_attempt_ms: None,
        kept_until_ms: None,
        claim: None,
        origin: Some(Origin {
            site: origin.to_owned(),
            uuid: claimed.uuid.clone(),
            claim,
            fetching: Some(Fetching {
                manifest: claimed.manifest.clone(),
                until_ms: claimed.until_ms,
            }),
        }),
    };
    job.hold_indefinitely(String::new());
    Ok(job)
}

/// A job held at another site, as the API lists it.
pub(super) fn remote_job_view(job: &RemoteJob) -> serde_json::Value {
    serde_json::json!({
        "id": job.uuid,
        "name": job.name,
        "pages": job.pages,
        "size": job.size.unwrap_or(0),
        "submitted": rfc3339(job.submitted_ms),
        "site": job.site,
        "state": "held",
        "available": job.available,
        "reason": job.reason,
    })
}

/// A job as the API shows it to its owner.
pub(super) fn job_view(job: &JobRecord, site: &str) -> serde_json::Value {
    let settings = stored_template::settings(&job.template);
    let analysis = job.document.as_ref().map(|d| d.analysis);
    let color = if settings.color_mode.as_deref() == Some("monochrome") {
        "monochrome"
    } else {
        match analysis.map(|a| a.color) {
            Some(DocumentColor::Monochrome) => "monochrome",
            Some(DocumentColor::Color) => "color",
            _ if settings.color_mode.as_deref() == Some("color") => "color",
            _ => "unknown",
        }
    };
    serde_json::json!({
        "id": job.uuid.to_string(),
        "name": job.name,
        "queue": job.queue,
        "job_id": job.ipp_job_id,
        "pages": analysis.and_then(|a| a.pages),
        "pages_exact": analysis.is_some_and(|a| a.pages_exact),
        "copies": settings.copies,
        "color": color,
        "sides": settings.sides,
        "size": job.document.as_ref().map_or(0, |d| d.size),
        "submitted": rfc3339(job.created_ms),
        "site": job.origin.as_ref().map_or(site, |o| o.site.as_str()),
        "available": true,
        "state": api_state(job.state),
        "message": job.state_message,
        "reprint_until": job.kept_until_ms.filter(|_| job.state == JobState::Completed).map(rfc3339),
    })
}

/// What a release decided, for its audit record.
pub(super) fn audit_detail(decision: &Decision) -> String {
    format!(
        "copies={}; mono={}; sides={}",
        decision.copies,
        decision.mono,
        decision.sides.as_deref().unwrap_or("as submitted")
    )
}

/// The job states as the API names them.
pub(super) fn api_state(state: JobState) -> &'static str {
    match state {
        JobState::PendingHeld => "held",
        JobState::Pending => "waiting",
        JobState::Processing | JobState::ProcessingStopped => "printing",
        JobState::Completed => "printed",
        JobState::Canceled => "deleted",
        JobState::Aborted => "failed",
    }
}

/// A job's place in a release: held again means the printer could not
/// take it (its message says why).
pub(super) fn progress_state(state: JobState) -> &'static str {
    match state {
        JobState::PendingHeld => "returned",
        other => api_state(other),
    }
}

/// Whether a job in `state` is done as far as its release is concerned.
pub(super) fn progress_done(state: JobState) -> bool {
    state.is_terminal() || state == JobState::PendingHeld
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// One release, for progress queries.
#[derive(Debug, Clone)]
pub(super) struct Release {
    /// Who released.
    pub(super) user: String,
    /// Where.
    pub(super) device: String,
    /// The jobs it queued, in print order.
    pub(super) jobs: Vec<JobUuid>,
    created_ms: i64,
}

/// Recent releases by id.
#[derive(Debug, Default)]
pub(super) struct Releases {
    by_id: HashMap<String, Release>,
}

impl Releases {
    /// Remembers a release; returns its id.
    pub(super) fn add(&mut self, user: String, device: String, jobs: Vec<JobUuid>) -> String {
        let now = now_ms();
        if self.by_id.len() >= MAX_RELEASES {
            self.by_id
                .retain(|_, r| now - r.created_ms < RELEASE_TTL_MS);
            if self.by_id.len() >= MAX_RELEASES
                && let Some(oldest) = self
                    .by_id
                    .iter()
                    .min_by_key(|(_, r)| r.created_ms)
                    .map(|(k, _)| k.clone())
            {
                self.by_id.remove(&oldest);
            }
        }
        let id = JobUuid::new().to_string();
        self.by_id.insert(
            id.clone(),
            Release {
                user,
                device,
                jobs,
                created_ms: now,
            },
        );
        id
    }

    /// A release of `user`'s, if it is still remembered.
    pub(super) fn get(&self, id: &str, user: &str) -> Option<Release> {
        self.by_id
            .get(id)
            .filter(|r| r.user == user && now_ms() - r.created_ms < RELEASE_TTL_MS)
            .cloned()
    }
}

/// The release use case: a session's user releases jobs at its printer.
impl ApiService {
    pub(super) async fn release(
        &self,
        session: &Session,
        body: &[u8],
    ) -> Result<Response, ApiError> {
        let (chosen, overrides) = parse_request(body)?;
        let (candidates, remote_trouble) = self.candidates(session, chosen).await?;

        // One release at a time per user, so two terminals cannot both
        // spend the last pages of a quota.
        let user_lock = self.release_lock(&session.user)?;
        let _turn = user_lock.lock().await;
        // One policy decides the whole release, even if a new one arrives.
        let policy = self.policy.current();
        let mut used = match policy.rules.quota {
            Some(quota) => self.quota_used(&session.user, quota).await?,
            None => 0,
        };
        let label = self.device_label(&session.device);
        let mut outcomes: Vec<Option<serde_json::Value>> = vec![None; candidates.len()];
        let mut queued = Vec::new();
        // Jobs from other sites first: each is claimed at its origin and
        // waits here for its document, so a later job of this user that
        // is here already cannot pass it at the printer.
        for (slot, (id, candidate)) in outcomes.iter_mut().zip(&candidates) {
            if let Candidate::Remote(job) = candidate {
                let (said, uuid) = self
                    .release_remote(session, job, &overrides, &policy, &mut used, &label)
                    .await;
                *slot = Some(said);
                queued.extend(uuid);
            } else if let Candidate::Missing = candidate {
                *slot = Some(outcome(
                    id,
                    None,
                    "not_found",
                    "No such job among yours.",
                    &[],
                ));
            }
        }
        // Decided one by one (each decision sees the quota the ones before
        // it spend), then written together, so one group commit records the
        // whole release. A write the store refuses leaves its job held; the
        // pages counted for it only made the decisions after it stricter.
        let mut writes = Vec::new();
        for ((slot, outcome_slot), (id, candidate)) in
            outcomes.iter_mut().enumerate().zip(&candidates)
        {
            let Candidate::Local(job) = candidate else {
                continue;
            };
            if !self.pull_queues.contains(&job.queue) {
                // A direct queue's job belongs to that queue's printer.
                let why = format!(
                    "This job was sent to queue {}, which prints on its own printer; it is not \
                     released here.",
                    job.queue
                );
                *outcome_slot = Some(outcome(id, Some(&job.name), "not_held", &why, &[]));
                continue;
            }
            let decision = match rules::decide(
                &policy.rules,
                &session.groups,
                &facts(job),
                &overrides,
                used,
            ) {
                Ok(d) => d,
                Err(refusal) => {
                    *outcome_slot = Some(refused(id, Some(&job.name), &refusal));
                    continue;
                }
            };
            let notes = decision.notes.clone();
            let pages = u64::from(decision.impressions.unwrap_or(0));
            let detail = audit_detail(&decision);
            let write = if job.is_reprintable(now_ms()) {
                let copy = reprint_of(
                    job,
                    session.user.clone(),
                    session.device.clone(),
                    label.clone(),
                    decision,
                );
                let Ok(copy) = copy else {
                    let why = "This job cannot be printed again.";
                    *outcome_slot = Some(outcome(id, Some(&job.name), "not_held", why, &[]));
                    continue;
                };
                let event = AuditEvent::now(
                    "reprint",
                    Some(&session.user),
                    Some(&session.device),
                    format!("{detail}; of job {}", job.uuid),
                );
                Either::Left(async move {
                    let reprint = self.store.insert_reprint(job, copy, event).await?;
                    Ok((reprint.uuid, "Printing it again."))
                })
            } else {
                let transition = release_transition(
                    session.user.clone(),
                    session.device.clone(),
                    label.clone(),
                    decision,
                );
                let audit = AuditEvent::now(
                    "release",
                    Some(&session.user),
                    Some(&session.device),
                    detail,
                )
                .for_job(job.uuid);
                Either::Right(async move {
                    let released = self
                        .store
                        .modify_audited(job.uuid, transition, audit)
                        .await?;
                    Ok((released.uuid, "Sent to the printer."))
                })
            };
            used += pages;
            writes.push(async move { (slot, job, notes, write.await) });
        }
        // A store failure leaves its jobs held, but what was written still
        // goes to the printer, and the answer says which jobs stay.
        let mut failure = None;
        for (slot, job, notes, written) in futures_util::future::join_all(writes).await {
            let id = &candidates[slot].0;
            outcomes[slot] = Some(match written {
                Ok((uuid, said)) => {
                    queued.push(uuid);
                    outcome(id, Some(&job.name), "queued", said, &notes)
                }
                Err(StoreError::NotPossible(reason)) => {
                    outcome(id, Some(&job.name), "not_held", &reason.0, &[])
                }
                Err(e) => {
                    failure = Some(e);
                    not_recorded(id, Some(&job.name))
                }
            });
        }
        if !queued.is_empty() {
            self.metrics
                .jobs_released
                .get_or_create(&PrinterLabels {
                    printer: session.device.clone(),
                })
                .inc_by(queued.len() as u64);
            self.wake.wake(&session.device);
            tracing::info!(user = %session.user, device = %session.device, jobs = queued.len(), "release");
        }
        // Nothing done: the error says why. Some done: the answer lists
        // what was queued and what was not, as it happened.
        if let Some(e) = failure
            && queued.is_empty()
        {
            return Err(e.into());
        }
        let release_id = self.releases.lock().map_err(|_| poisoned())?.add(
            session.user.clone(),
            session.device.clone(),
            queued,
        );
        Ok(json(
            StatusCode::ACCEPTED,
            &serde_json::json!({
                "release": release_id,
                "device": session.device,
                "jobs": outcomes.into_iter().flatten().collect::<Vec<_>>(),
                "remote": remote_trouble.map(|why| serde_json::json!({
                    "available": false,
                    "reason": why,
                })),
            }),
        ))
    }

    pub(super) async fn release_status(
        &self,
        headers: &HeaderMap,
        id: &str,
    ) -> Result<Response, ApiError> {
        let (_, session) = self.session(headers)?;
        let release = self
            .releases
            .lock()
            .map_err(|_| poisoned())?
            .get(id, &session.user)
            .ok_or_else(|| ApiError::not_found("No such release (they are kept for an hour)."))?;
        let mut jobs = Vec::with_capacity(release.jobs.len());
        let mut done = true;
        let mut printed = 0;
        for uuid in &release.jobs {
            let Some(job) = self.store.job(*uuid).await? else {
                continue;
            };
            done &= progress_done(job.state);
            printed += usize::from(job.state == JobState::Completed);
            jobs.push(serde_json::json!({
                "id": job.uuid.to_string(),
                "name": job.name,
                "state": progress_state(job.state),
                "message": job.state_message,
            }));
        }
        Ok(json(
            StatusCode::OK,
            &serde_json::json!({
                "release": id,
                "device": release.device,
                "done": done,
                "printed": printed,
                "total": jobs.len(),
                "jobs": jobs,
            }),
        ))
    }

    /// Pages counted against `user`'s quota: printed this period, plus
    /// released jobs still on their way to a printer.
    async fn quota_used(&self, user: &str, quota: rules::Quota) -> Result<u64, ApiError> {
        let printed = self
            .store
            .pages_printed_since(user.to_owned(), quota.period.start_ms(now_ms()))
            .await?;
        let in_flight: u64 = self
            .store
            .list(JobQuery {
                queue: None,
                states: vec![JobState::Pending, JobState::Processing],
                owner: Some(user.to_owned()),
                limit: MAX_JOBS_LISTED,
            })
            .await?
            .iter()
            .filter(|j| self.pull_queues.contains(&j.queue))
            .map(|j| {
                let facts = facts(j);
                u64::from(facts.pages.unwrap_or(0)) * u64::from(facts.copies)
            })
            .sum();
        Ok(printed + in_flight)
    }

    /// The lock that serialises `user`'s releases.
    fn release_lock(&self, user: &str) -> Result<Arc<tokio::sync::Mutex<()>>, ApiError> {
        let mut locks = self.release_locks.lock().map_err(|_| poisoned())?;
        if locks.len() > 1000 {
            // Forget the locks nobody holds or waits for.
            locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        }
        Ok(locks.entry(user.to_owned()).or_default().clone())
    }
}

pub(super) fn outcome(
    id: &str,
    name: Option<&str>,
    outcome: &str,
    message: &str,
    notes: &[rules::Note],
) -> serde_json::Value {
    let words: Vec<String> = notes.iter().map(ToString::to_string).collect();
    serde_json::json!({
        "id": id,
        "name": name,
        "outcome": outcome,
        "message": message,
        "notes": words,
        "note_codes": notes,
    })
}

/// A job the rules refuse: the reason in words and as data (`reason`).
pub(super) fn refused(id: &str, name: Option<&str>, refusal: &rules::Refusal) -> serde_json::Value {
    let mut answer = outcome(id, name, "refused", &refusal.to_string(), &[]);
    answer["reason"] = serde_json::to_value(refusal).unwrap_or_default();
    answer
}

/// A job the release could not record (the store failed): it stays held.
fn not_recorded(id: &str, name: Option<&str>) -> serde_json::Value {
    outcome(
        id,
        name,
        "not_recorded",
        "The appliance could not record this release (its disk may be full); the job stays \
         held. Try again later.",
        &[],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked() {
        let (chosen, o) =
            parse_request(br#"{"jobs": "all", "color": "mono", "copies": 2}"#).unwrap();
        assert_eq!(chosen, Chosen::All);
        assert!(o.mono && o.copies == Some(2));
        let (chosen, _) = parse_request(br#"{"jobs": ["a", "b"]}"#).unwrap();
        assert_eq!(chosen, Chosen::Ids(vec!["a".into(), "b".into()]));
        for bad in [
            &br#"{"jobs": "some"}"#[..],
            br#"{"jobs": []}"#,
            br#"{"jobs": "all", "copies": 0}"#,
            br#"{"jobs": "all", "color": "color"}"#,
            br#"{"jobs": "all", "sides": "three-sided"}"#,
            br#"{"jobs": "all", "staple": true}"#,
            br#"{"copies": 1}"#,
            b"not json",
        ] {
            let e = parse_request(bad).unwrap_err();
            assert_eq!(e.code, "bad_request", "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn a_release_changes_only_a_held_job_of_its_owner() {
        let decision = Decision {
            copies: 2,
            mono: true,
            sides: Some("two-sided-long-edge".into()),
            impressions: Some(6),
            notes: vec![],
        };
        let change = |user: &str| {
            release_transition(
                user.into(),
                "lobby".into(),
                "Lobby MFP".into(),
                decision.clone(),
            )
        };
        let mut job = JobRecord::sample();
        assert!(job.apply(&change("bob"), 0).is_err());
        job.apply(&change("alice"), 0).unwrap();
        assert_eq!(job.state, JobState::Pending);
        assert_eq!(job.printer.as_deref(), Some("lobby"));
        let s = stored_template::settings(&job.template);
        assert_eq!(
            (s.copies, s.color_mode.as_deref(), s.sides.as_str()),
            (2, Some("monochrome"), "two-sided-long-edge")
        );
        // Released already: a second release of the same job is refused.
        assert!(job.apply(&change("alice"), 0).is_err());
    }

    fn claimed(template: &str) -> ClaimedJob {
        ClaimedJob {
            uuid: "origin-uuid".into(),
            owner: "alice".into(),
            name: "report.pdf".into(),
            queue: "secure".into(),
            format: "application/pdf".into(),
            document_name: None,
            template: template.into(),
            pages: Some(3),
            pages_exact: true,
            color: "monochrome".into(),
            submitted_ms: 1_000,
            until_ms: 9_999_999_999_999,
            manifest: sync_protocol::transfer::ManifestBuilder::of_reader(1024, &b"doc"[..])
                .unwrap(),
        }
    }

    #[test]
    fn a_job_from_another_site_waits_released_for_its_document() {
        let decision = Decision {
            copies: 1,
            mono: false,
            sides: None,
            impressions: Some(3),
            notes: vec![],
        };
        let job = fetched_job(
            &claimed(""),
            "branch-1",
            "c1".into(),
            "alice".into(),
            "lobby".into(),
            "Lobby".into(),
            decision.clone(),
        )
        .unwrap();
        assert_eq!(job.state, JobState::Pending);
        assert_eq!(job.printer.as_deref(), Some("lobby"));
        assert!(
            !job.documents_complete,
            "the printer waits for the document"
        );
        assert_eq!(job.created_ms, 1_000, "submission time at its origin");
        let origin = job.origin.as_ref().unwrap();
        assert_eq!(
            (origin.site.as_str(), origin.claim.as_str()),
            ("branch-1", "c1")
        );
        assert!(origin.fetching.is_some());
        assert_eq!(job.document.as_ref().unwrap().analysis.pages, Some(3));
        // Another user's job is not theirs to release; damaged settings are refused.
        let bob = fetched_job(
            &claimed(""),
            "branch-1",
            "c2".into(),
            "bob".into(),
            "lobby".into(),
            "Lobby".into(),
            decision.clone(),
        );
        assert!(bob.is_err());
        assert!(held_copy_of(&claimed("zz"), "branch-1", "c3".into()).is_err());
    }
}
