//! Message carbons (XEP-0280): every resource of an account that enabled them sees the
//! account's conversations, whichever resource took part, on whichever node of the pool.
//!
//! The copies are decided where the message is routed, from the session table (which
//! mirrors the other nodes' sessions and their carbons flag), and go out like any stanza
//! to a resource: to a local queue, or over a pool link.

use std::sync::Arc;

use crate::context::Context;
use crate::stanza::MessageType;
use crate::xml::{Element, NS_CLIENT};

pub const NS_CARBONS: &str = "urn:xmpp:carbons:2";
const NS_FORWARD: &str = "urn:xmpp:forward:0";
const NS_HINTS: &str = "urn:xmpp:hints";
const NS_MUC_USER: &str = "http://jabber.org/protocol/muc#user";

/// Payloads of one-to-one chat that make a `normal` message without a body worth copying
/// (XEP-0280 §6: receipts, markers, chat states, invitations).
const IM_PAYLOADS: &[&str] = &[
    "urn:xmpp:receipts",
    "urn:xmpp:chat-markers:0",
    "http://jabber.org/protocol/chatstates",
    "jabber:x:conference",
    NS_MUC_USER,
];

/// Which way a copied message went, as the wrapper element names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Sent by another resource of the account.
    Sent,
    /// Received by another resource of the account.
    Received,
}

impl Direction {
    fn element(self) -> &'static str {
        match self {
            Direction::Sent => "sent",
            Direction::Received => "received",
        }
    }
}

/// XEP-0280 §6: chats, and normal messages that carry a body or a chat payload; never
/// group chat, headlines or errors, nothing marked `<private/>` or `<no-copy/>`, and no
/// carbon copy itself. A private message from a room occupant is copied only as sent:
/// the account's other resources are not in the room (XEP-0280 §7).
pub fn eligible(message: &Element, direction: Direction) -> bool {
    if message.has_child("private", NS_CARBONS)
        || message.has_child("no-copy", NS_HINTS)
        || message.has_child("sent", NS_CARBONS)
        || message.has_child("received", NS_CARBONS)
    {
        return false;
    }
    if direction == Direction::Received && message.has_child("x", NS_MUC_USER) && !is_invitation(message) {
        return false;
    }
    match MessageType::of(message) {
        MessageType::Chat => true,
        MessageType::Normal => message
            .elements()
            .any(|c| (&*c.ns == NS_CLIENT && c.name == "body") || IM_PAYLOADS.contains(&&*c.ns)),
        _ => false,
    }
}

fn is_invitation(message: &Element) -> bool {
    message
        .get_child("x", NS_MUC_USER)
        .is_some_and(|x| x.has_child("invite", NS_MUC_USER))
}

/// Copy `message` to the resources of `bare` that enabled carbons, but for those in
/// `except` (which sent it or got it themselves).
pub fn copy(ctx: &Arc<Context>, bare: &str, except: &[&str], message: &Element, direction: Direction) {
    if !eligible(message, direction) {
        return;
    }
    // A message between two resources of one account: the sent copy covers it.
    let from_self = message
        .get_attr("from")
        .is_some_and(|f| f.split('/').next() == Some(bare));
    if direction == Direction::Received && from_self {
        return;
    }
    let mut wrapped: Option<Element> = None;
    for r in ctx.sessions.resources(bare) {
        if !r.carbons || except.contains(&r.resource.as_str()) {
            continue;
        }
        let mut copy = wrapped.get_or_insert_with(|| wrap(bare, message, direction)).clone();
        copy.set_attr("to", format!("{bare}/{}", r.resource));
        r.send(Arc::new(copy));
    }
}

/// The XEP-0280 §5 wrapper: from the account's bare JID, the original forwarded inside.
fn wrap(bare: &str, message: &Element, direction: Direction) -> Element {
    let mut outer = Element::new("message", NS_CLIENT).attr("from", bare);
    if let Some(t) = message.get_attr("type") {
        outer.set_attr("type", t);
    }
    outer.child(
        Element::new(direction.element(), NS_CARBONS)
            .child(Element::new("forwarded", NS_FORWARD).child(message.clone())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(xml: &str) -> Element {
        Element::parse_in(xml, NS_CLIENT).unwrap()
    }

    #[test]
    fn what_is_copied() {
        let received = Direction::Received;
        assert!(eligible(
            &msg("<message type='chat'><body>hi</body></message>"),
            received
        ));
        assert!(eligible(&msg("<message><body>hi</body></message>"), received));
        assert!(eligible(
            &msg("<message><received xmlns='urn:xmpp:receipts' id='1'/></message>"),
            received
        ));
        assert!(
            !eligible(&msg("<message/>"), received),
            "a normal message with nothing to read"
        );
        assert!(!eligible(
            &msg("<message type='groupchat'><body>hi</body></message>"),
            received
        ));
        assert!(!eligible(
            &msg("<message type='headline'><body>hi</body></message>"),
            received
        ));
        assert!(!eligible(
            &msg("<message type='error'><body>hi</body></message>"),
            received
        ));
        assert!(!eligible(
            &msg("<message type='chat'><body>hi</body><private xmlns='urn:xmpp:carbons:2'/></message>"),
            received
        ));
        assert!(!eligible(
            &msg("<message type='chat'><body>hi</body><no-copy xmlns='urn:xmpp:hints'/></message>"),
            received
        ));
        let pm = msg("<message type='chat'><body>hi</body><x xmlns='http://jabber.org/protocol/muc#user'/></message>");
        assert!(
            !eligible(&pm, received),
            "a room's private message is not copied as received"
        );
        assert!(eligible(&pm, Direction::Sent), "but is as sent");
        let invite = msg("<message><x xmlns='http://jabber.org/protocol/muc#user'><invite from='a@x'/></x></message>");
        assert!(eligible(&invite, received));
    }

    #[test]
    fn a_copy_is_wrapped_and_never_copied_again() {
        let original = msg("<message type='chat' from='a@x/1' to='b@y'><body>hi</body></message>");
        let wrapped = wrap("a@x", &original, Direction::Sent);
        assert_eq!(wrapped.get_attr("from"), Some("a@x"));
        assert_eq!(wrapped.get_attr("type"), Some("chat"));
        let inner = wrapped
            .get_child("sent", NS_CARBONS)
            .and_then(|s| s.get_child("forwarded", NS_FORWARD))
            .and_then(|f| f.get_child("message", NS_CLIENT))
            .unwrap();
        assert_eq!(inner.get_attr("to"), Some("b@y"));
        assert!(!eligible(&wrapped, Direction::Received));
    }
}
