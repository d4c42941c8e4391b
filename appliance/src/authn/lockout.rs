//! Lockout after repeated wrong secrets, per user and per printer, with a
//! doubling back-off.
//!
//! A user locked out is refused at every printer; a printer locked out
//! refuses every login, which is what slows down guessing PIN-only or card
//! logins, where no user name is given. While locked, secrets are not even
//! checked.
//!
//! An attempt is *reserved* before its secret is checked ([`Lockout::begin`])
//! and counted when the check ends, in one step under the caller's lock. A
//! subject takes at most as many checks in flight as wrong secrets it has
//! left before the lock (one, once it has been locked), so a burst of
//! guesses sent at the same moment is checked no more often than the same
//! guesses sent one after the other; the rest are refused as busy. A
//! correct secret whose user or printer was locked while it was being
//! checked is refused too. Time is passed in, so the schedule is tested
//! without waiting.

use std::collections::HashMap;
use std::sync::Mutex;

/// Most subjects tracked; beyond it, entries that are neither locked nor
/// recently failed nor being checked are dropped (guessing many user names
/// cannot grow memory).
const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Clone, Copy, Default)]
struct Failures {
    count: u32,
    in_flight: u32,
    locked_until_ms: i64,
    last_ms: i64,
}

impl Failures {
    fn locked(&self, subject: Subject, now_ms: i64) -> Result<(), Locked> {
        if self.locked_until_ms > now_ms {
            return Err(Locked {
                subject,
                retry_after_secs: u64::try_from((self.locked_until_ms - now_ms + 999) / 1000)
                    .unwrap_or(1)
                    .max(1),
            });
        }
        Ok(())
    }

    /// Checks that may run at once: the wrong secrets left before the
    /// lock, or one after a lock has ended.
    fn may_start(&self, after: u32) -> bool {
        self.in_flight < after.saturating_sub(self.count).max(1)
    }

    fn forgettable(&self, now_ms: i64, max_ms: i64) -> bool {
        self.in_flight == 0 && self.locked_until_ms <= now_ms && now_ms - self.last_ms >= max_ms
    }
}

/// Who is locked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Subject {
    /// A user (at every printer).
    User,
    /// A printer (for every user).
    Device,
}

/// A lock: who is locked and for how long still.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Locked {
    /// The user or the printer.
    pub(crate) subject: Subject,
    /// Seconds until attempts are taken again (at least 1).
    pub(crate) retry_after_secs: u64,
}

/// Why an attempt is not checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The user or the printer is locked out.
    Locked(Locked),
    /// As many checks as the subject may still fail are already running;
    /// their outcome decides whether it locks.
    Busy(Subject),
}

/// A reserved attempt: its secret may be checked. End it with
/// [`Lockout::failed`], [`Lockout::succeeded`] or [`Lockout::withdrawn`].
#[derive(Debug, PartialEq, Eq)]
#[must_use = "an attempt holds a check in flight until it is ended"]
pub(crate) struct Attempt {
    user: Option<String>,
    device: String,
}

/// The lockout policy and its state.
#[derive(Debug)]
pub(crate) struct Lockout {
    after: u32,
    base_ms: i64,
    max_ms: i64,
    users: HashMap<String, Failures>,
    devices: HashMap<String, Failures>,
}

impl Lockout {
    /// Locks after `after` wrong secrets in a row, for `base_secs`,
    /// doubling with each further wrong secret up to `max_secs`.
    pub(crate) fn new(after: u32, base_secs: u64, max_secs: u64) -> Lockout {
        let ms = |s: u64| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX);
        Lockout {
            after: after.max(1),
            base_ms: ms(base_secs),
            max_ms: ms(max_secs),
            users: HashMap::new(),
            devices: HashMap::new(),
        }
    }

    /// Reserves a check of an attempt by `user` (when named) at `device`,
    /// or says why it may not be checked now.
    pub(crate) fn begin(
        &mut self,
        user: Option<&str>,
        device: &str,
        now_ms: i64,
    ) -> Result<Attempt, Refusal> {
        let user_state = user
            .and_then(|u| self.users.get(u))
            .copied()
            .unwrap_or_default();
        let device_state = self.devices.get(device).copied().unwrap_or_default();
        user_state
            .locked(Subject::User, now_ms)
            .map_err(Refusal::Locked)?;
        device_state
            .locked(Subject::Device, now_ms)
            .map_err(Refusal::Locked)?;
        if !user_state.may_start(self.after) {
            return Err(Refusal::Busy(Subject::User));
        }
        if !device_state.may_start(self.after) {
            return Err(Refusal::Busy(Subject::Device));
        }
        // Under a flood of user names a user may go untracked; the
        // printer's own count still bounds the checks.
        let user = user.filter(|u| match self.track(Subject::User, u, now_ms) {
            Some(f) => {
                f.in_flight += 1;
                true
            }
            None => false,
        });
        if let Some(f) = self.track(Subject::Device, device, now_ms) {
            f.in_flight += 1;
        }
        Ok(Attempt {
            user: user.map(str::to_owned),
            device: device.to_owned(),
        })
    }

    /// The entry of `key`, made room for if the map is full; none if the
    /// map is full of entries that must be kept. Printers are few (the
    /// configured ones), so only users can fill it.
    fn track(&mut self, subject: Subject, key: &str, now_ms: i64) -> Option<&mut Failures> {
        let max_ms = self.max_ms;
        let map = match subject {
            Subject::User => &mut self.users,
            Subject::Device => &mut self.devices,
        };
        if map.len() >= MAX_TRACKED && !map.contains_key(key) {
            map.retain(|_, f| !f.forgettable(now_ms, max_ms));
            if map.len() >= MAX_TRACKED {
                return None;
            }
        }
        Some(map.entry(key.to_owned()).or_default())
    }

    fn end(&mut self, attempt: &Attempt) {
        let release = |map: &mut HashMap<String, Failures>, key: &str| {
            if let Some(f) = map.get_mut(key) {
                f.in_flight = f.in_flight.saturating_sub(1);
            }
        };
        if let Some(user) = &attempt.user {
            release(&mut self.users, user);
        }
        release(&mut self.devices, &attempt.device);
    }

    /// The attempt's secret was wrong; returns the lockout it starts, if any.
    pub(crate) fn failed(&mut self, attempt: Attempt, now_ms: i64) -> Option<Locked> {
        self.end(&attempt);
        let (after, base, max) = (self.after, self.base_ms, self.max_ms);
        let bump = |f: &mut Failures, subject| {
            f.count = f.count.saturating_add(1);
            f.last_ms = now_ms;
            (f.count >= after).then(|| {
                let doublings = (f.count - after).min(20);
                let duration = base.saturating_mul(1 << doublings).min(max);
                f.locked_until_ms = now_ms.saturating_add(duration);
                Locked {
                    subject,
                    retry_after_secs: u64::try_from(duration / 1000).unwrap_or(1).max(1),
                }
            })
        };
        let user_lock = attempt
            .user
            .as_deref()
            .and_then(|u| self.users.get_mut(u))
            .and_then(|f| bump(f, Subject::User));
        let device_lock = self
            .track(Subject::Device, &attempt.device, now_ms)
            .and_then(|f| bump(f, Subject::Device));
        user_lock.or(device_lock)
    }

    /// The attempt's secret was right and belongs to `user`. Refused if
    /// that user or the printer is locked now (a lock that began while the
    /// secret was checked, or a card or PIN-only login that named its user
    /// only by its secret); otherwise both counts start over.
    pub(crate) fn succeeded(
        &mut self,
        attempt: Attempt,
        user: &str,
        now_ms: i64,
    ) -> Result<(), Locked> {
        self.end(&attempt);
        if let Some(f) = self.users.get(user) {
            f.locked(Subject::User, now_ms)?;
        }
        if let Some(f) = self.devices.get(&attempt.device) {
            f.locked(Subject::Device, now_ms)?;
        }
        let reset = |map: &mut HashMap<String, Failures>, key: &str| {
            if let Some(f) = map.get_mut(key) {
                if f.in_flight == 0 {
                    map.remove(key);
                } else {
                    *f = Failures {
                        in_flight: f.in_flight,
                        ..Failures::default()
                    };
                }
            }
        };
        reset(&mut self.users, user);
        reset(&mut self.devices, &attempt.device);
        Ok(())
    }

    /// The attempt ended without a verdict on its secret (the request
    /// could not be checked as asked, or the store failed).
    pub(crate) fn withdrawn(&mut self, attempt: Attempt) {
        self.end(&attempt);
    }
}

/// A login attempt reserved in the lockout while its secret is checked.
/// Dropped unfinished (the client went away mid-check, or shutdown), it
/// is withdrawn: nobody learnt its verdict.
pub(crate) struct ReservedAttempt<'a> {
    lockout: &'a Mutex<Lockout>,
    attempt: Option<Attempt>,
}

impl<'a> ReservedAttempt<'a> {
    /// Holds `attempt`, reserved in `lockout`, until it is ended.
    pub(crate) fn new(lockout: &'a Mutex<Lockout>, attempt: Attempt) -> ReservedAttempt<'a> {
        ReservedAttempt {
            lockout,
            attempt: Some(attempt),
        }
    }

    fn with<T>(&mut self, f: impl FnOnce(&mut Lockout, Attempt) -> T) -> Option<T> {
        let attempt = self.attempt.take()?;
        let mut lockout = self
            .lockout
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(f(&mut lockout, attempt))
    }

    /// The secret was wrong; the lockout it starts, if any.
    pub(crate) fn failed(mut self, now_ms: i64) -> Option<Locked> {
        self.with(|l, a| l.failed(a, now_ms)).flatten()
    }

    /// The secret was right and belongs to `user`; refused if that user
    /// or the device is locked now.
    pub(crate) fn succeeded(mut self, user: &str, now_ms: i64) -> Result<(), Locked> {
        self.with(|l, a| l.succeeded(a, user, now_ms))
            .unwrap_or(Ok(()))
    }

    /// No verdict on the secret.
    pub(crate) fn withdrawn(mut self) {
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

    /// One wrong secret checked from start to end.
    fn wrong(l: &mut Lockout, user: Option<&str>, device: &str, now: i64) -> Option<Locked> {
        let attempt = l.begin(user, device, now).expect("attempt checked");
        l.failed(attempt, now)
    }

    fn right(l: &mut Lockout, user: &str, device: &str, now: i64) -> Result<(), Refusal> {
        let attempt = l.begin(Some(user), device, now)?;
        l.succeeded(attempt, user, now).map_err(Refusal::Locked)
    }

    fn locked(refusal: Result<Attempt, Refusal>) -> Locked {
        match refusal {
            Err(Refusal::Locked(l)) => l,
            other => panic!("expected a lock, got {other:?}"),
        }
    }

    #[test]
    fn the_nth_wrong_secret_locks_user_and_device_with_backoff() {
        let mut l = Lockout::new(3, 30, 120);
        assert_eq!(wrong(&mut l, Some("alice"), "lobby", 0), None);
        assert_eq!(wrong(&mut l, Some("alice"), "lobby", 1000), None);
        let lock = wrong(&mut l, Some("alice"), "lobby", 2000).unwrap();
        assert_eq!((lock.subject, lock.retry_after_secs), (Subject::User, 30));
        // alice elsewhere, and anyone at lobby, are refused meanwhile.
        assert_eq!(
            locked(l.begin(Some("alice"), "floor-2", 3000)).subject,
            Subject::User
        );
        assert_eq!(
            locked(l.begin(Some("bob"), "lobby", 3000)).subject,
            Subject::Device
        );
        assert_eq!(locked(l.begin(None, "lobby", 31_999)).retry_after_secs, 1);
        // One more wrong secret doubles the lock, capped at the maximum.
        let again = |l: &mut Lockout, now| wrong(l, Some("alice"), "lobby", now).unwrap();
        assert_eq!(again(&mut l, 32_000).retry_after_secs, 60);
        assert_eq!(again(&mut l, 92_000).retry_after_secs, 120);
        assert_eq!(again(&mut l, 212_000).retry_after_secs, 120);
    }

    #[test]
    fn success_starts_over_and_other_devices_are_apart() {
        let mut l = Lockout::new(2, 30, 60);
        wrong(&mut l, Some("alice"), "lobby", 0);
        right(&mut l, "alice", "lobby", 0).unwrap();
        assert_eq!(wrong(&mut l, Some("alice"), "lobby", 1), None);
        assert_eq!(wrong(&mut l, None, "floor-2", 1), None);
        assert!(wrong(&mut l, None, "floor-2", 2).is_some());
        assert!(l.begin(Some("carol"), "floor-2", 3).is_err());
        let carol = l.begin(Some("carol"), "lobby", 3).unwrap();
        l.withdrawn(carol);
    }

    #[test]
    fn a_burst_of_guesses_is_checked_no_more_than_one_after_another() {
        let mut l = Lockout::new(5, 30, 120);
        // 39 wrong PINs arrive at once: five are checked, the rest wait
        // for nothing, they are refused.
        let mut checking = Vec::new();
        let mut busy = 0;
        for _ in 0..39 {
            match l.begin(Some("alice"), "lobby", 0) {
                Ok(a) => checking.push(a),
                Err(Refusal::Busy(_)) => busy += 1,
                Err(other) => panic!("{other:?}"),
            }
        }
        assert_eq!((checking.len(), busy), (5, 34));
        // The right PIN 10 ms later is not even checked.
        assert_eq!(
            l.begin(Some("alice"), "lobby", 10),
            Err(Refusal::Busy(Subject::User))
        );
        let locks: Vec<_> = checking
            .into_iter()
            .filter_map(|a| l.failed(a, 20))
            .collect();
        assert_eq!(locks.len(), 1, "the fifth wrong PIN locks");
        assert!(matches!(
            l.begin(Some("alice"), "lobby", 30),
            Err(Refusal::Locked(_))
        ));
        // Once the lock has ended, one guess at a time.
        let first = l.begin(Some("alice"), "floor-2", 31_000).unwrap();
        assert_eq!(
            l.begin(Some("alice"), "floor-2", 31_000),
            Err(Refusal::Busy(Subject::User))
        );
        assert!(l.failed(first, 31_001).is_some(), "and it locks again");
    }

    #[test]
    fn a_right_secret_is_refused_when_a_lock_began_while_it_was_checked() {
        let mut l = Lockout::new(1, 30, 60);
        // A PIN-only login names its user only by its PIN...
        let pin_only = l.begin(None, "lobby", 0).unwrap();
        // ...and while it is checked, alice is locked elsewhere.
        assert!(wrong(&mut l, Some("alice"), "floor-2", 1).is_some());
        assert_eq!(
            l.succeeded(pin_only, "alice", 2).map_err(|l| l.subject),
            Err(Subject::User)
        );
    }

    #[test]
    fn a_card_login_is_held_to_the_lock_of_the_user_it_names() {
        let mut l = Lockout::new(1, 30, 60);
        wrong(&mut l, Some("bob"), "lobby", 0).unwrap();
        // A card names no user up front; bob is found by his card.
        let card = l.begin(None, "floor-2", 1).unwrap();
        assert_eq!(
            l.succeeded(card, "bob", 1).map_err(|l| l.subject),
            Err(Subject::User)
        );
        assert!(
            matches!(l.begin(Some("bob"), "floor-3", 2), Err(Refusal::Locked(_))),
            "and the refusal did not clear bob's lock"
        );
    }

    #[test]
    fn withdrawn_attempts_free_their_place_and_count_nothing() {
        let mut l = Lockout::new(1, 30, 60);
        let a = l.begin(Some("alice"), "lobby", 0).unwrap();
        assert!(l.begin(Some("alice"), "lobby", 0).is_err());
        l.withdrawn(a);
        assert_eq!(right(&mut l, "alice", "lobby", 1), Ok(()));
    }

    #[test]
    fn guessing_many_names_does_not_grow_without_bound() {
        let mut l = Lockout::new(5, 1, 1);
        for i in 0..(MAX_TRACKED as i64 * 3) {
            let attempt = l.begin(Some(&format!("user{i}")), "lobby", i * 2000);
            if let Ok(attempt) = attempt {
                l.failed(attempt, i * 2000);
            }
        }
        assert!(l.users.len() <= MAX_TRACKED);
    }
}
