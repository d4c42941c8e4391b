//! The sending side of an acknowledged log (the journal, the job outbox):
//! which records central holds, which are in flight, which to read next.
//!
//! A record is kept at the site until central acknowledges it, so the log
//! is read again from `acked` after every reconnection; central stores
//! records under their sequence numbers, so a record sent twice counts once.
//! At most `window` batches are in flight: the site never reads faster than
//! central stores (end-to-end backpressure), and memory is bounded by
//! `window × batch` records whatever the backlog.

use std::collections::VecDeque;

use crate::message::{Refusal, RefusalCode};

/// What to read from the log next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// Read records with a sequence above this...
    pub after: u64,
    /// ...at most this many.
    pub limit: usize,
}

/// One acknowledged log's sending state.
#[derive(Debug, Clone)]
pub struct Upload {
    acked: u64,
    sent: u64,
    available: u64,
    in_flight: VecDeque<u64>,
    loading: bool,
    window: usize,
    batch: usize,
}

impl Upload {
    /// An upload with at most `window` batches of `batch` records in flight.
    pub fn new(window: usize, batch: usize) -> Upload {
        Upload {
            acked: 0,
            sent: 0,
            available: 0,
            in_flight: VecDeque::new(),
            loading: false,
            window: window.max(1),
            batch: batch.max(1),
        }
    }

    /// A new session: central holds everything through `acked`; whatever
    /// was in flight on an earlier connection is sent again.
    pub fn start(&mut self, acked: u64) {
        self.acked = acked;
        self.sent = acked;
        self.in_flight.clear();
        self.loading = false;
        self.available = self.available.max(acked);
    }

    /// The log now holds records through `latest`.
    pub fn available(&mut self, latest: u64) {
        self.available = self.available.max(latest);
    }

    /// The next read, if one is due: nothing is being read, the window has
    /// room and there is something not yet sent.
    pub fn next_load(&mut self) -> Option<Load> {
        if self.loading || self.in_flight.len() >= self.window || self.sent >= self.available {
            return None;
        }
        self.loading = true;
        Some(Load {
            after: self.sent,
            limit: self.batch,
        })
    }

    /// The read after `after` found records through `last` (`None`:
    /// nothing), which are now being sent.
    pub fn loaded(&mut self, after: u64, last: Option<u64>) {
        self.loading = false;
        if after != self.sent {
            // Read for an earlier session: its records go out again from
            // the new session's start.
            return;
        }
        match last {
            Some(last) if last > self.sent => {
                self.sent = last;
                self.in_flight.push_back(last);
                self.available = self.available.max(last);
            }
            // The log holds nothing more than was sent.
            _ => self.available = self.sent,
        }
    }

    /// Central stored everything through `through`. Returns the new
    /// acknowledged sequence when it moved. Acknowledging what was never
    /// sent is a protocol error.
    pub fn acked(&mut self, through: u64) -> Result<Option<u64>, Refusal> {
        if through > self.sent {
            return Err(Refusal::new(
                RefusalCode::OutOfOrder,
                format!(
                    "acknowledged sequence {through}, but only {} was sent",
                    self.sent
                ),
            ));
        }
        if through <= self.acked {
            return Ok(None);
        }
        self.acked = through;
        while self.in_flight.front().is_some_and(|&last| last <= through) {
            self.in_flight.pop_front();
        }
        Ok(Some(through))
    }

    /// Highest sequence central acknowledged.
    pub fn acked_through(&self) -> u64 {
        self.acked
    }

    /// Records known to be in the log and not yet acknowledged (sequence
    /// numbers may have gaps, so this is an upper bound).
    pub fn backlog(&self) -> u64 {
        self.available.saturating_sub(self.acked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stop_at_the_window_and_resume_with_acks() {
        let mut up = Upload::new(2, 100);
        up.start(0);
        up.available(1000);
        let first = up.next_load().unwrap();
        assert_eq!(
            first,
            Load {
                after: 0,
                limit: 100
            }
        );
        // One read at a time.
        assert_eq!(up.next_load(), None);
        up.loaded(0, Some(100));
        assert_eq!(up.next_load().unwrap().after, 100);
        up.loaded(100, Some(200));
        // Two batches in flight: the window is full.
        assert_eq!(up.next_load(), None);
        assert_eq!(up.acked(100).unwrap(), Some(100));
        assert_eq!(up.next_load().unwrap().after, 200);
        assert_eq!(up.backlog(), 900);
    }

    #[test]
    fn a_new_session_resends_from_what_central_holds() {
        let mut up = Upload::new(4, 10);
        up.start(0);
        up.available(30);
        for after in [0, 10, 20] {
            assert_eq!(up.next_load().unwrap().after, after);
            up.loaded(after, Some(after + 10));
        }
        up.acked(10).unwrap();
        // The connection breaks; central says it holds through 20 (it
        // stored the second batch but its ack was lost).
        up.start(20);
        assert_eq!(
            up.next_load().unwrap(),
            Load {
                after: 20,
                limit: 10
            }
        );
        // A read begun in the old session does not move the new one.
        up.loaded(10, Some(20));
        assert_eq!(up.next_load().unwrap().after, 20);
    }

    #[test]
    fn an_empty_read_settles_what_is_available() {
        let mut up = Upload::new(4, 10);
        up.start(5);
        up.available(9);
        let load = up.next_load().unwrap();
        up.loaded(load.after, None);
        assert_eq!(up.next_load(), None);
        assert_eq!(up.backlog(), 0);
        // Gaps in sequence numbers are fine: a batch ends where it ends.
        up.available(40);
        let load = up.next_load().unwrap();
        up.loaded(load.after, Some(37));
        assert_eq!(up.acked(37).unwrap(), Some(37));
    }

    #[test]
    fn acknowledging_the_unsent_is_refused_and_old_acks_are_ignored() {
        let mut up = Upload::new(4, 10);
        up.start(50);
        assert_eq!(up.acked(50).unwrap(), None);
        assert_eq!(up.acked(3).unwrap(), None);
        assert_eq!(up.acked(51).unwrap_err().code, RefusalCode::OutOfOrder);
    }
}
