//! A bound client session: its identity, what it has told others, and the read loop that
//! feeds its stanzas to the router until the stream ends for any reason.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use jid::FullJid;
use tokio::io::AsyncBufRead;
use tokio::sync::Notify;

use super::sm::{self, Nonza, ResumeId, Sm};
use super::Frontend;
use crate::sessions::{Session, TooManyResources};
use crate::stanza::Kind;
use crate::stream::acks::AckLog;
use crate::stream::csi::NS_CSI;
use crate::stream::{Outbound, OutboundTx, ReadError, StreamError, StreamErrorCondition, StreamEvent, XmlStreamReader};
use crate::{presence, router};

/// A bound connection: the session the services see, and what only the connection has.
pub struct Bound {
    pub session: Session,
    pub tx: OutboundTx,
    /// Ends the session (a conflict, a removed account, fencing).
    pub kill: Arc<Notify>,
    /// Stream management, when enabled (a resumed session starts with it).
    pub sm: Option<Sm>,
    /// Ends this connection but not its session, which a resumption on another
    /// connection takes over.
    pub stop: Arc<Notify>,
}

/// How a bound connection ended, and the session it leaves behind.
pub struct Finished {
    pub result: Result<(), ReadError>,
    pub session: Session,
    pub kill: Arc<Notify>,
    pub sm: Option<Sm>,
    /// The connection was lost or taken over rather than closed by either side: a
    /// resumable session waits for its client instead of ending.
    pub lost: bool,
}

impl Finished {
    /// The resumption id and wait, when the session should be held for its client.
    pub fn resumable(&self) -> Option<&(ResumeId, Duration)> {
        self.sm
            .as_ref()
            .and_then(|sm| sm.resumable.as_ref())
            .filter(|_| self.lost)
    }
}

impl Bound {
    /// Enter the session table; an older session on the same resource is told `<conflict/>`.
    /// Refused when the account has as many resources as the config allows.
    pub fn register(front: &Frontend, jid: FullJid, tx: OutboundTx, peer: IpAddr) -> Result<Bound, TooManyResources> {
        let bare = jid.to_bare().to_string();
        let id = front.ctx.sessions.new_id();
        let kill = Arc::new(Notify::new());
        let max = front.ctx.config.limits.max_resources_per_account;
        if let Some(old) = front
            .ctx
            .sessions
            .bind(&bare, jid.resource().as_str(), id, tx.clone(), kill.clone(), max)?
        {
            tracing::info!(jid = %jid, "resource conflict: replacing the older session");
            let err = StreamError::new(StreamErrorCondition::Conflict, "replaced by a new connection");
            old.close(err);
        }
        tracing::info!(jid = %jid, "session bound");
        Ok(Bound {
            session: Session {
                jid,
                bare,
                id,
                peer,
                available: false,
                last_presence: None,
                directed: HashSet::new(),
                feature_calls: Default::default(),
            },
            tx,
            kill,
            sm: None,
            stop: Arc::new(Notify::new()),
        })
    }
}

/// The bound session's read loop, until the stream ends for any reason.
pub async fn run<R: AsyncBufRead + Unpin>(
    front: &Arc<Frontend>,
    reader: &mut XmlStreamReader<R>,
    bound: Bound,
) -> Finished {
    let idle = Duration::from_secs(front.ctx.config.limits.idle_timeout_secs);
    let mut shutdown = front.shutdown.clone();
    let Bound {
        mut session,
        tx: outbox,
        kill,
        mut sm,
        stop,
    } = bound;
    let activity = reader.activity();
    // What can end the session besides its own stream, set up once rather than per stanza
    // (a timer and three wake-up registrations per stanza were measurable on the hot path).
    // The idle timer ticks every `idle`: a tick that finds no byte since the previous one
    // ends the stream, so whitespace keepalives (RFC 6120 §4.6.1) count even though they
    // form no event; an idle client is cut after between one and two periods. Under
    // stream management the first silent tick asks for an acknowledgement instead, which
    // a live client answers.
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + idle, idle);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = activity.load(Ordering::Relaxed);
    let mut asked = false;
    // A handle of its own, so the session's kill switch can be handed on when the loop ends.
    let kill_switch = kill.clone();
    let killed = kill_switch.notified();
    let stopped = stop.notified();
    let closed = outbox.closed();
    let stopping = crate::tasks::until_shutdown(&mut shutdown);
    tokio::pin!(killed, stopped, closed, stopping);
    // Whether the connection was lost rather than closed, once the loop ends.
    let mut lost = false;
    let result = loop {
        // The read is never cancelled mid-event (quick-xml is not cancellation-safe).
        let event = {
            let next = reader.next();
            tokio::pin!(next);
            loop {
                tokio::select! {
                    r = &mut next => break Some(r),
                    _ = ticks.tick() => {
                        let now = activity.load(Ordering::Relaxed);
                        if now == seen && sm.is_some() && !asked {
                            asked = true;
                            let _ = outbox.try_send(Outbound::Raw(sm::request().into()));
                        } else if now == seen {
                            break Some(Err(ReadError::Stream(StreamError::new(
                                StreamErrorCondition::ConnectionTimeout,
                                "idle for too long",
                            ))));
                        } else {
                            asked = false;
                        }
                        seen = now;
                    }
                    _ = &mut killed => break None,
                    // A resumption on a new connection takes the session over.
                    _ = &mut stopped => {
                        lost = true;
                        break None;
                    }
                    // The stream is closing under us: the client stopped reading (its queue
                    // overflowed) or acknowledging, a write stalled or failed, or someone
                    // closed it (a kick: not a lost connection).
                    _ = &mut closed => {
                        lost = !outbox.is_draining();
                        break None;
                    }
                    _ = &mut stopping => {
                        break Some(Err(ReadError::Stream(StreamError::new(
                            StreamErrorCondition::SystemShutdown,
                            "the server is shutting down",
                        ))));
                    }
                }
            }
        };
        let Some(event) = event else { break Ok(()) };
        match event {
            // XEP-0352: the writer holds back what can wait while the client is inactive.
            Ok(StreamEvent::Stanza(state)) if &*state.ns == NS_CSI && matches!(&*state.name, "active" | "inactive") => {
                let _ = outbox.send(Outbound::ClientState(state.name == "active")).await;
            }
            Ok(StreamEvent::Stanza(stanza)) => {
                let handled = match Nonza::read(&stanza) {
                    Some(nonza) => handle_nonza(front, &session, &outbox, &stop, &mut sm, nonza).await,
                    None => {
                        let routed = handle_stanza(front, &mut session, stanza).await;
                        if let Some(sm) = &mut sm {
                            sm.handled_one();
                        }
                        routed
                    }
                };
                if let Err(e) = handled {
                    break Err(e);
                }
            }
            Ok(StreamEvent::Whitespace) => {}
            Ok(StreamEvent::End) => break Ok(()),
            Ok(StreamEvent::Header(_)) => {
                break Err(ReadError::Stream(StreamError::new(
                    StreamErrorCondition::NotWellFormed,
                    "unexpected stream header",
                )))
            }
            Err(e) => break Err(e),
        }
    };
    // A connection that broke, or went silent past the idle timeout, was lost.
    lost |= match &result {
        Err(ReadError::Io(_) | ReadError::Closed) => true,
        Err(ReadError::Stream(e)) => e.condition == StreamErrorCondition::ConnectionTimeout,
        _ => false,
    };
    Finished {
        result,
        session,
        kill,
        sm,
        lost,
    }
}

/// A stream management element from the client (XEP-0198).
async fn handle_nonza(
    front: &Arc<Frontend>,
    session: &Session,
    outbox: &OutboundTx,
    stop: &Arc<Notify>,
    sm: &mut Option<Sm>,
    nonza: Result<Nonza, sm::Malformed>,
) -> Result<(), ReadError> {
    let nonza = nonza.map_err(|e| ReadError::Stream(StreamError::new(StreamErrorCondition::BadFormat, e.0)))?;
    let config = &front.ctx.config;
    if let (Nonza::Enable { resume, max }, None) = (&nonza, &sm) {
        if config.features.stream_management {
            let limits = &config.limits;
            let resumable = resume.then(|| {
                let wait = sm::resume_wait(Duration::from_secs(limits.resume_timeout_secs), *max);
                (ResumeId::new(front.pool.as_ref().map(|p| p.node_id())), wait)
            });
            if let Some((id, _)) = &resumable {
                front.resumptions.live(id.clone(), &session.bare, stop.clone());
            }
            tracing::debug!(resumable = resumable.is_some(), "stream management enabled");
            let log = AckLog::new(0, limits.send_queue_bytes);
            // The marker after <enabled/>: the count starts with the next stanza.
            let location = front.pool.as_ref().map(|p| p.client_address());
            let enabled = sm::enabled(resumable.as_ref(), location.as_deref());
            let _ = outbox.send(Outbound::Raw(enabled.into())).await;
            let _ = outbox.send(Outbound::Track(log.clone())).await;
            *sm = Some(Sm {
                inbound: 0,
                log,
                resumable,
            });
            return Ok(());
        }
    }
    let reply = match (nonza, sm.as_mut()) {
        (Nonza::Enable { .. }, None) => sm::failed("feature-not-implemented", None),
        (Nonza::Enable { .. } | Nonza::Resume { .. }, Some(sm)) => sm::failed("unexpected-request", Some(sm.inbound)),
        (Nonza::Resume { .. }, None) => sm::failed("unexpected-request", None),
        (Nonza::Request, Some(sm)) => sm::ack(sm.inbound),
        (Nonza::Ack { h }, Some(sm)) => {
            return sm.log.ack(h).map_err(|e| ReadError::Stream(sm::too_high(e)));
        }
        // Acknowledgements without stream management: nothing to count (XEP-0198 §4).
        (Nonza::Request | Nonza::Ack { .. }, None) => return Ok(()),
    };
    let _ = outbox.send(Outbound::Raw(reply.into())).await;
    Ok(())
}

/// Check and stamp a stanza from the client, then route it (RFC 6120 §8.1.2.1).
async fn handle_stanza(
    front: &Arc<Frontend>,
    session: &mut Session,
    mut stanza: crate::xml::Element,
) -> Result<(), ReadError> {
    if Kind::of(&stanza).is_none() {
        return Err(ReadError::Stream(StreamError::new(
            StreamErrorCondition::UnsupportedStanzaType,
            format!("<{}/> is not a stanza", stanza.name),
        )));
    }
    if let Some(from) = stanza.get_attr("from") {
        let ok = jid::Jid::new(from)
            .map(|j| j.to_string() == session.jid.to_string() || j.to_string() == session.bare)
            .unwrap_or(false);
        if !ok {
            return Err(ReadError::Stream(StreamError::new(
                StreamErrorCondition::InvalidFrom,
                "from does not match the session",
            )));
        }
    }
    stanza.set_attr("from", session.jid.to_string());
    router::route_from_client(&front.ctx, session, stanza).await;
    Ok(())
}

/// Leave the session table and tell contacts we are gone, however the stream ended.
pub async fn end(front: &Arc<Frontend>, session: &mut Session) {
    let still_ours = front.ctx.sessions.unbind(&session.bare, session.id).is_some();
    if session.available || !session.directed.is_empty() {
        presence::went_offline(&front.ctx, session).await;
    }
    tracing::info!(jid = %session.jid, replaced = !still_ours, "session ended");
}
