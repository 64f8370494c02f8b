//! Registration with a room (XEP-0045 §7.10): a user reserves a nickname and becomes a
//! member; nobody else may enter under a reserved nickname (§7.2.9), and the user can
//! ask the room which one is theirs (§7.12).

use poolxmpp_sdk::{Element, StanzaError};

use crate::ns::{self, REGISTER};
use crate::room::{Affiliation, Room};

const FORM_TYPE: &str = "http://jabber.org/protocol/muc#register";

impl Room {
    /// The answer to a registration get: the user's reserved nickname if it has one,
    /// else the `muc#register` form.
    pub fn registration_form(&self, jid: &str) -> Result<Element, StanzaError> {
        self.may_register(jid)?;
        if let Some(nick) = self.reserved_nick(jid) {
            return Ok(Element::new("query", REGISTER)
                .child(Element::new("registered", REGISTER))
                .child(Element::new("username", REGISTER).text(nick)));
        }
        let field = |var: &str, kind: &str, label: &str, value: Option<&str>| {
            let mut f = Element::new("field", ns::DATA)
                .attr("var", var)
                .attr("type", kind)
                .attr("label", label);
            if let Some(v) = value {
                f.push(Element::new("value", ns::DATA).text(v));
            }
            f
        };
        let form = Element::new("x", ns::DATA)
            .attr("type", "form")
            .child(Element::new("title", ns::DATA).text("Register with the room"))
            .child(field("FORM_TYPE", "hidden", "", Some(FORM_TYPE)))
            .child(
                field("muc#register_roomnick", "text-single", "Nickname", None)
                    .child(Element::new("required", ns::DATA)),
            );
        Ok(Element::new("query", REGISTER).child(form))
    }

    /// A submitted registration: the nickname reserved for the user, who becomes a member
    /// (an owner or admin keeps its affiliation). A nickname reserved by someone else, or
    /// worn by another user in the room, is a `conflict`.
    pub fn register(&mut self, jid: &str, query: &Element) -> Result<(), StanzaError> {
        self.may_register(jid)?;
        let form = query
            .get_child("x", ns::DATA)
            .filter(|x| x.get_attr("type") == Some("submit"))
            .ok_or_else(|| StanzaError::bad_request().with_text("submit the muc#register form"))?;
        let nick = form
            .elements()
            .find(|f| f.get_attr("var") == Some("muc#register_roomnick"))
            .and_then(|f| f.get_child("value", ns::DATA))
            .map(|v| v.text_content())
            .ok_or_else(|| StanzaError::not_acceptable().with_text("a nickname is required"))?;
        let nick = crate::nick::enforce(&nick)
            .map_err(|e| StanzaError::not_acceptable().with_text(e.text.unwrap_or_default()))?;
        let key = crate::nick::key(&nick);
        let bare = poolxmpp_sdk::jid::bare(jid).to_string();
        if self.nick_reserved_by_other(&nick, &bare) {
            return Err(StanzaError::conflict().with_text("that nickname is reserved by someone else"));
        }
        if self
            .occupants()
            .iter()
            .any(|o| o.nick_key == key && poolxmpp_sdk::jid::bare(&o.jid) != bare)
        {
            return Err(StanzaError::conflict().with_text("someone else in the room has that nickname"));
        }
        if self.affiliation_of(jid) < Affiliation::Member {
            self.set_affiliation(&bare, Affiliation::Member);
        }
        self.reserve(&bare, &nick);
        Ok(())
    }

    /// §7.10: outcasts may not register; in a members-only room only its members may
    /// (membership there is given, not taken).
    fn may_register(&self, jid: &str) -> Result<(), StanzaError> {
        match self.affiliation_of(jid) {
            Affiliation::Outcast => Err(StanzaError::forbidden().with_text("you are banned from this room")),
            Affiliation::None if self.config.members_only => {
                Err(StanzaError::not_allowed().with_text("this room's members are chosen by its admins"))
            }
            _ => Ok(()),
        }
    }

    /// §7.12: the user's reserved nickname as disco#info node `x-roomuser-item`.
    pub fn reserved_nick_info(&self, jid: &str) -> Element {
        let mut query = Element::new("query", ns::DISCO_INFO).attr("node", "x-roomuser-item");
        if let Some(nick) = self.reserved_nick(jid) {
            query.push(
                Element::new("identity", ns::DISCO_INFO)
                    .attr("category", "conference")
                    .attr("type", "text")
                    .attr("name", nick),
            );
        }
        query
    }
}

#[cfg(test)]
mod tests {
    use poolxmpp_sdk::{Condition, NS_CLIENT};

    use super::*;

    fn submit(nick: &str) -> Element {
        Element::parse(&format!(
            "<query xmlns='{REGISTER}'><x xmlns='{}' type='submit'><field var='FORM_TYPE'><value>{FORM_TYPE}</value></field><field var='muc#register_roomnick'><value>{nick}</value></field></x></query>",
            ns::DATA
        ))
        .unwrap()
    }

    #[test]
    fn a_registered_nickname_is_reserved_and_makes_a_member() {
        let join = Element::new("presence", NS_CLIENT).child(Element::new("x", ns::MUC));
        let mut room = Room::new("r@conference.l", "alice@l/a", "salt".into());
        room.enter("alice@l/a", "Alice", &join, true, 0).unwrap();
        room.unlock();
        assert!(room
            .registration_form("bob@l/b")
            .unwrap()
            .get_child("x", ns::DATA)
            .is_some());
        room.register("bob@l/b", &submit("Bobby")).unwrap();
        assert_eq!(room.affiliation_of("bob@l"), Affiliation::Member);
        assert!(room
            .registration_form("bob@l/other")
            .unwrap()
            .has_child("registered", REGISTER));
        assert_eq!(
            room.register("carol@l/c", &submit("Bobby")).unwrap_err().condition,
            Condition::Conflict
        );
        let taken = room.presence("carol@l/c", "Bobby", &join, 0).unwrap_err();
        assert_eq!(taken.condition, Condition::Conflict, "nobody else enters as Bobby");
        assert!(room.presence("bob@l/b", "Bobby", &join, 0).is_ok());
        let info = room.reserved_nick_info("bob@l/b");
        assert!(info.to_xml().contains("Bobby"));
    }
}
