//! Lockout after repeated wrong secrets, per user and per printer, with a
//! doubling back-off.
//!
//! A user locked out is refused at every printer; a printer locked out
//! refuses every login, which is what slows down guessing PIN-only or card
//! logins, where no user name is given. While locked, secrets are not even
//! checked. Time is passed in, so the schedule is tested without waiting.

use std::collections::HashMap;

/// Most subjects tracked; beyond it, entries that are neither locked nor
/// recently failed are dropped (guessing many user names cannot grow memory).
const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Clone, Copy, Default)]
struct Failures {
    count: u32,
    locked_until_ms: i64,
    last_ms: i64,
}

/// Who is locked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Subject {
    /// A user (at every printer).
    User,
    /// A printer (for every user).
    Device,
}

/// A refusal: who is locked and for how long still.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Locked {
    /// The user or the printer.
    pub(super) subject: Subject,
    /// Seconds until attempts are taken again (at least 1).
    pub(super) retry_after_secs: u64,
}

/// The lockout policy and its state.
#[derive(Debug)]
pub(super) struct Lockout {
    after: u32,
    base_ms: i64,
    max_ms: i64,
    users: HashMap<String, Failures>,
    devices: HashMap<String, Failures>,
}

impl Lockout {
    /// Locks after `after` wrong secrets in a row, for `base_secs`,
    /// doubling with each further wrong secret up to `max_secs`.
    pub(super) fn new(after: u32, base_secs: u64, max_secs: u64) -> Lockout {
        let ms = |s: u64| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX);
        Lockout {
            after: after.max(1),
            base_ms: ms(base_secs),
            max_ms: ms(max_secs),
            users: HashMap::new(),
            devices: HashMap::new(),
        }
    }

    /// Whether an attempt by `user` (when named) at `device` may be checked now.
    pub(super) fn check(
        &self,
        user: Option<&str>,
        device: &str,
        now_ms: i64,
    ) -> Result<(), Locked> {
        let locked = |map: &HashMap<String, Failures>, key: &str, subject| match map.get(key) {
            Some(f) if f.locked_until_ms > now_ms => Err(Locked {
                subject,
                retry_after_secs: u64::try_from((f.locked_until_ms - now_ms + 999) / 1000)
                    .unwrap_or(1)
                    .max(1),
            }),
            _ => Ok(()),
        };
        if let Some(user) = user {
            locked(&self.users, user, Subject::User)?;
        }
        locked(&self.devices, device, Subject::Device)
    }

    /// Records a wrong secret; returns the lockout it starts, if any.
    pub(super) fn failed(
        &mut self,
        user: Option<&str>,
        device: &str,
        now_ms: i64,
    ) -> Option<Locked> {
        let (after, base, max) = (self.after, self.base_ms, self.max_ms);
        let bump = |map: &mut HashMap<String, Failures>, key: &str, subject| {
            if map.len() >= MAX_TRACKED && !map.contains_key(key) {
                map.retain(|_, f| f.locked_until_ms > now_ms || now_ms - f.last_ms < max);
                if map.len() >= MAX_TRACKED {
                    // Under a flood of names, the printer's own count still locks.
                    return None;
                }
            }
            let f = map.entry(key.to_owned()).or_default();
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
        let user_lock = user.and_then(|u| bump(&mut self.users, u, Subject::User));
        let device_lock = bump(&mut self.devices, device, Subject::Device);
        user_lock.or(device_lock)
    }

    /// A correct secret: the user's and the printer's counts start over.
    pub(super) fn succeeded(&mut self, user: &str, device: &str) {
        self.users.remove(user);
        self.devices.remove(device);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nth_wrong_secret_locks_user_and_device_with_backoff() {
        let mut l = Lockout::new(3, 30, 120);
        assert_eq!(l.failed(Some("alice"), "lobby", 0), None);
        assert_eq!(l.failed(Some("alice"), "lobby", 1000), None);
        let locked = l.failed(Some("alice"), "lobby", 2000).unwrap();
        assert_eq!(
            (locked.subject, locked.retry_after_secs),
            (Subject::User, 30)
        );
        // alice elsewhere, and anyone at lobby, are refused meanwhile.
        assert_eq!(
            l.check(Some("alice"), "floor-2", 3000).unwrap_err().subject,
            Subject::User
        );
        assert_eq!(
            l.check(Some("bob"), "lobby", 3000).unwrap_err().subject,
            Subject::Device
        );
        assert_eq!(
            l.check(None, "lobby", 31_999).unwrap_err().retry_after_secs,
            1
        );
        assert!(l.check(Some("alice"), "lobby", 32_000).is_ok());
        // One more wrong secret doubles the lock, capped at the maximum.
        assert_eq!(
            l.failed(Some("alice"), "lobby", 32_000)
                .unwrap()
                .retry_after_secs,
            60
        );
        assert_eq!(
            l.failed(Some("alice"), "lobby", 92_000)
                .unwrap()
                .retry_after_secs,
            120
        );
        assert_eq!(
            l.failed(Some("alice"), "lobby", 212_000)
                .unwrap()
                .retry_after_secs,
            120
        );
    }

    #[test]
    fn success_starts_over_and_other_devices_are_apart() {
        let mut l = Lockout::new(2, 30, 60);
        l.failed(Some("alice"), "lobby", 0);
        l.succeeded("alice", "lobby");
        assert_eq!(l.failed(Some("alice"), "lobby", 1), None);
        assert_eq!(l.failed(None, "floor-2", 1), None);
        assert!(l.check(None, "floor-2", 2).is_ok());
        assert!(l.failed(None, "floor-2", 2).is_some());
        assert!(l.check(Some("carol"), "floor-2", 3).is_err());
        assert!(l.check(Some("carol"), "lobby", 3).is_ok());
    }

    #[test]
    fn guessing_many_names_does_not_grow_without_bound() {
        let mut l = Lockout::new(5, 1, 1);
        for i in 0..(MAX_TRACKED as i64 * 3) {
            l.failed(Some(&format!("user{i}")), "lobby", i * 2000);
        }
        assert!(l.users.len() <= MAX_TRACKED);
    }
}
