//! How calls reach one running instance, and who runs them. Calls go through one FIFO
//! queue, so they run in the order they were submitted; whoever holds the instance runs
//! them, one at a time.
//!
//! A caller that may wait (a client's read loop, a filter check) queues its call and then
//! runs the queue itself if the instance is free — up to [`BATCH`] calls, its own among
//! them — instead of waking the instance's own task: with a busy plugin the instance then
//! passes from caller to caller on the threads that already run, without a cross-thread
//! hand-off per stanza (flat combining). A caller that finds the instance taken just
//! returns: the holder runs the call, or hands what is left to the instance's own task when
//! it lets go. Callers that cannot wait (a plugin's own sends, the pool, timers) queue and
//! wake that task.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Mutex, Notify};

use super::instance::{Actor, Blueprint, Call, Health};
use crate::tasks::Tasks;

/// Calls a caller runs from the queue at most before it hands the rest over (each is
/// bounded by the plugin's call budget): a client's read loop is lent out, not taken.
pub const BATCH: usize = 16;

/// The way to one instance's calls.
pub struct Runner {
    tx: mpsc::Sender<Call>,
    shared: Arc<Shared>,
    /// This instance's breaker, as published for callers.
    health: Arc<Health>,
}

struct Shared {
    /// The instance and the queue's receiving end: whoever holds it runs calls.
    held: Mutex<Held>,
    /// Calls sent and not yet taken from the queue. Read after letting go of the
    /// instance: a call sent while it was held is then seen, and handed on.
    queued: AtomicUsize,
    /// Wakes the instance's own task.
    wake: Notify,
    /// The version was replaced or unloaded: its task ends once the queue is empty.
    retired: AtomicBool,
}

struct Held {
    actor: Actor,
    rx: mpsc::Receiver<Call>,
}

impl Held {
    /// Run up to `max` queued calls, in order.
    async fn run(&mut self, queued: &AtomicUsize, max: usize) {
        for _ in 0..max {
            let Ok(call) = self.rx.try_recv() else { return };
            queued.fetch_sub(1, SeqCst);
            self.actor.handle(call).await;
        }
    }
}

impl Runner {
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Queue a call for the instance's own task to run (for callers that cannot wait); a
    /// full queue refuses it (the call is dropped).
    pub fn send(&self, call: Call) -> Result<(), mpsc::error::TrySendError<()>> {
        self.queue(call)?;
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Queue a call, to be run by [`Runner::run_queued`] or by whoever holds the instance.
    pub fn queue(&self, call: Call) -> Result<(), mpsc::error::TrySendError<()>> {
        self.shared.queued.fetch_add(1, SeqCst);
        self.tx.try_send(call).map_err(|e| {
            self.shared.queued.fetch_sub(1, SeqCst);
            match e {
                mpsc::error::TrySendError::Full(_) => mpsc::error::TrySendError::Full(()),
                mpsc::error::TrySendError::Closed(_) => mpsc::error::TrySendError::Closed(()),
            }
        })
    }

    /// Room for one call in the queue, waiting up to `wait` for it (in turn with other
    /// waiters). `None` if the version was retired; `Err` if the wait ran out.
    pub async fn reserve(&self, wait: Duration) -> Result<Option<Slot<'_>>, tokio::time::error::Elapsed> {
        let permit = match self.tx.try_reserve() {
            Ok(permit) => Ok(permit),
            Err(mpsc::error::TrySendError::Closed(())) => return Ok(None),
            Err(mpsc::error::TrySendError::Full(())) => tokio::time::timeout(wait, self.tx.reserve()).await?,
        };
        Ok(permit.ok().map(|permit| Slot {
            permit,
            queued: &self.shared.queued,
        }))
    }

    /// Run queued calls in this task if the instance is free (at most [`BATCH`]); what is
    /// left goes to the instance's own task.
    pub async fn run_queued(&self) {
        let Ok(mut held) = self.shared.held.try_lock() else {
            return; // its holder runs our call, or hands it on
        };
        held.run(&self.shared.queued, BATCH).await;
        drop(held);
        if self.shared.queued.load(SeqCst) > 0 {
            self.shared.wake.notify_one();
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.shared.retired.store(true, SeqCst);
        self.shared.wake.notify_one();
    }
}

/// Room reserved in the queue for one call.
pub struct Slot<'a> {
    permit: mpsc::Permit<'a, Call>,
    queued: &'a AtomicUsize,
}

impl Slot<'_> {
    pub fn send(self, call: Call) {
        self.queued.fetch_add(1, SeqCst);
        self.permit.send(call);
    }
}

/// Create the instance (a bad version is rejected here, before it replaces anything) and
/// start its own task in `tasks`. The task ends when the version is retired and its queue
/// is empty, or on the group's signal; calls still queued then are dropped, which their
/// callers see as a fault.
pub async fn start(blueprint: Blueprint, tasks: &Tasks) -> anyhow::Result<Runner> {
    // Each instance has a breaker of its own.
    let health = Arc::new(Health::default());
    let queue = blueprint.manifest.limits.queue;
    let actor = Actor::start(blueprint, health.clone()).await?;
    let (tx, rx) = mpsc::channel(queue);
    let shared = Arc::new(Shared {
        held: Mutex::new(Held { actor, rx }),
        queued: AtomicUsize::new(0),
        wake: Notify::new(),
        retired: AtomicBool::new(false),
    });
    tasks.spawn("plugin instance", own_task(shared.clone(), tasks.signalled()));
    Ok(Runner { tx, shared, health })
}

/// The instance's own task: runs what callers queued and did not run themselves.
async fn own_task(shared: Arc<Shared>, stop: impl std::future::Future<Output = ()>) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = shared.wake.notified() => {}
            () = &mut stop => break,
        }
        // A call under way finishes (bounded by its own timeout); the signal is seen between batches.
        loop {
            shared.held.lock().await.run(&shared.queued, BATCH).await;
            if shared.queued.load(SeqCst) == 0 {
                break;
            }
            // A call counted but still being sent, or more than a batch: let others run.
            tokio::task::yield_now().await;
        }
        if shared.retired.load(SeqCst) {
            break;
        }
    }
    let held = shared.held.lock().await;
    tracing::debug!(plugin = %held.actor.name(), "plugin instance retired");
}
