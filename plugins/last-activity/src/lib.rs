//! XEP-0012 last activity, answered by the server.
//!
//! - To a hosted domain: the server's uptime (§6), the seconds since this node started.
//! - To an account's bare JID (§4, offline user query): `seconds='0'` while the account
//!   has an available resource on any node of the pool; otherwise the seconds since its
//!   last resource went offline, with the status of that unavailable presence as text.
//!   Only the account itself and contacts allowed to see its presence (a `from` or `both`
//!   subscription) are told; others get `forbidden`. An account never seen offline gets
//!   `item-not-found`.
//!
//! The logout times come from the `user-offline` event and live in storage under
//! `last/<bare jid>`, which every node of a pool shares: a user who logs out on one node
//! is answered for on any other. Queries to a full JID are the client's to answer.

use poolxmpp_sdk::host::{self, Subscription};
use poolxmpp_sdk::{
    iq_result, jid, now_ms, send, storage, Config, Element, Event, Feature, IqType, Stanza, StanzaError, StanzaType,
    NS_CLIENT,
};
use serde::{Deserialize, Serialize};

pub const NS_LAST: &str = "jabber:iq:last";

/// What is kept of a user's last logout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastSeen {
    /// When the resource went offline, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The status of its unavailable presence, if it had one.
    pub status: Option<String>,
}

fn key(bare: &str) -> String {
    format!("last/{}", jid::normalize_bare(bare))
}

pub struct LastActivity;

impl LastActivity {
    fn uptime(&self) -> Element {
        let seconds = now_ms().saturating_sub(host::started_ms()) / 1000;
        Element::new("query", NS_LAST).attr("seconds", seconds.to_string())
    }

    fn of_user(&self, requester: &str, user: &str) -> Result<Element, StanzaError> {
        if !jid::same_bare(requester, user) && !may_see_presence(user, requester) {
            return Err(StanzaError::forbidden());
        }
        if host::resources(user).iter().any(|r| r.presence.is_some()) {
            return Ok(Element::new("query", NS_LAST).attr("seconds", "0"));
        }
        let Some(last) = storage::get_json::<LastSeen>(&key(user))? else {
            return Err(StanzaError::item_not_found().with_text("no last activity recorded for this account"));
        };
        let seconds = now_ms().saturating_sub(last.at_ms) / 1000;
        let mut query = Element::new("query", NS_LAST).attr("seconds", seconds.to_string());
        if let Some(status) = last.status {
            query = query.text(status);
        }
        Ok(query)
    }

    fn went_offline(&self, jid_: &str, presence: &str) {
        let status = Element::parse(presence)
            .ok()
            .and_then(|p| p.get_child("status", NS_CLIENT).map(Element::text_content))
            .filter(|s| !s.is_empty());
        let last = LastSeen {
            at_ms: now_ms(),
            status,
        };
        if let Err(e) = storage::put_json(&key(jid::bare(jid_)), &last) {
            poolxmpp_sdk::warn!("cannot record the last activity of {jid_}: {e}");
        }
    }
}

/// RFC 6121 §3: `viewer` sees `user`'s presence when `user`'s roster gives it a `from`
/// or `both` subscription.
fn may_see_presence(user: &str, viewer: &str) -> bool {
    host::roster_item(user, jid::bare(viewer))
        .is_some_and(|i| matches!(i.subscription, Subscription::From | Subscription::Both))
}

impl Feature for LastActivity {
    fn init(_config: &Config) -> Result<Self, String> {
        Ok(LastActivity)
    }

    fn handle_stanza(&mut self, stanza: Stanza) -> Result<(), StanzaError> {
        if !stanza.is_request() {
            return Ok(());
        }
        let payload = stanza.payload()?.ok_or_else(StanzaError::bad_request)?;
        if !payload.is("query", NS_LAST) {
            return Err(StanzaError::service_unavailable());
        }
        if stanza.type_ != StanzaType::Iq(IqType::Get) {
            return Err(StanzaError::not_allowed());
        }
        let to = stanza.to_bare().unwrap_or(stanza.from_bare());
        let query = match jid::node(to) {
            None => self.uptime(),
            Some(_) => self.of_user(stanza.from_bare(), to)?,
        };
        send(&iq_result(&stanza, Some(query))).map_err(|e| {
            poolxmpp_sdk::warn!("cannot answer a last activity query: {e}");
            StanzaError::internal_server_error()
        })
    }

    fn on_event(&mut self, event: Event) {
        if let Event::UserOffline(user) = event {
            self.went_offline(&user.jid, &user.presence);
        }
    }
}

poolxmpp_sdk::export_feature!(LastActivity);

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use poolxmpp_sdk::host::ResourcePresence;
    use poolxmpp_sdk::{testing, Condition, UserPresence};

    fn query(from: &str, to: &str) -> Result<Element, StanzaError> {
        let iq = format!("<iq from='{from}' to='{to}' type='get' id='l1'><query xmlns='{NS_LAST}'/></iq>");
        LastActivity.handle_stanza(Stanza::from_xml(&iq).unwrap())?;
        let mut sent = testing::take_sent();
        assert_eq!(sent.len(), 1);
        Ok(sent.remove(0).get_child("query", NS_LAST).unwrap().clone())
    }

    fn offline(jid: &str, presence: &str) {
        LastActivity.on_event(Event::UserOffline(UserPresence {
            jid: jid.into(),
            presence: presence.into(),
            features: Vec::new(),
        }));
    }

    #[test]
    fn uptime_of_the_server() {
        testing::reset();
        testing::with_host(|h| {
            h.started_ms = 1_000_000;
            h.now_ms = 1_042_500;
        });
        assert_eq!(query("a@l/r", "l").unwrap().get_attr("seconds"), Some("42"));
    }

    #[test]
    fn a_contacts_last_logout_with_its_status() {
        testing::reset();
        testing::set_roster("alice@l", &["bob@l"]);
        testing::with_host(|h| h.now_ms = 10_000);
        offline(
            "alice@l/phone",
            "<presence xmlns='jabber:client' type='unavailable'><status>gone fishing</status></presence>",
        );
        testing::with_host(|h| h.now_ms = 75_000);
        let q = query("bob@l/r", "alice@l").unwrap();
        assert_eq!(q.get_attr("seconds"), Some("65"));
        assert_eq!(q.text_content(), "gone fishing");
        // Strangers are refused; an account never seen offline is not found.
        assert_eq!(query("eve@l/r", "alice@l").unwrap_err().condition, Condition::Forbidden);
        testing::set_roster("carol@l", &["bob@l"]);
        assert_eq!(
            query("bob@l/r", "carol@l").unwrap_err().condition,
            Condition::ItemNotFound
        );
    }

    #[test]
    fn online_is_zero_seconds() {
        testing::reset();
        testing::set_roster("alice@l", &["bob@l"]);
        offline("alice@l/old", "<presence xmlns='jabber:client' type='unavailable'/>");
        testing::with_host(|h| {
            h.now_ms = 99_000;
            h.resources.insert(
                "alice@l".into(),
                vec![ResourcePresence {
                    jid: "alice@l/phone".into(),
                    presence: Some("<presence xmlns='jabber:client'/>".into()),
                    priority: 0,
                    features: Vec::new(),
                }],
            );
        });
        assert_eq!(query("bob@l/r", "alice@l").unwrap().get_attr("seconds"), Some("0"));
    }
}
