//! What the host offers plugins (the WIT imports of the latest contract), implemented on
//! each instance's store data; older versions delegate here (`bindings::v0_1`). Every
//! capability is scoped to the calling plugin: storage keys are prefixed by its name, log
//! lines and metrics are tagged with it, and `send` may only speak for addresses the
//! plugin claims.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::StoreLimits;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::latest::{clock, interest, log, metrics, pool, presence, roster, router, storage, timers, types};
use super::host::{Holder, HostCaps};
use super::stats::PluginStats;
use crate::context::Context;

/// The data of one plugin instance's `Store`.
pub struct PluginState {
    pub name: String,
    /// What the manifest lets it read of other users (`grants`).
    grants: Vec<super::manifest::Grant>,
    /// Whether a refused read was logged already (once per instance is enough).
    refusal_logged: bool,
    pub host: HostCaps,
    pub stats: Arc<PluginStats>,
    pub limits: StoreLimits,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl PluginState {
    pub fn new(
        name: &str,
        grants: &[super::manifest::Grant],
        host: HostCaps,
        stats: Arc<PluginStats>,
        memory_bytes: usize,
    ) -> Self {
        // No preopened directories, no environment, no network: a plugin reaches the world
        // only through the poolxmpp interfaces. Its stderr goes to ours for debugging.
        let wasi = WasiCtx::builder().inherit_stderr().build();
        PluginState {
            name: name.to_string(),
            grants: grants.to_vec(),
            refusal_logged: false,
            host,
            stats,
            limits: wasmtime::StoreLimitsBuilder::new()
                .memory_size(memory_bytes)
                // Core instances, tables and memories per store: a Rust component needs a few, a
                // componentize-py one (CPython, libc, WASI adapter, ...) a dozen or more.
                .instances(32)
                .tables(64)
                .memories(16)
                .trap_on_grow_failure(true)
                .build(),
            wasi,
            table: ResourceTable::new(),
        }
    }

    fn node(&self) -> Option<Arc<Context>> {
        self.host.ctx.upgrade()
    }

    /// Whether the manifest grants this read; a refused one is logged once per instance
    /// (the plugin sees an empty answer, as for a user with no data).
    fn granted(&mut self, grant: super::manifest::Grant) -> bool {
        if self.grants.contains(&grant) {
            return true;
        }
        if !self.refusal_logged {
            self.refusal_logged = true;
            tracing::warn!(plugin = %self.name, ?grant, "a read its manifest does not grant (add it to `grants`); answering empty");
        }
        false
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for PluginState {}

impl log::Host for PluginState {
    async fn write(&mut self, level: types::LogLevel, message: String) {
        let plugin = self.name.as_str();
        match level {
            types::LogLevel::Trace => tracing::trace!(plugin, "{message}"),
            types::LogLevel::Debug => tracing::debug!(plugin, "{message}"),
            types::LogLevel::Info => tracing::info!(plugin, "{message}"),
            types::LogLevel::Warn => tracing::warn!(plugin, "{message}"),
            types::LogLevel::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

impl clock::Host for PluginState {
    async fn now_ms(&mut self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    /// The node's start, from the context's clock (`Context::started`) and the time now.
    async fn started_ms(&mut self) -> u64 {
        let now = clock::Host::now_ms(self).await;
        match self.node() {
            Some(node) => now.saturating_sub(node.started.elapsed().as_millis() as u64),
            None => now,
        }
    }
}

impl timers::Host for PluginState {
    async fn set(&mut self, name: String, after_ms: u64, payload: Vec<u8>) -> Result<(), StorageError> {
        let plugins = self.host.plugins.upgrade().ok_or(StorageError::ShuttingDown)?;
        let timers = plugins.timers().ok_or(StorageError::ShuttingDown)?;
        timers
            .set(&self.name, &name, after_ms, payload)
            .await
            .map_err(timer_error)
    }

    async fn cancel(&mut self, name: String) -> Result<bool, StorageError> {
        let plugins = self.host.plugins.upgrade().ok_or(StorageError::ShuttingDown)?;
        let timers = plugins.timers().ok_or(StorageError::ShuttingDown)?;
        timers.cancel(&self.name, &name).await.map_err(timer_error)
    }
}

fn timer_error(e: super::timers::TimerRefused) -> StorageError {
    match e {
        super::timers::TimerRefused::TooLarge(limit) => StorageError::TooLarge(limit),
        super::timers::TimerRefused::Store(why) => StorageError::Unavailable(why),
    }
}

impl interest::Host for PluginState {
    async fn set(&mut self, user: String, has_rules: bool) -> Result<(), StorageError> {
        let plugins = self.host.plugins.upgrade().ok_or(StorageError::ShuttingDown)?;
        // Kept as the router compares: the normalised bare JID.
        let Ok(user) = jid::Jid::new(&user).map(|j| j.to_bare().to_string()) else {
            tracing::warn!(plugin = %self.name, %user, "interest.set: not a JID; ignored");
            return Ok(());
        };
        plugins
            .set_interest(&self.name, &user, has_rules)
            .await
            .map_err(unavailable)
    }

    async fn has(&mut self, user: String) -> bool {
        let Some(plugins) = self.host.plugins.upgrade() else {
            return false;
        };
        jid::Jid::new(&user).is_ok_and(|j| plugins.interest.has(&self.name, j.to_bare().as_str()))
    }
}

impl metrics::Host for PluginState {
    async fn increment(&mut self, name: String, delta: u64) {
        self.stats.custom_increment(&name, delta);
    }

    async fn observe(&mut self, name: String, value: f64) {
        self.stats.custom_observe(&name, value);
    }
}

/// Values larger than this are refused: plugin state is many small records, not blobs.
const MAX_VALUE_BYTES: usize = 1024 * 1024;

use types::StorageError;

impl PluginState {
    fn store(&self) -> Result<Arc<Context>, StorageError> {
        self.node().ok_or(StorageError::ShuttingDown)
    }
}

fn unavailable(e: crate::store::StoreError) -> StorageError {
    StorageError::Unavailable(e.to_string())
}

fn bounded(value: Option<&[u8]>) -> Result<(), StorageError> {
    match value {
        Some(v) if v.len() > MAX_VALUE_BYTES => Err(StorageError::TooLarge(MAX_VALUE_BYTES as u64)),
        _ => Ok(()),
    }
}

impl storage::Host for PluginState {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, StorageError> {
        let node = self.store()?;
        node.store.kv_get(&self.name, &key).await.map_err(unavailable)
    }

    async fn put(&mut self, key: String, value: Vec<u8>) -> Result<(), StorageError> {
        bounded(Some(&value))?;
        let node = self.store()?;
        node.store.kv_put(&self.name, &key, &value).await.map_err(unavailable)
    }

    async fn delete(&mut self, key: String) -> Result<bool, StorageError> {
        let node = self.store()?;
        node.store.kv_delete(&self.name, &key).await.map_err(unavailable)
    }

    async fn scan(
        &mut self,
        prefix: String,
        start_after: Option<String>,
        limit: u32,
    ) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let node = self.store()?;
        node.store
            .kv_scan(&self.name, &prefix, start_after.as_deref(), limit)
            .await
            .map_err(unavailable)
    }

    async fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> Result<bool, StorageError> {
        bounded(new.as_deref())?;
        let node = self.store()?;
        node.store
            .kv_compare_and_swap(&self.name, &key, expected.as_deref(), new.as_deref())
            .await
            .map_err(unavailable)
    }

    async fn put_fenced(&mut self, owned: types::Ownership, key: String, value: Vec<u8>) -> Result<(), StorageError> {
        bounded(Some(&value))?;
        let node = self.store()?;
        let Some(fence) = self.fence(owned) else {
            return node.store.kv_put(&self.name, &key, &value).await.map_err(unavailable);
        };
        match node.store.kv_put_fenced(&self.name, &key, &value, &fence).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(self.refused_as_fenced(&fence)),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn delete_fenced(&mut self, owned: types::Ownership, key: String) -> Result<bool, StorageError> {
        let node = self.store()?;
        let Some(fence) = self.fence(owned) else {
            return node.store.kv_delete(&self.name, &key).await.map_err(unavailable);
        };
        match node.store.kv_delete_fenced(&self.name, &key, &fence).await {
            Ok(Some(existed)) => Ok(existed),
            Ok(None) => Err(self.refused_as_fenced(&fence)),
            Err(e) => Err(unavailable(e)),
        }
    }
}

impl PluginState {
    /// The condition of a fenced write: this node, under its current epoch, holding the key
    /// under the plugin's token. None on a node without a pool (no one else can own it).
    fn fence(&self, owned: types::Ownership) -> Option<crate::store::Fence> {
        let pool = self.host.ownership.as_ref()?;
        Some(crate::store::Fence {
            key: owned.key,
            node: pool.node_id().to_string(),
            epoch: pool.write_epoch(),
            token: owned.fence as i64,
        })
    }

    fn refused_as_fenced(&self, fence: &crate::store::Fence) -> StorageError {
        tracing::info!(plugin = %self.name, key = %fence.key, fence = fence.token, "fenced write refused: this node no longer owns the key under that token");
        StorageError::Fenced
    }
}

fn to_wit_item(item: crate::store::RosterItem) -> types::RosterItem {
    use crate::store::Subscription as S;
    types::RosterItem {
        jid: item.contact,
        name: item.name,
        subscription: match item.subscription {
            S::None => types::Subscription::None,
            S::To => types::Subscription::To,
            S::From => types::Subscription::From,
            S::Both => types::Subscription::Both,
        },
        ask: item.ask,
        groups: item.groups,
    }
}

impl roster::Host for PluginState {
    async fn items(&mut self, user: String) -> Vec<types::RosterItem> {
        if !self.granted(super::manifest::Grant::Roster) {
            return Vec::new();
        }
        let Some(node) = self.node() else { return Vec::new() };
        match node.store.roster(&user).await {
            Ok(items) => items.into_iter().map(to_wit_item).collect(),
            Err(e) => {
                tracing::warn!(plugin = %self.name, error = %e, "roster query failed");
                Vec::new()
            }
        }
    }

    async fn item(&mut self, user: String, contact: String) -> Option<types::RosterItem> {
        if !self.granted(super::manifest::Grant::Roster) {
            return None;
        }
        let node = self.node()?;
        node.store
            .roster_item(&user, &contact)
            .await
            .ok()
            .flatten()
            .map(to_wit_item)
    }
}

impl presence::Host for PluginState {
    async fn resources(&mut self, user: String) -> Vec<types::ResourcePresence> {
        if !self.granted(super::manifest::Grant::Presence) {
            return Vec::new();
        }
        let Some(node) = self.node() else { return Vec::new() };
        let mut out = Vec::new();
        for r in node.sessions.resources(&user) {
            // Another node's session has caps that node learnt and stored for the pool.
            let features = match r.presence.as_ref() {
                Some(p) => node
                    .caps
                    .known(&node.store, p)
                    .await
                    .map(|f| f.to_vec())
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            out.push(types::ResourcePresence {
                jid: format!("{user}/{}", r.resource),
                presence: r.presence.as_ref().map(|p| p.to_xml()),
                priority: if r.available() { r.priority } else { 0 },
                features,
            });
        }
        out
    }
}

impl router::Host for PluginState {
    async fn send(&mut self, xml: String) -> Result<(), types::SendError> {
        let node = self.node().ok_or(types::SendError::ShuttingDown)?;
        self.stats.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let plugins = self.host.plugins.upgrade().ok_or(types::SendError::ShuttingDown)?;
        let name = self.name.as_str();
        crate::router::route_from_feature(&node, name, &xml, |from, stanza| {
            plugins.may_send_as(name, from, stanza, |domain| node.hosts(domain))
        })
        .await
        .map_err(send_error)
    }

    async fn send_many(&mut self, xml: String, recipients: Vec<String>) -> Result<u32, types::SendError> {
        let node = self.node().ok_or(types::SendError::ShuttingDown)?;
        let plugins = self.host.plugins.upgrade().ok_or(types::SendError::ShuttingDown)?;
        let name = self.name.as_str();
        let routed = crate::router::route_many_from_feature(&node, name, &xml, &recipients, |from, stanza| {
            plugins.may_send_as(name, from, stanza, |domain| node.hosts(domain))
        })
        .await
        .map_err(send_error)?;
        self.stats
            .sent
            .fetch_add(u64::from(routed), std::sync::atomic::Ordering::Relaxed);
        Ok(routed)
    }
}

fn send_error(refused: crate::router::SendRefused) -> types::SendError {
    use crate::router::SendRefused;
    match refused {
        SendRefused::Malformed(why) => types::SendError::Malformed(why.to_string()),
        SendRefused::ForbiddenFrom(from) => types::SendError::ForbiddenFrom(from.to_string()),
        SendRefused::Unreachable(to) => types::SendError::Unreachable(to.to_string()),
    }
}

impl pool::Host for PluginState {
    async fn node_id(&mut self) -> String {
        match &self.host.ownership {
            Some(pool) => pool.node_id().to_string(),
            None => crate::plugins::LOCAL_NODE.to_string(),
        }
    }

    async fn owner_of(&mut self, key: String) -> String {
        let Some(pool) = self.host.ownership.clone() else {
            return crate::plugins::LOCAL_NODE.to_string();
        };
        match pool.resolve(&key).await {
            Ok(Holder::Here { .. }) => pool.node_id().to_string(),
            Ok(Holder::There { node }) => node,
            Err(e) => {
                // Without the store we cannot know better; acting locally is what a single
                // node would do, and a fenced node serves nobody anyway.
                tracing::warn!(plugin = %self.name, %key, error = %e, "ownership lookup failed");
                pool.node_id().to_string()
            }
        }
    }

    async fn owned(&mut self, key: String) -> Option<types::Ownership> {
        let Some(pool) = self.host.ownership.clone() else {
            return Some(types::Ownership { key, fence: 1 });
        };
        match pool.resolve(&key).await {
            Ok(Holder::Here { fence, .. }) => Some(types::Ownership { key, fence }),
            Ok(Holder::There { .. }) => None,
            Err(e) => {
                tracing::warn!(plugin = %self.name, %key, error = %e, "ownership lookup failed");
                None
            }
        }
    }
}
