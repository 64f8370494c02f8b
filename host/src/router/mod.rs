//! Where a stanza goes, decided once (DESIGN §2): the server itself, a local session, the
//! offline store, or an error back to the sender. Presence is delegated to [`presence`],
//! roster IQs to [`roster`], server-answered IQs to [`iq`].
//!
//! Delivery follows RFC 6121 §8.5: full JIDs go to that resource if it is bound; bare JIDs
//! (and full JIDs of absent resources, for messages) go to the highest-priority available
//! resources, or to offline storage.

use std::sync::Arc;

use jid::Jid;

use crate::plugins::{types, Fault, PluginHandle};
use crate::server::Server;
use crate::sessions::Session;
use crate::stanza::{error_reply, error_reply_raw, may_bounce, Condition, Kind, MessageType};
use crate::xml::{Element, NS_CLIENT};
use crate::{iq, presence};

pub mod rules;

/// What the router made of a `to` address.
pub enum Target {
    /// An address a feature plugin owns (a component domain such as `conference.example.org`).
    Plugin(Arc<PluginHandle>),
    /// Addressed to a hosted domain itself (or, for IQs, to no one: the server answers).
    Server,
    /// A local account, bare or full.
    Local { bare: String, resource: Option<String> },
    /// A domain we do not host. Without server-to-server links this is unreachable.
    Remote,
}

pub fn target(server: &Server, to: &Jid) -> Target {
    let domain = to.domain().as_str();
    if let Some(plugin) = server.plugins.active().for_address(domain) {
        return Target::Plugin(plugin.clone());
    }
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
pub async fn route_from_client(server: &Arc<Server>, client: &mut Session, stanza: Element) {
    let Some(kind) = Kind::of(&stanza) else { return };
    let to = match stanza.get_attr("to").map(Jid::new) {
        None => None,
        Some(Ok(jid)) => Some(jid),
        Some(Err(_)) => {
            bounce(server, &stanza, Condition::JidMalformed, None);
            return;
        }
    };
    if !passes_filters(server, &stanza, to.as_ref()).await {
        return;
    }
    if let Some(Target::Plugin(plugin)) = to.as_ref().map(|to| target(server, to)) {
        return dispatch_to_plugin(server, &plugin, stanza);
    }
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
            Some(Target::Plugin(plugin)) => dispatch_to_plugin(server, &plugin, stanza),
        },
        Kind::Message => {
            let to = to.unwrap_or_else(|| Jid::from(client.jid.to_bare()));
            match target(server, &to) {
                Target::Local { bare, resource } => deliver_message(server, &bare, resource.as_deref(), stanza).await,
                // Messages to the server itself have no handler yet; RFC 6121 §8.5.1 lets us
                // ignore them, but an error is more helpful to a sender expecting a reply.
                Target::Server => bounce(server, &stanza, Condition::ServiceUnavailable, None),
                Target::Remote => bounce(server, &stanza, Condition::RemoteServerNotFound, None),
                Target::Plugin(plugin) => dispatch_to_plugin(server, &plugin, stanza),
            }
        }
    }
}

/// The two filter points of DESIGN §2 for a stanza leaving a local client: outbound at the
/// sender, and inbound when the recipient is local too. Returns whether it may go on.
async fn passes_filters(server: &Arc<Server>, stanza: &Element, to: Option<&Jid>) -> bool {
    let active = server.plugins.active();
    if active.filters.is_empty() {
        return true;
    }
    if !filter(server, &active.filters, types::Direction::Outbound, stanza).await {
        return false;
    }
    let local = to.is_some_and(|to| matches!(target(server, to), Target::Local { .. }));
    !local || filter(server, &active.filters, types::Direction::Inbound, stanza).await
}

async fn filter(server: &Server, filters: &[Arc<PluginHandle>], direction: types::Direction, stanza: &Element) -> bool {
    for f in filters {
        match f.check(direction, stanza).await {
            Ok(types::Verdict::Allow) => {}
            Ok(types::Verdict::Drop) => return false,
            Ok(types::Verdict::Bounce(err)) => {
                bounce_plugin_error(server, stanza, &err);
                return false;
            }
            // A stanza too large for the filter to see must not slip past it.
            Err(fault @ Fault::TooLarge(_)) => {
                bounce_fault(server, stanza, &fault);
                return false;
            }
            // A broken filter must not take messaging down with it: log and let it pass.
            Err(fault) => tracing::warn!(plugin = %f.name(), %fault, "filter failed; allowing the stanza"),
        }
    }
    true
}

/// Hand a stanza to the feature plugin that claims it; its error (or fault) becomes the
/// sender's error reply. Never waits for the plugin, so a plugin sending to itself cannot
/// deadlock.
pub fn dispatch_to_plugin(server: &Arc<Server>, plugin: &Arc<PluginHandle>, stanza: Element) {
    match plugin.submit_stanza(&stanza) {
        Ok(reply) => {
            let server = server.clone();
            tokio::spawn(async move {
                let outcome = reply.await.unwrap_or(Err(Fault::Disabled("unloaded".into())));
                match outcome {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => bounce_plugin_error(&server, &stanza, &err),
                    Err(fault) => bounce_fault(&server, &stanza, &fault),
                }
            });
        }
        Err(fault) => bounce_fault(server, &stanza, &fault),
    }
}

fn bounce_fault(server: &Server, stanza: &Element, fault: &Fault) {
    let (condition, text) = match fault {
        Fault::Busy => (Condition::ResourceConstraint, None),
        Fault::SenderBlocked => (
            Condition::ResourceConstraint,
            Some("this service keeps failing on your requests; try again later"),
        ),
        Fault::TooLarge(_) => (Condition::PolicyViolation, Some("too large for this service")),
        Fault::Disabled(_) => (Condition::ServiceUnavailable, None),
        Fault::Trap(_) | Fault::Timeout => (Condition::InternalServerError, None),
    };
    bounce(server, stanza, condition, text);
}

fn bounce_plugin_error(server: &Server, original: &Element, err: &types::StanzaError) {
    if !may_bounce(original) {
        return;
    }
    let error_type = match err.type_ {
        types::ErrorType::Auth => "auth",
        types::ErrorType::Cancel => "cancel",
        types::ErrorType::Continue => "continue",
        types::ErrorType::Modify => "modify",
        types::ErrorType::Wait => "wait",
    };
    // Only defined conditions go on the wire (RFC 6120 §8.3.3).
    let condition = if is_defined_condition(&err.condition) {
        err.condition.as_str()
    } else {
        "undefined-condition"
    };
    let reply = error_reply_raw(original, error_type, condition, err.text.as_deref());
    deliver_reply(server, reply);
}

fn is_defined_condition(c: &str) -> bool {
    const DEFINED: &[&str] = &[
        "bad-request",
        "conflict",
        "feature-not-implemented",
        "forbidden",
        "gone",
        "internal-server-error",
        "item-not-found",
        "jid-malformed",
        "not-acceptable",
        "not-allowed",
        "not-authorized",
        "policy-violation",
        "recipient-unavailable",
        "redirect",
        "registration-required",
        "remote-server-not-found",
        "remote-server-timeout",
        "resource-constraint",
        "service-unavailable",
        "subscription-required",
        "undefined-condition",
        "unexpected-request",
    ];
    DEFINED.contains(&c)
}

/// A stanza sent by a plugin through `router.send`. Its `from` must be an address the
/// plugin speaks for; it is then delivered like any other stanza.
pub async fn route_from_plugin(server: &Arc<Server>, plugin: &str, xml: &str) -> Result<(), String> {
    let stanza = crate::stream::reader::parse_stored(xml)
        .await
        .ok_or("not a well-formed stanza in jabber:client")?;
    let kind = Kind::of(&stanza).ok_or("not a message, presence or iq")?;
    let from = stanza
        .get_attr("from")
        .and_then(|f| Jid::new(f).ok())
        .ok_or("a valid from is required")?;
    let to = stanza
        .get_attr("to")
        .and_then(|t| Jid::new(t).ok())
        .ok_or("a valid to is required")?;
    if !plugin_may_send_as(server, plugin, &from) {
        return Err(format!("{plugin} may not send as {from}"));
    }
    match target(server, &to) {
        Target::Plugin(p) => dispatch_to_plugin(server, &p, stanza),
        Target::Local { bare, resource } => {
            let active = server.plugins.active();
            if !active.filters.is_empty() && !filter(server, &active.filters, types::Direction::Inbound, &stanza).await
            {
                return Ok(());
            }
            match kind {
                Kind::Message => deliver_message(server, &bare, resource.as_deref(), stanza).await,
                Kind::Iq => deliver_iq(server, &bare, resource.as_deref(), stanza).await,
                Kind::Presence => match resource {
                    Some(res) => {
                        if let Some(r) = server.sessions.resource(&bare, &res) {
                            r.send(Arc::new(stanza));
                        }
                    }
                    None => presence::deliver_to_available(server, &bare, &Arc::new(stanza)),
                },
            }
        }
        Target::Server => {}
        Target::Remote => return Err(format!("{} is not reachable from here", to.domain())),
    }
    Ok(())
}

/// A plugin speaks for its component domains, and — if it answers IQs on users' behalf —
/// for hosted domains and their accounts' bare JIDs.
fn plugin_may_send_as(server: &Server, plugin: &str, from: &Jid) -> bool {
    let active = server.plugins.active();
    let Some(handle) = active.by_name.get(plugin) else {
        return false;
    };
    let domain = from.domain().as_str();
    if active.for_address(domain).is_some_and(|p| p.name() == plugin) {
        return true;
    }
    !handle.manifest.iq_namespaces.is_empty() && server.hosts(domain) && from.resource().is_none()
}

/// Send an error reply for `original` back to its sender, unless the stanza must not be
/// answered with an error.
pub fn bounce(server: &Server, original: &Element, condition: Condition, text: Option<&str>) {
    if !may_bounce(original) {
        return;
    }
    deliver_reply(server, error_reply(original, condition, text));
}

/// Deliver an error reply: to a local session, or back into the plugin that sent the original.
fn deliver_reply(server: &Server, reply: Element) {
    let plugin = reply
        .get_attr("to")
        .and_then(|t| Jid::new(t).ok())
        .and_then(|to| server.plugins.active().for_address(to.domain().as_str()).cloned());
    match plugin {
        // Errors to a plugin are informational; nobody answers them, so no bounce loop.
        Some(p) => {
            let _ = p.submit_stanza(&reply);
        }
        None => deliver_to_full(server, &reply),
    }
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

/// RFC 6121 §8.5.2 / §8.5.3 for `<message/>`, decided by [`rules`]. A resource on another
/// node that cannot be reached (its link is down or congested) counts as absent, so the
/// message falls back to the next rule and, in the end, to offline storage: never lost
/// silently when it is worth keeping.
pub async fn deliver_message(server: &Arc<Server>, bare: &str, resource: Option<&str>, stanza: Element) {
    let message = MessageType::of(&stanza);
    let stanza = Arc::new(stanza);
    if let Some(resource) = resource {
        if let Some(r) = server.sessions.resource(bare, resource) {
            if r.send(stanza.clone()) {
                return;
            }
        }
        match rules::to_absent_resource(message) {
            rules::AbsentResource::AsBare => {}
            rules::AbsentResource::Ignore => return,
            rules::AbsentResource::Bounce(condition) => return bounce(server, &stanza, condition, None),
        }
    }
    let resources = server.sessions.resources(bare);
    let candidates: Vec<rules::Candidate> = resources
        .iter()
        .map(|r| rules::Candidate {
            available: r.available(),
            priority: r.priority,
        })
        .collect();
    let mut plan = rules::to_bare(message, &candidates);
    if let rules::ToBare::Deliver(chosen) = &plan {
        let mut delivered = false;
        for &i in chosen {
            delivered |= resources[i].send(stanza.clone());
        }
        if delivered {
            return;
        }
        // None of them could take it: as if the account had no resource.
        plan = rules::to_bare(message, &[]);
    }
    match plan {
        rules::ToBare::Deliver(_) | rules::ToBare::Ignore => {}
        rules::ToBare::Bounce(condition) => bounce(server, &stanza, condition, None),
        rules::ToBare::Offline => store_offline(server, bare, Arc::unwrap_or_clone(stanza)).await,
    }
}

/// Route a message again that a session took into its queue but never wrote: after a
/// hand-off, a closed stream or a write failure.
pub async fn redeliver(server: &Arc<Server>, stanza: Element) {
    let Some(to) = stanza.get_attr("to").and_then(|t| Jid::new(t).ok()) else {
        return;
    };
    let bare = to.to_bare().to_string();
    let resource = to.resource().map(|r| r.as_str().to_string());
    deliver_message(server, &bare, resource.as_deref(), stanza).await;
}

/// Keep a message for an account that has no resource to take it (XEP-0160).
pub async fn store_offline(server: &Arc<Server>, bare: &str, stanza: Element) {
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
        Ok(true) => {
            // The account may have come online (here or on another node) between the
            // routing decision and the store: whoever serves it now picks this up.
            if let Some(pool) = &server.pool {
                pool.links
                    .broadcast(&crate::pool::link::Frame::OfflineStored { bare: bare.to_string() });
            }
            crate::presence::offline_stored(server, bare);
        }
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
pub async fn deliver_iq(server: &Arc<Server>, bare: &str, resource: Option<&str>, stanza: Element) {
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
