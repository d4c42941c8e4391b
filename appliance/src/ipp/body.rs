//! An HTTP request body as a bounded, time-limited byte stream.
//!
//! Reads fail with `TimedOut` when the client sends nothing for the idle
//! timeout, or less than a floor rate over a window ([`RateFloor`]: a
//! client trickling a byte every few seconds stays inside any idle timeout
//! and would otherwise hold its upload's resources for ever), so a slow or
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

use super::guard::AttributeGuard;

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

/// Bytes seen in the current window of a [`RateFloor`].
#[derive(Debug)]
struct RateCheck {
    floor: RateFloor,
    window_start: StdInstant,
    bytes: u64,
}

impl RateCheck {
    fn new(floor: RateFloor, now: StdInstant) -> RateCheck {
        RateCheck {
            floor,
            window_start: now,
            bytes: 0,
        }
    }

    /// Counts `n` bytes arriving at `now`; an error once a whole window
    /// has passed with fewer bytes than the floor asks for.
    fn record(&mut self, n: usize, now: StdInstant) -> Result<(), TooSlow> {
        self.bytes = self.bytes.saturating_add(n as u64);
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed < self.floor.window {
            return Ok(());
        }
        let needed = self.floor.bytes_per_sec.saturating_mul(elapsed.as_secs());
        if self.bytes < needed {
            return Err(TooSlow {
                min_bytes_per_sec: self.floor.bytes_per_sec,
                window_secs: self.floor.window.as_secs(),
            });
        }
        self.window_start = now;
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
        let rate = (floor.bytes_per_sec > 0).then(|| RateCheck::new(floor, StdInstant::now()));
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
                            && let Err(slow) = rate.record(self.chunk.len(), StdInstant::now())
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

    #[test]
    fn a_trickle_is_cut_after_one_window() {
        let start = StdInstant::now();
        let mut check = RateCheck::new(floor(), start);
        // A byte every two seconds: inside any idle timeout, far under the floor.
        let mut cut = None;
        for i in 1..=10u64 {
            if check.record(1, start + Duration::from_secs(2 * i)).is_err() {
                cut = Some(2 * i);
                break;
            }
        }
        assert_eq!(cut, Some(10));
    }

    #[test]
    fn a_steady_client_is_measured_window_after_window() {
        let start = StdInstant::now();
        let mut check = RateCheck::new(floor(), start);
        for s in 1..=60u64 {
            // 1,500 bytes a second passes every window.
            assert!(check.record(1500, start + Duration::from_secs(s)).is_ok());
        }
        // A burst up front does not buy a later stall: each window counts.
        let mut check = RateCheck::new(floor(), start);
        assert!(
            check
                .record(1_000_000, start + Duration::from_secs(10))
                .is_ok()
        );
        assert!(check.record(10, start + Duration::from_secs(20)).is_err());
    }
}
