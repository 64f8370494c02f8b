//! The presence subscription state machine (RFC 6121 §3 and Appendix A).
//!
//! Each subscription stanza is processed twice: once on the sender's side ([`outbound`]),
//! once on the recipient's ([`inbound`]). Both sides are local on one node, but keeping
//! the two halves apart keeps each rule where the RFC states it, and is where a pool link
//! or server-to-server connection will later sit between them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use jid::Jid;

use super::{push_written, update};
use crate::context::Context;
use crate::delivery::deliver_to_available;
use crate::delivery::{bounce, target, Target};
use crate::presence::{send_current_presence, send_unavailable_presence};
use crate::sessions::Session;
use crate::stanza::{Condition, Outcome, StanzaError, SubscriptionType};
use crate::store::{RosterItem, StoreError};
use crate::xml::{Element, NS_CLIENT};

pub mod rules;

use rules::Effect;

/// A subscription stanza from a local client.
/// Its error goes back to the sending resource (`client`'s full JID, as `stanza` came).
pub async fn outbound(
    ctx: &Arc<Context>,
    client: &Session,
    stanza: &Element,
    kind: SubscriptionType,
    to: &Jid,
) -> Outcome {
    let contact = to.to_bare().to_string();
    let user = client.bare.clone();
    if contact == user {
        return Ok(());
    }
    // §3.1.2 and friends: subscription stanzas travel between bare JIDs.
    let mut stanza = stanza.clone();
    stanza.set_attr("from", user.as_str());
    stanza.set_attr("to", contact.as_str());
    let effects = match process_outbound(ctx, &user, &contact, kind).await {
        Ok(effects) => effects,
        // Nothing was stored and nothing goes to the contact.
        Err(StoreError::RosterFull) => return Err(StanzaError::with_text(Condition::NotAllowed, "roster is full")),
        Err(e) => {
            tracing::error!(error = %e, "subscription processing failed");
            return Err(Condition::InternalServerError.into());
        }
    };
    for effect in effects {
        match effect {
            Effect::UnavailableToContact => cancel_presence(ctx, &user, &contact).await,
            Effect::Route => deliver(ctx, &user, &contact, kind, stanza.clone()).await,
            Effect::PresenceToContact => send_current_presence(ctx, &user, &contact).await,
            // Done by `process_outbound`, or never part of the sender's half.
            Effect::Push
            | Effect::RemovePendingIn
            | Effect::StorePendingIn
            | Effect::DeliverToUser
            | Effect::Reply(_) => {}
        }
    }
    Ok(())
}

/// The contact is losing its subscription to `user`'s presence: while it is still
/// subscribed, it gets unavailable presence from each of `user`'s available resources
/// (§3.2.2), so its client stops showing the user online. Sent before the `unsubscribed`
/// is routed, by a client's own `unsubscribed` and by a roster removal (§2.5.2) alike.
pub async fn cancel_presence(ctx: &Context, user: &str, contact: &str) {
    send_unavailable_presence(ctx, user, contact).await;
}

/// The sender's half against the store: the item changes in one atomic read-modify-write
/// (the contact's inbound half may be changing the same item at this moment), then the
/// store-side effects run; the rest are returned for [`outbound`], in order.
async fn process_outbound(
    ctx: &Context,
    user: &str,
    contact: &str,
    kind: SubscriptionType,
) -> Result<Vec<Effect>, StoreError> {
    let pending_in = match kind {
        // Withdrawn first, whatever the item says (a refused request must not linger).
        SubscriptionType::Unsubscribed => ctx.store.remove_pending_in(user, contact).await?,
        SubscriptionType::Subscribed => ctx.store.has_pending_in(user, contact).await?,
        SubscriptionType::Subscribe | SubscriptionType::Unsubscribe => false,
    };
    // The effects of the very transition the store applied, to the item as it found it.
    let mut effects = Vec::new();
    let update = update(ctx, user, contact, |item| {
        let step = rules::outbound(item, contact, pending_in, kind);
        effects = step.effects;
        step.item
    })
    .await?;
    let mut rest = Vec::new();
    for effect in effects {
        match effect {
            Effect::Push => push_written(ctx, user, &update),
            Effect::RemovePendingIn => {
                ctx.store.remove_pending_in(user, contact).await?;
            }
            other => rest.push(other),
        }
    }
    Ok(rest)
}

/// Carry a subscription stanza to the contact's side.
fn deliver<'a>(
    ctx: &'a Arc<Context>,
    from: &'a str,
    contact: &'a str,
    kind: SubscriptionType,
    stanza: Element,
) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
    Box::pin(async move {
        let Ok(to) = Jid::new(contact) else { return };
        match target(ctx, &to) {
            Target::Local { bare, .. } => {
                if let Err(e) = inbound(ctx, &bare, from, kind, stanza).await {
                    tracing::error!(error = %e, "inbound subscription processing failed");
                }
            }
            Target::Remote => bounce(ctx, &stanza, Condition::RemoteServerNotFound, None),
            Target::Feature(feature) => crate::delivery::dispatch_to_feature(ctx, &*feature, stanza),
            Target::Context => {}
        }
    })
}

/// A subscription stanza the server itself sends on `from`'s behalf (e.g. after a roster
/// removal, §2.5.2).
pub async fn send_from_server(ctx: &Arc<Context>, from: &str, to: &str, kind: SubscriptionType) {
    let stanza = Element::new("presence", NS_CLIENT)
        .attr("from", from)
        .attr("to", to)
        .attr("type", kind.as_str());
    deliver(ctx, from, to, kind, stanza).await;
}

/// A subscription stanza arriving for local account `owner` from `contact`: the
/// transition of [`rules::inbound`] in one atomic read-modify-write of the item (the
/// owner's own outbound half may be changing it at this moment), then its effects in order.
async fn inbound(
    ctx: &Arc<Context>,
    owner: &str,
    contact: &str,
    kind: SubscriptionType,
    stanza: Element,
) -> Result<(), StoreError> {
    if !ctx.store.account_exists(owner).await? {
        if kind == SubscriptionType::Subscribe {
            // §3.1.3: no such user — answer as if refused.
            send_from_server(ctx, owner, contact, SubscriptionType::Unsubscribed).await;
        }
        return Ok(());
    }
    let pending_in = match kind {
        // The contact takes its request back along with any subscription (§3.3.3).
        SubscriptionType::Unsubscribe => ctx.store.remove_pending_in(owner, contact).await?,
        // A request already waiting is neither stored nor delivered again (Appendix A.3.1).
        SubscriptionType::Subscribe => ctx.store.has_pending_in(owner, contact).await?,
        _ => false,
    };
    let mut effects = Vec::new();
    let update = update(ctx, owner, contact, |item| {
        let step = rules::inbound(item, pending_in, kind);
        effects = step.effects;
        step.item
    })
    .await?;
    let stanza = Arc::new(stanza);
    for effect in effects {
        match effect {
            Effect::Push => push_written(ctx, owner, &update),
            Effect::DeliverToUser => deliver_to_available(ctx, owner, &stanza),
            Effect::Reply(reply) => send_from_server(ctx, owner, contact, reply).await,
            Effect::PresenceToContact => send_current_presence(ctx, owner, contact).await,
            Effect::UnavailableToContact => send_unavailable_presence(ctx, owner, contact).await,
            Effect::RemovePendingIn => {
                ctx.store.remove_pending_in(owner, contact).await?;
            }
            Effect::StorePendingIn => {
                let max = ctx.config.limits.pending_subscriptions_max;
                match ctx
                    .store
                    .add_pending_in(owner, contact, &stanza.to_stream_xml(), max)
                    .await
                {
                    Ok(()) => {}
                    Err(StoreError::PendingFull) => {
                        // Not stored, not shown: the sender hears why (their `to` is a bare
                        // JID, so the error goes to their available resources).
                        tracing::debug!(%owner, "subscription request refused: too many pending");
                        let error = crate::stanza::error_reply(
                            &stanza,
                            Condition::ResourceConstraint,
                            Some("too many subscription requests are waiting"),
                        );
                        deliver_to_available(ctx, contact, &Arc::new(error));
                        // Nothing waits here, so the sender's roster must not show it pending.
                        let unasked = super::update(ctx, contact, owner, |item| {
                            item.filter(|i| i.ask).map(|i| RosterItem {
                                ask: false,
                                ..i.clone()
                            })
                        })
                        .await?;
                        push_written(ctx, contact, &unasked);
                        return Ok(());
                    }
                    Err(e) => return Err(e),
                }
            }
            Effect::Route => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
