//! XEP-0016 privacy lists and XEP-0191 blocking as one `feature-filter` component: one
//! rule store (a record per user, `store.rs`), one evaluation (`eval.rs`).
//!
//! - [`list`]: the typed list, read from and written as `jabber:iq:privacy` XML;
//! - [`eval`]: which item decides about a stanza (pure);
//! - [`store`]: the per-user record (all lists, the default's name), cached;
//! - [`iq`]: the XEP-0016 IQs; [`blocking`]: XEP-0191 as a view over the default list;
//! - this module: the instance's state, committing changes (store, interest, pushes),
//!   the filter and the events.
//!
//! Active lists are per session and live in this instance's memory (the manifest runs
//! one instance per node, which serves the node's sessions).

mod addr;
mod blocking;
mod eval;
mod iq;
mod list;
mod store;

use std::collections::HashMap;

use poolxmpp_sdk::host::{ResourcePresence, RosterItem};
use poolxmpp_sdk::{
    host, jid, log, send, storage, Config, Direction, Element, Event, Feature, Filter, IqType, PresenceType, Stanza,
    StanzaError, StanzaType, Verdict, NS_CLIENT,
};

use addr::Jid;
use eval::{Contact, Judged};
use list::{Item, StanzaKind, Sub};
use store::{Record, Store};

const NS_BLOCKING: &str = "urn:xmpp:blocking";
const NS_BLOCKING_ERRORS: &str = "urn:xmpp:blocking:errors";

/// Sessions with an active list on this node, at most; past it further activations are
/// refused with `resource-constraint`.
const MAX_ACTIVE: usize = 100_000;

pub struct Privacy {
    store: Store,
    /// Full JID of a session on this node → the name of its active list.
    active: HashMap<String, String>,
    max_items: usize,
    max_lists: usize,
    /// For push ids (started at the clock, so ids differ across reloads).
    pushes: u64,
}

/// The active list of session `full`, if it has one that exists.
fn active_of<'r>(active: &HashMap<String, String>, full: &str, record: &'r Record) -> Option<&'r [Item]> {
    let name = active.get(full)?;
    record.lists.get(name).map(Vec::as_slice)
}

fn seen_key(full: &str) -> String {
    format!("seen/{full}")
}

/// Where a session's active list is noted for the other nodes (their conflict checks):
/// the truth for judging is this node's memory, which serves the session.
fn active_key(full: &str) -> String {
    format!("active/{full}")
}

impl Privacy {
    fn new(config: &Config) -> Result<Privacy, String> {
        Ok(Privacy {
            store: Store::default(),
            active: HashMap::new(),
            max_items: config.parse("max_items")?.unwrap_or(250),
            max_lists: config.parse("max_lists")?.unwrap_or(50),
            pushes: poolxmpp_sdk::now_ms(),
        })
    }

    /// Whether a connected resource of `user` other than `sender` has no active list,
    /// so that the default list applies to it.
    fn default_in_use_elsewhere(&self, user: &str, sender: &str, record: &Record) -> bool {
        record.default.is_some()
            && host::resources(user)
                .iter()
                .filter(|r| r.jid != sender)
                .any(|r| !self.active_name(&r.jid).is_some_and(|a| record.lists.contains_key(&a)))
    }

    /// The name of session `full`'s active list: this node's own sessions from memory,
    /// the other nodes' from what they noted in storage (a store that cannot be read
    /// counts as none, which errs towards a conflict).
    pub(crate) fn active_name(&self, full: &str) -> Option<String> {
        if let Some(name) = self.active.get(full) {
            return Some(name.clone());
        }
        storage::get_string(&active_key(full)).ok().flatten()
    }

    /// Note (or forget) session `full`'s active list for the other nodes.
    pub(crate) fn note_active(full: &str, name: Option<&str>) -> Result<(), StanzaError> {
        match name {
            Some(n) => storage::put_string(&active_key(full), n)?,
            None => {
                storage::delete(&active_key(full))?;
            }
        }
        Ok(())
    }

    /// A session ended: its active list and its interest in blocklist pushes go.
    fn session_ended(&mut self, full: &str) {
        self.active.remove(full);
        for key in [seen_key(full), active_key(full)] {
            if let Err(e) = storage::delete(&key) {
                log::warn(&format!("privacy: {full}: {e}"));
            }
        }
    }

    fn push_id(&mut self) -> String {
        self.pushes += 1;
        format!("push-{}", self.pushes)
    }

    /// Store `after` as `user`'s record (then the interest set, then the cache) and
    /// return what is to be sent because of it, once the requester has its answer:
    /// - the list push (XEP-0016 §2.9) for `changed` to every connected resource;
    /// - block/unblock pushes (XEP-0191 §3.3–3.4) for the default list's blocked JIDs
    ///   that came or went, to the resources that retrieved the blocklist (`<unblock/>`
    ///   without items when `unblock_all`);
    /// - unavailable presence from each available resource to the newly blocked
    ///   contacts who could see the user's presence, and to every contact with a `from`
    ///   or `both` subscription whose presence-out the resource's list newly denies.
    fn commit(
        &mut self,
        user: &str,
        after: Record,
        changed: Option<&str>,
        unblock_all: bool,
    ) -> Result<Vec<Element>, StanzaError> {
        let old = self.store.get(user)?.clone();
        let before = old.blocked();
        let now = after.blocked();
        self.store.put(user, after)?;
        let new = self.store.get(user)?.clone();
        let added: Vec<&String> = now.iter().filter(|j| !before.contains(j)).collect();
        let removed: Vec<&String> = before.iter().filter(|j| !now.contains(j)).collect();
        let resources = host::resources(user);
        let mut out = Vec::new();
        if let Some(name) = changed {
            let query = Element::new("query", list::NS_PRIVACY)
                .child(Element::new("list", list::NS_PRIVACY).attr("name", name));
            for r in &resources {
                out.push(self.push(user, &r.jid, query.clone()));
            }
        }
        if !added.is_empty() || !removed.is_empty() {
            let items = |name: &str, jids: &[&String]| {
                let mut e = Element::new(name, NS_BLOCKING);
                for j in jids {
                    e.push(Element::new("item", NS_BLOCKING).attr("jid", j.as_str()));
                }
                e
            };
            let mut pushes = Vec::new();
            if !added.is_empty() {
                pushes.push(items("block", &added));
            }
            if unblock_all && now.is_empty() {
                pushes.push(Element::new("unblock", NS_BLOCKING));
            } else if !removed.is_empty() {
                pushes.push(items("unblock", &removed));
            }
            for r in resources.iter().filter(|r| retrieved_blocklist(&r.jid)) {
                for p in &pushes {
                    out.push(self.push(user, &r.jid, p.clone()));
                }
            }
        }
        let list_of = |record: &Record, full: &str| -> Vec<Item> {
            active_of(&self.active, full, record)
                .unwrap_or(record.default_items())
                .to_vec()
        };
        let mut flips = flips(user, &resources, |r| list_of(&old, r), |r| list_of(&new, r));
        for j in added {
            for target in presence_targets(user, j) {
                for r in resources.iter().filter(|r| r.presence.is_some()) {
                    flips.hidden.push((r.jid.clone(), target.clone()));
                }
            }
        }
        out.extend(flips.into_presence(&resources));
        Ok(out)
    }

    /// An IQ push from the user's account to one of its resources.
    fn push(&mut self, user: &str, to: &str, payload: Element) -> Element {
        Element::new("iq", NS_CLIENT)
            .attr("type", "set")
            .attr("from", user)
            .attr("to", to)
            .attr("id", self.push_id())
            .child(payload)
    }

    /// Forget the active lists naming `name` of `user`'s sessions (the list is gone).
    fn drop_active(&mut self, user: &str, name: &str) {
        let gone: Vec<String> = self
            .active
            .iter()
            .filter(|(full, active)| *active == name && jid::same_bare(full, user))
            .map(|(full, _)| full.clone())
            .collect();
        for full in gone {
            self.active.remove(&full);
            if let Err(e) = Privacy::note_active(&full, None) {
                log::warn(&format!("privacy: {full}: {e:?}"));
            }
        }
    }
}

/// Whether session `full` retrieved its blocklist (and so gets block/unblock pushes).
fn retrieved_blocklist(full: &str) -> bool {
    match storage::get_bytes(&seen_key(full)) {
        Ok(seen) => seen.is_some(),
        Err(e) => {
            log::warn(&format!("privacy: {full}: {e}"));
            false
        }
    }
}

/// (resource's full JID, contact's bare JID) pairs whose presence visibility changed.
#[derive(Default)]
pub(crate) struct Flips {
    /// The contact saw the resource's presence and now may not.
    hidden: Vec<(String, String)>,
    /// The contact may see it again (it was denied before).
    shown: Vec<(String, String)>,
}

impl Flips {
    /// What tells the contacts: unavailable presence to those that stop seeing a
    /// resource (XEP-0016 §2.11, XEP-0191 §3.3), the resource's current presence to
    /// those that see it again (XEP-0191 §3.4).
    pub(crate) fn into_presence(self, resources: &[ResourcePresence]) -> Vec<Element> {
        let mut out = unavailable(self.hidden);
        let mut seen = std::collections::HashSet::new();
        for (from, to) in self.shown.into_iter().filter(|p| seen.insert(p.clone())) {
            let current = resources
                .iter()
                .find(|r| r.jid == from)
                .and_then(|r| r.presence.as_deref());
            let Some(mut p) = current.and_then(|x| Element::parse(x).ok()) else {
                continue;
            };
            p.set_attr("from", from);
            p.set_attr("to", to);
            out.push(p);
        }
        out
    }
}

/// Whose view of `user`'s available resources changes because their lists changed
/// from `before` to `after` (by full JID): the contacts with a `from` or `both`
/// subscription whose presence-out the resource's list allowed and now denies
/// (`hidden`), or denied and now allows (`shown`). The roster is read only if some
/// resource's list changed.
pub(crate) fn flips(
    user: &str,
    resources: &[ResourcePresence],
    before: impl Fn(&str) -> Vec<Item>,
    after: impl Fn(&str) -> Vec<Item>,
) -> Flips {
    let mut roster: Option<Vec<RosterItem>> = None;
    let mut flips = Flips::default();
    let kind = Judged::Kind(StanzaKind::PresenceOut);
    for r in resources.iter().filter(|r| r.presence.is_some()) {
        let (b, a) = (before(&r.jid), after(&r.jid));
        if a == b {
            continue;
        }
        for c in roster.get_or_insert_with(|| host::roster_items(user)).iter() {
            let contact = || Contact::of(Some(c.clone()));
            if !matches!(contact().subscription, Sub::From | Sub::Both) {
                continue;
            }
            let other = Jid::of_host(&c.jid);
            match (
                eval::allows(&b, &other, kind, contact),
                eval::allows(&a, &other, kind, contact),
            ) {
                (true, false) => flips.hidden.push((r.jid.clone(), c.jid.clone())),
                (false, true) => flips.shown.push((r.jid.clone(), c.jid.clone())),
                _ => {}
            }
        }
    }
    flips
}

/// Unavailable presence from each resource to each contact, once per pair.
fn unavailable(pairs: Vec<(String, String)>) -> Vec<Element> {
    let mut seen = std::collections::HashSet::new();
    pairs
        .into_iter()
        .filter(|p| seen.insert(p.clone()))
        .map(|(from, to)| {
            Element::new("presence", NS_CLIENT)
                .attr("type", "unavailable")
                .attr("from", from)
                .attr("to", to)
        })
        .collect()
}

/// Whom to tell that `user` went unavailable when `blocked` was blocked: the contacts it
/// covers that may see the user's presence (subscription `from` or `both`), as the
/// blocked JID names them. Nobody else learns of the user's resources.
fn presence_targets(user: &str, blocked: &str) -> Vec<String> {
    let Some(b) = Jid::parse(blocked) else {
        return Vec::new();
    };
    let sees = |s: Sub| matches!(s, Sub::From | Sub::Both);
    if b.node.is_some() {
        let contact = Contact::of(host::roster_item(user, &b.bare()));
        return match sees(contact.subscription) {
            true => vec![blocked.to_string()],
            false => Vec::new(),
        };
    }
    host::roster_items(user)
        .into_iter()
        .filter(|i| b.covers(&Jid::of_host(&i.jid)))
        .filter(|i| sees(Contact::of(Some(i.clone())).subscription))
        .map(|i| i.jid)
        .collect()
}

/// Send what a change produced; a failure is logged, not the requester's problem.
fn send_all(out: Vec<Element>) {
    for e in out {
        if let Err(err) = send(&e) {
            log::warn(&format!("privacy: not sent ({err:?}): {}", e.to_xml()));
        }
    }
}

impl Feature for Privacy {
    fn init(config: &Config) -> Result<Self, String> {
        Privacy::new(config)
    }

    fn handle_stanza(&mut self, stanza: Stanza) -> Result<(), StanzaError> {
        if !stanza.is_request() {
            return Ok(()); // results of pushes, errors
        }
        let user = jid::normalize_bare(&stanza.from);
        if let Some(to) = &stanza.to {
            let to = jid::normalize_bare(to);
            if to != user && to != jid::domain(&user) {
                return Err(StanzaError::forbidden().with_text("privacy lists are managed by their owner"));
            }
        }
        let payload = stanza.payload()?.ok_or_else(StanzaError::bad_request)?;
        let (reply, out) = if payload.is("query", list::NS_PRIVACY) {
            self.privacy_iq(&stanza, &user, &payload)?
        } else if payload.ns == NS_BLOCKING {
            self.blocking_iq(&stanza, &user, &payload)?
        } else {
            return Err(StanzaError::service_unavailable());
        };
        send(&reply).map_err(|_| StanzaError::internal_server_error())?;
        send_all(out);
        Ok(())
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::UserOffline(p) => self.session_ended(&p.jid),
            // A client may set its active list before its initial presence: only a note
            // this node does not hold (left by a node that died with an earlier session
            // of the same full JID) is dropped.
            Event::UserOnline(p) if !self.active.contains_key(&p.jid) => {
                if let Err(e) = Privacy::note_active(&p.jid, None) {
                    log::warn(&format!("privacy: {}: {e:?}", p.jid));
                }
            }
            Event::RulesChanged(Some(user)) => self.store.forget(&user),
            Event::RulesChanged(None) => self.store.forget_all(),
            _ => {}
        }
    }
}

/// What a denied stanza becomes (XEP-0016 §2.13–2.14, XEP-0191 §3.5): outbound messages
/// and IQ requests bounce with `not-acceptable` (with `<blocked/>` when the blocklist
/// denied it), inbound ones with `service-unavailable`; presence and IQ responses are
/// dropped.
fn denied(direction: Direction, type_: StanzaType, blocked: bool) -> Verdict {
    let bounces = matches!(
        type_,
        StanzaType::Message(_) | StanzaType::Iq(IqType::Get | IqType::Set)
    );
    match (direction, bounces) {
        (_, false) => Verdict::Drop,
        (Direction::Outbound, true) => {
            let mut e = StanzaError::not_acceptable();
            if blocked {
                e = e.with_application(&Element::new("blocked", NS_BLOCKING_ERRORS));
            }
            Verdict::Bounce(e)
        }
        (Direction::Inbound, true) => Verdict::Bounce(StanzaError::service_unavailable()),
    }
}

impl Filter for Privacy {
    /// Not called in a `feature-filter` component: `Feature::init` made the instance.
    fn init(config: &Config) -> Result<Self, String> {
        Privacy::new(config)
    }

    fn check(&mut self, direction: Direction, stanza: Stanza) -> Verdict {
        if stanza.is_error() {
            return Verdict::Allow; // never answer an error with an error
        }
        let (session, other) = match (direction, stanza.to.as_deref()) {
            (Direction::Outbound, Some(to)) => (stanza.from.as_str(), to),
            (Direction::Inbound, Some(to)) => (to, stanza.from.as_str()),
            (_, None) => return Verdict::Allow, // to the sender's own account
        };
        let user = jid::normalize_bare(session);
        let other = Jid::of_host(other);
        if other.bare() == user || (other.node.is_none() && other.domain == jid::domain(&user)) {
            return Verdict::Allow; // the user's own resources and server
        }
        let kind = match (stanza.type_, direction) {
            (StanzaType::Message(_), _) => Judged::Kind(StanzaKind::Message),
            (StanzaType::Iq(_), _) => Judged::Kind(StanzaKind::Iq),
            (StanzaType::Presence(PresenceType::Available | PresenceType::Unavailable), Direction::Inbound) => {
                Judged::Kind(StanzaKind::PresenceIn)
            }
            (StanzaType::Presence(PresenceType::Available | PresenceType::Unavailable), Direction::Outbound) => {
                Judged::Kind(StanzaKind::PresenceOut)
            }
            (StanzaType::Presence(_), _) => Judged::OtherPresence,
        };
        // A store that cannot be read must not let a blocked stanza through.
        let record = match self.store.get(&user) {
            Ok(r) => r,
            Err(e) => {
                log::warn(&format!("privacy: judging for {user}: {e}"));
                return Verdict::Bounce(StanzaError::service_unavailable());
            }
        };
        // Stanzas to a bare JID are judged by the default list: no session's own.
        let active = match jid::resource(session) {
            Some(_) => active_of(&self.active, session, record),
            None => None,
        };
        let (items, from_default) = match active {
            Some(items) => (items, false),
            None => (record.default_items(), true),
        };
        let decision = eval::decide(items, &other, kind, || {
            Contact::of(host::roster_item(&user, &other.bare()))
        });
        match decision {
            Some(item) if item.action == list::Action::Deny => {
                denied(direction, stanza.type_, from_default && item.blocked_jid().is_some())
            }
            _ => Verdict::Allow,
        }
    }
}

poolxmpp_sdk::export_feature_filter!(Privacy);

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
