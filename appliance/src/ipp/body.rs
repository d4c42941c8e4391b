//! An HTTP request body as a bounded, time-limited byte stream.
//!
//! Reads fail with `TimedOut` when the client sends nothing for the idle
//! timeout, or less than a floor rate over a window of the time the server
//! spent waiting for it ([`RateFloor`]: a client trickling a byte every few
//! seconds stays inside any idle timeout and would otherwise hold its
//! upload's resources for ever; time the server is not reading is not held
//! against the client), so a slow or
//! stalled client frees what it holds and never blocks anyone else; and
//! with `InvalidData` once more than the current limit has been read, which
//! bounds the IPP attribute section before the document starts (the limit
//! is lifted for the document, whose size intake checks).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant as StdInstant};

use bytes::{Buf, Bytes};
use hyper::body::{Body, Incoming};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::ipp_wire::guard::AttributeGuard;

/// The least a client must send: `bytes_per_sec` on average over each
/// `window` (0 bytes per second: no floor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateFloor {
    /// Bytes per second, averaged over a window.
    pub bytes_per_sec: u64,
    /// The window.
    pub window: Duration,
}

/// A body read failed because the client sent too slowly.
#[derive(Debug, thiserror::Error)]
#[error(
    "the client sent less than {min_bytes_per_sec} bytes/s over {window_secs} s; request abandoned"
)]
pub struct TooSlow {
    /// The floor it fell under.
    pub min_bytes_per_sec: u64,
    /// The window it was measured over.
    pub window_secs: u64,
}

/// The bytes a client sent against the time the server spent waiting for
/// them. Only waiting counts: while the server is not reading (its own
/// buffers full, the disk slow), the client cannot send, and is not blamed.
#[derive(Debug)]
struct RateCheck {
    floor: RateFloor,
    /// Since when the server has been waiting for the client, if it is.
    waiting_since: Option<StdInstant>,
    /// Waiting time and bytes in the current window.
    waited: Duration,
    bytes: u64,
}

impl RateCheck {
    fn new(floor: RateFloor) -> RateCheck {
        RateCheck {
            floor,
            waiting_since: None,
            waited: Duration::ZERO,
            bytes: 0,
        }
    }

    /// The server asked for data at `now` and none was there.
    fn waiting(&mut self, now: StdInstant) {
        self.waiting_since.get_or_insert(now);
    }

    /// `n` bytes arrived at `now`; an error once a window's worth of
    /// waiting has brought fewer bytes than the floor asks for.
    fn arrived(&mut self, n: usize, now: StdInstant) -> Result<(), TooSlow> {
        if let Some(since) = self.waiting_since.take() {
            self.waited += now.saturating_duration_since(since);
        }
        self.bytes = self.bytes.saturating_add(n as u64);
        if self.waited < self.floor.window {
            return Ok(());
        }
        let needed = self
            .floor
            .bytes_per_sec
            .saturating_mul(self.waited.as_secs());
        if self.bytes < needed {
            return Err(TooSlow {
                min_bytes_per_sec: self.floor.bytes_per_sec,
                window_secs: self.floor.window.as_secs(),
            });
        }
        self.waited = Duration::ZERO;
        self.bytes = 0;
        Ok(())
    }
}

/// See the module documentation.
pub struct BodyReader {
    body: Incoming,
    chunk: Bytes,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    limit: Option<u64>,
    consumed: u64,
    guard: Option<AttributeGuard>,
    rate: Option<RateCheck>,
    /// An error was reported: later reads end at once (nothing sensible follows).
    failed: bool,
}

impl BodyReader {
    /// Wraps `body`; reads beyond `limit` bytes fail until [`Self::set_limit`]
    /// lifts it, and reads fail once the client falls under `floor`.
    pub fn new(body: Incoming, idle: Duration, limit: Option<u64>, floor: RateFloor) -> BodyReader {
        let rate = (floor.bytes_per_sec > 0).then(|| RateCheck::new(floor));
        BodyReader {
            body,
            chunk: Bytes::new(),
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
            limit,
            consumed: 0,
            guard: Some(AttributeGuard::default()),
            rate,
            failed: false,
        }
    }

    /// Replaces the byte limit (counted from the start of the body).
    pub fn set_limit(&mut self, limit: Option<u64>) {
        self.limit = limit;
    }

    /// Bytes handed out so far.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }
}

impl AsyncRead for BodyReader {
    /// Fills `buf` from as many body frames as are ready, so a reader on
    /// another thread makes one round trip per buffer, not per frame.
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(Ok(()));
        }
        let result = this.fill(cx, buf);
        if matches!(result, Poll::Ready(Err(_))) {
            this.failed = true;
        }
        result
    }
}

impl BodyReader {
    fn fill(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let start = buf.filled().len();
        while buf.remaining() > 0 {
            if self.chunk.is_empty() {
                match Pin::new(&mut self.body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Ok(data) = frame.into_data() {
                            self.chunk = data;
                        }
                        if let Some(rate) = &mut self.rate
                            && let Err(slow) = rate.arrived(self.chunk.len(), StdInstant::now())
                        {
                            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, slow)));
                        }
                        let next = Instant::now() + self.idle;
                        self.deadline.as_mut().reset(next);
                        continue;
                    }
                    Poll::Ready(Some(Err(e))) => {
                        if buf.filled().len() > start {
                            break; // hand out what we have; the error comes next time
                        }
                        return Poll::Ready(Err(io::Error::other(e)));
                    }
                    Poll::Ready(None) => break,
                    Poll::Pending => {
                        if let Some(rate) = &mut self.rate {
                            rate.waiting(StdInstant::now());
                        }
                        if buf.filled().len() > start {
                            break;
                        }
                        ready!(self.deadline.as_mut().poll(cx));
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "client sent nothing within the idle timeout",
                        )));
                    }
                }
            }
            let n = self.chunk.len().min(buf.remaining());
            if let Some(limit) = self.limit
                && self.consumed + n as u64 > limit
            {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::FileTooLarge,
                    format!(
                        "the request's attributes exceed this appliance's limit of {limit} bytes"
                    ),
                )));
            }
            if let Some(guard) = &mut self.guard {
                if let Err(e) = guard.feed(&self.chunk[..n]) {
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
                }
                if guard.is_done() {
                    self.guard = None;
                }
            }
            buf.put_slice(&self.chunk[..n]);
            self.chunk.advance(n);
            self.consumed += n as u64;
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floor() -> RateFloor {
        RateFloor {
            bytes_per_sec: 1000,
            window: Duration::from_secs(10),
        }
    }

    /// Waits from `from` to `to` (seconds after `start`) for `n` bytes.
    fn wait_for_bytes(
        check: &mut RateCheck,
        start: StdInstant,
        from: u64,
        to: u64,
        n: usize,
    ) -> Result<(), TooSlow> {
        check.waiting(start + Duration::from_secs(from));
        check.arrived(n, start + Duration::from_secs(to))
    }

    #[test]
    fn a_trickle_is_cut_after_one_window_of_waiting() {
        let start = StdInstant::now();
        let mut check = RateCheck::new(floor());
        // A byte every two seconds: inside any idle timeout, far under the floor.
        let cut =
            (1..=10u64).find(|i| wait_for_bytes(&mut check, start, 2 * i - 2, 2 * i, 1).is_err());
        assert_eq!(cut, Some(5), "cut once 10 s of waiting brought 5 bytes");
    }

    #[test]
    fn a_steady_client_is_measured_window_after_window() {
        let start = StdInstant::now();
        let mut check = RateCheck::new(floor());
        for s in 1..=60u64 {
            // 1,500 bytes a second passes every window.
            assert!(wait_for_bytes(&mut check, start, s - 1, s, 1500).is_ok());
        }
        // A burst up front does not buy a later stall: each window counts.
        let mut check = RateCheck::new(floor());
        assert!(wait_for_bytes(&mut check, start, 0, 10, 1_000_000).is_ok());
        assert!(wait_for_bytes(&mut check, start, 10, 20, 10).is_err());
    }

    #[test]
    fn time_the_server_does_not_read_is_not_held_against_the_client() {
        let start = StdInstant::now();
        let mut check = RateCheck::new(floor());
        // Data is there whenever the server asks, however rarely it does
        // (a busy disk): no waiting, no verdict.
        for s in (0..600u64).step_by(30) {
            assert!(check.arrived(100, start + Duration::from_secs(s)).is_ok());
        }
        // Waiting 1 s for each 1,000 bytes, with long pauses between reads.
        for s in (0..600u64).step_by(30) {
            assert!(wait_for_bytes(&mut check, start, s, s + 1, 1000).is_ok());
        }
    }
}
