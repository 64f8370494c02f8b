//! Presence (RFC 6121 §4): broadcast to subscribers, probes on initial presence, directed
//! presence, unavailable when a session ends — and, at initial presence, delivery of
//! stored subscription requests and offline messages. Subscription stanzas are handed to
//! [`crate::roster::subscription`].

use std::sync::Arc;

use jid::Jid;

use crate::context::Context;
use crate::roster::subscription;
use crate::router::{bounce, target, Target};
use crate::sessions::Session;
use crate::stanza::{Condition, SubscriptionType};
use crate::xml::{Element, NS_CLIENT};

/// A presence stanza sent by a local client.
pub async fn outbound(ctx: &Arc<Context>, client: &mut Session, stanza: Element, to: Option<Jid>) {
    let ptype = stanza.get_attr("type").unwrap_or("available").to_string();
    match (ptype.as_str(), to) {
        ("available" | "unavailable", None) => broadcast(ctx, client, stanza, ptype == "available").await,
        ("available" | "unavailable", Some(to)) => directed(ctx, client, stanza, &to, ptype == "available"),
        (kind @ ("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed"), Some(to)) => {
            if let Some(kind) = SubscriptionType::parse(kind) {
                subscription::outbound(ctx, client, stanza, kind, &to).await
            }
        }
        ("probe", Some(to)) => {
            // Clients should not probe (§4.3), but answering from what we know is harmless.
            let contact = to.to_bare().to_string();
            if may_see_presence(ctx, &contact, &client.bare).await {
                send_current_presence(ctx, &contact, &client.jid.to_string());
            }
        }
        ("error", Some(to)) => {
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
        _ => bounce(ctx, &stanza, Condition::BadRequest, None),
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
        subscription::pending_requests(ctx, &client.bare).await
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
    } else {
        ctx.sessions.set_presence(&client.bare, client.id, None, 0);
        client.available = false;
        // Back to this resource too (§4.5.2). A session that ended is out of the table
        // already, so it is sent nothing.
        if let Some(me) = &me {
            me.send(stanza.clone());
        }
    }
    // To subscribers (from/both), then to our other available resources.
    for item in roster.iter().filter(|i| i.subscription.has_from()) {
        deliver_to_available(ctx, &item.contact, &stanza);
    }
    for r in ctx.sessions.resources(&client.bare) {
        if r.available() && r.id != client.id {
            r.send(stanza.clone());
        }
    }
    if !available {
        for to in std::mem::take(&mut client.directed) {
            deliver_directed(ctx, &to, &stanza);
        }
        return;
    }
    if initial {
        // Probes (§4.3): for local contacts we already know the answer.
        let me = client.jid.to_string();
        for item in roster.iter().filter(|i| i.subscription.has_to()) {
            send_current_presence(ctx, &item.contact, &me);
        }
        subscription::redeliver_pending(ctx, client, pending).await;
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

/// Directed presence (§4.6) to one entity.
fn directed(ctx: &Arc<Context>, client: &mut Session, stanza: Element, to: &Jid, available: bool) {
    let key = to.to_string();
    if available {
        client.directed.insert(key.clone());
    } else {
        client.directed.remove(&key);
    }
    match target(ctx, to) {
        Target::Remote => bounce(ctx, &stanza, Condition::RemoteServerNotFound, None),
        _ => deliver_directed(ctx, &key, &Arc::new(stanza)),
    }
}

fn deliver_directed(ctx: &Context, to: &str, stanza: &Arc<Element>) {
    let Ok(jid) = Jid::new(to) else { return };
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

/// Deliver presence to every available resource of a local account (§4.2.3: presence is
/// for resources that sent initial presence).
pub fn deliver_to_available(ctx: &Context, bare: &str, stanza: &Arc<Element>) {
    for r in ctx.sessions.resources(bare).into_iter().filter(|r| r.available()) {
        r.send(stanza.clone());
    }
}

/// Send `owner`'s current presence (one stanza per available resource) to `to`: a full JID
/// gets it directly, a bare JID on all its available resources.
pub fn send_current_presence(ctx: &Context, owner: &str, to: &str) {
    for r in ctx.sessions.resources(owner) {
        let Some(p) = &r.presence else { continue };
        let mut p = (**p).clone();
        p.set_attr("to", to);
        deliver_directed(ctx, to, &Arc::new(p));
    }
}

/// Send `owner`'s unavailable presence (per available resource) to `to`'s resources.
pub fn send_unavailable_presence(ctx: &Context, owner: &str, to: &str) {
    for r in ctx.sessions.resources(owner).into_iter().filter(|r| r.available()) {
        let p = Element::new("presence", NS_CLIENT)
            .attr("from", format!("{owner}/{}", r.resource))
            .attr("to", to)
            .attr("type", "unavailable");
        deliver_directed(ctx, to, &Arc::new(p));
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
            deliver_directed(ctx, &to, &stanza);
        }
    }
}

/// Offline messages, stamped with XEP-0203 delay, to a resource that just came online
/// (or that is online when a message is stored late, see [`offline_stored`]). One delivery
/// per account at a time on this node: a request during one makes it run once more, so a
/// message stored meanwhile is not left behind and none is sent twice.
pub async fn deliver_offline(ctx: &Arc<Context>, bare: &str, resource: &str) {
    if let Some(turn) = OfflineTurn::take(ctx, bare) {
        turn.run(Some(resource.to_string())).await;
    }
}

/// This node's one offline delivery for an account (`Context::offline_delivery`): whoever
/// holds it delivers; anyone asking meanwhile only marks that it must run once more.
/// Given back when dropped, even by a task that ends early; a request that came in
/// meanwhile is then handed on to [`offline_stored`], so none is lost.
struct OfflineTurn {
    ctx: Arc<Context>,
    bare: String,
    done: bool,
}

impl OfflineTurn {
    /// The turn, or `None` (and a request to run again) when a delivery is running.
    fn take(ctx: &Arc<Context>, bare: &str) -> Option<OfflineTurn> {
        let mut running = ctx.offline_delivery.lock().expect("offline lock");
        if let Some(again) = running.get_mut(bare) {
            *again = true;
            return None;
        }
        running.insert(bare.to_string(), false);
        Some(OfflineTurn {
            ctx: ctx.clone(),
            bare: bare.to_string(),
            done: false,
        })
    }

    /// Deliver to `resource` until nobody asked again meanwhile, then give the turn back.
    /// With no resource (initial presence with a negative priority, §4.7.2.1), a request
    /// that came in meanwhile goes to the resource [`offline_stored`] would choose.
    async fn run(mut self, mut resource: Option<String>) {
        loop {
            if let Some(resource) = &resource {
                deliver_offline_once(&self.ctx, &self.bare, resource).await;
            }
            {
                let mut running = self.ctx.offline_delivery.lock().expect("offline lock");
                if running.get(&self.bare) == Some(&true) {
                    running.insert(self.bare.clone(), false);
                } else {
                    running.remove(&self.bare);
                    self.done = true;
                    return;
                }
            }
            if resource.is_none() {
                resource = offline_target(&self.ctx, &self.bare).map(|r| r.resource);
            }
        }
    }
}

impl Drop for OfflineTurn {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let again = match self.ctx.offline_delivery.lock() {
            Ok(mut running) => running.remove(&self.bare) == Some(true),
            Err(_) => return,
        };
        if again {
            offline_stored(&self.ctx, &self.bare);
        }
    }
}

/// The local resource that takes stored messages: available, non-negative priority, the
/// highest one.
fn offline_target(ctx: &Context, bare: &str) -> Option<crate::sessions::Resource> {
    ctx.sessions
        .resources(bare)
        .into_iter()
        .filter(|r| r.is_local() && r.available() && r.priority >= 0)
        .max_by_key(|r| r.priority)
}

/// A message was stored offline for `bare` (here or, in a pool, on another node): if one of
/// its resources here is already online and took its offline messages, hand it this one
/// too. Closes the race between a login elsewhere and a store that lands just after it.
/// The delivery runs in a task of its own: whoever stored the message (a sender's session,
/// a pool link) never waits on the recipient's queue.
pub fn offline_stored(ctx: &Arc<Context>, bare: &str) {
    if let Some(r) = offline_target(ctx, bare) {
        let ctx = ctx.clone();
        let bare = bare.to_string();
        tokio::spawn(async move { deliver_offline(&ctx, &bare, &r.resource).await });
    }
}

/// Offline messages read from storage at a time: a user's whole quota of large stanzas
/// is never in memory at once.
const OFFLINE_BATCH: i64 = 50;

/// Queue the stored messages to one resource, pacing on its reading (in its own task at
/// initial presence, or in the task [`offline_stored`] spawns). Messages are deleted once
/// queued; one that cannot be read back is kept and logged, never dropped.
async fn deliver_offline_once(ctx: &Arc<Context>, bare: &str, resource: &str) {
    let Some(me) = ctx.sessions.resource(bare, resource) else {
        return;
    };
    let Some(tx) = me.local_tx() else { return };
    let domain = bare.rsplit('@').next().unwrap_or_default().to_string();
    let limits = ctx.config.stream_limits(true);
    let mut after = 0;
    loop {
        let batch = match ctx.store.offline_messages(bare, after, OFFLINE_BATCH).await {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "loading offline messages failed");
                return;
            }
        };
        let Some(last) = batch.last().map(|m| m.0) else {
            return;
        };
        after = last;
        // Runs of consecutive queued ids, deleted afterwards; unreadable ones split the runs.
        let mut queued = Runs::default();
        let mut gone = false;
        for (id, xml, stamp) in &batch {
            let Some(mut stanza) = crate::stream::reader::parse_stored_under(xml, limits).await else {
                tracing::error!(
                    owner = %bare,
                    id,
                    "an offline message cannot be read back; it stays in storage"
                );
                queued.gap();
                continue;
            };
            let when = chrono::DateTime::from_timestamp(*stamp, 0).unwrap_or_default();
            stanza.children.push(crate::xml::Node::Element(
                Element::new("delay", "urn:xmpp:delay")
                    .attr("from", domain.as_str())
                    .attr("stamp", when.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
            ));
            if tx
                .send(crate::stream::Outbound::Stanza(Arc::new(stanza)))
                .await
                .is_err()
            {
                // The client left mid-delivery: the rest stays for next time (what was
                // queued but not written comes back from its writer and is routed again).
                gone = true;
                break;
            }
            queued.push(*id);
        }
        for (first, last) in queued.finish() {
            if let Err(e) = ctx.store.delete_offline(bare, first, last).await {
                tracing::error!(error = %e, "deleting delivered offline messages failed");
            }
        }
        if gone {
            return;
        }
    }
}

/// Consecutive ids as `(first, last)` ranges, so deleting what was delivered takes one
/// statement per range rather than one per message.
#[derive(Default)]
struct Runs {
    done: Vec<(i64, i64)>,
    open: Option<(i64, i64)>,
}

impl Runs {
    fn push(&mut self, id: i64) {
        self.open = Some(match self.open {
            Some((first, _)) => (first, id),
            None => (id, id),
        });
    }

    fn gap(&mut self) {
        self.done.extend(self.open.take());
    }

    fn finish(mut self) -> Vec<(i64, i64)> {
        self.gap();
        self.done
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
        for r in ctx.sessions.resources(bare) {
            if r.is_local() && r.available() {
                r.send(stanza.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Runs;

    #[test]
    fn runs_split_at_unreadable_messages() {
        let mut r = Runs::default();
        for id in [3, 5, 9] {
            r.push(id);
        }
        r.gap();
        r.gap();
        r.push(12);
        r.push(20);
        assert_eq!(r.finish(), vec![(3, 9), (12, 20)]);
        assert!(Runs::default().finish().is_empty());
    }
}
