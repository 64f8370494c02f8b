//! Tracked tasks and the shutdown signal they end on (mini-redis' `shutdown.rs` pattern).
//!
//! A [`Tasks`] group hands out one signal and spawns tasks that each hold a clone of one
//! `mpsc::Sender`. The group's [`Drain`], owned by whoever decides when to stop (the
//! daemon), raises the signal, drops the group's own sender and waits on the receiver:
//! `recv()` returning `None` proves every tracked task has ended — no polling of a counter
//! and no `abort()`. Each task also counts under a *kind* (`"c2s"`, `"pool mesh"`…) so a
//! drain that runs out of its grace period can say which work did not finish.
//!
//! The signal is a `watch` rather than mini-redis' `broadcast`: a task that subscribes
//! after the signal was raised (a connection accepted at that instant, a link dialled by
//! a loop that is ending) still sees it, where a late `broadcast` receiver would wait
//! forever.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// A group of tracked tasks sharing one shutdown signal. Cheap to clone: every clone
/// spawns into, and signals, the same group.
#[derive(Clone)]
pub struct Tasks {
    inner: Arc<Inner>,
}

struct Inner {
    signal: watch::Sender<bool>,
    /// The group's own sender, held until the drain starts so the group is not "finished"
    /// before its first task. Tasks spawned later still join while any task runs.
    root: Mutex<Option<mpsc::Sender<Infallible>>>,
    weak: mpsc::WeakSender<Infallible>,
    /// Running tasks per kind, for the report of what outlived the grace period.
    running: Mutex<BTreeMap<&'static str, usize>>,
}

/// The owner's end of a group: raises the signal and waits for the tasks to end.
pub struct Drain {
    inner: Arc<Inner>,
    done: mpsc::Receiver<Infallible>,
}

/// Tasks still running when a drain's grace period ran out, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfinished(pub BTreeMap<&'static str, usize>);

impl std::fmt::Display for Unfinished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for (kind, n) in &self.0 {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{kind} ×{n}")?;
        }
        Ok(())
    }
}

impl Tasks {
    /// A new group and its drain.
    pub fn new() -> (Tasks, Drain) {
        let (tx, done) = mpsc::channel(1);
        let weak = tx.downgrade();
        let inner = Arc::new(Inner {
            signal: watch::channel(false).0,
            root: Mutex::new(Some(tx)),
            weak,
            running: Mutex::default(),
        });
        (Tasks { inner: inner.clone() }, Drain { inner, done })
    }

    /// Run `future` as a tracked task of this group, counted under `kind` until it ends
    /// (finishes, panics or is dropped). The future must itself end on [`Tasks::signalled`]
    /// (or because what it serves ends) for the drain to finish.
    pub fn spawn<F>(&self, kind: &'static str, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        tokio::spawn(Tracked {
            future,
            _guard: self.guard(kind),
        })
    }

    /// Run `future` as a tracked task until it ends or the signal is raised, whichever
    /// comes first; on the signal it is dropped at its current await point (mini-redis'
    /// `select!` on `server.run()` and the shutdown). Only for loops whose work may stop
    /// between any two awaits without leaving anything half done (a heartbeat, a poll);
    /// work that must finish, or say goodbye, awaits [`Tasks::signalled`] itself.
    pub fn spawn_until_signal<F>(&self, kind: &'static str, future: F) -> JoinHandle<Option<F::Output>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let stop = self.signalled();
        self.spawn(kind, async move {
            tokio::select! {
                out = future => Some(out),
                () = stop => None,
            }
        })
    }

    /// The signal as a receiver (what `c2s::Frontend.shutdown` holds): `true` once shutting down.
    pub fn receiver(&self) -> watch::Receiver<bool> {
        self.inner.signal.subscribe()
    }

    /// Has the signal been raised?
    pub fn is_shutdown(&self) -> bool {
        *self.inner.signal.borrow()
    }

    /// Resolves once the signal is raised (at once if it already was). Owns what it needs,
    /// so it can sit in a `select!` beside borrowed futures.
    pub fn signalled(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.receiver();
        async move {
            // An error means the group is gone, which is a shutdown too.
            let _ = rx.wait_for(|down| *down).await;
        }
    }

    fn guard(&self, kind: &'static str) -> Guard {
        let sender = self
            .inner
            .root
            .lock()
            .expect("tasks lock")
            .clone()
            .or_else(|| self.inner.weak.upgrade());
        if sender.is_none() {
            // The drain already saw every task end: this one runs untracked while the
            // process exits.
            tracing::debug!(kind, "task started after its group finished draining");
        }
        *self.inner.running.lock().expect("tasks lock").entry(kind).or_default() += 1;
        Guard {
            inner: self.inner.clone(),
            kind,
            _sender: sender,
        }
    }
}

/// Resolves once the signal `rx` watches is raised. Borrows a receiver the caller keeps
/// (from [`Tasks::receiver`]), so a long-lived loop subscribes once, not per wait.
pub async fn until_shutdown(rx: &mut watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

// Held by a running task: its sender keeps the drain waiting, its kind is counted.
pin_project_lite::pin_project! {
    /// A task's future beside its guard. Not an `async move { future.await }`: rustc keeps
    /// a captured future twice in such a block's state (the capture and the await), which
    /// doubled every connection task's allocation (~35 KiB per idle client).
    struct Tracked<F> {
        #[pin]
        future: F,
        _guard: Guard,
    }
}

impl<F: Future> Future for Tracked<F> {
    type Output = F::Output;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<F::Output> {
        self.project().future.poll(cx)
    }
}

struct Guard {
    inner: Arc<Inner>,
    kind: &'static str,
    _sender: Option<mpsc::Sender<Infallible>>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut running = self.inner.running.lock().expect("tasks lock");
        if let Some(n) = running.get_mut(self.kind) {
            *n -= 1;
            if *n == 0 {
                running.remove(self.kind);
            }
        }
    }
}

impl Drain {
    /// Raise the group's signal: every task awaiting it starts ending.
    pub fn signal(&self) {
        self.inner.signal.send_replace(true);
    }

    /// Raise the signal (if not yet) and wait until every tracked task has ended, at most
    /// `grace`. On time-out, says which kinds of task are still running; they are left to
    /// end with the runtime, never aborted here.
    pub async fn wait(mut self, grace: Duration) -> Result<(), Unfinished> {
        self.signal();
        drop(self.inner.root.lock().expect("tasks lock").take());
        match tokio::time::timeout(grace, self.done.recv()).await {
            Ok(None) => Ok(()),
            Ok(Some(never)) => match never {},
            Err(_) => Err(Unfinished(self.inner.running.lock().expect("tasks lock").clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_waits_for_every_task_to_end_on_the_signal() {
        let (tasks, drain) = Tasks::new();
        let ended = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for _ in 0..3 {
            let (stop, ended) = (tasks.signalled(), ended.clone());
            tasks.spawn("loop", async move {
                stop.await;
                // Work after the signal (a goodbye on the wire) is waited for too.
                tokio::time::sleep(Duration::from_millis(20)).await;
                ended.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
        assert!(!tasks.is_shutdown());
        drain.wait(Duration::from_secs(5)).await.expect("all ended");
        assert_eq!(ended.load(std::sync::atomic::Ordering::SeqCst), 3);
        assert!(tasks.is_shutdown());
    }

    #[tokio::test]
    async fn a_group_with_no_tasks_drains_at_once() {
        let (_tasks, drain) = Tasks::new();
        drain
            .wait(Duration::from_millis(100))
            .await
            .expect("nothing to wait for");
    }

    #[tokio::test]
    async fn a_task_spawned_by_a_running_task_during_the_drain_is_waited_for() {
        let (tasks, drain) = Tasks::new();
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let (finished_tx, finished) = tokio::sync::oneshot::channel::<()>();
        let inner = tasks.clone();
        tasks.spawn("parent", async move {
            inner.signalled().await;
            // Subscribing after the signal still sees it (a watch, not a broadcast).
            let stop = inner.signalled();
            inner.spawn("child", async move {
                stop.await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = finished_tx.send(());
            });
            let _ = started_tx.send(());
        });
        drain.wait(Duration::from_secs(5)).await.expect("both ended");
        started.await.expect("the child was spawned");
        // The drain returned only after the child, spawned during it, had finished.
        assert!(finished.await.is_ok());
    }

    #[tokio::test]
    async fn a_drain_that_times_out_names_what_is_still_running() {
        let (tasks, drain) = Tasks::new();
        let stop = tasks.signalled();
        tasks.spawn("polite", stop);
        let (_hold, stuck) = tokio::sync::oneshot::channel::<()>();
        tasks.spawn("stuck", stuck);
        let (_hold2, stuck2) = tokio::sync::oneshot::channel::<()>();
        tasks.spawn("stuck", stuck2);
        let unfinished = drain.wait(Duration::from_millis(100)).await.expect_err("two never end");
        assert_eq!(unfinished.0, BTreeMap::from([("stuck", 2)]));
        assert_eq!(unfinished.to_string(), "stuck ×2");
    }

    #[tokio::test]
    async fn a_loop_spawned_until_the_signal_ends_on_it() {
        let (tasks, drain) = Tasks::new();
        let forever = tasks.spawn_until_signal("heartbeat", async {
            let mut ticker = tokio::time::interval(Duration::from_millis(5));
            loop {
                ticker.tick().await;
            }
        });
        let finite = tasks.spawn_until_signal("quick", async { 7 });
        assert_eq!(finite.await.expect("ran"), Some(7));
        drain.wait(Duration::from_secs(5)).await.expect("the loop ended");
        assert_eq!(forever.await.expect("ran"), None::<()>);
    }

    #[tokio::test]
    async fn a_panicking_task_counts_as_ended() {
        let (tasks, drain) = Tasks::new();
        let handle = tasks.spawn("doomed", async { panic!("on purpose") });
        assert!(handle.await.is_err());
        drain
            .wait(Duration::from_millis(100))
            .await
            .expect("the panic ended it");
    }
}
