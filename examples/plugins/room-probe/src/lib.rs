//! A keyed feature plugin (manifest `keyed = true`) that shows owner routing and fencing:
//! the host hands it every stanza for `ROOM@rooms.{domain}` on the one node owning that
//! room. A message with the body `where` is answered with `owner NODE fence F count N`:
//! the node that served it, the fencing token this node holds the room under, and a
//! per-room counter kept with fenced writes (so it carries over when the room moves).
//! Ownership events are logged; on losing a room it tries one late write under the token
//! it held — what a deposed owner flushing its state would do — and logs whether the host
//! refused it (it must: a newer owner may exist). The body `rooms` is answered with how
//! many rooms this instance holds in memory: with several instances (the `rooms-spread`
//! manifest) each holds only the rooms routed to it.

use std::collections::HashMap;

use poolxmpp_sdk::pool::{self, Ownership};
use poolxmpp_sdk::{jid, reply, send, storage, Config, Element, Event, Feature, Stanza, StanzaError, NS_CLIENT};

#[derive(Default)]
pub struct RoomProbe {
    /// The rooms this node holds, with their tokens (from `ownership-gained` or asked).
    held: HashMap<String, Ownership>,
}

fn count_key(room: &str) -> String {
    format!("{room}/count")
}

impl RoomProbe {
    fn hold(&mut self, room: &str) -> Option<Ownership> {
        if let Some(held) = self.held.get(room) {
            return Some(held.clone());
        }
        let held = pool::owned(room)?;
        self.held.insert(room.to_string(), held.clone());
        Some(held)
    }

    fn answer_where(&mut self, stanza: &Stanza, room: &str) -> Result<(), StanzaError> {
        let Some(held) = self.hold(room) else {
            return Err(StanzaError::internal_server_error().with_text("handed a room this node does not own"));
        };
        let count = storage::get_string(&count_key(room))?
            .and_then(|c| c.parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        storage::put_fenced_bytes(&held, &count_key(room), count.to_string().as_bytes())?;
        self.say(
            stanza,
            format!("owner {} fence {} count {count}", pool::node_id(), held.fence),
        )
    }

    fn say(&self, stanza: &Stanza, said: String) -> Result<(), StanzaError> {
        let answer = reply(stanza, "message")
            .attr("type", "chat")
            .child(Element::new("body", NS_CLIENT).text(said));
        send(&answer).map_err(|e| {
            poolxmpp_sdk::warn!("cannot answer: {e}");
            StanzaError::internal_server_error()
        })
    }
}

impl Feature for RoomProbe {
    fn init(_config: &Config) -> Result<Self, String> {
        Ok(RoomProbe::default())
    }

    fn handle_stanza(&mut self, stanza: Stanza) -> Result<(), StanzaError> {
        if !stanza.is_message() || stanza.is_error() {
            return Ok(());
        }
        let room = jid::bare(stanza.to.as_deref().unwrap_or_default()).to_string();
        match stanza.body().as_deref().map(str::trim) {
            Some("where") if jid::node(&room).is_some() => self.answer_where(&stanza, &room),
            Some("rooms") => self.say(&stanza, format!("rooms {}", self.held.len())),
            Some(_) => Err(StanzaError::bad_request().with_text("say: where or rooms (to ROOM@rooms.DOMAIN)")),
            None => Ok(()),
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::OwnershipGained(held) => {
                poolxmpp_sdk::info!(
                    "event ownership-gained {} fence={} node={}",
                    held.key,
                    held.fence,
                    pool::node_id()
                );
                self.held.insert(held.key.clone(), held);
            }
            Event::OwnershipLost(lost) => {
                poolxmpp_sdk::info!("event ownership-lost {} fence={}", lost.key, lost.fence);
                self.held.remove(&lost.key);
                match storage::put_fenced_bytes(&lost, &count_key(&lost.key), b"999") {
                    Err(e) if e.is_fenced() => {
                        poolxmpp_sdk::info!("fenced write refused {} fence={}", lost.key, lost.fence)
                    }
                    Err(e) => poolxmpp_sdk::warn!("late write failed otherwise: {e}"),
                    Ok(()) => poolxmpp_sdk::error!("late write under a lost fence was accepted {}", lost.key),
                }
            }
            _ => {}
        }
    }
}

poolxmpp_sdk::export_feature!(RoomProbe);

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use poolxmpp_sdk::testing;

    fn where_to(room: &str) -> Stanza {
        Stanza::from_xml(&format!(
            "<message from='a@l/r' to='{room}' type='chat'><body>where</body></message>"
        ))
        .unwrap()
    }

    fn said() -> String {
        testing::take_sent()[0]
            .get_child("body", NS_CLIENT)
            .unwrap()
            .text_content()
    }

    #[test]
    fn counts_per_room_under_its_fence() {
        testing::reset();
        let mut p = RoomProbe::init(&Config::default()).unwrap();
        p.handle_stanza(where_to("r1@rooms.l")).unwrap();
        assert_eq!(said(), "owner local fence 1 count 1");
        p.handle_stanza(where_to("r1@rooms.l")).unwrap();
        assert_eq!(said(), "owner local fence 1 count 2");
        p.handle_stanza(where_to("r2@rooms.l")).unwrap();
        assert_eq!(said(), "owner local fence 1 count 1");
    }

    #[test]
    fn a_lost_room_is_not_written_under_its_old_fence() {
        testing::reset();
        let mut p = RoomProbe::init(&Config::default()).unwrap();
        p.handle_stanza(where_to("r1@rooms.l")).unwrap();
        testing::with_host(|h| h.fences.insert("r1@rooms.l".into(), 2));
        p.on_event(Event::OwnershipLost(Ownership {
            key: "r1@rooms.l".into(),
            fence: 1,
        }));
        assert_eq!(testing::stored("r1@rooms.l/count").as_deref(), Some("1"));
        assert!(testing::logs()
            .iter()
            .any(|(_, l)| l.contains("fenced write refused r1@rooms.l fence=1")));
    }
}
