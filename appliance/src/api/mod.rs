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
mod login;
mod release;
mod remote;
mod reply;
pub mod routes;
mod sessions;
mod web;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderMap, StatusCode, header};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::authn::lockout::Lockout;
use crate::authn::verifier::Verifier;
use crate::config::{Config, QueueKind};
use crate::http_server::{self, Response};
use crate::job::{JobRecord, JobState, JobUuid, Transition, now_ms};
use crate::metrics::{ApiLabels, LoginLabels, Metrics};
use crate::policy::PolicyView;
use crate::printer::OutputWake;
use crate::roaming::Roaming;
use crate::store::{AuditEvent, JobQuery, JobStore};
pub use error::ApiError;
use release::Releases;
use reply::{json, json_text, no_content, read_json};
use routes::{NoRoute, Route};
use sessions::{Session, Sessions};

/// The OpenAPI 3.1 description of this API, served as is.
pub const OPENAPI: &str = include_str!("openapi.json");
/// Most jobs listed for one user.
const MAX_JOBS_LISTED: u32 = 500;

/// Everything the API's handlers share.
pub struct ApiService {
    store: JobStore,
    site: String,
    /// Where users log in and release: every printer, and every pool
    /// (whose first free member prints), by id.
    printers: HashMap<String, Device>,
    /// Queues whose jobs are released at a printer.
    pull_queues: Vec<String>,
    /// The rules in force: read once per release, swapped while running.
    policy: PolicyView,
    wake: OutputWake,
    /// Jobs held at other sites of the fleet (none on a standalone site).
    roaming: Option<Roaming>,
    /// Jobs at other sites up to this size start moving here at login.
    prefetch_max_bytes: Option<u64>,
    /// Each user's jobs at other sites as central last listed them.
    remote_listed:
        Mutex<HashMap<String, (std::time::Instant, Vec<sync_protocol::roaming::RemoteJob>)>>,
    sessions: Mutex<Sessions>,
    lockout: Mutex<Lockout>,
    releases: Mutex<Releases>,
    release_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    verifier: Arc<Verifier>,
    metrics: Arc<Metrics>,
    /// The API speaks HTTPS: session cookies are `Secure`.
    secure: bool,
}

impl ApiService {
    /// The API of an appliance configured by `config`, deciding releases
    /// under the policy `policy` has in force at the time, checking secrets
    /// with `verifier`.
    pub fn new(
        config: &Config,
        store: JobStore,
        verifier: Arc<Verifier>,
        policy: PolicyView,
        wake: OutputWake,
        roaming: Option<Roaming>,
        metrics: Arc<Metrics>,
    ) -> ApiService {
        let api = &config.api;
        ApiService {
            verifier,
            store,
            site: config.site.clone(),
            printers: Device::all(config)
                .into_iter()
                .map(|d| (d.id.clone(), d))
                .collect(),
            pull_queues: config
                .queues
                .iter()
                .filter(|q| q.kind == QueueKind::Pull)
                .map(|q| q.name.clone())
                .collect(),
            policy,
            wake,
            roaming,
            prefetch_max_bytes: config
                .central
                .prefetch
                .then_some(config.central.prefetch_max_mib << 20),
            remote_listed: Mutex::new(HashMap::new()),
            sessions: Mutex::new(Sessions::new(api.session_idle_secs)),
            lockout: Mutex::new(Lockout::new(
                api.lockout_after,
                api.lockout_secs,
                api.lockout_max_secs,
            )),
            releases: Mutex::new(Releases::default()),
            release_locks: Mutex::new(HashMap::new()),
            metrics,
            secure: api.tls_certificate.is_some(),
        }
    }

    /// Brings the live sessions in line with the users in the store (after
    /// a new policy): a disabled or removed user's sessions end, the others
    /// take their new groups. Returns how many sessions ended.
    pub async fn follow_policy(&self) -> usize {
        let users = match self.sessions.lock() {
            Ok(sessions) => sessions.users(),
            Err(_) => return 0,
        };
        let mut ended = 0;
        for id in users {
            let now = match self.store.user(id.clone()).await {
                Ok(found) => found,
                // Unknown now: the next policy change tries again.
                Err(_) => continue,
            };
            if let Ok(mut sessions) = self.sessions.lock() {
                ended += sessions.follow_policy(&id, now.as_ref());
            }
        }
        ended
    }

    /// Answers one request; never fails (errors are JSON answers).
    pub async fn handle(&self, req: http::Request<Incoming>) -> Response {
        let path = req.uri().path();
        if web::is_web_path(path) && matches!(*req.method(), http::Method::GET | http::Method::HEAD)
        {
            return web::serve(path, req.headers());
        }
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
        // The session cookie goes with requests from this server's pages
        // only; one that changes something must say so in its Origin.
        let by_cookie = !req.headers().contains_key(header::AUTHORIZATION)
            && web::cookie::token(req.headers()).is_some();
        if by_cookie
            && !matches!(*req.method(), http::Method::GET | http::Method::HEAD)
            && !web::cookie::same_origin(req.headers())
        {
            return cross_origin().response();
        }
        let outcome = match route {
            Route::OpenApi => Ok(json_text(StatusCode::OK, OPENAPI.to_owned())),
            Route::Devices => Ok(self.devices()),
            Route::Login => {
                let same_origin = web::cookie::same_origin(req.headers());
                match read_json(req).await {
                    Ok(body) => self.login(&body, same_origin).await,
                    Err(e) => Err(e),
                }
            }
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
        let pin_only = self.verifier.pin_only();
        let mut devices: Vec<_> = self.printers.values().collect();
        devices.sort_by(|a, b| a.id.cmp(&b.id));
        let list: Vec<_> = devices
            .iter()
            .map(|p| {
                let mut device = serde_json::json!({
                    "id": p.id,
                    "name": p.name.as_deref().unwrap_or(&p.id),
                    "location": p.location,
                });
                if let Some(members) = &p.pool_members {
                    device["pool"] = serde_json::json!(members);
                }
                device
            })
            .collect();
        json(
            StatusCode::OK,
            &serde_json::json!({ "devices": list, "pin_only_login": pin_only, "site": self.site }),
        )
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
        let mut response = no_content();
        response
            .headers_mut()
            .insert(header::SET_COOKIE, web::cookie::clear(self.secure));
        Ok(response)
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
        let here: Vec<&JobRecord> = jobs
            .iter()
            // A job from another site shows while its document comes.
            .filter(|j| j.documents_complete || j.origin.is_some())
            .chain(&printed)
            .collect();
        let mut list: Vec<_> = here
            .iter()
            .map(|j| release::job_view(j, &self.site))
            .collect();
        let remote = match self.remote_jobs(&session.user).await {
            None => serde_json::Value::Null,
            Some(Ok(jobs)) => {
                let fetched_here = |uuid: &str| {
                    here.iter()
                        .any(|j| j.origin.as_ref().is_some_and(|o| o.uuid == uuid))
                };
                list.extend(
                    jobs.iter()
                        .filter(|j| j.state == "held" && !fetched_here(&j.uuid))
                        .map(release::remote_job_view),
                );
                serde_json::json!({ "available": true })
            }
            Some(Err(why)) => serde_json::json!({ "available": false, "reason": why }),
        };
        Ok(json(
            StatusCode::OK,
            &serde_json::json!({ "jobs": list, "remote": remote }),
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

    /// The live session of the request's bearer token, or of its session
    /// cookie (the web app's).
    fn session(&self, headers: &HeaderMap) -> Result<(String, Session), ApiError> {
        let mut sessions = self.lock_sessions()?;
        let idle = sessions.idle_secs();
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let token = bearer
            .or_else(|| web::cookie::token(headers))
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

/// A place to log in and release at: a printer, or a pool of printers.
#[derive(Debug, Clone)]
struct Device {
    id: String,
    name: Option<String>,
    location: Option<String>,
    /// For a pool: its members' printer ids.
    pool_members: Option<Vec<String>>,
}

impl Device {
    fn all(config: &Config) -> Vec<Device> {
        let printers = config.printers.iter().map(|p| Device {
            id: p.id.clone(),
            name: p.name.clone(),
            location: p.location.clone(),
            pool_members: None,
        });
        let pools = config.pools.iter().map(|p| Device {
            id: p.id.clone(),
            name: p.name.clone(),
            location: p.location.clone(),
            pool_members: Some(p.printers.clone()),
        });
        printers.chain(pools).collect()
    }
}

/// A cookie-authenticated change from a page of another origin.
pub(super) fn cross_origin() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        "A request with the session cookie must come from this appliance's own pages.",
    )
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
