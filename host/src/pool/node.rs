//! The pool seen from the server: what this node does with link events, how it keeps the
//! mesh of links in line with membership, and the failover of dead nodes' sessions.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::link::{Frame, LinkEvent, Tracked};
use super::Pool;
use crate::context::Context;
use crate::features::Event;

/// Apply what other nodes tell us.
pub async fn run_events(ctx: Arc<Context>, pool: Arc<Pool>, mut events: mpsc::UnboundedReceiver<LinkEvent>) {
    while let Some(event) = events.recv().await {
        match event {
            LinkEvent::Up { node } => {
                // What we missed of the filters' interest sets while it was down.
                ctx.features.reload_interest();
                // Their mirror of us may be stale (a reconnect): replay our sessions.
                for frame in snapshot(&ctx) {
                    if pool.links.send(&node, frame).is_err() {
                        break;
                    }
                }
            }
            // Keep their sessions until the node is declared dead or the link returns: a
            // stanza for them meanwhile fails to forward and falls back to offline storage,
            // and so do the messages the link never confirmed.
            LinkEvent::Down { node, undelivered } => {
                if !undelivered.is_empty() {
                    tracing::info!(%node, stanzas = undelivered.len(), "routing unconfirmed stanzas again");
                }
                for tracked in undelivered {
                    match tracked {
                        // Routed again from scratch: to a session the account has opened
                        // elsewhere meanwhile, or to offline storage.
                        Tracked::Message { bare, xml } => {
                            if let Some(stanza) = crate::stream::reader::parse_stored(&xml).await {
                                crate::delivery::deliver_message(&ctx, &bare, None, stanza).await;
                            }
                        }
                        // To the key's next owner (it waits until there is one).
                        Tracked::Keyed { xml } => keyed_arrived(&ctx, &xml, 0, || {}).await,
                    }
                }
            }
            LinkEvent::Frame { node, frame } => apply(&ctx, &pool, &node, frame).await,
        }
    }
}

/// Our local sessions as the frames that recreate them on a peer.
fn snapshot(ctx: &Context) -> Vec<Frame> {
    let mut frames = Vec::new();
    for r in ctx.sessions.all() {
        let (bare, resource) = (r.bare.to_string(), r.resource.clone());
        frames.push(Frame::SessionUp {
            bare: bare.clone(),
            resource: resource.clone(),
        });
        if let Some(p) = &r.presence {
            frames.push(Frame::SessionPresence {
                bare: bare.clone(),
                resource: resource.clone(),
                presence: Some(p.to_stream_xml()),
                priority: r.priority,
            });
        }
        if r.interested {
            frames.push(Frame::SessionInterested {
                bare: bare.clone(),
                resource: resource.clone(),
            });
        }
        if r.carbons {
            frames.push(Frame::SessionCarbons {
                bare,
                resource,
                enabled: true,
            });
        }
    }
    frames
}

async fn apply(ctx: &Arc<Context>, pool: &Pool, node: &str, frame: Frame) {
    let sessions = &ctx.sessions;
    match frame {
        Frame::Hello { .. } => tracing::warn!(%node, "unexpected hello on an established link"),
        Frame::SessionUp { bare, resource } => sessions.bind_remote(node, &bare, &resource),
        Frame::SessionPresence {
            bare,
            resource,
            presence,
            priority,
        } => {
            let presence = match presence {
                Some(xml) => match crate::stream::reader::parse_stored(&xml).await {
                    Some(p) => Some(Arc::new(p)),
                    None => {
                        tracing::warn!(%node, "garbled presence in a session update");
                        return;
                    }
                },
                None => None,
            };
            sessions.update_remote(node, &bare, &resource, |r| {
                r.presence = presence;
                r.priority = priority;
            });
        }
        Frame::SessionInterested { bare, resource } => {
            sessions.update_remote(node, &bare, &resource, |r| r.interested = true)
        }
        Frame::SessionCarbons {
            bare,
            resource,
            enabled,
        } => sessions.update_remote(node, &bare, &resource, |r| r.carbons = enabled),
        Frame::SessionDown { bare, resource } => {
            sessions.unbind_remote(node, &bare, &resource);
        }
        Frame::Kick { bare, resource, reason } => {
            if let Some(r) = sessions.resource(&bare, &resource).filter(|r| r.is_local()) {
                tracing::info!(jid = %format!("{bare}/{resource}"), %node, ?reason, "session closed at another node's request");
                r.close(reason.stream_error());
            }
        }
        Frame::Stanza {
            bare,
            resource,
            xml,
            seq,
        } => {
            deliver_forwarded(ctx, &bare, &resource, &xml).await;
            if seq > 0 {
                let _ = pool.links.send(node, Frame::Ack { seq });
            }
        }
        Frame::FanOut { xml, targets } => deliver_fanned_out(ctx, &xml, targets).await,
        // Acknowledged once the plugin has handled it, not on arrival: until then the
        // sender keeps it, and sends it to the key's next owner if this node dies first.
        Frame::Keyed { xml, hops, seq } => {
            let ack = (seq > 0).then(|| (pool.links.clone(), node.to_string()));
            keyed_arrived(ctx, &xml, hops, move || {
                if let Some((links, node)) = ack {
                    let _ = links.send(&node, Frame::Ack { seq });
                }
            })
            .await;
        }
        Frame::Interest {
            plugin,
            user,
            has_rules,
        } => ctx.features.interest_changed(&plugin, &user, has_rules),
        Frame::Ack { .. } => {} // consumed by the link itself
        Frame::OfflineStored { bare } => crate::delivery::offline::offline_stored(ctx, &bare),
    }
}

/// A stanza another node routed to a session it believes we serve. Never forwarded
/// again (no loops): if the session is gone, a message is kept offline for the account
/// (headlines and errors are dropped, groupchat bounced) and an IQ request is bounced.
/// Other resources are not tried here: the sending node chose this one, and a bare-JID
/// message reached the others through their own forwards.
async fn deliver_forwarded(ctx: &Arc<Context>, bare: &str, resource: &str, xml: &str) {
    // Accepted and stamped on the other node: read back under the limits for our own output.
    let limits = ctx.config.stream_limits(true);
    let Some(stanza) = crate::stream::reader::parse_stored_under(xml, limits).await else {
        tracing::warn!("garbled stanza on a pool link");
        return;
    };
    deliver_forwarded_element(ctx, bare, resource, stanza).await;
}

/// A stanza for a keyed feature's address that another node routed to us as the key's
/// owner (or that came back from a link that broke): handed to the feature, which serves
/// it here or passes it on once more if the key is not ours after all. If the address is
/// no longer served, the sender gets `service-unavailable`.
async fn keyed_arrived(ctx: &Arc<Context>, xml: &str, hops: u8, handled: impl FnOnce() + Send + 'static) {
    let limits = ctx.config.stream_limits(true);
    let Some(stanza) = crate::stream::reader::parse_stored_under(xml, limits).await else {
        tracing::warn!("garbled keyed stanza on a pool link");
        return handled();
    };
    let feature = stanza
        .get_attr("to")
        .and_then(|to| jid::Jid::new(to).ok())
        .and_then(|to| ctx.features.for_address(to.domain().as_str()));
    match feature {
        Some(feature) => crate::delivery::dispatch_forwarded_to_feature(ctx, &*feature, stanza, hops, handled),
        None => {
            crate::delivery::bounce(ctx, &stanza, crate::stanza::Condition::ServiceUnavailable, None);
            handled();
        }
    }
}

/// A fanned-out stanza another node sent for several of our sessions: read once, each
/// copy addressed to its target and delivered as a forwarded stanza.
async fn deliver_fanned_out(ctx: &Arc<Context>, xml: &str, targets: Vec<crate::sessions::FanOutTarget>) {
    let limits = ctx.config.stream_limits(true);
    let Some(stanza) = crate::stream::reader::parse_stored_under(xml, limits).await else {
        tracing::warn!("garbled fan-out on a pool link");
        return;
    };
    for t in targets {
        let mut copy = stanza.clone();
        copy.set_attr("to", t.to);
        deliver_forwarded_element(ctx, &t.bare, &t.resource, copy).await;
    }
}

/// The recipient's node judges a forwarded stanza at the inbound filter point (the routing
/// node left it to us: `delivery::inbound_here`), then hands it to the session.
async fn deliver_forwarded_element(ctx: &Arc<Context>, bare: &str, resource: &str, stanza: crate::xml::Element) {
    use crate::features::Direction;
    if ctx.features.would_filter(Direction::Inbound, &stanza, None)
        && !crate::delivery::passes_filter(ctx, Direction::Inbound, &stanza, None).await
    {
        return;
    }
    if let Some(r) = ctx.sessions.resource(bare, resource).filter(|r| r.is_local()) {
        if r.send(Arc::new(stanza.clone())) {
            return;
        }
    }
    let condition = crate::stanza::Condition::ServiceUnavailable;
    match (stanza.name.as_str(), stanza.get_attr("type").unwrap_or("normal")) {
        ("message", "headline" | "error") => {}
        ("message", "groupchat") => crate::delivery::bounce(ctx, &stanza, condition, None),
        ("message", _) => crate::delivery::store_offline(ctx, bare, stanza).await,
        ("iq", _) => crate::delivery::bounce(ctx, &stanza, condition, None),
        _ => {}
    }
}

/// Keep one link to every live peer, drop links to nodes whose epoch is no longer live,
/// and fail over the sessions of nodes that left the live set.
pub async fn run_mesh(ctx: Arc<Context>, pool: Arc<Pool>) {
    let mut ticker = tokio::time::interval(Duration::from_millis(pool.config.heartbeat_ms));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Nodes we have mirrored sessions of, with the epoch we linked them at.
    let mut known: HashSet<(String, i64)> = HashSet::new();
    loop {
        ticker.tick().await;
        let Some(my_epoch) = pool.epoch() else {
            for (node, _) in pool.links.connected() {
                pool.links.drop_peer(&node);
            }
            continue;
        };
        let live = match pool.membership.live_nodes().await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read membership");
                continue;
            }
        };
        pool.set_live(live.iter().map(|n| (n.node_id.clone(), n.epoch)).collect());
        let live_set: HashSet<(String, i64)> = live
            .iter()
            .filter(|n| n.node_id != pool.node_id())
            .map(|n| (n.node_id.clone(), n.epoch))
            .collect();
        for n in live.iter().filter(|n| n.node_id != pool.node_id()) {
            pool.links
                .dial(n.node_id.clone(), n.epoch, n.link_addr.clone(), my_epoch);
        }
        for (node, epoch) in pool.links.connected() {
            if !live_set.contains(&(node.clone(), epoch)) {
                pool.links.drop_peer(&node);
            }
            if known.insert((node.clone(), epoch)) {
                ctx.features.notify(Event::NodeJoined(node));
            }
        }
        // Failover: a node we knew is no longer live under that epoch.
        let gone: Vec<(String, i64)> = known.iter().filter(|k| !live_set.contains(k)).cloned().collect();
        for (node, epoch) in gone {
            known.remove(&(node.clone(), epoch));
            fail_over(&ctx, &pool, &node, epoch).await;
        }
    }
}

/// A node left the live set under `epoch`: its keys move (this node takes its share and
/// tells the features), its sessions end.
///
/// Its sessions are forgotten first, so a feature told of either event already sees them
/// gone (a room taken over, or told the node left, drops the occupants it served).
async fn fail_over(ctx: &Arc<Context>, pool: &Pool, node: &str, epoch: i64) {
    let lost = ctx.sessions.forget_node(node);
    ctx.features.notify(Event::NodeLeft(node.to_string()));
    for (key, fence) in pool.take_over(node, epoch).await {
        ctx.features.notify(Event::OwnershipGained { key, fence });
    }
    tracing::warn!(%node, sessions = lost.len(), "node left the pool: its sessions are gone");
    for r in &lost {
        crate::presence::remote_session_lost(ctx, r).await;
    }
}
