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

use super::{push, update, update_and_push};
use crate::c2s::Bound;
use crate::presence::{deliver_to_available, send_current_presence, send_unavailable_presence};
use crate::router::{bounce, target, Target};
use crate::server::Server;
use crate::stanza::Condition;
use crate::store::{RosterItem, StoreError};
use crate::xml::{Element, NS_CLIENT};

/// A subscription stanza from a local client.
pub async fn outbound(server: &Arc<Server>, client: &Bound, mut stanza: Element, ptype: &str, to: &Jid) {
    let contact = to.to_bare().to_string();
    let user = client.bare.clone();
    // §3.1.2 and friends: subscription stanzas travel between bare JIDs.
    stanza.set_attr("from", user.as_str());
    stanza.set_attr("to", contact.as_str());
    if contact == user {
        return;
    }
    let decision = match process_outbound(server, &user, &contact, ptype).await {
        Ok(decision) => decision,
        Err(e) => {
            let (condition, text) = match e {
                // Nothing was stored and nothing goes to the contact.
                StoreError::RosterFull => (Condition::NotAllowed, Some("roster is full")),
                e => {
                    tracing::error!(error = %e, "subscription processing failed");
                    (Condition::InternalServerError, None)
                }
            };
            // The error goes back to the sending resource, not to the bare JID routed on.
            let mut original = stanza;
            original.set_attr("from", client.jid.to_string());
            return bounce(server, &original, condition, text);
        }
    };
    if decision.cancels_presence {
        cancel_presence(server, &user, &contact);
    }
    if decision.route {
        deliver(server, &user, &contact, ptype, stanza).await;
    }
    // After routing the approval, the contact gets the user's current presence (§3.1.5).
    if ptype == "subscribed" && decision.route {
        send_current_presence(server, &user, &contact);
    }
}

/// The contact is losing its subscription to `user`'s presence: while it is still
/// subscribed, it gets unavailable presence from each of `user`'s available resources
/// (§3.2.2), so its client stops showing the user online. Sent before the `unsubscribed`
/// is routed, by a client's own `unsubscribed` and by a roster removal (§2.5.2) alike.
pub fn cancel_presence(server: &Server, user: &str, contact: &str) {
    send_unavailable_presence(server, user, contact);
}

/// What the sender's half decided about a subscription stanza.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Decision {
    /// The stanza goes on to the contact.
    route: bool,
    /// The contact had a subscription to the user's presence that this stanza cancels.
    cancels_presence: bool,
}

impl Decision {
    fn route(route: bool) -> Self {
        Decision {
            route,
            cancels_presence: false,
        }
    }
}

/// Update the sender's roster; returns what happens next. Each change of the item is one
/// atomic read-modify-write ([`update_and_push`]): the contact's inbound half may be
/// changing the same item at this moment (simultaneous handshakes).
async fn process_outbound(server: &Server, user: &str, contact: &str, ptype: &str) -> Result<Decision, StoreError> {
    let new = || RosterItem::new(contact);
    match ptype {
        "subscribe" => {
            update_and_push(server, user, contact, |item| {
                let mut item = item.cloned().unwrap_or_else(new);
                (!item.subscription.has_to() && !item.ask).then(|| {
                    item.ask = true;
                    item
                })
            })
            .await?;
            Ok(Decision::route(true))
        }
        "subscribed" => {
            let pending = server.store.has_pending_in(user, contact).await?;
            // Stored first: a full roster refuses the approval and keeps the request.
            update_and_push(server, user, contact, |item| {
                let mut item = item.cloned().unwrap_or_else(new);
                if pending {
                    item.subscription = item.subscription.with_from(true);
                    item.approved = false;
                    Some(item)
                } else if item.subscription.has_from() || item.approved {
                    None
                } else {
                    // Pre-approval (§3.4).
                    item.approved = true;
                    Some(item)
                }
            })
            .await?;
            if pending {
                server.store.remove_pending_in(user, contact).await?;
            }
            Ok(Decision::route(pending))
        }
        "unsubscribe" => {
            update_and_push(server, user, contact, |item| {
                let mut item = item?.clone();
                (item.subscription.has_to() || item.ask).then(|| {
                    item.subscription = item.subscription.with_to(false);
                    item.ask = false;
                    item
                })
            })
            .await?;
            Ok(Decision::route(true))
        }
        "unsubscribed" => {
            let was_pending = server.store.remove_pending_in(user, contact).await?;
            let update = update_and_push(server, user, contact, |item| {
                let mut item = item?.clone();
                (item.subscription.has_from() || item.approved).then(|| {
                    item.subscription = item.subscription.with_from(false);
                    item.approved = false;
                    item
                })
            })
            .await?;
            Ok(Decision {
                route: was_pending || update.written.is_some(),
                cancels_presence: update.before.is_some_and(|i| i.subscription.has_from()),
            })
        }
        _ => Ok(Decision::route(false)),
    }
}

/// Carry a subscription stanza to the contact's side.
fn deliver<'a>(
    server: &'a Arc<Server>,
    from: &'a str,
    contact: &'a str,
    ptype: &'a str,
    stanza: Element,
) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
    Box::pin(async move {
        let Ok(to) = Jid::new(contact) else { return };
        match target(server, &to) {
            Target::Local { bare, .. } => {
                if let Err(e) = inbound(server, &bare, from, ptype, stanza).await {
                    tracing::error!(error = %e, "inbound subscription processing failed");
                }
            }
            Target::Remote => bounce(server, &stanza, Condition::RemoteServerNotFound, None),
            Target::Plugin(plugin) => crate::router::dispatch_to_plugin(server, &plugin, stanza),
            Target::Server => {}
        }
    })
}

/// A subscription stanza the server itself sends on `from`'s behalf (e.g. after a roster
/// removal, §2.5.2).
pub async fn send_from_server(server: &Arc<Server>, from: &str, to: &str, ptype: &str) {
    let stanza = Element::new("presence", NS_CLIENT)
        .attr("from", from)
        .attr("to", to)
        .attr("type", ptype);
    deliver(server, from, to, ptype, stanza).await;
}

/// A subscription stanza arriving for local account `owner` from `contact`.
async fn inbound(
    server: &Arc<Server>,
    owner: &str,
    contact: &str,
    ptype: &str,
    stanza: Element,
) -> Result<(), StoreError> {
    if !server.store.account_exists(owner).await? {
        if ptype == "subscribe" {
            // §3.1.3: no such user — answer as if refused.
            send_from_server(server, owner, contact, "unsubscribed").await;
        }
        return Ok(());
    }
    // Each change of the item is one atomic read-modify-write: the owner's own outbound
    // half may be changing the same item at this moment (simultaneous handshakes).
    let stanza = Arc::new(stanza);
    match ptype {
        "subscribe" => {
            let update = update_and_push(server, owner, contact, |item| {
                let mut item = item?.clone();
                (item.approved && !item.subscription.has_from()).then(|| {
                    item.subscription = item.subscription.with_from(true);
                    item.approved = false;
                    item
                })
            })
            .await?;
            if update.before.as_ref().is_some_and(|i| i.subscription.has_from()) {
                // Already subscribed: answer for the user (§3.1.3 rule 1).
                send_from_server(server, owner, contact, "subscribed").await;
            } else if update.written.is_some() {
                // Pre-approved (§3.4).
                send_from_server(server, owner, contact, "subscribed").await;
                send_current_presence(server, owner, contact);
            } else {
                let max = server.config.limits.pending_subscriptions_max;
                match server
                    .store
                    .add_pending_in(owner, contact, &stanza.to_stream_xml(), max)
                    .await
                {
                    Ok(()) => deliver_to_available(server, owner, &stanza),
                    Err(StoreError::PendingFull) => {
                        // Not stored, not shown: the sender hears why (their `to` is a bare
                        // JID, so the error goes to their available resources).
                        tracing::debug!(%owner, "subscription request refused: too many pending");
                        let error = crate::stanza::error_reply(
                            &stanza,
                            Condition::ResourceConstraint,
                            Some("too many subscription requests are waiting"),
                        );
                        deliver_to_available(server, contact, &Arc::new(error));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        "subscribed" => {
            let update = update(server, owner, contact, |item| {
                let mut item = item?.clone();
                item.ask.then(|| {
                    item.subscription = item.subscription.with_to(true);
                    item.ask = false;
                    item
                })
            })
            .await?;
            if let Some((item, version)) = update.written {
                // §3.1.6: the approval reaches the user's resources first, then the roster
                // push with the new state (a client that sees the push first shows a
                // subscription it has not been told was approved).
                deliver_to_available(server, owner, &stanza);
                push(server, owner, &item, false, version);
            }
        }
        "unsubscribe" => {
            let was_pending = server.store.remove_pending_in(owner, contact).await?;
            let update = update_and_push(server, owner, contact, |item| {
                let mut item = item?.clone();
                item.subscription.has_from().then(|| {
                    item.subscription = item.subscription.with_from(false);
                    item
                })
            })
            .await?;
            if update.written.is_some() {
                deliver_to_available(server, owner, &stanza);
                send_unavailable_presence(server, owner, contact);
            } else if was_pending {
                deliver_to_available(server, owner, &stanza);
            }
        }
        "unsubscribed" => {
            let update = update_and_push(server, owner, contact, |item| {
                let mut item = item?.clone();
                (item.subscription.has_to() || item.ask).then(|| {
                    item.subscription = item.subscription.with_to(false);
                    item.ask = false;
                    item
                })
            })
            .await?;
            if update.written.is_some() {
                deliver_to_available(server, owner, &stanza);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Stored subscription requests for `owner` (§3.1.3: a request waits until answered).
pub async fn pending_requests(server: &Server, owner: &str) -> Vec<(String, String)> {
    server.store.pending_in(owner).await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "loading pending subscription requests failed");
        Vec::new()
    })
}

/// Re-send stored subscription requests to a resource that just sent initial presence.
pub async fn redeliver_pending(server: &Server, client: &Bound, pending: Vec<(String, String)>) {
    let Some(me) = server.sessions.resource(&client.bare, client.jid.resource().as_str()) else {
        return;
    };
    for (contact, xml) in pending {
        // Re-read under today's rules: a request stored before a rule existed (one that is
        // not namespace-well-formed) is never re-sent as it was (issue 10, item 2); the
        // request itself stands, so the user gets a plain one to answer instead.
        let stanza = match crate::stream::reader::parse_stored(&xml).await {
            Some(stanza) => stanza,
            None => {
                tracing::warn!(%contact, "stored subscription request unreadable; re-sending it without its content");
                Element::new("presence", NS_CLIENT)
                    .attr("from", contact.as_str())
                    .attr("to", client.bare.as_str())
                    .attr("type", "subscribe")
            }
        };
        me.send(Arc::new(stanza));
    }
}
