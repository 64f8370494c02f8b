//! Moderation and affiliations (XEP-0045 §8, §9, §10.3–10.8): the `muc#admin` queries
//! that list and change roles (kick, voice, moderator) by nickname and affiliations
//! (ban, member, admin, owner) by JID, with who may do what, and what the room sends
//! about each change.
//!
//! A request's items are all checked before any is applied: one refused item refuses
//! the whole request, and nothing changes.

use std::collections::BTreeSet;

use poolxmpp_sdk::{Element, StanzaError, NS_CLIENT};

use crate::ns;
use crate::room::{Affiliation, Out, Role, Room};

/// The most items one request may change.
const MAX_ITEMS: usize = 100;

/// One change a request asks for: from a `muc#admin` item, an approved voice request or
/// the owners and admins a configuration form names.
pub(crate) enum Change {
    /// An occupant's role by nickname; none is a kick.
    Role {
        nick: String,
        role: Option<Role>,
        reason: Option<String>,
    },
    /// A user's affiliation by bare JID.
    Affiliation {
        jid: String,
        affiliation: Affiliation,
        reason: Option<String>,
    },
}

impl Room {
    /// A `muc#admin` get (§8.5, §9.5, §10.5): the occupants with a role, or the users with
    /// an affiliation, as the asker may see them.
    pub fn admin_get(&self, asker: &str, query: &Element) -> Result<Element, StanzaError> {
        let item = query
            .get_child("item", ns::MUC_ADMIN)
            .ok_or_else(|| StanzaError::bad_request().with_text("ask for one role or affiliation"))?;
        let asker_role = self.occupant(asker).map(|o| o.role);
        let asker_affiliation = self.affiliation_of(asker);
        let mut result = Element::new("query", ns::MUC_ADMIN);
        if let Some(role) = item.get_attr("role") {
            let role = Role::parse(role).ok_or_else(|| StanzaError::bad_request().with_text("no such role"))?;
            if asker_role != Some(Role::Moderator) {
                return Err(StanzaError::forbidden().with_text("only moderators may list roles"));
            }
            let primaries = (0..self.occupants().len()).filter(|&i| self.is_primary(i));
            for o in primaries.map(|i| &self.occupants()[i]).filter(|o| o.role == role) {
                result.push(
                    Element::new("item", ns::MUC_ADMIN)
                        .attr("affiliation", self.affiliation_of(&o.jid).as_str())
                        .attr("jid", o.jid.as_str())
                        .attr("nick", o.nick.as_str())
                        .attr("role", role.as_str()),
                );
            }
            return Ok(result);
        }
        let affiliation = item
            .get_attr("affiliation")
            .and_then(Affiliation::parse)
            .filter(|a| *a != Affiliation::None)
            .ok_or_else(|| StanzaError::bad_request().with_text("ask for a role or an affiliation other than none"))?;
        let may = match affiliation {
            Affiliation::Member => {
                asker_affiliation >= Affiliation::Admin || (self.config.get_member_list && asker_role.is_some())
            }
            _ => asker_affiliation >= Affiliation::Admin,
        };
        if !may {
            return Err(StanzaError::forbidden().with_text("you may not see that list"));
        }
        for jid in self.with_affiliation(affiliation) {
            result.push(
                Element::new("item", ns::MUC_ADMIN)
                    .attr("affiliation", affiliation.as_str())
                    .attr("jid", jid),
            );
        }
        Ok(result)
    }

    /// A `muc#admin` set from `actor` (a full JID): every change checked, then all
    /// applied; what the room sends about them.
    pub fn admin_set(&mut self, actor: &str, query: &Element) -> Result<Vec<Out>, StanzaError> {
        self.change(actor, parse(query)?)
    }

    /// Changes `actor` (a full JID) asks for: every one checked, then all applied; what
    /// the room sends about them.
    pub(crate) fn change(&mut self, actor: &str, changes: Vec<Change>) -> Result<Vec<Out>, StanzaError> {
        for change in &changes {
            self.may(actor, change)?;
        }
        // The room keeps an owner (§10.6: the last owner cannot give up ownership).
        let mut owners = self.with_affiliation(Affiliation::Owner);
        for change in &changes {
            if let Change::Affiliation { jid, affiliation, .. } = change {
                owners.retain(|o| o != jid);
                if *affiliation == Affiliation::Owner {
                    owners.push(jid.clone());
                }
            }
        }
        if owners.is_empty() {
            return Err(StanzaError::conflict().with_text("the room must keep an owner"));
        }
        let actor_nick = self.occupant(actor).map(|o| o.nick.clone());
        let mut out = Vec::new();
        for change in changes {
            out.extend(match change {
                Change::Role { nick, role, reason } => self.change_role(&nick, role, reason, actor_nick.as_deref()),
                Change::Affiliation {
                    jid,
                    affiliation,
                    reason,
                } => self.change_affiliation(&jid, affiliation, reason, actor_nick.as_deref()),
            });
        }
        Ok(out)
    }

    /// Whether `actor` may make `change` (§8 for roles, §9–10 for affiliations); the
    /// XEP's error if not.
    fn may(&self, actor: &str, change: &Change) -> Result<(), StanzaError> {
        let actor_affiliation = self.affiliation_of(actor);
        match change {
            Change::Role { nick, role, .. } => {
                if self.occupant(actor).map(|o| o.role) != Some(Role::Moderator) {
                    return Err(StanzaError::forbidden().with_text("only moderators may change roles"));
                }
                let target = self
                    .by_nick(nick)
                    .ok_or_else(|| StanzaError::item_not_found().with_text(format!("no occupant is called {nick}")))?;
                let target_affiliation = self.affiliation_of(&target.jid);
                let to_or_from_moderator = *role == Some(Role::Moderator) || target.role == Role::Moderator;
                if to_or_from_moderator && actor_affiliation < Affiliation::Admin {
                    return Err(StanzaError::forbidden().with_text("only admins and owners grant or revoke moderation"));
                }
                // An admin's or owner's role is theirs (§8.2, §8.4): nobody kicks or silences them.
                if target_affiliation >= Affiliation::Admin && *role != Some(Role::Moderator) {
                    return Err(StanzaError::not_allowed().with_text("admins and owners keep their role"));
                }
                if target_affiliation > actor_affiliation {
                    return Err(StanzaError::not_allowed().with_text("that occupant's affiliation is above yours"));
                }
                Ok(())
            }
            Change::Affiliation { jid, affiliation, .. } => {
                if actor_affiliation < Affiliation::Admin {
                    return Err(StanzaError::forbidden().with_text("only admins and owners change affiliations"));
                }
                let current = self.affiliation_of(jid);
                let involves_admins = *affiliation >= Affiliation::Admin || current >= Affiliation::Admin;
                if involves_admins && actor_affiliation < Affiliation::Owner {
                    return Err(StanzaError::not_allowed().with_text("only owners grant or revoke admin and owner"));
                }
                Ok(())
            }
        }
    }

    fn change_role(&mut self, nick: &str, role: Option<Role>, reason: Option<String>, actor: Option<&str>) -> Vec<Out> {
        let in_item = item_extras(reason.as_deref(), actor);
        let Some(role) = role else {
            // A kick (§8.2): unavailable with 307, to each of the kicked's sessions too.
            let kicked = self.remove_nick(nick);
            return self.leaving(&kicked, &["307"], &["110"], Some(&in_item), &[]);
        };
        self.set_role(nick, role);
        self.announce_with(nick, &in_item)
    }

    fn change_affiliation(
        &mut self,
        jid: &str,
        affiliation: Affiliation,
        reason: Option<String>,
        actor: Option<&str>,
    ) -> Vec<Out> {
        self.set_affiliation(jid, affiliation);
        let in_item = item_extras(reason.as_deref(), actor);
        // The user's occupants (one per nickname it is in the room as).
        let present: BTreeSet<String> = self
            .occupants()
            .iter()
            .filter(|o| poolxmpp_sdk::jid::bare(&o.jid) == jid)
            .map(|o| o.nick.clone())
            .collect();
        let mut out = Vec::new();
        for nick in &present {
            let code = match affiliation {
                Affiliation::Outcast => Some("301"),
                Affiliation::None if self.config.members_only => Some("321"),
                _ => None,
            };
            if let Some(code) = code {
                // Banned (§9.1), or no longer a member of a members-only room (§9.4).
                let gone = self.remove_nick(nick);
                out.extend(self.leaving(&gone, &[code], &["110"], Some(&in_item), &[]));
                continue;
            }
            let role = affiliation.default_role(self.config.moderated).expect("not an outcast");
            let current = self.by_nick(nick).expect("listed above").role;
            // A new affiliation brings its role; an occupant someone made moderator keeps it.
            if affiliation >= Affiliation::Admin || current != Role::Moderator {
                self.set_role(nick, role);
            }
            out.extend(self.announce_with(nick, &in_item));
        }
        if present.is_empty() {
            // Told even when not in the room (§9.3, §9.6): a message to the user.
            let mut item = Element::new("item", ns::MUC_USER)
                .attr("affiliation", affiliation.as_str())
                .attr("jid", jid);
            for e in &in_item {
                item.push(e.clone());
            }
            // 101: the affiliation changed while the user was not in the room.
            let x = Element::new("x", ns::MUC_USER)
                .child(item)
                .child(Element::new("status", ns::MUC_USER).attr("code", "101"));
            out.push(Out::One(
                Element::new("message", NS_CLIENT)
                    .attr("from", self.jid.as_str())
                    .attr("to", jid)
                    .child(x),
            ));
        }
        out
    }

    /// The occupant called `nick` after a change made by someone else: as
    /// [`Room::announce`], with `in_item` (reason, actor) in each item.
    fn announce_with(&self, nick: &str, in_item: &[Element]) -> Vec<Out> {
        let mut out = self.announce(nick, &[]);
        for o in &mut out {
            let (Out::One(p) | Out::Many(p, _)) = o;
            if let Some(item) = p
                .get_child_mut("x", ns::MUC_USER)
                .and_then(|x| x.get_child_mut("item", ns::MUC_USER))
            {
                for e in in_item {
                    item.push(e.clone());
                }
            }
        }
        out
    }
}

const REQUEST: &str = "http://jabber.org/protocol/muc#request";

/// The values of a data form's fields, by `var` (the first value of each).
fn form_values(form: &Element) -> std::collections::HashMap<String, String> {
    form.elements()
        .filter(|f| f.name == "field")
        .filter_map(|f| {
            let var = f.get_attr("var")?.to_string();
            let value = f
                .get_child("value", ns::DATA)
                .map(|v| v.text_content())
                .unwrap_or_default();
            Some((var, value))
        })
        .collect()
}

/// Whether a message carries a voice request or a moderator's answer to one (§7.13, §8.6):
/// a `muc#request` form.
pub fn is_voice_form(message: &Element) -> bool {
    message
        .get_child("x", ns::DATA)
        .is_some_and(|x| form_values(x).get("FORM_TYPE").map(String::as_str) == Some(REQUEST))
}

fn form_field(var: &str, kind: &str, label: &str, value: &str) -> Element {
    Element::new("field", ns::DATA)
        .attr("var", var)
        .attr("type", kind)
        .attr("label", label)
        .child(Element::new("value", ns::DATA).text(value))
}

impl Room {
    /// A `muc#request` form from `jid`: a visitor asking for voice (the form goes to every
    /// moderator to approve, §7.13), or a moderator's answer (approved: the occupant named
    /// gets voice, §8.6).
    pub fn voice_form(&mut self, jid: &str, message: &Element) -> Result<Vec<Out>, StanzaError> {
        let form = message.get_child("x", ns::DATA).expect("checked by is_voice_form");
        let values = form_values(form);
        let Some(asker) = self.occupant(jid).cloned() else {
            return Err(StanzaError::not_acceptable().with_text("only occupants may ask for voice"));
        };
        if form.get_attr("type") == Some("submit") && values.contains_key("muc#request_allow") {
            if asker.role != Role::Moderator {
                return Err(StanzaError::forbidden().with_text("only moderators answer voice requests"));
            }
            let allowed = matches!(values["muc#request_allow"].as_str(), "1" | "true");
            let nick = values.get("muc#roomnick").cloned().unwrap_or_default();
            if !allowed {
                return Ok(Vec::new());
            }
            let voice = Change::Role {
                nick,
                role: Some(Role::Participant),
                reason: None,
            };
            return self.change(jid, vec![voice]);
        }
        if asker.role != Role::Visitor {
            return Err(StanzaError::not_acceptable().with_text("you already have voice"));
        }
        let request = Element::new("x", ns::DATA)
            .attr("type", "form")
            .child(Element::new("title", ns::DATA).text("Voice request"))
            .child(form_field("FORM_TYPE", "hidden", "", REQUEST))
            .child(form_field("muc#role", "list-single", "Requested role", "participant"))
            .child(form_field("muc#jid", "jid-single", "User ID", &asker.jid))
            .child(form_field("muc#roomnick", "text-single", "Room nickname", &asker.nick))
            .child(form_field(
                "muc#request_allow",
                "boolean",
                "Grant voice to this person?",
                "false",
            ));
        let moderators: Vec<String> = self
            .occupants()
            .iter()
            .filter(|o| o.role == Role::Moderator)
            .map(|o| o.jid.clone())
            .collect();
        if moderators.is_empty() {
            return Err(StanzaError::service_unavailable().with_text("no moderator is in the room"));
        }
        let message = Element::new("message", NS_CLIENT)
            .attr("from", self.jid.as_str())
            .child(request);
        Ok(vec![Out::Many(message, moderators)])
    }
}

/// An item's `<reason/>` and `<actor nick/>`, as the presence about a change carries them.
fn item_extras(reason: Option<&str>, actor: Option<&str>) -> Vec<Element> {
    let mut extras = Vec::new();
    if let Some(nick) = actor {
        extras.push(Element::new("actor", ns::MUC_USER).attr("nick", nick));
    }
    if let Some(reason) = reason {
        extras.push(Element::new("reason", ns::MUC_USER).text(reason));
    }
    extras
}

/// The changes a `muc#admin` set asks for; `bad-request` for an item that names neither
/// a known role with a nick nor a known affiliation with a JID.
fn parse(query: &Element) -> Result<Vec<Change>, StanzaError> {
    let items: Vec<&Element> = query.elements().filter(|e| e.name == "item").collect();
    if items.is_empty() || items.len() > MAX_ITEMS {
        return Err(StanzaError::bad_request().with_text("one to 100 items"));
    }
    let bad = |why: &str| StanzaError::bad_request().with_text(why.to_string());
    items
        .into_iter()
        .map(|item| {
            let reason = item
                .get_child("reason", ns::MUC_ADMIN)
                .map(|r| r.text_content())
                .filter(|r| r.len() <= 1024);
            if let Some(affiliation) = item.get_attr("affiliation") {
                let affiliation = Affiliation::parse(affiliation).ok_or_else(|| bad("no such affiliation"))?;
                let jid = item
                    .get_attr("jid")
                    .and_then(crate::bare_jid)
                    .ok_or_else(|| bad("an affiliation change needs a valid jid"))?;
                return Ok(Change::Affiliation {
                    jid,
                    affiliation,
                    reason,
                });
            }
            let role = match item.get_attr("role") {
                Some("none") => None,
                Some(r) => Some(Role::parse(r).ok_or_else(|| bad("no such role"))?),
                None => return Err(bad("an item needs a role or an affiliation")),
            };
            let nick = item
                .get_attr("nick")
                .ok_or_else(|| bad("a role change needs a nick"))?
                .to_string();
            Ok(Change::Role { nick, role, reason })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use poolxmpp_sdk::Condition;

    use super::*;
    use crate::config::Config;
    use crate::testing::{codes, join};

    const ROOM: &str = "lounge@conference.l";

    fn join_with_password(password: &str) -> Element {
        Element::new("presence", NS_CLIENT)
            .child(Element::new("x", ns::MUC).child(Element::new("password", ns::MUC).text(password)))
    }

    fn room_with(config: Config) -> Room {
        let mut room = Room::new(ROOM, "alice@l/a", "salt".into());
        room.enter("alice@l/a", "Alice", &join(), true, 0).unwrap();
        room.unlock();
        room.configure(config);
        room.take_dirty();
        room
    }

    fn query(items: &str) -> Element {
        Element::parse(&format!("<query xmlns='{}'>{items}</query>", ns::MUC_ADMIN)).unwrap()
    }

    fn to<'a>(out: &'a [Out], jid: &str) -> Vec<&'a Element> {
        out.iter()
            .filter_map(|o| match o {
                Out::One(e) if e.get_attr("to") == Some(jid) => Some(e),
                Out::Many(e, to) if to.iter().any(|t| t == jid) => Some(e),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_moderator_kicks_with_307_and_a_reason_and_a_participant_may_not() {
        let mut room = room_with(Config::default());
        room.presence("bob@l/b", "Bob", &join(), 0).unwrap();
        let refused = room
            .admin_set("bob@l/b", &query("<item nick='Alice' role='none'/>"))
            .unwrap_err();
        assert_eq!(refused.condition, Condition::Forbidden);
        let out = room
            .admin_set(
                "alice@l/a",
                &query("<item nick='Bob' role='none'><reason>spam</reason></item>"),
            )
            .unwrap();
        let to_bob = to(&out, "bob@l/b");
        assert_eq!(to_bob.len(), 1, "{out:?}");
        assert_eq!(to_bob[0].get_attr("type"), Some("unavailable"));
        assert_eq!(codes(to_bob[0]), ["307", "110"]);
        assert!(to_bob[0].to_xml().contains("spam"), "the reason is told");
        assert_eq!(codes(to(&out, "alice@l/a")[0]), ["307"]);
        assert!(room.occupant("bob@l/b").is_none());
        assert!(room.take_dirty().occupants.contains("bob@l/b"), "the kick is stored");
    }

    #[test]
    fn a_kick_or_voice_change_reaches_every_session_of_the_nickname() {
        let mut room = room_with(Config::default());
        room.presence("bob@l/b", "Bob", &join(), 0).unwrap();
        room.presence("bob@l/phone", "Bob", &join(), 0).unwrap();
        let out = room
            .admin_set("alice@l/a", &query("<item nick='Bob' role='visitor'/>"))
            .unwrap();
        for session in ["bob@l/b", "bob@l/phone"] {
            let own = to(&out, session);
            assert_eq!(own.len(), 1, "{session}: {out:?}");
            assert!(own[0].to_xml().contains("role='visitor'"), "{}", own[0].to_xml());
        }
        assert_eq!(to(&out, "alice@l/a").len(), 1, "Alice sees one Bob: {out:?}");
        let listed = room.admin_get("alice@l/a", &query("<item role='visitor'/>")).unwrap();
        assert_eq!(listed.elements().count(), 1, "one occupant in the list");
        let out = room
            .admin_set("alice@l/a", &query("<item nick='Bob' role='none'/>"))
            .unwrap();
        for session in ["bob@l/b", "bob@l/phone"] {
            assert_eq!(codes(to(&out, session)[0]), ["307", "110"], "{session}");
        }
        assert_eq!(to(&out, "alice@l/a").len(), 1);
        assert!(room.occupant("bob@l/phone").is_none() && room.occupant("bob@l/b").is_none());
    }

    #[test]
    fn a_ban_removes_with_301_and_keeps_the_user_out() {
        let mut room = room_with(Config::default());
        room.presence("bob@l/b", "Bob", &join(), 0).unwrap();
        let out = room
            .admin_set("alice@l/a", &query("<item affiliation='outcast' jid='bob@l'/>"))
            .unwrap();
        assert_eq!(codes(to(&out, "bob@l/b")[0]), ["301", "110"]);
        let err = room.presence("bob@l/other", "Bobby", &join(), 0).unwrap_err();
        assert_eq!(err.condition, Condition::Forbidden);
        let list = room
            .admin_get("alice@l/a", &query("<item affiliation='outcast'/>"))
            .unwrap();
        assert_eq!(list.elements().count(), 1);
        assert!(room.take_dirty().room, "the ban is stored");
    }

    #[test]
    fn members_only_rooms_let_in_members_and_tell_users_who_are_not_present() {
        let mut room = room_with(Config {
            members_only: true,
            ..Config::default()
        });
        let err = room.presence("carol@l/c", "Carol", &join(), 0).unwrap_err();
        assert_eq!(err.condition, Condition::RegistrationRequired);
        let out = room
            .admin_set("alice@l/a", &query("<item affiliation='member' jid='Carol@L'/>"))
            .unwrap();
        let told = to(&out, "carol@l");
        assert_eq!(told.len(), 1, "a user not in the room is told by message: {out:?}");
        assert_eq!(told[0].name, "message");
        assert_eq!(codes(told[0]), ["101"]);
        room.presence("carol@l/c", "Carol", &join(), 0).unwrap();
        // Revoked: she leaves with 321.
        let out = room
            .admin_set("alice@l/a", &query("<item affiliation='none' jid='carol@l'/>"))
            .unwrap();
        assert_eq!(codes(to(&out, "carol@l/c")[0]), ["321", "110"]);
    }

    #[test]
    fn in_a_moderated_room_visitors_need_voice() {
        let mut room = room_with(Config {
            moderated: true,
            ..Config::default()
        });
        room.presence("bob@l/b", "Bob", &join(), 0).unwrap();
        assert_eq!(room.occupant("bob@l/b").unwrap().role, Role::Visitor);
        let m = Element::new("message", NS_CLIENT)
            .attr("type", "groupchat")
            .child(Element::new("body", NS_CLIENT).text("hi"));
        let err = room.groupchat("bob@l/b", &m, "", 0).unwrap_err();
        assert_eq!(err.condition, Condition::Forbidden);
        room.admin_set("alice@l/a", &query("<item nick='Bob' role='participant'/>"))
            .unwrap();
        assert!(room.groupchat("bob@l/b", &m, "", 0).is_ok());
        let voiced = room
            .admin_get("alice@l/a", &query("<item role='participant'/>"))
            .unwrap();
        assert_eq!(voiced.elements().count(), 1);
    }

    #[test]
    fn a_password_protected_room_needs_the_password() {
        let mut room = room_with(Config {
            password: Some("s3cret".into()),
            ..Config::default()
        });
        let err = room.presence("bob@l/b", "Bob", &join(), 0).unwrap_err();
        assert_eq!(err.condition, Condition::NotAuthorized);
        let err = room
            .presence("bob@l/b", "Bob", &join_with_password("guess"), 0)
            .unwrap_err();
        assert_eq!(err.condition, Condition::NotAuthorized);
        assert!(room
            .presence("bob@l/b", "Bob", &join_with_password("s3cret"), 0)
            .is_ok());
    }

    #[test]
    fn the_last_owner_stays_and_admins_cannot_touch_owners() {
        let mut room = room_with(Config::default());
        let err = room
            .admin_set("alice@l/a", &query("<item affiliation='member' jid='alice@l'/>"))
            .unwrap_err();
        assert_eq!(err.condition, Condition::Conflict);
        room.admin_set("alice@l/a", &query("<item affiliation='admin' jid='bob@l'/>"))
            .unwrap();
        let err = room
            .admin_set("bob@l/b", &query("<item affiliation='outcast' jid='alice@l'/>"))
            .unwrap_err();
        assert_eq!(err.condition, Condition::NotAllowed);
        // One bad item refuses the request: nothing of it applies.
        let err = room
            .admin_set(
                "alice@l/a",
                &query("<item affiliation='member' jid='carol@l'/><item affiliation='bogus' jid='dave@l'/>"),
            )
            .unwrap_err();
        assert_eq!(err.condition, Condition::BadRequest);
        assert_eq!(room.affiliation_of("carol@l"), Affiliation::None);
    }

    #[test]
    fn configuration_changes_are_announced_and_members_only_sends_outsiders_away() {
        let mut room = room_with(Config::default());
        room.presence("bob@l/b", "Bob", &join(), 0).unwrap();
        let out = room.configure(Config {
            members_only: true,
            whois: crate::config::Whois::Anyone,
            ..Config::default()
        });
        assert_eq!(codes(to(&out, "bob@l/b")[0]), ["322", "110"]);
        let notice = to(&out, "alice@l/a").into_iter().find(|e| e.name == "message").unwrap();
        assert_eq!(codes(notice), ["104", "172"]);
    }

    #[test]
    fn a_destroyed_room_tells_everyone_the_reason_and_the_venue() {
        let mut room = room_with(Config::default());
        room.presence("bob@l/b", "Bob", &join(), 0).unwrap();
        let destroy = Element::parse(&format!(
            "<destroy xmlns='{}' jid='new@conference.l'><reason>moved</reason></destroy>",
            ns::MUC_OWNER
        ))
        .unwrap();
        let out = room.destroy(&destroy);
        assert_eq!(out.len(), 2);
        let told = to(&out, "bob@l/b")[0].to_xml();
        assert!(told.contains("new@conference.l") && told.contains("moved"), "{told}");
        assert!(room.is_empty());
    }

    #[test]
    fn a_visitor_asks_for_voice_and_a_moderator_grants_it() {
        let mut room = room_with(Config {
            moderated: true,
            ..Config::default()
        });
        room.presence("bob@l/b", "Bob", &join(), 0).unwrap();
        let ask = Element::parse(&format!(
            "<message xmlns='jabber:client'><x xmlns='{}' type='submit'><field var='FORM_TYPE'><value>{REQUEST}</value></field><field var='muc#role'><value>participant</value></field></x></message>",
            ns::DATA
        ))
        .unwrap();
        assert!(is_voice_form(&ask));
        let out = room.voice_form("bob@l/b", &ask).unwrap();
        let forwarded = to(&out, "alice@l/a");
        assert_eq!(forwarded.len(), 1, "to the moderator: {out:?}");
        assert!(forwarded[0].to_xml().contains("Bob"));
        let answer = Element::parse(&format!(
            "<message xmlns='jabber:client'><x xmlns='{}' type='submit'><field var='FORM_TYPE'><value>{REQUEST}</value></field><field var='muc#roomnick'><value>Bob</value></field><field var='muc#request_allow'><value>true</value></field></x></message>",
            ns::DATA
        ))
        .unwrap();
        assert_eq!(
            room.voice_form("bob@l/b", &answer).unwrap_err().condition,
            Condition::Forbidden,
            "a visitor cannot answer its own request"
        );
        room.voice_form("alice@l/a", &answer).unwrap();
        assert_eq!(room.occupant("bob@l/b").unwrap().role, Role::Participant);
    }
}
