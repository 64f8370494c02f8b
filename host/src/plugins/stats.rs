//! Per-plugin counters and a call-latency histogram, read by `poolxmpp plugin list`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, in microseconds; the last bucket is open.
pub const LATENCY_BUCKETS_US: [u64; 10] = [5, 10, 25, 50, 100, 250, 1_000, 10_000, 100_000, 1_000_000];

#[derive(Default)]
pub struct PluginStats {
    pub calls: AtomicU64,
    pub errors: AtomicU64,
    pub traps: AtomicU64,
    pub timeouts: AtomicU64,
    pub refused: AtomicU64,
    pub sent: AtomicU64,
    pub reloads: AtomicU64,
    /// Filter points at which a filter with a declared interest set was not consulted
    /// (the user concerned has no rules): counted on every routed stanza, so striped.
    pub skipped: Striped,
    latency: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    custom: Mutex<BTreeMap<String, f64>>,
}

impl PluginStats {
    pub fn record_latency(&self, d: Duration) {
        let us = d.as_micros() as u64;
        let i = LATENCY_BUCKETS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.latency[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn custom_increment(&self, name: &str, delta: u64) {
        let mut c = self.custom.lock().expect("stats lock");
        if c.len() < 256 || c.contains_key(name) {
            *c.entry(name.to_string()).or_default() += delta as f64;
        }
    }

    pub fn custom_observe(&self, name: &str, value: f64) {
        // Kept as a running sum and count; enough for rates and means.
        self.custom_increment(&format!("{name}.count"), 1);
        let mut c = self.custom.lock().expect("stats lock");
        if c.len() < 256 || c.contains_key(name) {
            *c.entry(format!("{name}.sum")).or_default() += value;
        }
    }

    /// A JSON snapshot for the admin socket.
    pub fn snapshot(&self) -> serde_json::Value {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut buckets = serde_json::Map::new();
        for (i, count) in self.latency.iter().enumerate() {
            let label = match LATENCY_BUCKETS_US.get(i) {
                Some(b) => format!("le_{b}us"),
                None => "inf".to_string(),
            };
            buckets.insert(label, load(count).into());
        }
        serde_json::json!({
            "calls": load(&self.calls),
            "errors": load(&self.errors),
            "traps": load(&self.traps),
            "timeouts": load(&self.timeouts),
            "refused": load(&self.refused),
            "sent": load(&self.sent),
            "reloads": load(&self.reloads),
            "skipped": self.skipped.sum(),
            "latency": buckets,
            "custom": *self.custom.lock().expect("stats lock"),
        })
    }
}

/// A counter bumped from every worker thread on the hot path: one cache line per stripe,
/// a thread keeps to its stripe, so increments do not bounce a shared line between cores.
#[derive(Default)]
pub struct Striped {
    stripes: [Stripe; STRIPES],
}

const STRIPES: usize = 8;

#[derive(Default)]
#[repr(align(128))] // a cache line and its adjacent-line prefetch
struct Stripe(AtomicU64);

impl Striped {
    pub fn add(&self, n: u64) {
        self.stripes[stripe()].0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn sum(&self) -> u64 {
        self.stripes.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

/// This thread's stripe: threads are dealt stripes in turn as they first count.
fn stripe() -> usize {
    use std::sync::atomic::AtomicUsize;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    STRIPE.with(|s| *s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn striped_counts_add_up_across_threads() {
        let c = std::sync::Arc::new(Striped::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || (0..1000).for_each(|_| c.add(1)))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(c.sum(), 4000);
    }
}
