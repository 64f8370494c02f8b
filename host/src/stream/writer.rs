//! The write side of a stream: one task per connection drains a queue bounded in bytes.
//!
//! Everything that wants to reach a client — its own session, the router delivering a
//! message from someone else, a plugin — enqueues through the connection's [`Outbox`].
//! Writes are coalesced: the task flushes only when the queue is momentarily empty, so a
//! burst costs one TLS record rather than one per stanza.
//!
//! Nobody ever waits on another connection's queue. [`Outbox::try_send`] never waits: a
//! queue over its byte budget means the client stopped reading, and the connection is
//! closed at once with `<policy-violation/>`. Closing is a signal beside the queue, not an
//! entry in it, so it never waits behind queued stanzas: the writer drops the queue (handing
//! its messages back to be routed elsewhere), finishes the write in progress, writes the
//! error and drops the socket. A write that makes no progress for the send timeout ends
//! the connection too, so a stalled client holds at most its budget, and only that long.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch, Notify};

use super::acks::{AckLog, Recorded, NS_SM};
use super::csi::{self, Held, Urgency};
use super::error::{StreamError, StreamErrorCondition};
use crate::xml::{Element, Node};

#[derive(Debug, Clone)]
/// Kept small — 16 bytes and a tag: every connection's queue allocates room for 32 items at
/// once (a tokio channel block), whether or not anything is ever queued.
pub enum Outbound {
    /// Pre-serialized bytes (stream headers, features, SASL exchanges).
    Raw(Box<str>),
    /// A routed stanza, shared so a broadcast serializes per recipient without cloning trees.
    Stanza(Arc<Element>),
    /// Close the stream after what is already queued, optionally with a stream error first
    /// (RFC 6120 §4.4, §4.9). Sending it is the same as [`Outbox::close`].
    Close(Option<Box<StreamError>>),
    /// Stream management is on from here (XEP-0198): every stanza after this marker is
    /// recorded in the log until the client acknowledges it. A marker rather than a flag,
    /// so the count starts exactly after the `<enabled/>` or `<resumed/>` queued before it.
    Track(Arc<AckLog>),
    /// The client said it is active (`true`) or inactive (XEP-0352): from here, what can
    /// wait is held back while it is inactive ([`super::csi`]).
    ClientState(bool),
}

/// How much one connection may have queued and how long a write may stall.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    /// Budget of queued bytes (stanzas counted at their serialized size, plus
    /// [`ITEM_OVERHEAD`] each). One item is always accepted into an empty queue.
    pub max_bytes: usize,
    /// A write that makes no progress for this long ends the connection.
    pub send_timeout: Duration,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            max_bytes: 1024 * 1024,
            send_timeout: Duration::from_secs(30),
        }
    }
}

/// What a queued item costs beyond its bytes: the bookkeeping of a tiny stanza is not free.
pub const ITEM_OVERHEAD: usize = 64;

/// Writes are coalesced up to about this many bytes before they go to the socket.
const BATCH_BYTES: usize = 64 * 1024;

/// Why an item was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The queue was over its budget: the client is not reading. The stream is now closing.
    #[error("the client's send queue is full")]
    Full,
    /// The stream is closing or gone.
    #[error("the stream is closed")]
    Closed,
}

/// Where a connection's close stands; written by closers, watched by the writer, the
/// session's read loop and paced senders.
#[derive(Debug, Clone)]
enum State {
    Open,
    /// Write what is queued (a `Close` marker ends the queue), then close.
    Draining,
    /// Close now: drop the queue, finish the write in flight, write `err` if any, close.
    Aborting(Option<StreamError>),
}

struct Shared {
    state: watch::Sender<State>,
    /// Bytes (with overhead) queued and not yet taken by the writer.
    queued: AtomicUsize,
    limits: QueueLimits,
    /// Woken when the writer takes items, for [`Outbox::send`].
    room: Notify,
}

impl Shared {
    /// Reserve `cost` if the queue stays within `limit` (or is empty).
    fn reserve(&self, cost: usize, limit: usize) -> bool {
        self.queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used == 0 || used + cost <= limit).then_some(used + cost)
            })
            .is_ok()
    }

    fn release(&self, cost: usize) {
        if cost > 0 {
            self.queued.fetch_sub(cost, Ordering::AcqRel);
            self.room.notify_waiters();
        }
    }

    fn is_open(&self) -> bool {
        matches!(*self.state.borrow(), State::Open)
    }

    /// Move to `next` unless a close is already under way (`Aborting` overrides
    /// `Draining`); returns whether the state changed.
    fn transition(&self, next: State) -> bool {
        self.state.send_if_modified(|s| {
            let allowed = matches!((&*s, &next), (State::Open, _) | (State::Draining, State::Aborting(_)));
            if allowed {
                *s = next;
            }
            allowed
        })
    }
}

/// The sending side of one connection's queue: cheap to clone, shared by everyone who
/// writes to that client.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<(Outbound, Cost)>,
    shared: Arc<Shared>,
}

/// The historical name of a connection's sending side.
pub type OutboundTx = Outbox;

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("queued", &self.shared.queued.load(Ordering::Relaxed))
            .field("state", &*self.shared.state.borrow())
            .finish()
    }
}

/// The writer's side: the queue and the close signal.
pub struct Inbox {
    rx: mpsc::UnboundedReceiver<(Outbound, Cost)>,
    shared: Arc<Shared>,
}

pub fn channel(limits: QueueLimits) -> (Outbox, Inbox) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (state, _) = watch::channel(State::Open);
    let shared = Arc::new(Shared {
        state,
        queued: AtomicUsize::new(0),
        limits,
        room: Notify::new(),
    });
    (
        Outbox {
            tx,
            shared: shared.clone(),
        },
        Inbox { rx, shared },
    )
}

fn overflow() -> StreamError {
    StreamError::new(StreamErrorCondition::PolicyViolation, "too many unread stanzas")
}

fn unacknowledged() -> StreamError {
    StreamError::new(StreamErrorCondition::PolicyViolation, "too many unacknowledged stanzas")
}

impl Outbox {
    /// Queue without waiting. A queue over its budget closes the stream at once with
    /// `<policy-violation/>` and frees what it held; the caller routes the item elsewhere.
    pub fn try_send(&self, item: Outbound) -> Result<(), Refused> {
        let item = match item {
            Outbound::Close(err) => {
                self.close(err.map(|e| *e));
                return Ok(());
            }
            item => item,
        };
        if !self.shared.is_open() {
            return Err(Refused::Closed);
        }
        let cost = cost(&item);
        if !self.shared.reserve(cost, self.shared.limits.max_bytes) {
            let queued = self.shared.queued.load(Ordering::Relaxed);
            if self.shared.transition(State::Aborting(Some(overflow()))) {
                tracing::warn!(queued, "send queue full: the client is not reading; closing the stream");
            }
            return Err(Refused::Full);
        }
        self.enqueue(item, cost)
    }

    /// Queue, waiting while the queue is more than half full: for the connection's own task
    /// and for offline delivery, which may pace themselves on the client's reading (the other
    /// half stays free for live traffic). Never use it from another session's task. Fails
    /// once the stream closes, which a stalled client causes within the send timeout.
    pub async fn send(&self, item: Outbound) -> Result<(), Refused> {
        let item = match item {
            Outbound::Close(err) => {
                self.close(err.map(|e| *e));
                return Ok(());
            }
            item => item,
        };
        let cost = cost(&item);
        let mut state = self.shared.state.subscribe();
        loop {
            let room = self.shared.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if !self.shared.is_open() {
                return Err(Refused::Closed);
            }
            if self.shared.reserve(cost, self.shared.limits.max_bytes / 2) {
                return self.enqueue(item, cost);
            }
            tokio::select! {
                _ = &mut room => {}
                _ = state.changed() => {}
            }
        }
    }

    fn enqueue(&self, item: Outbound, cost: usize) -> Result<(), Refused> {
        // A cost is at most the queue's byte budget, far below 4 GiB.
        self.tx.send((item, cost as Cost)).map_err(|_| {
            self.shared.release(cost);
            Refused::Closed
        })
    }

    /// Close after what is already queued (with `err` first, if any). Later items are
    /// refused; a close already under way wins.
    pub fn close(&self, err: Option<StreamError>) {
        if self.shared.transition(State::Draining) {
            // The marker costs nothing, so it always fits; if the writer is gone, so is the stream.
            let _ = self.tx.send((Outbound::Close(err.map(Box::new)), 0));
        }
    }

    /// Close now: the queue is dropped, `err` (if any) is written after the write in
    /// flight, and the connection ends.
    pub fn abort(&self, err: Option<StreamError>) {
        self.shared.transition(State::Aborting(err));
    }

    pub fn is_open(&self) -> bool {
        self.shared.is_open()
    }

    /// Whether the stream is closing because someone closed it ([`Outbox::close`]: a
    /// conflict, a removed account), rather than because its connection failed: a write
    /// failed or stalled, or the client stopped reading or acknowledging.
    pub fn is_draining(&self) -> bool {
        matches!(*self.shared.state.borrow(), State::Draining)
    }

    /// Resolves once the stream is closing for any reason (a close, an overflow, a stalled
    /// or failed write), so the session's read loop can end with it.
    pub async fn closed(&self) {
        let mut state = self.shared.state.subscribe();
        let _ = state.wait_for(|s| !matches!(s, State::Open)).await;
    }
}

impl Inbox {
    /// Take the stanzas queued now, in order, without a writer: a session held for
    /// resumption (XEP-0198) has a queue nobody writes out until its client comes back.
    pub fn take_stanzas(&mut self) -> Vec<Arc<Element>> {
        let mut stanzas = Vec::new();
        let mut freed = 0;
        while let Ok((item, cost)) = self.rx.try_recv() {
            freed += cost as usize;
            if let Outbound::Stanza(stanza) = item {
                stanzas.push(stanza);
            }
        }
        self.shared.release(freed);
        stanzas
    }
}

/// Reading a queue without a writer or a socket, for in-process tests of the services
/// (`crate::testkit`): what is queued now, in order, taken as the writer would take it.
#[cfg(test)]
impl Inbox {
    pub(crate) fn take_queued(&mut self) -> Vec<Outbound> {
        let mut taken = Vec::new();
        while let Ok((item, cost)) = self.rx.try_recv() {
            self.shared.release(cost as usize);
            taken.push(item);
        }
        taken
    }
}

/// An item's cost as the queue carries it (u32 keeps each queued item at 32 bytes).
type Cost = u32;

/// What an item counts against the queue's budget: its serialized size, roughly, plus
/// [`ITEM_OVERHEAD`].
fn cost(item: &Outbound) -> usize {
    ITEM_OVERHEAD
        + match item {
            Outbound::Raw(s) => s.len(),
            Outbound::Stanza(e) => serialized_len(e),
            Outbound::Close(_) | Outbound::Track(_) | Outbound::ClientState(_) => 0,
        }
}

/// About the length of `e` serialized (escaping aside): a tree walk, far cheaper than
/// serializing, and an upper bound on nothing but a fair measure of what the queue holds.
fn serialized_len(e: &Element) -> usize {
    let mut n = 2 * e.name.len() + 5 + e.ns.len() + 9;
    for a in &e.attrs {
        // A namespaced attribute may bring its prefix declaration along.
        n += a.name.len() + a.value.len() + 4 + a.ns.as_ref().map_or(0, |ns| ns.len() + 16);
    }
    for child in &e.children {
        n += match child {
            Node::Element(c) => serialized_len(c),
            Node::Text(t) => t.len(),
        };
    }
    n
}

/// How the writer stopped taking from the queue.
enum Ending {
    /// A `Close` marker: write it and end.
    Close(Option<StreamError>),
    /// Abort: write `err` (if any) after what is in flight, then end.
    Abort(Option<StreamError>),
    /// The socket failed or stalled, or every sender is gone: just end.
    Dead,
}

/// Drain `inbox` into `out` until the stream closes. As soon as the writer stops taking
/// from the queue, the stanzas still in it are sent on `unsent`, so the caller can route
/// them elsewhere at once instead of losing them; the writer then finishes the socket.
pub async fn run_writer<W: AsyncWrite + Unpin>(
    mut out: W,
    mut inbox: Inbox,
    unsent: oneshot::Sender<Vec<Arc<Element>>>,
) {
    let timeout = inbox.shared.limits.send_timeout;
    let mut state = inbox.shared.state.subscribe();
    let mut buf = String::with_capacity(512);
    let mut unsent = Some(unsent);
    let mut acks: Option<Arc<AckLog>> = None;
    // Some while the client is inactive (XEP-0352).
    let mut held: Option<Held> = None;
    let hold_bytes = inbox.shared.limits.max_bytes / 2;
    let ending = 'outer: loop {
        let first = tokio::select! {
            biased;
            err = aborted(&mut state) => break 'outer Ending::Abort(err),
            item = inbox.rx.recv() => item,
        };
        let Some(first) = first else { break Ending::Dead };
        let mut next = Some(first);
        let mut taken = 0;
        let mut close = None;
        while let Some((item, cost)) = next.take() {
            taken += cost as usize;
            match item {
                Outbound::Raw(s) => buf.push_str(&s),
                Outbound::Stanza(e) => {
                    let cost = cost as usize;
                    match held.as_mut() {
                        None => write_stanza(&mut buf, &acks, &inbox.shared, e, cost),
                        Some(hold) => match csi::urgency(&e) {
                            Urgency::Later(key) => {
                                if !hold.hold(e, cost, key, hold_bytes) {
                                    for (s, c) in hold.take() {
                                        write_stanza(&mut buf, &acks, &inbox.shared, s, c);
                                    }
                                }
                            }
                            // Written after what was held, so the client sees the order.
                            Urgency::Now => {
                                for (s, c) in hold.take() {
                                    write_stanza(&mut buf, &acks, &inbox.shared, s, c);
                                }
                                write_stanza(&mut buf, &acks, &inbox.shared, e, cost);
                            }
                        },
                    }
                }
                Outbound::Track(log) => acks = Some(log),
                Outbound::ClientState(true) => {
                    for (s, c) in held.take().map(|mut h| h.take()).unwrap_or_default() {
                        write_stanza(&mut buf, &acks, &inbox.shared, s, c);
                    }
                }
                Outbound::ClientState(false) => {
                    held.get_or_insert_default();
                }
                Outbound::Close(err) => {
                    close = Some(err);
                    break;
                }
            }
            if buf.len() > BATCH_BYTES {
                break;
            }
            next = inbox.rx.try_recv().ok();
        }
        // One acknowledgement request per burst, at its end (and none while one is
        // outstanding): a client is asked about what it has, not once per stanza.
        if acks.as_ref().is_some_and(|log| log.request_due()) {
            buf.push_str("<r xmlns='");
            buf.push_str(NS_SM);
            buf.push_str("'/>");
        }
        inbox.shared.release(taken);
        super::trace::sent(&buf);
        let mut discarded = false;
        // Closed while the write is in flight: drop the queue now, finish the write.
        let written = write_watching(&mut out, buf.as_bytes(), timeout, Some(&mut state), || {
            discarded = true;
            hand_back(&mut inbox, &mut unsent, &mut held);
        })
        .await;
        if written.is_err() {
            break Ending::Dead;
        }
        buf.clear();
        if buf.capacity() > 8192 {
            buf = String::with_capacity(512);
        }
        if let Some(err) = close {
            break Ending::Close(err.map(|e| *e));
        }
        if discarded {
            break Ending::Abort(aborted(&mut state).await);
        }
    };
    hand_back(&mut inbox, &mut unsent, &mut held);
    let last = match ending {
        Ending::Close(err) | Ending::Abort(err) => Some(closing_bytes(err)),
        Ending::Dead => None,
    };
    if let Some(last) = last {
        if write_watching(&mut out, last.as_bytes(), timeout, None, || {})
            .await
            .is_ok()
        {
            let _ = tokio::time::timeout(timeout, out.shutdown()).await;
        }
    }
    // Whoever is still waiting to send, or reading for this connection, learns it is over.
    inbox.shared.transition(State::Aborting(None));
}

fn closing_bytes(err: Option<StreamError>) -> String {
    let mut s = err.map(|e| e.to_xml()).unwrap_or_default();
    s.push_str("</stream:stream>");
    s
}

/// The error of an abort, once the state says so.
async fn aborted(state: &mut watch::Receiver<State>) -> Option<StreamError> {
    match state.wait_for(|s| matches!(s, State::Aborting(_))).await {
        Ok(s) => match &*s {
            State::Aborting(err) => err.clone(),
            _ => None,
        },
        Err(_) => None,
    }
}

/// Write one stanza into the batch and, under stream management, note it as sent.
fn write_stanza(buf: &mut String, acks: &Option<Arc<AckLog>>, shared: &Shared, stanza: Arc<Element>, cost: usize) {
    stanza.write_to(buf, crate::xml::NS_CLIENT);
    if let Some(log) = acks {
        if log.record(stanza, cost) == Recorded::OverBudget
            && shared.transition(State::Aborting(Some(unacknowledged())))
        {
            tracing::warn!("the client acknowledges nothing: closing the stream");
        }
    }
}

/// Stop taking from the queue: refuse new items, return the stanzas held back and the
/// queued ones, in order, to the caller (once) and free the rest.
fn hand_back(inbox: &mut Inbox, unsent: &mut Option<oneshot::Sender<Vec<Arc<Element>>>>, held: &mut Option<Held>) {
    inbox.rx.close();
    let mut stanzas: Vec<Arc<Element>> = held
        .as_mut()
        .map(|h| h.take().into_iter().map(|(s, _)| s).collect())
        .unwrap_or_default();
    stanzas.extend(inbox.take_stanzas());
    if let Some(tx) = unsent.take() {
        let _ = tx.send(stanzas);
    }
}

/// Write all of `data`, each write bounded by `timeout`. With `state`: if an abort arrives
/// meanwhile, call `on_abort` once and carry on, so the client still gets whole stanzas.
async fn write_watching<W: AsyncWrite + Unpin>(
    out: &mut W,
    data: &[u8],
    timeout: Duration,
    mut state: Option<&mut watch::Receiver<State>>,
    mut on_abort: impl FnMut(),
) -> std::io::Result<()> {
    let mut pos = 0;
    while pos < data.len() {
        let step = tokio::time::timeout(timeout, out.write(&data[pos..]));
        let result = match state.as_deref_mut() {
            Some(watch) => tokio::select! {
                biased;
                _ = aborted(watch) => {
                    state = None;
                    on_abort();
                    continue;
                }
                r = step => r,
            },
            None => step.await,
        };
        match result {
            Ok(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(Ok(n)) => pos += n,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(std::io::ErrorKind::TimedOut.into()),
        }
    }
    match tokio::time::timeout(timeout, out.flush()).await {
        Ok(r) => r,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

#[cfg(test)]
mod tests {
    /// A queued item stays at 32 bytes: the channel allocates 32 of them per connection.
    #[test]
    fn a_queued_item_is_small() {
        assert!(std::mem::size_of::<(super::Outbound, super::Cost)>() <= 32);
    }

    use tokio::io::AsyncReadExt;

    use super::*;

    fn stanza(body: &str) -> Outbound {
        Outbound::Stanza(Arc::new(
            Element::new("message", crate::xml::NS_CLIENT)
                .child(Element::new("body", crate::xml::NS_CLIENT).text(body)),
        ))
    }

    fn limits(max_bytes: usize) -> QueueLimits {
        QueueLimits {
            max_bytes,
            send_timeout: Duration::from_secs(30),
        }
    }

    /// A peer that reads nothing: the queue overflows, the stream is closed at once, the
    /// queued stanzas come back without waiting on the socket, and once the peer reads it
    /// gets whole stanzas, then the error and the closing tag.
    #[tokio::test]
    async fn a_full_queue_closes_at_once_and_hands_back_its_stanzas() {
        let (mut peer, ours) = tokio::io::duplex(1024);
        let (outbox, inbox) = channel(limits(8 * 1024));
        let (unsent_tx, unsent_rx) = oneshot::channel();
        let writer = tokio::spawn(run_writer(ours, inbox, unsent_tx));
        let body = "x".repeat(1000);
        let mut accepted = 0;
        let refused = loop {
            match outbox.try_send(stanza(&body)) {
                Ok(()) => accepted += 1,
                Err(e) => break e,
            }
            tokio::task::yield_now().await;
            assert!(accepted < 1000, "the queue never filled");
        };
        assert_eq!(refused, Refused::Full);
        assert!(!outbox.is_open());
        tokio::time::timeout(Duration::from_secs(5), outbox.closed())
            .await
            .unwrap();
        let unsent = tokio::time::timeout(Duration::from_secs(5), unsent_rx)
            .await
            .unwrap()
            .unwrap();
        assert!(
            !unsent.is_empty(),
            "the queued stanzas come back to be routed elsewhere"
        );
        assert_eq!(outbox.shared.queued.load(Ordering::Relaxed), 0, "the queue is freed");
        assert_eq!(outbox.try_send(stanza("late")), Err(Refused::Closed));
        let mut out = String::new();
        peer.read_to_string(&mut out).await.unwrap();
        writer.await.unwrap();
        assert!(
            out.ends_with("too many unread stanzas</text></stream:error></stream:stream>"),
            "{out}"
        );
        assert!(out.contains("<policy-violation"), "{out}");
        assert!(out.starts_with("<message><body>"), "{out}");
    }

    /// A graceful close writes what is queued first; items after it are refused.
    #[tokio::test]
    async fn a_close_goes_out_after_what_is_queued() {
        let (mut peer, ours) = tokio::io::duplex(64 * 1024);
        let (outbox, inbox) = channel(limits(64 * 1024));
        let (unsent_tx, unsent_rx) = oneshot::channel();
        let writer = tokio::spawn(run_writer(ours, inbox, unsent_tx));
        outbox.try_send(stanza("one")).unwrap();
        outbox.try_send(stanza("two")).unwrap();
        outbox.try_send(Outbound::Close(None)).unwrap();
        assert_eq!(outbox.try_send(stanza("three")), Err(Refused::Closed));
        assert!(unsent_rx.await.unwrap().is_empty());
        writer.await.unwrap();
        let mut out = String::new();
        peer.read_to_string(&mut out).await.unwrap();
        assert_eq!(
            out,
            "<message><body>one</body></message><message><body>two</body></message></stream:stream>"
        );
    }

    /// Paced sends wait for the reader instead of overflowing, and fail once the stream
    /// closes rather than waiting for ever.
    #[tokio::test]
    async fn paced_sends_wait_for_room_and_end_with_the_stream() {
        let (mut peer, ours) = tokio::io::duplex(1024);
        let (outbox, inbox) = channel(limits(8 * 1024));
        let (unsent_tx, _unsent_rx) = oneshot::channel();
        tokio::spawn(run_writer(ours, inbox, unsent_tx));
        let body = "y".repeat(1000);
        let sender = {
            let outbox = outbox.clone();
            let body = body.clone();
            tokio::spawn(async move {
                for _ in 0..100 {
                    outbox.send(stanza(&body)).await?;
                }
                Ok::<_, Refused>(())
            })
        };
        // Read everything the hundred stanzas make: none was refused.
        let want = 100 * "<message><body></body></message>".len() + 100 * body.len();
        let mut got = vec![0u8; want];
        tokio::time::timeout(Duration::from_secs(10), peer.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        sender.await.unwrap().unwrap();
        assert!(outbox.is_open());
        // Now the peer stops reading: a paced sender blocks, and an abort releases it.
        let blocked = {
            let outbox = outbox.clone();
            tokio::spawn(async move {
                loop {
                    outbox.send(stanza(&body)).await?;
                }
                #[allow(unreachable_code)]
                Ok::<_, Refused>(())
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!blocked.is_finished());
        outbox.abort(None);
        let r = tokio::time::timeout(Duration::from_secs(5), blocked)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r, Err(Refused::Closed));
    }
}
