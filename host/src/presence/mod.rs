//! Presence (RFC 6121 §4): broadcast to subscribers, probes on initial presence, directed
//! presence, unavailable when a session ends — and, at initial presence, delivery of
//! stored subscription requests and offline messages. Subscription stanzas are handed to
//! [`crate::roster::subscription`].

use std::sync::Arc;

use jid::Jid;

use crate::context::Context;
use crate::delivery::offline::{deliver_offline, OfflineTurn};
use crate::delivery::{deliver_to_available, judged_presence, presence_to_contact, target, Target};
use crate::features::Event;
use crate::sessions::Session;
use crate::stanza::PresenceType;
use crate::xml::{Element, NS_CLIENT};

/// A presence stanza sent by a local client, checked by the router (subscription stanzas
/// with a `to` go to `roster::subscription` instead; what cannot be served was refused).
pub async fn outbound(ctx: &Arc<Context>, client: &mut Session, stanza: Element, ptype: PresenceType, to: Option<Jid>) {
    let available = ptype == PresenceType::Available;
    match (ptype, to) {
        (PresenceType::Available | PresenceType::Unavailable, None) => broadcast(ctx, client, stanza, available).await,
        (PresenceType::Available | PresenceType::Unavailable, Some(to)) => {
            directed(ctx, client, stanza, &to, available)
        }
        (PresenceType::Probe, Some(to)) => {
            // Clients should not probe (§4.3), but answering from what we know is harmless.
            let contact = to.to_bare().to_string();
            if may_see_presence(ctx, &contact, &client.bare).await {
                send_current_presence(ctx, &contact, &client.jid.to_string()).await;
            }
        }
        (PresenceType::Error, Some(to)) => {
            if let Target::Local {
                bare,
                resource: Some(res),
            } = target(ctx, &to)
            {
                if let Some(r) = ctx.sessions.resource(&bare, &res) {
                    r.send(Arc::new(stanza));
                }
            }
        }
        // Refused by the router (see `router::presence_refusal`).
        (PresenceType::Probe | PresenceType::Error | PresenceType::Subscription(_), _) => {}
    }
}

fn priority_of(stanza: &Element) -> i8 {
    stanza
        .get_child("priority", NS_CLIENT)
        .and_then(|p| p.text_content().trim().parse::<i8>().ok())
        .unwrap_or(0)
}

/// Does `owner` let `viewer` see its presence (viewer has a `to`-subscription to owner)?
async fn may_see_presence(ctx: &Context, owner: &str, viewer: &str) -> bool {
    if owner == viewer {
        return true;
    }
    matches!(ctx.store.roster_item(owner, viewer).await, Ok(Some(item)) if item.subscription.has_from())
}

/// Broadcast presence without a `to` (§4.2, §4.4, §4.5).
///
/// At initial presence the resource sees, in this order: the echo of its own presence,
/// its contacts' presence (the probes, §4.3), stored subscription requests, then stored
/// messages. Everything that can wait on storage is read before the resource becomes
/// available, the echo is queued before routing can see it as available (so no live
/// stanza overtakes it), and this node's offline delivery for the account is held until
/// the end (so a message stored meanwhile, here or on another node that tells us with
/// `OfflineStored`, waits for that delivery instead of overtaking the echo).
async fn broadcast(ctx: &Arc<Context>, client: &mut Session, stanza: Element, available: bool) {
    let initial = available && !client.available;
    let roster = ctx.store.roster(&client.bare).await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "roster load failed during presence broadcast");
        Vec::new()
    });
    // Read stored subscription requests last before becoming available, with no wait in
    // between: one arriving later is delivered live instead, so none is shown twice and
    // none is missed.
    let pending = if initial {
        pending_requests(ctx, &client.bare).await
    } else {
        Vec::new()
    };
    let offline_turn = if initial {
        OfflineTurn::take(ctx, &client.bare)
    } else {
        None
    };
    let stanza = Arc::new(stanza);
    let me = ctx
        .sessions
        .resources(&client.bare)
        .into_iter()
        .find(|r| r.id == client.id);
    if available {
        // Back to this resource first (§4.2.2, §4.4.2).
        if let Some(me) = &me {
            me.send(stanza.clone());
        }
        ctx.sessions
            .set_presence(&client.bare, client.id, Some(stanza.clone()), priority_of(&stanza));
        client.available = true;
        client.last_presence = Some(stanza.clone());
        learn_caps(ctx, client.jid.to_string(), &stanza, initial);
    } else {
        ctx.sessions.set_presence(&client.bare, client.id, None, 0);
        if client.available {
            let last = client.last_presence.take();
            ctx.features.notify(Event::UserOffline {
                jid: client.jid.to_string(),
                presence: stanza.clone(),
                features: last.and_then(|p| ctx.caps.cached(&p)).unwrap_or_else(|| Arc::from([])),
            });
        }
        client.available = false;
        // Back to this resource too (§4.5.2). A session that ended is out of the table
        // already, so it is sent nothing.
        if let Some(me) = &me {
            me.send(stanza.clone());
        }
    }
    // To subscribers (from/both), then to our other available resources.
    for item in roster.iter().filter(|i| i.subscription.has_from()) {
        presence_to_contact(ctx, &stanza, &client.bare, &item.contact).await;
    }
    for r in ctx.sessions.resources(&client.bare) {
        if r.available() && r.id != client.id {
            r.send(stanza.clone());
        }
    }
    if !available {
        // §4.6.3: those the resource sent directed presence to learn it is gone too — once:
        // a subscriber's available resources were told just above.
        for to in std::mem::take(&mut client.directed) {
            if !told_by_broadcast(ctx, &roster, &to) {
                deliver_directed_for(ctx, &client.bare, &to, &stanza).await;
            }
        }
        return;
    }
    if initial {
        // Probes (§4.3): for local contacts we already know the answer.
        let me = client.jid.to_string();
        for item in roster.iter().filter(|i| i.subscription.has_to()) {
            send_current_presence(ctx, &item.contact, &me).await;
        }
        redeliver_pending(ctx, client, pending).await;
        let resource = client.jid.resource().as_str().to_string();
        let takes_offline = priority_of(&stanza) >= 0;
        match offline_turn {
            Some(turn) => turn.run(takes_offline.then_some(resource)).await,
            // Another resource's delivery is running: it runs once more for what it has.
            None if takes_offline => deliver_offline(ctx, &client.bare, &resource).await,
            None => {}
        }
    }
}

/// What a resource's available presence says of its entity capabilities (XEP-0115): known
/// ones at once, unknown ones learnt in the background (asking the resource). Its initial
/// presence is told to the features with them, so a feature learns a resource's
/// capabilities with its arrival (PEP's `+notify`).
fn learn_caps(ctx: &Arc<Context>, jid: String, presence: &Arc<Element>, initial: bool) {
    let known = match crate::caps::CapsRef::of(presence) {
        None => Some(Arc::from([])),
        Some(_) => ctx.caps.cached(presence),
    };
    match known {
        Some(features) if initial => ctx.features.notify(Event::UserOnline {
            jid,
            presence: presence.clone(),
            features,
        }),
        Some(_) => {}
        None => {
            let (ctx, presence) = (ctx.clone(), presence.clone());
            tokio::spawn(async move {
                let features = ctx.caps.features(&ctx.store, &ctx.sessions, &jid, &presence).await;
                if initial {
                    ctx.features.notify(Event::UserOnline {
                        jid,
                        presence,
                        features,
                    });
                }
            });
        }
    }
}

/// Remember (or forget) a resource's available presence to a service such as a MUC room,
/// which the router hands to the service itself: so the service is told when the resource
/// goes unavailable or offline without saying so (§4.6.3).
pub fn note_directed_to_feature(client: &mut Session, stanza: &Element, to: &Jid) {
    match PresenceType::of(stanza) {
        Some(PresenceType::Available) | None => {
            client.directed.insert(to.to_string());
        }
        Some(PresenceType::Unavailable | PresenceType::Error) => {
            client.directed.remove(to.as_str());
        }
        _ => {}
    }
}

/// Directed presence (§4.6) to one entity.
fn directed(ctx: &Arc<Context>, client: &mut Session, stanza: Element, to: &Jid, available: bool) {
    let key = to.to_string();
    if available {
        client.directed.insert(key.clone());
    } else {
        client.directed.remove(&key);
    }
    deliver_directed(ctx, &key, &Arc::new(stanza));
}

/// Did the broadcast of an unavailable presence reach `to` already? It reached every
/// available resource of every `from`/`both` contact.
fn told_by_broadcast(ctx: &Context, roster: &[crate::store::RosterItem], to: &str) -> bool {
    let Ok(jid) = Jid::new(to) else { return false };
    let bare = jid.to_bare().to_string();
    if !roster.iter().any(|i| i.contact == bare && i.subscription.has_from()) {
        return false;
    }
    match jid.resource() {
        None => true,
        Some(res) => ctx
            .sessions
            .resource(&bare, res.as_str())
            .is_some_and(|r| r.available()),
    }
}

fn deliver_directed(ctx: &Context, to: &str, stanza: &Arc<Element>) {
    let Ok(jid) = Jid::new(to) else { return };
    if let Some(feature) = ctx.features.for_address(jid.domain().as_str()) {
        // A service the resource sent presence to (a MUC room it is in) hears it too: how
        // a room learns that an occupant went offline. Presence is never answered here.
        let mut stanza = (**stanza).clone();
        stanza.set_attr("to", to);
        return crate::features::finish(feature.submit(&stanza), Box::new(drop));
    }
    let bare = jid.to_bare().to_string();
    match jid.resource() {
        Some(res) => {
            if let Some(r) = ctx.sessions.resource(&bare, res.as_str()) {
                r.send(stanza.clone());
            }
        }
        None => deliver_to_available(ctx, &bare, stanza),
    }
}

/// Send `owner`'s current presence (one stanza per available resource) to `to`: a full JID
/// gets it directly, a bare JID on all its available resources. Judged at both filter
/// points like the owner's own presence (a probe's answer is presence-out of the owner's).
pub async fn send_current_presence(ctx: &Context, owner: &str, to: &str) {
    for r in ctx.sessions.resources(owner) {
        let Some(p) = &r.presence else { continue };
        let mut p = (**p).clone();
        p.set_attr("to", to);
        deliver_directed_for(ctx, owner, to, &Arc::new(p)).await;
    }
}

/// Send `owner`'s unavailable presence (per available resource) to `to`'s resources,
/// judged like the owner's own presence.
pub async fn send_unavailable_presence(ctx: &Context, owner: &str, to: &str) {
    for r in ctx.sessions.resources(owner).into_iter().filter(|r| r.available()) {
        let p = Element::new("presence", NS_CLIENT)
            .attr("from", format!("{owner}/{}", r.resource))
            .attr("to", to)
            .attr("type", "unavailable");
        deliver_directed_for(ctx, owner, to, &Arc::new(p)).await;
    }
}

/// [`deliver_directed`] for presence the server sends on the local user `owner`'s behalf
/// (not what the client addressed itself, which the router judged): when a filter has
/// rules for `owner` or for the hosted account `to` names, the copy is addressed and
/// judged at both filter points first.
async fn deliver_directed_for(ctx: &Context, owner: &str, to: &str, stanza: &Arc<Element>) {
    let Ok(jid) = Jid::new(to) else { return };
    let domain = jid.domain().as_str();
    if !ctx.hosts(domain) || ctx.features.for_address(domain).is_some() {
        return deliver_directed(ctx, to, stanza);
    }
    let bare = jid.to_bare().to_string();
    let resource = jid.resource().map(|r| r.as_str());
    if let Some(stanza) = judged_presence(ctx, stanza, owner, to, (&bare, resource)).await {
        deliver_directed(ctx, to, &stanza);
    }
}

/// The session ended without unavailable presence: send it on the client's behalf (§4.5.2).
pub async fn went_offline(ctx: &Arc<Context>, client: &mut Session) {
    let stanza = Element::new("presence", NS_CLIENT)
        .attr("from", client.jid.to_string())
        .attr("type", "unavailable");
    if client.available {
        broadcast(ctx, client, stanza, false).await;
    } else {
        let stanza = Arc::new(stanza);
        for to in std::mem::take(&mut client.directed) {
            deliver_directed_for(ctx, &client.bare, &to, &stanza).await;
        }
    }
}

/// A session on another node vanished with that node (failover): tell the contacts served
/// *here* that it is unavailable. Every survivor does this for its own sessions, so each
/// contact hears it once, from the node that serves it.
pub async fn remote_session_lost(ctx: &Arc<Context>, lost: &crate::sessions::Resource) {
    if !lost.available() {
        return;
    }
    let stanza = Arc::new(
        Element::new("presence", NS_CLIENT)
            .attr("from", format!("{}/{}", lost.bare, lost.resource))
            .attr("type", "unavailable"),
    );
    let roster = match ctx.store.roster(&lost.bare).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "roster load failed during failover");
            return;
        }
    };
    let contacts = roster
        .iter()
        .filter(|i| i.subscription.has_from())
        .map(|i| i.contact.as_str());
    // Other resources of the same account see it go too (§4.5.2).
    for bare in contacts.chain(std::iter::once(&*lost.bare)) {
        let copy = match bare == &*lost.bare {
            true => Some(stanza.clone()),
            false => judged_presence(ctx, &stanza, &lost.bare, bare, (bare, None)).await,
        };
        let Some(copy) = copy else { continue };
        for r in ctx.sessions.resources(bare) {
            if r.is_local() && r.available() {
                r.send(copy.clone());
            }
        }
    }
}

/// Stored subscription requests for `owner` (§3.1.3: a request waits until answered).
pub async fn pending_requests(ctx: &Context, owner: &str) -> Vec<(String, String)> {
    ctx.store.pending_in(owner).await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "loading pending subscription requests failed");
        Vec::new()
    })
}

/// Re-send stored subscription requests to a resource that just sent initial presence.
pub async fn redeliver_pending(ctx: &Context, client: &Session, pending: Vec<(String, String)>) {
    let Some(me) = ctx.sessions.resource(&client.bare, client.jid.resource().as_str()) else {
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

#[cfg(test)]
mod tests;
