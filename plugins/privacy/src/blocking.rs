//! XEP-0191 blocking as a view over the user's default privacy list (ejabberd's model):
//! the blocked JIDs are the default list's `type='jid' action='deny'` items without
//! stanza kinds (which deny everything). Blocking puts such items first in the default
//! list, creating a default list named [`BLOCKED_CONTACTS`] if there is none; unblocking
//! takes them out again, and removes that list once it is empty.

use poolxmpp_sdk::{iq_result, storage, Condition, Element, IqType, Stanza, StanzaError, StanzaType};

use crate::addr::Jid;
use crate::list::Item;
use crate::{seen_key, Privacy, NS_BLOCKING};

/// The default list blocking creates when the user has none.
pub const BLOCKED_CONTACTS: &str = "Blocked contacts";

type Answer = (Element, Vec<Element>);

/// The JIDs of a `<block/>` or `<unblock/>`, normalised, each once.
fn jids(payload: &Element) -> Result<Vec<Jid>, StanzaError> {
    let mut out: Vec<Jid> = Vec::new();
    for e in payload.elements() {
        if !e.is("item", NS_BLOCKING) {
            return Err(StanzaError::bad_request().with_text(format!("unexpected <{}/>", e.name)));
        }
        let j = e
            .get_attr("jid")
            .ok_or_else(|| StanzaError::bad_request().with_text("an item needs a jid"))?;
        let j = Jid::parse(j)
            .ok_or_else(|| StanzaError::new(Condition::JidMalformed).with_text(format!("{j:?} is not a JID")))?;
        if !out.contains(&j) {
            out.push(j);
        }
    }
    Ok(out)
}

impl Privacy {
    /// Answer one `urn:xmpp:blocking` request from `stanza.from` (of account `user`).
    pub(crate) fn blocking_iq(&mut self, stanza: &Stanza, user: &str, p: &Element) -> Result<Answer, StanzaError> {
        match (stanza.type_, p.name.as_str()) {
            (StanzaType::Iq(IqType::Get), "blocklist") => {
                let mut list = Element::new("blocklist", NS_BLOCKING);
                for j in self.store.get(user)?.blocked() {
                    list.push(Element::new("item", NS_BLOCKING).attr("jid", j));
                }
                // From now on this session is told of changes (until it goes offline).
                storage::put_string(&seen_key(&stanza.from), "")?;
                Ok((iq_result(stanza, Some(list)), vec![]))
            }
            (StanzaType::Iq(IqType::Set), "block") => {
                let add = jids(p)?;
                if add.is_empty() {
                    return Err(StanzaError::bad_request().with_text("block needs at least one item"));
                }
                Ok((iq_result(stanza, None), self.block(user, &add)?))
            }
            (StanzaType::Iq(IqType::Set), "unblock") => {
                let remove = jids(p)?;
                Ok((iq_result(stanza, None), self.unblock(user, &remove)?))
            }
            _ => Err(StanzaError::bad_request()),
        }
    }

    /// Put deny-all items for the JIDs not yet blocked before every item of the default
    /// list (created as [`BLOCKED_CONTACTS`] if there is none), renumbering the list.
    fn block(&mut self, user: &str, add: &[Jid]) -> Result<Vec<Element>, StanzaError> {
        let mut record = self.store.get(user)?.clone();
        let blocked = record.blocked();
        let name = match record.default.clone() {
            Some(d) => d,
            None => {
                if !record.lists.contains_key(BLOCKED_CONTACTS) && record.lists.len() >= self.max_lists {
                    return Err(StanzaError::not_acceptable().with_text(format!("at most {} lists", self.max_lists)));
                }
                record.default = Some(BLOCKED_CONTACTS.to_string());
                BLOCKED_CONTACTS.to_string()
            }
        };
        let new: Vec<&Jid> = add.iter().filter(|j| !blocked.contains(&j.to_string())).collect();
        if new.is_empty() {
            return Ok(Vec::new()); // all blocked already
        }
        let old = record.lists.remove(&name).unwrap_or_default();
        if old.len() + new.len() > self.max_items {
            return Err(StanzaError::not_acceptable().with_text(format!("a list has at most {} items", self.max_items)));
        }
        let items: Vec<Item> = new
            .into_iter()
            .map(|j| Item::block(j, 0))
            .chain(old)
            .enumerate()
            .map(|(n, item)| Item {
                order: n as u32 + 1,
                ..item
            })
            .collect();
        record.lists.insert(name.clone(), items);
        self.commit(user, record, Some(&name), false)
    }

    /// Take the deny-all items for `remove` (none: all of them) out of the default list;
    /// a [`BLOCKED_CONTACTS`] list left empty goes, and with it the default.
    fn unblock(&mut self, user: &str, remove: &[Jid]) -> Result<Vec<Element>, StanzaError> {
        let mut record = self.store.get(user)?.clone();
        let Some(name) = record.default.clone() else {
            return Ok(Vec::new()); // nothing is blocked
        };
        let remove: Vec<String> = remove.iter().map(Jid::to_string).collect();
        let items = record.lists.entry(name.clone()).or_default();
        let before = items.len();
        items.retain(|i| match i.blocked_jid() {
            Some(j) => !(remove.is_empty() || remove.iter().any(|r| r == j)),
            None => true,
        });
        if items.len() == before {
            return Ok(Vec::new());
        }
        let gone = items.is_empty() && name == BLOCKED_CONTACTS;
        if gone {
            record.lists.remove(&name);
            record.default = None;
        }
        let out = self.commit(user, record, Some(&name), remove.is_empty())?;
        if gone {
            self.drop_active(user, &name);
        }
        Ok(out)
    }
}
