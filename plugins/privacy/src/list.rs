//! The typed privacy list (XEP-0016 §2.1), read from and written as `jabber:iq:privacy`
//! XML, with the checks a list must pass before it is stored.

use std::collections::{BTreeSet, HashSet};

use poolxmpp_sdk::{Element, StanzaError};
use serde::{Deserialize, Serialize};

use crate::addr::Jid;

pub const NS_PRIVACY: &str = "jabber:iq:privacy";

/// A roster subscription state, as an item's `value` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sub {
    None,
    To,
    From,
    Both,
}

impl Sub {
    fn parse(s: &str) -> Option<Sub> {
        Some(match s {
            "none" => Sub::None,
            "to" => Sub::To,
            "from" => Sub::From,
            "both" => Sub::Both,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Sub::None => "none",
            Sub::To => "to",
            Sub::From => "from",
            Sub::Both => "both",
        }
    }
}

/// What an item matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Match {
    /// A JID, normalised (its string form; see [`Jid::covers`]).
    Jid(String),
    /// Contacts in this roster group.
    Group(String),
    /// Contacts (or not) with this subscription state.
    Subscription(Sub),
    /// Everyone: an item without `type`.
    FallThrough,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Deny,
}

/// The stanza kinds an item can be limited to (its child elements).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StanzaKind {
    Message,
    Iq,
    PresenceIn,
    PresenceOut,
}

impl StanzaKind {
    fn parse(s: &str) -> Option<StanzaKind> {
        Some(match s {
            "message" => StanzaKind::Message,
            "iq" => StanzaKind::Iq,
            "presence-in" => StanzaKind::PresenceIn,
            "presence-out" => StanzaKind::PresenceOut,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            StanzaKind::Message => "message",
            StanzaKind::Iq => "iq",
            StanzaKind::PresenceIn => "presence-in",
            StanzaKind::PresenceOut => "presence-out",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub order: u32,
    pub kind: Match,
    pub action: Action,
    /// The kinds it applies to; empty: all stanzas.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub stanzas: BTreeSet<StanzaKind>,
}

impl Item {
    /// A deny-everything item for a JID: what a XEP-0191 block is.
    pub fn block(jid: &Jid, order: u32) -> Item {
        Item {
            order,
            kind: Match::Jid(jid.to_string()),
            action: Action::Deny,
            stanzas: BTreeSet::new(),
        }
    }

    /// The JID this item blocks, if it is a XEP-0191 block (a deny-all JID item).
    pub fn blocked_jid(&self) -> Option<&str> {
        match (&self.kind, self.action, self.stanzas.is_empty()) {
            (Match::Jid(j), Action::Deny, true) => Some(j),
            _ => None,
        }
    }

    fn to_element(&self) -> Element {
        let mut e = Element::new("item", NS_PRIVACY);
        match &self.kind {
            Match::Jid(j) => e = e.attr("type", "jid").attr("value", j.as_str()),
            Match::Group(g) => e = e.attr("type", "group").attr("value", g.as_str()),
            Match::Subscription(s) => e = e.attr("type", "subscription").attr("value", s.as_str()),
            Match::FallThrough => {}
        }
        let action = match self.action {
            Action::Allow => "allow",
            Action::Deny => "deny",
        };
        e = e.attr("action", action).attr("order", self.order.to_string());
        for k in &self.stanzas {
            e.push(Element::new(k.as_str(), NS_PRIVACY));
        }
        e
    }
}

/// A list's items, ascending by order, as its `<list name=.../>` element.
pub fn to_element(name: &str, items: &[Item]) -> Element {
    let mut e = Element::new("list", NS_PRIVACY).attr("name", name);
    for i in items {
        e.push(i.to_element());
    }
    e
}

fn bad(text: impl Into<String>) -> StanzaError {
    StanzaError::bad_request().with_text(text)
}

/// The items of a `<list/>` a client sets, checked and sorted by order. More than
/// `max_items` is `not-acceptable`; anything malformed `bad-request`, with text saying what.
pub fn parse_items(list: &Element, max_items: usize) -> Result<Vec<Item>, StanzaError> {
    let mut items = Vec::new();
    let mut orders = HashSet::new();
    for e in list.elements() {
        if !e.is("item", NS_PRIVACY) {
            return Err(bad(format!("unexpected <{}/> in a list", e.name)));
        }
        let item = parse_item(e)?;
        if !orders.insert(item.order) {
            return Err(bad(format!("order {} is used twice", item.order)));
        }
        items.push(item);
    }
    if items.len() > max_items {
        return Err(StanzaError::not_acceptable().with_text(format!("a list has at most {max_items} items")));
    }
    items.sort_by_key(|i| i.order);
    Ok(items)
}

fn parse_item(e: &Element) -> Result<Item, StanzaError> {
    let value = e.get_attr("value");
    let kind = match (e.get_attr("type"), value) {
        (None, None) => Match::FallThrough,
        (None, Some(_)) => return Err(bad("an item with a value needs a type")),
        (Some(t), None) => return Err(bad(format!("an item of type {t:?} needs a value"))),
        (Some("jid"), Some(v)) => Match::Jid(
            Jid::parse(v)
                .ok_or_else(|| bad(format!("{v:?} is not a JID")))?
                .to_string(),
        ),
        (Some("group"), Some(v)) if !v.is_empty() => Match::Group(v.to_string()),
        (Some("group"), Some(_)) => return Err(bad("a group item needs a group name")),
        (Some("subscription"), Some(v)) => Match::Subscription(
            Sub::parse(v).ok_or_else(|| bad(format!("subscription {v:?} is not none, to, from or both")))?,
        ),
        (Some(t), _) => return Err(bad(format!("item type {t:?} is not jid, group or subscription"))),
    };
    let action = match e.get_attr("action") {
        Some("allow") => Action::Allow,
        Some("deny") => Action::Deny,
        Some(a) => return Err(bad(format!("action {a:?} is not allow or deny"))),
        None => return Err(bad("an item needs an action")),
    };
    let order = match e.get_attr("order") {
        None => return Err(bad("an item needs an order")),
        Some(o) => o
            .parse::<u32>()
            .ok()
            .filter(|_| o.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| bad(format!("order {o:?} is not an unsigned integer")))?,
    };
    let mut stanzas = BTreeSet::new();
    for c in e.elements() {
        match StanzaKind::parse(&c.name).filter(|_| c.ns == NS_PRIVACY) {
            Some(k) => {
                stanzas.insert(k);
            }
            None => return Err(bad(format!("unexpected <{}/> in an item", c.name))),
        }
    }
    Ok(Item {
        order,
        kind,
        action,
        stanzas,
    })
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use poolxmpp_sdk::Condition;

    fn parse(items: &str) -> Result<Vec<Item>, StanzaError> {
        let e = Element::parse(&format!("<list xmlns='jabber:iq:privacy' name='l'>{items}</list>")).unwrap();
        parse_items(&e, 3)
    }

    fn text_of(r: Result<Vec<Item>, StanzaError>) -> (Condition, String) {
        let e = r.unwrap_err();
        (e.condition, e.text.unwrap_or_default())
    }

    #[test]
    fn parses_every_kind_and_round_trips_in_order() {
        let items = parse(
            "<item type='subscription' value='both' action='allow' order='20'/>\
             <item type='jid' value='Bob@L/Phone' action='deny' order='3'><message/><presence-in/></item>\
             <item type='group' value='Work' action='deny' order='7'><iq/><presence-out/></item>",
        )
        .unwrap();
        assert_eq!(items.iter().map(|i| i.order).collect::<Vec<_>>(), vec![3, 7, 20]);
        assert_eq!(items[0].kind, Match::Jid("bob@l/Phone".into()));
        assert_eq!(items[1].kind, Match::Group("Work".into()));
        assert_eq!(items[2].kind, Match::Subscription(Sub::Both));
        let xml = to_element("l", &items).to_xml();
        let back = parse_items(&Element::parse(&xml).unwrap(), 3).unwrap();
        assert_eq!(back, items);
        let fall = parse("<item action='deny' order='1'/>").unwrap();
        assert_eq!(fall[0].kind, Match::FallThrough);
        assert!(fall[0].stanzas.is_empty());
    }

    #[test]
    fn refuses_malformed_items_with_a_reason() {
        let cases = [
            (
                "<item action='deny' order='1'/><item action='allow' order='1'/>",
                "used twice",
            ),
            ("<item type='jid' value='a@b' order='1'/>", "needs an action"),
            (
                "<item type='jid' value='a@b' action='maybe' order='1'/>",
                "not allow or deny",
            ),
            ("<item type='jid' value='a@b' action='deny'/>", "needs an order"),
            ("<item type='jid' value='a@b' action='deny' order='-1'/>", "unsigned"),
            ("<item type='jid' value='a@b' action='deny' order='x'/>", "unsigned"),
            (
                "<item type='color' value='red' action='deny' order='1'/>",
                "not jid, group",
            ),
            ("<item type='jid' action='deny' order='1'/>", "needs a value"),
            ("<item value='a@b' action='deny' order='1'/>", "needs a type"),
            ("<item type='jid' value='a b@c' action='deny' order='1'/>", "not a JID"),
            (
                "<item type='subscription' value='all' action='deny' order='1'/>",
                "not none",
            ),
            ("<item action='deny' order='1'><body/></item>", "unexpected <body/>"),
            (
                "<item action='deny' order='1'><message xmlns='urn:x'/></item>",
                "unexpected <message/>",
            ),
            ("<other/>", "unexpected <other/>"),
        ];
        for (xml, why) in cases {
            let (condition, text) = text_of(parse(xml));
            assert_eq!(condition, Condition::BadRequest, "{xml}");
            assert!(text.contains(why), "{xml}: {text}");
        }
    }

    #[test]
    fn refuses_too_many_items() {
        let four = (1..=4)
            .map(|o| format!("<item action='deny' order='{o}'/>"))
            .collect::<String>();
        let (condition, text) = text_of(parse(&four));
        assert_eq!(condition, Condition::NotAcceptable);
        assert!(text.contains("at most 3"), "{text}");
    }
}
