//! XEP-0045 multi-user chat as a keyed poolxmpp feature plugin, at `conference.{domain}`.
//!
//! The manifest says `keyed = true`: every stanza for `room@conference.{domain}` (or one of
//! its occupants, `room@.../nick`) reaches the one node of the pool owning that room, and
//! with `instances = 2` one instance of it, in order. Stanzas to the service itself
//! (`conference.{domain}`) are answered by whichever node received them.
//!
//! What this first increment (issue 13) does: service and room discovery; entering (a new
//! room is created locked, its creator the owner, until the owner accepts the default
//! configuration — an instant room, §10.1.2 — or cancels), presence updates, nickname
//! changes and conflicts, exiting (a client going offline exits through the host's
//! directed-presence bookkeeping), groupchat messages by fan-out with a history for
//! newcomers, the subject (moderators), private messages, XEP-0410 self-ping. Rooms are
//! temporary: a room ends with its last occupant.
//!
//! Rooms survive their node (second increment): what a room needs to resume is stored
//! under the owner's fence before what it changes is sent ([`store`]). The node that takes
//! a room over (`ownership-gained`), or an instance that finds a stored room it does not
//! hold in memory (after a reload), resumes it; occupants whose sessions are gone (they
//! were on a node that died) leave it with status 333, and so do those of a node that
//! leaves the pool while this node holds their room (`node-left`). Everyone else stays in,
//! with their nicknames and roles.

mod room;
mod store;

use std::collections::HashMap;

use poolxmpp_sdk::pool::{self, Ownership};
use poolxmpp_sdk::storage::StorageError;
use poolxmpp_sdk::{
    iq_result, jid, send, send_many, Config, Element, Event, Feature, IqType, MessageType, PresenceType, Stanza,
    StanzaError, StanzaType, NS_CLIENT,
};

use poolxmpp_sdk::time::utc;
use room::{Out, Room, Spoken};

/// Namespaces the service speaks.
pub mod ns {
    pub const MUC: &str = "http://jabber.org/protocol/muc";
    pub const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
    pub const MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
    pub const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
    pub const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
    pub const DATA: &str = "jabber:x:data";
    pub const DELAY: &str = "urn:xmpp:delay";
    pub const PING: &str = "urn:xmpp:ping";
}

/// The most rooms one instance holds; creating more is refused with `resource-constraint`.
const MAX_ROOMS: usize = 10_000;
/// The most occupants a room takes (§7.2.10: `service-unavailable` when full).
const MAX_OCCUPANTS: usize = 1_000;
/// The longest nickname accepted, in bytes (a JID resource's limit).
const MAX_NICK: usize = 1023;

/// A room this node holds, with the hold its writes are fenced by.
struct Held {
    room: Room,
    owned: Ownership,
}

#[derive(Default)]
pub struct Muc {
    rooms: HashMap<String, Held>,
}

impl Feature for Muc {
    fn init(_config: &Config) -> Result<Self, String> {
        Ok(Muc::default())
    }

    fn handle_stanza(&mut self, stanza: Stanza) -> Result<(), StanzaError> {
        let to = stanza.to.clone().unwrap_or_default();
        let room = jid::bare(&to).to_string();
        let nick = jid::resource(&to).map(str::to_string);
        let element = stanza.element()?;
        let mut out = match jid::node(&to) {
            Some(_) => self.resume(&room, None)?,
            None => Vec::new(),
        };
        out.extend(match (jid::node(&to).is_some(), stanza.type_) {
            (false, StanzaType::Iq(IqType::Get | IqType::Set)) => self.service_iq(&stanza, &element)?,
            (false, _) => return Ok(()), // nothing else is for the service itself
            (true, StanzaType::Presence(kind)) => {
                match self.presence(&stanza, kind, &room, nick.as_deref(), &element) {
                    Ok(out) => out,
                    Err(e) => vec![Out::One(presence_error(&element, &e))],
                }
            }
            (true, StanzaType::Message(MessageType::Error) | StanzaType::Iq(IqType::Result | IqType::Error)) => {
                return Ok(()); // never answered; a bounced room message is not resent
            }
            (true, StanzaType::Message(kind)) => self.message(&stanza, kind, &room, nick.as_deref(), &element)?,
            (true, StanzaType::Iq(_)) => self.room_iq(&stanza, &room, nick.as_deref(), &element)?,
        });
        emit(out)
    }

    fn on_event(&mut self, event: Event) {
        let out = match event {
            Event::OwnershipGained(owned) => {
                let room = owned.key.clone();
                self.resume(&room, Some(owned)).unwrap_or_else(|e| {
                    poolxmpp_sdk::warn!("room {room} could not be resumed: {e:?}");
                    Vec::new()
                })
            }
            Event::OwnershipLost(lost) => {
                if self.rooms.remove(&lost.key).is_some() {
                    poolxmpp_sdk::info!("room {} dropped: this node no longer holds it", lost.key);
                }
                Vec::new()
            }
            // Its sessions are already gone from the host's table: the rooms held here
            // drop the occupants it served.
            Event::NodeLeft(_) => {
                let rooms: Vec<String> = self.rooms.keys().cloned().collect();
                rooms.iter().flat_map(|room| self.drop_ghosts(room)).collect()
            }
            _ => Vec::new(),
        };
        let _ = emit(out);
    }
}

impl Muc {
    fn presence(
        &mut self,
        stanza: &Stanza,
        kind: PresenceType,
        room: &str,
        nick: Option<&str>,
        element: &Element,
    ) -> Result<Vec<Out>, StanzaError> {
        match kind {
            PresenceType::Unavailable | PresenceType::Error => {
                let Some(held) = self.rooms.get_mut(room) else {
                    return Ok(Vec::new());
                };
                let status = element.get_child("status", NS_CLIENT);
                let out = held.room.exit(&stanza.from, status);
                if out.is_empty() {
                    return Ok(out);
                }
                // The occupant is gone whatever the store says: its leaving is sent anyway
                // (a stale record is dropped as a ghost when the room is next resumed).
                let stored = match held.room.is_empty() {
                    true => self.end(room),
                    false => store::save_occupant(&held.owned, &held.room, &stanza.from),
                };
                if let Err(e) = stored {
                    poolxmpp_sdk::warn!("room {room}: {}'s leaving not stored: {e}", stanza.from);
                }
                Ok(out)
            }
            PresenceType::Available => {
                let nick = valid_nick(nick)?;
                let Some(held) = self.rooms.get_mut(room) else {
                    return self.create(room, &stanza.from, nick, element);
                };
                let was_in = held.room.occupant(&stanza.from).is_some();
                if !was_in && held.room.occupant_count() >= MAX_OCCUPANTS {
                    return Err(StanzaError::service_unavailable().with_text("this room is full"));
                }
                let out = held.room.presence(&stanza.from, nick, element)?;
                match store::save_occupant(&held.owned, &held.room, &stanza.from) {
                    Ok(()) => Ok(out),
                    Err(e) => {
                        if !was_in {
                            held.room.forget(&stanza.from);
                        }
                        Err(self.not_stored(room, e))
                    }
                }
            }
            // Subscriptions and probes mean nothing to a room.
            _ => Ok(Vec::new()),
        }
    }

    /// A first presence to a room that does not exist creates it, locked, its sender the
    /// owner; the room and its owner are stored before anything is sent.
    fn create(&mut self, room: &str, from: &str, nick: &str, element: &Element) -> Result<Vec<Out>, StanzaError> {
        if self.rooms.len() >= MAX_ROOMS {
            return Err(StanzaError::resource_constraint().with_text("too many rooms"));
        }
        let owned = pool::owned(room).ok_or_else(not_held)?;
        let mut r = Room::new(room);
        let out = r.enter(from, nick, room::payload_of(element), true)?;
        if let Err(e) = store::save_room(&owned, &r).and_then(|()| store::save_occupant(&owned, &r, from)) {
            return Err(self.not_stored(room, e));
        }
        poolxmpp_sdk::info!("room {room} created by {from}");
        self.rooms.insert(room.to_string(), Held { room: r, owned });
        Ok(out)
    }

    /// Bring a stored room into memory if it is not (after a reload, or when this node
    /// took it over), under `owned` or the hold the pool gives; occupants whose sessions
    /// are gone leave it. Nothing if the room does not exist.
    fn resume(&mut self, room: &str, owned: Option<Ownership>) -> Result<Vec<Out>, StanzaError> {
        if let Some(held) = self.rooms.get_mut(room) {
            if let Some(owned) = owned {
                held.owned = owned;
            }
            return Ok(Vec::new());
        }
        let Some(stored) = store::load(room)? else {
            return Ok(Vec::new());
        };
        let owned = match owned {
            Some(owned) => owned,
            None => pool::owned(room).ok_or_else(not_held)?,
        };
        poolxmpp_sdk::info!(
            "room {room} resumed with {} occupants, fence {}",
            stored.occupant_count(),
            owned.fence
        );
        self.rooms.insert(room.to_string(), Held { room: stored, owned });
        Ok(self.drop_ghosts(room))
    }

    /// Occupants of `room` whose sessions no node serves any more (their node died, or
    /// they went while nobody held the room) leave it, with status 333 to the others.
    fn drop_ghosts(&mut self, room: &str) -> Vec<Out> {
        let Some(held) = self.rooms.get_mut(room) else {
            return Vec::new();
        };
        let gone: Vec<String> = held
            .room
            .occupants()
            .iter()
            .filter(|o| !session_exists(&o.jid))
            .map(|o| o.jid.clone())
            .collect();
        let mut out = Vec::new();
        for jid in &gone {
            out.extend(held.room.lost(jid));
            if let Err(e) = store::save_occupant(&held.owned, &held.room, jid) {
                poolxmpp_sdk::warn!("room {room}: {jid}'s removal not stored: {e}");
            }
        }
        if !gone.is_empty() {
            poolxmpp_sdk::info!("room {room}: {} occupants gone with their sessions", gone.len());
        }
        if held.room.is_empty() {
            if let Err(e) = self.end(room) {
                poolxmpp_sdk::warn!("room {room}: its end not stored: {e}");
            }
        }
        out
    }

    /// A temporary room's last occupant left: it ends, here and in the store.
    fn end(&mut self, room: &str) -> poolxmpp_sdk::storage::Result<()> {
        match self.rooms.remove(room) {
            Some(held) => store::forget(&held.owned, room),
            None => Ok(()),
        }
    }

    /// A write that failed: the change was not made, and its sender is told. If another
    /// node holds the room now, this one lets go of it.
    fn not_stored(&mut self, room: &str, e: StorageError) -> StanzaError {
        if e.is_fenced() {
            self.rooms.remove(room);
            poolxmpp_sdk::warn!("room {room}: another node holds it now; dropped here");
            return not_held();
        }
        poolxmpp_sdk::error!("room {room}: {e}");
        StanzaError::resource_constraint().with_text("the room could not store this; try again")
    }

    fn message(
        &mut self,
        stanza: &Stanza,
        kind: MessageType,
        room: &str,
        nick: Option<&str>,
        element: &Element,
    ) -> Result<Vec<Out>, StanzaError> {
        let Some(held) = self.rooms.get_mut(room) else {
            return Err(StanzaError::item_not_found().with_text("no such room"));
        };
        let r = &mut held.room;
        match (kind, nick) {
            (MessageType::Groupchat, None) => {
                let spoken = r.groupchat(&stanza.from, element, &utc(poolxmpp_sdk::now_ms()))?;
                // Stored before it is sent: a message everyone got is in the history the
                // room's next owner resumes.
                let stored = match &spoken {
                    Spoken::Said(said) => store::save_said(&held.owned, room, said),
                    Spoken::Subject(subject) => {
                        let previous = r.subject.replace(subject.clone());
                        let stored = store::save_room(&held.owned, r);
                        r.subject = previous;
                        stored
                    }
                    Spoken::Again => Ok(()),
                };
                match stored {
                    Ok(()) => Ok(r.keep(spoken)),
                    Err(e) => Err(self.not_stored(room, e)),
                }
            }
            (MessageType::Groupchat, Some(_)) => {
                Err(StanzaError::bad_request().with_text("groupchat messages go to the room's bare JID"))
            }
            (_, Some(nick)) => r.private(&stanza.from, nick, element),
            // Mediated invitations and the like come with the next increment.
            (_, None) => Err(StanzaError::feature_not_implemented()),
        }
    }

    fn room_iq(
        &mut self,
        stanza: &Stanza,
        room: &str,
        nick: Option<&str>,
        element: &Element,
    ) -> Result<Vec<Out>, StanzaError> {
        let Some(r) = self.rooms.get(room).map(|held| &held.room) else {
            return Err(StanzaError::item_not_found().with_text("no such room"));
        };
        let payload = element.elements().next();
        let ns = payload.map(|p| p.ns.as_str().to_string()).unwrap_or_default();
        if let Some(nick) = nick {
            // XEP-0410: an occupant pinging its own nickname learns whether it is still in.
            if ns == ns::PING && r.is_in_as(&stanza.from, nick) {
                return Ok(vec![Out::One(iq_result(stanza, None))]);
            }
            if ns == ns::PING {
                return Err(StanzaError::not_acceptable().with_text("you are not in this room as that nickname"));
            }
            return Err(StanzaError::feature_not_implemented());
        }
        let is_get = stanza.type_ == StanzaType::Iq(IqType::Get);
        match (ns.as_str(), is_get) {
            (ns::DISCO_INFO, true) => Ok(vec![Out::One(iq_result(stanza, Some(room_info(r))))]),
            (ns::DISCO_ITEMS, true) => Ok(vec![Out::One(iq_result(
                stanza,
                Some(Element::new("query", ns::DISCO_ITEMS)),
            ))]),
            (ns::MUC_OWNER, _) => self.owner(stanza, room, payload.expect("a namespace means a payload"), is_get),
            _ => Err(StanzaError::service_unavailable()),
        }
    }

    /// §10.1: the owner's configuration. This increment has one configuration, the
    /// default: asked for, it is an empty form; submitted (an instant room) or cancelled.
    fn owner(&mut self, stanza: &Stanza, room: &str, query: &Element, is_get: bool) -> Result<Vec<Out>, StanzaError> {
        let held = self.rooms.get_mut(room).expect("checked by the caller");
        let r = &mut held.room;
        if !r.is_owner(&stanza.from) {
            return Err(StanzaError::forbidden().with_text("only the room's owner may configure it"));
        }
        if is_get {
            let form = Element::new("x", ns::DATA).attr("type", "form").child(
                Element::new("field", ns::DATA)
                    .attr("var", "FORM_TYPE")
                    .attr("type", "hidden")
                    .child(Element::new("value", ns::DATA).text("http://jabber.org/protocol/muc#roomconfig")),
            );
            return Ok(vec![Out::One(iq_result(
                stanza,
                Some(Element::new("query", ns::MUC_OWNER).child(form)),
            ))]);
        }
        match query.get_child("x", ns::DATA).and_then(|x| x.get_attr("type")) {
            Some("submit") => {
                let was_locked = std::mem::replace(&mut r.locked, false);
                if let Err(e) = store::save_room(&held.owned, r) {
                    r.locked = was_locked;
                    return Err(self.not_stored(room, e));
                }
                Ok(vec![Out::One(iq_result(stanza, None))])
            }
            Some("cancel") if r.locked => {
                // Creation cancelled: the room goes, and its owner with it (§10.1.2).
                let mut out = r.exit(&stanza.from, None);
                if let Err(e) = self.end(room) {
                    poolxmpp_sdk::warn!("room {room}: its end not stored: {e}");
                }
                out.insert(0, Out::One(iq_result(stanza, None)));
                Ok(out)
            }
            Some("cancel") => Ok(vec![Out::One(iq_result(stanza, None))]),
            _ => Err(StanzaError::bad_request().with_text("expected a data form to submit or cancel")),
        }
    }

    fn service_iq(&self, stanza: &Stanza, element: &Element) -> Result<Vec<Out>, StanzaError> {
        let payload = element.elements().next();
        let is_get = stanza.type_ == StanzaType::Iq(IqType::Get);
        match (payload.map(|p| p.ns.as_str()), is_get) {
            (Some(ns::DISCO_INFO), true) => {
                let query = Element::new("query", ns::DISCO_INFO)
                    .child(
                        Element::new("identity", ns::DISCO_INFO)
                            .attr("category", "conference")
                            .attr("type", "text")
                            .attr("name", "Chatrooms"),
                    )
                    .child(feature(ns::DISCO_INFO))
                    .child(feature(ns::DISCO_ITEMS))
                    .child(feature(ns::MUC));
                Ok(vec![Out::One(iq_result(stanza, Some(query)))])
            }
            (Some(ns::DISCO_ITEMS), true) => {
                // The rooms this instance holds; across a pool's nodes and instances the
                // list comes with shared room storage (next increment).
                let mut query = Element::new("query", ns::DISCO_ITEMS);
                let mut rooms: Vec<&String> = self.rooms.keys().collect();
                rooms.sort();
                for room in rooms.into_iter().take(100) {
                    query.push(Element::new("item", ns::DISCO_ITEMS).attr("jid", room.as_str()));
                }
                Ok(vec![Out::One(iq_result(stanza, Some(query)))])
            }
            _ => Err(StanzaError::service_unavailable()),
        }
    }
}

/// This node does not hold the room (another took it over, or the pool cannot say): the
/// sender may try again, when the pool has settled who does.
fn not_held() -> StanzaError {
    StanzaError::service_unavailable()
        .with_type(poolxmpp_sdk::ErrorType::Wait)
        .with_text("the room is moving between servers; try again")
}

/// Whether some node of the pool serves the full JID `jid` (the host's session table).
fn session_exists(jid: &str) -> bool {
    poolxmpp_sdk::host::resources(jid::bare(jid))
        .iter()
        .any(|r| r.jid == jid)
}

fn feature(var: &str) -> Element {
    Element::new("feature", ns::DISCO_INFO).attr("var", var)
}

/// A room's disco#info (§6.4): what kind of room it is.
fn room_info(room: &Room) -> Element {
    let name = jid::node(&room.jid).unwrap_or_default().to_string();
    let mut query = Element::new("query", ns::DISCO_INFO).child(
        Element::new("identity", ns::DISCO_INFO)
            .attr("category", "conference")
            .attr("type", "text")
            .attr("name", name),
    );
    for var in [
        ns::MUC,
        "muc_temporary",
        "muc_open",
        "muc_semianonymous",
        "muc_unmoderated",
        "muc_unsecured",
        "muc_public",
        "urn:xmpp:ping",
    ] {
        query.push(feature(var));
    }
    query
}

/// A nickname is the resource of the occupant JID: present, not blank (§7.2.1:
/// `jid-malformed` otherwise).
fn valid_nick(nick: Option<&str>) -> Result<&str, StanzaError> {
    match nick {
        Some(n) if !n.trim().is_empty() && n.len() <= MAX_NICK => Ok(n),
        _ => Err(StanzaError::new(poolxmpp_sdk::Condition::JidMalformed).with_text("a nickname is required")),
    }
}

/// A refused presence's error (§7.2): the join request's `<x/>` is kept, as clients
/// match the error to their attempt by it (the host's own error replies keep no payload
/// but an IQ's).
fn presence_error(presence: &Element, error: &StanzaError) -> Element {
    let mut reply = Element::new("presence", NS_CLIENT).attr("type", "error");
    for (name, from) in [("from", "to"), ("to", "from"), ("id", "id")] {
        if let Some(v) = presence.get_attr(from) {
            reply.set_attr(name, v);
        }
    }
    if presence.has_child("x", ns::MUC) {
        reply.push(Element::new("x", ns::MUC)); // without a password it may have carried
    }
    reply.child(error.to_element())
}

fn emit(out: Vec<Out>) -> Result<(), StanzaError> {
    for o in out {
        let sent = match &o {
            Out::One(e) => send(e).map(|_| ()),
            Out::Many(e, to) => send_many(e, to).map(|_| ()),
        };
        if let Err(e) = sent {
            poolxmpp_sdk::warn!("a room's stanza was not sent: {e}");
        }
    }
    Ok(())
}

poolxmpp_sdk::export_feature!(Muc);

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn a_room_is_created_configured_and_entered_through_the_plugin() {
        poolxmpp_sdk::testing::reset();
        let mut muc = Muc::default();
        let join = |from: &str, nick: &str| {
            Stanza::from_xml(&format!(
                "<presence from='{from}' to='lounge@conference.l/{nick}'><x xmlns='{}'/></presence>",
                ns::MUC
            ))
            .unwrap()
        };
        muc.handle_stanza(join("alice@l/a", "Alice")).unwrap();
        poolxmpp_sdk::testing::take_sent();
        muc.handle_stanza(join("bob@l/b", "Bob")).unwrap();
        let refused = poolxmpp_sdk::testing::take_sent();
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(refused[0].get_attr("type"), Some("error"), "locked until configured");
        assert!(
            refused[0].has_child("x", ns::MUC),
            "the error keeps the join request's <x/>"
        );
        let instant = Stanza::from_xml(&format!(
            "<iq from='alice@l/a' to='lounge@conference.l' type='set' id='c1'><query xmlns='{}'><x xmlns='{}' type='submit'/></query></iq>",
            ns::MUC_OWNER,
            ns::DATA
        ))
        .unwrap();
        muc.handle_stanza(instant).unwrap();
        muc.handle_stanza(join("bob@l/b", "Bob")).unwrap();
        assert_eq!(muc.rooms["lounge@conference.l"].room.occupant_count(), 2);
        let leave =
            Stanza::from_xml("<presence from='alice@l/a' to='lounge@conference.l/Alice' type='unavailable'/>").unwrap();
        muc.handle_stanza(leave).unwrap();
        let leave =
            Stanza::from_xml("<presence from='bob@l/b' to='lounge@conference.l/Bob' type='unavailable'/>").unwrap();
        muc.handle_stanza(leave).unwrap();
        assert!(muc.rooms.is_empty(), "a temporary room ends with its last occupant");
        assert!(!poolxmpp_sdk::testing::take_sent().is_empty());
    }

    fn live(jids: &[&str]) {
        poolxmpp_sdk::testing::with_host(|h| {
            h.resources.clear();
            for jid in jids {
                h.resources
                    .entry(jid::bare(jid).to_string())
                    .or_default()
                    .push(poolxmpp_sdk::host::ResourcePresence {
                        jid: jid.to_string(),
                        presence: None,
                        priority: 0,
                        features: Vec::new(),
                    });
            }
        });
    }

    /// What a node taking the room over (or an instance after a reload) has: nothing in
    /// memory, the store as the previous holder left it.
    #[test]
    fn a_room_resumes_from_the_store_without_the_occupants_whose_sessions_are_gone() {
        poolxmpp_sdk::testing::reset();
        let stanza = |xml: String| Stanza::from_xml(&xml).unwrap();
        let mut muc = Muc::default();
        let join = |from: &str, nick: &str| {
            stanza(format!(
                "<presence from='{from}' to='lounge@conference.l/{nick}'><x xmlns='{}'/></presence>",
                ns::MUC
            ))
        };
        let say = |from: &str, id: &str| {
            stanza(format!(
                "<message from='{from}' to='lounge@conference.l' type='groupchat' id='{id}'><body>{id}</body></message>"
            ))
        };
        muc.handle_stanza(join("alice@l/a", "Alice")).unwrap();
        muc.handle_stanza(stanza(format!(
            "<iq from='alice@l/a' to='lounge@conference.l' type='set' id='c1'><query xmlns='{}'><x xmlns='{}' type='submit'/></query></iq>",
            ns::MUC_OWNER,
            ns::DATA
        )))
        .unwrap();
        muc.handle_stanza(join("bob@l/b", "Bob")).unwrap();
        muc.handle_stanza(join("carol@l/c", "Carol")).unwrap();
        muc.handle_stanza(say("bob@l/b", "m1")).unwrap();
        poolxmpp_sdk::testing::take_sent();

        // Carol's node died with her session.
        live(&["alice@l/a", "bob@l/b"]);
        poolxmpp_sdk::testing::with_host(|h| h.fences.insert("lounge@conference.l".into(), 2));
        let mut taken_over = Muc::default();
        taken_over.on_event(Event::OwnershipGained(Ownership {
            key: "lounge@conference.l".into(),
            fence: 2,
        }));
        let sent = poolxmpp_sdk::testing::take_sent();
        let held = &taken_over.rooms["lounge@conference.l"];
        assert_eq!(held.owned.fence, 2);
        assert_eq!(held.room.occupant_count(), 2, "alice and bob stay in");
        assert!(held.room.is_in_as("bob@l/b", "Bob"), "with their nicknames");
        assert!(!held.room.locked);
        let gone: Vec<_> = sent
            .iter()
            .filter(|e| e.get_attr("from") == Some("lounge@conference.l/Carol"))
            .collect();
        assert_eq!(
            gone.len(),
            2,
            "carol's leaving, to alice (a moderator) and to bob: {sent:?}"
        );
        assert!(gone.iter().all(|e| e.get_attr("type") == Some("unavailable")));

        // The message handed over again (the old owner died before confirming it) is
        // not sent twice; a new one is, numbered after the stored history.
        taken_over.handle_stanza(say("bob@l/b", "m1")).unwrap();
        assert!(poolxmpp_sdk::testing::take_sent().is_empty());
        taken_over.handle_stanza(say("alice@l/a", "m2")).unwrap();
        assert_eq!(poolxmpp_sdk::testing::take_sent().len(), 2, "to alice and bob");

        // Everyone left: the room is gone from the store too.
        for (from, nick) in [("alice@l/a", "Alice"), ("bob@l/b", "Bob")] {
            taken_over
                .handle_stanza(stanza(format!(
                    "<presence from='{from}' to='lounge@conference.l/{nick}' type='unavailable'/>"
                )))
                .unwrap();
        }
        assert!(taken_over.rooms.is_empty());
        poolxmpp_sdk::testing::with_host(|h| assert!(h.storage.is_empty(), "{:?}", h.storage.keys()));
    }
}
