//! Logging in at a printer: the request, the lockout reservation around
//! the check, the check of the secret against the store, and the session
//! that results (the login use case of [`ApiService`]).
//!
//! Passwords and user+PIN pairs are argon2id hashes, checked by one
//! dedicated thread per core, each reusing its own argon2 memory (~19 MiB):
//! a burst of logins queues instead of exhausting a small box, and memory
//! stays at one buffer per core. An unknown user costs the same check against a dummy hash, so
//! timing does not tell which user names exist. Cards and PIN-only PINs
//! are found by their keyed hash; the value itself is never compared.

use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, OnceLock};

use serde::Deserialize;
use tokio::sync::oneshot;

use http::StatusCode;

use super::ApiService;
use super::error::ApiError;
use super::lockout::{Attempt, Locked, Lockout, Refusal, Subject};
use super::reply::json;
use super::sessions::Session;
use crate::credentials::{self, LookupKind, Secret, normalize_card, normalize_pin};
use crate::http_server::Response;
use crate::job::now_ms;
use crate::store::AuditEvent;
use crate::store::{JobStore, StoreError};
use crate::users::LoginUser;

/// A malformed secret is a wrong secret (and counts towards lockout).
const MALFORMED: &str = "malformed secret";

/// How a user proves who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Method {
    /// A PIN, with the user name or (where enabled) alone.
    Pin,
    /// A card or badge number.
    Card,
    /// User name and password.
    Password,
}

impl Method {
    /// The keyword, for the audit log.
    pub(super) fn keyword(self) -> &'static str {
        match self {
            Method::Pin => "pin",
            Method::Card => "card",
            Method::Password => "password",
        }
    }
}

/// A login request as sent.
#[derive(Debug)]
pub(super) struct LoginRequest {
    /// The printer's id.
    pub(super) device: String,
    /// How the user proves who they are.
    pub(super) method: Method,
    /// The user name, when one is given (never empty).
    pub(super) user: Option<String>,
    /// The PIN, card number or password.
    pub(super) secret: Secret,
}

/// Parses a login body. A card names its user by itself and takes no user
/// name: a second name could only be meant to steer the lockout to someone
/// else.
pub(super) fn parse_login(body: &[u8]) -> Result<LoginRequest, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct LoginBody {
        device: String,
        method: Method,
        #[serde(default)]
        user: Option<String>,
        secret: String,
    }
    let body: LoginBody = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "invalid login: {e}. Send {{\"device\", \"method\": \"pin\"|\"card\"|\"password\", \
             \"user\"?, \"secret\"}}."
        ))
    })?;
    let user = body.user.filter(|u| !u.is_empty());
    if body.method == Method::Card && user.is_some() {
        return Err(ApiError::bad_request(
            "a card login takes no user name: send {\"device\", \"method\": \"card\", \"secret\"}",
        ));
    }
    Ok(LoginRequest {
        device: body.device,
        method: body.method,
        user,
        secret: Secret::new(body.secret),
    })
}

/// The outcome of a check.
#[derive(Debug)]
pub(super) enum Checked {
    /// The secret is right and the user may log in.
    Valid(LoginUser),
    /// Wrong secret, unknown user or card, or a disabled user (told apart
    /// only in the audit log).
    Invalid(&'static str),
    /// The request cannot be checked as asked.
    Unusable(String),
}

/// One argon2 check for the checker threads.
struct CheckJob {
    phc: String,
    user: String,
    secret: Secret,
    reply: oneshot::Sender<bool>,
}

/// Checks secrets; shared by every login.
pub(super) struct Verifier {
    store: JobStore,
    pin_only: bool,
    checks: std_mpsc::Sender<CheckJob>,
}

/// Starts `n` checker threads taking jobs from one queue; they end when
/// the sender is dropped.
fn start_checkers(n: usize) -> std_mpsc::Sender<CheckJob> {
    let (tx, rx) = std_mpsc::channel::<CheckJob>();
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..n {
        let rx = rx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("argon2-check-{i}"))
            .spawn(move || {
                let mut checker = credentials::HashChecker::new();
                loop {
                    let job = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    let ok = checker.verify_for_user(&job.phc, &job.user, job.secret.expose());
                    let _ = job.reply.send(ok);
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a password-check thread");
        }
    }
    tx
}

impl Verifier {
    /// A verifier over `store`; `pin_only` allows a PIN without a user name.
    pub(super) fn new(store: JobStore, pin_only: bool) -> Verifier {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Verifier {
            store,
            pin_only,
            checks: start_checkers(cores),
        }
    }

    /// Checks one login attempt.
    pub(super) async fn check(
        &self,
        method: Method,
        user: Option<&str>,
        secret: &Secret,
    ) -> Result<Checked, StoreError> {
        match (method, user) {
            (Method::Password, None) => Ok(Checked::Unusable(
                "a password login needs the user name".into(),
            )),
            (Method::Password, Some(user)) => {
                if credentials::check_password(secret).is_err() {
                    return Ok(Checked::Invalid(MALFORMED));
                }
                self.by_hash(user, "password", secret.expose()).await
            }
            (Method::Pin, Some(user)) => match normalize_pin(secret) {
                Ok(pin) => self.by_hash(user, "pin", &pin).await,
                Err(_) => Ok(Checked::Invalid(MALFORMED)),
            },
            (Method::Pin, None) if !self.pin_only => Ok(Checked::Unusable(
                "this site needs your user name with the PIN".into(),
            )),
            (Method::Pin, None) => match normalize_pin(secret) {
                Ok(pin) => self.by_lookup(LookupKind::PinOnly, &pin).await,
                Err(_) => Ok(Checked::Invalid(MALFORMED)),
            },
            (Method::Card, _) => match normalize_card(secret) {
                Ok(card) => self.by_lookup(LookupKind::Card, &card).await,
                Err(_) => Ok(Checked::Invalid(MALFORMED)),
            },
        }
    }

    async fn by_hash(
        &self,
        user: &str,
        kind: &'static str,
        secret: &str,
    ) -> Result<Checked, StoreError> {
        let found = self.store.login_by_id(user.to_owned(), kind).await?;
        // A keyed PIN hash is checked here and now: one HMAC, no queue.
        if let Some((login, Some(stored))) = &found
            && credentials::is_keyed(stored)
        {
            let key = self.store.lookup_key();
            return Ok(
                match credentials::verify_pin_hash(key, stored, user, secret) {
                    true if !login.disabled => Checked::Valid(login.clone()),
                    true => Checked::Invalid("disabled"),
                    false => Checked::Invalid("wrong secret"),
                },
            );
        }
        let (phc, known) = match &found {
            Some((_, Some(phc))) => (phc.clone(), true),
            _ => (dummy_phc().to_owned(), false),
        };
        let (reply, answer) = oneshot::channel();
        let job = CheckJob {
            phc,
            user: user.to_owned(),
            secret: Secret::new(secret),
            reply,
        };
        self.checks.send(job).map_err(|_| StoreError::Closed)?;
        let matches = answer.await.map_err(|_| StoreError::Closed)?;
        Ok(match found {
            Some((user, _)) if known && matches && !user.disabled => Checked::Valid(user),
            Some((user, _)) if known && matches && user.disabled => Checked::Invalid("disabled"),
            Some(_) if known => Checked::Invalid("wrong secret"),
            Some(_) => Checked::Invalid("no such secret for this user"),
            None => Checked::Invalid("unknown user"),
        })
    }

    async fn by_lookup(&self, kind: LookupKind, normalized: &str) -> Result<Checked, StoreError> {
        let lookup = self.store.lookup_key().lookup(kind, normalized);
        Ok(match self.store.login_by_lookup(kind, lookup).await? {
            Some(user) if !user.disabled => Checked::Valid(user),
            Some(_) => Checked::Invalid("disabled"),
            None => Checked::Invalid(match kind {
                LookupKind::Card => "unknown card",
                LookupKind::PinOnly | LookupKind::Pin => "unknown PIN",
            }),
        })
    }
}

/// A hash to check against when the user or their secret does not exist,
/// so the answer takes as long as a real check.
fn dummy_phc() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| credentials::hash_for_user("\0no-user", "\0no-secret").unwrap_or_default())
}

/// The login use case: a user proves who they are at a printer.
impl ApiService {
    pub(super) async fn login(&self, body: &[u8]) -> Result<Response, ApiError> {
        let body = parse_login(body)?;
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
                if let (Some(roaming), Some(max)) = (&self.roaming, self.prefetch_max_bytes) {
                    roaming.prefetch_for(user_id.clone(), max);
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::store::UserAdmin;
    use crate::users::{NewUser, prepare};

    /// A store with alice (PIN 1234, card 04:A2:19:FF, a password, PIN-only
    /// on) and a disabled bob (PIN 5678).
    async fn verifier(pin_only: bool) -> (tempfile::TempDir, Verifier) {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut admin = UserAdmin::open(dir.path()).unwrap();
            let alice = NewUser {
                id: "alice".into(),
                display_name: "Alice".into(),
                groups: vec!["finance".into()],
                pin: Some(Secret::new("1234")),
                cards: vec![Secret::new("04:A2:19:FF")],
                password: Some(Secret::new("correct horse")),
                ..NewUser::default()
            };
            let bob = NewUser {
                id: "bob".into(),
                display_name: "Bob".into(),
                pin: Some(Secret::new("5678")),
                ..NewUser::default()
            };
            let key = admin.key().clone();
            let users = [
                prepare(&alice, &key, true).unwrap(),
                prepare(&bob, &key, true).unwrap(),
            ];
            admin.add(&users).unwrap();
            admin.set_disabled("bob", true).unwrap();
        }
        let options = crate::store::test_options(0);
        let (store, _) = JobStore::open(dir.path(), options, Arc::new(Metrics::new())).unwrap();
        (dir, Verifier::new(store, pin_only))
    }

    fn user(checked: Checked) -> Option<String> {
        match checked {
            Checked::Valid(u) => Some(u.id),
            _ => None,
        }
    }

    #[tokio::test]
    async fn every_method_finds_its_user() {
        let (_dir, v) = verifier(true).await;
        let check = |m, u: Option<&'static str>, s: &'static str| {
            let v = &v;
            async move { user(v.check(m, u, &Secret::new(s)).await.unwrap()) }
        };
        assert_eq!(
            check(Method::Pin, Some("alice"), "1234").await.as_deref(),
            Some("alice")
        );
        assert_eq!(
            check(Method::Pin, None, "1234").await.as_deref(),
            Some("alice")
        );
        assert_eq!(
            check(Method::Card, None, "04a2 19ff").await.as_deref(),
            Some("alice")
        );
        assert_eq!(
            check(Method::Password, Some("alice"), "correct horse")
                .await
                .as_deref(),
            Some("alice")
        );
        let alice = v
            .check(Method::Card, None, &Secret::new("04A219FF"))
            .await
            .unwrap();
        assert!(matches!(alice, Checked::Valid(u) if u.groups == ["finance"]));
    }

    #[tokio::test]
    async fn wrong_unknown_and_disabled_are_all_invalid() {
        let (_dir, v) = verifier(true).await;
        let reason = |c: Checked| match c {
            Checked::Invalid(r) => r,
            other => panic!("expected invalid, got {other:?}"),
        };
        let check = |m, u: Option<&'static str>, s: &'static str| {
            let v = &v;
            async move { v.check(m, u, &Secret::new(s)).await }
        };
        assert_eq!(
            reason(check(Method::Pin, Some("alice"), "9999").await.unwrap()),
            "wrong secret"
        );
        assert_eq!(
            reason(check(Method::Pin, Some("zed"), "1234").await.unwrap()),
            "unknown user"
        );
        assert_eq!(
            reason(check(Method::Pin, Some("bob"), "5678").await.unwrap()),
            "disabled"
        );
        assert_eq!(
            reason(check(Method::Pin, None, "5678").await.unwrap()),
            "disabled"
        );
        assert_eq!(
            reason(check(Method::Card, None, "ffff0000").await.unwrap()),
            "unknown card"
        );
        assert_eq!(
            reason(
                check(Method::Password, Some("bob"), "correct horse")
                    .await
                    .unwrap()
            ),
            "no such secret for this user"
        );
        assert_eq!(
            reason(check(Method::Pin, Some("alice"), "12ab").await.unwrap()),
            MALFORMED
        );
    }

    #[tokio::test]
    async fn requests_that_cannot_be_checked_say_why() {
        let (_dir, v) = verifier(false).await;
        assert!(matches!(
            v.check(Method::Pin, None, &Secret::new("1234")).await.unwrap(),
            Checked::Unusable(m) if m.contains("user name")
        ));
        assert!(matches!(
            v.check(Method::Password, None, &Secret::new("correct horse"))
                .await
                .unwrap(),
            Checked::Unusable(_)
        ));
    }
}
