//! The server pool (DESIGN §4): this node's membership in a deployment of several nodes
//! sharing one PostgreSQL store.
//!
//! - [`pki`]: the pool CA, node certificates and the mutual-TLS configs of pool links.
//! - [`membership`]: heartbeat leases with epochs, fencing, declaring dead nodes.
//!
//! A node is *live* while it holds a lease under its current epoch. When it cannot renew
//! the lease in time (PostgreSQL unreachable, or the pool declared it dead) it *fences*
//! itself: it closes its client streams and refuses new ones, so a node cut off from the
//! pool never acts on stale state; then it keeps trying to rejoin under a new epoch.

pub mod link;
pub mod membership;
pub mod node;
pub mod ownership;
pub mod pki;
pub mod placement;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::config::{Config, PoolConfig};
use crate::plugins::Holder;
use crate::store::pool::PoolDb;
use crate::store::StoreError;
use membership::Membership;
use ownership::Owner;

/// Connections this node opens to PostgreSQL for pool coordination (membership,
/// directory); bounded so many nodes stay inside the server's connection limit.
const COORDINATION_CONNECTIONS: u32 = 4;

/// Owners kept in memory; past this the cache starts again (each entry is one lookup).
const MAX_CACHED_OWNERS: usize = 100_000;
/// Keys of a dead node read for the take-over; the rest move on their next stanza.
const MAX_TAKEN_OVER: usize = 100_000;

/// The small connection pool used for coordination (membership, directory, placement).
pub async fn connect_coordination(url: &str) -> Result<PoolDb, StoreError> {
    PoolDb::connect(url, COORDINATION_CONNECTIONS, Duration::from_secs(1)).await
}

/// Where this node stands in the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeState {
    /// Holding a lease under this epoch: serving.
    Live { epoch: i64 },
    /// Not serving: the lease could not be renewed, or the pool declared us dead.
    Fenced { reason: String },
}

impl NodeState {
    /// The epoch served under, `None` while fenced.
    pub fn epoch(&self) -> Option<i64> {
        match self {
            NodeState::Live { epoch } => Some(*epoch),
            NodeState::Fenced { .. } => None,
        }
    }
}

pub struct Pool {
    pub config: PoolConfig,
    pub db: PoolDb,
    pub membership: Membership,
    pub links: Arc<link::Links>,
    state: watch::Sender<NodeState>,
    /// The live nodes (id, epoch) as of the last membership read, this one included.
    live: std::sync::RwLock<Vec<(String, i64)>>,
    /// Owners looked up since the live set or our epoch last changed.
    owners: std::sync::Mutex<std::collections::HashMap<String, Owner>>,
    /// `host:port` of every client listener, published for `pool status` and redirects.
    client_addrs: String,
    /// The epoch last served under, also while fenced: fenced writes are checked against
    /// it in the store, which refuses them once that epoch has ended.
    last_epoch: std::sync::atomic::AtomicI64,
}

impl Pool {
    /// Check the node's credentials, connect to the shared store, join the pool and accept
    /// links. The receiver yields what other nodes send; [`node::run_events`] applies it.
    /// The links' tasks run in `tasks` and end on its signal.
    pub async fn start(
        config: &Config,
        tasks: &crate::tasks::Tasks,
    ) -> anyhow::Result<(Arc<Pool>, mpsc::UnboundedReceiver<link::LinkEvent>)> {
        let pool_config = config.pool.clone().context("no [pool] section")?;
        let tls = pki::LinkTls::load(&pool_config.tls_dir, &pool_config.node_id).with_context(|| {
            format!(
                "loading the pool certificates of node {:?} from {} (create them with `poolxmpp pool init`)",
                pool_config.node_id,
                pool_config.tls_dir.display()
            )
        })?;
        let db = connect_coordination(&config.store)
            .await
            .context("connecting to the pool's PostgreSQL store")?;
        let link_listener = tokio::net::TcpListener::bind(pool_config.listen)
            .await
            .with_context(|| format!("cannot listen for pool links on {}", pool_config.listen))?;
        let lease = Duration::from_millis(pool_config.lease_ms);
        let membership = Membership::new(db.clone(), &pool_config.node_id, lease);
        let client_addrs = config
            .listen
            .starttls
            .iter()
            .chain(&config.listen.direct_tls)
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",");
        // Wait out the lease of our own previous run (a restart after a crash), plus a beat.
        let epoch = membership
            .join(pool_config.advertised(), &client_addrs, lease + Duration::from_secs(1))
            .await?;
        tracing::info!(node = %pool_config.node_id, epoch, "joined the pool");
        let (state, state_rx) = watch::channel(NodeState::Live { epoch });
        let (links, events) = link::Links::new(&pool_config.node_id, tls, tasks.clone());
        let my_epoch: link::MyEpoch = Arc::new(move || state_rx.borrow().epoch());
        let check_db = db.clone();
        let check: link::EpochCheck = Arc::new(move |node, epoch| {
            let db = check_db.clone();
            Box::pin(async move { db.is_live(&node, epoch).await.unwrap_or(false) })
        });
        tasks.spawn_until_signal(
            "pool link listener",
            links.clone().listen(link_listener, my_epoch, check),
        );
        let pool = Arc::new(Pool {
            config: pool_config,
            db,
            membership,
            links,
            state,
            live: Default::default(),
            owners: Default::default(),
            client_addrs,
            last_epoch: epoch.into(),
        });
        Ok((pool, events))
    }

    pub fn node_id(&self) -> &str {
        &self.config.node_id
    }

    /// Where clients reach this node: its first published listener.
    pub fn client_address(&self) -> String {
        placement::view::first_client_addr(&self.client_addrs)
    }

    /// Where clients reach live node `node`, if it is one.
    pub async fn client_address_of(&self, node: &str) -> Option<String> {
        if !self.live_nodes().iter().any(|(id, _)| id == node) {
            return None;
        }
        let nodes = self.db.nodes().await.ok()?;
        nodes
            .into_iter()
            .find(|n| n.node_id == node)
            .map(|n| placement::view::first_client_addr(&n.client_addrs))
            .filter(|a| !a.is_empty())
    }

    pub fn state(&self) -> NodeState {
        self.state.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<NodeState> {
        self.state.subscribe()
    }

    /// The epoch we serve under, or `None` while fenced.
    pub fn epoch(&self) -> Option<i64> {
        self.state.borrow().epoch()
    }

    /// The live nodes (id, epoch) as of the last membership read, this one included.
    pub fn live_nodes(&self) -> Vec<(String, i64)> {
        self.live.read().expect("live lock").clone()
    }

    /// Publish the live set read by the mesh task; a change forgets cached owners.
    pub fn set_live(&self, mut live: Vec<(String, i64)>) {
        live.sort();
        let mut current = self.live.write().expect("live lock");
        if *current != live {
            *current = live;
            self.owners.lock().expect("owners lock").clear();
        }
    }

    /// Who holds `key` (WIT `pool.owner-of`, `pool.owned`, and the routing of keyed
    /// stanzas): the recorded owner while its epoch is live, otherwise the rendezvous
    /// choice among live nodes — which records itself as owner (with a new fencing token)
    /// when it is this node. Cached until the live set or our epoch changes.
    pub async fn resolve(&self, key: &str) -> Result<Holder, StoreError> {
        let my_epoch = self.epoch();
        let cached = self.owners.lock().expect("owners lock").get(key).cloned();
        let (owner, gained) = match cached {
            Some(owner) => (owner, false),
            None => {
                let (owner, gained) = self.look_up(key, my_epoch).await?;
                self.remember(key, &owner);
                (owner, gained)
            }
        };
        Ok(self.holder(owner, my_epoch, gained))
    }

    /// `gained`: this lookup took the key for us (then it is ours under `my_epoch`).
    fn holder(&self, owner: Owner, my_epoch: Option<i64>, gained: bool) -> Holder {
        if owner.node_id == self.node_id() && Some(owner.epoch) == my_epoch {
            Holder::Here {
                fence: owner.fence as u64,
                gained,
            }
        } else {
            Holder::There { node: owner.node_id }
        }
    }

    fn remember(&self, key: &str, owner: &Owner) {
        let mut owners = self.owners.lock().expect("owners lock");
        if owners.len() >= MAX_CACHED_OWNERS {
            owners.clear();
        }
        owners.insert(key.to_string(), owner.clone());
    }

    /// The owner of `key` from the store; `true` when this lookup took it for us.
    async fn look_up(&self, key: &str, my_epoch: Option<i64>) -> Result<(Owner, bool), StoreError> {
        let mut live = self.live_nodes();
        if live.is_empty() {
            // Before the mesh's first read: ask, rather than take every key ourselves.
            live = self
                .membership
                .live_nodes()
                .await?
                .into_iter()
                .map(|n| (n.node_id, n.epoch))
                .collect();
        }
        let recorded = self.db.recorded_owner(key).await?;
        if let Some(rec) = recorded.filter(|rec| live.iter().any(|(n, e)| *n == rec.node_id && *e == rec.epoch)) {
            return Ok((rec, false));
        }
        let me = self.node_id();
        let preferred = ownership::preferred_owner(key, live.iter().map(|(n, _)| n.as_str())).unwrap_or(me);
        match my_epoch {
            Some(epoch) if preferred == me => {
                let owner = ownership::claim(&self.db, key, me, epoch).await?;
                let ours = owner.node_id == me && owner.epoch == epoch;
                Ok((owner, ours))
            }
            // The preferred node takes the key when the first stanza for it arrives there.
            _ => Ok((
                Owner {
                    node_id: preferred.to_string(),
                    epoch: live.iter().find(|(n, _)| n == preferred).map_or(0, |(_, e)| *e),
                    fence: 0,
                },
                false,
            )),
        }
    }

    /// Take over the keys of a node that left the live set (`node`, `epoch`) for which
    /// this node is now the preferred owner; the keys gained with their fencing tokens.
    /// Every survivor runs this, each taking its share.
    pub async fn take_over(&self, node: &str, epoch: i64) -> Vec<(String, u64)> {
        let keys = match self.db.keys_of(node, epoch, MAX_TAKEN_OVER as i64).await {
            Ok(keys) => keys,
            Err(e) => {
                tracing::warn!(%node, error = %e, "cannot read the keys of a node that left; they move on their next stanza");
                return Vec::new();
            }
        };
        let mut gained = Vec::new();
        for key in keys {
            let live = self.live_nodes();
            if ownership::preferred_owner(&key, live.iter().map(|(n, _)| n.as_str())) != Some(self.node_id()) {
                continue;
            }
            match self.resolve(&key).await {
                Ok(Holder::Here { fence, gained: true }) => gained.push((key, fence)),
                Ok(_) => {}
                Err(e) => tracing::warn!(%key, error = %e, "cannot take over a key; it moves on its next stanza"),
            }
        }
        if !gained.is_empty() {
            tracing::info!(%node, keys = gained.len(), "took over the keys of a node that left");
        }
        gained
    }

    fn fence(&self, reason: String) {
        tracing::error!(node = %self.node_id(), %reason, "fencing this node: closing client streams until it rejoins");
        self.owners.lock().expect("owners lock").clear();
        self.state.send_replace(NodeState::Fenced { reason });
    }

    /// Renew the lease every heartbeat; fence when it cannot be renewed in time; rejoin
    /// under a new epoch when the store is reachable again. `sessions` reports our load.
    pub async fn run_lease(self: Arc<Self>, sessions: impl Fn() -> usize) {
        let heartbeat = Duration::from_millis(self.config.heartbeat_ms);
        let lease = Duration::from_millis(self.config.lease_ms);
        // Our own conservative view of the lease: counted from when the last successful
        // renewal was *sent*, and given up one heartbeat early, so we stop serving before
        // any survivor may consider us dead.
        let mut renewed_at = Instant::now();
        let mut ticker = tokio::time::interval(heartbeat);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match self.epoch() {
                Some(epoch) => {
                    let sent = Instant::now();
                    let count = sessions() as i64;
                    match tokio::time::timeout(heartbeat, self.membership.renew(epoch, count, count as f64)).await {
                        Ok(Ok(true)) => renewed_at = sent,
                        Ok(Ok(false)) => self.fence(format!("the pool no longer honours epoch {epoch}")),
                        Ok(Err(e)) if sent.duration_since(renewed_at) + heartbeat >= lease => {
                            self.fence(format!("cannot renew the lease: {e}"))
                        }
                        Err(_) if sent.duration_since(renewed_at) + heartbeat >= lease => {
                            self.fence("cannot renew the lease: the store does not answer".into())
                        }
                        Ok(Err(e)) => tracing::warn!(error = %e, "lease renewal failed; retrying"),
                        Err(_) => tracing::warn!("lease renewal timed out; retrying"),
                    }
                }
                None => {
                    let rejoin = self
                        .membership
                        .join(self.config.advertised(), &self.client_addrs, Duration::ZERO);
                    match tokio::time::timeout(heartbeat.max(Duration::from_secs(1)), rejoin).await {
                        Ok(Ok(epoch)) => {
                            renewed_at = Instant::now();
                            tracing::info!(node = %self.node_id(), epoch, "rejoined the pool");
                            self.owners.lock().expect("owners lock").clear();
                            self.last_epoch.store(epoch, std::sync::atomic::Ordering::Relaxed);
                            self.state.send_replace(NodeState::Live { epoch });
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, "cannot rejoin yet"),
                        Err(_) => tracing::debug!("cannot rejoin yet: the store does not answer"),
                    }
                }
            }
        }
    }

    /// Declare nodes whose lease ran out dead, and run the failover for those we won.
    pub async fn run_reaper(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(Duration::from_millis(self.config.heartbeat_ms));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if self.epoch().is_none() {
                continue; // a fenced node takes no decisions for the pool
            }
            match self.membership.claim_expired().await {
                Ok(dead) => {
                    for membership::NodeEpoch { node_id: node, epoch } in dead {
                        tracing::warn!(%node, epoch, "node's lease expired: declared dead");
                        if let Err(e) = self.forget_sessions(&node, epoch).await {
                            tracing::error!(%node, error = %e, "cannot clear the dead node's sessions");
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "cannot check leases"),
            }
        }
    }

    /// Keep this node's rows of the shared session directory (`pool_sessions`) in line with
    /// its sessions, in order, off the login path. Rows carry our epoch, so rows of an
    /// earlier life of this node (a crash) are told apart and cleared at the start.
    /// On `stop` it writes the changes already queued (the ends of the sessions that closed
    /// at shutdown) and returns.
    pub async fn run_directory(
        self: Arc<Self>,
        mut changes: mpsc::UnboundedReceiver<crate::sessions::DirectoryChange>,
        stop: impl std::future::Future<Output = ()>,
    ) {
        use crate::sessions::DirectoryChange;
        if let Some(epoch) = self.epoch() {
            let _ = self.db.clear_earlier_sessions(self.node_id(), epoch).await;
        }
        tokio::pin!(stop);
        let mut stopping = false;
        loop {
            let change = if stopping {
                match changes.try_recv() {
                    Ok(change) => change,
                    Err(_) => return,
                }
            } else {
                tokio::select! {
                    change = changes.recv() => match change {
                        Some(change) => change,
                        None => return,
                    },
                    () = &mut stop => {
                        stopping = true;
                        continue;
                    }
                }
            };
            let Some(epoch) = self.epoch() else { continue };
            let result = match &change {
                DirectoryChange::Bound { bare, resource } => {
                    self.db.session_bound(bare, resource, self.node_id(), epoch).await
                }
                DirectoryChange::Unbound { bare, resource } => {
                    self.db.session_unbound(bare, resource, self.node_id()).await
                }
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, ?change, "session directory update failed");
            }
        }
    }

    /// Remove a dead node's entries from the session directory.
    async fn forget_sessions(&self, node: &str, epoch: i64) -> Result<u64, StoreError> {
        self.db.forget_node_sessions(node, epoch).await
    }

    /// Give the lease back on a clean shutdown.
    pub async fn leave(&self) {
        if let Some(epoch) = self.epoch() {
            if let Err(e) = self.membership.leave(epoch).await {
                tracing::warn!(error = %e, "could not leave the pool cleanly; the lease will expire");
            }
        }
    }
}

/// Plugins ask the pool who owns a key (their host capability `pool`) and keyed stanzas
/// travel to their owner over the links.
impl crate::plugins::Ownership for Pool {
    fn node_id(&self) -> &str {
        Pool::node_id(self)
    }

    fn write_epoch(&self) -> i64 {
        self.last_epoch.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn resolve<'a>(&'a self, key: &'a str) -> crate::features::BoxFuture<'a, Result<Holder, StoreError>> {
        Box::pin(Pool::resolve(self, key))
    }

    fn forward_keyed(
        &self,
        node: &str,
        stanza: &crate::xml::Element,
        hops: u8,
    ) -> Result<(), crate::sessions::PeerError> {
        self.links.send_keyed(node, stanza.to_stream_xml(), hops)
    }

    fn announce_interest(&self, plugin: &str, user: &str, has_rules: bool) {
        self.links.broadcast(&link::Frame::Interest {
            plugin: plugin.to_string(),
            user: user.to_string(),
            has_rules,
        });
    }
}
