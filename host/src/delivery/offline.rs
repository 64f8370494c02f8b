//! Offline messages (XEP-0160) on their way out: delivered with XEP-0203 delay stamps to a
//! resource that comes online, or that is online when a message is stored late; one
//! delivery per account at a time on this node.

use std::sync::Arc;

use crate::context::Context;
use crate::features::Direction;
use crate::xml::Element;

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
pub struct OfflineTurn {
    ctx: Arc<Context>,
    bare: String,
    done: bool,
}

impl OfflineTurn {
    /// The turn, or `None` (and a request to run again) when a delivery is running.
    pub fn take(ctx: &Arc<Context>, bare: &str) -> Option<OfflineTurn> {
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
    pub async fn run(mut self, mut resource: Option<String>) {
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
            // The recipient's rules may have changed since it was stored (a user blocked its
            // sender): judged again on the way out, like any stanza reaching a local user.
            if ctx.features.would_filter(Direction::Inbound, &stanza, None)
                && !super::passes_filter(ctx, Direction::Inbound, &stanza, None).await
            {
                queued.push(*id);
                continue;
            }
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
