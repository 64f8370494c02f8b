//! One plugin instance: the [`Actor`] owning the wasmtime `Store`, which runs one call at a
//! time for whoever holds it (see [`super::queue`]: callers in their own tasks, or the
//! instance's task), so the store itself needs no locks (the shape of Zed's extension host).
//!
//! Containment lives here: every call runs under an epoch deadline (CPU) and a wall-clock
//! timeout (host calls included), with the store's memory limit. A trap or timeout answers
//! that call with a fault, the instance is recreated from the compiled component, and the
//! [`Breaker`] decides whom a failing plugin stops serving: one sender whose calls keep
//! failing, or (when failures come from several senders) everyone, for a cool-down.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tracing::Instrument as _;
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store};

use super::bindings::latest::types;
use super::bindings::{latest, v0_1, Version};
use super::breaker::{Admission, Breaker, BreakerConfig, Tripped};
use super::imports::PluginState;
use super::input::Handed;
use super::manifest::{Manifest, World};
use super::stats::PluginStats;

/// How often the engine's epoch advances; deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Why a call produced no answer from the plugin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    #[error("the plugin trapped: {0}")]
    Trap(String),
    #[error("the plugin ran out of time")]
    Timeout,
    #[error("the plugin is switched off: {0}")]
    Disabled(String),
    #[error("the plugin is overloaded")]
    Busy,
    /// This sender's calls keep failing; it (only it) is refused for a cool-down.
    #[error("the plugin keeps failing on this sender's requests; try again later")]
    SenderBlocked,
    /// The stanza, as serialized for the plugin, is over `[limits] plugin_stanza_bytes`.
    #[error("the stanza is too large for a plugin ({0} bytes serialized)")]
    TooLarge(usize),
}

pub type CallResult<T> = Result<T, Fault>;

/// What a feature made of a stanza, once it has run.
pub type StanzaOutcome = CallResult<Result<(), types::StanzaError>>;

/// Where a stanza call's outcome goes: to a receiver someone awaits, or to a callback run
/// by whoever ran the call (no task waits for it).
pub enum Reply {
    Channel(oneshot::Sender<StanzaOutcome>),
    Then(Then),
}

impl Reply {
    pub fn send(self, outcome: StanzaOutcome) {
        match self {
            Reply::Channel(tx) => {
                let _ = tx.send(outcome);
            }
            Reply::Then(then) => then.call(outcome),
        }
    }
}

/// A callback for a stanza's outcome, called exactly once: a call dropped unrun (its
/// version unloaded at shutdown) calls it with [`Fault::Disabled`].
pub struct Then(Option<Box<dyn FnOnce(StanzaOutcome) + Send>>);

impl Then {
    pub fn new(f: impl FnOnce(StanzaOutcome) + Send + 'static) -> Then {
        Then(Some(Box::new(f)))
    }

    fn call(mut self, outcome: StanzaOutcome) {
        if let Some(f) = self.0.take() {
            f(outcome);
        }
    }
}

impl Drop for Then {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f(Err(Fault::Disabled("unloaded".into())));
        }
    }
}

pub enum Call {
    Stanza {
        stanza: Handed,
        /// Whose input this is, for the breaker (see [`super::input::Prepared`]).
        sender: Option<String>,
        reply: Reply,
    },
    Check {
        direction: types::Direction,
        stanza: Handed,
        sender: Option<String>,
        reply: oneshot::Sender<CallResult<types::Verdict>>,
    },
    Event(types::Event),
    Choose {
        user: String,
        view: types::PoolView,
        /// The caller stops waiting then: a call still queued at that point is dropped
        /// instead of run, so a strategy never records a decision the host did not take.
        deadline: Instant,
        reply: oneshot::Sender<CallResult<Option<String>>>,
    },
    PoolChange(types::PoolView),
}

impl Call {
    /// The export this call invokes, for spans and logs.
    fn kind(&self) -> &'static str {
        match self {
            Call::Stanza { .. } => "handle-stanza",
            Call::Check { .. } => "check",
            Call::Event(_) => "on-event",
            Call::Choose { .. } => "choose-node",
            Call::PoolChange(_) => "on-pool-change",
        }
    }

    /// Whose input the call carries: a stanza's sender, the user being placed, or no one
    /// (events and pool changes come from the host itself).
    fn sender(&self) -> Option<&str> {
        match self {
            Call::Stanza { sender, .. } | Call::Check { sender, .. } => sender.as_deref(),
            Call::Choose { user, .. } => Some(user),
            Call::Event(_) | Call::PoolChange(_) => None,
        }
    }
}

/// The linkers for each world, built once per engine. Each holds the imports of every
/// contract version (their names carry the version, so they do not clash).
pub struct Linkers {
    pub feature: Linker<PluginState>,
    pub filter: Linker<PluginState>,
    pub placement: Linker<PluginState>,
    pub feature_filter: Linker<PluginState>,
}

impl Linkers {
    pub fn new(engine: &Engine) -> wasmtime::Result<Linkers> {
        use wasmtime::component::HasSelf;
        let mut feature = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut feature)?;
        latest::feature::Feature::add_to_linker::<_, HasSelf<_>>(&mut feature, |s| s)?;
        v0_1::feature::Feature::add_to_linker::<_, HasSelf<_>>(&mut feature, |s| s)?;
        let mut filter = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut filter)?;
        latest::filter::Filter::add_to_linker::<_, HasSelf<_>>(&mut filter, |s| s)?;
        v0_1::filter::Filter::add_to_linker::<_, HasSelf<_>>(&mut filter, |s| s)?;
        let mut placement = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut placement)?;
        latest::placement::Placement::add_to_linker::<_, HasSelf<_>>(&mut placement, |s| s)?;
        v0_1::placement::Placement::add_to_linker::<_, HasSelf<_>>(&mut placement, |s| s)?;
        let mut feature_filter = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut feature_filter)?;
        latest::feature_filter::FeatureFilter::add_to_linker::<_, HasSelf<_>>(&mut feature_filter, |s| s)?;
        Ok(Linkers {
            feature,
            filter,
            placement,
            feature_filter,
        })
    }
}

/// Whether the breaker has switched the plugin off, and why: the actor's [`Breaker`]
/// published for the registry, which refuses calls without queueing them while it is off.
#[derive(Default)]
pub struct Health {
    /// Fast path: false while the breaker is closed.
    disabled: AtomicBool,
    /// The reason, and when a trial call will be let through (`None`: not by itself).
    state: Mutex<Option<(String, Option<Instant>)>>,
}

impl Health {
    /// The reason calls are refused now, if they are. Once the cool-down is over this is
    /// `None` again, so the next call reaches the actor as the half-open trial.
    pub fn disabled(&self) -> Option<String> {
        if !self.disabled.load(Ordering::Acquire) {
            return None;
        }
        match &*self.state.lock().expect("health lock") {
            Some((reason, until)) if until.is_none_or(|u| Instant::now() < u) => Some(reason.clone()),
            _ => None,
        }
    }

    fn publish(&self, breaker: &Breaker) {
        let state = breaker.open_state();
        self.disabled.store(state.is_some(), Ordering::Release);
        *self.state.lock().expect("health lock") = state;
    }
}

/// A running instance's exports, by world and contract version.
enum Exports {
    Feature(latest::feature::Feature),
    Filter(latest::filter::Filter),
    Placement(latest::placement::Placement),
    FeatureV0_1(v0_1::feature::Feature),
    FilterV0_1(v0_1::filter::Filter),
    PlacementV0_1(v0_1::placement::Placement),
    FeatureFilter(latest::feature_filter::FeatureFilter),
}

struct Instance {
    store: Store<PluginState>,
    exports: Exports,
}

/// Everything needed to (re)create instances of one compiled plugin version.
#[derive(Clone)]
pub struct Blueprint {
    pub engine: Engine,
    pub linkers: Arc<Linkers>,
    pub component: Component,
    /// The contract version the component was built for.
    pub version: Version,
    pub manifest: Manifest,
    pub host: super::host::HostCaps,
    pub stats: Arc<PluginStats>,
    pub health: Arc<Health>,
}

fn ticks(d: Duration) -> u64 {
    (d.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64 + 1
}

impl Blueprint {
    /// Instantiate and run `init`; any failure rejects this version.
    async fn instantiate(&self) -> anyhow::Result<Instance> {
        let limits = &self.manifest.limits;
        let state = PluginState::new(
            &self.manifest.name,
            &self.manifest.grants,
            self.host.clone(),
            self.stats.clone(),
            (limits.memory_mib * 1024 * 1024) as usize,
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_trap();
        let init_budget = Duration::from_millis(limits.init_timeout_ms);
        store.set_epoch_deadline(ticks(init_budget));
        let config = self.manifest.config_pairs();
        let work = async {
            let refused = |e: String| anyhow::anyhow!("init refused: {e}");
            let (component, linkers) = (&self.component, &self.linkers);
            let exports = match (self.manifest.world, self.version) {
                (World::Feature, Version::V0_2) => {
                    let f =
                        latest::feature::Feature::instantiate_async(&mut store, component, &linkers.feature).await?;
                    let init = f.poolxmpp_plugin_feature_plugin().call_init(&mut store, &config);
                    init.await?.map_err(refused)?;
                    Exports::Feature(f)
                }
                (World::Feature, Version::V0_1) => {
                    let f = v0_1::feature::Feature::instantiate_async(&mut store, component, &linkers.feature).await?;
                    let init = f.poolxmpp_plugin_feature_plugin().call_init(&mut store, &config);
                    init.await?.map_err(refused)?;
                    Exports::FeatureV0_1(f)
                }
                (World::Filter, Version::V0_2) => {
                    let f = latest::filter::Filter::instantiate_async(&mut store, component, &linkers.filter).await?;
                    let init = f.poolxmpp_plugin_filter_plugin().call_init(&mut store, &config);
                    init.await?.map_err(refused)?;
                    Exports::Filter(f)
                }
                (World::Filter, Version::V0_1) => {
                    let f = v0_1::filter::Filter::instantiate_async(&mut store, component, &linkers.filter).await?;
                    let init = f.poolxmpp_plugin_filter_plugin().call_init(&mut store, &config);
                    init.await?.map_err(refused)?;
                    Exports::FilterV0_1(f)
                }
                (World::FeatureFilter, Version::V0_2) => {
                    let linker = &linkers.feature_filter;
                    let f =
                        latest::feature_filter::FeatureFilter::instantiate_async(&mut store, component, linker).await?;
                    let init = f.poolxmpp_plugin_feature_plugin().call_init(&mut store, &config);
                    init.await?.map_err(refused)?;
                    let init = f.poolxmpp_plugin_filter_plugin().call_init(&mut store, &config);
                    init.await?.map_err(refused)?;
                    Exports::FeatureFilter(f)
                }
                (World::FeatureFilter, Version::V0_1) => {
                    anyhow::bail!("world feature-filter needs contract 0.2 or later")
                }
                (World::Placement, Version::V0_2) => {
                    let p = latest::placement::Placement::instantiate_async(&mut store, component, &linkers.placement)
                        .await?;
                    let init = p.poolxmpp_plugin_placement_plugin().call_init(&mut store, &config);
                    init.await?.map_err(refused)?;
                    Exports::Placement(p)
                }
                (World::Placement, Version::V0_1) => {
                    let p = v0_1::placement::Placement::instantiate_async(&mut store, component, &linkers.placement)
                        .await?;
                    let init = p.poolxmpp_plugin_placement_plugin().call_init(&mut store, &config);
                    init.await?.map_err(refused)?;
                    Exports::PlacementV0_1(p)
                }
            };
            anyhow::Ok(exports)
        };
        let exports = tokio::time::timeout(init_budget, work)
            .await
            .map_err(|_| anyhow::anyhow!("init took longer than {init_budget:?}"))??;
        Ok(Instance { store, exports })
    }
}

/// One version's instance with its containment: the breaker and the call budget. Whoever
/// holds it (its own task, or a caller that found it free: `queue`) runs one call at a time.
pub struct Actor {
    blueprint: Blueprint,
    breaker: Breaker,
    /// `None` after a fault, until the next call recreates it.
    instance: Option<Instance>,
    budget: Duration,
}

impl Actor {
    /// Create the first instance (so a bad version is rejected before it replaces
    /// anything); `health` is where this instance's breaker is published.
    pub async fn start(mut blueprint: Blueprint, health: Arc<Health>) -> anyhow::Result<Actor> {
        blueprint.health = health;
        let instance = blueprint.instantiate().await?;
        let budget = Duration::from_millis(blueprint.manifest.limits.timeout_ms);
        let breaker = Breaker::new(BreakerConfig::from(&blueprint.manifest.limits));
        Ok(Actor {
            blueprint,
            breaker,
            instance: Some(instance),
            budget,
        })
    }

    pub fn name(&self) -> &str {
        &self.blueprint.manifest.name
    }

    /// Run one call: through the breaker, under the budget, recreating the instance after
    /// a fault.
    pub async fn handle(&mut self, call: Call) {
        let blueprint = &self.blueprint;
        let name = &blueprint.manifest.name;
        let sender = call.sender().map(str::to_string);
        match self.breaker.admit(sender.as_deref(), Instant::now()) {
            Admission::Run => {}
            Admission::SenderBlocked => {
                blueprint.stats.refused.fetch_add(1, Ordering::Relaxed);
                return refuse(call, Fault::SenderBlocked);
            }
            Admission::Open(reason) => return refuse(call, Fault::Disabled(reason)),
        }
        if let Call::Choose { deadline, .. } = &call {
            if Instant::now() >= *deadline {
                return refuse(call, Fault::Timeout);
            }
        }
        let inst = match self.instance.take() {
            Some(i) => i,
            None => match blueprint.instantiate().await {
                Ok(i) => i,
                Err(e) => {
                    // Not this input's fault: the plugin is off until its cool-down ends.
                    let reason = format!("cannot recreate the instance: {e:#}");
                    tracing::error!(plugin = %name, "{reason}; switching it off");
                    self.breaker.trip(reason.clone(), Instant::now());
                    blueprint.health.publish(&self.breaker);
                    return refuse(call, Fault::Disabled(reason));
                }
            },
        };
        let started = Instant::now();
        blueprint.stats.calls.fetch_add(1, Ordering::Relaxed);
        // A span per call: the plugin's own log lines and the host calls it makes nest
        // under it, so one stanza's path through a plugin reads as one unit.
        let span = tracing::debug_span!("plugin_call", plugin = %name, call = call.kind());
        let (inst, fault) = invoke(inst, call, self.budget, &blueprint.stats).instrument(span).await;
        blueprint.stats.record_latency(started.elapsed());
        match fault {
            None => {
                self.breaker.success(sender.as_deref());
                self.instance = inst;
            }
            Some(fault) => {
                match &fault {
                    Fault::Timeout => blueprint.stats.timeouts.fetch_add(1, Ordering::Relaxed),
                    _ => blueprint.stats.traps.fetch_add(1, Ordering::Relaxed),
                };
                tracing::warn!(plugin = %name, %fault, sender = sender.as_deref().unwrap_or("-"), "plugin call failed; recreating the instance");
                // The store may be mid-call or poisoned: never reuse it (`instance` stays `None`).
                record(name, &mut self.breaker, sender.as_deref(), &fault.to_string());
            }
        }
        blueprint.health.publish(&self.breaker);
    }
}

/// Count a failure and log what it switched off.
fn record(name: &str, breaker: &mut Breaker, sender: Option<&str>, fault: &str) {
    match breaker.failure(sender, fault, Instant::now()) {
        Tripped::Nothing => {}
        Tripped::Sender(who) => {
            tracing::warn!(plugin = %name, sender = %who, "calls from this sender keep failing; refusing it for a cool-down");
        }
        Tripped::Plugin(reason) => tracing::error!(plugin = %name, "breaker open: {reason}"),
    }
}

pub fn refuse(call: Call, fault: Fault) {
    match call {
        Call::Stanza { reply, .. } => reply.send(Err(fault)),
        Call::Check { reply, .. } => {
            let _ = reply.send(Err(fault));
        }
        Call::Choose { reply, .. } => {
            let _ = reply.send(Err(fault));
        }
        Call::Event(_) | Call::PoolChange(_) => {}
    }
}

/// Run one call. Returns the instance if it is still usable, and the fault if any.
async fn invoke(
    mut inst: Instance,
    call: Call,
    budget: Duration,
    stats: &PluginStats,
) -> (Option<Instance>, Option<Fault>) {
    inst.store.set_epoch_deadline(ticks(budget));
    macro_rules! guarded {
        ($fut:expr) => {
            match tokio::time::timeout(budget, $fut).await {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(trap)) => Err(classify(trap)),
                Err(_) => Err(Fault::Timeout),
            }
        };
    }
    let Instance { store, exports } = &mut inst;
    let fault = match (call, &*exports) {
        (
            Call::Stanza {
                stanza: Handed::Latest(stanza),
                reply,
                ..
            },
            Exports::Feature(f),
        ) => {
            let r = guarded!(f
                .poolxmpp_plugin_feature_plugin()
                .call_handle_stanza(&mut *store, &stanza));
            answer_stanza(r, reply, stats)
        }
        (
            Call::Stanza {
                stanza: Handed::V0_1(stanza),
                reply,
                ..
            },
            Exports::FeatureV0_1(f),
        ) => {
            let r = guarded!(f
                .poolxmpp_plugin_feature_plugin()
                .call_handle_stanza(&mut *store, &stanza));
            answer_stanza(r.map(|r| r.map_err(v0_1::stanza_error)), reply, stats)
        }
        (
            Call::Stanza {
                stanza: Handed::Latest(stanza),
                reply,
                ..
            },
            Exports::FeatureFilter(f),
        ) => {
            let r = guarded!(f
                .poolxmpp_plugin_feature_plugin()
                .call_handle_stanza(&mut *store, &stanza));
            answer_stanza(r, reply, stats)
        }
        (Call::Event(event), Exports::FeatureFilter(f)) => {
            let r: CallResult<()> = guarded!(f.poolxmpp_plugin_feature_plugin().call_on_event(&mut *store, &event));
            r.err()
        }
        (
            Call::Check {
                direction,
                stanza: Handed::Latest(stanza),
                reply,
                ..
            },
            Exports::FeatureFilter(f),
        ) => {
            let r = guarded!(f
                .poolxmpp_plugin_filter_plugin()
                .call_check(&mut *store, direction, &stanza));
            answer(r, reply)
        }
        (Call::Event(event), Exports::Feature(f)) => {
            let r: CallResult<()> = guarded!(f.poolxmpp_plugin_feature_plugin().call_on_event(&mut *store, &event));
            r.err()
        }
        (Call::Event(event), Exports::FeatureV0_1(f)) => match v0_1::event(&event) {
            Some(event) => {
                let r: CallResult<()> = guarded!(f.poolxmpp_plugin_feature_plugin().call_on_event(&mut *store, &event));
                r.err()
            }
            None => None,
        },
        (
            Call::Check {
                direction,
                stanza: Handed::Latest(stanza),
                reply,
                ..
            },
            Exports::Filter(f),
        ) => {
            let r = guarded!(f
                .poolxmpp_plugin_filter_plugin()
                .call_check(&mut *store, direction, &stanza));
            answer(r, reply)
        }
        (
            Call::Check {
                direction,
                stanza: Handed::V0_1(stanza),
                reply,
                ..
            },
            Exports::FilterV0_1(f),
        ) => {
            let r = guarded!(f.poolxmpp_plugin_filter_plugin().call_check(
                &mut *store,
                v0_1::direction(direction),
                &stanza
            ));
            answer(r.map(v0_1::verdict), reply)
        }
        (Call::Choose { user, view, reply, .. }, Exports::Placement(p)) => {
            let r = guarded!(p
                .poolxmpp_plugin_placement_plugin()
                .call_choose_node(&mut *store, &user, &view));
            answer(r, reply)
        }
        (Call::Choose { user, view, reply, .. }, Exports::PlacementV0_1(p)) => {
            let r = guarded!(p.poolxmpp_plugin_placement_plugin().call_choose_node(
                &mut *store,
                &user,
                &v0_1::pool_view(&view)
            ));
            answer(r.map(v0_1::chosen), reply)
        }
        (Call::PoolChange(view), Exports::Placement(p)) => {
            let r: CallResult<()> = guarded!(p
                .poolxmpp_plugin_placement_plugin()
                .call_on_pool_change(&mut *store, &view));
            r.err()
        }
        (Call::PoolChange(view), Exports::PlacementV0_1(p)) => {
            let r: CallResult<()> = guarded!(p
                .poolxmpp_plugin_placement_plugin()
                .call_on_pool_change(&mut *store, &v0_1::pool_view(&view)));
            r.err()
        }
        (call, _) => {
            // A call for another world or version: the registry never sends one, but be total.
            refuse(call, Fault::Disabled("wrong world or contract version".into()));
            None
        }
    };
    match fault {
        None => (Some(inst), None),
        Some(f) => (None, Some(f)),
    }
}

/// Send a call's answer; the fault, if any, is the caller's to handle.
fn answer<T>(r: CallResult<T>, reply: oneshot::Sender<CallResult<T>>) -> Option<Fault> {
    let fault = r.as_ref().err().cloned();
    let _ = reply.send(r);
    fault
}

/// Send a stanza call's outcome, counting the stanza errors a feature answered with.
fn answer_stanza(r: StanzaOutcome, reply: Reply, stats: &PluginStats) -> Option<Fault> {
    if matches!(r, Ok(Err(_))) {
        stats.errors.fetch_add(1, Ordering::Relaxed);
    }
    let fault = r.as_ref().err().cloned();
    reply.send(r);
    fault
}

fn classify(err: wasmtime::Error) -> Fault {
    match err.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => Fault::Timeout,
        Some(trap) => Fault::Trap(trap.to_string()),
        None => Fault::Trap(format!("{err:#}")),
    }
}
