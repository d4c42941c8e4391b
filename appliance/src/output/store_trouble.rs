//! What a forwarder does while the store cannot record its progress (a
//! full disk, an I/O error): it waits with a doubling delay instead of
//! retrying at once, and it logs the first failure, then at most one
//! summary a minute, then the recovery. A full disk once made a forwarder
//! log the same error 5,000 times a second at most of a core.
//!
//! Pure: time is passed in, the caller sleeps and logs.

use std::time::Duration;

/// First wait after a failure; it doubles up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_millis(100);
/// Longest wait between attempts: how late work resumes once the store
/// can write again.
const MAX_DELAY: Duration = Duration::from_secs(10);
/// Least time between two log lines about the same trouble.
const LOG_EVERY_MS: i64 = 60_000;

/// Failures in a row and when they were last told.
#[derive(Debug, Default)]
pub(crate) struct StoreTrouble {
    failures: u32,
    since_ms: i64,
    told: u32,
    told_ms: i64,
}

/// What to log about a failure.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TroubleLog {
    /// The first failure of a run: log it in full.
    First,
    /// A summary: `failures` since `secs` seconds, `untold` of them not
    /// logged until now.
    StillFailing {
        /// Failures in a row.
        failures: u32,
        /// Untold failures since the last line.
        untold: u32,
        /// Seconds since the first one.
        secs: i64,
    },
    /// Nothing: it was told recently.
    Quiet,
}

/// The end of a run of failures.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Recovered {
    /// Failures in a row before it.
    pub(crate) failures: u32,
    /// Seconds the trouble lasted.
    pub(crate) secs: i64,
}

impl StoreTrouble {
    /// Records a failure at `now_ms`: how long to wait before the next
    /// attempt, and what to log.
    pub(crate) fn failed(&mut self, now_ms: i64) -> (Duration, TroubleLog) {
        self.failures = self.failures.saturating_add(1);
        let log = if self.failures == 1 {
            self.since_ms = now_ms;
            self.told = 1;
            self.told_ms = now_ms;
            TroubleLog::First
        } else if now_ms - self.told_ms >= LOG_EVERY_MS {
            let untold = self.failures - self.told;
            self.told = self.failures;
            self.told_ms = now_ms;
            TroubleLog::StillFailing {
                failures: self.failures,
                untold,
                secs: (now_ms - self.since_ms) / 1000,
            }
        } else {
            TroubleLog::Quiet
        };
        let doublings = (self.failures - 1).min(16);
        (
            FIRST_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY),
            log,
        )
    }

    /// Records a success at `now_ms`; the end of a run of failures, if
    /// there was one.
    pub(crate) fn succeeded(&mut self, now_ms: i64) -> Option<Recovered> {
        let failures = std::mem::take(&mut self.failures);
        (failures > 0).then(|| Recovered {
            failures,
            secs: (now_ms - self.since_ms) / 1000,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_to_a_cap_and_a_success_starts_over() {
        let mut t = StoreTrouble::default();
        let waits: Vec<u64> = (0..10).map(|i| t.failed(i).0.as_millis() as u64).collect();
        assert_eq!(
            waits,
            [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]
        );
        assert_eq!(
            t.succeeded(5000),
            Some(Recovered {
                failures: 10,
                secs: 5
            })
        );
        assert_eq!(t.succeeded(6000), None);
        assert_eq!(t.failed(7000).0, FIRST_DELAY);
    }

    #[test]
    fn a_storm_is_told_once_then_once_a_minute() {
        let mut t = StoreTrouble::default();
        let logs: Vec<TroubleLog> = (0..=120)
            .map(|s| t.failed(s * 1000).1)
            .filter(|l| *l != TroubleLog::Quiet)
            .collect();
        assert_eq!(
            logs,
            [
                TroubleLog::First,
                TroubleLog::StillFailing {
                    failures: 61,
                    untold: 60,
                    secs: 60
                },
                TroubleLog::StillFailing {
                    failures: 121,
                    untold: 60,
                    secs: 120
                },
            ]
        );
    }
}
