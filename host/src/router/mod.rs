//! Where a stanza goes, decided once (DESIGN §2): the server itself, a local session, the
//! offline store, or an error back to the sender. Presence is delegated to [`presence`],
//! roster IQs to [`roster`], server-answered IQs to [`iq`].
//!
//! Delivery follows RFC 6121 §8.5: full JIDs go to that resource if it is bound; bare JIDs
//! (and full JIDs of absent resources, for messages) go to the highest-priority available
//! resources, or to offline storage.

use std::sync::Arc;

use jid::Jid;

use crate::context::Context;
use crate::plugins::{types, Fault, PluginHandle};
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
    Context,
    /// A local account, bare or full.
    Local { bare: String, resource: Option<String> },
    /// A domain we do not host. Without server-to-server links this is unreachable.
    Remote,
}

pub fn target(ctx: &Context, to: &Jid) -> Target {
    let domain = to.domain().as_str();
    if let Some(plugin) = ctx.plugins.active().for_address(domain) {
        return Target::Plugin(plugin.clone());
    }
    if !ctx.hosts(domain) {
        return Target::Remote;
    }
    match to.node() {
        None => Target::Context,
        Some(_) => Target::Local {
            bare: to.to_bare().to_string(),
            resource: to.resource().map(|r| r.to_string()),
        },
    }
}

/// Route a stanza sent by a bound local client; `from` is already stamped.
pub async fn route_from_client(ctx: &Arc<Context>, client: &mut Session, stanza: Element) {
    let Some(kind) = Kind::of(&stanza) else { return };
    let to = match stanza.get_attr("to").map(Jid::new) {
        None => None,
        Some(Ok(jid)) => Some(jid),
        Some(Err(_)) => {
            bounce(ctx, &stanza, Condition::JidMalformed, None);
            return;
        }
    };
    if !passes_filters(ctx, &stanza, to.as_ref()).await {
        return;
    }
    if let Some(Target::Plugin(plugin)) = to.as_ref().map(|to| target(ctx, to)) {
        return dispatch_to_plugin(ctx, &plugin, stanza);
    }
    match kind {
        Kind::Presence => presence::outbound(ctx, client, stanza, to).await,
        Kind::Iq => match to.as_ref().map(|to| target(ctx, to)) {
            None => iq::handle_for_account(ctx, client, stanza).await,
            Some(Target::Local { bare, resource: None }) if bare == client.bare => {
                iq::handle_for_account(ctx, client, stanza).await
            }
            Some(Target::Context) => iq::handle_for_server(ctx, client, stanza).await,
            Some(Target::Local { bare, resource }) => deliver_iq(ctx, &bare, resource.as_deref(), stanza).await,
            Some(Target::Remote) => bounce(ctx, &stanza, Condition::RemoteServerNotFound, None),
            Some(Target::Plugin(plugin)) => dispatch_to_plugin(ctx, &plugin, stanza),
        },
        Kind::Message => {
            let to = to.unwrap_or_else(|| Jid::from(client.jid.to_bare()));
            match target(ctx, &to) {
                Target::Local { bare, resource } => deliver_message(ctx, &bare, resource.as_deref(), stanza).await,
                // Messages to the server itself have no handler yet; RFC 6121 §8.5.1 lets us
                // ignore them, but an error is more helpful to a sender expecting a reply.
                Target::Context => bounce(ctx, &stanza, Condition::ServiceUnavailable, None),
                Target::Remote => bounce(ctx, &stanza, Condition::RemoteServerNotFound, None),
                Target::Plugin(plugin) => dispatch_to_plugin(ctx, &plugin, stanza),
            }
        }
    }
}

/// The two filter points of DESIGN §2 for a stanza leaving a local client: outbound at the
/// sender, and inbound when the recipient is local too. Returns whether it may go on.
async fn passes_filters(ctx: &Arc<Context>, stanza: &Element, to: Option<&Jid>) -> bool {
    let active = ctx.plugins.active();
    if active.filters.is_empty() {
        return true;
    }
    if !filter(ctx, &active.filters, types::Direction::Outbound, stanza).await {
        return false;
    }
    let local = to.is_some_and(|to| matches!(target(ctx, to), Target::Local { .. }));
    !local || filter(ctx, &active.filters, types::Direction::Inbound, stanza).await
}

async fn filter(ctx: &Context, filters: &[Arc<PluginHandle>], direction: types::Direction, stanza: &Element) -> bool {
    for f in filters {
        match f.check(direction, stanza).await {
            Ok(types::Verdict::Allow) => {}
            Ok(types::Verdict::Drop) => return false,
            Ok(types::Verdict::Bounce(err)) => {
                bounce_plugin_error(ctx, stanza, &err);
                return false;
            }
            // A stanza too large for the filter to see must not slip past it.
            Err(fault @ Fault::TooLarge(_)) => {
                bounce_fault(ctx, stanza, &fault);
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
pub fn dispatch_to_plugin(ctx: &Arc<Context>, plugin: &Arc<PluginHandle>, stanza: Element) {
    match plugin.submit_stanza(&stanza) {
        Ok(reply) => {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let outcome = reply.await.unwrap_or(Err(Fault::Disabled("unloaded".into())));
                match outcome {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => bounce_plugin_error(&ctx, &stanza, &err),
                    Err(fault) => bounce_fault(&ctx, &stanza, &fault),
                }
            });
        }
        Err(fault) => bounce_fault(ctx, &stanza, &fault),
    }
}

fn bounce_fault(ctx: &Context, stanza: &Element, fault: &Fault) {
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
    bounce(ctx, stanza, condition, text);
}

fn bounce_plugin_error(ctx: &Context, original: &Element, err: &types::StanzaError) {
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
    deliver_reply(ctx, reply);
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
pub async fn route_from_plugin(ctx: &Arc<Context>, plugin: &str, xml: &str) -> Result<(), String> {
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
    if !plugin_may_send_as(ctx, plugin, &from) {
        return Err(format!("{plugin} may not send as {from}"));
    }
    match target(ctx, &to) {
        Target::Plugin(p) => dispatch_to_plugin(ctx, &p, stanza),
        Target::Local { bare, resource } => {
            let active = ctx.plugins.active();
            if !active.filters.is_empty() && !filter(ctx, &active.filters, types::Direction::Inbound, &stanza).await {
                return Ok(());
            }
            match kind {
                Kind::Message => deliver_message(ctx, &bare, resource.as_deref(), stanza).await,
                Kind::Iq => deliver_iq(ctx, &bare, resource.as_deref(), stanza).await,
                Kind::Presence => match resource {
                    Some(res) => {
                        if let Some(r) = ctx.sessions.resource(&bare, &res) {
                            r.send(Arc::new(stanza));
                        }
                    }
                    None => presence::deliver_to_available(ctx, &bare, &Arc::new(stanza)),
                },
            }
        }
        Target::Context => {}
        Target::Remote => return Err(format!("{} is not reachable from here", to.domain())),
    }
    Ok(())
}

/// A plugin speaks for its component domains, and — if it answers IQs on users' behalf —
/// for hosted domains and their accounts' bare JIDs.
fn plugin_may_send_as(ctx: &Context, plugin: &str, from: &Jid) -> bool {
    let active = ctx.plugins.active();
    let Some(handle) = active.by_name.get(plugin) else {
        return false;
    };
    let domain = from.domain().as_str();
    if active.for_address(domain).is_some_and(|p| p.name() == plugin) {
        return true;
    }
    !handle.manifest.iq_namespaces.is_empty() && ctx.hosts(domain) && from.resource().is_none()
}

/// Send an error reply for `original` back to its sender, unless the stanza must not be
/// answered with an error.
pub fn bounce(ctx: &Context, original: &Element, condition: Condition, text: Option<&str>) {
    if !may_bounce(original) {
        return;
    }
    deliver_reply(ctx, error_reply(original, condition, text));
}

/// Deliver an error reply: to a local session, or back into the plugin that sent the original.
fn deliver_reply(ctx: &Context, reply: Element) {
    let plugin = reply
        .get_attr("to")
        .and_then(|t| Jid::new(t).ok())
        .and_then(|to| ctx.plugins.active().for_address(to.domain().as_str()).cloned());
    match plugin {
        // Errors to a plugin are informational; nobody answers them, so no bounce loop.
        Some(p) => {
            let _ = p.submit_stanza(&reply);
        }
        None => deliver_to_full(ctx, &reply),
    }
}

/// Deliver a server-generated stanza to the full JID in its `to`, if that session exists.
pub fn deliver_to_full(ctx: &Context, stanza: &Element) {
    let Some(to) = stanza.get_attr("to").and_then(|t| Jid::new(t).ok()) else {
        return;
    };
    let Some(resource) = to.resource() else { return };
    if let Some(r) = ctx.sessions.resource(&to.to_bare().to_string(), resource.as_str()) {
        r.send(Arc::new(stanza.clone()));
    }
}

/// RFC 6121 §8.5.2 / §8.5.3 for `<message/>`, decided by [`rules`]. A resource on another
/// node that cannot be reached (its link is down or congested) counts as absent, so the
/// message falls back to the next rule and, in the end, to offline storage: never lost
/// silently when it is worth keeping.
pub async fn deliver_message(ctx: &Arc<Context>, bare: &str, resource: Option<&str>, stanza: Element) {
    let message = MessageType::of(&stanza);
    let stanza = Arc::new(stanza);
    if let Some(resource) = resource {
        if let Some(r) = ctx.sessions.resource(bare, resource) {
            if r.send(stanza.clone()) {
                return;
            }
        }
        match rules::to_absent_resource(message) {
            rules::AbsentResource::AsBare => {}
            rules::AbsentResource::Ignore => return,
            rules::AbsentResource::Bounce(condition) => return bounce(ctx, &stanza, condition, None),
        }
    }
    let resources = ctx.sessions.resources(bare);
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
        rules::ToBare::Bounce(condition) => bounce(ctx, &stanza, condition, None),
        rules::ToBare::Offline => store_offline(ctx, bare, Arc::unwrap_or_clone(stanza)).await,
    }
}

/// Route a message again that a session took into its queue but never wrote: after a
/// hand-off, a closed stream or a write failure.
pub async fn redeliver(ctx: &Arc<Context>, stanza: Element) {
    let Some(to) = stanza.get_attr("to").and_then(|t| Jid::new(t).ok()) else {
        return;
    };
    let bare = to.to_bare().to_string();
    let resource = to.resource().map(|r| r.as_str().to_string());
    deliver_message(ctx, &bare, resource.as_deref(), stanza).await;
}

/// Keep a message for an account that has no resource to take it (XEP-0160).
pub async fn store_offline(ctx: &Arc<Context>, bare: &str, stanza: Element) {
    match ctx.store.account_exists(bare).await {
        Ok(true) => {}
        Ok(false) => return bounce(ctx, &stanza, Condition::ServiceUnavailable, None),
        Err(e) => {
            tracing::error!(error = %e, "account lookup failed");
            return bounce(ctx, &stanza, Condition::InternalServerError, None);
        }
    }
    // Only messages worth keeping: something a person reads (XEP-0160 §3).
    let keep = stanza.elements().any(|c| c.name == "body" || c.name == "subject")
        || stanza.elements().any(|c| c.ns != NS_CLIENT);
    if !keep {
        return;
    }
    let quota = ctx.config.limits.offline_quota;
    match ctx.store.store_offline(bare, &stanza.to_stream_xml(), quota).await {
        Ok(true) => {
            // The account may have come online (here or on another node) between the
            // routing decision and the store: whoever serves it now picks this up.
            ctx.sessions.announce_offline_stored(bare);
            crate::presence::offline_stored(ctx, bare);
        }
        Ok(false) => bounce(
            ctx,
            &stanza,
            Condition::ResourceConstraint,
            Some("offline storage is full"),
        ),
        Err(e) => {
            tracing::error!(error = %e, "storing an offline message failed");
            bounce(ctx, &stanza, Condition::InternalServerError, None);
        }
    }
}

/// RFC 6121 §8.5.2.1.3 / §8.5.3.1 for `<iq/>` addressed to another account.
pub async fn deliver_iq(ctx: &Arc<Context>, bare: &str, resource: Option<&str>, stanza: Element) {
    match resource {
        Some(resource) => match ctx.sessions.resource(bare, resource) {
            Some(r) => {
                r.send(Arc::new(stanza));
            }
            None => bounce(ctx, &stanza, Condition::ServiceUnavailable, None),
        },
        // The server answers IQs to a bare JID on the account's behalf (§8.5.2.1.3).
        None => iq::handle_for_other_account(ctx, bare, stanza).await,
    }
}
