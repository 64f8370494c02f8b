//! Notifications (XEP-0060 §7.1.2, §7.2.2, §8.4.2, §8.5.2; XEP-0163 §4): who gets them
//! and what they say. A personal node's notifications go to the full JIDs of the
//! owner's and its notified contacts' available resources that asked for them with
//! `NODE+notify` in their entity capabilities (XEP-0163 §4.2), in one `send-many`.

use poolxmpp_sdk::host::{self, ResourcePresence};
use poolxmpp_sdk::{log, send_many, Element, NS_CLIENT};

use crate::access;
use crate::config::NodeConfig;
use crate::ns;

/// Whether this resource is available and wants notifications of `node`.
pub fn wants(resource: &ResourcePresence, node: &str) -> bool {
    let feature = format!("{node}+notify");
    resource.presence.is_some() && resource.features.binary_search(&feature).is_ok()
}

/// The full JIDs notified of a change to `owner`'s node `node`.
pub fn recipients(owner: &str, node: &str, config: &NodeConfig) -> Vec<String> {
    if !config.deliver_notifications {
        return Vec::new();
    }
    let mut to: Vec<String> = host::resources(owner)
        .into_iter()
        .filter(|r| wants(r, node))
        .map(|r| r.jid)
        .collect();
    for contact in host::roster_items(owner)
        .iter()
        .filter(|i| access::contact_is_notified(config, i))
    {
        to.extend(
            host::resources(&contact.jid)
                .into_iter()
                .filter(|r| wants(r, node))
                .map(|r| r.jid),
        );
    }
    to
}

/// The `<message/>` carrying `event` from `owner`'s account.
pub fn message(owner: &str, config: &NodeConfig, event: Element) -> Element {
    Element::new("message", NS_CLIENT)
        .attr("from", owner)
        .attr("type", config.notification_type.as_str())
        .child(Element::new("event", ns::EVENT).child(event))
}

/// `<items node='…'><item id='…'>payload</item></items>`; payloads left out when the
/// node does not deliver them.
pub fn items<'a>(
    node: &str,
    config: &NodeConfig,
    items: impl IntoIterator<Item = (&'a str, Option<Element>)>,
) -> Element {
    let mut e = Element::new("items", ns::EVENT).attr("node", node);
    for (id, payload) in items {
        let mut item = Element::new("item", ns::EVENT).attr("id", id);
        if let Some(p) = payload.filter(|_| config.deliver_payloads) {
            item.push(p);
        }
        e.push(item);
    }
    e
}

/// `<items node='…'><retract id='…'/></items>`.
pub fn retracted<'a>(node: &str, ids: impl IntoIterator<Item = &'a String>) -> Element {
    let mut e = Element::new("items", ns::EVENT).attr("node", node);
    for id in ids {
        e.push(Element::new("retract", ns::EVENT).attr("id", id.as_str()));
    }
    e
}

/// `<delete/>`, `<purge/>` or `<configuration/>` for `node`.
pub fn about(name: &str, node: &str) -> Element {
    Element::new(name, ns::EVENT).attr("node", node)
}

/// Send `event` about `owner`'s node to its recipients.
pub fn broadcast(owner: &str, node: &str, config: &NodeConfig, event: Element) {
    let to = recipients(owner, node, config);
    if to.is_empty() {
        return;
    }
    if let Err(e) = send_many(&message(owner, config, event), &to) {
        log::warn(&format!("pubsub: notifying {owner} {node}: {e:?}"));
    }
}
