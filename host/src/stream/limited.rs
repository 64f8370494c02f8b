//! A byte budget in front of the XML parser.
//!
//! quick-xml buffers an event until it is complete, so a peer that sends one endless text
//! node or start tag would grow that buffer without bound. Counting what the parser
//! *consumes* (not what we read ahead) lets us refuse a stanza as soon as it passes the
//! limit, with memory bounded by the limit plus one read chunk.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncBufRead, AsyncRead, ReadBuf};

/// The error kind payload that marks "over budget", so the reader can tell it from I/O errors.
#[derive(Debug)]
pub struct OverBudget;

impl std::fmt::Display for OverBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stanza exceeds the configured size limit")
    }
}

impl std::error::Error for OverBudget {}

pub struct LimitedBufRead<R> {
    inner: R,
    consumed: usize,
    limit: usize,
    /// Total bytes consumed over the connection's life. Shared, so an idle timer can see
    /// bytes arrive (whitespace keepalives) while a read is still waiting for a whole event.
    activity: Arc<AtomicU64>,
}

impl<R> LimitedBufRead<R> {
    pub fn new(inner: R, limit: usize) -> Self {
        LimitedBufRead {
            inner,
            consumed: 0,
            limit,
            activity: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Called at every stanza boundary: the next stanza gets a fresh budget.
    pub fn reset_budget(&mut self) {
        self.consumed = 0;
    }

    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    pub fn activity(&self) -> Arc<AtomicU64> {
        self.activity.clone()
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for LimitedBufRead<R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<R: AsyncBufRead + Unpin> AsyncBufRead for LimitedBufRead<R> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        if this.consumed > this.limit {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, OverBudget)));
        }
        Pin::new(&mut this.inner).poll_fill_buf(cx)
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        let this = self.get_mut();
        this.consumed += amt;
        this.activity.fetch_add(amt as u64, Ordering::Relaxed);
        Pin::new(&mut this.inner).consume(amt)
    }
}
