//! XEP-0163 personal eventing (PEP) on the publish-subscribe engine of XEP-0060: every
//! account's bare JID is a pubsub service whose nodes only their owner publishes to.
//!
//! - [`config`]: a node's configuration, its form, publish-options as preconditions;
//! - [`store`]: nodes and items in the plugin's (pool-shared) storage, changed by
//!   compare-and-swap, an item written before it is acknowledged;
//! - [`access`]: who may see a node (access models over the owner's roster);
//! - [`notify`]: who is notified (entity-caps `+notify`, XEP-0163 §4) and of what;
//! - [`service`]: the requests, one function each;
//! - this module: reading a request, the last items for a resource coming online.
//!
//! Nothing lives in an instance's memory, so any node of the pool serves any account and
//! a node's death loses nothing that was acknowledged.

mod access;
mod config;
mod notify;
mod service;
mod store;

use poolxmpp_sdk::host::RosterItem;
use poolxmpp_sdk::{host, jid, log, send, Config, Element, Event, Feature, IqType, Stanza, StanzaError, StanzaType};

use config::SendLast;
pub use service::Pep;
use service::Request;

/// The namespaces this plugin reads and writes.
pub mod ns {
    pub const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
    pub const OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
    pub const EVENT: &str = "http://jabber.org/protocol/pubsub#event";
    pub const ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";
    pub const NODE_CONFIG: &str = "http://jabber.org/protocol/pubsub#node_config";
    pub const PUBLISH_OPTIONS: &str = "http://jabber.org/protocol/pubsub#publish-options";
    pub const DATA: &str = "jabber:x:data";
    pub const DELAY: &str = "urn:xmpp:delay";
    pub const RSM: &str = "http://jabber.org/protocol/rsm";
    pub const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
    pub const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
}

impl Feature for Pep {
    fn init(config: &Config) -> Result<Self, String> {
        Pep::new(config)
    }

    fn handle_stanza(&mut self, stanza: Stanza) -> Result<(), StanzaError> {
        let StanzaType::Iq(type_ @ (IqType::Get | IqType::Set)) = stanza.type_ else {
            return Ok(()); // results and errors are never answered
        };
        // A request without `to` is for the sender's own account (RFC 6120 §10.3.3).
        let owner = stanza.to_bare().unwrap_or(stanza.from_bare()).to_string();
        if jid::node(&owner).is_none() {
            return Err(StanzaError::service_unavailable());
        }
        let payload = stanza.payload()?.ok_or_else(StanzaError::bad_request)?;
        let requester = stanza.from_bare().to_string();
        if type_ == IqType::Get && (payload.ns == ns::DISCO_ITEMS || payload.ns == ns::DISCO_INFO) {
            let answer = service::disco(&owner, &requester, &payload)?;
            send(&poolxmpp_sdk::iq_result(&stanza, Some(answer))).map_err(|_| StanzaError::internal_server_error())?;
            return Ok(());
        }
        let request = Request::read(type_, &payload)?;
        let (answer, after) = self.serve(&owner, &requester, request)?;
        send(&poolxmpp_sdk::iq_result(&stanza, answer)).map_err(|_| StanzaError::internal_server_error())?;
        after.run(&owner);
        Ok(())
    }

    fn on_event(&mut self, event: Event) {
        if let Event::UserOnline(p) = event {
            last_items_for(&p.jid, &p.features);
        }
    }
}

/// XEP-0163 §4.3.4 (`send_last_published_item = on_sub_and_presence`): a resource coming
/// online gets the last item of each node it asks for (`NODE+notify`) of its own account
/// and of every contact whose presence it receives, as far as the node lets it see.
fn last_items_for(full: &str, features: &[String]) {
    let wanted: Vec<&str> = features.iter().filter_map(|f| f.strip_suffix("+notify")).collect();
    if wanted.is_empty() {
        return;
    }
    let user = jid::bare(full).to_string();
    let mut owners = vec![user.clone()];
    owners.extend(
        host::roster_items(&user)
            .into_iter()
            .filter(|i: &RosterItem| matches!(i.subscription, host::Subscription::To | host::Subscription::Both))
            .map(|i| i.jid),
    );
    for owner in owners {
        let names = match store::nodes(&owner) {
            Ok(n) => n,
            Err(_) => continue, // logged by the store
        };
        let mut item_of = None;
        for node in names.iter().filter(|n| wanted.contains(&n.as_str())) {
            let Ok(Some(read)) = store::meta(&owner, node) else {
                continue;
            };
            let c = &read.meta.config;
            if c.send_last_published_item != SendLast::OnSubAndPresence || !c.deliver_notifications {
                continue;
            }
            if owner != user {
                let item = item_of.get_or_insert_with(|| host::roster_item(&owner, &user));
                if !item.as_ref().is_some_and(|i| access::contact_is_notified(c, i)) {
                    continue;
                }
            }
            let Some(last) = read.meta.last() else { continue };
            let Ok(payload) = store::item(&owner, node, &last.id) else {
                continue;
            };
            let payload = payload.and_then(|x| Element::parse(&x).ok());
            let delay = Element::new("delay", ns::DELAY)
                .attr("from", owner.as_str())
                .attr("stamp", poolxmpp_sdk::time::utc(last.published_ms));
            let event = notify::items(node, c, [(last.id.as_str(), payload)]);
            let message = notify::message(&owner, c, event).attr("to", full).child(delay);
            if let Err(e) = send(&message) {
                log::warn(&format!("pubsub: last item of {owner} {node} to {full}: {e:?}"));
            }
        }
    }
}

poolxmpp_sdk::export_feature!(Pep);

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
