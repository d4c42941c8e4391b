//! The release API: what printer panels and terminals use to log a user in
//! at a printer, list their jobs, release or delete them, and follow a
//! release. JSON over HTTP/1.1 (HTTPS when a certificate is configured),
//! versioned under `/api/v1`, described by the OpenAPI document it serves
//! at `/api/v1/openapi.json`.
//!
//! Sessions are bound to the printer they were made at: a release prints
//! there and nowhere else. A user sees and touches only their own jobs;
//! another user's job is "not found", never "forbidden", so ids reveal
//! nothing. Every login, logout, release and delete goes to the audit log.

mod error;
mod lockout;
mod login;
mod release;
pub mod routes;
mod sessions;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::config::{Config, PrinterConfig, QueueKind};
use crate::http_server::{self, Response};
use crate::job::{JobState, JobUuid, Transition, now_ms};
use crate::metrics::{ApiLabels, LoginLabels, Metrics, PrinterLabels};
use crate::printer::OutputWake;
use crate::rules::{self, Rules};
use crate::store::{AuditEvent, JobQuery, JobStore, StoreError};
pub use error::ApiError;
use lockout::{Attempt, Locked, Lockout, Refusal, Subject};
use login::{Checked, Verifier};
use release::{Chosen, Releases};
use routes::{NoRoute, Route};
use sessions::{Session, Sessions};

/// The OpenAPI 3.1 description of this API, served as is.
pub const OPENAPI: &str = include_str!("openapi.json");
/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024;
/// Longest time to receive a request body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Most jobs listed for one user.
const MAX_JOBS_LISTED: u32 = 500;

/// Everything the API's handlers share.
pub struct ApiService {
    store: JobStore,
    site: String,
    printers: HashMap<String, PrinterConfig>,
    /// Queues whose jobs are released at a printer.
    pull_queues: Vec<String>,
    rules: Rules,
    wake: OutputWake,
    sessions: Mutex<Sessions>,
    lockout: Mutex<Lockout>,
    releases: Mutex<Releases>,
    release_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    verifier: Verifier,
    metrics: Arc<Metrics>,
}

impl ApiService {
    /// The API of an appliance configured by `config`.
    pub fn new(
        config: &Config,
        store: JobStore,
        wake: OutputWake,
        metrics: Arc<Metrics>,
    ) -> ApiService {
        let api = &config.api;
        ApiService {
            verifier: Verifier::new(store.clone(), config.users.pin_only_login),
            store,
            site: config.site.clone(),
            printers: config
                .printers
                .iter()
                .map(|p| (p.id.clone(), p.clone()))
                .collect(),
            pull_queues: config
                .queues
                .iter()
                .filter(|q| q.kind == QueueKind::Pull)
                .map(|q| q.name.clone())
                .collect(),
            rules: config.rules.clone(),
            wake,
            sessions: Mutex::new(Sessions::new(api.session_idle_secs)),
            lockout: Mutex::new(Lockout::new(
                api.lockout_after,
                api.lockout_secs,
                api.lockout_max_secs,
            )),
            releases: Mutex::new(Releases::default()),
            release_locks: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// Answers one request; never fails (errors are JSON answers).
    pub async fn handle(&self, req: http::Request<Incoming>) -> Response {
        let route = routes::route(req.method(), req.uri().path());
        let name = route.as_ref().map_or("unknown", Route::name);
        let response = self.answer(route, req).await;
        self.metrics
            .api_requests
            .get_or_create(&ApiLabels {
                route: name,
                status: response.status().as_u16(),
            })
            .inc();
        response
    }

    async fn answer(
        &self,
        route: Result<Route, NoRoute>,
        req: http::Request<Incoming>,
    ) -> Response {
        let route = match route {
            Ok(route) => route,
            Err(NoRoute::NotFound) => {
                return ApiError::not_found(format!(
                    "No such API path: {}. The API is described at /api/v1/openapi.json.",
                    req.uri().path()
                ))
                .response();
            }
            Err(NoRoute::MethodNotAllowed(allowed)) => {
                let mut r = ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    format!("{} takes {allowed} only.", req.uri().path()),
                )
                .response();
                r.headers_mut()
                    .insert(header::ALLOW, header::HeaderValue::from_static(allowed));
                return r;
            }
        };
        let outcome = match route {
            Route::OpenApi => Ok(json_text(StatusCode::OK, OPENAPI.to_owned())),
            Route::Devices => Ok(self.devices()),
            Route::Login => match read_json(req).await {
                Ok(body) => self.login(&body).await,
                Err(e) => Err(e),
            },
            Route::Logout => self.logout(req.headers()).await,
            Route::Jobs => self.jobs(req.headers()).await,
            Route::Release => match self.session(req.headers()) {
                Ok((_, session)) => match read_json(req).await {
                    Ok(body) => self.release(&session, &body).await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            },
            Route::DeleteJob(id) => self.delete(req.headers(), &id).await,
            Route::ReleaseStatus(id) => self.release_status(req.headers(), &id).await,
        };
        outcome.unwrap_or_else(|e| e.response())
    }

    fn devices(&self) -> Response {
        let mut devices: Vec<_> = self.printers.values().collect();
        devices.sort_by(|a, b| a.id.cmp(&b.id));
        let list: Vec<_> = devices
            .iter()
            .map(|p| {
                serde_json::json!({
                    "id": p.id,
                    "name": p.name.as_deref().unwrap_or(&p.id),
                    "location": p.location,
                })
            })
            .collect();
        json(StatusCode::OK, &serde_json::json!({ "devices": list }))
    }

    async fn login(&self, body: &[u8]) -> Result<Response, ApiError> {
        let body = login::parse_login(body)?;
        let Some(printer) = self.printers.get(&body.device) else {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_device",
                format!(
                    "No printer {:?} at this site; GET /api/v1/devices lists them.",
                    body.device
                ),
            ));
        };
        let device = printer.id.clone();
        let user = body.user.as_deref();
        let secret = body.secret;
        let method = body.method.keyword();

        let attempt = match self.with_lockout(|l| l.begin(user, &device, now_ms())) {
            Ok(attempt) => ReservedAttempt {
                lockout: &self.lockout,
                attempt: Some(attempt),
            },
            Err(refusal) => {
                self.count_login(method, "locked");
                let why = match refusal {
                    Refusal::Locked(_) => "locked out",
                    Refusal::Busy(_) => "too many attempts being checked",
                };
                self.audit(AuditEvent::now(
                    "login-refused",
                    user,
                    Some(&device),
                    format!("method={method}; {why}"),
                ))
                .await?;
                return Err(refusal_error(refusal));
            }
        };

        let checked = match self.verifier.check(body.method, user, &secret).await {
            Ok(checked) => checked,
            Err(e) => {
                attempt.withdrawn();
                return Err(e.into());
            }
        };
        match checked {
            Checked::Unusable(message) => {
                attempt.withdrawn();
                Err(ApiError::bad_request(message))
            }
            Checked::Invalid(reason) => {
                let lock = attempt.failed(now_ms());
                self.count_login(method, if lock.is_some() { "locked" } else { "invalid" });
                let detail = match lock {
                    Some(l) => format!(
                        "method={method}; {reason}; {} locked for {} s",
                        subject_name(l.subject),
                        l.retry_after_secs
                    ),
                    None => format!("method={method}; {reason}"),
                };
                self.audit(AuditEvent::now("login-failed", user, Some(&device), detail))
                    .await?;
                match lock {
                    Some(locked) => Err(refusal_error(Refusal::Locked(locked))),
                    None => Err(ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "invalid_credentials",
                        "Wrong PIN, card or password. Try again.",
                    )),
                }
            }
            Checked::Valid(found) => {
                // The lock that counts is the one of the user the secret
                // belongs to, whatever the request named.
                if let Err(locked) = attempt.succeeded(&found.id, now_ms()) {
                    self.count_login(method, "locked");
                    self.audit(AuditEvent::now(
                        "login-refused",
                        Some(&found.id),
                        Some(&device),
                        format!("method={method}; locked out"),
                    ))
                    .await?;
                    return Err(refusal_error(Refusal::Locked(locked)));
                }
                self.count_login(method, "ok");
                let (user_id, display_name) = (found.id.clone(), found.display_name.clone());
                let session = Session::new(found, device.clone(), now_ms());
                let (token, idle) = {
                    let mut sessions = self.lock_sessions()?;
                    let token = sessions.create(session).map_err(|e| {
                        ApiError::new(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "internal",
                            format!("no randomness for a session token: {e}"),
                        )
                    })?;
                    (token, sessions.idle_secs())
                };
                self.audit(AuditEvent::now(
                    "login",
                    Some(&user_id),
                    Some(&device),
                    format!("method={method}"),
                ))
                .await?;
                tracing::info!(user = %user_id, %device, method, "login");
                Ok(json(
                    StatusCode::CREATED,
                    &serde_json::json!({
                        "token": token,
                        "user": { "id": user_id, "display_name": display_name },
                        "device": device,
                        "idle_timeout_secs": idle,
                    }),
                ))
            }
        }
    }

    async fn logout(&self, headers: &HeaderMap) -> Result<Response, ApiError> {
        let (token, session) = self.session(headers)?;
        self.lock_sessions()?.remove(&token);
        self.audit(AuditEvent::now(
            "logout",
            Some(&session.user),
            Some(&session.device),
            String::new(),
        ))
        .await?;
        Ok(no_content())
    }

    async fn jobs(&self, headers: &HeaderMap) -> Result<Response, ApiError> {
        let (_, session) = self.session(headers)?;
        let jobs = self
            .store
            .list(JobQuery {
                queue: None,
                states: vec![
                    JobState::PendingHeld,
                    JobState::Pending,
                    JobState::Processing,
                ],
                owner: Some(session.user.clone()),
                limit: MAX_JOBS_LISTED,
            })
            .await?;
        let printed = self
            .store
            .reprintable(session.user.clone(), now_ms())
            .await?;
        let list: Vec<_> = jobs
            .iter()
            .filter(|j| j.documents_complete)
            .chain(&printed)
            .map(|j| release::job_view(j, &self.site))
            .collect();
        Ok(json(StatusCode::OK, &serde_json::json!({ "jobs": list })))
    }

    async fn release(&self, session: &Session, body: &[u8]) -> Result<Response, ApiError> {
        let (chosen, overrides) = release::parse_request(body)?;
        let candidates = match chosen {
            Chosen::All => self
                .store
                .list(JobQuery {
                    queue: None,
                    states: vec![JobState::PendingHeld],
                    owner: Some(session.user.clone()),
                    limit: MAX_JOBS_LISTED,
                })
                .await?
                .into_iter()
                .filter(|j| j.documents_complete && self.pull_queues.contains(&j.queue))
                .map(|j| (j.uuid.to_string(), Some(j)))
                .collect::<Vec<_>>(),
            Chosen::Ids(ids) => {
                let mut found = Vec::with_capacity(ids.len());
                for id in ids {
                    let job = match JobUuid::parse(&id) {
                        Some(uuid) => self.store.job(uuid).await?,
                        None => None,
                    };
                    found.push((id, job.filter(|j| j.is_owned_by(&session.user))));
                }
                found
            }
        };

        // One release at a time per user, so two terminals cannot both
        // spend the last pages of a quota.
        let user_lock = self.release_lock(&session.user)?;
        let _turn = user_lock.lock().await;
        let mut used = match self.rules.quota {
            Some(quota) => self.quota_used(&session.user, quota).await?,
            None => 0,
        };
        let label = self.device_label(&session.device);
        let mut outcomes = Vec::with_capacity(candidates.len());
        let mut queued = Vec::new();
        // A store failure stops the release, but what it already queued
        // still goes to the printer, and the answer says which jobs stay.
        let mut failure = None;
        let mut candidates = candidates.into_iter();
        for (id, job) in candidates.by_ref() {
            let Some(job) = job else {
                outcomes.push(outcome(
                    &id,
                    None,
                    "not_found",
                    "No such job among yours.",
                    &[],
                ));
                continue;
            };
            if !self.pull_queues.contains(&job.queue) {
                // A direct queue's job belongs to that queue's printer.
                let why = format!(
                    "This job was sent to queue {}, which prints on its own printer; it is not \
                     released here.",
                    job.queue
                );
                outcomes.push(outcome(&id, Some(&job.name), "not_held", &why, &[]));
                continue;
            }
            let decision = match rules::decide(
                &self.rules,
                &session.groups,
                &release::facts(&job),
                &overrides,
                used,
            ) {
                Ok(d) => d,
                Err(refusal) => {
                    outcomes.push(outcome(&id, Some(&job.name), "refused", &refusal.0, &[]));
                    continue;
                }
            };
            let notes = decision.notes.clone();
            let impressions = decision.impressions;
            let detail = format!(
                "copies={}; mono={}; sides={}",
                decision.copies,
                decision.mono,
                decision.sides.as_deref().unwrap_or("as submitted")
            );
            if job.is_reprintable(now_ms()) {
                let copy = release::reprint_of(
                    &job,
                    session.user.clone(),
                    session.device.clone(),
                    label.clone(),
                    decision,
                );
                let Ok(copy) = copy else {
                    let why = "This job cannot be printed again.";
                    outcomes.push(outcome(&id, Some(&job.name), "not_held", why, &[]));
                    continue;
                };
                let event = AuditEvent::now(
                    "reprint",
                    Some(&session.user),
                    Some(&session.device),
                    format!("{detail}; of job {}", job.uuid),
                );
                match self.store.insert_reprint(&job, copy, event).await {
                    Ok(reprint) => {
                        used += u64::from(impressions.unwrap_or(0));
                        queued.push(reprint.uuid);
                        let said = "Printing it again.";
                        outcomes.push(outcome(&id, Some(&job.name), "queued", said, &notes));
                    }
                    Err(e) => {
                        failure = Some(e);
                        outcomes.push(not_recorded(&id, Some(&job.name)));
                        break;
                    }
                }
                continue;
            }
            let transition = release::release_transition(
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
            match self.store.modify_audited(job.uuid, transition, audit).await {
                Ok(_) => {
                    used += u64::from(impressions.unwrap_or(0));
                    queued.push(job.uuid);
                    outcomes.push(outcome(
                        &id,
                        Some(&job.name),
                        "queued",
                        "Sent to the printer.",
                        &notes,
                    ));
                }
                Err(StoreError::NotPossible(reason)) => {
                    outcomes.push(outcome(&id, Some(&job.name), "not_held", &reason.0, &[]));
                }
                Err(e) => {
                    failure = Some(e);
                    outcomes.push(not_recorded(&id, Some(&job.name)));
                    break;
                }
            }
        }
        if failure.is_some() {
            outcomes.extend(
                candidates
                    .map(|(id, job)| not_recorded(&id, job.as_ref().map(|j| j.name.as_str()))),
            );
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
                "jobs": outcomes,
            }),
        ))
    }

    async fn release_status(&self, headers: &HeaderMap, id: &str) -> Result<Response, ApiError> {
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
            done &= release::progress_done(job.state);
            printed += usize::from(job.state == JobState::Completed);
            jobs.push(serde_json::json!({
                "id": job.uuid.to_string(),
                "name": job.name,
                "state": release::progress_state(job.state),
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

    async fn delete(&self, headers: &HeaderMap, id: &str) -> Result<Response, ApiError> {
        let (_, session) = self.session(headers)?;
        let not_found = || ApiError::not_found("No such job among yours.");
        let uuid = JobUuid::parse(id).ok_or_else(not_found)?;
        let job = self
            .store
            .job(uuid)
            .await?
            .filter(|j| j.is_owned_by(&session.user))
            .ok_or_else(not_found)?;
        let label = self.device_label(&session.device);
        let user = session.user.clone();
        let audit = AuditEvent::now(
            "delete",
            Some(&session.user),
            Some(&session.device),
            String::new(),
        )
        .for_job(uuid);
        let deleted = self
            .store
            .modify_audited(
                uuid,
                Transition::Cancel {
                    message: format!("Deleted by {user} at {label}"),
                    owner: Some(user.clone()),
                },
                audit,
            )
            .await?;
        if let Some(printer) = job.printer.as_ref().or(deleted.printer.as_ref()) {
            self.wake.wake(printer);
        }
        Ok(no_content())
    }

    /// The live session of the request's bearer token.
    fn session(&self, headers: &HeaderMap) -> Result<(String, Session), ApiError> {
        let mut sessions = self.lock_sessions()?;
        let idle = sessions.idle_secs();
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| ApiError::unauthorized(idle))?;
        let session = sessions
            .touch(token, now_ms())
            .ok_or_else(|| ApiError::unauthorized(idle))?;
        Ok((token.to_owned(), session))
    }

    fn lock_sessions(&self) -> Result<std::sync::MutexGuard<'_, Sessions>, ApiError> {
        self.sessions.lock().map_err(|_| poisoned())
    }

    fn with_lockout<T>(&self, f: impl FnOnce(&mut Lockout) -> T) -> T {
        let mut guard = self
            .lockout
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
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
                let facts = release::facts(j);
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

    fn count_login(&self, method: &'static str, outcome: &'static str) {
        self.metrics
            .logins
            .get_or_create(&LoginLabels { method, outcome })
            .inc();
    }

    fn device_label(&self, id: &str) -> String {
        self.printers
            .get(id)
            .and_then(|p| p.name.clone())
            .unwrap_or_else(|| id.to_owned())
    }

    async fn audit(&self, event: AuditEvent) -> Result<(), ApiError> {
        self.store.audit(event).await.map_err(ApiError::from)
    }
}

fn outcome(
    id: &str,
    name: Option<&str>,
    outcome: &str,
    message: &str,
    notes: &[String],
) -> serde_json::Value {
    serde_json::json!({
        "id": id,
        "name": name,
        "outcome": outcome,
        "message": message,
        "notes": notes,
    })
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

fn subject_name(subject: Subject) -> &'static str {
    match subject {
        Subject::User => "user",
        Subject::Device => "device",
    }
}

fn refusal_error(refusal: Refusal) -> ApiError {
    let whom = |subject| match subject {
        Subject::User => "this account",
        Subject::Device => "this printer",
    };
    let (code, retry_after, message) = match refusal {
        Refusal::Locked(locked) => (
            "locked",
            locked.retry_after_secs,
            format!(
                "Too many wrong attempts: logins for {} are paused. Try again in {} s.",
                whom(locked.subject),
                locked.retry_after_secs
            ),
        ),
        Refusal::Busy(subject) => (
            "busy",
            1,
            format!(
                "Other logins for {} are being checked. Try again in a moment.",
                whom(subject)
            ),
        ),
    };
    ApiError {
        retry_after: Some(retry_after),
        ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message)
    }
}

/// A login attempt reserved in the lockout while its secret is checked.
/// Dropped unfinished (the client went away mid-check, or shutdown), it
/// is withdrawn: nobody learnt its verdict.
struct ReservedAttempt<'a> {
    lockout: &'a Mutex<Lockout>,
    attempt: Option<Attempt>,
}

impl ReservedAttempt<'_> {
    fn with<T>(&mut self, f: impl FnOnce(&mut Lockout, Attempt) -> T) -> Option<T> {
        let attempt = self.attempt.take()?;
        let mut lockout = self
            .lockout
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(f(&mut lockout, attempt))
    }

    fn failed(mut self, now_ms: i64) -> Option<Locked> {
        self.with(|l, a| l.failed(a, now_ms)).flatten()
    }

    fn succeeded(mut self, user: &str, now_ms: i64) -> Result<(), Locked> {
        self.with(|l, a| l.succeeded(a, user, now_ms))
            .unwrap_or(Ok(()))
    }

    fn withdrawn(mut self) {
        self.with(Lockout::withdrawn);
    }
}

impl Drop for ReservedAttempt<'_> {
    fn drop(&mut self) {
        self.with(Lockout::withdrawn);
    }
}

fn poisoned() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal state is unavailable; restart the appliance",
    )
}

/// A JSON request body the API takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestBody {
    /// `POST /api/v1/sessions`.
    Login,
    /// `POST /api/v1/jobs/release`.
    Release,
}

/// Parses `body` as the API parses that request's body, acting on nothing:
/// the decoding half of the handlers, for the fuzz targets.
pub fn parse_body(kind: RequestBody, body: &[u8]) -> Result<(), ApiError> {
    match kind {
        RequestBody::Login => login::parse_login(body).map(drop),
        RequestBody::Release => release::parse_request(body).map(drop),
    }
}

/// Reads a JSON request body: `Content-Type: application/json`, at most
/// [`MAX_BODY`] bytes, within [`BODY_TIMEOUT`].
async fn read_json(req: http::Request<Incoming>) -> Result<Bytes, ApiError> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Send the request body as Content-Type: application/json.",
        ));
    }
    let limited = Limited::new(req.into_body(), MAX_BODY);
    match tokio::time::timeout(BODY_TIMEOUT, limited.collect()).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            "The request body did not arrive in time.",
        )),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("Request bodies are limited to {MAX_BODY} bytes."),
        )),
        Ok(Err(e)) => Err(ApiError::bad_request(format!(
            "the request body could not be read: {e}"
        ))),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response {
    json_text(status, value.to_string())
}

fn json_text(status: StatusCode, body: String) -> Response {
    http::Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| http::Response::new(Full::new(Bytes::new())))
}

fn no_content() -> Response {
    http::Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(Full::new(Bytes::new()))
        .unwrap_or_else(|_| http::Response::new(Full::new(Bytes::new())))
}

/// Serves the API on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    service: Arc<ApiService>,
    tls: Option<TlsAcceptor>,
    max_connections: usize,
    shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    let handler = move |req, _conn: http_server::Conn| {
        let service = service.clone();
        async move { service.handle(req).await }
    };
    http_server::serve(listener, max_connections, tls, handler, shutdown, drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published document and the router agree: every documented
    /// operation is routed, and every route is documented.
    #[test]
    fn openapi_documents_exactly_the_routes() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));
        let mut documented = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                    documented.push((method.clone(), path.clone()));
                    let op = &item[method];
                    assert!(
                        op["operationId"].is_string(),
                        "{method} {path}: operationId"
                    );
                    assert!(
                        op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                        "{method} {path}: responses"
                    );
                }
            }
        }
        documented.sort();
        let mut routed: Vec<(String, String)> = routes::ROUTES
            .iter()
            .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
            .collect();
        routed.sort();
        assert_eq!(documented, routed);
    }
}
