//! The server's outbound half of stream management (XEP-0198): the stanzas written to a
//! client and not yet acknowledged, and how many were written.
//!
//! The connection's writer records every stanza it writes once a [`Outbound::Track`]
//! marker has passed through its queue (so nothing written before `<enabled/>` counts),
//! and asks for an acknowledgement at the end of a burst; the read loop applies the
//! client's `<a h='…'/>`. What is left unacknowledged when a connection is lost is what a
//! resumption sends again, or what goes to offline storage when the session ends.
//!
//! [`Outbound::Track`]: super::Outbound::Track

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::xml::Element;

pub const NS_SM: &str = "urn:xmpp:sm:3";

/// Sequence numbers are counted modulo 2^32 (XEP-0198 §5).
pub type Seq = u32;

/// Stanzas written to one client and not yet acknowledged, bounded in bytes.
#[derive(Debug)]
pub struct AckLog {
    inner: Mutex<Inner>,
    /// Bytes of unacknowledged stanzas allowed before the client counts as not acking.
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct Inner {
    /// Oldest first, with each stanza's cost as the send queue counted it.
    unacked: VecDeque<(Arc<Element>, usize)>,
    bytes: usize,
    /// Stanzas written so far (the `h` the client will report once it has them all).
    sent: Seq,
    /// An `<r/>` went out and no `<a/>` came back since.
    requested: bool,
}

/// The client acknowledged more stanzas than were sent to it (XEP-0198 §4:
/// `<handled-count-too-high/>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the client acknowledged {h} stanzas, {sent} were sent")]
pub struct TooHigh {
    pub h: Seq,
    pub sent: Seq,
}

/// What the writer should do after recording a stanza.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Kept,
    /// The client holds more unacknowledged bytes than allowed: it is not acking.
    OverBudget,
}

impl AckLog {
    /// A log whose count starts at `sent` (0 for `<enable/>`, the client's `h` on resumption).
    pub fn new(sent: Seq, max_bytes: usize) -> Arc<AckLog> {
        Arc::new(AckLog {
            inner: Mutex::new(Inner {
                sent,
                ..Inner::default()
            }),
            max_bytes,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("ack log lock")
    }

    /// The writer wrote `stanza` (which cost `cost` in the send queue).
    pub fn record(&self, stanza: Arc<Element>, cost: usize) -> Recorded {
        let mut inner = self.lock();
        inner.sent = inner.sent.wrapping_add(1);
        inner.bytes += cost;
        inner.unacked.push_back((stanza, cost));
        if inner.bytes > self.max_bytes {
            Recorded::OverBudget
        } else {
            Recorded::Kept
        }
    }

    /// Whether to ask for an acknowledgement now: something is unacknowledged and no
    /// request is outstanding. Asking marks one as outstanding.
    pub fn request_due(&self) -> bool {
        let mut inner = self.lock();
        let due = !inner.requested && !inner.unacked.is_empty();
        inner.requested |= due;
        due
    }

    /// The client has handled `h` stanzas: forget those; refuse a count past what was sent.
    pub fn ack(&self, h: Seq) -> Result<(), TooHigh> {
        let mut inner = self.lock();
        let acked = inner.sent.wrapping_sub(inner.unacked.len() as Seq);
        let newly = h.wrapping_sub(acked) as usize;
        if newly > inner.unacked.len() {
            return Err(TooHigh { h, sent: inner.sent });
        }
        for _ in 0..newly {
            if let Some((_, cost)) = inner.unacked.pop_front() {
                inner.bytes -= cost;
            }
        }
        inner.requested = false;
        Ok(())
    }

    /// Stanzas written so far.
    pub fn sent(&self) -> Seq {
        self.lock().sent
    }

    /// Take what is still unacknowledged, oldest first.
    pub fn take_unacked(&self) -> Vec<Arc<Element>> {
        let mut inner = self.lock();
        inner.bytes = 0;
        inner.unacked.drain(..).map(|(s, _)| s).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stanza(n: u32) -> Arc<Element> {
        Arc::new(Element::new("message", crate::xml::NS_CLIENT).attr("id", n.to_string()))
    }

    fn ids(v: &[Arc<Element>]) -> Vec<String> {
        v.iter().map(|s| s.get_attr("id").unwrap().to_string()).collect()
    }

    #[test]
    fn acks_forget_what_the_client_has() {
        let log = AckLog::new(0, 1 << 20);
        for n in 1..=5 {
            assert_eq!(log.record(stanza(n), 10), Recorded::Kept);
        }
        assert!(log.request_due());
        assert!(!log.request_due(), "one request outstanding at a time");
        log.ack(2).unwrap();
        assert!(log.request_due(), "an ack clears the outstanding request");
        log.ack(2).unwrap(); // the same count again changes nothing
        assert_eq!(log.ack(6), Err(TooHigh { h: 6, sent: 5 }));
        assert_eq!(ids(&log.take_unacked()), ["3", "4", "5"]);
    }

    #[test]
    fn counts_wrap_around_modulo_two_to_the_32() {
        let log = AckLog::new(u32::MAX - 1, 1 << 20);
        for n in 0..4 {
            log.record(stanza(n), 1);
        }
        assert_eq!(log.sent(), 2);
        log.ack(u32::MAX).unwrap();
        assert_eq!(ids(&log.take_unacked()), ["1", "2", "3"]);
    }

    #[test]
    fn a_client_that_never_acks_goes_over_budget() {
        let log = AckLog::new(0, 25);
        assert_eq!(log.record(stanza(1), 10), Recorded::Kept);
        assert_eq!(log.record(stanza(2), 10), Recorded::Kept);
        assert_eq!(log.record(stanza(3), 10), Recorded::OverBudget);
        log.ack(3).unwrap();
        assert_eq!(log.record(stanza(4), 10), Recorded::Kept);
    }
}
