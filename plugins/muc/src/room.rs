//! One room's state and the XEP-0045 rules for occupants: entering, presence changes,
//! nickname changes, exiting, groupchat and private messages, the subject. Pure: every
//! method returns what to send ([`Out`]), so the rules are unit-tested without a host.

use std::collections::VecDeque;

use poolxmpp_sdk::{Element, StanzaError, NS_CLIENT};

use crate::ns;

/// How many groupchat messages a room keeps for newcomers (XEP-0045 §7.2.15).
pub const HISTORY: usize = 20;

/// What a room sends: one stanza, or one stanza to many recipients (the host's fan-out).
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    One(Element),
    Many(Element, Vec<String>),
}

/// An occupant's role in the room (XEP-0045 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Moderator,
    Participant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Moderator => "moderator",
            Role::Participant => "participant",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        [Role::Moderator, Role::Participant]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// An occupant's affiliation with the room (XEP-0045 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Affiliation {
    Owner,
    None,
}

impl Affiliation {
    pub fn as_str(self) -> &'static str {
        match self {
            Affiliation::Owner => "owner",
            Affiliation::None => "none",
        }
    }

    pub fn parse(s: &str) -> Option<Affiliation> {
        [Affiliation::Owner, Affiliation::None]
            .into_iter()
            .find(|a| a.as_str() == s)
    }
}

#[derive(Debug, Clone)]
pub struct Occupant {
    pub nick: String,
    /// The occupant's full JID: where the room's stanzas for it go.
    pub jid: String,
    pub role: Role,
    pub affiliation: Affiliation,
    /// What the occupant's last presence carried (show, status, caps, ...), minus the
    /// MUC elements: repeated in the room's presence for it.
    pub payload: Vec<Element>,
}

/// One groupchat message as the room broadcast it, kept in its history.
#[derive(Debug, Clone, PartialEq)]
pub struct Said {
    /// The room's count of messages: the history's order, and where it is stored.
    pub seq: u64,
    /// When the room received it (XEP-0082), for the `<delay/>` of its replay.
    pub stamp: String,
    /// The sender's full JID and the message's `id`: a message the pool hands the room a
    /// second time (its previous owner died before confirming it) is recognised by them.
    pub sender: String,
    pub id: Option<String>,
    /// The copy everyone got (from `room/nick`, no `to`).
    pub message: Element,
}

/// What a groupchat message does, decided before anything changes, so the caller can
/// store it first ([`Room::keep`] then applies it and says what to send).
#[derive(Debug, Clone, PartialEq)]
pub enum Spoken {
    /// A message for everyone and the history.
    Said(Said),
    /// A new subject (the message as everyone gets it).
    Subject(Element),
    /// The room already has this message (the same sender and id): nothing to do.
    Again,
}

/// One room.
#[derive(Debug)]
pub struct Room {
    /// `room@service`.
    pub jid: String,
    /// Occupants in the order they entered.
    occupants: Vec<Occupant>,
    /// The last groupchat messages as they were broadcast, oldest first.
    history: VecDeque<Said>,
    /// The sequence number the next message gets.
    next_seq: u64,
    /// The subject message as broadcast, if one was set.
    pub subject: Option<Element>,
    /// A new room is locked until its owner accepts the default configuration (§10.1.2);
    /// until then nobody else may enter.
    pub locked: bool,
}

impl Room {
    /// A new room, entered by its creator (its owner) — the caller then calls
    /// [`Room::enter`] for the creator.
    pub fn new(jid: &str) -> Room {
        Room {
            jid: jid.to_string(),
            occupants: Vec::new(),
            history: VecDeque::new(),
            next_seq: 0,
            subject: None,
            locked: true,
        }
    }

    /// A room as it was stored: its occupants and history (in any order; the last
    /// [`HISTORY`] by sequence are kept).
    pub fn restore(
        jid: &str,
        locked: bool,
        subject: Option<Element>,
        occupants: Vec<Occupant>,
        mut history: Vec<Said>,
    ) -> Room {
        history.sort_by_key(|s| s.seq);
        let skip = history.len().saturating_sub(HISTORY);
        let history: VecDeque<Said> = history.into_iter().skip(skip).collect();
        Room {
            jid: jid.to_string(),
            occupants,
            next_seq: history.back().map_or(0, |s| s.seq + 1),
            history,
            subject,
            locked,
        }
    }

    pub fn occupants(&self) -> &[Occupant] {
        &self.occupants
    }

    /// Take an occupant out without telling anyone: undoing an entry that could not be
    /// stored.
    pub fn forget(&mut self, jid: &str) {
        self.occupants.retain(|o| o.jid != jid);
    }

    pub fn is_empty(&self) -> bool {
        self.occupants.is_empty()
    }

    pub fn occupant_count(&self) -> usize {
        self.occupants.len()
    }

    /// The occupant a full JID is in the room as.
    pub fn occupant(&self, jid: &str) -> Option<&Occupant> {
        self.occupants.iter().find(|o| o.jid == jid)
    }

    fn by_nick(&self, nick: &str) -> Option<&Occupant> {
        self.occupants.iter().find(|o| o.nick == nick)
    }

    fn nick_jid(&self, nick: &str) -> String {
        format!("{}/{nick}", self.jid)
    }

    /// An available presence from `jid` to `room/nick`: entering, a nickname change or a
    /// presence update.
    pub fn presence(&mut self, jid: &str, nick: &str, presence: &Element) -> Result<Vec<Out>, StanzaError> {
        let payload = payload_of(presence);
        if let Some(i) = self.occupants.iter().position(|o| o.jid == jid) {
            if self.occupants[i].nick == nick {
                self.occupants[i].payload = payload;
                // A join request from an occupant: the client thinks it is not in (it
                // lost its connection's state, or the room's answer): it gets the room
                // again as a newcomer does.
                if presence.has_child("x", ns::MUC) {
                    return Ok(self.welcome(i, &[]));
                }
                return Ok(self.broadcast_presence(i, &[]));
            }
            return self.change_nick(i, nick, payload);
        }
        self.enter(jid, nick, payload, false)
    }

    /// Enter the room as `nick`; `created` when this entry created it (status 201).
    pub fn enter(
        &mut self,
        jid: &str,
        nick: &str,
        payload: Vec<Element>,
        created: bool,
    ) -> Result<Vec<Out>, StanzaError> {
        if self.by_nick(nick).is_some() {
            return Err(StanzaError::conflict().with_text("that nickname is taken in this room"));
        }
        if self.locked && !created {
            return Err(StanzaError::item_not_found().with_text("this room is locked until its owner configures it"));
        }
        let (role, affiliation) = match created {
            true => (Role::Moderator, Affiliation::Owner),
            false => (Role::Participant, Affiliation::None),
        };
        self.occupants.push(Occupant {
            nick: nick.to_string(),
            jid: jid.to_string(),
            role,
            affiliation,
            payload,
        });
        let codes: &[&str] = if created { &["201"] } else { &[] };
        Ok(self.welcome(self.occupants.len() - 1, codes))
    }

    /// What occupant `i` gets on entering, and the others of it.
    fn welcome(&self, i: usize, own_codes: &[&str]) -> Vec<Out> {
        let jid = self.occupants[i].jid.as_str();
        let mut out = Vec::new();
        // §7.2.3: first the presence of everyone else in the room, to the newcomer...
        let sees_jids = self.occupants[i].role == Role::Moderator;
        for o in self.occupants.iter().filter(|o| o.jid != jid) {
            let mut p = self.presence_of(o, sees_jids, None);
            p.set_attr("to", jid);
            out.push(Out::One(p));
        }
        // ...then the newcomer's to everyone, itself last with 110 (and 201 if it created
        // the room)...
        out.extend(self.broadcast_presence(i, own_codes));
        // ...then the history and the subject (§7.2.15, §7.2.16).
        for said in &self.history {
            let mut m = said.message.clone();
            m.set_attr("to", jid);
            m.push(
                Element::new("delay", ns::DELAY)
                    .attr("stamp", said.stamp.as_str())
                    .attr("from", self.jid.as_str()),
            );
            out.push(Out::One(m));
        }
        let mut subject = self.subject.clone().unwrap_or_else(|| {
            Element::new("message", NS_CLIENT)
                .attr("from", self.jid.as_str())
                .attr("type", "groupchat")
                .child(Element::new("subject", NS_CLIENT))
        });
        subject.set_attr("to", jid);
        out.push(Out::One(subject));
        out
    }

    /// An unavailable (or error) presence from an occupant: it leaves (§7.14). Nothing to
    /// send if `jid` is not in the room.
    pub fn exit(&mut self, jid: &str, status: Option<&Element>) -> Vec<Out> {
        let Some(i) = self.occupants.iter().position(|o| o.jid == jid) else {
            return Vec::new();
        };
        let leaving = self.occupants.remove(i);
        let mut out = self.to_others(&leaving.jid, |jid| {
            let mut p = self.unavailable_of(&leaving, &[], None, jid);
            if let Some(status) = status {
                p.push(status.clone());
            }
            p
        });
        let mut own = self.unavailable_of(&leaving, &["110"], None, false);
        if let Some(status) = status {
            own.push(status.clone());
        }
        own.set_attr("to", leaving.jid.as_str());
        out.push(Out::One(own));
        out
    }

    /// An occupant whose session is gone without a word (its node died): it leaves with
    /// status 333 (its occupancy ended because of a technical problem), to everyone else. Nothing to send if `jid` is not in the room.
    pub fn lost(&mut self, jid: &str) -> Vec<Out> {
        let Some(i) = self.occupants.iter().position(|o| o.jid == jid) else {
            return Vec::new();
        };
        let lost = self.occupants.remove(i);
        self.to_others(&lost.jid, |jid| self.unavailable_of(&lost, &["333"], None, jid))
    }

    /// §7.6: the old nick leaves with 303 and the new one, then the new nick's presence.
    fn change_nick(&mut self, i: usize, nick: &str, payload: Vec<Element>) -> Result<Vec<Out>, StanzaError> {
        if self.by_nick(nick).is_some() {
            return Err(StanzaError::conflict().with_text("that nickname is taken in this room"));
        }
        let old = self.occupants[i].clone();
        let mut out = Vec::new();
        // The unavailable of the old nick carries the new one in its item.
        out.extend(self.to_others(&old.jid, |jid| self.unavailable_of(&old, &["303"], Some(nick), jid)));
        let mut own = self.unavailable_of(&old, &["303", "110"], Some(nick), false);
        own.set_attr("to", old.jid.as_str());
        out.push(Out::One(own));
        self.occupants[i].nick = nick.to_string();
        self.occupants[i].payload = payload;
        out.extend(self.broadcast_presence(i, &[]));
        Ok(out)
    }

    /// A groupchat message from `jid`: to every occupant from the sender's nick, and into
    /// the history; a subject change if it carries a `<subject/>` and no body (§8.1).
    /// Decided here, applied by [`Room::keep`].
    pub fn groupchat(&self, jid: &str, message: &Element, now: &str) -> Result<Spoken, StanzaError> {
        let Some(sender) = self.occupant(jid) else {
            return Err(StanzaError::not_acceptable().with_text("only occupants may send messages to the room"));
        };
        let id = message.get_attr("id");
        if id.is_some() && self.history.iter().any(|s| s.sender == jid && s.id.as_deref() == id) {
            return Ok(Spoken::Again);
        }
        let is_subject = message.has_child("subject", NS_CLIENT) && !message.has_child("body", NS_CLIENT);
        if is_subject && sender.role != Role::Moderator {
            return Err(StanzaError::forbidden().with_text("only moderators may change the subject"));
        }
        let mut copy = Element::new("message", NS_CLIENT)
            .attr("from", self.nick_jid(&sender.nick))
            .attr("type", "groupchat");
        if let Some(id) = id {
            copy.set_attr("id", id);
        }
        for child in message.elements() {
            copy.push(child.clone());
        }
        Ok(match is_subject {
            true => Spoken::Subject(copy),
            false => Spoken::Said(Said {
                seq: self.next_seq,
                stamp: now.to_string(),
                sender: jid.to_string(),
                id: id.map(str::to_string),
                message: copy,
            }),
        })
    }

    /// Apply what [`Room::groupchat`] decided: into the history (or the subject), and to
    /// every occupant.
    pub fn keep(&mut self, spoken: Spoken) -> Vec<Out> {
        let copy = match spoken {
            Spoken::Again => return Vec::new(),
            Spoken::Subject(copy) => {
                self.subject = Some(copy.clone());
                copy
            }
            Spoken::Said(said) => {
                if self.history.len() == HISTORY {
                    self.history.pop_front();
                }
                self.next_seq = said.seq + 1;
                let copy = said.message.clone();
                self.history.push_back(said);
                copy
            }
        };
        let everyone: Vec<String> = self.occupants.iter().map(|o| o.jid.clone()).collect();
        vec![Out::Many(copy, everyone)]
    }

    /// A private message from `jid` to the occupant `nick` (§7.5).
    pub fn private(&self, jid: &str, nick: &str, message: &Element) -> Result<Vec<Out>, StanzaError> {
        let Some(sender) = self.occupant(jid) else {
            return Err(StanzaError::not_acceptable().with_text("only occupants may send private messages"));
        };
        let Some(to) = self.by_nick(nick) else {
            return Err(StanzaError::item_not_found().with_text("no occupant has that nickname"));
        };
        let mut copy = message.clone();
        copy.set_attr("from", self.nick_jid(&sender.nick));
        copy.set_attr("to", to.jid.as_str());
        copy.push(Element::new("x", ns::MUC_USER));
        Ok(vec![Out::One(copy)])
    }

    /// Whether `jid` is in the room as `nick` (XEP-0410 self-ping).
    pub fn is_in_as(&self, jid: &str, nick: &str) -> bool {
        self.occupant(jid).is_some_and(|o| o.nick == nick)
    }

    /// Whether `jid` is an occupant and owns the room.
    pub fn is_owner(&self, jid: &str) -> bool {
        self.occupant(jid).is_some_and(|o| o.affiliation == Affiliation::Owner)
    }

    /// Occupant `i`'s presence to everyone: moderators see its real JID (the room is
    /// semi-anonymous), others do not; its own copy carries 110.
    fn broadcast_presence(&self, i: usize, own_codes: &[&str]) -> Vec<Out> {
        let o = &self.occupants[i];
        let mut out = self.to_others(&o.jid, |jid| self.presence_of(o, jid, None));
        let mut codes = vec!["110"];
        codes.extend_from_slice(own_codes);
        let mut own = self.presence_of(o, true, None);
        let x = own.get_child_mut("x", ns::MUC_USER).expect("presence_of adds muc#user");
        for code in codes {
            x.push(Element::new("status", ns::MUC_USER).attr("code", code));
        }
        own.set_attr("to", o.jid.as_str());
        out.push(Out::One(own));
        out
    }

    /// A stanza about the occupant `about` to every other occupant: `build(true)` for the
    /// moderators, who see real JIDs, `build(false)` for the rest (semi-anonymous).
    fn to_others(&self, about: &str, build: impl Fn(bool) -> Element) -> Vec<Out> {
        [true, false]
            .into_iter()
            .filter_map(|sees_jids| {
                let to: Vec<String> = self
                    .occupants
                    .iter()
                    .filter(|r| r.jid != about && (r.role == Role::Moderator) == sees_jids)
                    .map(|r| r.jid.clone())
                    .collect();
                (!to.is_empty()).then(|| Out::Many(build(sees_jids), to))
            })
            .collect()
    }

    fn item(o: &Occupant, role: &str, jid: bool, nick: Option<&str>) -> Element {
        let mut item = Element::new("item", ns::MUC_USER)
            .attr("affiliation", o.affiliation.as_str())
            .attr("role", role);
        if jid {
            item.set_attr("jid", o.jid.as_str());
        }
        if let Some(nick) = nick {
            item.set_attr("nick", nick);
        }
        item
    }

    fn presence_of(&self, o: &Occupant, jid: bool, nick: Option<&str>) -> Element {
        let mut p = Element::new("presence", NS_CLIENT).attr("from", self.nick_jid(&o.nick));
        for child in &o.payload {
            p.push(child.clone());
        }
        p.child(Element::new("x", ns::MUC_USER).child(Self::item(o, o.role.as_str(), jid, nick)))
    }

    /// An occupant's unavailable presence: leaving (role `none`), or giving up its old
    /// nickname for `new_nick` (its role stays, §7.6).
    fn unavailable_of(&self, o: &Occupant, codes: &[&str], new_nick: Option<&str>, jid: bool) -> Element {
        let role = match new_nick {
            Some(_) => o.role.as_str(),
            None => "none",
        };
        let mut x = Element::new("x", ns::MUC_USER).child(Self::item(o, role, jid, new_nick));
        for code in codes {
            x.push(Element::new("status", ns::MUC_USER).attr("code", *code));
        }
        Element::new("presence", NS_CLIENT)
            .attr("from", self.nick_jid(&o.nick))
            .attr("type", "unavailable")
            .child(x)
    }
}

/// What of a client's presence the room repeats: everything but the MUC protocol's own
/// elements (the join request, its password and history parameters).
pub fn payload_of(presence: &Element) -> Vec<Element> {
    presence
        .elements()
        .filter(|e| e.ns.as_str() != ns::MUC && e.ns.as_str() != ns::MUC_USER)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOM: &str = "lounge@conference.l";

    fn presence() -> Element {
        Element::new("presence", NS_CLIENT)
            .child(Element::new("x", ns::MUC))
            .child(Element::new("show", NS_CLIENT).text("away"))
    }

    fn codes(e: &Element) -> Vec<String> {
        e.get_child("x", ns::MUC_USER)
            .map(|x| {
                x.elements()
                    .filter(|c| c.name == "status")
                    .filter_map(|c| c.get_attr("code").map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn item_attr<'a>(e: &'a Element, name: &str) -> Option<&'a str> {
        e.get_child("x", ns::MUC_USER)?
            .get_child("item", ns::MUC_USER)?
            .get_attr(name)
    }

    fn created() -> Room {
        let mut room = Room::new(ROOM);
        room.enter("alice@l/a", "Alice", payload_of(&presence()), true).unwrap();
        room.locked = false;
        room
    }

    #[test]
    fn the_creator_owns_the_room_and_is_told_201_and_110() {
        let mut room = Room::new(ROOM);
        let out = room.enter("alice@l/a", "Alice", payload_of(&presence()), true).unwrap();
        let Out::One(own) = &out[0] else { panic!("{out:?}") };
        assert_eq!(own.get_attr("from"), Some("lounge@conference.l/Alice"));
        assert_eq!(codes(own), ["110", "201"]);
        assert_eq!(item_attr(own, "affiliation"), Some("owner"));
        assert_eq!(item_attr(own, "role"), Some("moderator"));
        assert!(own.has_child("show", NS_CLIENT), "the presence's payload is repeated");
        assert!(own.get_child("x", ns::MUC).is_none(), "the join request is not");
        let Out::One(subject) = &out[1] else { panic!("{out:?}") };
        assert!(subject.has_child("subject", NS_CLIENT));
        // Locked: nobody else gets in until the owner accepts the configuration.
        let refused = room.presence("bob@l/b", "Bob", &presence()).unwrap_err();
        assert_eq!(refused.condition, poolxmpp_sdk::Condition::ItemNotFound);
    }

    #[test]
    fn a_newcomer_sees_the_room_then_itself_and_everyone_sees_it() {
        let mut room = created();
        let out = room.presence("bob@l/b", "Bob", &presence()).unwrap();
        // Alice's presence to Bob, without her real JID (Bob is not a moderator).
        let Out::One(alice) = &out[0] else { panic!("{out:?}") };
        assert_eq!(
            (alice.get_attr("from"), alice.get_attr("to")),
            (Some("lounge@conference.l/Alice"), Some("bob@l/b"))
        );
        assert_eq!(item_attr(alice, "jid"), None);
        // Bob's presence to Alice, a moderator: with his real JID.
        let Out::Many(bob, to) = &out[1] else { panic!("{out:?}") };
        assert_eq!(to, &["alice@l/a".to_string()]);
        assert_eq!(item_attr(bob, "jid"), Some("bob@l/b"));
        let Out::One(own) = &out[2] else { panic!("{out:?}") };
        assert_eq!(codes(own), ["110"]);
        assert_eq!(item_attr(own, "role"), Some("participant"));
        assert_eq!(room.occupant_count(), 2);
    }

    #[test]
    fn a_taken_nickname_is_a_conflict() {
        let mut room = created();
        let err = room.presence("bob@l/b", "Alice", &presence()).unwrap_err();
        assert_eq!(err.condition, poolxmpp_sdk::Condition::Conflict);
    }

    #[test]
    fn messages_reach_everyone_and_newcomers_get_the_history() {
        let mut room = created();
        room.presence("bob@l/b", "Bob", &presence()).unwrap();
        let m = Element::new("message", NS_CLIENT)
            .attr("type", "groupchat")
            .attr("id", "m1")
            .child(Element::new("body", NS_CLIENT).text("hello"));
        let spoken = room.groupchat("bob@l/b", &m, "2026-12-02T10:00:00Z").unwrap();
        assert!(
            matches!(room.groupchat("bob@l/b", &m, "").unwrap(), Spoken::Said(_)),
            "not kept yet: still new"
        );
        let out = room.keep(spoken);
        assert_eq!(
            room.groupchat("bob@l/b", &m, "").unwrap(),
            Spoken::Again,
            "a message handed over twice is recognised by its sender and id"
        );
        let Out::Many(copy, to) = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(copy.get_attr("from"), Some("lounge@conference.l/Bob"));
        assert_eq!(copy.get_attr("id"), Some("m1"));
        assert_eq!(to.len(), 2);
        let refused = room.groupchat("mallory@l/m", &m, "").unwrap_err();
        assert_eq!(refused.condition, poolxmpp_sdk::Condition::NotAcceptable);
        let out = room.presence("carol@l/c", "Carol", &presence()).unwrap();
        let history: Vec<_> = out
            .iter()
            .filter_map(|o| match o {
                Out::One(e) if e.has_child("body", NS_CLIENT) => Some(e),
                _ => None,
            })
            .collect();
        assert_eq!(history.len(), 1);
        assert!(history[0].has_child("delay", ns::DELAY));
    }

    #[test]
    fn a_nickname_change_is_303_then_the_new_presence() {
        let mut room = created();
        room.presence("bob@l/b", "Bob", &presence()).unwrap();
        let out = room.presence("bob@l/b", "Robert", &presence()).unwrap();
        let Out::Many(gone, _) = &out[0] else { panic!("{out:?}") };
        assert_eq!(gone.get_attr("type"), Some("unavailable"));
        assert_eq!(codes(gone), ["303"]);
        assert_eq!(item_attr(gone, "nick"), Some("Robert"));
        assert_eq!(
            item_attr(gone, "role"),
            Some("participant"),
            "a nickname change keeps the role"
        );
        let Out::One(own_gone) = &out[1] else { panic!("{out:?}") };
        assert_eq!(codes(own_gone), ["303", "110"]);
        assert!(room.is_in_as("bob@l/b", "Robert"));
    }

    #[test]
    fn leaving_tells_everyone_and_the_leaver_with_110() {
        let mut room = created();
        room.presence("bob@l/b", "Bob", &presence()).unwrap();
        let out = room.exit("bob@l/b", None);
        let Out::Many(gone, to) = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(to, &["alice@l/a".to_string()]);
        assert_eq!(item_attr(gone, "role"), Some("none"));
        assert_eq!(
            item_attr(gone, "jid"),
            Some("bob@l/b"),
            "Alice moderates: she sees who left"
        );
        let Out::One(own) = &out[1] else { panic!("{out:?}") };
        assert_eq!(codes(own), ["110"]);
        assert_eq!(room.occupant_count(), 1);
        assert!(room.exit("bob@l/b", None).is_empty());
    }

    #[test]
    fn private_messages_go_through_the_room() {
        let mut room = created();
        room.presence("bob@l/b", "Bob", &presence()).unwrap();
        let m = Element::new("message", NS_CLIENT)
            .attr("type", "chat")
            .child(Element::new("body", NS_CLIENT).text("psst"));
        let out = room.private("bob@l/b", "Alice", &m).unwrap();
        let Out::One(pm) = &out[0] else { panic!("{out:?}") };
        assert_eq!(
            (pm.get_attr("from"), pm.get_attr("to")),
            (Some("lounge@conference.l/Bob"), Some("alice@l/a"))
        );
        assert_eq!(
            room.private("bob@l/b", "Nobody", &m).unwrap_err().condition,
            poolxmpp_sdk::Condition::ItemNotFound
        );
    }

    #[test]
    fn a_restored_room_keeps_its_occupants_and_the_last_messages_in_order() {
        let mut room = created();
        room.presence("bob@l/b", "Bob", &presence()).unwrap();
        let said = |seq: u64| Said {
            seq,
            stamp: String::new(),
            sender: "bob@l/b".into(),
            id: Some(format!("m{seq}")),
            message: Element::new("message", NS_CLIENT).attr("id", format!("m{seq}")),
        };
        // Slots are overwritten in turn, so the store hands them back in any order.
        let history: Vec<Said> = (0..HISTORY as u64 + 5).rev().map(said).collect();
        let restored = Room::restore(ROOM, false, None, room.occupants().to_vec(), history);
        assert_eq!(restored.occupant_count(), 2);
        let seqs: Vec<u64> = restored.history.iter().map(|s| s.seq).collect();
        assert_eq!(seqs, (5..HISTORY as u64 + 5).collect::<Vec<_>>());
        let m = Element::new("message", NS_CLIENT)
            .attr("type", "groupchat")
            .attr("id", "new");
        let Spoken::Said(next) = restored.groupchat("bob@l/b", &m, "").unwrap() else {
            panic!("a new message")
        };
        assert_eq!(next.seq, HISTORY as u64 + 5, "numbering goes on where it stopped");
    }

    #[test]
    fn a_lost_occupant_leaves_with_333_and_is_not_written_to() {
        let mut room = created();
        room.presence("bob@l/b", "Bob", &presence()).unwrap();
        let out = room.lost("bob@l/b");
        assert_eq!(out.len(), 1, "{out:?}");
        let Out::Many(gone, to) = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(to, &["alice@l/a".to_string()]);
        assert_eq!(gone.get_attr("type"), Some("unavailable"));
        assert_eq!(codes(gone), ["333"]);
        assert!(room.lost("bob@l/b").is_empty());
    }

    #[test]
    fn a_join_request_from_an_occupant_gets_the_room_again() {
        let mut room = created();
        room.presence("bob@l/b", "Bob", &presence()).unwrap();
        let out = room.presence("bob@l/b", "Bob", &presence()).unwrap();
        let to_bob: Vec<&Element> = out
            .iter()
            .filter_map(|o| match o {
                Out::One(e) if e.get_attr("to") == Some("bob@l/b") => Some(e),
                _ => None,
            })
            .collect();
        assert!(to_bob
            .iter()
            .any(|e| e.get_attr("from") == Some("lounge@conference.l/Alice")));
        assert!(to_bob.iter().any(|e| codes(e) == ["110"]));
        assert!(to_bob.iter().any(|e| e.has_child("subject", NS_CLIENT)));
        // A plain presence update is only broadcast.
        let update = Element::new("presence", NS_CLIENT).child(Element::new("show", NS_CLIENT).text("dnd"));
        let out = room.presence("bob@l/b", "Bob", &update).unwrap();
        assert!(!out
            .iter()
            .any(|o| matches!(o, Out::One(e) if e.has_child("subject", NS_CLIENT))));
    }
}
