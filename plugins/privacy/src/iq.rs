//! The XEP-0016 IQs (`<query xmlns='jabber:iq:privacy'/>`): the names, one list, and
//! setting the active list, the default list, or a list itself.

use std::collections::HashMap;

use poolxmpp_sdk::{host, iq_result, Element, IqType, Stanza, StanzaError, StanzaType};

use crate::list::{self, NS_PRIVACY};
use crate::{active_of, flips, Privacy, MAX_ACTIVE};

type Answer = (Element, Vec<Element>);

fn query() -> Element {
    Element::new("query", NS_PRIVACY)
}

impl Privacy {
    /// Answer one `jabber:iq:privacy` request from `stanza.from` (of account `user`):
    /// the result for the requester, and what the change means to send to others.
    pub(crate) fn privacy_iq(&mut self, stanza: &Stanza, user: &str, q: &Element) -> Result<Answer, StanzaError> {
        let children: Vec<&Element> = q.elements().collect();
        let session = stanza.from.as_str();
        match (stanza.type_, children.as_slice()) {
            (StanzaType::Iq(IqType::Get), []) => Ok((iq_result(stanza, Some(self.names(user, session)?)), vec![])),
            (StanzaType::Iq(IqType::Get), [l]) if l.is("list", NS_PRIVACY) => {
                let name = l
                    .get_attr("name")
                    .ok_or_else(|| StanzaError::bad_request().with_text("a list needs a name"))?;
                let record = self.store.get(user)?;
                let items = record.lists.get(name).ok_or_else(StanzaError::item_not_found)?;
                Ok((
                    iq_result(stanza, Some(query().child(list::to_element(name, items)))),
                    vec![],
                ))
            }
            (StanzaType::Iq(IqType::Get), _) => {
                Err(StanzaError::bad_request().with_text("ask for the names or for one list"))
            }
            (StanzaType::Iq(IqType::Set), [c]) if c.ns == NS_PRIVACY => {
                let name = c.get_attr("name");
                let out = match c.name.as_str() {
                    "active" => self.set_active(user, session, name)?,
                    "default" => self.set_default(user, session, name)?,
                    "list" => {
                        let name = name.ok_or_else(|| StanzaError::bad_request().with_text("a list needs a name"))?;
                        match c.elements().next() {
                            None => self.remove_list(user, session, name)?,
                            Some(_) => self.set_list(user, name, c)?,
                        }
                    }
                    other => return Err(StanzaError::bad_request().with_text(format!("unexpected <{other}/>"))),
                };
                Ok((iq_result(stanza, None), out))
            }
            (StanzaType::Iq(IqType::Set), _) => {
                Err(StanzaError::bad_request().with_text("a set carries exactly one of active, default or list"))
            }
            _ => Err(StanzaError::bad_request()),
        }
    }

    /// The names (XEP-0016 §2.3): this session's active list, the default, every list.
    fn names(&mut self, user: &str, session: &str) -> Result<Element, StanzaError> {
        let active = self.active.get(session).cloned();
        let record = self.store.get(user)?;
        let mut q = query();
        if let Some(a) = active.filter(|a| record.lists.contains_key(a)) {
            q.push(Element::new("active", NS_PRIVACY).attr("name", a));
        }
        if let Some(d) = &record.default {
            q.push(Element::new("default", NS_PRIVACY).attr("name", d.as_str()));
        }
        for name in record.lists.keys() {
            q.push(Element::new("list", NS_PRIVACY).attr("name", name.as_str()));
        }
        Ok(q)
    }

    /// `<active name=N/>` makes N this session's active list; `<active/>` declines one.
    /// Contacts the new active list hides this session from are sent its unavailable
    /// presence.
    fn set_active(&mut self, user: &str, session: &str, name: Option<&str>) -> Result<Vec<Element>, StanzaError> {
        let record = self.store.get(user)?.clone();
        let list_of = |active: &HashMap<String, String>| {
            active_of(active, session, &record)
                .unwrap_or(record.default_items())
                .to_vec()
        };
        let before = list_of(&self.active);
        match name {
            None => {
                Privacy::note_active(session, None)?;
                self.active.remove(session);
            }
            Some(n) => {
                if !record.lists.contains_key(n) {
                    return Err(StanzaError::item_not_found());
                }
                if self.active.len() >= MAX_ACTIVE && !self.active.contains_key(session) {
                    return Err(StanzaError::resource_constraint().with_text("too many active lists on this server"));
                }
                Privacy::note_active(session, Some(n))?;
                self.active.insert(session.to_string(), n.to_string());
            }
        }
        let after = list_of(&self.active);
        let resources: Vec<_> = host::resources(user).into_iter().filter(|r| r.jid == session).collect();
        Ok(flips(user, &resources, |_| before.clone(), |_| after.clone()).into_presence(&resources))
    }

    /// `<default name=N/>` makes N the default list; `<default/>` declines one. Either is
    /// a conflict while the current default applies to another connected resource.
    fn set_default(&mut self, user: &str, session: &str, name: Option<&str>) -> Result<Vec<Element>, StanzaError> {
        let mut record = self.store.get(user)?.clone();
        if let Some(n) = name {
            if !record.lists.contains_key(n) {
                return Err(StanzaError::item_not_found());
            }
        }
        if record.default.as_deref() == name {
            return Ok(Vec::new());
        }
        if self.default_in_use_elsewhere(user, session, &record) {
            return Err(StanzaError::conflict().with_text("the default list is in use by another resource"));
        }
        record.default = name.map(str::to_string);
        self.commit(user, record, None, false)
    }

    /// `<list name=N>` with items: store (or replace) N.
    fn set_list(&mut self, user: &str, name: &str, l: &Element) -> Result<Vec<Element>, StanzaError> {
        let items = list::parse_items(l, self.max_items)?;
        let mut record = self.store.get(user)?.clone();
        if !record.lists.contains_key(name) && record.lists.len() >= self.max_lists {
            return Err(StanzaError::not_acceptable().with_text(format!("at most {} lists", self.max_lists)));
        }
        record.lists.insert(name.to_string(), items);
        self.commit(user, record, Some(name), false)
    }

    /// `<list name=N/>` without items: remove N, unless another resource uses it (as its
    /// active list, or as the default).
    fn remove_list(&mut self, user: &str, session: &str, name: &str) -> Result<Vec<Element>, StanzaError> {
        let mut record = self.store.get(user)?.clone();
        if !record.lists.contains_key(name) {
            return Err(StanzaError::item_not_found());
        }
        let active_elsewhere = host::resources(user)
            .iter()
            .filter(|r| r.jid != session)
            .any(|r| self.active_name(&r.jid).as_deref() == Some(name));
        if active_elsewhere {
            return Err(StanzaError::conflict().with_text("the list is active for another resource"));
        }
        if record.default.as_deref() == Some(name) {
            if self.default_in_use_elsewhere(user, session, &record) {
                return Err(StanzaError::conflict().with_text("the default list is in use by another resource"));
            }
            record.default = None;
        }
        record.lists.remove(name);
        let out = self.commit(user, record, Some(name), false)?;
        self.drop_active(user, name);
        Ok(out)
    }
}
