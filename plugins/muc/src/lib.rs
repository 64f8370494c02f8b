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
//! temporary and in memory: a room ends with its last occupant, and with its node.

mod room;

use std::collections::HashMap;

use poolxmpp_sdk::{
    iq_result, jid, send, send_many, Config, Element, Feature, IqType, MessageType, PresenceType, Stanza, StanzaError,
    StanzaType, NS_CLIENT,
};

use poolxmpp_sdk::time::utc;
use room::{Out, Room};

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

#[derive(Default)]
pub struct Muc {
    rooms: HashMap<String, Room>,
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
        let out = match (jid::node(&to).is_some(), stanza.type_) {
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
        };
        emit(out)
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
                let Some(r) = self.rooms.get_mut(room) else {
                    return Ok(Vec::new());
                };
                let status = element.get_child("status", NS_CLIENT);
                let out = r.exit(&stanza.from, status);
                if r.is_empty() {
                    self.rooms.remove(room); // temporary rooms end with their last occupant
                }
                Ok(out)
            }
            PresenceType::Available => {
                let nick = valid_nick(nick)?;
                match self.rooms.get_mut(room) {
                    Some(r) => {
                        if r.occupant(&stanza.from).is_none() && r.occupant_count() >= MAX_OCCUPANTS {
                            return Err(StanzaError::service_unavailable().with_text("this room is full"));
                        }
                        r.presence(&stanza.from, nick, element)
                    }
                    None => {
                        if self.rooms.len() >= MAX_ROOMS {
                            return Err(StanzaError::resource_constraint().with_text("too many rooms"));
                        }
                        let mut r = Room::new(room);
                        let out = r.enter(&stanza.from, nick, room::payload_of(element), true)?;
                        poolxmpp_sdk::info!("room {room} created by {}", stanza.from);
                        self.rooms.insert(room.to_string(), r);
                        Ok(out)
                    }
                }
            }
            // Subscriptions and probes mean nothing to a room.
            _ => Ok(Vec::new()),
        }
    }

    fn message(
        &mut self,
        stanza: &Stanza,
        kind: MessageType,
        room: &str,
        nick: Option<&str>,
        element: &Element,
    ) -> Result<Vec<Out>, StanzaError> {
        let Some(r) = self.rooms.get_mut(room) else {
            return Err(StanzaError::item_not_found().with_text("no such room"));
        };
        match (kind, nick) {
            (MessageType::Groupchat, None) => r.groupchat(&stanza.from, element, &utc(poolxmpp_sdk::now_ms())),
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
        let Some(r) = self.rooms.get(room) else {
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
        let r = self.rooms.get_mut(room).expect("checked by the caller");
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
                r.locked = false;
                Ok(vec![Out::One(iq_result(stanza, None))])
            }
            Some("cancel") if r.locked => {
                // Creation cancelled: the room goes, and its owner with it (§10.1.2).
                let mut out = r.exit(&stanza.from, None);
                self.rooms.remove(room);
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
        assert_eq!(muc.rooms["lounge@conference.l"].occupant_count(), 2);
        let leave =
            Stanza::from_xml("<presence from='alice@l/a' to='lounge@conference.l/Alice' type='unavailable'/>").unwrap();
        muc.handle_stanza(leave).unwrap();
        let leave =
            Stanza::from_xml("<presence from='bob@l/b' to='lounge@conference.l/Bob' type='unavailable'/>").unwrap();
        muc.handle_stanza(leave).unwrap();
        assert!(muc.rooms.is_empty(), "a temporary room ends with its last occupant");
        assert!(!poolxmpp_sdk::testing::take_sent().is_empty());
    }
}
