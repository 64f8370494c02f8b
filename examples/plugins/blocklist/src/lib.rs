//! A minimal XEP-0191 blocking command as one `feature-filter` component: the feature
//! answers `<blocklist/>` gets and `<block/>`/`<unblock/>` sets (stored per user, and the
//! user put in or out of the filter's interest set), and the filter enforces the lists:
//! a stanza from a blocked JID to the user is refused (`service-unavailable`, presence
//! dropped), one from the user to a blocked JID `not-acceptable`. The full privacy lists
//! plugin (XEP-0016 with XEP-0191 on top) is issue 15; this shows the shape.
//!
//! The lists are cached in the instance's memory, so a check costs no storage read: the
//! cache is updated by this instance's own changes, and the host's `rules-changed` event
//! says when another node changed a user's list (or that changes may have been missed).

use std::collections::HashMap;

use poolxmpp_sdk::{
    interest, iq_result, jid, send, storage, Config, Direction, Element, Event, Feature, Filter, IqType, Stanza,
    StanzaError, StanzaType, Verdict,
};

const NS_BLOCKING: &str = "urn:xmpp:blocking";

/// Users whose lists are cached at most; past it the cache starts again (the store
/// has every list).
const MAX_CACHED: usize = 100_000;

#[derive(Default)]
pub struct Blocklist {
    /// The bare JIDs each user blocks, as stored.
    cache: HashMap<String, Vec<String>>,
}

fn list_key(user: &str) -> String {
    format!("blocked/{user}")
}

impl Blocklist {
    /// The bare JIDs `user` blocks: cached, else read from the store.
    fn blocked(&mut self, user: &str) -> Result<Vec<String>, storage::StorageError> {
        if let Some(list) = self.cache.get(user) {
            return Ok(list.clone());
        }
        let list: Vec<String> = storage::get_string(&list_key(user))?
            .map(|s| s.lines().map(str::to_string).collect())
            .unwrap_or_default();
        self.remember(user, list.clone());
        Ok(list)
    }

    fn remember(&mut self, user: &str, list: Vec<String>) {
        if self.cache.len() >= MAX_CACHED {
            self.cache.clear();
        }
        self.cache.insert(user.to_string(), list);
    }

    /// Whether `user` blocks `other`, without copying the list.
    fn blocks(&mut self, user: &str, other: &str) -> Result<bool, storage::StorageError> {
        if !self.cache.contains_key(user) {
            self.blocked(user)?;
        }
        Ok(self.cache.get(user).is_some_and(|l| l.iter().any(|j| j == other)))
    }

    fn store(&mut self, user: &str, list: Vec<String>) -> Result<(), StanzaError> {
        if list.is_empty() {
            storage::delete(&list_key(user))?;
        } else {
            storage::put_string(&list_key(user), &list.join("\n"))?;
        }
        interest::set(user, !list.is_empty())?;
        self.remember(user, list);
        Ok(())
    }

    fn answer(&mut self, stanza: &Stanza) -> Result<(), StanzaError> {
        let user = stanza.from_bare().to_string();
        let payload = stanza.payload()?.ok_or_else(StanzaError::bad_request)?;
        let items = || -> Vec<String> {
            payload
                .elements()
                .filter(|e| e.name == "item")
                .filter_map(|e| e.get_attr("jid").map(jid::normalize_bare))
                .collect()
        };
        let reply = match (stanza.type_, payload.name.as_str()) {
            (StanzaType::Iq(IqType::Get), "blocklist") => {
                let mut list = Element::new("blocklist", NS_BLOCKING);
                for j in self.blocked(&user)? {
                    list = list.child(Element::new("item", NS_BLOCKING).attr("jid", j.as_str()));
                }
                iq_result(stanza, Some(list))
            }
            (StanzaType::Iq(IqType::Set), "block") => {
                let add = items();
                if add.is_empty() {
                    return Err(StanzaError::bad_request().with_text("block needs at least one item"));
                }
                let mut list = self.blocked(&user)?;
                for j in add {
                    if !list.contains(&j) {
                        list.push(j);
                    }
                }
                self.store(&user, list)?;
                iq_result(stanza, None)
            }
            (StanzaType::Iq(IqType::Set), "unblock") => {
                let remove = items();
                let list: Vec<String> = match remove.is_empty() {
                    true => Vec::new(), // no items: unblock everyone
                    false => self
                        .blocked(&user)?
                        .into_iter()
                        .filter(|j| !remove.contains(j))
                        .collect(),
                };
                self.store(&user, list)?;
                iq_result(stanza, None)
            }
            _ => return Err(StanzaError::bad_request()),
        };
        send(&reply).map_err(|_| StanzaError::internal_server_error())
    }
}

impl Feature for Blocklist {
    fn init(_config: &Config) -> Result<Self, String> {
        Ok(Blocklist::default())
    }

    fn handle_stanza(&mut self, stanza: Stanza) -> Result<(), StanzaError> {
        if !stanza.is_request() {
            return Ok(());
        }
        self.answer(&stanza)
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::RulesChanged(Some(user)) => {
                self.cache.remove(&user);
            }
            Event::RulesChanged(None) => self.cache.clear(),
            _ => {}
        }
    }
}

impl Filter for Blocklist {
    /// Not called in a `feature-filter` component: `Feature::init` made the instance.
    fn init(config: &Config) -> Result<Self, String> {
        <Blocklist as Feature>::init(config)
    }

    fn check(&mut self, direction: Direction, stanza: Stanza) -> Verdict {
        if stanza.is_error() {
            return Verdict::Allow; // never answer an error with an error
        }
        let from = stanza.from_bare().to_string();
        let to = stanza
            .to
            .as_deref()
            .map(jid::normalize_bare)
            .unwrap_or_else(|| from.clone());
        let (user, other) = match direction {
            Direction::Outbound => (&from, &to),
            Direction::Inbound => (&to, &from),
        };
        // A store that cannot be read must not let a blocked stanza through.
        match self.blocks(user, other) {
            Ok(false) => return Verdict::Allow,
            Ok(true) => {}
            Err(_) => return Verdict::Bounce(StanzaError::service_unavailable()),
        }
        match (direction, stanza.type_) {
            (Direction::Outbound, _) => Verdict::Bounce(StanzaError::not_acceptable()),
            (Direction::Inbound, StanzaType::Presence(_)) => Verdict::Drop,
            (Direction::Inbound, _) => Verdict::Bounce(StanzaError::service_unavailable()),
        }
    }
}

poolxmpp_sdk::export_feature_filter!(Blocklist);

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use poolxmpp_sdk::testing;

    fn iq(body: &str) -> Stanza {
        Stanza::from_xml(&format!(
            "<iq from='alice@l/r' to='alice@l' type='set' id='b1'>{body}</iq>"
        ))
        .unwrap()
    }

    fn message(from: &str, to: &str) -> Stanza {
        Stanza::from_xml(&format!(
            "<message from='{from}' to='{to}' type='chat'><body>hi</body></message>"
        ))
        .unwrap()
    }

    #[test]
    fn blocks_both_ways_and_unblocks() {
        testing::reset();
        let mut b = <Blocklist as Feature>::init(&Config::default()).unwrap();
        b.handle_stanza(iq("<block xmlns='urn:xmpp:blocking'><item jid='Bob@l'/></block>"))
            .unwrap();
        assert!(interest::has("alice@l"));
        assert!(matches!(
            b.check(Direction::Inbound, message("bob@l/x", "alice@l")),
            Verdict::Bounce(_)
        ));
        assert!(matches!(
            b.check(Direction::Outbound, message("alice@l/r", "bob@l")),
            Verdict::Bounce(_)
        ));
        assert_eq!(
            b.check(Direction::Inbound, message("carol@l/x", "alice@l")),
            Verdict::Allow
        );
        b.handle_stanza(iq("<unblock xmlns='urn:xmpp:blocking'/>")).unwrap();
        assert!(!interest::has("alice@l"));
        assert_eq!(
            b.check(Direction::Inbound, message("bob@l/x", "alice@l")),
            Verdict::Allow
        );
    }

    #[test]
    fn another_nodes_change_is_seen_after_rules_changed() {
        testing::reset();
        let mut here = <Blocklist as Feature>::init(&Config::default()).unwrap();
        let mut there = <Blocklist as Feature>::init(&Config::default()).unwrap();
        // `there` has alice's (empty) list cached when `here` changes it in the store.
        assert_eq!(
            there.check(Direction::Inbound, message("bob@l/x", "alice@l")),
            Verdict::Allow
        );
        here.handle_stanza(iq("<block xmlns='urn:xmpp:blocking'><item jid='bob@l'/></block>"))
            .unwrap();
        there.on_event(Event::RulesChanged(Some("alice@l".into())));
        assert!(matches!(
            there.check(Direction::Inbound, message("bob@l/x", "alice@l")),
            Verdict::Bounce(_)
        ));
        here.handle_stanza(iq("<unblock xmlns='urn:xmpp:blocking'/>")).unwrap();
        there.on_event(Event::RulesChanged(None));
        assert_eq!(
            there.check(Direction::Inbound, message("bob@l/x", "alice@l")),
            Verdict::Allow
        );
    }
}
