//! The plugin runtime: WebAssembly components (wasmtime, component model) that implement the
//! worlds in `wit/`, loaded from the plugins directory and hot-reloaded when it changes.
//!
//! - [`manifest`]: `NAME.toml` beside `NAME.wasm` — world, claims, limits, config.
//! - [`instance`]: one running instance and its containment.
//! - [`queue`]: how calls reach an instance and who runs them (callers or its own task).
//! - [`runners`]: a version's instances, and which one a call goes to (by key).
//! - [`breaker`]: whom a failing plugin stops serving (one sender, or everyone), how long.
//! - [`input`]: what a plugin is handed: bounded, with normalised addresses.
//! - [`imports`]: the host side of the WIT imports.
//! - [`interest`]: filters' interest sets (the users a filter has rules for).
//! - [`keyed`]: owner routing of keyed plugins' stanzas, and their ownership events.
//! - [`timers`]: plugin timers, kept in the store and fired by one scheduler per node.
//! - [`watch`]: the directory watcher and the admin socket.
//! - this module: the registry — which plugin claims what — and make-before-break swaps.
//!
//! A new version is compiled, instantiated and `init`ed before it replaces the old one; if
//! any step fails the old one keeps serving and the failure is logged. Calls already queued
//! on the old version finish there.

pub mod address;
pub mod admin;
pub mod bindings;
pub mod breaker;
pub mod build;
pub mod features;
pub mod host;
pub mod imports;
pub mod input;
pub mod instance;
pub mod interest;
pub mod keyed;
pub mod manifest;
pub mod queue;
pub mod runners;
pub mod stats;
pub mod timers;
pub mod watch;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, SystemTime};

use sha2::Digest;
use tokio::sync::{mpsc, oneshot};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use bindings::latest::types;
pub use bindings::Version;
pub use host::{Holder, HostCaps, Ownership};
use input::Intake;
pub use instance::Fault;
use instance::{Blueprint, Call, Linkers};
use manifest::Manifest;
use stats::PluginStats;

use crate::xml::Element;

/// What a feature plugin made of a stanza, once it has run.
pub type StanzaReply = oneshot::Receiver<instance::StanzaOutcome>;

/// How often a plugin's full queue is logged at most while it keeps refusing calls.
const BUSY_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Until the pool exists every key is owned here.
pub const LOCAL_NODE: &str = "local";

/// One loaded plugin version.
pub struct PluginHandle {
    pub manifest: Manifest,
    pub path: PathBuf,
    /// SHA-256 of the `.wasm` and manifest: a reload with identical bytes is a no-op.
    digest: [u8; 32],
    runners: runners::Runners,
    pub stats: Arc<PluginStats>,
    pub loaded_at: SystemTime,
    intake: Arc<Intake>,
    /// The contract version its component was built for.
    pub version: Version,
    /// When a full queue was last logged (see [`PluginHandle::refuse_busy`]).
    busy_logged: Mutex<Option<std::time::Instant>>,
    /// The owner routing of a keyed feature in a pool; none otherwise.
    keyed: Option<Arc<keyed::KeyRouter>>,
    /// A filter's interest set when its manifest declares one (`interest = "declared"`).
    pub interest: Option<Arc<interest::InterestSet>>,
}

impl PluginHandle {
    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    /// How many instances it runs.
    pub fn instances(&self) -> usize {
        self.runners.count()
    }

    /// Queue a call for the instance's own task.
    fn enqueue(&self, runner: &queue::Runner, call: Call) -> Result<(), Fault> {
        self.admit(runner, call, queue::Runner::send)
    }

    /// Queue a call through `put` unless the instance's breaker is open or its queue full.
    fn admit(
        &self,
        runner: &queue::Runner,
        call: Call,
        put: impl FnOnce(&queue::Runner, Call) -> Result<(), mpsc::error::TrySendError<()>>,
    ) -> Result<(), Fault> {
        if let Some(reason) = runner.health().disabled() {
            return Err(Fault::Disabled(reason));
        }
        put(runner, call).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => self.refuse_busy(),
            mpsc::error::TrySendError::Closed(_) => Fault::Disabled("unloaded".into()),
        })
    }

    /// Count a call refused because the queue is full, and say so in the log (at most once
    /// per [`BUSY_LOG_INTERVAL`]: a full queue refuses many calls at once).
    fn refuse_busy(&self) -> Fault {
        let refused = self.stats.refused.fetch_add(1, Relaxed) + 1;
        let mut last = self.busy_logged.lock().expect("busy log lock");
        let now = std::time::Instant::now();
        if last.is_none_or(|t| now.duration_since(t) >= BUSY_LOG_INTERVAL) {
            *last = Some(now);
            tracing::warn!(
                plugin = %self.name(),
                queue = self.manifest.limits.queue,
                refused,
                "plugin queue full: refusing calls with resource-constraint"
            );
        }
        Fault::Busy
    }

    /// Queue a stanza for a feature plugin; the receiver yields its answer. Queuing is
    /// synchronous so stanzas reach the plugin in the order they were routed.
    pub fn submit_stanza(&self, stanza: &Element) -> Result<StanzaReply, Fault> {
        let (reply, rx) = oneshot::channel();
        let prepared = self.intake.prepare(stanza, self.version)?;
        self.enqueue(
            self.runners.for_stanza(stanza),
            Call::Stanza {
                stanza: prepared.stanza,
                sender: prepared.sender,
                reply: instance::Reply::Channel(reply),
            },
        )?;
        Ok(rx)
    }

    /// [`Self::submit_stanza`] for a client's read loop: a full queue is waited on for up
    /// to `wait` (in turn with other waiters) before the stanza is refused, the caller runs
    /// the queue itself if the instance is free, and `then` gets the outcome from whoever
    /// ran the call (a refusal here at once). Its stanzas still reach the plugin in the
    /// order routed.
    pub async fn submit_stanza_then(&self, stanza: &Element, wait: Duration, then: instance::Then) {
        let reply = instance::Reply::Then(then);
        let runner = self.runners.for_stanza(stanza);
        if let Some(reason) = runner.health().disabled() {
            return reply.send(Err(Fault::Disabled(reason)));
        }
        let prepared = match self.intake.prepare(stanza, self.version) {
            Ok(prepared) => prepared,
            Err(fault) => return reply.send(Err(fault)),
        };
        let call = Call::Stanza {
            stanza: prepared.stanza,
            sender: prepared.sender,
            reply,
        };
        match runner.reserve(wait).await {
            Ok(Some(slot)) => slot.send(call),
            // Dropping the call tells `then` (unloaded).
            Ok(None) => return drop(call),
            Err(_) => return instance::refuse(call, self.refuse_busy()),
        }
        // A free instance answers in this task.
        runner.run_queued().await;
    }

    /// Ask a filter plugin about a stanza: in the caller's task if the plugin is idle.
    pub async fn check(
        &self,
        point: crate::features::Direction,
        direction: types::Direction,
        stanza: &Element,
    ) -> Result<types::Verdict, Fault> {
        let runner = self.runners.for_check(point, stanza);
        if let Some(reason) = runner.health().disabled() {
            return Err(Fault::Disabled(reason));
        }
        let (reply, rx) = oneshot::channel();
        let prepared = self.intake.prepare(stanza, self.version)?;
        let call = Call::Check {
            direction,
            stanza: prepared.stanza,
            sender: prepared.sender,
            reply,
        };
        self.admit(runner, call, queue::Runner::queue)?;
        runner.run_queued().await;
        rx.await.unwrap_or(Err(Fault::Disabled("unloaded".into())))
    }

    /// Ask a placement plugin which node should serve `user`, waiting at most `budget`
    /// (queueing included); a call not started by then is dropped, not run late.
    pub async fn choose_node(
        &self,
        user: &str,
        view: types::PoolView,
        budget: std::time::Duration,
    ) -> Result<Option<String>, Fault> {
        let (reply, rx) = oneshot::channel();
        self.enqueue(
            self.runners.for_key(Some(user)),
            Call::Choose {
                user: user.to_string(),
                view,
                deadline: std::time::Instant::now() + budget,
                reply,
            },
        )?;
        match tokio::time::timeout(budget, rx).await {
            Ok(answer) => answer.unwrap_or(Err(Fault::Disabled("unloaded".into()))),
            Err(_) => Err(Fault::Timeout),
        }
    }

    /// Tell a feature plugin of an event; fire and forget. A full queue drops it, logged.
    pub fn send_event(&self, event: types::Event) {
        for runner in self.runners.for_event(&event) {
            if let Err(fault) = self.enqueue(runner, Call::Event(event.clone())) {
                tracing::warn!(plugin = %self.name(), %fault, "event not delivered");
            }
        }
    }

    /// Tell a placement plugin the set of live nodes changed; fire and forget.
    pub fn pool_changed(&self, view: types::PoolView) {
        for runner in self.runners.all() {
            let _ = self.enqueue(runner, Call::PoolChange(view.clone()));
        }
    }
}

/// The set of active plugins and what each claims; replaced whole on every change so
/// routing reads a consistent snapshot without holding a lock.
#[derive(Default)]
pub struct Active {
    pub by_name: BTreeMap<String, Arc<PluginHandle>>,
    by_iq_ns: HashMap<String, Arc<PluginHandle>>,
    by_address: HashMap<String, Arc<PluginHandle>>,
    pub filters: Vec<Arc<PluginHandle>>,
    pub disco_features: Vec<String>,
    /// What the plugins add to an account's disco#info: (category, type) identities and
    /// features, sorted and without duplicates.
    pub account_identities: Vec<(String, String)>,
    pub account_features: Vec<String>,
    /// The plugin answering disco#items of accounts and disco#info of their nodes (the
    /// first by name that asks).
    pub account_items: Option<Arc<PluginHandle>>,
}

impl Active {
    fn build(by_name: BTreeMap<String, Arc<PluginHandle>>, domains: &[String]) -> Active {
        let mut active = Active {
            by_name,
            ..Active::default()
        };
        for p in active.by_name.values() {
            for ns in &p.manifest.iq_namespaces {
                active.by_iq_ns.insert(ns.clone(), p.clone());
            }
            for a in &p.manifest.addresses {
                for d in domains {
                    active
                        .by_address
                        .insert(a.replace("{domain}", d).to_ascii_lowercase(), p.clone());
                }
            }
            if p.manifest.world.is_filter() {
                active.filters.push(p.clone());
            }
            active.disco_features.extend(p.manifest.disco_features.iter().cloned());
            active
                .account_features
                .extend(p.manifest.account_features.iter().cloned());
            if p.manifest.account_items && active.account_items.is_none() {
                active.account_items = Some(p.clone());
            }
            active.account_identities.extend(
                p.manifest
                    .account_identities
                    .iter()
                    .filter_map(|i| i.split_once('/'))
                    .map(|(c, t)| (c.to_string(), t.to_string())),
            );
        }
        for list in [&mut active.disco_features, &mut active.account_features] {
            list.sort();
            list.dedup();
        }
        active.account_identities.sort();
        active.account_identities.dedup();
        active
    }

    pub fn for_iq_namespace(&self, ns: &str) -> Option<&Arc<PluginHandle>> {
        self.by_iq_ns.get(ns)
    }

    /// The plugin owning a component domain such as `conference.example.org`.
    pub fn for_address(&self, domain: &str) -> Option<&Arc<PluginHandle>> {
        self.by_address.get(&domain.to_ascii_lowercase())
    }

    pub fn addresses(&self) -> impl Iterator<Item = &String> {
        self.by_address.keys()
    }
}

pub struct Plugins {
    engine: Engine,
    linkers: Arc<Linkers>,
    pub dir: PathBuf,
    domains: Vec<String>,
    intake: Arc<Intake>,
    host: OnceLock<HostCaps>,
    /// Read on every routed stanza; a load takes no lock and touches no refcount.
    active: arc_swap::ArcSwap<Active>,
    /// Whether the active set has any filter, any component address: read on every routed
    /// stanza, so a node without them pays one relaxed load, not a lock and a refcount.
    any_filter: AtomicBool,
    any_address: AtomicBool,
    /// One loader at a time (watcher events and admin reloads serialize here).
    loading: tokio::sync::Mutex<()>,
    /// Where each version's instance task runs; it ends on this group's signal.
    tasks: crate::tasks::Tasks,
    /// Started by [`Plugins::attach`], when the store is known.
    timers: OnceLock<Arc<timers::Timers>>,
    /// Made by [`Plugins::attach`] when the node is in a pool.
    key_router: OnceLock<Arc<keyed::KeyRouter>>,
    /// The filters' interest sets, by plugin name.
    pub interest: Arc<interest::InterestSets>,
}

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("{0}")]
    Manifest(#[from] manifest::ManifestError),
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("{name}: {message}")]
    Rejected { name: String, message: String },
    #[error("no plugin named {0}")]
    Unknown(String),
}

impl Plugins {
    /// `max_input_bytes` bounds the serialized stanza a plugin is handed
    /// (`[limits] plugin_stanza_bytes`). Instance tasks run in `tasks`.
    pub fn new(
        dir: PathBuf,
        domains: Vec<String>,
        max_input_bytes: usize,
        tasks: crate::tasks::Tasks,
    ) -> anyhow::Result<Plugins> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(256);
        pool.total_core_instances(2048);
        pool.total_memories(256);
        pool.total_tables(2048);
        pool.max_memory_size(1 << 30);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)?;
        let linkers = Arc::new(Linkers::new(&engine)?);
        spawn_epoch_ticker(engine.weak());
        Ok(Plugins {
            engine,
            linkers,
            dir,
            intake: Arc::new(Intake {
                max_bytes: max_input_bytes,
                domains: domains.clone(),
            }),
            domains,
            host: OnceLock::new(),
            active: Default::default(),
            any_filter: AtomicBool::new(false),
            any_address: AtomicBool::new(false),
            loading: tokio::sync::Mutex::new(()),
            tasks,
            timers: OnceLock::new(),
            key_router: OnceLock::new(),
            interest: Default::default(),
        })
    }

    /// Give plugins their host capabilities (see [`host`]) and start their timers; once,
    /// before any plugin is loaded.
    pub fn attach(self: &Arc<Self>, ctx: Weak<crate::context::Context>, ownership: Option<Arc<dyn Ownership>>) {
        let node = ownership
            .as_ref()
            .map_or_else(|| LOCAL_NODE.to_string(), |o| o.node_id().to_string());
        if let Some(store) = ctx.upgrade().map(|c| c.store.clone()) {
            let deliver: Weak<dyn timers::Deliver> = Arc::downgrade(self) as Weak<dyn timers::Deliver>;
            let _ = self
                .timers
                .set(timers::Timers::start(node, store, deliver, &self.tasks));
        }
        if let Some(pool) = &ownership {
            let _ = self
                .key_router
                .set(keyed::KeyRouter::new(pool.clone(), Arc::downgrade(self)));
        }
        let _ = self.host.set(HostCaps {
            ctx,
            plugins: Arc::downgrade(self),
            ownership,
        });
    }

    pub fn timers(&self) -> Option<&Arc<timers::Timers>> {
        self.timers.get()
    }

    /// What plugins were given of the node (empty before [`Plugins::attach`]).
    pub fn host_caps(&self) -> HostCaps {
        self.host.get().cloned().unwrap_or_default()
    }

    pub fn key_router(&self) -> Option<&Arc<keyed::KeyRouter>> {
        self.key_router.get()
    }

    /// Put `user` in `plugin`'s interest set or take it out: in the store, then here, then
    /// announced to the pool.
    pub async fn set_interest(
        &self,
        plugin: &str,
        user: &str,
        has_rules: bool,
    ) -> Result<(), crate::store::StoreError> {
        let host = self.host_caps();
        if let Some(ctx) = host.ctx.upgrade() {
            ctx.store.interest_set(plugin, user, has_rules).await?;
        }
        self.interest.apply(plugin, user, has_rules);
        if let Some(pool) = &host.ownership {
            pool.announce_interest(plugin, user, has_rules);
        }
        Ok(())
    }

    /// The active set as of now; hold the guard briefly (a plugin loaded meanwhile is
    /// not in it).
    pub fn active(&self) -> arc_swap::Guard<Arc<Active>> {
        self.active.load()
    }

    fn publish(&self, by_name: BTreeMap<String, Arc<PluginHandle>>) {
        let next = Arc::new(Active::build(by_name, &self.domains));
        self.any_filter.store(!next.filters.is_empty(), Relaxed);
        self.any_address.store(!next.by_address.is_empty(), Relaxed);
        self.active.store(next);
    }

    /// Bring the active set in line with the directory: load new and changed plugins,
    /// unload removed ones. Failures are logged per plugin; the rest carry on.
    pub async fn sync_dir(&self) -> Vec<PluginError> {
        let _guard = self.loading.lock().await;
        let mut errors = Vec::new();
        let found = match scan_dir(&self.dir) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(dir = %self.dir.display(), error = %e, "plugins directory not readable");
                Vec::new()
            }
        };
        let current = self.active();
        let mut next = current.by_name.clone();
        // Removed files unload their plugin.
        next.retain(|_, h| {
            let keep = found.iter().any(|(wasm, _)| *wasm == h.path);
            if !keep {
                tracing::info!(plugin = %h.name(), "plugin removed");
            }
            keep
        });
        for (wasm, manifest_path) in found {
            match self.prepare(&wasm, &manifest_path, &current).await {
                Ok(Some(handle)) => {
                    let name = handle.name().to_string();
                    if let Some(old) = next.values().find(|h| h.path == wasm && h.name() != name) {
                        let old_name = old.name().to_string();
                        next.remove(&old_name);
                    }
                    next.insert(name, handle);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(error = %e, "plugin rejected; any running version keeps serving");
                    errors.push(e);
                }
            }
        }
        self.publish(next);
        errors
    }

    /// Force a reload of one plugin from its files, even if unchanged.
    pub async fn reload(&self, name: &str) -> Result<(), PluginError> {
        let _guard = self.loading.lock().await;
        let current = self.active();
        let old = current
            .by_name
            .get(name)
            .ok_or_else(|| PluginError::Unknown(name.to_string()))?;
        let manifest_path = old.path.with_extension("toml");
        let handle = self.load(&old.path, &manifest_path, Some(old)).await?;
        let mut next = current.by_name.clone();
        next.insert(name.to_string(), handle);
        self.publish(next);
        Ok(())
    }

    /// Load a plugin if its bytes changed since the running version.
    async fn prepare(
        &self,
        wasm: &Path,
        manifest_path: &Path,
        current: &Active,
    ) -> Result<Option<Arc<PluginHandle>>, PluginError> {
        let digest = digest_files(wasm, manifest_path)?;
        let old = current.by_name.values().find(|h| h.path == wasm);
        if old.is_some_and(|h| h.digest == digest) {
            return Ok(None);
        }
        self.load(wasm, manifest_path, old).await.map(Some)
    }

    async fn load(
        &self,
        wasm: &Path,
        manifest_path: &Path,
        old: Option<&Arc<PluginHandle>>,
    ) -> Result<Arc<PluginHandle>, PluginError> {
        let manifest = Manifest::load(manifest_path)?;
        let name = manifest.name.clone();
        let rejected = |message: String| PluginError::Rejected {
            name: name.clone(),
            message,
        };
        let digest = digest_files(wasm, manifest_path)?;
        if manifest.interest == manifest::Interest::Declared && !self.interest.loaded(&name) {
            let store = self.host.get().and_then(|h| h.ctx.upgrade()).map(|c| c.store.clone());
            if let Some(store) = store {
                let users = self
                    .interest
                    .load(&store, &name)
                    .await
                    .map_err(|e| rejected(format!("cannot read its interest set: {e}")))?;
                tracing::info!(plugin = %name, users, "interest set read");
            }
        }
        let bytes = std::fs::read(wasm).map_err(|e| PluginError::Read(wasm.display().to_string(), e))?;
        // Compiling is CPU-heavy: keep it off the async workers serving clients.
        let engine = self.engine.clone();
        let component = tokio::task::spawn_blocking(move || Component::from_binary(&engine, &bytes))
            .await
            .map_err(|e| rejected(format!("compiler task failed: {e}")))?
            .map_err(|e| rejected(format!("not a valid component: {e:#}")))?;
        let version = Version::of(&component, &self.engine).map_err(|e| rejected(format!("cannot serve it: {e}")))?;
        let stats = old.map(|o| o.stats.clone()).unwrap_or_default();
        let blueprint = Blueprint {
            engine: self.engine.clone(),
            linkers: self.linkers.clone(),
            component,
            version,
            manifest: manifest.clone(),
            host: self.host.get().cloned().unwrap_or_default(),
            stats: stats.clone(),
            health: Arc::default(), // each instance's own, given by `instance::start`
        };
        let mut started = Vec::with_capacity(manifest.instances);
        for _ in 0..manifest.instances {
            let runner = queue::start(blueprint.clone(), &self.tasks).await;
            started.push(runner.map_err(|e| rejected(format!("{e:#}")))?);
        }
        if old.is_some() {
            stats.reloads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        tracing::info!(plugin = %name, version = %manifest.version, world = ?manifest.world, contract = %version, reloaded = old.is_some(), "plugin loaded");
        let keyed = match manifest.keyed && manifest.world.is_feature() {
            true => self.key_router.get().cloned(),
            false => None,
        };
        let interest = (manifest.interest == manifest::Interest::Declared).then(|| self.interest.set(&name));
        Ok(Arc::new(PluginHandle {
            manifest,
            path: wasm.to_path_buf(),
            digest,
            runners: runners::Runners::new(started),
            stats,
            loaded_at: SystemTime::now(),
            intake: self.intake.clone(),
            version,
            busy_logged: Mutex::new(None),
            interest,
            keyed,
        }))
    }

    /// A JSON description of every plugin, for `poolxmpp plugin list`.
    pub fn describe(&self) -> serde_json::Value {
        let active = self.active();
        let list: Vec<_> = active
            .by_name
            .values()
            .map(|h| {
                serde_json::json!({
                    "name": h.name(),
                    "version": h.manifest.version,
                    "world": format!("{:?}", h.manifest.world).to_lowercase(),
                    "contract": h.version.as_str(),
                    "path": h.path.display().to_string(),
                    "state": match h.runners.disabled() { Some(r) => format!("disabled: {r}"), None => "active".to_string() },
                    "instances": h.instances(),
                    "loaded_at": h.loaded_at.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
                    "stats": h.stats.snapshot(),
                })
            })
            .collect();
        serde_json::Value::Array(list)
    }
}

/// `*.wasm` files with a manifest beside them; a `.wasm` without one is reported and skipped.
fn scan_dir(dir: &Path) -> std::io::Result<Vec<(PathBuf, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("wasm") {
            continue;
        }
        let manifest = path.with_extension("toml");
        if manifest.exists() {
            out.push((path, manifest));
        } else {
            tracing::warn!(wasm = %path.display(), "no manifest beside this component; skipped");
        }
    }
    out.sort();
    Ok(out)
}

fn digest_files(wasm: &Path, manifest: &Path) -> Result<[u8; 32], PluginError> {
    let mut h = sha2::Sha256::new();
    for p in [wasm, manifest] {
        let bytes = std::fs::read(p).map_err(|e| PluginError::Read(p.display().to_string(), e))?;
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    Ok(h.finalize().into())
}

/// Advance the engine's epoch so running calls can be interrupted at their deadline. Stops
/// when the engine is gone.
fn spawn_epoch_ticker(engine: wasmtime::EngineWeak) {
    std::thread::Builder::new()
        .name("wasm-epoch".into())
        .spawn(move || loop {
            std::thread::sleep(instance::EPOCH_TICK);
            match engine.upgrade() {
                Some(e) => e.increment_epoch(),
                None => return,
            }
        })
        .expect("spawning the epoch thread");
}
