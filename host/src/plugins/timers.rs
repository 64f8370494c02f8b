//! Plugin timers (contract 0.2 `timers`): kept in the store, armed in one scheduler task
//! per node, delivered as `on-event(timer)` to whichever version of the plugin is serving
//! when one is due — so they survive hot reloads, restarts, and (adopted on `node-left`)
//! the death of the node that armed them.
//!
//! The store decides who fires: a due timer is delivered only if deleting its row *with
//! the token it was armed with* succeeds, so a timer set again or cancelled meanwhile is
//! not fired, and of two nodes that armed the same setting (an adoption race) one fires.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};

use std::time::Duration;

use tokio::sync::mpsc;

use crate::store::{Store, StoredTimer};
use crate::tasks::Tasks;

/// Bounds on what one plugin may keep armed (they are also rows in the shared store).
pub const MAX_NAME_BYTES: usize = 256;
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
pub const MAX_DELAY_MS: u64 = 366 * 24 * 3600 * 1000;
pub const MAX_PER_PLUGIN: usize = 100_000;
/// A timer due for a plugin that is not loaded (being replaced, or removed) waits this long.
const ABSENT_RETRY: Duration = Duration::from_secs(5);

/// Why a timer was not set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerRefused {
    /// Over one of the bounds above (the bound).
    TooLarge(u64),
    Store(String),
}

/// Who receives due timers: the plugin registry.
pub trait Deliver: Send + Sync {
    /// Whether a version of `plugin` is serving now.
    fn would_take(&self, plugin: &str) -> bool;
    /// Hand `timer` to the serving version of its plugin; false if none is loaded.
    fn deliver(&self, timer: &StoredTimer) -> bool;
}

enum Command {
    Arm(StoredTimer),
    Disarm {
        plugin: String,
        name: String,
    },
    /// Read this node's timers from the store again (after adopting a dead node's).
    Reload,
}

/// The handle plugins' `timers` imports use.
pub struct Timers {
    node: String,
    store: Store,
    tx: mpsc::UnboundedSender<Command>,
    /// Armed timers per plugin, for the per-plugin bound.
    counts: std::sync::Mutex<HashMap<String, usize>>,
}

impl Timers {
    /// Start the scheduler in `tasks`, arming the timers this node has in the store.
    pub fn start(node: String, store: Store, deliver: Weak<dyn Deliver>, tasks: &Tasks) -> Arc<Timers> {
        let (tx, rx) = mpsc::unbounded_channel();
        let timers = Arc::new(Timers {
            node,
            store,
            tx,
            counts: Default::default(),
        });
        let _ = timers.tx.send(Command::Reload);
        tasks.spawn(
            "plugin timers",
            run(Arc::downgrade(&timers), deliver, rx, tasks.signalled()),
        );
        timers
    }

    pub async fn set(&self, plugin: &str, name: &str, after_ms: u64, payload: Vec<u8>) -> Result<(), TimerRefused> {
        if name.len() > MAX_NAME_BYTES {
            return Err(TimerRefused::TooLarge(MAX_NAME_BYTES as u64));
        }
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(TimerRefused::TooLarge(MAX_PAYLOAD_BYTES as u64));
        }
        if after_ms > MAX_DELAY_MS {
            return Err(TimerRefused::TooLarge(MAX_DELAY_MS));
        }
        if self.count(plugin) >= MAX_PER_PLUGIN {
            return Err(TimerRefused::TooLarge(MAX_PER_PLUGIN as u64));
        }
        let timer = StoredTimer {
            plugin: plugin.to_string(),
            name: name.to_string(),
            due_ms: now_ms().saturating_add(after_ms as i64),
            token: token(),
            payload,
        };
        self.store
            .timer_set(&self.node, &timer)
            .await
            .map_err(|e| TimerRefused::Store(e.to_string()))?;
        let _ = self.tx.send(Command::Arm(timer));
        Ok(())
    }

    pub async fn cancel(&self, plugin: &str, name: &str) -> Result<bool, TimerRefused> {
        let _ = self.tx.send(Command::Disarm {
            plugin: plugin.to_string(),
            name: name.to_string(),
        });
        self.store
            .timer_cancel(plugin, name)
            .await
            .map_err(|e| TimerRefused::Store(e.to_string()))
    }

    /// `node` left the pool: its timers are this node's now (the first survivor to ask
    /// gets them all; the others find none).
    pub async fn adopt(&self, node: &str) {
        match self.store.timers_adopt(node, &self.node).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(%node, timers = n, "adopted the plugin timers of a node that left");
                let _ = self.tx.send(Command::Reload);
            }
            Err(e) => tracing::warn!(%node, error = %e, "cannot adopt the plugin timers of a node that left"),
        }
    }

    fn count(&self, plugin: &str) -> usize {
        self.counts
            .lock()
            .expect("timer counts")
            .get(plugin)
            .copied()
            .unwrap_or(0)
    }

    fn counted(&self, plugin: &str, delta: isize) {
        let mut counts = self.counts.lock().expect("timer counts");
        let n = counts.entry(plugin.to_string()).or_default();
        *n = n.saturating_add_signed(delta);
        if *n == 0 {
            counts.remove(plugin);
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Tells one setting of a name from the next: the set time in nanoseconds, made unique
/// within this process.
fn token() -> i64 {
    static LAST: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    let prev = LAST.fetch_max(now, Relaxed);
    if prev >= now {
        LAST.fetch_add(1, Relaxed) + 1
    } else {
        now
    }
}

type Key = (String, String);

/// The scheduler: a heap of due times; `armed` holds the token each key was last armed
/// with, so superseded and cancelled entries are skipped when they surface.
async fn run(
    timers: Weak<Timers>,
    deliver: Weak<dyn Deliver>,
    mut rx: mpsc::UnboundedReceiver<Command>,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut heap: BinaryHeap<Reverse<(i64, i64, Key)>> = BinaryHeap::new();
    let mut armed: HashMap<Key, StoredTimer> = HashMap::new();
    tokio::pin!(stop);
    loop {
        let next = heap.peek().map(|Reverse((due, _, _))| *due);
        let sleep = async {
            match next {
                Some(due) => tokio::time::sleep(Duration::from_millis((due - now_ms()).max(0) as u64)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = &mut stop => return,
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { return };
                let Some(timers) = timers.upgrade() else { return };
                match cmd {
                    Command::Arm(t) => arm(&timers, &mut heap, &mut armed, t),
                    Command::Disarm { plugin, name } => {
                        if armed.remove(&(plugin.clone(), name)).is_some() {
                            timers.counted(&plugin, -1);
                        }
                    }
                    Command::Reload => match timers.store.timers_of(&timers.node).await {
                        Ok(list) => {
                            for t in list {
                                arm(&timers, &mut heap, &mut armed, t);
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot read this node's plugin timers"),
                    },
                }
            }
            () = sleep => {
                let Some(Reverse((_, token, key))) = heap.pop() else { continue };
                let Some(timer) = armed.get(&key).filter(|t| t.token == token).cloned() else { continue };
                let (Some(timers), Some(deliver)) = (timers.upgrade(), deliver.upgrade()) else { return };
                fire(&timers, &*deliver, &mut heap, &mut armed, key, timer).await;
            }
        }
    }
}

fn arm(
    timers: &Timers,
    heap: &mut BinaryHeap<Reverse<(i64, i64, Key)>>,
    armed: &mut HashMap<Key, StoredTimer>,
    t: StoredTimer,
) {
    let key = (t.plugin.clone(), t.name.clone());
    heap.push(Reverse((t.due_ms, t.token, key.clone())));
    if armed.insert(key, t.clone()).is_none() {
        timers.counted(&t.plugin, 1);
    }
}

async fn fire(
    timers: &Timers,
    deliver: &dyn Deliver,
    heap: &mut BinaryHeap<Reverse<(i64, i64, Key)>>,
    armed: &mut HashMap<Key, StoredTimer>,
    key: Key,
    timer: StoredTimer,
) {
    // Not loaded right now (a reload in progress, or removed): try again shortly, keeping it.
    if !deliver.would_take(&timer.plugin) {
        let retry = now_ms() + ABSENT_RETRY.as_millis() as i64;
        heap.push(Reverse((retry, timer.token, key)));
        return;
    }
    armed.remove(&key);
    timers.counted(&timer.plugin, -1);
    match timers.store.timer_take(&timer.plugin, &timer.name, timer.token).await {
        Ok(true) => {
            if !deliver.deliver(&timer) {
                tracing::warn!(plugin = %timer.plugin, timer = %timer.name, "a due timer found no plugin to take it");
            }
        }
        // Set again, cancelled, or fired by another node meanwhile.
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(plugin = %timer.plugin, timer = %timer.name, error = %e, "cannot claim a due timer; retrying");
            let retry = StoredTimer {
                due_ms: now_ms() + ABSENT_RETRY.as_millis() as i64,
                ..timer
            };
            arm(timers, heap, armed, retry);
        }
    }
}
