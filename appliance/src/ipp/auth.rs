//! Who submits a job over IPP (`[ipp] authentication`).
//!
//! With `none`, the client's `requesting-user-name` is believed: the
//! workstation is trusted to name its user. With `basic`, every operation
//! but the printer queries (which clients send before anything else, to
//! learn that authentication is needed) must carry HTTP Basic credentials
//! of one of the site's users; the authenticated user then owns the job and
//! is the one whose jobs Get-Jobs and Cancel-Job see, whatever the request
//! names. A missing or wrong password is answered `401` with
//! `WWW-Authenticate`, which is what makes CUPS, macOS and Windows ask
//! their user.
//!
//! Passwords are checked by the same argon2 threads as logins at a printer,
//! under a lockout of their own (per user and per client address). A client
//! sends several requests per job (Get-Printer-Attributes, Create-Job,
//! Send-Document, then Get-Job-Attributes every few seconds), so a password
//! found right is remembered for a minute, as a salted SHA-256 in memory,
//! and forgotten at once when a new policy arrives.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use ipp::model::Operation;
use sha2::{Digest, Sha256};

use super::error::IppError;
use crate::authn::lockout::{Lockout, Refusal, ReservedAttempt, Subject};
use crate::authn::verifier::{Checked, Method, Verifier};
use crate::config::{ApiConfig, IppAuthentication};
use crate::credentials::Secret;
use crate::job::now_ms;
use crate::metrics::{LoginLabels, Metrics};
use crate::store::{AuditEvent, JobStore};

/// How long a password found right is believed without a new check.
const REMEMBER_MS: i64 = 60_000;
/// Most credentials remembered; a full table starts over.
const REMEMBER_MAX: usize = 4096;

/// Whether `operation` needs an authenticated user under `basic`. The
/// printer queries do not: a client asks them first, anonymously, to learn
/// (from `uri-authentication-supported`) that it must authenticate.
pub fn needs_authentication(operation: Operation) -> bool {
    !matches!(
        operation,
        Operation::GetPrinterAttributes | Operation::CupsGetPrinters | Operation::CupsGetDefault
    )
}

/// The user name and password of an `Authorization: Basic` header; none
/// for any other scheme or a malformed value.
pub fn parse_basic(header: &str) -> Option<(String, Secret)> {
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    (!user.is_empty()).then(|| (user.to_owned(), Secret::new(password)))
}

/// The `WWW-Authenticate` challenge for `realm`.
pub fn challenge(realm: &str) -> String {
    let realm: String = realm
        .chars()
        .filter(|c| !c.is_control() && *c != '"' && *c != '\\')
        .collect();
    format!("Basic realm=\"{realm}\", charset=\"UTF-8\"")
}

/// Credentials found right lately, by a salted hash of user and password.
struct Remembered {
    /// None when the system gave no randomness: then nothing is remembered.
    salt: Option<[u8; 16]>,
    entries: HashMap<[u8; 32], (String, i64)>,
}

impl Remembered {
    fn new() -> Remembered {
        let mut salt = [0u8; 16];
        Remembered {
            salt: getrandom::fill(&mut salt).is_ok().then_some(salt),
            entries: HashMap::new(),
        }
    }

    fn key(&self, user: &str, password: &Secret) -> Option<[u8; 32]> {
        let mut hash = Sha256::new();
        hash.update(self.salt?);
        hash.update(user.as_bytes());
        hash.update([0]);
        hash.update(password.expose().as_bytes());
        Some(hash.finalize().into())
    }

    fn get(&self, key: &[u8; 32], now_ms: i64) -> Option<&str> {
        self.entries
            .get(key)
            .filter(|(_, until)| *until > now_ms)
            .map(|(user, _)| user.as_str())
    }

    fn put(&mut self, key: [u8; 32], user: String, now_ms: i64) {
        if self.entries.len() >= REMEMBER_MAX {
            self.entries.retain(|_, (_, until)| *until > now_ms);
            if self.entries.len() >= REMEMBER_MAX {
                self.entries.clear();
            }
        }
        self.entries.insert(key, (user, now_ms + REMEMBER_MS));
    }
}

/// IPP authentication as configured; shared by every connection.
pub struct IppAuth {
    mode: IppAuthentication,
    realm: String,
    verifier: Arc<Verifier>,
    lockout: Mutex<Lockout>,
    remembered: Mutex<Remembered>,
    store: JobStore,
    metrics: Arc<Metrics>,
}

impl IppAuth {
    /// Authentication by `mode`, checking passwords with `verifier` under
    /// the lockout settings of the release API; `realm` names the site in
    /// the challenge.
    pub fn new(
        mode: IppAuthentication,
        realm: &str,
        lockout: &ApiConfig,
        verifier: Arc<Verifier>,
        store: JobStore,
        metrics: Arc<Metrics>,
    ) -> IppAuth {
        IppAuth {
            mode,
            realm: realm.to_owned(),
            verifier,
            lockout: Mutex::new(Lockout::new(
                lockout.lockout_after,
                lockout.lockout_secs,
                lockout.lockout_max_secs,
            )),
            remembered: Mutex::new(Remembered::new()),
            store,
            metrics,
        }
    }

    /// The `uri-authentication-supported` keyword.
    pub fn keyword(&self) -> &'static str {
        match self.mode {
            IppAuthentication::None => "requesting-user-name",
            IppAuthentication::Basic => "basic",
        }
    }

    /// The challenge sent with a `401`.
    pub fn challenge(&self) -> String {
        challenge(&self.realm)
    }

    /// Forgets every remembered password (a new policy may have changed
    /// or disabled some).
    pub fn forget(&self) {
        if let Ok(mut remembered) = self.remembered.lock() {
            remembered.entries.clear();
        }
    }

    /// The user `operation` acts as: `named` (the request's
    /// `requesting-user-name`) under `none` or for the printer queries;
    /// otherwise the user the `Authorization` header proves, or why not.
    pub async fn user(
        &self,
        operation: Operation,
        named: &str,
        authorization: Option<&str>,
        client: IpAddr,
    ) -> Result<String, IppError> {
        if self.mode == IppAuthentication::None || !needs_authentication(operation) {
            return Ok(named.to_owned());
        }
        let Some((user, password)) = authorization.and_then(parse_basic) else {
            return Err(IppError::NotAuthenticated(
                "this queue needs your user name and password".into(),
            ));
        };
        // A locked account or client is refused even with the right
        // password, remembered or not.
        let from = client.to_string();
        let attempt = self
            .lockout
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .begin(Some(&user), &from, now_ms());
        let attempt = match attempt {
            Ok(attempt) => ReservedAttempt::new(&self.lockout, attempt),
            Err(Refusal::Busy(_)) => return Err(IppError::Busy),
            Err(Refusal::Locked(locked)) => {
                self.count("locked");
                return Err(locked_error(locked.subject, locked.retry_after_secs));
            }
        };
        let (key, known) = self.recall(&user, &password);
        if let Some(known) = known {
            return match attempt.succeeded(&known, now_ms()) {
                Ok(()) => Ok(known),
                Err(locked) => Err(locked_error(locked.subject, locked.retry_after_secs)),
            };
        }
        let checked = match self
            .verifier
            .check(Method::Password, Some(&user), &password)
            .await
        {
            Ok(checked) => checked,
            Err(e) => {
                attempt.withdrawn();
                return Err(e.into());
            }
        };
        match checked {
            Checked::Valid(found) => {
                if let Err(locked) = attempt.succeeded(&found.id, now_ms()) {
                    self.count("locked");
                    return Err(locked_error(locked.subject, locked.retry_after_secs));
                }
                self.count("ok");
                if let (Some(key), Ok(mut remembered)) = (key, self.remembered.lock()) {
                    remembered.put(key, found.id.clone(), now_ms());
                }
                Ok(found.id)
            }
            Checked::Invalid(reason) => {
                let lock = attempt.failed(now_ms());
                self.count(if lock.is_some() { "locked" } else { "invalid" });
                tracing::warn!(%user, client = %from, reason, "IPP authentication failed");
                let detail = format!("method=ipp-basic; client={from}; {reason}");
                self.store
                    .audit(AuditEvent::now("login-failed", Some(&user), None, detail))
                    .await?;
                match lock {
                    Some(locked) => Err(locked_error(locked.subject, locked.retry_after_secs)),
                    None => Err(IppError::NotAuthenticated(
                        "wrong user name or password".into(),
                    )),
                }
            }
            Checked::Unusable(message) => {
                attempt.withdrawn();
                Err(IppError::NotAuthenticated(message))
            }
        }
    }

    /// The remembered key of these credentials, and their user if they
    /// were found right within the last minute.
    fn recall(&self, user: &str, password: &Secret) -> (Option<[u8; 32]>, Option<String>) {
        let Ok(remembered) = self.remembered.lock() else {
            return (None, None);
        };
        let key = remembered.key(user, password);
        let known = key.and_then(|k| remembered.get(&k, now_ms()).map(str::to_owned));
        (key, known)
    }

    fn count(&self, outcome: &'static str) {
        self.metrics
            .logins
            .get_or_create(&LoginLabels {
                method: "ipp_basic",
                outcome,
            })
            .inc();
    }
}

fn locked_error(subject: Subject, secs: u64) -> IppError {
    let whom = match subject {
        Subject::User => "this account",
        Subject::Device => "this computer",
    };
    IppError::Forbidden(format!(
        "too many wrong passwords: printing for {whom} is paused; try again in {secs} s"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(raw: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    #[test]
    fn basic_credentials_are_parsed_and_anything_else_is_not() {
        let (user, password) = parse_basic(&basic("alice:correct horse:x")).unwrap();
        assert_eq!(
            (user.as_str(), password.expose()),
            ("alice", "correct horse:x")
        );
        assert!(parse_basic(&format!("bASIC {}", &basic("a:b")[6..])).is_some());
        assert!(parse_basic(&basic(":nouser")).is_none());
        assert!(parse_basic(&basic("no-colon")).is_none());
        assert!(parse_basic("Basic !!!not-base64").is_none());
        assert!(parse_basic("Bearer abc").is_none());
        assert!(parse_basic("").is_none());
    }

    #[test]
    fn printer_queries_are_anonymous_and_everything_else_is_not() {
        assert!(!needs_authentication(Operation::GetPrinterAttributes));
        assert!(!needs_authentication(Operation::CupsGetPrinters));
        for op in [
            Operation::PrintJob,
            Operation::CreateJob,
            Operation::SendDocument,
            Operation::ValidateJob,
            Operation::GetJobs,
            Operation::GetJobAttributes,
            Operation::CancelJob,
        ] {
            assert!(needs_authentication(op), "{op:?}");
        }
    }

    #[test]
    fn the_challenge_cannot_be_broken_by_the_site_name() {
        assert_eq!(
            challenge("Zürich \"HQ\"\r\n"),
            "Basic realm=\"Zürich HQ\", charset=\"UTF-8\""
        );
    }

    #[test]
    fn remembered_credentials_expire_and_differ_by_password() {
        let mut r = Remembered::new();
        let right = r.key("alice", &Secret::new("pw")).unwrap();
        r.put(right, "alice".into(), 1_000);
        assert_eq!(r.get(&right, 1_000 + REMEMBER_MS - 1), Some("alice"));
        assert_eq!(r.get(&right, 1_000 + REMEMBER_MS), None);
        let other = r.key("alice", &Secret::new("pw2")).unwrap();
        assert_eq!(r.get(&other, 1_000), None);
        assert_ne!(Some(right), r.key("alic", &Secret::new("epw")));
    }
}
