//! Owner routing for keyed plugins (manifest `keyed = true`): every stanza for
//! `key@address` (a room, a pubsub node) goes to the one node of the pool that owns the
//! key, whichever node received it, so a plugin keeps one live copy of each key pool-wide.
//!
//! The route of a key is decided synchronously from what this node knows — here, on another
//! node — so stanzas for a key keep the order they were routed in. A key not known yet, or
//! whose owner cannot be reached (it is dying: its lease has not run out, so nobody may
//! take the key yet), *waits*: its stanzas queue, in order, while one task asks the pool
//! until the key has an owner that can be reached, then they go there. A stanza handed to
//! the link is kept by it until the owner acknowledges it; if the owner dies first, it
//! comes back here (`resubmit`) and follows the key to its next owner.
//!
//! Ownership events are told here too: the plugin gets `ownership-gained` when this node
//! takes a key (its first stanza, or a dead owner's take-over) and `ownership-lost` for
//! every key it held when the node is fenced.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use jid::Jid;
use tokio::sync::oneshot;

use super::host::{Holder, Ownership};
use super::{types, PluginHandle, Plugins};
use crate::features::{Answer, Refusal};
use crate::xml::Element;

/// How long a key's stanzas may wait for an owner that can be reached: long enough for a
/// dead owner's lease to run out and a survivor to take over (a few seconds), then they
/// are refused with `resource-constraint`.
const PATIENCE: Duration = Duration::from_secs(30);
/// How often a waiting key asks again.
const RETRY: Duration = Duration::from_millis(200);
/// Stanzas one waiting key may hold; more are refused.
const MAX_WAITING_PER_KEY: usize = 1_000;
/// Keys waiting at once (each has a task asking the pool's store); more are refused.
const MAX_WAITING_KEYS: usize = 1_000;
/// Routes kept in memory; past this the routes to other nodes are forgotten (each costs
/// one lookup to learn again).
const MAX_ROUTES: usize = 100_000;
/// Forwards a keyed stanza may take: the receiver of a first forward may pass it on once
/// more (its view was newer than the sender's), never again.
pub const MAX_HOPS: u8 = 2;

/// Where the stanzas of one key go now.
enum Route {
    Here { fence: u64 },
    There { node: String },
    Waiting(VecDeque<Waiting>),
}

struct Waiting {
    stanza: Element,
    hops: u8,
    done: oneshot::Sender<Result<(), Refusal>>,
}

/// The keyed routes of one node, shared by every keyed plugin (a key is a bare JID on the
/// plugin's address, so keys of two plugins never meet).
pub struct KeyRouter {
    pool: Arc<dyn Ownership>,
    plugins: Weak<Plugins>,
    routes: Mutex<HashMap<String, Route>>,
}

/// The key of a stanza for a keyed plugin: the bare JID of its `to`, normalised, when it
/// has a local part (`room@conference.example.org`); the address itself has none.
pub fn key_of(stanza: &Element) -> Option<String> {
    let to = Jid::new(stanza.get_attr("to")?).ok()?;
    to.node()?;
    Some(to.to_bare().to_string())
}

impl KeyRouter {
    pub fn new(pool: Arc<dyn Ownership>, plugins: Weak<Plugins>) -> Arc<KeyRouter> {
        Arc::new(KeyRouter {
            pool,
            plugins,
            routes: Mutex::new(HashMap::new()),
        })
    }

    /// Route a stanza for `key` of `plugin`: to the plugin here if this node owns the key,
    /// over the link if another does, or into the key's wait. `hops`: forwards so far.
    pub fn route(
        self: &Arc<Self>,
        plugin: &PluginHandle,
        key: String,
        stanza: &Element,
        hops: u8,
    ) -> Result<Answer, Refusal> {
        let mut routes = self.routes.lock().expect("routes lock");
        match routes.get_mut(&key) {
            Some(Route::Here { .. }) => {
                drop(routes);
                return plugin.submit_here(stanza);
            }
            Some(Route::There { node }) => {
                if hops >= MAX_HOPS {
                    tracing::warn!(%key, %node, "keyed stanza forwarded twice already; refusing it");
                    return Err(Refusal::Unavailable);
                }
                if self.pool.forward_keyed(node, stanza, hops + 1).is_ok() {
                    return Ok(Box::pin(std::future::ready(Ok(()))));
                }
                // Its owner cannot be reached (dying, or the link is congested): wait.
                routes.remove(&key);
            }
            Some(Route::Waiting(queue)) => {
                if queue.len() >= MAX_WAITING_PER_KEY {
                    return Err(Refusal::Busy);
                }
                return Ok(wait_in(queue, stanza, hops));
            }
            None => {}
        }
        let waiting_keys = routes.values().filter(|r| matches!(r, Route::Waiting(_))).count();
        if waiting_keys >= MAX_WAITING_KEYS {
            return Err(Refusal::Busy);
        }
        let mut queue = VecDeque::new();
        let answer = wait_in(&mut queue, stanza, hops);
        routes.insert(key.clone(), Route::Waiting(queue));
        drop(routes);
        tokio::spawn(self.clone().find_owner(key));
        Ok(answer)
    }

    /// Ask the pool until the key has an owner its stanzas can reach, then send them there.
    async fn find_owner(self: Arc<Self>, key: String) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match self.pool.resolve(&key).await {
                Ok(holder) => {
                    if self.settle(&key, holder) {
                        return;
                    }
                }
                Err(e) => tracing::debug!(%key, error = %e, "cannot look up a key's owner yet"),
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(%key, "no reachable owner for this key; refusing its stanzas");
                if let Some(Route::Waiting(queue)) = self.routes.lock().expect("routes lock").remove(&key) {
                    for w in queue {
                        let _ = w.done.send(Err(Refusal::Busy));
                    }
                }
                return;
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    /// Send a waiting key's stanzas where `holder` says, in order, under the lock (so later
    /// stanzas queue behind them). Whether it is settled; if the owner cannot be reached
    /// the rest keep waiting.
    fn settle(&self, key: &str, holder: Holder) -> bool {
        let mut routes = self.routes.lock().expect("routes lock");
        let Some(Route::Waiting(queue)) = routes.get_mut(key) else {
            return true; // settled meanwhile (an ownership event)
        };
        let plugin = self.plugin_for(key);
        match holder {
            Holder::Here { fence, gained } => {
                let queue = std::mem::take(queue);
                routes.insert(key.to_string(), Route::Here { fence });
                // Still under the lock: a stanza routed meanwhile goes after these.
                let Some(plugin) = plugin else {
                    for w in queue {
                        let _ = w.done.send(Err(Refusal::Unavailable));
                    }
                    return true;
                };
                if gained {
                    plugin.send_event(types::Event::OwnershipGained(ownership(key, fence)));
                }
                for w in queue {
                    let answer = plugin.submit_here(&w.stanza);
                    tokio::spawn(async move {
                        let outcome = match answer {
                            Ok(answer) => answer.await,
                            Err(refusal) => Err(refusal),
                        };
                        let _ = w.done.send(outcome);
                    });
                }
                true
            }
            Holder::There { node } => {
                while let Some(w) = queue.front() {
                    if w.hops >= MAX_HOPS {
                        let w = queue.pop_front().expect("front exists");
                        let _ = w.done.send(Err(Refusal::Unavailable));
                        continue;
                    }
                    if self.pool.forward_keyed(&node, &w.stanza, w.hops + 1).is_err() {
                        return false;
                    }
                    let w = queue.pop_front().expect("front exists");
                    let _ = w.done.send(Ok(()));
                }
                routes.insert(key.to_string(), Route::There { node });
                if routes.len() > MAX_ROUTES {
                    routes.retain(|_, r| !matches!(r, Route::There { .. }));
                }
                true
            }
        }
    }

    /// The keyed plugin serving `key`'s domain now.
    fn plugin_for(&self, key: &str) -> Option<Arc<PluginHandle>> {
        let domain = key.rsplit_once('@').map_or(key, |(_, d)| d);
        let plugins = self.plugins.upgrade()?;
        plugins
            .active()
            .for_address(domain)
            .filter(|p| p.manifest.keyed)
            .cloned()
    }

    /// This node took `key` over from a node that left (the pool's take-over): its
    /// stanzas are served here from now on, and its plugin is told.
    pub fn gained(&self, key: &str, fence: u64) {
        let Some(plugin) = self.plugin_for(key) else { return };
        {
            let mut routes = self.routes.lock().expect("routes lock");
            // A waiting key settles through its own task, which finds it held here.
            if !matches!(routes.get(key), Some(Route::Waiting(_))) {
                routes.insert(key.to_string(), Route::Here { fence });
            }
        }
        plugin.send_event(types::Event::OwnershipGained(ownership(key, fence)));
    }

    /// A node left the pool: routes to it are forgotten (its keys' next stanzas ask anew).
    pub fn node_left(&self, node: &str) {
        self.routes
            .lock()
            .expect("routes lock")
            .retain(|_, r| !matches!(r, Route::There { node: n } if n == node));
    }

    /// This node was fenced: it owns nothing now. Each key it held is told lost to its
    /// plugin; routes to other nodes are forgotten too (the pool may have changed).
    pub fn fenced(&self) {
        let held: Vec<(String, u64)> = {
            let mut routes = self.routes.lock().expect("routes lock");
            let held = routes
                .iter()
                .filter_map(|(k, r)| match r {
                    Route::Here { fence } => Some((k.clone(), *fence)),
                    _ => None,
                })
                .collect();
            routes.retain(|_, r| matches!(r, Route::Waiting(_)));
            held
        };
        for (key, fence) in held {
            if let Some(plugin) = self.plugin_for(&key) {
                plugin.send_event(types::Event::OwnershipLost(ownership(&key, fence)));
            }
        }
    }
}

fn wait_in(queue: &mut VecDeque<Waiting>, stanza: &Element, hops: u8) -> Answer {
    let (done, rx) = oneshot::channel();
    queue.push_back(Waiting {
        stanza: stanza.clone(),
        hops,
        done,
    });
    Box::pin(async move { rx.await.unwrap_or(Err(Refusal::Unavailable)) })
}

fn ownership(key: &str, fence: u64) -> types::Ownership {
    types::Ownership {
        key: key.to_string(),
        fence,
    }
}
