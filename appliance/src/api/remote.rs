//! Jobs held at other sites of the fleet, in a release: which jobs a
//! release covers (this site's and, from central's index, the user's jobs
//! elsewhere), and releasing one of the others: claimed at its origin,
//! decided by the rules like any job, kept here while its document comes
//! (`crate::roaming`).

use std::time::{Duration, Instant};

use sync_protocol::roaming::{ClaimOutcome, RemoteJob};

use super::error::ApiError;
use super::release::{Chosen, audit_detail, facts, fetched_job, held_copy_of, outcome, refused};
use super::sessions::Session;
use super::{ApiService, MAX_JOBS_LISTED};
use crate::job::{JobRecord, JobState, JobUuid, Transition, now_ms};
use crate::policy::Policy;
use crate::rules::{self, Overrides};
use crate::store::{AuditEvent, JobQuery};

/// How long a listing of a user's jobs at other sites stands in for
/// asking central again when they release one.
const LISTED_FOR: Duration = Duration::from_secs(60);
/// Users whose listing is kept at once.
const MAX_LISTED_USERS: usize = 1000;

/// One job a release asks for.
pub(super) enum Candidate {
    /// Held here.
    Local(Box<JobRecord>),
    /// Held at another site.
    Remote(RemoteJob),
    /// Neither here nor, as far as central knows, anywhere else.
    Missing,
}

impl ApiService {
    /// The user's jobs at other sites, or why they cannot be known now
    /// (`None` on a standalone site).
    pub(super) async fn remote_jobs(&self, user: &str) -> Option<Result<Vec<RemoteJob>, String>> {
        let roaming = self.roaming.as_ref()?;
        let found = roaming.remote_jobs(user).await.map_err(|e| e.to_string());
        if let (Ok(jobs), Ok(mut listed)) = (&found, self.remote_listed.lock()) {
            if listed.len() >= MAX_LISTED_USERS {
                listed.retain(|_, (at, _)| at.elapsed() < LISTED_FOR);
                if listed.len() >= MAX_LISTED_USERS {
                    listed.clear();
                }
            }
            listed.insert(user.to_owned(), (Instant::now(), jobs.clone()));
        }
        Some(found)
    }

    /// Job `id` of `user`'s at another site, as central listed it within
    /// [`LISTED_FOR`]: a terminal lists before it releases, so the release
    /// need not ask central again (the claim at the origin decides anyway).
    fn recently_listed(&self, user: &str, id: &str) -> Option<RemoteJob> {
        let listed = self.remote_listed.lock().ok()?;
        let (at, jobs) = listed.get(user)?;
        if at.elapsed() >= LISTED_FOR {
            return None;
        }
        jobs.iter().find(|j| j.uuid == id).cloned()
    }

    /// The jobs a release covers, each with the id it was asked by, in
    /// the order asked ("all": submission order across sites); and why
    /// jobs at other sites are left out, when they are.
    pub(super) async fn candidates(
        &self,
        session: &Session,
        chosen: Chosen,
    ) -> Result<(Vec<(String, Candidate)>, Option<String>), ApiError> {
        let mut remote: Option<Result<Vec<RemoteJob>, String>> = None;
        let mut found = Vec::new();
        match chosen {
            Chosen::All => {
                let local = self
                    .store
                    .list(JobQuery {
                        queue: None,
                        states: vec![JobState::PendingHeld],
                        owner: Some(session.user.clone()),
                        limit: MAX_JOBS_LISTED,
                    })
                    .await?;
                for job in local {
                    if job.documents_complete && self.pull_queues.contains(&job.queue) {
                        found.push((
                            job.created_ms,
                            job.uuid.to_string(),
                            Candidate::Local(Box::new(job)),
                        ));
                    }
                }
                remote = self.remote_jobs(&session.user).await;
                if let Some(Ok(jobs)) = &remote {
                    for job in jobs.iter().filter(|j| j.state == "held") {
                        let key = (job.submitted_ms, job.uuid.clone());
                        found.push((key.0, key.1, Candidate::Remote(job.clone())));
                    }
                }
                found.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
            }
            Chosen::Ids(ids) => {
                for id in ids {
                    let here = match JobUuid::parse(&id) {
                        Some(uuid) => self.store.job(uuid).await?,
                        None => None,
                    };
                    let candidate = match here.filter(|j| j.is_owned_by(&session.user)) {
                        Some(job) => Candidate::Local(Box::new(job)),
                        None if let Some(job) = self.recently_listed(&session.user, &id) => {
                            Candidate::Remote(job)
                        }
                        None => {
                            if remote.is_none() {
                                remote = self.remote_jobs(&session.user).await;
                            }
                            match &remote {
                                Some(Ok(jobs)) => jobs
                                    .iter()
                                    .find(|j| j.uuid == id)
                                    .map_or(Candidate::Missing, |j| Candidate::Remote(j.clone())),
                                _ => Candidate::Missing,
                            }
                        }
                    };
                    found.push((0, id, candidate));
                }
            }
        }
        let trouble = match remote {
            Some(Err(why)) => Some(why),
            _ => None,
        };
        Ok((
            found.into_iter().map(|(_, id, c)| (id, c)).collect(),
            trouble,
        ))
    }

    /// Releases `job`, held at another site, at the session's printer:
    /// the outcome to answer, and the job this site now keeps for it.
    pub(super) async fn release_remote(
        &self,
        session: &Session,
        job: &RemoteJob,
        overrides: &Overrides,
        policy: &Policy,
        used: &mut u64,
        label: &str,
    ) -> (serde_json::Value, Option<JobUuid>) {
        let id = job.uuid.as_str();
        let name = Some(job.name.as_str());
        let unavailable = |why: &str| {
            let message = format!("Not available now: {why}. Nothing was printed.");
            outcome(id, name, "unavailable", &message, &[])
        };
        let Some(roaming) = &self.roaming else {
            return (unavailable("this site is not part of a fleet"), None);
        };
        if !job.available {
            return (
                unavailable(
                    job.reason
                        .as_deref()
                        .unwrap_or("its site cannot be reached"),
                ),
                None,
            );
        }
        let (result, claim) = match roaming.claim(&job.site, id, &session.user).await {
            Ok(answer) => answer,
            Err(e) => return (unavailable(&e.to_string()), None),
        };
        let elsewhere = |what: &str| {
            let site = result.site.clone().unwrap_or_else(|| "another site".into());
            let mut said = outcome(
                id,
                name,
                "printed_elsewhere",
                &format!("{what} at site {site}."),
                &[],
            );
            said["site"] = serde_json::Value::String(site);
            said
        };
        let claimed = match (result.outcome, &result.job) {
            (ClaimOutcome::Claimed, Some(claimed)) => claimed,
            (ClaimOutcome::PrintedElsewhere, _) => return (elsewhere("Already printed"), None),
            (ClaimOutcome::ClaimedElsewhere, _) => return (elsewhere("Being printed"), None),
            (ClaimOutcome::NotFound, _) => {
                return (
                    outcome(id, name, "not_found", "No such job among yours.", &[]),
                    None,
                );
            }
            (ClaimOutcome::NotHeld, _) => {
                return (outcome(id, name, "not_held", &result.message, &[]), None);
            }
            _ => return (unavailable(&result.message), None),
        };
        // Granted: from here on the claim must end one way or the other.
        let copy = match held_copy_of(claimed, &job.site, claim.clone()) {
            Ok(copy) => copy,
            Err(unusable) => {
                roaming.give_back(&job.site, id, &claim).await;
                return (outcome(id, name, "refused", &unusable.0, &[]), None);
            }
        };
        let decision = rules::decide(
            &policy.rules,
            &session.groups,
            &facts(&copy),
            overrides,
            *used,
        );
        let decision = match decision {
            Ok(decision) => decision,
            Err(refusal) => {
                roaming.give_back(&job.site, id, &claim).await;
                return (refused(id, name, &refusal), None);
            }
        };
        let (notes, impressions) = (decision.notes.clone(), decision.impressions);
        let detail = format!(
            "{}; from site {} job {id}",
            audit_detail(&decision),
            job.site
        );
        let local = fetched_job(
            claimed,
            &job.site,
            claim.clone(),
            session.user.clone(),
            session.device.clone(),
            label.to_owned(),
            decision,
        );
        let audit = AuditEvent::now(
            "release",
            Some(&session.user),
            Some(&session.device),
            detail,
        );
        // Read ahead already (at login): it prints from here at once.
        let prefetched = roaming.take_prefetched(id, &claimed.manifest.sha256);
        let ready = prefetched.is_some();
        let inserted = match (local, prefetched) {
            (Ok(mut local), Some(document)) => {
                local.uuid = document.uuid;
                let arrived = Transition::Fetched {
                    spool_size: document.spool_size,
                };
                match local.apply(&arrived, now_ms()) {
                    Ok(()) => self
                        .store
                        .insert_audited(local, Some(document), audit)
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.0),
                }
            }
            (Ok(local), None) => self
                .store
                .insert_audited(local, None, audit)
                .await
                .map_err(|e| e.to_string()),
            (Err(e), _) => Err(e.0),
        };
        match inserted {
            Ok(local) => {
                *used += u64::from(impressions.unwrap_or(0));
                let uuid = local.uuid;
                let said = if ready {
                    "Sent to the printer.".to_owned()
                } else {
                    roaming.spawn_fetch(local);
                    format!("Coming from site {}; it prints when it arrives.", job.site)
                };
                (outcome(id, name, "queued", &said, &notes), Some(uuid))
            }
            Err(why) => {
                roaming.give_back(&job.site, id, &claim).await;
                (
                    unavailable(&format!("this site could not record it ({why})")),
                    None,
                )
            }
        }
    }
}
