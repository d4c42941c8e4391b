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
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        while this.chunk.is_empty() {
            match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        this.chunk = data;
                    }
                    let next = Instant::now() + this.idle;
                    this.deadline.as_mut().reset(next);
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(io::Error::other(e))),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => {
                    ready!(this.deadline.as_mut().poll(cx));
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "client sent nothing within the idle timeout",
                    )));
                }
            }
        }
        let n = this.chunk.len().min(buf.remaining());
        if let Some(limit) = this.limit
            && this.consumed + n as u64 > limit
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!("the request's attributes exceed this appliance's limit of {limit} bytes"),
            )));
        }
        if let Some(guard) = &mut this.guard {
            if let Err(e) = guard.feed(&this.chunk[..n]) {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
            }
            if guard.is_done() {
                this.guard = None;
            }
        }
        buf.put_slice(&this.chunk[..n]);
        this.chunk.advance(n);
        this.consumed += n as u64;
        Poll::Ready(Ok(()))
    }
}
