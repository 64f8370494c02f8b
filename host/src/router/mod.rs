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
use crate::delivery::{bounce, bounce_fault, bounce_plugin_error, deliver_message, dispatch_to_plugin, target, Target};
use crate::plugins::{types, Fault, PluginHandle};
use crate::sessions::Session;
use crate::stanza::{Condition, Kind, PresenceType};
use crate::xml::Element;
use crate::{iq, presence, roster};

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
        Kind::Presence => match (PresenceType::of(&stanza), to) {
            (Some(PresenceType::Subscription(kind)), Some(to)) => {
                roster::subscription::outbound(ctx, client, stanza, kind, &to).await
            }
            (_, to) => presence::outbound(ctx, client, stanza, to).await,
        },
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
                    None => crate::delivery::deliver_to_available(ctx, &bare, &Arc::new(stanza)),
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
