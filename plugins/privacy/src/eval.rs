//! Judging one stanza against one list (XEP-0016 §2.1–2.3): pure, so it is tested
//! without a host. Which list applies, and what a deny does to the stanza, is the
//! filter's business (`lib.rs`).

use poolxmpp_sdk::host::{RosterItem, Subscription};

use crate::addr::Jid;
use crate::list::{Action, Item, Match, StanzaKind, Sub};

/// What a stanza is, as items see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judged {
    /// One of the kinds an item can name.
    Kind(StanzaKind),
    /// Presence that is not a notification (subscription requests and answers, probes):
    /// only items naming no kind (blocking everything) apply to it.
    OtherPresence,
}

impl Judged {
    fn applies(self, item: &Item) -> bool {
        match self {
            _ if item.stanzas.is_empty() => true,
            Judged::Kind(k) => item.stanzas.contains(&k),
            Judged::OtherPresence => false,
        }
    }
}

/// What the user's roster says about the other party.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub subscription: Sub,
    pub groups: Vec<String>,
}

impl Contact {
    /// Not in the roster: subscription `none`, no groups.
    pub fn stranger() -> Contact {
        Contact {
            subscription: Sub::None,
            groups: Vec::new(),
        }
    }

    pub fn of(item: Option<RosterItem>) -> Contact {
        match item {
            None => Contact::stranger(),
            Some(i) => Contact {
                subscription: match i.subscription {
                    Subscription::None => Sub::None,
                    Subscription::To => Sub::To,
                    Subscription::From => Sub::From,
                    Subscription::Both => Sub::Both,
                },
                groups: i.groups,
            },
        }
    }
}

/// The item deciding about a stanza of `kind` exchanged with `other`: the first, in
/// ascending order, that matches `other` and applies to the kind; `None` (allowed) when
/// none does. `roster` is asked at most once, and only if a group or subscription item
/// is reached.
pub fn decide<'a>(
    items: &'a [Item],
    other: &Jid,
    kind: Judged,
    mut roster: impl FnMut() -> Contact,
) -> Option<&'a Item> {
    let mut contact: Option<Contact> = None;
    let mut contact = |f: &dyn Fn(&Contact) -> bool| f(contact.get_or_insert_with(&mut roster));
    items.iter().find(|item| {
        kind.applies(item)
            && match &item.kind {
                Match::FallThrough => true,
                Match::Jid(v) => Jid::stored_covers(v, other),
                Match::Group(g) => contact(&|c| c.groups.iter().any(|x| x == g)),
                Match::Subscription(s) => contact(&|c| c.subscription == *s),
            }
    })
}

/// Whether `items` allow the stanza.
pub fn allows(items: &[Item], other: &Jid, kind: Judged, roster: impl FnMut() -> Contact) -> bool {
    decide(items, other, kind, roster).is_none_or(|i| i.action == Action::Allow)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::list::parse_items;
    use poolxmpp_sdk::Element;
    use std::cell::Cell;

    fn items(xml: &str) -> Vec<Item> {
        let e = Element::parse(&format!("<list xmlns='jabber:iq:privacy' name='l'>{xml}</list>")).unwrap();
        parse_items(&e, 100).unwrap()
    }

    fn j(s: &str) -> Jid {
        Jid::parse(s).unwrap()
    }

    const MSG: Judged = Judged::Kind(StanzaKind::Message);

    fn allowed(list: &[Item], other: &str, kind: Judged) -> bool {
        allows(list, &j(other), kind, Contact::stranger)
    }

    #[test]
    fn each_jid_form() {
        let full = items("<item type='jid' value='a@d/r' action='deny' order='1'/>");
        assert!(!allowed(&full, "a@d/r", MSG));
        assert!(allowed(&full, "a@d/s", MSG));
        assert!(allowed(&full, "a@d", MSG));
        let bare = items("<item type='jid' value='A@D' action='deny' order='1'/>");
        assert!(!allowed(&bare, "a@d/any", MSG));
        assert!(!allowed(&bare, "a@d", MSG));
        assert!(allowed(&bare, "b@d/any", MSG));
        let domres = items("<item type='jid' value='d/r' action='deny' order='1'/>");
        assert!(!allowed(&domres, "d/r", MSG));
        assert!(allowed(&domres, "a@d/r", MSG));
        let dom = items("<item type='jid' value='d' action='deny' order='1'/>");
        assert!(!allowed(&dom, "d", MSG));
        assert!(!allowed(&dom, "a@d/x", MSG));
        assert!(!allowed(&dom, "d/x", MSG));
        assert!(allowed(&dom, "a@e", MSG));
    }

    #[test]
    fn group_and_subscription_read_the_roster_once_and_only_if_needed() {
        let list = items(
            "<item type='jid' value='x@d' action='allow' order='1'/>\
             <item type='group' value='Enemies' action='deny' order='2'/>\
             <item type='subscription' value='none' action='deny' order='3'/>",
        );
        let asked = Cell::new(0);
        let enemy = || {
            asked.set(asked.get() + 1);
            Contact {
                subscription: Sub::Both,
                groups: vec!["Enemies".into()],
            }
        };
        assert!(allows(&list, &j("x@d"), MSG, enemy));
        assert_eq!(asked.get(), 0);
        assert!(!allows(&list, &j("e@d"), MSG, enemy));
        assert_eq!(asked.get(), 1);
        let friend = || Contact {
            subscription: Sub::From,
            groups: vec!["Friends".into()],
        };
        assert!(allows(&list, &j("f@d"), MSG, friend));
        // Not in the roster: subscription none.
        assert!(!allows(&list, &j("s@d"), MSG, Contact::stranger));
    }

    #[test]
    fn fall_through_and_order() {
        let list = items(
            "<item action='deny' order='9'/>\
             <item type='jid' value='ok@d' action='allow' order='2'/>",
        );
        assert!(allowed(&list, "ok@d/r", MSG));
        assert!(!allowed(&list, "other@d", MSG));
        assert!(allowed(&[], "other@d", MSG));
    }

    #[test]
    fn stanza_kinds_and_other_presence() {
        let list = items(
            "<item type='jid' value='m@d' action='deny' order='1'><message/></item>\
             <item type='jid' value='p@d' action='deny' order='2'><presence-in/></item>\
             <item type='jid' value='o@d' action='deny' order='3'><presence-out/><iq/></item>\
             <item type='jid' value='all@d' action='deny' order='4'/>",
        );
        let iq = Judged::Kind(StanzaKind::Iq);
        let pin = Judged::Kind(StanzaKind::PresenceIn);
        let pout = Judged::Kind(StanzaKind::PresenceOut);
        assert!(!allowed(&list, "m@d", MSG));
        assert!(allowed(&list, "m@d", iq));
        assert!(!allowed(&list, "p@d", pin));
        assert!(allowed(&list, "p@d", MSG));
        assert!(
            allowed(&list, "p@d", Judged::OtherPresence),
            "subscription requests pass presence-in"
        );
        assert!(!allowed(&list, "o@d", pout));
        assert!(!allowed(&list, "o@d", iq));
        assert!(allowed(&list, "o@d", pin));
        for k in [MSG, iq, pin, pout, Judged::OtherPresence] {
            assert!(!allowed(&list, "all@d", k), "{k:?}");
        }
    }
}
