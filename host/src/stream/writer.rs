//! The write side of a stream: one task per connection drains a bounded queue.
//!
//! Everything that wants to reach a client — its own session, the router delivering a
//! message from someone else, a plugin — enqueues here. Writes are coalesced: the task
//! flushes only when the queue is momentarily empty, so a burst costs one TLS record
//! rather than one per stanza.

use std::sync::Arc;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::error::StreamError;
use crate::xml::Element;

#[derive(Debug, Clone)]
pub enum Outbound {
    /// Pre-serialized bytes (stream headers, features, SASL exchanges).
    Raw(String),
    /// A routed stanza, shared so a broadcast serializes per recipient without cloning trees.
    Stanza(Arc<Element>),
    /// Close the stream, optionally with a stream error first (RFC 6120 §4.4, §4.9).
    Close(Option<StreamError>),
}

pub type OutboundTx = mpsc::Sender<Outbound>;

/// Queue depth per connection. A client that lets this many stanzas pile up is not
/// reading; it is disconnected rather than allowed to grow server memory.
pub const QUEUE_DEPTH: usize = 512;

pub fn channel() -> (OutboundTx, mpsc::Receiver<Outbound>) {
    mpsc::channel(QUEUE_DEPTH)
}

/// Drain `rx` into `out` until a `Close` arrives or every sender is gone. Returns the
/// stanzas still queued behind the close (or a failed write), so the caller can route
/// them elsewhere instead of losing them.
pub async fn run_writer<W: AsyncWrite + Unpin>(mut out: W, mut rx: mpsc::Receiver<Outbound>) -> Vec<Arc<Element>> {
    let mut buf = String::with_capacity(512);
    'outer: while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let mut close = false;
        while let Some(item) = next.take() {
            match item {
                Outbound::Raw(s) => buf.push_str(&s),
                Outbound::Stanza(e) => e.write_to(&mut buf, crate::xml::NS_CLIENT),
                Outbound::Close(err) => {
                    if let Some(err) = err {
                        buf.push_str(&err.to_xml());
                    }
                    buf.push_str("</stream:stream>");
                    close = true;
                    break;
                }
            }
            if buf.len() > 64 * 1024 {
                break;
            }
            next = rx.try_recv().ok();
        }
        if out.write_all(buf.as_bytes()).await.is_err() || out.flush().await.is_err() {
            break 'outer;
        }
        buf.clear();
        if buf.capacity() > 8192 {
            buf = String::with_capacity(512);
        }
        if close {
            break;
        }
    }
    let _ = out.shutdown().await;
    rx.close();
    let mut unsent = Vec::new();
    while let Ok(item) = rx.try_recv() {
        if let Outbound::Stanza(stanza) = item {
            unsent.push(stanza);
        }
    }
    unsent
}
