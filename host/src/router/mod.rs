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
use crate::delivery::{
    bounce, deliver_message, dispatch_from_client, dispatch_to_feature, inbound_here, passes_filter, target, Target,
};
use crate::features::Direction;
use crate::sessions::Session;
use crate::stanza::{Condition, Kind, Outcome, PresenceType, StanzaError};
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
    if !passes_filters(ctx, kind, &stanza, to.as_ref()).await {
        return;
    }
    if kind == Kind::Message && to.as_ref().is_none_or(|to| to.to_bare().as_str() != client.bare) {
        let resource = client.jid.resource().as_str();
        crate::delivery::carbons::copy(
            ctx,
            &client.bare,
            &[resource],
            &stanza,
            crate::delivery::carbons::Direction::Sent,
        );
    }
    // Addressed once per stanza (it allocates the bare JID and resource).
    let dest = to.as_ref().map(|to| target(ctx, to));
    if let Some(Target::Feature(feature)) = &dest {
        if let (Kind::Presence, Some(to)) = (kind, &to) {
            presence::note_directed_to_feature(client, &stanza, to);
        }
        return dispatch_from_client(ctx, &client.feature_calls, &**feature, stanza).await;
    }
    match kind {
        Kind::Presence => {
            let ptype = match presence_refusal(PresenceType::of(&stanza), dest.as_ref()) {
                Ok(ptype) => ptype,
                Err(err) => return answer_error(ctx, &stanza, Err(err)),
            };
            match (ptype, to) {
                (PresenceType::Subscription(kind), Some(to)) => {
                    let outcome = roster::subscription::outbound(ctx, client, &stanza, kind, &to).await;
                    answer_error(ctx, &stanza, outcome);
                }
                (ptype, to) => presence::outbound(ctx, client, stanza, ptype, to).await,
            }
        }
        Kind::Iq => {
            let outcome = match dest {
                None => iq::handle_for_account(ctx, client, &stanza).await,
                Some(Target::Local { bare, resource: None }) if bare == client.bare => {
                    iq::handle_for_account(ctx, client, &stanza).await
                }
                Some(Target::Context) => iq::handle_for_server(ctx, client, &stanza).await,
                Some(Target::Local { bare, resource }) => {
                    return deliver_iq(ctx, &bare, resource.as_deref(), stanza, Some(&client.feature_calls)).await
                }
                Some(Target::Remote) => Err(Condition::RemoteServerNotFound.into()),
                Some(Target::Feature(feature)) => return dispatch_to_feature(ctx, &*feature, stanza),
            };
            answer_error(ctx, &stanza, outcome);
        }
        Kind::Message => {
            let dest = dest.unwrap_or_else(|| target(ctx, &Jid::from(client.jid.to_bare())));
            match dest {
                Target::Local { bare, resource } => deliver_message(ctx, &bare, resource.as_deref(), stanza).await,
                // Messages to the server itself have no handler yet; RFC 6121 §8.5.1 lets us
                // ignore them, but an error is more helpful to a sender expecting a reply.
                Target::Context => bounce(ctx, &stanza, Condition::ServiceUnavailable, None),
                Target::Remote => bounce(ctx, &stanza, Condition::RemoteServerNotFound, None),
                Target::Feature(feature) => dispatch_to_feature(ctx, &*feature, stanza),
            }
        }
    }
}

/// The two filter points of DESIGN §2 for a stanza leaving a local client: outbound at the
/// sender, and inbound when the recipient is a hosted account judged on this node
/// ([`inbound_here`]). Returns whether it may go on.
async fn passes_filters(ctx: &Arc<Context>, kind: Kind, stanza: &Element, to: Option<&Jid>) -> bool {
    if ctx.features.would_filter(Direction::Outbound, stanza, None)
        && !passes_filter(ctx, Direction::Outbound, stanza, None).await
    {
        return false;
    }
    if !ctx.features.would_filter(Direction::Inbound, stanza, None) {
        return true;
    }
    match to.map(|to| target(ctx, to)) {
        Some(Target::Local { bare, resource }) => passes_inbound(ctx, kind, stanza, (&bare, resource.as_deref())).await,
        _ => true,
    }
}

/// The inbound filter point for a client's stanza to a hosted account, if it runs on this
/// node ([`inbound_here`]).
async fn passes_inbound(
    ctx: &Arc<Context>,
    kind: Kind,
    stanza: &Element,
    (bare, resource): (&str, Option<&str>),
) -> bool {
    !ctx.features.would_filter(Direction::Inbound, stanza, None)
        || !inbound_here(ctx, kind, bare, resource)
        || passes_filter(ctx, Direction::Inbound, stanza, None).await
}

/// Both filter points for a stanza `feature` sends to a hosted account: outbound for its
/// `from` (a user the feature speaks for, such as a PEP service's owner: her privacy
/// lists decide what her account sends), inbound for the recipient when that point runs
/// here. The feature's own filter does not judge it. A refusal is silent: the feature
/// is not a client to be told, and an error to a room or a PEP service for each copy
/// withheld would only be noise (or get an occupant kicked).
async fn feature_stanza_passes(
    ctx: &Arc<Context>,
    kind: Kind,
    stanza: &Element,
    (bare, resource): (&str, Option<&str>),
    feature: &str,
) -> bool {
    let judged = |direction| async move {
        matches!(
            ctx.features.filter(direction, stanza, Some(feature)).await,
            crate::features::Verdict::Pass
        )
    };
    if ctx.features.would_filter(Direction::Outbound, stanza, Some(feature)) && !judged(Direction::Outbound).await {
        return false;
    }
    !ctx.features.would_filter(Direction::Inbound, stanza, Some(feature))
        || !inbound_here(ctx, kind, bare, resource)
        || judged(Direction::Inbound).await
}

/// Why the router did not take a stanza a feature sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendRefused {
    #[error("{0}")]
    Malformed(&'static str),
    #[error("this plugin may not send as {0}")]
    ForbiddenFrom(Jid),
    #[error("{} is not reachable from here", .0.domain())]
    Unreachable(Jid),
}

/// What a feature sent, read back under the stream reader's limits: one stanza in
/// `jabber:client`, its kind, and the `from` it claims (checked by the caller).
async fn read_from_feature(xml: &str) -> Result<(Element, Kind, Jid), SendRefused> {
    use SendRefused::Malformed;
    let stanza = crate::stream::reader::parse_stored(xml)
        .await
        .ok_or(Malformed("not a well-formed stanza in jabber:client"))?;
    let kind = Kind::of(&stanza).ok_or(Malformed("not a message, presence or iq"))?;
    let from = stanza
        .get_attr("from")
        .and_then(|f| Jid::new(f).ok())
        .ok_or(Malformed("a valid from is required"))?;
    Ok((stanza, kind, from))
}

/// A stanza `feature` sends (a plugin's `router.send`); its own filter, if it is one too,
/// does not judge it (see `Features::filter`). Its `from` must be an address the
/// feature speaks for (`may_send_as`); it is then delivered like any other stanza.
pub async fn route_from_feature(
    ctx: &Arc<Context>,
    feature: &str,
    xml: &str,
    may_send_as: impl FnOnce(&Jid, &Element) -> bool,
) -> Result<(), SendRefused> {
    let (stanza, kind, from) = read_from_feature(xml).await?;
    let to = stanza
        .get_attr("to")
        .and_then(|t| Jid::new(t).ok())
        .ok_or(SendRefused::Malformed("a valid to is required"))?;
    if !may_send_as(&from, &stanza) {
        return Err(SendRefused::ForbiddenFrom(from));
    }
    match target(ctx, &to) {
        Target::Feature(feature) => dispatch_to_feature(ctx, &*feature, stanza),
        Target::Local { bare, resource } => {
            if !feature_stanza_passes(ctx, kind, &stanza, (&bare, resource.as_deref()), feature).await {
                return Ok(());
            }
            match kind {
                Kind::Message => deliver_message(ctx, &bare, resource.as_deref(), stanza).await,
                Kind::Iq => deliver_iq(ctx, &bare, resource.as_deref(), stanza, None).await,
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
        Target::Remote => return Err(SendRefused::Unreachable(to)),
    }
    Ok(())
}

/// At most this many recipients in one fan-out (`router.send-many`).
pub const MAX_FAN_OUT: usize = 10_000;

/// One stanza a feature sends to many recipients (a plugin's `router.send-many`): parsed
/// and checked once, each copy addressed to one recipient and delivered as if sent alone,
/// the copies for other nodes batched per node (`delivery::fan_out`). Returns how many
/// recipients it was routed to (invalid and unreachable ones are skipped).
pub async fn route_many_from_feature(
    ctx: &Arc<Context>,
    feature: &str,
    xml: &str,
    recipients: &[String],
    may_send_as: impl FnOnce(&Jid, &Element) -> bool,
) -> Result<u32, SendRefused> {
    if recipients.len() > MAX_FAN_OUT {
        return Err(SendRefused::Malformed("more than 10,000 recipients in one call"));
    }
    let (mut stanza, kind, from) = read_from_feature(xml).await?;
    if !may_send_as(&from, &stanza) {
        return Err(SendRefused::ForbiddenFrom(from));
    }
    stanza.remove_attr("to");
    let mut fan = crate::delivery::fan_out::FanOut::new(kind);
    let mut routed = 0;
    for recipient in recipients {
        let Ok(to) = Jid::new(recipient) else { continue };
        let mut copy = stanza.clone();
        copy.set_attr("to", to.to_string());
        match target(ctx, &to) {
            Target::Feature(feature) => dispatch_to_feature(ctx, &*feature, copy),
            Target::Local { bare, resource } => {
                if !feature_stanza_passes(ctx, kind, &copy, (&bare, resource.as_deref()), feature).await {
                    routed += 1;
                    continue;
                }
                match (kind, resource) {
                    (Kind::Iq, None) => deliver_iq(ctx, &bare, None, copy, None).await,
                    (_, resource) => fan.add(ctx, &bare, resource.as_deref(), copy).await,
                }
            }
            Target::Context | Target::Remote => continue,
        }
        routed += 1;
    }
    fan.finish(ctx, &stanza);
    Ok(routed)
}

/// RFC 6121 §8.5.2.1.3 / §8.5.3.1 for `<iq/>` addressed to another account; `calls` are
/// the sending session's feature calls when a local client sent it (a feature answering
/// for the account then paces that client instead of refusing it).
pub async fn deliver_iq(
    ctx: &Arc<Context>,
    bare: &str,
    resource: Option<&str>,
    stanza: Element,
    calls: Option<&crate::features::FeatureCalls>,
) {
    let outcome = match resource {
        Some(resource) => match ctx.sessions.resource(bare, resource) {
            Some(r) => {
                r.send(Arc::new(stanza));
                return;
            }
            None => Err(Condition::ServiceUnavailable.into()),
        },
        // The server answers IQs to a bare JID on the account's behalf (§8.5.2.1.3).
        None => iq::handle_for_other_account(ctx, bare, &stanza, calls).await,
    };
    answer_error(ctx, &stanza, outcome);
}

/// Presence a local client may not send: a `type` RFC 6121 does not define, a probe, error
/// or subscription stanza with no `to`, presence for a domain we cannot reach.
/// `dest` is where its `to` points, if it has one.
fn presence_refusal(ptype: Option<PresenceType>, dest: Option<&Target>) -> Result<PresenceType, StanzaError> {
    let Some(ptype) = ptype else {
        return Err(Condition::BadRequest.into());
    };
    match (ptype, dest) {
        (PresenceType::Available | PresenceType::Unavailable, None) => Ok(ptype),
        (_, None) => Err(Condition::BadRequest.into()),
        (_, Some(Target::Remote)) => Err(Condition::RemoteServerNotFound.into()),
        (_, Some(_)) => Ok(ptype),
    }
}

/// The one place a service's error becomes the sender's error reply.
fn answer_error(ctx: &Context, stanza: &Element, outcome: Outcome) {
    if let Err(err) = outcome {
        bounce(ctx, stanza, err.condition, err.text);
    }
}

#[cfg(test)]
mod tests;
