//! Checking a secret against the store: passwords and user+PIN pairs as
//! argon2id hashes, checked by one dedicated thread per core, each reusing
//! its own argon2 memory (~19 MiB), so a burst of logins queues instead of
//! exhausting a small box; an unknown user costs the same check against a
//! dummy hash, so timing does not tell which user names exist. Cards and
//! PIN-only PINs are found by their keyed hash; the value itself is never
//! compared. Shared by the release API's logins and IPP Basic authentication.

use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, OnceLock};

use serde::Deserialize;
use tokio::sync::oneshot;

use crate::credentials::{self, LookupKind, Secret, normalize_card, normalize_pin};
use crate::store::{JobStore, StoreError};
use crate::users::LoginUser;

/// A malformed secret is a wrong secret (and counts towards lockout).
const MALFORMED: &str = "malformed secret";

/// How a user proves who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Method {
    /// A PIN, with the user name or (where enabled) alone.
    Pin,
    /// A card or badge number.
    Card,
    /// User name and password.
    Password,
}

impl Method {
    /// The keyword, for the audit log.
    pub(crate) fn keyword(self) -> &'static str {
        match self {
            Method::Pin => "pin",
            Method::Card => "card",
            Method::Password => "password",
        }
    }
}

/// The outcome of a check.
#[derive(Debug)]
pub(crate) enum Checked {
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
pub struct Verifier {
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
    pub fn new(store: JobStore, pin_only: bool) -> Verifier {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Verifier {
            store,
            pin_only,
            checks: start_checkers(cores),
        }
    }

    /// Whether a PIN alone (without a user name) may log in.
    pub(crate) fn pin_only(&self) -> bool {
        self.pin_only
    }

    /// Checks one login attempt.
    pub(crate) async fn check(
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
