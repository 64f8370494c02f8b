//! IQs between occupants, through the room (XEP-0045 §7.5's rule for private messages,
//! applied to queries as Prosody and ejabberd do): an occupant asks `room/nick` for its
//! vCard (XEP-0054, the avatars of XEP-0153), its capabilities (XEP-0115's disco#info),
//! its software version… without learning its real JID, and the answer comes back the
//! same way.
//!
//! The room keeps no table of IQs in flight: the id it sends carries what it needs to send
//! the answer back — the asker's id, the nickname asked, and a salted hash of the asking
//! session's full JID (the one asked must not learn it) — so an answer that never comes
//! costs nothing, and one that does still finds its way after the room moved to another
//! node.

use poolxmpp_sdk::{Element, StanzaError};

use crate::room::{Out, Room};

/// vCards are the account's, answered by the user's server for its bare JID (XEP-0054
/// §3.1): a query for an occupant's goes there, not to one of its clients.
const NS_VCARD: &str = "vcard-temp";

/// What every relayed id starts with; the rest is `{asker's id}.{nick}.{asker tag}`, the
/// first two hex-encoded so that any id and nickname fit an attribute and split cleanly.
const PREFIX: &str = "muc-iq.";

/// The id of a relayed IQ, decoded.
#[derive(Debug, PartialEq, Eq)]
struct RelayId {
    original: String,
    nick: String,
    asker: String,
}

impl RelayId {
    fn encode(&self) -> String {
        format!("{PREFIX}{}.{}.{}", hex(&self.original), hex(&self.nick), self.asker)
    }

    fn decode(id: &str) -> Option<RelayId> {
        let mut parts = id.strip_prefix(PREFIX)?.split('.');
        let (original, nick, asker) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        Some(RelayId {
            original: unhex(original)?,
            nick: unhex(nick)?,
            asker: asker.to_string(),
        })
    }
}

impl Room {
    /// An IQ get or set from session `from` to the occupant called `nick`: sent on from
    /// the asker's nickname to the occupant's primary session (a vCard query to its bare
    /// JID). Only occupants may ask (`not-acceptable`); nobody of that nickname is
    /// `item-not-found`.
    pub fn iq_to_occupant(&self, from: &str, nick: &str, iq: &Element) -> Result<Out, StanzaError> {
        let Some(asker) = self.occupant(from) else {
            return Err(StanzaError::not_acceptable().with_text("only occupants may query occupants"));
        };
        let Some(asked) = self.by_nick(nick) else {
            return Err(StanzaError::item_not_found().with_text("nobody in this room has that nickname"));
        };
        let vcard = iq.get_attr("type") == Some("get") && iq.elements().next().is_some_and(|p| p.ns == NS_VCARD);
        let to = match vcard {
            true => poolxmpp_sdk::jid::bare(&asked.jid),
            false => asked.jid.as_str(),
        };
        let id = RelayId {
            original: iq.get_attr("id").unwrap_or_default().to_string(),
            nick: nick.to_string(),
            asker: self.asker_tag(from),
        };
        let mut relayed = iq.clone();
        relayed.set_attr("from", format!("{}/{}", self.jid, asker.nick));
        relayed.set_attr("to", to);
        relayed.set_attr("id", id.encode());
        Ok(Out::One(relayed))
    }

    /// A result or error from `from` to `room/nick`: back to the session of `nick` that
    /// asked, from the answerer's nickname, with the asker's id. `None` (dropped, never
    /// answered: RFC 6120 §8.2.3) if it answers nothing the room relayed, comes from
    /// someone other than the occupant asked, or the asker has left.
    pub fn iq_reply_to_occupant(&self, from: &str, nick: &str, iq: &Element) -> Option<Out> {
        let id = RelayId::decode(iq.get_attr("id")?)?;
        let answerer = self.by_nick(&id.nick)?;
        let by_answerer =
            poolxmpp_sdk::jid::bare(&answerer.jid) == from || self.sessions_of(&id.nick).iter().any(|s| s == from);
        if !by_answerer {
            return None;
        }
        let asker = self
            .sessions_of(nick)
            .into_iter()
            .find(|session| self.asker_tag(session) == id.asker)?;
        let mut reply = iq.clone();
        reply.set_attr("from", format!("{}/{}", self.jid, id.nick));
        reply.set_attr("to", asker);
        reply.set_attr("id", id.original);
        Some(Out::One(reply))
    }

    /// The asking session in a relayed id: a salted hash of its full JID.
    fn asker_tag(&self, session: &str) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::new()
            .chain_update(self.salt.as_bytes())
            .chain_update([1])
            .chain_update(session.as_bytes())
            .finalize();
        hex(&digest[..8])
    }
}

fn hex(bytes: impl AsRef<[u8]>) -> String {
    bytes.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if s.len() % 2 != 0 {
        return None;
    }
    let bytes = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use poolxmpp_sdk::{Condition, NS_CLIENT};

    use super::*;
    use crate::testing::join;

    const ROOM: &str = "lounge@conference.l";

    fn room() -> Room {
        let mut room = Room::new(ROOM, "alice@l/a", "salt".into());
        room.enter("alice@l/a", "Alice", &join(), true, 0).unwrap();
        room.unlock();
        room.presence("bob@l/b", "Bob", &join(), 0).unwrap();
        room
    }

    fn iq(kind: &str, id: &str, payload: Element) -> Element {
        Element::new("iq", NS_CLIENT)
            .attr("type", kind)
            .attr("id", id)
            .child(payload)
    }

    fn sent(out: Out) -> Element {
        match out {
            Out::One(e) => e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_query_goes_to_the_occupant_and_the_answer_back_without_real_jids() {
        let room = room();
        let ask = iq(
            "get",
            "q1",
            Element::new("query", "http://jabber.org/protocol/disco#info"),
        );
        let relayed = sent(room.iq_to_occupant("alice@l/a", "Bob", &ask).unwrap());
        assert_eq!(relayed.get_attr("from"), Some("lounge@conference.l/Alice"));
        assert_eq!(relayed.get_attr("to"), Some("bob@l/b"));
        let id = relayed.get_attr("id").unwrap().to_string();
        assert!(
            !id.contains("alice"),
            "Bob does not learn Alice's JID from the id: {id}"
        );
        let answer = iq(
            "result",
            &id,
            Element::new("query", "http://jabber.org/protocol/disco#info"),
        );
        let back = sent(room.iq_reply_to_occupant("bob@l/b", "Alice", &answer).unwrap());
        assert_eq!(
            (back.get_attr("from"), back.get_attr("to"), back.get_attr("id")),
            (Some("lounge@conference.l/Bob"), Some("alice@l/a"), Some("q1"))
        );
        // Anyone else answering, or an answer to a nickname that did not ask, goes nowhere.
        assert!(room.iq_reply_to_occupant("mallory@l/m", "Alice", &answer).is_none());
        assert!(room.iq_reply_to_occupant("bob@l/b", "Bob", &answer).is_none());
        let unknown = iq("result", "plain-id", Element::new("query", "x"));
        assert!(room.iq_reply_to_occupant("bob@l/b", "Alice", &unknown).is_none());
    }

    #[test]
    fn a_vcard_query_goes_to_the_account_and_its_servers_answer_comes_back() {
        let room = room();
        let ask = iq("get", "v1", Element::new("vCard", NS_VCARD));
        let relayed = sent(room.iq_to_occupant("alice@l/a", "Bob", &ask).unwrap());
        assert_eq!(relayed.get_attr("to"), Some("bob@l"));
        let answer = iq(
            "result",
            relayed.get_attr("id").unwrap(),
            Element::new("vCard", NS_VCARD),
        );
        let back = sent(room.iq_reply_to_occupant("bob@l", "Alice", &answer).unwrap());
        assert_eq!(
            (back.get_attr("to"), back.get_attr("id")),
            (Some("alice@l/a"), Some("v1"))
        );
    }

    #[test]
    fn only_occupants_ask_and_only_occupants_are_asked() {
        let room = room();
        let ask = iq("get", "q", Element::new("query", "jabber:iq:version"));
        let err = room.iq_to_occupant("mallory@l/m", "Bob", &ask).unwrap_err();
        assert_eq!(err.condition, Condition::NotAcceptable);
        let err = room.iq_to_occupant("alice@l/a", "Nobody", &ask).unwrap_err();
        assert_eq!(err.condition, Condition::ItemNotFound);
    }

    #[test]
    fn relayed_ids_carry_any_id_and_nickname() {
        let id = RelayId {
            original: "a.b c'\"<&é".into(),
            nick: "Ni.ck ☃".into(),
            asker: "00ff".into(),
        };
        assert_eq!(RelayId::decode(&id.encode()), Some(id));
        assert_eq!(RelayId::decode("muc-iq.zz.00.00"), None);
        assert_eq!(RelayId::decode("muc-iq.0.00.00"), None);
    }
}
