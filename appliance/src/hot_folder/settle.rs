//! When a dropped file is complete: the folder cannot know when its writer
//! is done, so a file is taken once its size and modification time have
//! stayed the same for the folder's settle time. Pure: the caller feeds
//! each scan's observations and the time.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

/// What a scan saw of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Its length in bytes.
    pub len: u64,
    /// Its modification time, where the file system keeps one.
    pub modified: Option<SystemTime>,
}

/// Files seen but not yet settled, with when each was last seen to change.
#[derive(Debug, Default)]
pub struct Settling {
    seen: HashMap<PathBuf, (Stamp, Instant)>,
}

impl Settling {
    /// Takes one scan's files at `now`; returns those unchanged for
    /// `settle` (forgotten here: the caller takes them) and when the
    /// earliest of the others will have settled, if nothing changes.
    pub fn observe(
        &mut self,
        now: Instant,
        scan: Vec<(PathBuf, Stamp)>,
        settle: Duration,
    ) -> (Vec<PathBuf>, Option<Instant>) {
        let mut next = HashMap::with_capacity(scan.len());
        let mut settled = Vec::new();
        let mut due: Option<Instant> = None;
        for (path, stamp) in scan {
            let since = match self.seen.get(&path) {
                Some(&(seen, since)) if seen == stamp => since,
                _ => now,
            };
            if now.duration_since(since) >= settle {
                settled.push(path);
            } else {
                let at = since + settle;
                due = Some(due.map_or(at, |d| d.min(at)));
                next.insert(path, (stamp, since));
            }
        }
        self.seen = next;
        (settled, due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(len: u64) -> Stamp {
        Stamp {
            len,
            modified: None,
        }
    }

    #[test]
    fn a_file_is_settled_once_it_stops_changing() {
        let settle = Duration::from_secs(2);
        let t0 = Instant::now();
        let file = PathBuf::from("scan.pdf");
        let mut settling = Settling::default();

        let (ready, due) = settling.observe(t0, vec![(file.clone(), stamp(10))], settle);
        assert!(ready.is_empty());
        assert_eq!(due, Some(t0 + settle));

        // Still growing after a second: the clock starts again.
        let t1 = t0 + Duration::from_secs(1);
        let (ready, due) = settling.observe(t1, vec![(file.clone(), stamp(20))], settle);
        assert!(ready.is_empty());
        assert_eq!(due, Some(t1 + settle));

        let (ready, _) = settling.observe(t1 + settle, vec![(file.clone(), stamp(20))], settle);
        assert_eq!(ready, vec![file.clone()]);

        // Taken files are forgotten: seen again, the clock starts anew.
        let (ready, _) = settling.observe(t1 + settle, vec![(file, stamp(20))], settle);
        assert!(ready.is_empty());
    }

    #[test]
    fn a_file_that_disappears_is_forgotten() {
        let settle = Duration::from_millis(100);
        let t0 = Instant::now();
        let mut settling = Settling::default();
        settling.observe(t0, vec![("a".into(), stamp(1))], settle);
        let (ready, due) = settling.observe(t0 + settle, Vec::new(), settle);
        assert!(ready.is_empty());
        assert_eq!(due, None);
        let (ready, _) = settling.observe(t0 + settle * 2, vec![("a".into(), stamp(1))], settle);
        assert!(ready.is_empty(), "seen anew, it settles anew");
    }
}
