//! XEP-0045 multi-user chat as a keyed poolxmpp feature plugin, at `conference.{domain}`.
//!
//! The manifest says `keyed = true`: every stanza for `room@conference.{domain}` (or one of
//! its occupants, `room@.../nick`) reaches the one node of the pool owning that room, and
//! with `instances = 2` one instance of it, in order. Stanzas to the service itself
//! (`conference.{domain}`) are answered by whichever node received them.
//!
//! - [`room`]: one room's rules for occupants (pure); [`admin`]: moderation and
//!   affiliations; [`config`]: the configuration and its `muc#roomconfig` form;
//! - [`store`]: what a room needs to resume, stored under the owner's fence before what it
//!   changes is sent;
//! - this module: which stanza is which use case, the service's discovery, and the
//!   rooms this instance holds.
//!
//! Rooms survive their node: the node that takes a room over (`ownership-gained`), or an
//! instance that finds a stored room it does not hold in memory (after a reload), resumes
//! it; occupants whose sessions are gone (they were on a node that died) leave it with
//! status 333, and so do those of a node that leaves the pool while this node holds their
//! room (`node-left`). Everyone else stays in, with their nicknames and roles.

mod admin;
mod config;
mod nick;
mod register;
mod relay;
mod room;
mod store;
#[cfg(test)]
mod testing;

use std::collections::HashMap;

use poolxmpp_sdk::pool::{self, Ownership};
use poolxmpp_sdk::storage::StorageError;
use poolxmpp_sdk::{
    iq_result, jid, send, send_many, Config as PluginConfig, Element, Event, Feature, IqType, MessageType,
    PresenceType, Stanza, StanzaError, StanzaType, NS_CLIENT,
};

use admin::Change;
use poolxmpp_sdk::time::utc;
use room::{Out, Room, Spoken};

/// Namespaces the service speaks.
pub mod ns {
    pub const MUC: &str = "http://jabber.org/protocol/muc";
    pub const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
    pub const MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
    pub const MUC_ADMIN: &str = "http://jabber.org/protocol/muc#admin";
    pub const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
    pub const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
    pub const DATA: &str = "jabber:x:data";
    pub const DELAY: &str = "urn:xmpp:delay";
    pub const PING: &str = "urn:xmpp:ping";
    pub const SID: &str = "urn:xmpp:sid:0";
    pub const OCCUPANT_ID: &str = "urn:xmpp:occupant-id:0";
    pub const CONFERENCE: &str = "jabber:x:conference";
    pub const REGISTER: &str = "jabber:iq:register";
}

/// The most rooms one instance holds; creating more is refused with `resource-constraint`.
const MAX_ROOMS: usize = 10_000;
/// The most rooms the service's disco#items lists.
const MAX_LISTED: usize = 100;

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
    fn init(_config: &PluginConfig) -> Result<Self, String> {
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
            (false, _) => Vec::new(), // nothing else is for the service itself
            (true, StanzaType::Presence(kind)) => {
                match self.presence(&stanza, kind, &room, nick.as_deref(), &element) {
                    Ok(out) => out,
                    Err(e) => vec![Out::One(presence_error(&element, &e))],
                }
            }
            (true, StanzaType::Message(MessageType::Error)) => Vec::new(), // a bounced copy is not resent
            (true, StanzaType::Iq(IqType::Result | IqType::Error)) => {
                // An answer to a query the room relayed between occupants; never answered.
                let held = self.rooms.get(&room);
                let back = nick
                    .as_deref()
                    .zip(held)
                    .and_then(|(nick, held)| held.room.iq_reply_to_occupant(&stanza.from, nick, &element));
                back.into_iter().collect()
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
        let now = poolxmpp_sdk::now_ms();
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
                if let Err(e) = self.commit(room) {
                    poolxmpp_sdk::warn!("room {room}: {}'s leaving not stored: {e:?}", stanza.from);
                }
                Ok(out)
            }
            PresenceType::Available => {
                let nick = valid_nick(nick)?;
                let Some(held) = self.rooms.get_mut(room) else {
                    return self.create(room, &stanza.from, nick, element);
                };
                let out = held.room.presence(&stanza.from, nick, element, now)?;
                self.commit(room)?;
                Ok(out)
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
        let mut r = Room::new(room, from, salt());
        let out = r.enter(from, nick, element, true, poolxmpp_sdk::now_ms())?;
        self.rooms.insert(room.to_string(), Held { room: r, owned });
        self.commit(room)?;
        poolxmpp_sdk::info!("room {room} created by {from}");
        Ok(out)
    }

    /// Store what changed in `room` since it was last stored. If that fails, the room
    /// is dropped from memory, so the next stanza resumes it as the store has it (and a
    /// fenced write means another node holds it now): the change is not sent, and its
    /// sender gets the error. A temporary room whose last occupant left ends here.
    fn commit(&mut self, room: &str) -> Result<(), StanzaError> {
        let Some(held) = self.rooms.get_mut(room) else {
            return Ok(());
        };
        let dirty = held.room.take_dirty();
        if held.room.is_empty() && !held.room.config.persistent {
            let held = self.rooms.remove(room).expect("held above");
            return store::forget(&held.owned, room).map_err(|e| self.not_stored(room, e));
        }
        store::save(&held.owned, &held.room, &dirty).map_err(|e| self.not_stored(room, e))
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
        }
        if !gone.is_empty() {
            poolxmpp_sdk::info!("room {room}: {} occupants gone with their sessions", gone.len());
        }
        if let Err(e) = self.commit(room) {
            poolxmpp_sdk::warn!("room {room}: the removal of its ghosts not stored: {e:?}");
        }
        out
    }

    /// A write that failed: if another node holds the room now, say so; else the store
    /// could not take it.
    fn not_stored(&mut self, room: &str, e: StorageError) -> StanzaError {
        self.rooms.remove(room);
        if e.is_fenced() {
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
        let x = element.get_child("x", ns::MUC_USER);
        let out = match (kind, nick) {
            (MessageType::Groupchat, None) => {
                let now = poolxmpp_sdk::now_ms();
                let spoken = r.groupchat(&stanza.from, element, &utc(now), now)?;
                if spoken == Spoken::Again {
                    return Ok(Vec::new());
                }
                // Stored before it is sent: a message everyone got is in the history the
                // room's next owner resumes.
                r.keep(spoken)
            }
            (MessageType::Groupchat, Some(_)) => {
                return Err(StanzaError::bad_request().with_text("groupchat messages go to the room's bare JID"))
            }
            (_, Some(nick)) => return r.private(&stanza.from, nick, element),
            (_, None) if x.is_some_and(|x| x.has_child("invite", ns::MUC_USER)) => {
                r.invite(&stanza.from, x.expect("checked"))?
            }
            (_, None) if x.is_some_and(|x| x.has_child("decline", ns::MUC_USER)) => {
                return r.decline(&stanza.from, x.expect("checked"))
            }
            (_, None) if admin::is_voice_form(element) => r.voice_form(&stanza.from, element)?,
            (_, None) => {
                return Err(StanzaError::bad_request()
                    .with_text("a message to a room is groupchat, an invitation, a decline or a voice request"))
            }
        };
        self.commit(room)?;
        Ok(out)
    }

    fn room_iq(
        &mut self,
        stanza: &Stanza,
        room: &str,
        nick: Option<&str>,
        element: &Element,
    ) -> Result<Vec<Out>, StanzaError> {
        let Some(r) = self.rooms.get_mut(room).map(|held| &mut held.room) else {
            return Err(StanzaError::item_not_found().with_text("no such room"));
        };
        let payload = element.elements().next();
        let ns = payload.map(|p| p.ns.as_str().to_string()).unwrap_or_default();
        if let Some(nick) = nick {
            // XEP-0410: an occupant pinging its own nickname learns whether it is still in.
            if ns == ns::PING && r.is_in_as(&stanza.from, nick) {
                return Ok(vec![Out::One(iq_result(stanza, None))]);
            }
            if ns == ns::PING && r.occupant(&stanza.from).is_none() {
                return Err(StanzaError::not_acceptable().with_text("you are not in this room as that nickname"));
            }
            return Ok(vec![r.iq_to_occupant(&stanza.from, nick, element)?]);
        }
        let is_get = stanza.type_ == StanzaType::Iq(IqType::Get);
        let payload = payload.expect("a namespace means a payload");
        let out = match (ns.as_str(), is_get) {
            (ns::DISCO_INFO, true) if payload.get_attr("node") == Some("x-roomuser-item") => {
                return Ok(vec![Out::One(iq_result(
                    stanza,
                    Some(r.reserved_nick_info(&stanza.from)),
                ))])
            }
            (ns::DISCO_INFO, true) => return Ok(vec![Out::One(iq_result(stanza, Some(room_info(r))))]),
            (ns::REGISTER, true) => {
                return Ok(vec![Out::One(iq_result(
                    stanza,
                    Some(r.registration_form(&stanza.from)?),
                ))])
            }
            (ns::REGISTER, false) => {
                r.register(&stanza.from, payload)?;
                vec![Out::One(iq_result(stanza, None))]
            }
            (ns::DISCO_ITEMS, true) => {
                // §6.5: occupants are not listed (the room is not non-anonymous to strangers).
                let items = Element::new("query", ns::DISCO_ITEMS);
                return Ok(vec![Out::One(iq_result(stanza, Some(items)))]);
            }
            (ns::MUC_ADMIN, true) => {
                return Ok(vec![Out::One(iq_result(
                    stanza,
                    Some(r.admin_get(&stanza.from, payload)?),
                ))])
            }
            (ns::MUC_ADMIN, false) => {
                let mut out = r.admin_set(&stanza.from, payload)?;
                out.insert(0, Out::One(iq_result(stanza, None)));
                out
            }
            (ns::MUC_OWNER, _) => self.owner(stanza, room, payload, is_get)?,
            _ => return Err(StanzaError::service_unavailable()),
        };
        self.commit(room)?;
        Ok(out)
    }

    /// §10: the owner's configuration form, its submission or cancellation, and the
    /// room's destruction.
    fn owner(&mut self, stanza: &Stanza, room: &str, query: &Element, is_get: bool) -> Result<Vec<Out>, StanzaError> {
        let held = self.rooms.get_mut(room).expect("checked by the caller");
        let r = &mut held.room;
        if !r.is_owner(&stanza.from) {
            return Err(StanzaError::forbidden().with_text("only the room's owners may configure it"));
        }
        if is_get {
            let form = r.config.form(
                &r.with_affiliation(room::Affiliation::Owner),
                &r.with_affiliation(room::Affiliation::Admin),
            );
            let query = Element::new("query", ns::MUC_OWNER).child(form);
            return Ok(vec![Out::One(iq_result(stanza, Some(query)))]);
        }
        if let Some(destroy) = query.get_child("destroy", ns::MUC_OWNER) {
            let mut out = r.destroy(destroy);
            let owned = held.owned.clone();
            self.rooms.remove(room);
            if let Err(e) = store::forget(&owned, room) {
                poolxmpp_sdk::warn!("room {room}: its destruction not stored: {e}");
            }
            poolxmpp_sdk::info!("room {room} destroyed by {}", stanza.from);
            out.insert(0, Out::One(iq_result(stanza, None)));
            return Ok(out);
        }
        let form = query.get_child("x", ns::DATA);
        match form.and_then(|x| x.get_attr("type")) {
            Some("submit") => {
                let (config, named) = r.config.submitted(form.expect("a type means a form"))?;
                let mut out = vec![Out::One(iq_result(stanza, None))];
                // Owners and admins the form names are added (an empty list removes none).
                for (jids, affiliation) in [
                    (named.owners, room::Affiliation::Owner),
                    (named.admins, room::Affiliation::Admin),
                ] {
                    if let Some(jids) = jids {
                        let changes: Vec<Change> = jids
                            .into_iter()
                            .filter(|j| r.affiliation_of(j) != affiliation)
                            .map(|jid| Change::Affiliation {
                                jid,
                                affiliation,
                                reason: None,
                            })
                            .collect();
                        if !changes.is_empty() {
                            out.extend(r.change(&stanza.from, changes)?);
                        }
                    }
                }
                let was_locked = r.locked;
                r.unlock();
                if was_locked {
                    r.config = config; // a new room's first configuration is not a change
                } else {
                    out.extend(r.configure(config));
                }
                Ok(out)
            }
            Some("cancel") if r.locked => {
                // Creation cancelled: the room goes, and its owner with it (§10.1.2).
                let mut out = r.exit(&stanza.from, None);
                out.insert(0, Out::One(iq_result(stanza, None)));
                Ok(out)
            }
            Some("cancel") => Ok(vec![Out::One(iq_result(stanza, None))]),
            _ => Err(StanzaError::bad_request().with_text("expected a data form to submit or cancel, or a destroy")),
        }
    }

    fn service_iq(&self, stanza: &Stanza, element: &Element) -> Result<Vec<Out>, StanzaError> {
        let payload = element.elements().next();
        let is_get = stanza.type_ == StanzaType::Iq(IqType::Get);
        match (payload.map(|p| p.ns.as_str()), is_get) {
            (Some(ns::DISCO_INFO), true) => {
                let mut query = Element::new("query", ns::DISCO_INFO).child(
                    Element::new("identity", ns::DISCO_INFO)
                        .attr("category", "conference")
                        .attr("type", "text")
                        .attr("name", "Chatrooms"),
                );
                for var in [
                    ns::DISCO_INFO,
                    ns::DISCO_ITEMS,
                    ns::MUC,
                    ns::SID,
                    ns::OCCUPANT_ID,
                    ns::CONFERENCE,
                ] {
                    query.push(feature(var));
                }
                Ok(vec![Out::One(iq_result(stanza, Some(query)))])
            }
            (Some(ns::DISCO_ITEMS), true) => {
                // The public rooms of the whole pool: their records are in the shared store.
                let service = stanza.to.as_deref().unwrap_or_default();
                let mut query = Element::new("query", ns::DISCO_ITEMS);
                for (room, name) in store::public_rooms(service, MAX_LISTED)? {
                    let mut item = Element::new("item", ns::DISCO_ITEMS).attr("jid", room.as_str());
                    if !name.is_empty() {
                        item.set_attr("name", name);
                    }
                    query.push(item);
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

/// A bare JID from a client's payload (an invitee, an affiliation's user), normalised as
/// the room keys users (lower case), or none if it is not one: `[node@]domain`, no
/// resource kept, no spaces or control characters, each part within RFC 7622's 1023 bytes.
pub fn bare_jid(jid: &str) -> Option<String> {
    let bare = jid::bare(jid.trim());
    let (node, domain) = match bare.split_once('@') {
        Some((n, d)) => (Some(n), d),
        None => (None, bare),
    };
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 1023
            && !p
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "\"&'/:<>@".contains(c))
    };
    (node.is_none_or(part_ok) && part_ok(domain) && !domain.starts_with('.') && !domain.ends_with('.'))
        .then(|| bare.to_lowercase())
}

/// A new room's salt: 128 bits from the random keys std's hasher draws from the host
/// (`wasi:random` in a component), so occupant-ids cannot be computed from JIDs.
fn salt() -> String {
    use std::hash::{BuildHasher, Hasher};
    (0..2)
        .map(|_| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(poolxmpp_sdk::now_ms());
            format!("{:016x}", h.finish())
        })
        .collect()
}

fn feature(var: &str) -> Element {
    Element::new("feature", ns::DISCO_INFO).attr("var", var)
}

/// A room's disco#info (§6.4): what kind of room it is, and its `muc#roominfo` form.
fn room_info(room: &Room) -> Element {
    let name = match room.config.name.as_str() {
        "" => jid::node(&room.jid).unwrap_or_default().to_string(),
        name => name.to_string(),
    };
    let mut query = Element::new("query", ns::DISCO_INFO).child(
        Element::new("identity", ns::DISCO_INFO)
            .attr("category", "conference")
            .attr("type", "text")
            .attr("name", name),
    );
    for var in [
        ns::MUC,
        ns::PING,
        ns::SID,
        ns::OCCUPANT_ID,
        ns::CONFERENCE,
        ns::REGISTER,
    ]
    .into_iter()
    .chain(room.config.features())
    {
        query.push(feature(var));
    }
    let subject = room
        .subject
        .as_ref()
        .and_then(|s| s.get_child("subject", NS_CLIENT))
        .map(|s| s.text_content())
        .unwrap_or_default();
    query.child(room.config.info_form(room.occupant_count(), &subject))
}

/// A nickname is the resource of the occupant JID: present, not blank (§7.2.1:
/// `jid-malformed` otherwise).
fn valid_nick(nick: Option<&str>) -> Result<&str, StanzaError> {
    match nick {
        Some(n) if !n.trim().is_empty() => Ok(n), // the rest is nick::enforce's
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
