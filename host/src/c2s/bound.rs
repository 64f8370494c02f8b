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

use super::Frontend;
use crate::sessions::{Session, TooManyResources};
use crate::stanza::Kind;
use crate::stream::{OutboundTx, ReadError, StreamError, StreamErrorCondition, StreamEvent, XmlStreamReader};
use crate::{presence, router};

/// A bound connection: the session the services see, and what only the connection has.
pub struct Bound {
    pub session: Session,
    pub tx: OutboundTx,
    pub kill: Arc<Notify>,
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
        })
    }
}

/// The bound session's read loop. Returns how the stream ended.
pub async fn run<R: AsyncBufRead + Unpin>(
    front: &Arc<Frontend>,
    reader: &mut XmlStreamReader<R>,
    bound: Bound,
) -> Result<(), ReadError> {
    let idle = Duration::from_secs(front.ctx.config.limits.idle_timeout_secs);
    let mut shutdown = front.shutdown.clone();
    let Bound {
        mut session,
        tx: outbox,
        kill,
    } = bound;
    let activity = reader.activity();
    // What can end the session besides its own stream, set up once rather than per stanza
    // (a timer and three wake-up registrations per stanza were measurable on the hot path).
    // The idle timer ticks every `idle`: a tick that finds no byte since the previous one
    // ends the stream, so whitespace keepalives (RFC 6120 §4.6.1) count even though they
    // form no event; an idle client is cut after between one and two periods.
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + idle, idle);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = activity.load(Ordering::Relaxed);
    let killed = kill.notified();
    let closed = outbox.closed();
    let stopping = crate::tasks::until_shutdown(&mut shutdown);
    tokio::pin!(killed, closed, stopping);
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
                        if now == seen {
                            break Some(Err(ReadError::Stream(StreamError::new(
                                StreamErrorCondition::ConnectionTimeout,
                                "idle for too long",
                            ))));
                        }
                        seen = now;
                    }
                    _ = &mut killed => break None,
                    // The stream is closing under us: the client stopped reading (its queue
                    // overflowed), a write stalled or failed, or someone closed it.
                    _ = &mut closed => break None,
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
            Ok(StreamEvent::Stanza(stanza)) => {
                if let Err(e) = handle_stanza(front, &mut session, stanza).await {
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
    end(front, &mut session).await;
    result
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
async fn end(front: &Arc<Frontend>, session: &mut Session) {
    let still_ours = front.ctx.sessions.unbind(&session.bare, session.id).is_some();
    if session.available || !session.directed.is_empty() {
        presence::went_offline(&front.ctx, session).await;
    }
    tracing::info!(jid = %session.jid, replaced = !still_ours, "session ended");
}
