//! An HTTP request body as a bounded, time-limited byte stream.
//!
//! Reads fail with `TimedOut` when the client sends nothing for the idle
//! timeout, so a stalled client frees its connection and never blocks
//! anyone else; and with `InvalidData` once more than the current limit has
//! been read, which bounds the IPP attribute section before the document
//! starts (the limit is lifted for the document, whose size intake checks).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use hyper::body::{Body, Incoming};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::guard::AttributeGuard;

/// See the module documentation.
pub struct BodyReader {
    body: Incoming,
    chunk: Bytes,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    limit: Option<u64>,
    consumed: u64,
    guard: Option<AttributeGuard>,
    /// An error was reported: later reads end at once (nothing sensible follows).
    failed: bool,
}

impl BodyReader {
    /// Wraps `body`; reads beyond `limit` bytes fail until [`Self::set_limit`] lifts it.
    pub fn new(body: Incoming, idle: Duration, limit: Option<u64>) -> BodyReader {
        BodyReader {
            body,
            chunk: Bytes::new(),
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
            limit,
            consumed: 0,
            guard: Some(AttributeGuard::default()),
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
