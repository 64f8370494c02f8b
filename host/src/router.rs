//! Where a stanza goes, decided once (DESIGN §2): the server itself, a local session, the
//! offline store, or an error back to the sender. Presence is delegated to [`presence`],
//! roster IQs to [`roster`], server-answered IQs to [`iq`].
//!
//! Delivery follows RFC 6121 §8.5: full JIDs go to that resource if it is bound; bare JIDs
//! (and full JIDs of absent resources, for messages) go to the highest-priority available
//! resources, or to offline storage.

use std::sync::Arc;

use jid::Jid;

use crate::c2s::Bound;
use crate::server::Server;
use crate::stanza::{error_reply, may_bounce, Condition, Kind};
use crate::xml::{Element, NS_CLIENT};
use crate::{iq, presence};

/// What the router made of a `to` address.
pub enum Target {
    /// Addressed to a hosted domain itself (or, for IQs, to no one: the server answers).
    Server,
    /// A local account, bare or full.
    Local { bare: String, resource: Option<String> },
    /// A domain we do not host. Without server-to-server links this is unreachable.
    Remote,
}

pub fn target(server: &Server, to: &Jid) -> Target {
    let domain = to.domain().as_str();
    if !server.hosts(domain) {
        return Target::Remote;
    }
    match to.node() {
        None => Target::Server,
        Some(_) => Target::Local {
            bare: to.to_bare().to_string(),
            resource: to.resource().map(|r| r.to_string()),
        },
    }
}

/// Route a stanza sent by a bound local client; `from` is already stamped.
pub async fn route_from_client(server: &Arc<Server>, client: &mut Bound, stanza: Element) {
    let Some(kind) = Kind::of(&stanza) else { return };
    let to = match stanza.get_attr("to").map(Jid::new) {
        None => None,
        Some(Ok(jid)) => Some(jid),
        Some(Err(_)) => {
            bounce(server, &stanza, Condition::JidMalformed, None);
            return;
        }
    };
    match kind {
        Kind::Presence => presence::outbound(server, client, stanza, to).await,
        Kind::Iq => match to.as_ref().map(|to| target(server, to)) {
            None => iq::handle_for_account(server, client, stanza).await,
            Some(Target::Local { bare, resource: None }) if bare == client.bare => {
                iq::handle_for_account(server, client, stanza).await
            }
            Some(Target::Server) => iq::handle_for_server(server, client, stanza).await,
            Some(Target::Local { bare, resource }) => deliver_iq(server, &bare, resource.as_deref(), stanza).await,
            Some(Target::Remote) => bounce(server, &stanza, Condition::RemoteServerNotFound, None),
        },
        Kind::Message => {
            let to = to.unwrap_or_else(|| Jid::from(client.jid.to_bare()));
            match target(server, &to) {
                Target::Local { bare, resource } => deliver_message(server, &bare, resource.as_deref(), stanza).await,
                // Messages to the server itself have no handler yet; RFC 6121 §8.5.1 lets us
                // ignore them, but an error is more helpful to a sender expecting a reply.
                Target::Server => bounce(server, &stanza, Condition::ServiceUnavailable, None),
                Target::Remote => bounce(server, &stanza, Condition::RemoteServerNotFound, None),
            }
        }
    }
}

/// Send an error reply for `original` back to its sender, unless the stanza must not be
/// answered with an error.
pub fn bounce(server: &Server, original: &Element, condition: Condition, text: Option<&str>) {
    if !may_bounce(original) {
        return;
    }
    let reply = error_reply(original, condition, text);
    deliver_to_full(server, &reply);
}

/// Deliver a server-generated stanza to the full JID in its `to`, if that session exists.
pub fn deliver_to_full(server: &Server, stanza: &Element) {
    let Some(to) = stanza.get_attr("to").and_then(|t| Jid::new(t).ok()) else {
        return;
    };
    let Some(resource) = to.resource() else { return };
    if let Some(r) = server.sessions.resource(&to.to_bare().to_string(), resource.as_str()) {
        r.send(Arc::new(stanza.clone()));
    }
}

/// RFC 6121 §8.5.2 / §8.5.3 for `<message/>`.
pub async fn deliver_message(server: &Arc<Server>, bare: &str, resource: Option<&str>, stanza: Element) {
    let msg_type = stanza.get_attr("type").unwrap_or("normal").to_string();
    if let Some(resource) = resource {
        if let Some(r) = server.sessions.resource(bare, resource) {
            r.send(Arc::new(stanza));
            return;
        }
        // §8.5.3.2.1: an absent resource is treated like the bare JID, except groupchat.
        if msg_type == "groupchat" {
            bounce(server, &stanza, Condition::ServiceUnavailable, None);
            return;
        }
    }
    let resources = server.sessions.resources(bare);
    let max_priority = resources
        .iter()
        .filter(|r| r.available() && r.priority >= 0)
        .map(|r| r.priority)
        .max();
    if let Some(max) = max_priority {
        let stanza = Arc::new(stanza);
        match msg_type.as_str() {
            // Headlines go to every non-negative resource (§8.5.2.1.1).
            "headline" => {
                for r in resources.iter().filter(|r| r.available() && r.priority >= 0) {
                    r.send(stanza.clone());
                }
            }
            "groupchat" => {
                bounce(server, &stanza, Condition::ServiceUnavailable, None);
            }
            _ => {
                // Chat, normal and error: every resource sharing the highest priority.
                for r in resources.iter().filter(|r| r.available() && r.priority == max) {
                    r.send(stanza.clone());
                }
            }
        }
        return;
    }
    match msg_type.as_str() {
        "headline" | "error" => {}
        "groupchat" => bounce(server, &stanza, Condition::ServiceUnavailable, None),
        _ => store_offline(server, bare, stanza).await,
    }
}

async fn store_offline(server: &Arc<Server>, bare: &str, stanza: Element) {
    match server.store.account_exists(bare).await {
        Ok(true) => {}
        Ok(false) => return bounce(server, &stanza, Condition::ServiceUnavailable, None),
        Err(e) => {
            tracing::error!(error = %e, "account lookup failed");
            return bounce(server, &stanza, Condition::InternalServerError, None);
        }
    }
    // Only messages worth keeping: something a person reads (XEP-0160 §3).
    let keep = stanza.elements().any(|c| c.name == "body" || c.name == "subject")
        || stanza.elements().any(|c| c.ns != NS_CLIENT);
    if !keep {
        return;
    }
    let quota = server.config.limits.offline_quota;
    match server.store.store_offline(bare, &stanza.to_stream_xml(), quota).await {
        Ok(true) => {}
        Ok(false) => bounce(
            server,
            &stanza,
            Condition::ResourceConstraint,
            Some("offline storage is full"),
        ),
        Err(e) => {
            tracing::error!(error = %e, "storing an offline message failed");
            bounce(server, &stanza, Condition::InternalServerError, None);
        }
    }
}

/// RFC 6121 §8.5.2.1.3 / §8.5.3.1 for `<iq/>` addressed to another account.
async fn deliver_iq(server: &Arc<Server>, bare: &str, resource: Option<&str>, stanza: Element) {
    match resource {
        Some(resource) => match server.sessions.resource(bare, resource) {
            Some(r) => {
                r.send(Arc::new(stanza));
            }
            None => bounce(server, &stanza, Condition::ServiceUnavailable, None),
        },
        // The server answers IQs to a bare JID on the account's behalf (§8.5.2.1.3).
        None => iq::handle_for_other_account(server, bare, stanza).await,
    }
}
