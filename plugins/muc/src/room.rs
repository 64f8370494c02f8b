//! One room's state and the XEP-0045 rules for occupants: entering (password, members-only,
//! bans, a full room, history requests), presence changes, nickname changes, exiting,
//! groupchat and private messages, the subject, invitations, configuration changes and
//! destruction. Moderation and affiliations are in [`crate::admin`]. Pure: every method
//! returns what to send ([`Out`]) and notes what changed ([`Dirty`]), so the rules are
//! unit-tested without a host and the caller stores exactly what changed.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};

use poolxmpp_sdk::{Condition, Element, ErrorType, StanzaError, NS_CLIENT};

use crate::config::{AllowPm, Config, Whois};
use crate::{nick, ns};

/// How many groupchat messages a room keeps for newcomers (XEP-0045 §7.2.15).
pub const HISTORY: usize = 20;
/// One occupant's groupchat rate: a burst of this many messages...
const RATE_BURST: f64 = 30.0;
/// ...then this many per second.
const RATE_PER_SEC: f64 = 10.0;
/// The most invitations one message may carry.
const MAX_INVITES: usize = 10;

/// What a room sends: one stanza, or one stanza to many recipients (the host's fan-out).
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    One(Element),
    Many(Element, Vec<String>),
}

/// An occupant's role in the room (XEP-0045 §5.1); `none` is not being in the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Visitor,
    Participant,
    Moderator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Moderator => "moderator",
            Role::Participant => "participant",
            Role::Visitor => "visitor",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        [Role::Moderator, Role::Participant, Role::Visitor]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// A user's affiliation with the room (XEP-0045 §5.2), in rank order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Affiliation {
    Outcast,
    None,
    Member,
    Admin,
    Owner,
}

impl Affiliation {
    pub fn as_str(self) -> &'static str {
        match self {
            Affiliation::Owner => "owner",
            Affiliation::Admin => "admin",
            Affiliation::Member => "member",
            Affiliation::None => "none",
            Affiliation::Outcast => "outcast",
        }
    }

    pub fn parse(s: &str) -> Option<Affiliation> {
        [
            Affiliation::Owner,
            Affiliation::Admin,
            Affiliation::Member,
            Affiliation::None,
            Affiliation::Outcast,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }

    /// The role an occupant with this affiliation has on entering (§5.1.2); none for an
    /// outcast, who may not enter.
    pub fn default_role(self, moderated: bool) -> Option<Role> {
        match self {
            Affiliation::Owner | Affiliation::Admin => Some(Role::Moderator),
            Affiliation::Member => Some(Role::Participant),
            Affiliation::None if moderated => Some(Role::Visitor),
            Affiliation::None => Some(Role::Participant),
            Affiliation::Outcast => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Occupant {
    /// Its nickname, enforced ([`nick::enforce`]).
    pub nick: String,
    /// What its nickname is compared by ([`nick::key`]; not stored: it is derived).
    pub nick_key: String,
    /// The occupant's full JID: where the room's stanzas for it go.
    pub jid: String,
    pub role: Role,
    /// What the occupant's last presence carried (show, status, caps, ...), minus the
    /// MUC elements: repeated in the room's presence for it.
    pub payload: Vec<Element>,
    /// Its groupchat rate budget (not stored: a new owner starts it afresh).
    pub bucket: Bucket,
    /// Its XEP-0421 id, derived from the room's salt and its bare JID once, when it
    /// enters or the room is restored (not stored: it is derived).
    pub occupant_id: String,
}

impl Occupant {
    /// XEP-0421: the element carrying this occupant's id.
    fn occupant_id_element(&self) -> Element {
        Element::new("occupant-id", ns::OCCUPANT_ID).attr("id", self.occupant_id.as_str())
    }
}

/// A token bucket: [`RATE_BURST`] messages, refilled at [`RATE_PER_SEC`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Bucket {
    used: f64,
    at_ms: u64,
}

impl Bucket {
    /// Take one message's token at `now_ms`; false if the budget is spent.
    fn take(&mut self, now_ms: u64) -> bool {
        let refill = now_ms.saturating_sub(self.at_ms) as f64 / 1000.0 * RATE_PER_SEC;
        self.used = (self.used - refill).max(0.0);
        self.at_ms = now_ms;
        if self.used + 1.0 > RATE_BURST {
            return false;
        }
        self.used += 1.0;
        true
    }
}

/// One groupchat message as the room broadcast it, kept in its history.
#[derive(Debug, Clone, PartialEq)]
pub struct Said {
    /// The room's count of messages: the history's order, where it is stored, its stanza-id.
    pub seq: u64,
    /// When the room received it (XEP-0082), for the `<delay/>` of its replay...
    pub stamp: String,
    /// ...and in milliseconds, for history requests by `seconds` and `since`.
    pub at_ms: u64,
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

/// What changed in a room since the caller last stored it.
#[derive(Debug, Default, PartialEq)]
pub struct Dirty {
    /// The room's own record (lock, subject, configuration, affiliations).
    pub room: bool,
    /// Occupants (full JIDs) entered, changed or gone.
    pub occupants: BTreeSet<String>,
    /// History entries added (their sequence numbers).
    pub said: Vec<u64>,
}

/// What a newcomer asked of the history (§7.2.15); no limits: all the room keeps.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct HistoryRequest {
    pub max_stanzas: Option<usize>,
    pub max_chars: Option<usize>,
    /// Only messages at or after this time (ms): `seconds` and `since` both become one.
    pub since_ms: Option<u64>,
}

impl HistoryRequest {
    /// The `<history/>` of a join request, at `now_ms`.
    pub fn of(join: &Element, now_ms: u64) -> HistoryRequest {
        let Some(h) = join
            .get_child("x", ns::MUC)
            .and_then(|x| x.get_child("history", ns::MUC))
        else {
            return HistoryRequest::default();
        };
        let number = |name: &str| h.get_attr(name).and_then(|v| v.trim().parse::<u64>().ok());
        let seconds = number("seconds").map(|s| now_ms.saturating_sub(s.saturating_mul(1000)));
        let since = h.get_attr("since").and_then(poolxmpp_sdk::time::parse_utc);
        HistoryRequest {
            max_stanzas: number("maxstanzas").map(|n| n as usize),
            max_chars: number("maxchars").map(|n| n as usize),
            since_ms: seconds.max(since),
        }
    }
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
    /// A new room is locked until its owner configures it (§10.1.2); until then nobody
    /// else may enter.
    pub locked: bool,
    pub config: Config,
    /// Users' affiliations by bare JID; `none` is not kept.
    affiliations: BTreeMap<String, Affiliation>,
    /// Nicknames reserved by registration (§7.10), by bare JID.
    pub(crate) reserved: BTreeMap<String, String>,
    /// Random to the room, fixed for its life: its occupant-ids (XEP-0421) and stanza-ids
    /// (XEP-0359) are made from it, so they tell nothing and are never reused.
    pub salt: String,
    dirty: Dirty,
}

/// The bare JID of a full one, as affiliations are keyed.
fn bare(jid: &str) -> &str {
    poolxmpp_sdk::jid::bare(jid)
}

impl Room {
    /// A new room, locked, `creator` (a full JID) its owner — the caller then calls
    /// [`Room::enter`] for the creator.
    pub fn new(jid: &str, creator: &str, salt: String) -> Room {
        let mut room = Room::restore(
            jid,
            true,
            None,
            Config::default(),
            BTreeMap::new(),
            salt,
            Vec::new(),
            Vec::new(),
        );
        room.affiliations.insert(bare(creator).to_string(), Affiliation::Owner);
        room.dirty.room = true;
        room
    }

    /// A room as it was stored: its occupants and history (in any order; the last
    /// [`HISTORY`] by sequence are kept).
    #[allow(clippy::too_many_arguments)]
    pub fn restore(
        jid: &str,
        locked: bool,
        subject: Option<Element>,
        config: Config,
        affiliations: BTreeMap<String, Affiliation>,
        salt: String,
        occupants: Vec<Occupant>,
        mut history: Vec<Said>,
    ) -> Room {
        history.sort_by_key(|s| s.seq);
        let mut occupants = occupants;
        for o in &mut occupants {
            o.occupant_id = occupant_id(&salt, &o.jid);
            o.nick_key = nick::key(&o.nick);
        }
        let skip = history.len().saturating_sub(HISTORY);
        let history: VecDeque<Said> = history.into_iter().skip(skip).collect();
        Room {
            jid: jid.to_string(),
            occupants,
            next_seq: history.back().map_or(0, |s| s.seq + 1),
            history,
            subject,
            locked,
            config,
            affiliations,
            reserved: BTreeMap::new(),
            salt,
            dirty: Dirty::default(),
        }
    }

    /// What changed since the last call, for the caller to store.
    pub fn take_dirty(&mut self) -> Dirty {
        std::mem::take(&mut self.dirty)
    }

    pub fn is_empty(&self) -> bool {
        self.occupants.is_empty()
    }

    /// Occupants as others see them: one per nickname, however many sessions share it.
    pub fn occupant_count(&self) -> usize {
        self.occupants
            .iter()
            .map(|o| o.nick.as_str())
            .collect::<HashSet<_>>()
            .len()
    }

    pub fn occupants(&self) -> &[Occupant] {
        &self.occupants
    }

    pub fn said(&self, seq: u64) -> Option<&Said> {
        self.history.iter().find(|s| s.seq == seq)
    }

    /// The occupant a full JID is in the room as.
    pub fn occupant(&self, jid: &str) -> Option<&Occupant> {
        self.occupants.iter().find(|o| o.jid == jid)
    }

    /// The occupant called `nick`: its primary session, the first of the user's sessions
    /// that entered as it.
    pub(crate) fn by_nick(&self, nick: &str) -> Option<&Occupant> {
        self.occupants.iter().find(|o| o.nick == nick)
    }

    /// Whether session `i` is its nickname's primary: the one whose presence the others
    /// see (§7.2 leaves several sessions under one nickname to the service; ours share it
    /// when they are the same user's, as Prosody and ejabberd do).
    pub(crate) fn is_primary(&self, i: usize) -> bool {
        let nick = &self.occupants[i].nick;
        !self.occupants[..i].iter().any(|o| &o.nick == nick)
    }

    /// The full JIDs of every session in the room as `nick`.
    pub(crate) fn sessions_of(&self, nick: &str) -> Vec<String> {
        self.occupants
            .iter()
            .filter(|o| o.nick == nick)
            .map(|o| o.jid.clone())
            .collect()
    }

    /// Take every session called `nick` out (kicked, banned), noting them for the store.
    pub(crate) fn remove_nick(&mut self, nick: &str) -> Vec<Occupant> {
        let (gone, kept) = std::mem::take(&mut self.occupants)
            .into_iter()
            .partition(|o| o.nick == nick);
        self.occupants = kept;
        for o in &gone {
            self.dirty.occupants.insert(o.jid.clone());
        }
        gone
    }

    pub(crate) fn position(&self, jid: &str) -> Option<usize> {
        self.occupants.iter().position(|o| o.jid == jid)
    }

    pub fn affiliations(&self) -> &BTreeMap<String, Affiliation> {
        &self.affiliations
    }

    /// A user's affiliation (by any of its JIDs).
    pub fn affiliation_of(&self, jid: &str) -> Affiliation {
        self.affiliations.get(bare(jid)).copied().unwrap_or(Affiliation::None)
    }

    /// Who has `affiliation`, by bare JID.
    pub fn with_affiliation(&self, affiliation: Affiliation) -> Vec<String> {
        self.affiliations
            .iter()
            .filter(|(_, a)| **a == affiliation)
            .map(|(j, _)| j.clone())
            .collect()
    }

    /// Set a user's affiliation (none removes the entry).
    pub(crate) fn set_affiliation(&mut self, bare_jid: &str, affiliation: Affiliation) {
        match affiliation {
            Affiliation::None => self.affiliations.remove(bare_jid),
            a => self.affiliations.insert(bare_jid.to_string(), a),
        };
        self.dirty.room = true;
    }

    /// The nickname `jid`'s user reserved, if any.
    pub fn reserved_nick(&self, jid: &str) -> Option<&str> {
        self.reserved.get(bare(jid)).map(String::as_str)
    }

    /// Whether `nick` is reserved by a user other than `bare_jid`.
    pub(crate) fn nick_reserved_by_other(&self, nick: &str, bare_jid: &str) -> bool {
        let key = nick::key(nick);
        self.reserved
            .iter()
            .any(|(user, n)| user != bare_jid && nick::key(n) == key)
    }

    /// The occupant whose nickname is the same as `nick` ([`nick::key`]), if any.
    pub(crate) fn by_nick_key(&self, key: &str) -> Option<&Occupant> {
        self.occupants.iter().find(|o| o.nick_key == key)
    }

    /// Reserve `nick` for `bare_jid`, noting it for the store.
    pub(crate) fn reserve(&mut self, bare_jid: &str, nick: &str) {
        self.reserved.insert(bare_jid.to_string(), nick.to_string());
        self.dirty.room = true;
    }

    pub(crate) fn nick_jid(&self, nick: &str) -> String {
        format!("{}/{nick}", self.jid)
    }

    /// Whether `jid` is in the room as `nick` (XEP-0410 self-ping).
    pub fn is_in_as(&self, jid: &str, nick: &str) -> bool {
        self.occupant(jid).is_some_and(|o| o.nick == nick)
    }

    /// Whether `jid`'s user owns the room.
    pub fn is_owner(&self, jid: &str) -> bool {
        self.affiliation_of(jid) == Affiliation::Owner
    }

    /// The owner accepted a configuration: others may enter.
    pub fn unlock(&mut self) {
        if self.locked {
            self.locked = false;
            self.dirty.room = true;
        }
    }

    /// Give the occupant called `nick` (each of its sessions) a role, noting it for the
    /// store.
    pub(crate) fn set_role(&mut self, nick: &str, role: Role) {
        for o in self.occupants.iter_mut().filter(|o| o.nick == nick) {
            o.role = role;
            self.dirty.occupants.insert(o.jid.clone());
        }
    }

    /// An available presence from `jid` to `room/nick`: entering, a nickname change or a
    /// presence update.
    /// A presence from `jid` to the occupant JID of `asked` (the nickname as the client
    /// wrote it): an entry, a presence update, or a nickname change.
    pub fn presence(
        &mut self,
        jid: &str,
        asked: &str,
        presence: &Element,
        now_ms: u64,
    ) -> Result<Vec<Out>, StanzaError> {
        let payload = payload_of(presence);
        if let Some(i) = self.position(jid) {
            let nick = nick::enforce(asked)?;
            self.dirty.occupants.insert(jid.to_string());
            if self.occupants[i].nick == nick {
                self.occupants[i].payload = payload;
                // A join request from an occupant: the client thinks it is not in (it
                // lost its connection's state, or the room's answer): it gets the room
                // again as a newcomer does.
                if presence.has_child("x", ns::MUC) {
                    return Ok(self.welcome(i, &[], HistoryRequest::of(presence, now_ms)));
                }
                return Ok(self.broadcast_presence(i, &[]));
            }
            return self.change_nick(i, &nick, nick != asked, payload);
        }
        self.enter(jid, asked, presence, false, now_ms)
    }

    /// Enter the room as `asked` (enforced: a nickname the room refuses is refused
    /// first); `created` when this entry created it (status 201). The checks are those
    /// of §7.2 in its order.
    pub fn enter(
        &mut self,
        jid: &str,
        asked: &str,
        presence: &Element,
        created: bool,
        now_ms: u64,
    ) -> Result<Vec<Out>, StanzaError> {
        let nick = nick::enforce(asked)?;
        let nick_key = nick::key(&nick);
        let affiliation = self.affiliation_of(jid);
        if self.locked && !created {
            return Err(StanzaError::item_not_found().with_text("this room is locked until its owner configures it"));
        }
        let Some(role) = affiliation.default_role(self.config.moderated) else {
            return Err(StanzaError::forbidden().with_text("you are banned from this room"));
        };
        if self.config.members_only && affiliation < Affiliation::Member {
            return Err(StanzaError::new(Condition::RegistrationRequired).with_text("this room is for members only"));
        }
        // Another session of the same user may join under its nickname (in whatever case
        // it asks for it), and shares its role.
        let sibling = self
            .by_nick_key(&nick_key)
            .map(|o| (bare(&o.jid) == bare(jid), o.role, o.nick.clone()));
        if sibling.as_ref().is_some_and(|(same_user, ..)| !same_user) || self.nick_reserved_by_other(&nick, bare(jid)) {
            return Err(StanzaError::conflict().with_text("that nickname is taken in this room"));
        }
        let (role, nick) = match sibling.clone() {
            Some((_, role, theirs)) => (role, theirs),
            None => (role, nick),
        };
        if sibling.is_none() && self.occupant_count() >= self.config.max_users && affiliation < Affiliation::Admin {
            return Err(StanzaError::service_unavailable().with_text("this room is full"));
        }
        if let Some(password) = &self.config.password {
            let given = presence
                .get_child("x", ns::MUC)
                .and_then(|x| x.get_child("password", ns::MUC))
                .map(|p| p.text_content());
            if given.as_deref() != Some(password.as_str()) && affiliation != Affiliation::Owner {
                return Err(StanzaError::new(Condition::NotAuthorized).with_text("this room needs the right password"));
            }
        }
        let rewritten = nick != asked;
        self.occupants.push(Occupant {
            nick,
            nick_key,
            jid: jid.to_string(),
            role,
            payload: payload_of(presence),
            bucket: Bucket::default(),
            occupant_id: occupant_id(&self.salt, jid),
        });
        self.dirty.occupants.insert(jid.to_string());
        let mut codes = Vec::new();
        if self.config.whois == Whois::Anyone {
            codes.push("100"); // §7.2.4: everyone sees your JID
        }
        if created {
            codes.push("201");
        }
        if rewritten {
            codes.push("210"); // the room changed the nickname asked for
        }
        Ok(self.welcome(self.occupants.len() - 1, &codes, HistoryRequest::of(presence, now_ms)))
    }

    /// What occupant `i` gets on entering, and the others of it.
    fn welcome(&self, i: usize, own_codes: &[&str], asked: HistoryRequest) -> Vec<Out> {
        let jid = self.occupants[i].jid.as_str();
        let mut out = Vec::new();
        // §7.2.3: first the presence of everyone else in the room, to the newcomer...
        let me = &self.occupants[i];
        let sees_jids = self.sees_jids(me);
        let mut seen = HashSet::from([me.nick.as_str()]);
        for o in self.occupants.iter().filter(|o| seen.insert(o.nick.as_str())) {
            let mut p = self.presence_of(o, sees_jids, None);
            p.set_attr("to", jid);
            out.push(Out::One(p));
        }
        // ...then the newcomer's to everyone, itself last with 110 (and 201 if it created
        // the room)...
        out.extend(self.broadcast_presence(i, own_codes));
        // ...then the history it asked for and the subject (§7.2.15, §7.2.16).
        for said in self.history_for(asked) {
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

    /// The newest messages within what was asked, oldest first.
    fn history_for(&self, asked: HistoryRequest) -> Vec<&Said> {
        let mut chars = 0usize;
        let mut picked: Vec<&Said> = Vec::new();
        for said in self.history.iter().rev() {
            if asked.max_stanzas.is_some_and(|n| picked.len() >= n) || asked.since_ms.is_some_and(|t| said.at_ms < t) {
                break;
            }
            if let Some(max) = asked.max_chars {
                chars += said.message.to_xml().len();
                if chars > max {
                    break;
                }
            }
            picked.push(said);
        }
        picked.reverse();
        picked
    }

    /// An unavailable (or error) presence from an occupant: it leaves (§7.14). Nothing to
    /// send if `jid` is not in the room.
    pub fn exit(&mut self, jid: &str, status: Option<&Element>) -> Vec<Out> {
        let Some(i) = self.position(jid) else {
            return Vec::new();
        };
        let was_primary = self.is_primary(i);
        let leaving = self.occupants.remove(i);
        self.dirty.occupants.insert(leaving.jid.clone());
        let extra: Vec<Element> = status.into_iter().cloned().collect();
        if self.by_nick(&leaving.nick).is_none() {
            return self.leaving(&[leaving], &[], &["110"], None, &extra);
        }
        // The user is still in the room from another session: only this one is told.
        let mut own = self.unavailable_of(&leaving, &["110"], None, true, &[]);
        own.set_attr("to", leaving.jid.as_str());
        for e in extra {
            own.push(e);
        }
        let mut out = vec![Out::One(own)];
        out.extend(self.successor_presence(&leaving.nick, was_primary));
        out
    }

    /// After the primary session of `nick` went (and others stay): the others see the
    /// next session's presence.
    fn successor_presence(&self, nick: &str, was_primary: bool) -> Vec<Out> {
        match self.by_nick(nick) {
            Some(next) if was_primary => self.to_others(nick, |sees| self.presence_of(next, sees, None)),
            _ => Vec::new(),
        }
    }

    /// An occupant whose session is gone without a word (its node died): it leaves with
    /// status 333 (its occupancy ended because of a technical problem), to everyone else.
    /// Nothing to send if `jid` is not in the room.
    pub fn lost(&mut self, jid: &str) -> Vec<Out> {
        let Some(i) = self.position(jid) else {
            return Vec::new();
        };
        let was_primary = self.is_primary(i);
        let lost = self.occupants.remove(i);
        self.dirty.occupants.insert(lost.jid.clone());
        if self.by_nick(&lost.nick).is_some() {
            return self.successor_presence(&lost.nick, was_primary);
        }
        self.to_others(&lost.nick, |sees| self.unavailable_of(&lost, &["333"], None, sees, &[]))
    }

    /// An occupant (every session of it, already taken out; the primary first) leaves:
    /// unavailable with `codes` to everyone else, and with `codes` and `own_codes` to each
    /// of its sessions; `item` adds to the item (actor, reason), `extra` to the presence.
    pub(crate) fn leaving(
        &self,
        gone: &[Occupant],
        codes: &[&str],
        own_codes: &[&str],
        item: Option<&[Element]>,
        extra: &[Element],
    ) -> Vec<Out> {
        let build = |o: &Occupant, sees: bool, codes: &[&str]| {
            let mut p = self.unavailable_of(o, codes, None, sees, item.unwrap_or(&[]));
            for e in extra {
                p.push(e.clone());
            }
            p
        };
        let Some(primary) = gone.first() else {
            return Vec::new();
        };
        let mut out = self.to_others(&primary.nick, |sees| build(primary, sees, codes));
        let mut all: Vec<&str> = codes.to_vec();
        all.extend_from_slice(own_codes);
        for o in gone {
            let mut own = build(o, true, &all);
            own.set_attr("to", o.jid.as_str());
            out.push(Out::One(own));
        }
        out
    }

    /// §7.6: the old nick leaves with 303 and the new one, then the new nick's presence.
    /// Every session of the user under the old nickname moves with it.
    /// `nick` is enforced; `rewritten` if that changed what was asked (status 210). Only
    /// a change of case of one's own nickname may keep its key.
    fn change_nick(
        &mut self,
        i: usize,
        nick: &str,
        rewritten: bool,
        payload: Vec<Element>,
    ) -> Result<Vec<Out>, StanzaError> {
        let old_nick = self.occupants[i].nick.clone();
        let nick_key = nick::key(nick);
        let taken = self.by_nick_key(&nick_key).is_some_and(|o| o.nick != old_nick);
        if taken || self.nick_reserved_by_other(nick, bare(&self.occupants[i].jid)) {
            return Err(StanzaError::conflict().with_text("that nickname is taken in this room"));
        }
        let primary = self.by_nick(&old_nick).expect("session i has it").clone();
        let mut out = Vec::new();
        // The unavailable of the old nick carries the new one in its item.
        out.extend(self.to_others(&old_nick, |sees| {
            self.unavailable_of(&primary, &["303"], Some(nick), sees, &[])
        }));
        let moving: Vec<usize> = (0..self.occupants.len())
            .filter(|&j| self.occupants[j].nick == old_nick)
            .collect();
        for &j in &moving {
            let mut own = self.unavailable_of(&self.occupants[j], &["303", "110"], Some(nick), true, &[]);
            own.set_attr("to", self.occupants[j].jid.as_str());
            out.push(Out::One(own));
        }
        for &j in &moving {
            self.occupants[j].nick = nick.to_string();
            self.occupants[j].nick_key = nick_key.clone();
            self.dirty.occupants.insert(self.occupants[j].jid.clone());
        }
        self.occupants[i].payload = payload;
        let own_codes: &[&str] = if rewritten { &["210"] } else { &[] };
        out.extend(self.announce(nick, own_codes));
        Ok(out)
    }

    /// A groupchat message from `jid`: to every occupant from the sender's nick, and into
    /// the history; a subject change if it carries a `<subject/>` and no body (§8.1).
    /// Decided here, applied by [`Room::keep`].
    pub fn groupchat(&mut self, jid: &str, message: &Element, now: &str, now_ms: u64) -> Result<Spoken, StanzaError> {
        let Some(i) = self.position(jid) else {
            return Err(StanzaError::not_acceptable().with_text("only occupants may send messages to the room"));
        };
        let id = message.get_attr("id");
        if id.is_some() && self.history.iter().any(|s| s.sender == jid && s.id.as_deref() == id) {
            return Ok(Spoken::Again);
        }
        let sender = &self.occupants[i];
        if sender.role == Role::Visitor {
            return Err(StanzaError::forbidden().with_text("you have no voice in this moderated room"));
        }
        let is_subject = message.has_child("subject", NS_CLIENT) && !message.has_child("body", NS_CLIENT);
        if is_subject && sender.role != Role::Moderator && !self.config.change_subject {
            return Err(StanzaError::forbidden().with_text("only moderators may change the subject"));
        }
        if !self.occupants[i].bucket.take(now_ms) {
            return Err(StanzaError::policy_violation()
                .with_type(ErrorType::Wait)
                .with_text("you are sending too fast; wait a moment"));
        }
        let sender = &self.occupants[i];
        let mut copy = Element::new("message", NS_CLIENT)
            .attr("from", self.nick_jid(&sender.nick))
            .attr("type", "groupchat");
        if let Some(id) = id {
            copy.set_attr("id", id);
        }
        // What the room vouches for is the room's to say: a client's own stanza-id or
        // occupant-id claiming to be the room's is dropped (XEP-0359 §4, XEP-0421 §4).
        for child in message.elements().filter(|c| !self.is_ours(c)) {
            copy.push(child.clone());
        }
        copy.push(sender.occupant_id_element());
        if is_subject {
            return Ok(Spoken::Subject(copy));
        }
        let seq = self.next_seq;
        copy.push(
            Element::new("stanza-id", ns::SID)
                .attr("id", self.stanza_id(seq))
                .attr("by", self.jid.as_str()),
        );
        Ok(Spoken::Said(Said {
            seq,
            stamp: now.to_string(),
            at_ms: now_ms,
            sender: jid.to_string(),
            id: id.map(str::to_string),
            message: copy,
        }))
    }

    /// Apply what [`Room::groupchat`] decided: into the history (or the subject), and to
    /// every occupant.
    pub fn keep(&mut self, spoken: Spoken) -> Vec<Out> {
        let copy = match spoken {
            Spoken::Again => return Vec::new(),
            Spoken::Subject(copy) => {
                self.subject = Some(copy.clone());
                self.dirty.room = true;
                copy
            }
            Spoken::Said(said) => {
                if self.history.len() == HISTORY {
                    self.history.pop_front();
                }
                self.next_seq = said.seq + 1;
                self.dirty.said.push(said.seq);
                let copy = said.message.clone();
                self.history.push_back(said);
                copy
            }
        };
        vec![Out::Many(copy, self.everyone())]
    }

    /// Every occupant's full JID.
    pub(crate) fn everyone(&self) -> Vec<String> {
        self.occupants.iter().map(|o| o.jid.clone()).collect()
    }

    /// A private message from `jid` to the occupant `nick` (§7.5), as the room allows.
    pub fn private(&self, jid: &str, nick: &str, message: &Element) -> Result<Vec<Out>, StanzaError> {
        let Some(sender) = self.occupant(jid) else {
            return Err(StanzaError::not_acceptable().with_text("only occupants may send private messages"));
        };
        let allowed = match self.config.allow_pm {
            AllowPm::Anyone => true,
            AllowPm::Participants => sender.role >= Role::Participant,
            AllowPm::Moderators => sender.role == Role::Moderator,
            AllowPm::None => false,
        };
        if !allowed {
            return Err(StanzaError::forbidden().with_text("private messages are not allowed to you in this room"));
        }
        let Some(to) = self.by_nick(nick) else {
            return Err(StanzaError::item_not_found().with_text("no occupant has that nickname"));
        };
        let mut copy = Element::new(message.name.as_str(), NS_CLIENT);
        for (name, value) in [("type", message.get_attr("type")), ("id", message.get_attr("id"))] {
            if let Some(v) = value {
                copy.set_attr(name, v);
            }
        }
        copy.set_attr("from", self.nick_jid(&sender.nick));
        for child in message.elements().filter(|c| !self.is_ours(c)) {
            copy.push(child.clone());
        }
        copy.push(Element::new("x", ns::MUC_USER));
        copy.push(sender.occupant_id_element());
        // To each of the addressee's sessions, as a message to a bare JID reaches them all.
        Ok(vec![Out::Many(copy, self.sessions_of(&to.nick))])
    }

    /// A mediated invitation (§7.8.2): a message to the room with `<invite to=.../>`
    /// elements, each sent on to its invitee from the room. In a members-only room the
    /// invitee becomes a member when the inviter may make members (an admin or owner, or
    /// anyone when the room lets occupants invite).
    pub fn invite(&mut self, jid: &str, x: &Element) -> Result<Vec<Out>, StanzaError> {
        let Some(inviter) = self.occupant(jid) else {
            return Err(StanzaError::not_acceptable().with_text("only occupants may invite"));
        };
        let may = inviter.role == Role::Moderator
            || self.affiliation_of(jid) >= Affiliation::Admin
            || self.config.allow_invites
            || !self.config.members_only;
        if !may {
            return Err(StanzaError::forbidden().with_text("only moderators may invite to this room"));
        }
        let invites: Vec<&Element> = x.elements().filter(|e| e.name == "invite").collect();
        if invites.len() > MAX_INVITES {
            return Err(StanzaError::not_acceptable().with_text("too many invitations in one message"));
        }
        let mut out = Vec::new();
        for invite in invites {
            let Some(to) = invite.get_attr("to").and_then(crate::bare_jid) else {
                return Err(StanzaError::new(Condition::JidMalformed).with_text("an invitation needs a valid 'to'"));
            };
            if self.config.members_only && self.affiliation_of(&to) < Affiliation::Member {
                if self.affiliation_of(&to) == Affiliation::Outcast {
                    return Err(StanzaError::forbidden().with_text("that user is banned from this room"));
                }
                self.set_affiliation(&to, Affiliation::Member);
            }
            let mut forwarded = Element::new("invite", ns::MUC_USER).attr("from", jid);
            if let Some(reason) = invite.get_child("reason", ns::MUC_USER) {
                forwarded.push(reason.clone());
            }
            let mut x = Element::new("x", ns::MUC_USER).child(forwarded);
            if let Some(password) = &self.config.password {
                x.push(Element::new("password", ns::MUC_USER).text(password.as_str()));
            }
            let body = format!("{} invites you to the room {}", bare(jid), self.jid);
            out.push(Out::One(
                Element::new("message", NS_CLIENT)
                    .attr("from", self.jid.as_str())
                    .attr("to", to.as_str())
                    .child(x)
                    .child(Element::new("body", NS_CLIENT).text(body)),
            ));
        }
        Ok(out)
    }

    /// A declined invitation (§7.8.2): sent on to the inviter, from the room, naming who
    /// declined.
    pub fn decline(&self, jid: &str, x: &Element) -> Result<Vec<Out>, StanzaError> {
        let decline = x.get_child("decline", ns::MUC_USER).expect("the caller checked");
        let Some(to) = decline.get_attr("to").and_then(crate::bare_jid) else {
            return Err(StanzaError::new(Condition::JidMalformed).with_text("a decline needs a valid 'to'"));
        };
        let mut forwarded = Element::new("decline", ns::MUC_USER).attr("from", bare(jid));
        if let Some(reason) = decline.get_child("reason", ns::MUC_USER) {
            forwarded.push(reason.clone());
        }
        Ok(vec![Out::One(
            Element::new("message", NS_CLIENT)
                .attr("from", self.jid.as_str())
                .attr("to", to.as_str())
                .child(Element::new("x", ns::MUC_USER).child(forwarded)),
        )])
    }

    /// A new configuration: occupants are told (status 104, and 172/173 when who sees
    /// real JIDs changed, §10.2.1); in a room that became members-only, those without
    /// membership leave with 322. Roles stay as they are: a room made moderated makes
    /// newcomers visitors, not those already in.
    pub fn configure(&mut self, config: Config) -> Vec<Out> {
        let before = std::mem::replace(&mut self.config, config);
        self.dirty.room = true;
        let mut out = Vec::new();
        if self.config.members_only && !before.members_only {
            let outsiders: BTreeSet<String> = self
                .occupants
                .iter()
                .filter(|o| self.affiliation_of(&o.jid) < Affiliation::Member)
                .map(|o| o.nick.clone())
                .collect();
            for nick in outsiders {
                let gone = self.remove_nick(&nick);
                out.extend(self.leaving(&gone, &["322"], &["110"], None, &[]));
            }
        }
        let mut codes = vec!["104"];
        match (before.whois, self.config.whois) {
            (Whois::Moderators, Whois::Anyone) => codes.push("172"),
            (Whois::Anyone, Whois::Moderators) => codes.push("173"),
            _ => {}
        }
        let mut x = Element::new("x", ns::MUC_USER);
        for code in codes {
            x.push(Element::new("status", ns::MUC_USER).attr("code", code));
        }
        if !self.occupants.is_empty() {
            let notice = Element::new("message", NS_CLIENT)
                .attr("from", self.jid.as_str())
                .attr("type", "groupchat")
                .child(x);
            out.push(Out::Many(notice, self.everyone()));
        }
        out
    }

    /// §10.9: the owner destroys the room; every occupant leaves with the reason and the
    /// alternate venue, if any (the `<destroy/>` as given).
    pub fn destroy(&mut self, destroy: &Element) -> Vec<Out> {
        let mut told = Element::new("destroy", ns::MUC_USER);
        if let Some(venue) = destroy.get_attr("jid") {
            told.set_attr("jid", venue);
        }
        for name in ["reason", "password"] {
            if let Some(e) = destroy.get_child(name, ns::MUC_OWNER) {
                told.push(Element::new(name, ns::MUC_USER).text(e.text_content()));
            }
        }
        let mut out = Vec::new();
        for o in std::mem::take(&mut self.occupants) {
            let p = Element::new("presence", NS_CLIENT)
                .attr("from", self.nick_jid(&o.nick))
                .attr("to", o.jid.as_str())
                .attr("type", "unavailable")
                .child(
                    Element::new("x", ns::MUC_USER)
                        .child(
                            Element::new("item", ns::MUC_USER)
                                .attr("affiliation", "none")
                                .attr("role", "none"),
                        )
                        .child(told.clone()),
                );
            out.push(Out::One(p));
        }
        out
    }

    /// Whether `receiver` sees occupants' real JIDs: moderators always, everyone in a
    /// non-anonymous room.
    pub(crate) fn sees_jids(&self, receiver: &Occupant) -> bool {
        receiver.role == Role::Moderator || self.config.whois == Whois::Anyone
    }

    /// Session `i`'s presence: to everyone else if it is its nickname's primary (real
    /// JIDs to those who see them), and its own copy with 110 and `own_codes`.
    pub(crate) fn broadcast_presence(&self, i: usize, own_codes: &[&str]) -> Vec<Out> {
        let o = &self.occupants[i];
        let mut out = match self.is_primary(i) {
            true => self.to_others(&o.nick, |sees| self.presence_of(o, sees, None)),
            false => Vec::new(),
        };
        out.push(Out::One(self.own_presence(o, own_codes)));
        out
    }

    /// The occupant called `nick` after a change to it (role, nickname): its presence to
    /// everyone else, and to each of its sessions with 110 and `own_codes`.
    pub(crate) fn announce(&self, nick: &str, own_codes: &[&str]) -> Vec<Out> {
        let Some(primary) = self.by_nick(nick) else {
            return Vec::new();
        };
        let mut out = self.to_others(nick, |sees| self.presence_of(primary, sees, None));
        for o in self.occupants.iter().filter(|o| o.nick == nick) {
            out.push(Out::One(self.own_presence(o, own_codes)));
        }
        out
    }

    /// Session `o`'s presence to itself: with its real JID, 110 and `own_codes`.
    fn own_presence(&self, o: &Occupant, own_codes: &[&str]) -> Element {
        let mut own = self.presence_of(o, true, None);
        let x = own.get_child_mut("x", ns::MUC_USER).expect("presence_of adds muc#user");
        for code in std::iter::once(&"110").chain(own_codes) {
            x.push(Element::new("status", ns::MUC_USER).attr("code", *code));
        }
        own.set_attr("to", o.jid.as_str());
        own
    }

    /// A stanza about the occupant called `about` to every other occupant (its own
    /// sessions are not others): `build(true)` for those who see real JIDs, `build(false)`
    /// for the rest.
    pub(crate) fn to_others(&self, about: &str, build: impl Fn(bool) -> Element) -> Vec<Out> {
        [true, false]
            .into_iter()
            .filter_map(|sees_jids| {
                let to: Vec<String> = self
                    .occupants
                    .iter()
                    .filter(|r| r.nick != about && self.sees_jids(r) == sees_jids)
                    .map(|r| r.jid.clone())
                    .collect();
                (!to.is_empty()).then(|| Out::Many(build(sees_jids), to))
            })
            .collect()
    }

    fn item(&self, o: &Occupant, role: &str, jid: bool, nick: Option<&str>) -> Element {
        let mut item = Element::new("item", ns::MUC_USER)
            .attr("affiliation", self.affiliation_of(&o.jid).as_str())
            .attr("role", role);
        if jid {
            item.set_attr("jid", o.jid.as_str());
        }
        if let Some(nick) = nick {
            item.set_attr("nick", nick);
        }
        item
    }

    pub(crate) fn presence_of(&self, o: &Occupant, jid: bool, nick: Option<&str>) -> Element {
        let mut p = Element::new("presence", NS_CLIENT).attr("from", self.nick_jid(&o.nick));
        for child in &o.payload {
            p.push(child.clone());
        }
        p.push(Element::new("x", ns::MUC_USER).child(self.item(o, o.role.as_str(), jid, nick)));
        p.child(o.occupant_id_element())
    }

    /// An occupant's unavailable presence: leaving (role `none`), or giving up its old
    /// nickname for `new_nick` (its role stays, §7.6); `in_item` goes into the item.
    fn unavailable_of(
        &self,
        o: &Occupant,
        codes: &[&str],
        new_nick: Option<&str>,
        jid: bool,
        in_item: &[Element],
    ) -> Element {
        let role = match new_nick {
            Some(_) => o.role.as_str(),
            None => "none",
        };
        let mut item = self.item(o, role, jid, new_nick);
        for e in in_item {
            item.push(e.clone());
        }
        let mut x = Element::new("x", ns::MUC_USER).child(item);
        for code in codes {
            x.push(Element::new("status", ns::MUC_USER).attr("code", *code));
        }
        Element::new("presence", NS_CLIENT)
            .attr("from", self.nick_jid(&o.nick))
            .attr("type", "unavailable")
            .child(x)
            .child(o.occupant_id_element())
    }

    /// XEP-0359: the room's id for message `seq`, unique for its life and never reused by
    /// a room of the same name later (the salt differs).
    fn stanza_id(&self, seq: u64) -> String {
        format!("{}-{seq}", &self.salt[..self.salt.len().min(12)])
    }

    /// A child a client put in that only the room may vouch for.
    fn is_ours(&self, child: &Element) -> bool {
        (child.ns.as_str() == ns::SID && child.name == "stanza-id" && child.get_attr("by") == Some(self.jid.as_str()))
            || (child.ns.as_str() == ns::OCCUPANT_ID && child.name == "occupant-id")
    }
}

/// What of a client's presence the room repeats: everything but the MUC protocol's own
/// elements (the join request, its password and history parameters) and an occupant-id
/// only the room may set.
pub fn payload_of(presence: &Element) -> Vec<Element> {
    presence
        .elements()
        .filter(|e| e.ns.as_str() != ns::MUC && e.ns.as_str() != ns::MUC_USER && e.ns.as_str() != ns::OCCUPANT_ID)
        .cloned()
        .collect()
}

/// XEP-0421: the same opaque id for every resource of a user, for the room's life: a
/// digest of the room's salt and the user's bare JID, so no one can tell the JID from it.
fn occupant_id(salt: &str, jid: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(salt.as_bytes())
        .chain_update([0])
        .chain_update(bare(jid).as_bytes())
        .finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::codes;

    const ROOM: &str = "lounge@conference.l";

    fn presence() -> Element {
        Element::new("presence", NS_CLIENT)
            .child(Element::new("x", ns::MUC))
            .child(Element::new("show", NS_CLIENT).text("away"))
    }

    fn item_attr<'a>(e: &'a Element, name: &str) -> Option<&'a str> {
        e.get_child("x", ns::MUC_USER)?
            .get_child("item", ns::MUC_USER)?
            .get_attr(name)
    }

    fn created() -> Room {
        let mut room = Room::new(ROOM, "alice@l/a", "salt".into());
        room.enter("alice@l/a", "Alice", &presence(), true, 0).unwrap();
        room.unlock();
        room
    }

    #[test]
    fn the_creator_owns_the_room_and_is_told_201_and_110() {
        let mut room = Room::new(ROOM, "alice@l/a", "salt".into());
        let out = room.enter("alice@l/a", "Alice", &presence(), true, 0).unwrap();
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
        let refused = room.presence("bob@l/b", "Bob", &presence(), 0).unwrap_err();
        assert_eq!(refused.condition, poolxmpp_sdk::Condition::ItemNotFound);
    }

    #[test]
    fn a_newcomer_sees_the_room_then_itself_and_everyone_sees_it() {
        let mut room = created();
        let out = room.presence("bob@l/b", "Bob", &presence(), 0).unwrap();
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
        let err = room.presence("bob@l/b", "Alice", &presence(), 0).unwrap_err();
        assert_eq!(err.condition, poolxmpp_sdk::Condition::Conflict);
    }

    #[test]
    fn nicknames_are_enforced_and_the_same_in_any_case() {
        let mut room = created();
        // "alice" is Alice's nickname for anyone else.
        let err = room.presence("mallory@l/m", "alice", &presence(), 0).unwrap_err();
        assert_eq!(err.condition, poolxmpp_sdk::Condition::Conflict);
        let err = room.presence("mallory@l/m", "Ａｌｉｃｅ", &presence(), 0).unwrap_err();
        assert_eq!(
            err.condition,
            poolxmpp_sdk::Condition::Conflict,
            "full-width is no disguise"
        );
        let err = room.presence("mallory@l/m", "bell\u{7}", &presence(), 0).unwrap_err();
        assert_eq!(err.condition, poolxmpp_sdk::Condition::NotAcceptable);
        // A nickname the room rewrites comes back in its form, with 210.
        let out = room.presence("bob@l/b", "  Bob   B ", &presence(), 0).unwrap();
        let own = out
            .iter()
            .find_map(|o| match o {
                Out::One(e) if codes(e).contains(&"110".to_string()) => Some(e),
                _ => None,
            })
            .unwrap();
        assert_eq!(own.get_attr("from"), Some("lounge@conference.l/Bob B"));
        assert_eq!(codes(own), ["110", "210"]);
        // Bob's phone asking for "bob b" joins his nickname.
        let out = room.presence("bob@l/phone", "bob b", &presence(), 0).unwrap();
        assert!(out
            .iter()
            .all(|o| matches!(o, Out::One(e) if e.get_attr("to") == Some("bob@l/phone"))));
        assert_eq!(room.sessions_of("Bob B"), ["bob@l/b", "bob@l/phone"]);
        // Bob may change the case of his own nickname.
        let out = room.presence("bob@l/b", "BOB B", &presence(), 0).unwrap();
        assert!(!out.is_empty());
        assert_eq!(room.sessions_of("BOB B"), ["bob@l/b", "bob@l/phone"]);
        assert_eq!(room.occupant_count(), 2);
    }

    #[test]
    fn a_second_session_shares_the_nickname_and_only_it_is_told() {
        let mut room = created();
        room.presence("bob@l/b", "Bob", &presence(), 0).unwrap();
        let out = room.presence("bob@l/phone", "Bob", &presence(), 0).unwrap();
        let to_of = |o: &Out| match o {
            Out::One(e) => vec![e.get_attr("to").unwrap_or_default().to_string()],
            Out::Many(_, to) => to.clone(),
        };
        assert!(
            out.iter().flat_map(to_of).all(|to| to == "bob@l/phone"),
            "nobody else hears of the second session: {out:?}"
        );
        let Out::One(alice) = &out[0] else { panic!("{out:?}") };
        assert_eq!(alice.get_attr("from"), Some("lounge@conference.l/Alice"));
        let Out::One(own) = &out[1] else { panic!("{out:?}") };
        assert_eq!(own.get_attr("from"), Some("lounge@conference.l/Bob"));
        assert_eq!(codes(own), ["110"]);
        assert_eq!(room.occupant_count(), 2, "one user, one occupant");
        // Someone else may not take the nickname.
        let taken = room.presence("mallory@l/m", "Bob", &presence(), 0).unwrap_err();
        assert_eq!(taken.condition, poolxmpp_sdk::Condition::Conflict);
        // A message to the room and a private one reach both sessions.
        let m = Element::new("message", NS_CLIENT)
            .attr("type", "groupchat")
            .child(Element::new("body", NS_CLIENT).text("hi"));
        let spoken = room.groupchat("alice@l/a", &m, "2026-12-02T10:00:00Z", 0).unwrap();
        let Out::Many(_, to) = &room.keep(spoken)[0] else {
            panic!()
        };
        assert_eq!(to.len(), 3);
        let pm = Element::new("message", NS_CLIENT)
            .attr("type", "chat")
            .child(Element::new("body", NS_CLIENT).text("psst"));
        let out = room.private("alice@l/a", "Bob", &pm).unwrap();
        let Out::Many(_, to) = &out[0] else { panic!("{out:?}") };
        assert_eq!(to, &["bob@l/b", "bob@l/phone"]);
        // The first session leaves: it alone is told, and the others now see the second.
        let out = room.exit("bob@l/b", None);
        let Out::One(own) = &out[0] else { panic!("{out:?}") };
        assert_eq!(own.get_attr("to"), Some("bob@l/b"));
        assert_eq!(codes(own), ["110"]);
        let Out::Many(next, to) = &out[1] else {
            panic!("{out:?}")
        };
        assert_eq!(to, &["alice@l/a"]);
        assert_eq!(next.get_attr("type"), None, "still available, from the phone");
        assert_eq!(item_attr(next, "jid"), Some("bob@l/phone"));
        assert_eq!(out.len(), 2);
        // The last session leaves: now everyone is told.
        let out = room.exit("bob@l/phone", None);
        let Out::Many(gone, to) = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(
            (gone.get_attr("type"), to.as_slice()),
            (Some("unavailable"), &["alice@l/a".to_string()][..])
        );
        assert_eq!(room.occupant_count(), 1);
    }

    #[test]
    fn a_second_session_does_not_fill_the_room() {
        let mut room = created();
        room.config.max_users = 2;
        room.presence("bob@l/b", "Bob", &presence(), 0).unwrap();
        room.presence("bob@l/phone", "Bob", &presence(), 0)
            .expect("a second session does not make the room fuller");
        let full = room.presence("carol@l/c", "Carol", &presence(), 0).unwrap_err();
        assert_eq!(full.condition, poolxmpp_sdk::Condition::ServiceUnavailable);
    }

    #[test]
    fn messages_reach_everyone_and_newcomers_get_the_history() {
        let mut room = created();
        room.presence("bob@l/b", "Bob", &presence(), 0).unwrap();
        let m = Element::new("message", NS_CLIENT)
            .attr("type", "groupchat")
            .attr("id", "m1")
            .child(Element::new("body", NS_CLIENT).text("hello"));
        let spoken = room.groupchat("bob@l/b", &m, "2026-12-02T10:00:00Z", 0).unwrap();
        assert!(
            matches!(room.groupchat("bob@l/b", &m, "", 0).unwrap(), Spoken::Said(_)),
            "not kept yet: still new"
        );
        let out = room.keep(spoken);
        assert_eq!(
            room.groupchat("bob@l/b", &m, "", 0).unwrap(),
            Spoken::Again,
            "a message handed over twice is recognised by its sender and id"
        );
        let Out::Many(copy, to) = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(copy.get_attr("from"), Some("lounge@conference.l/Bob"));
        assert_eq!(copy.get_attr("id"), Some("m1"));
        assert_eq!(to.len(), 2);
        let refused = room.groupchat("mallory@l/m", &m, "", 0).unwrap_err();
        assert_eq!(refused.condition, poolxmpp_sdk::Condition::NotAcceptable);
        let out = room.presence("carol@l/c", "Carol", &presence(), 0).unwrap();
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
        room.presence("bob@l/b", "Bob", &presence(), 0).unwrap();
        let out = room.presence("bob@l/b", "Robert", &presence(), 0).unwrap();
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
        room.presence("bob@l/b", "Bob", &presence(), 0).unwrap();
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
        room.presence("bob@l/b", "Bob", &presence(), 0).unwrap();
        let m = Element::new("message", NS_CLIENT)
            .attr("type", "chat")
            .child(Element::new("body", NS_CLIENT).text("psst"));
        let out = room.private("bob@l/b", "Alice", &m).unwrap();
        let Out::Many(pm, to) = &out[0] else { panic!("{out:?}") };
        assert_eq!(pm.get_attr("from"), Some("lounge@conference.l/Bob"));
        assert_eq!(to, &["alice@l/a"]);
        assert_eq!(
            room.private("bob@l/b", "Nobody", &m).unwrap_err().condition,
            poolxmpp_sdk::Condition::ItemNotFound
        );
    }

    #[test]
    fn a_restored_room_keeps_its_occupants_and_the_last_messages_in_order() {
        let mut room = created();
        room.presence("bob@l/b", "Bob", &presence(), 0).unwrap();
        let said = |seq: u64| Said {
            seq,
            at_ms: 0,
            stamp: String::new(),
            sender: "bob@l/b".into(),
            id: Some(format!("m{seq}")),
            message: Element::new("message", NS_CLIENT).attr("id", format!("m{seq}")),
        };
        // Slots are overwritten in turn, so the store hands them back in any order.
        let history: Vec<Said> = (0..HISTORY as u64 + 5).rev().map(said).collect();
        let mut restored = Room::restore(
            ROOM,
            false,
            None,
            Config::default(),
            room.affiliations().clone(),
            "salt".into(),
            room.occupants()
                .iter()
                .map(|o| Occupant {
                    occupant_id: String::new(), // as the store hands it back
                    nick_key: String::new(),
                    ..o.clone()
                })
                .collect(),
            history,
        );
        assert_eq!(restored.occupant_count(), 2);
        let ids = |r: &Room| r.occupants().iter().map(|o| o.occupant_id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&restored), ids(&room), "occupant-ids survive the restore");
        assert_ne!(ids(&room)[0], ids(&room)[1]);
        let seqs: Vec<u64> = restored.history.iter().map(|s| s.seq).collect();
        assert_eq!(seqs, (5..HISTORY as u64 + 5).collect::<Vec<_>>());
        let m = Element::new("message", NS_CLIENT)
            .attr("type", "groupchat")
            .attr("id", "new");
        let Spoken::Said(next) = restored.groupchat("bob@l/b", &m, "", 0).unwrap() else {
            panic!("a new message")
        };
        assert_eq!(next.seq, HISTORY as u64 + 5, "numbering goes on where it stopped");
    }

    #[test]
    fn a_lost_occupant_leaves_with_333_and_is_not_written_to() {
        let mut room = created();
        room.presence("bob@l/b", "Bob", &presence(), 0).unwrap();
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
        room.presence("bob@l/b", "Bob", &presence(), 0).unwrap();
        let out = room.presence("bob@l/b", "Bob", &presence(), 0).unwrap();
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
        let out = room.presence("bob@l/b", "Bob", &update, 0).unwrap();
        assert!(!out
            .iter()
            .any(|o| matches!(o, Out::One(e) if e.has_child("subject", NS_CLIENT))));
    }
}
