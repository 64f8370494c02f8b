//! Home nodes and redirects (DESIGN §4). Every user has a home node, kept in the shared
//! store (`pool_homes`), sticky while that node lives under the epoch it had when chosen
//! and is not being drained; otherwise a strategy chooses again (see [`choose`]).
//!
//! Who redirects: a pool node with `[pool] redirect = true`, a node being drained, and the
//! stand-alone redirector (`poolxmpp redirect`). Always after TLS and SASL, so placement
//! is never shown to a stranger, and never to the node itself. A node that has sent the
//! same user away `loop_limit` times within a minute serves them itself: that cuts
//! redirect loops and lets in clients that never follow a redirect.
//!
//! - [`view`]: the pool as a strategy sees it (one query on the shared store).
//!
//! Their queries (`pool_homes`, `pool_drains`, the view) are in [`crate::store::pool`].
//! - [`choose`]: the strategy plugin, and the built-in hashing it falls back to.
//! - [`drain`]: moving live sessions (drain, rebalance) at a bounded rate.

pub mod choose;
pub mod drain;
pub mod view;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::PlacementConfig;
use crate::plugins::{PluginHandle, Plugins};
use crate::store::pool::{NewHome, PoolDb};
use crate::store::StoreError;
use view::LiveNode;

/// The window in which repeated redirects of one user count as a loop.
const LOOP_WINDOW: Duration = Duration::from_secs(60);

/// Where a user should be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    pub node_id: String,
    /// `host:port` of the node's first client listener (IPv6 in brackets).
    pub client_addr: String,
}

/// What to do with a user who has just authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginRoute {
    /// Serve them here.
    Here,
    /// End the stream with `<see-other-host>` naming this `host:port`.
    Elsewhere(String),
    /// The stand-alone redirector found no node to send them to.
    Nowhere,
}

/// Counters for `poolxmpp stats`.
#[derive(Default)]
pub struct PlacementStats {
    pub redirects: AtomicU64,
    pub plugin_decisions: AtomicU64,
    pub fallbacks: AtomicU64,
    pub loops_cut: AtomicU64,
    /// Sessions moved by a drain or a rebalance.
    pub moved: AtomicU64,
}

pub struct Placement {
    db: PoolDb,
    /// This node's id; `None` in the stand-alone redirector, which serves no one.
    me: Option<String>,
    pub config: PlacementConfig,
    plugins: Arc<Plugins>,
    pub stats: PlacementStats,
    /// Whether the pool has asked this node to drain (kept by [`drain::run`]).
    draining: AtomicBool,
    /// Recent redirects per user: (window start, count).
    recent: Mutex<HashMap<String, (Instant, u32)>>,
    /// The live node ids last shown to the strategy, to tell it when they change.
    last_live: Mutex<Vec<String>>,
}

impl Placement {
    pub fn new(db: PoolDb, me: Option<String>, config: PlacementConfig, plugins: Arc<Plugins>) -> Arc<Placement> {
        Arc::new(Placement {
            db,
            me,
            config,
            plugins,
            stats: PlacementStats::default(),
            draining: AtomicBool::new(false),
            recent: Mutex::default(),
            last_live: Mutex::default(),
        })
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Relaxed)
    }

    /// The user's live home, if one is recorded on a node that takes users.
    async fn live_home(&self, bare: &str) -> Result<Option<Home>, StoreError> {
        Ok(self.db.live_home(bare).await?.map(|h| Home {
            client_addr: view::first_client_addr(&h.client_addrs),
            node_id: h.node_id,
        }))
    }

    /// The user's home node: the recorded one while it lives and accepts users, otherwise
    /// the strategy's new choice, recorded unless another process recorded one first.
    /// `None` when no node takes new users.
    pub async fn home_of(&self, bare: &str) -> Result<Option<Home>, StoreError> {
        if let Some(home) = self.live_home(bare).await? {
            return Ok(Some(home));
        }
        let nodes = view::load(&self.db, bare).await?;
        let Some(choice) = choose::choose(self, bare, &nodes).await else {
            return Ok(None);
        };
        tracing::debug!(user = %bare, node = %choice.node.id, strategy = %choice.strategy, reason = %choice.reason, "home chosen");
        self.db
            .record_home(NewHome {
                bare,
                node_id: &choice.node.id,
                epoch: choice.node.epoch,
                strategy: &choice.strategy,
                reason: &choice.reason,
            })
            .await?;
        self.live_home(bare).await
    }

    /// Forget `bare`'s home if it is `node`, so the strategy chooses again (rebalance).
    pub async fn forget_home(&self, bare: &str, node: &str) -> Result<(), StoreError> {
        self.db.forget_home(bare, node).await
    }

    /// Where an authenticated user goes. On a node: elsewhere only when it redirects
    /// (`redirect`, or draining), the home is another node, and no loop is forming; any
    /// failure serves here, since a redirect is an optimisation. In the redirector:
    /// always the home, or nowhere.
    pub async fn route_login(&self, bare: &str, redirect: bool) -> LoginRoute {
        let Some(me) = self.me.as_deref() else {
            return match self.home_of(bare).await {
                Ok(Some(home)) if !home.client_addr.is_empty() => self.redirected(home.client_addr),
                Ok(_) => LoginRoute::Nowhere,
                Err(e) => {
                    tracing::warn!(%bare, error = %e, "cannot look up the home node");
                    LoginRoute::Nowhere
                }
            };
        };
        if !(redirect || self.is_draining()) {
            return LoginRoute::Here;
        }
        if self.loop_forming(bare) {
            self.stats.loops_cut.fetch_add(1, Relaxed);
            tracing::info!(user = %bare, "sent away too often lately; serving here");
            return LoginRoute::Here;
        }
        match self.home_of(bare).await {
            Ok(Some(home)) if home.node_id != me && !home.client_addr.is_empty() => {
                self.note_redirect(bare);
                self.redirected(home.client_addr)
            }
            Ok(_) => LoginRoute::Here,
            Err(e) => {
                tracing::warn!(%bare, error = %e, "cannot look up the home node; serving here");
                LoginRoute::Here
            }
        }
    }

    fn redirected(&self, addr: String) -> LoginRoute {
        self.stats.redirects.fetch_add(1, Relaxed);
        LoginRoute::Elsewhere(addr)
    }

    fn loop_forming(&self, bare: &str) -> bool {
        let recent = self.recent.lock().expect("recent lock");
        recent
            .get(bare)
            .is_some_and(|(since, n)| since.elapsed() < LOOP_WINDOW && *n >= self.config.loop_limit)
    }

    fn note_redirect(&self, bare: &str) {
        let mut recent = self.recent.lock().expect("recent lock");
        if recent.len() > 100_000 {
            recent.retain(|_, (since, _)| since.elapsed() < LOOP_WINDOW);
        }
        let entry = recent.entry(bare.to_string()).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= LOOP_WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
    }

    /// Tell the strategy when the set of live nodes differs from what it last saw.
    fn tell_pool_change(&self, plugin: &PluginHandle, nodes: &[LiveNode]) {
        let ids: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
        let mut last = self.last_live.lock().expect("last_live lock");
        if *last != ids {
            *last = ids;
            plugin.pool_changed(view::to_wit(nodes));
        }
    }

    /// The counters, for `poolxmpp stats`.
    pub fn stats_json(&self) -> serde_json::Value {
        let s = &self.stats;
        serde_json::json!({
            "strategy": self.config.strategy.as_deref().unwrap_or(choose::BUILT_IN),
            "draining": self.is_draining(),
            "redirects": s.redirects.load(Relaxed),
            "strategy_decisions": s.plugin_decisions.load(Relaxed),
            "fallbacks": s.fallbacks.load(Relaxed),
            "loops_cut": s.loops_cut.load(Relaxed),
            "moved_sessions": s.moved.load(Relaxed),
        })
    }
}
