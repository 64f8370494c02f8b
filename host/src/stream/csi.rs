//! Client state indication (XEP-0352) on the write side: while a client says it is
//! inactive (a phone in a pocket), what it need not see at once is held back, so its radio
//! can sleep, and presence updates are coalesced to the latest per contact resource.
//!
//! Held back: presence broadcasts (not subscription requests, probes or errors) and
//! messages that carry nothing a person reads — chat states, receipts and markers, PEP
//! notifications — looked for inside carbon copies too. Everything else is urgent: a
//! message with a body (or encrypted, or anything we do not know), an IQ. An urgent
//! stanza is written after what was held, so the client sees things in their order;
//! `<active/>` writes everything held. The hold is bounded in bytes and in number.

use std::collections::HashMap;
use std::sync::Arc;

use crate::xml::{Element, NS_CLIENT};

pub const NS_CSI: &str = "urn:xmpp:csi:0";
const NS_CARBONS: &str = "urn:xmpp:carbons:2";
const NS_FORWARD: &str = "urn:xmpp:forward:0";

/// Payloads of a message that can wait for the client to be active.
const DEFERRABLE: &[&str] = &[
    "http://jabber.org/protocol/chatstates",
    "http://jabber.org/protocol/pubsub#event",
    "urn:xmpp:receipts",
    "urn:xmpp:chat-markers:0",
    "urn:xmpp:hints",
    "urn:xmpp:delay",
    "urn:xmpp:sid:0",
];

/// At most this many stanzas are held; one more writes them all out.
const MAX_HELD: usize = 256;

/// Whether a stanza may wait while its client is inactive.
#[derive(Debug, PartialEq, Eq)]
pub enum Urgency {
    Now,
    /// May wait; a newer one with the same key replaces it (a presence from one resource).
    Later(Option<String>),
}

pub fn urgency(stanza: &Element) -> Urgency {
    match stanza.name.as_str() {
        "presence" => match stanza.get_attr("type") {
            None | Some("unavailable") => Urgency::Later(stanza.get_attr("from").map(str::to_string)),
            _ => Urgency::Now,
        },
        "message" if stanza.get_attr("type") != Some("error") && can_wait(unwrap_carbon(stanza)) => {
            Urgency::Later(None)
        }
        _ => Urgency::Now,
    }
}

/// The message a carbon copy carries, or the message itself.
fn unwrap_carbon(message: &Element) -> &Element {
    ["sent", "received"]
        .iter()
        .find_map(|name| message.get_child(name, NS_CARBONS))
        .and_then(|c| c.get_child("forwarded", NS_FORWARD))
        .and_then(|f| f.get_child("message", NS_CLIENT))
        .unwrap_or(message)
}

/// Nothing but deferrable payloads (and at least one of them).
fn can_wait(message: &Element) -> bool {
    let mut any = false;
    for child in message.elements() {
        if &*child.ns == NS_CLIENT && child.name == "thread" {
            continue;
        }
        if !DEFERRABLE.contains(&&*child.ns) {
            return false;
        }
        any = true;
    }
    any
}

/// What an inactive client's writer holds back, in order, with each stanza's cost.
#[derive(Debug, Default)]
pub struct Held {
    items: Vec<Option<(Arc<Element>, usize)>>,
    /// Where the held presence of each sender is, so a newer one replaces it.
    presence: HashMap<String, usize>,
    bytes: usize,
}

impl Held {
    /// Hold `stanza`; `false` when the hold is now over its bounds and should be written out.
    pub fn hold(&mut self, stanza: Arc<Element>, cost: usize, key: Option<String>, max_bytes: usize) -> bool {
        if let Some(key) = key {
            if let Some(old) = self.presence.insert(key, self.items.len()) {
                if let Some((_, c)) = self.items[old].take() {
                    self.bytes -= c;
                }
            }
        }
        self.bytes += cost;
        self.items.push(Some((stanza, cost)));
        self.items.len() <= MAX_HELD && self.bytes <= max_bytes
    }

    /// Everything held, oldest first; the hold is empty afterwards.
    pub fn take(&mut self) -> Vec<(Arc<Element>, usize)> {
        self.presence.clear();
        self.bytes = 0;
        self.items.drain(..).flatten().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(xml: &str) -> Element {
        Element::parse_in(xml, NS_CLIENT).unwrap()
    }

    #[test]
    fn what_waits() {
        assert_eq!(
            urgency(&el("<presence from='b@x/1'/>")),
            Urgency::Later(Some("b@x/1".into()))
        );
        assert_eq!(
            urgency(&el("<presence from='b@x/1' type='unavailable'/>")),
            Urgency::Later(Some("b@x/1".into()))
        );
        assert_eq!(urgency(&el("<presence from='b@x' type='subscribe'/>")), Urgency::Now);
        let composing = "<message type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/><thread>t</thread></message>";
        assert_eq!(urgency(&el(composing)), Urgency::Later(None));
        assert_eq!(
            urgency(&el(
                "<message><displayed xmlns='urn:xmpp:chat-markers:0' id='1'/></message>"
            )),
            Urgency::Later(None)
        );
        assert_eq!(
            urgency(&el(
                "<message type='chat'><body>hi</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>"
            )),
            Urgency::Now
        );
        assert_eq!(
            urgency(&el(
                "<message><encrypted xmlns='eu.siacs.conversations.axolotl'/></message>"
            )),
            Urgency::Now,
            "what we do not know is delivered at once"
        );
        assert_eq!(urgency(&el("<message/>")), Urgency::Now);
        assert_eq!(urgency(&el("<iq type='get' id='1'/>")), Urgency::Now);
        let carbon = "<message><received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>\
                      <message xmlns='jabber:client'><gone xmlns='http://jabber.org/protocol/chatstates'/></message>\
                      </forwarded></received></message>";
        assert_eq!(
            urgency(&el(carbon)),
            Urgency::Later(None),
            "a carbon is judged by what it carries"
        );
    }

    #[test]
    fn presence_is_coalesced_and_the_hold_is_bounded() {
        let mut held = Held::default();
        let p = |s: &str| Arc::new(el(&format!("<presence from='b@x/1'><status>{s}</status></presence>")));
        assert!(held.hold(p("one"), 10, Some("b@x/1".into()), 1000));
        assert!(held.hold(Arc::new(el("<message/>")), 10, None, 1000));
        assert!(held.hold(p("two"), 10, Some("b@x/1".into()), 1000));
        let out = held.take();
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].0.get_child("status", NS_CLIENT).unwrap().text_content(), "two");
        assert!(
            !held.hold(Arc::new(el("<message/>")), 2000, None, 1000),
            "over the byte bound"
        );
        held.take();
        for n in 0..MAX_HELD {
            assert!(held.hold(Arc::new(el("<message/>")), 1, None, 1000), "{n}");
        }
        assert!(!held.hold(Arc::new(el("<message/>")), 1, None, 1000), "over the count");
    }
}
