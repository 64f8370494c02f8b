//! Sessions that outlive their connection (XEP-0198 resumption), on this node.
//!
//! A session that enabled resumable stream management and loses its connection is
//! *parked*: it stays bound in the session table (available, with its presence), its entry
//! points at a holding queue that keeps what arrives for it, and it keeps what its last
//! connection wrote without an acknowledgement and what that connection's queue still
//! held. A client that comes back within the wait resumes it ([`resume`]): it learns how
//! many of its stanzas we handled, and gets again, in order, everything it did not
//! acknowledge, then what arrived meanwhile. A session whose client does not come back,
//! or that is kicked or shut down while parked, ends as a closed one does ([`terminate`]):
//! contacts get its unavailable presence, and what it never acknowledged goes to the
//! account's other resources or to offline storage.
//!
//! A resumption may arrive before the old connection is noticed dead: the live session is
//! stopped and parked first, then taken over.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, Notify};

use super::bound::{self, Bound};
use super::sm::{self, ResumeId, Sm};
use super::Frontend;
use crate::sessions::Session;
use crate::stream::acks::{AckLog, Seq};
use crate::stream::writer::{self, Inbox, Outbox};
use crate::stream::{Outbound, OutboundTx};
use crate::xml::Element;

/// How long a resumption waits for the old connection of a live session to stop.
const TAKEOVER_WAIT: Duration = Duration::from_secs(5);
const TAKEOVER_POLL: Duration = Duration::from_millis(20);

/// The resumable sessions of this node, live or parked, by resumption id.
#[derive(Default)]
pub struct Resumptions {
    entries: Mutex<HashMap<ResumeId, Entry>>,
    generations: AtomicU64,
}

struct Entry {
    /// Only this account may resume the session.
    bare: String,
    state: State,
}

enum State {
    /// Its connection is up; notifying `stop` ends the connection so it can be taken over.
    Live { stop: Arc<Notify> },
    /// Waiting for its client; `generation` tells this parking from a later one.
    Parked { parked: Box<Parked>, generation: u64 },
}

/// A session without a connection, waiting to be resumed.
pub struct Parked {
    pub session: Session,
    /// The session's kill switch, which the table's entry keeps (a kick while parked ends it).
    pub kill: Arc<Notify>,
    /// Stanzas handled from the client.
    pub inbound: Seq,
    /// Stanzas written to the client by its connections since `<enable/>`.
    pub sent: Seq,
    /// Written and not acknowledged, oldest first; the last of them was number `sent`.
    pub unacked: Vec<Arc<Element>>,
    /// Queued for the lost connection and never written, in order.
    pub unsent: Vec<Arc<Element>>,
    /// The queue the session table's entry points at while parked, and its reading end.
    pub holding: Outbox,
    pub held: Inbox,
    pub wait: Duration,
    /// Dropped when the session is resumed or ended, which stops its expiry timer.
    _expiry: Option<oneshot::Sender<()>>,
}

impl Parked {
    /// Everything the client has not seen, in order: unacknowledged, unsent, held.
    fn backlog(&mut self, acked_by_client: usize) -> Vec<Arc<Element>> {
        let mut all: Vec<Arc<Element>> = self.unacked.drain(..).skip(acked_by_client).collect();
        all.append(&mut self.unsent);
        all.extend(self.held.take_stanzas());
        all
    }
}

impl Resumptions {
    /// A session just enabled resumption.
    pub fn live(&self, id: ResumeId, bare: &str, stop: Arc<Notify>) {
        self.lock().insert(
            id,
            Entry {
                bare: bare.to_string(),
                state: State::Live { stop },
            },
        );
    }

    /// A resumable session ended for good.
    pub fn forget(&self, id: &ResumeId) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ResumeId, Entry>> {
        self.entries.lock().expect("resumptions lock")
    }

    /// Park a session, returning the parking's generation; the session comes back when
    /// its entry is gone (it is then the caller's to end).
    fn park(&self, id: &ResumeId, parked: Box<Parked>) -> Result<u64, Box<Parked>> {
        let generation = self.generations.fetch_add(1, Ordering::Relaxed);
        let mut map = self.lock();
        match map.get_mut(id) {
            Some(entry) => {
                entry.state = State::Parked { parked, generation };
                Ok(generation)
            }
            None => Err(parked),
        }
    }

    /// Take the parked session `id` of `bare` for resumption, stopping its connection
    /// first if it still has one. `None` for an unknown id, another account's, or a live
    /// session that did not stop in time.
    async fn take(&self, id: &ResumeId, bare: &str) -> Option<Parked> {
        let deadline = tokio::time::Instant::now() + TAKEOVER_WAIT;
        loop {
            {
                let mut map = self.lock();
                let entry = map.get(id).filter(|e| e.bare == bare)?;
                match &entry.state {
                    State::Parked { .. } => return remove_parked(&mut map, id),
                    State::Live { stop } => stop.notify_one(),
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(TAKEOVER_POLL).await;
        }
    }

    /// Take the parked session `id` if it is still the parking `generation`.
    fn take_expired(&self, id: &ResumeId, generation: u64) -> Option<Parked> {
        let mut map = self.lock();
        match map.get(id).map(|e| &e.state) {
            Some(State::Parked { generation: g, .. }) if *g == generation => remove_parked(&mut map, id),
            _ => None,
        }
    }
}

/// Remove entry `id` and return its session if it was parked.
fn remove_parked(map: &mut HashMap<ResumeId, Entry>, id: &ResumeId) -> Option<Parked> {
    match map.remove(id)?.state {
        State::Parked { parked, .. } => Some(*parked),
        State::Live { .. } => None,
    }
}

/// A connection was lost under resumable stream management: point the session table's
/// entry at a holding queue at once, so what arrives from now on is kept for the client.
/// `None` if the session is no longer bound (a newer one took its resource): it ends.
pub fn hold(front: &Frontend, session: &Session) -> Option<(Outbox, Inbox)> {
    let (holding, held) = writer::channel(front.ctx.config.send_queue());
    front
        .ctx
        .sessions
        .retarget(&session.bare, session.id, holding.clone())
        .then_some((holding, held))
}

/// What [`park`] needs of the lost connection.
pub struct Lost {
    pub session: Session,
    pub kill: Arc<Notify>,
    pub sm: Sm,
    pub unsent: Vec<Arc<Element>>,
    pub holding: (Outbox, Inbox),
}

/// Park a session whose connection was lost (after [`hold`]) until its client resumes
/// it, it is kicked, the node shuts down, or its wait runs out.
pub async fn park(front: &Arc<Frontend>, lost: Lost) {
    let Lost {
        session,
        kill,
        sm,
        unsent,
        holding: (holding, held),
    } = lost;
    let Some((id, wait)) = sm.resumable else {
        return;
    };
    let (expiry_tx, expiry_rx) = oneshot::channel();
    let parked = Box::new(Parked {
        session,
        kill: kill.clone(),
        inbound: sm.inbound,
        sent: sm.log.sent(),
        unacked: sm.log.take_unacked(),
        unsent,
        holding,
        held,
        wait,
        _expiry: Some(expiry_tx),
    });
    tracing::info!(jid = %parked.session.jid, unacked = parked.unacked.len(), "connection lost: session held for resumption");
    let generation = match front.resumptions.park(&id, parked) {
        Ok(g) => g,
        Err(parked) => return terminate(front, *parked).await,
    };
    let front = front.clone();
    let tasks = front.tasks.clone();
    tasks.spawn("resumable session", async move {
        let killed = tokio::select! {
            _ = tokio::time::sleep(wait) => false,
            _ = kill.notified() => true,
            _ = front.tasks.signalled() => false,
            // Resumed: its Parked, holding the sender, was taken and dropped.
            _ = expiry_rx => return,
        };
        match front.resumptions.take_expired(&id, generation) {
            Some(parked) => {
                tracing::info!(jid = %parked.session.jid, killed, "held session ended without resumption");
                terminate(&front, parked).await
            }
            // Resumed at the same instant: the kick is the new connection's.
            None if killed => kill.notify_one(),
            None => {}
        }
    });
}

/// End a parked session as a closed one ends, and find what it never got another way.
pub async fn terminate(front: &Arc<Frontend>, mut parked: Parked) {
    parked.holding.abort(None);
    let backlog = parked.backlog(0);
    bound::end(front, &mut parked.session).await;
    super::undelivered(front, backlog).await;
}

/// Why a session was not resumed here.
pub enum NotResumed {
    /// The `<failed/>` to send; the client may bind a new session.
    Failed(String),
    /// Another live node of the pool holds the session: reconnect there
    /// (`<see-other-host/>` with its client address).
    Elsewhere(String),
}

/// Resume the session `previd` of `bare` on a new connection whose queue is `tx`
/// (XEP-0198 §5). On success the client has been sent `<resumed/>` and everything it did
/// not acknowledge.
pub async fn resume(
    front: &Arc<Frontend>,
    bare: &str,
    previd: &str,
    h: Seq,
    tx: &OutboundTx,
) -> Result<Bound, NotResumed> {
    let id = ResumeId::from_client(previd);
    if let (Some(pool), Some(node)) = (&front.pool, id.node()) {
        if node != pool.node_id() {
            if let Some(address) = pool.client_address_of(node).await {
                tracing::info!(user = %bare, %node, "resumption of a session another node holds: redirected there");
                return Err(NotResumed::Elsewhere(address));
            }
        }
    }
    resume_here(front, bare, id, h, tx).await.map_err(NotResumed::Failed)
}

/// Resume a session this node holds; the error is the `<failed/>` to send instead.
async fn resume_here(
    front: &Arc<Frontend>,
    bare: &str,
    id: ResumeId,
    h: Seq,
    tx: &OutboundTx,
) -> Result<Bound, String> {
    let Some(mut parked) = front.resumptions.take(&id, bare).await else {
        tracing::info!(user = %bare, "resumption of an unknown or expired session");
        return Err(sm::failed("item-not-found", None));
    };
    let unacked = parked.unacked.len();
    let acked_before = parked.sent.wrapping_sub(unacked as Seq);
    let acked_now = h.wrapping_sub(acked_before) as usize;
    if acked_now > unacked {
        let inbound = parked.inbound;
        terminate(front, parked).await;
        return Err(sm::failed("undefined-condition", Some(inbound)));
    }
    // The holding queue overflowed (what did not fit went to offline storage), or the
    // session was replaced or removed: it cannot be resumed as it was.
    let still_bound = front
        .ctx
        .sessions
        .retarget(&parked.session.bare, parked.session.id, parked.holding.clone());
    if !still_bound || !parked.holding.is_open() {
        let inbound = parked.inbound;
        terminate(front, parked).await;
        return Err(sm::failed("item-not-found", Some(inbound)));
    }
    let log = AckLog::new(h, front.ctx.config.limits.send_queue_bytes);
    let mut queued = tx
        .send(Outbound::Raw(sm::resumed(parked.inbound, &id).into()))
        .await
        .is_ok()
        && tx.send(Outbound::Track(log.clone())).await.is_ok();
    // In order: what was not acknowledged or not written, then what arrived meanwhile;
    // the entry moves to the new queue between two drains of the holding one, so nothing
    // that arrives during the move is left behind.
    let mut backlog = parked.backlog(acked_now);
    let mut resent = backlog.len();
    queued = queued && queue_all(tx, &mut backlog).await;
    if queued {
        front
            .ctx
            .sessions
            .retarget(&parked.session.bare, parked.session.id, tx.clone());
        backlog = parked.held.take_stanzas();
        resent += backlog.len();
        queued = queue_all(tx, &mut backlog).await;
    }
    if !queued {
        // The new connection closed under us: end the session, and find what it did not
        // get another way.
        tracing::info!(user = %bare, "connection closed during its resumption");
        let mut rest = log.take_unacked();
        rest.append(&mut backlog);
        terminate(front, parked).await;
        super::undelivered(front, rest).await;
        return Err(sm::failed("item-not-found", None));
    }
    parked.holding.abort(None);
    let stop = Arc::new(Notify::new());
    front.resumptions.live(id.clone(), bare, stop.clone());
    tracing::info!(jid = %parked.session.jid, resent, "session resumed");
    let wait = parked.wait;
    let Parked {
        session, kill, inbound, ..
    } = parked;
    Ok(Bound {
        session,
        tx: tx.clone(),
        kill,
        sm: Some(Sm {
            inbound,
            log,
            resumable: Some((id, wait)),
        }),
        stop,
    })
}

/// Queue `stanzas` in order on a connection's own queue, waiting for room; on failure the
/// ones not queued are left in `stanzas`.
async fn queue_all(tx: &OutboundTx, stanzas: &mut Vec<Arc<Element>>) -> bool {
    let mut done = 0;
    for stanza in stanzas.iter() {
        if tx.send(Outbound::Stanza(stanza.clone())).await.is_err() {
            break;
        }
        done += 1;
    }
    let all = done == stanzas.len();
    stanzas.drain(..done);
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::writer::QueueLimits;

    fn stanza(id: &str) -> Arc<Element> {
        Arc::new(Element::new("message", crate::xml::NS_CLIENT).attr("id", id))
    }

    fn ids(v: &[Arc<Element>]) -> Vec<&str> {
        v.iter().map(|s| s.get_attr("id").unwrap()).collect()
    }

    fn parked(sent: Seq, unacked: &[&str], unsent: &[&str]) -> Box<Parked> {
        let (holding, held) = writer::channel(QueueLimits::default());
        Box::new(Parked {
            session: Session {
                jid: jid::FullJid::new("alice@example.org/phone").unwrap(),
                bare: "alice@example.org".into(),
                id: 1,
                peer: std::net::Ipv4Addr::LOCALHOST.into(),
                available: true,
                last_presence: None,
                directed: Default::default(),
                feature_calls: Default::default(),
            },
            kill: Arc::new(Notify::new()),
            inbound: 0,
            sent,
            unacked: unacked.iter().map(|i| stanza(i)).collect(),
            unsent: unsent.iter().map(|i| stanza(i)).collect(),
            holding,
            held,
            wait: Duration::from_secs(60),
            _expiry: None,
        })
    }

    /// What a resumed client gets: the unacknowledged it did not report, what was never
    /// written, then what arrived while it was away, in that order.
    #[test]
    fn the_backlog_keeps_the_order() {
        let mut p = parked(5, &["3", "4", "5"], &["6"]);
        p.holding.try_send(Outbound::Stanza(stanza("7"))).unwrap();
        assert_eq!(ids(&p.backlog(1)), ["4", "5", "6", "7"]);
        assert!(p.backlog(0).is_empty());
    }

    /// Only the account that enabled a session resumes it; a live one is stopped first.
    #[tokio::test]
    async fn a_session_is_taken_by_its_own_account_once() {
        let registry = Arc::new(Resumptions::default());
        let id = ResumeId::new(None);
        let stop = Arc::new(Notify::new());
        registry.live(id.clone(), "alice@example.org", stop.clone());
        assert!(registry.take(&id, "mallory@example.org").await.is_none());
        assert!(registry.take(&ResumeId::new(None), "alice@example.org").await.is_none());
        // The live connection parks its session once told to stop.
        let parker = {
            let (registry, id) = (registry.clone(), id.clone());
            tokio::spawn(async move {
                stop.notified().await;
                assert!(registry.park(&id, parked(1, &["1"], &[])).is_ok());
            })
        };
        let taken = registry.take(&id, "alice@example.org").await.expect("taken over");
        assert_eq!(ids(&taken.unacked), ["1"]);
        parker.await.unwrap();
        assert!(registry.take(&id, "alice@example.org").await.is_none(), "once");
    }

    /// A timer of an earlier parking does not end a later one.
    #[test]
    fn expiry_is_per_parking() {
        let registry = Resumptions::default();
        let id = ResumeId::new(Some("n1"));
        registry.live(id.clone(), "alice@example.org", Arc::new(Notify::new()));
        let first = registry.park(&id, parked(0, &[], &[])).ok().unwrap();
        registry.live(id.clone(), "alice@example.org", Arc::new(Notify::new()));
        let second = registry.park(&id, parked(0, &[], &[])).ok().unwrap();
        assert!(registry.take_expired(&id, first).is_none());
        assert!(registry.take_expired(&id, second).is_some());
        assert!(
            registry.park(&id, parked(0, &[], &[])).is_err(),
            "a forgotten session is not parked"
        );
    }
}
