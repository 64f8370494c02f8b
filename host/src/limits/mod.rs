//! Per-address and per-key limits: how many connections of one kind an address holds now
//! ([`AddressCap`]), and how many actions a key took in the current window ([`RateWindow`]).
//! Plain data, shared by the listener, c2s and the services that throttle.

pub mod register;

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Entries a table may hold before expired ones are swept, so a spray of addresses or keys
/// costs bounded memory.
const SWEEP_AT: usize = 100_000;

/// The same address whether it arrived over IPv4 or as an IPv4-mapped IPv6 address.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// Addresses the per-address caps do not apply to (`limits.unthrottled_addresses`).
#[derive(Debug, Clone, Default)]
pub struct Unthrottled(Arc<[IpAddr]>);

impl Unthrottled {
    pub fn new(addresses: &[IpAddr]) -> Self {
        Unthrottled(addresses.iter().copied().map(canonical).collect())
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&canonical(ip))
    }
}

/// At most `cap` holders per address at once (0 = unlimited). A holder is an
/// [`AddressSlot`]; dropping it frees the place.
#[derive(Clone)]
pub struct AddressCap {
    cap: usize,
    unthrottled: Unthrottled,
    held: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One place under an [`AddressCap`], released on drop.
pub struct AddressSlot {
    owner: Option<(AddressCap, IpAddr)>,
}

impl AddressCap {
    /// Places `ip` holds now.
    #[cfg(test)]
    pub fn held(&self, ip: IpAddr) -> usize {
        let held = self.held.lock().expect("address cap lock");
        held.get(&canonical(ip)).copied().unwrap_or(0)
    }

    pub fn new(cap: usize, unthrottled: Unthrottled) -> Self {
        AddressCap {
            cap,
            unthrottled,
            held: Default::default(),
        }
    }

    /// A place for `ip`, or `None` when the address already holds `cap` of them.
    pub fn enter(&self, ip: IpAddr) -> Option<AddressSlot> {
        if self.cap == 0 || self.unthrottled.contains(ip) {
            return Some(AddressSlot { owner: None });
        }
        let ip = canonical(ip);
        let mut held = self.held.lock().expect("address cap lock");
        let n = held.entry(ip).or_default();
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            owner: Some((self.clone(), ip)),
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        if let Some((cap, ip)) = self.owner.take() {
            let mut held = cap.held.lock().expect("address cap lock");
            if let Some(n) = held.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    held.remove(&ip);
                }
            }
        }
    }
}

/// At most `per_window` actions per key in a fixed window (0 = unlimited).
pub struct RateWindow<K> {
    per_window: u32,
    window: Duration,
    counts: Mutex<HashMap<K, (Instant, u32)>>,
}

impl<K: Hash + Eq> RateWindow<K> {
    pub fn new(per_window: u32, window: Duration) -> Self {
        RateWindow {
            per_window,
            window,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Count one action of `key`; `false` (and nothing counted) when its window is full.
    pub fn take(&self, key: K) -> bool {
        if self.per_window == 0 {
            return true;
        }
        let mut counts = self.counts.lock().expect("rate window lock");
        if counts.len() >= SWEEP_AT {
            let window = self.window;
            counts.retain(|_, (start, _)| start.elapsed() < window);
        }
        let entry = counts.entry(key).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= self.window {
            *entry = (Instant::now(), 0);
        }
        if entry.1 >= self.per_window {
            return false;
        }
        entry.1 += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_cap_counts_holders_and_frees_on_drop() {
        let cap = AddressCap::new(2, Unthrottled::new(&["127.0.0.1".parse().unwrap()]));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let a = cap.enter(ip).unwrap();
        let _b = cap.enter(ip).unwrap();
        assert!(cap.enter(ip).is_none());
        // The IPv4-mapped form is the same address.
        assert!(cap.enter("::ffff:192.0.2.1".parse().unwrap()).is_none());
        assert!(cap.enter("192.0.2.2".parse().unwrap()).is_some());
        drop(a);
        assert!(cap.enter(ip).is_some());
        // Unthrottled addresses are never refused.
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let held: Vec<_> = (0..5).map(|_| cap.enter(local).unwrap()).collect();
        assert_eq!(held.len(), 5);
        assert_eq!(cap.held(local), 0);
    }

    #[test]
    fn rate_window_refuses_past_budget() {
        let w = RateWindow::new(2, Duration::from_secs(60));
        assert!(w.take("a"));
        assert!(w.take("a"));
        assert!(!w.take("a"));
        assert!(w.take("b"));
        let unlimited = RateWindow::new(0, Duration::from_secs(60));
        assert!((0..100).all(|_| unlimited.take("a")));
    }
}
