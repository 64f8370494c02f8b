//! Placement strategies: which node of the pool becomes a user's home (DESIGN §4).
//!
//! The host asks [`Placement::choose_node`] only when a user has no live home (first
//! login, or their home node died); the answer is recorded and sticky while that node
//! lives. A strategy sees the pool as a [`PoolView`] and returns a node id. If it traps,
//! runs out of time, or names a node that is not an accepting node of the view, the host
//! falls back to its built-in choice, [`hash_with_bounded_load`] — so a strategy can only
//! make placement better or worse, never make logins fail.
//!
//! Implement [`Placement`] and export it with [`export_placement!`](crate::export_placement):
//!
//! ```
//! use poolxmpp_sdk::placement::{least_loaded, Placement, PoolView};
//! use poolxmpp_sdk::Config;
//!
//! struct Emptiest;
//!
//! impl Placement for Emptiest {
//!     fn init(_config: &Config) -> Result<Self, String> {
//!         Ok(Emptiest)
//!     }
//!
//!     fn choose_node(&mut self, user: &str, view: &PoolView) -> Option<String> {
//!         least_loaded(user, &view.nodes).map(|n| n.id.clone())
//!     }
//! }
//!
//! poolxmpp_sdk::export_placement!(Emptiest);
//! ```
//!
//! The helpers here are the building blocks of the shipped strategies, defined exactly as
//! the host defines them, so a strategy that falls back to hashing agrees with the host's
//! own fallback.

use std::cmp::Reverse;

use sha2::{Digest, Sha256};

pub use crate::bindings::types::{NodeView, PoolView};
use crate::config::Config;
use crate::instance;

/// A placement strategy. One value lives per instance, built by `init`; the host calls one
/// method at a time. Keep anything that must survive a reload or be seen by the other
/// nodes in [`crate::storage`], which every node of the pool shares.
pub trait Placement: Sized + 'static {
    /// Build the strategy from the manifest's `[config]`. An error rejects this version.
    fn init(config: &Config) -> Result<Self, String>;

    /// The id of the node that should serve `user` (a bare JID): one of the accepting
    /// nodes of `view`. `None` (no preference), or an id that is not an accepting node,
    /// makes the host fall back to [`hash_with_bounded_load`].
    fn choose_node(&mut self, user: &str, view: &PoolView) -> Option<String>;

    /// The set of live nodes changed. Homes already chosen stay where they are while their
    /// node lives; this is for strategies that keep per-node state.
    fn on_pool_change(&mut self, _view: &PoolView) {}
}

/// The load factor the shipped strategies use when `[config] load_factor` is unset: a node
/// may take up to 25% more than an even share before new users go elsewhere.
pub const DEFAULT_LOAD_FACTOR: f64 = 1.25;

/// `[config] load_factor` ([`DEFAULT_LOAD_FACTOR`] when unset). Below 1 no node could ever
/// be under the cap once the pool is evenly loaded, so such values are refused in `init`.
pub fn load_factor(config: &Config) -> Result<f64, String> {
    let factor = config.parse::<f64>("load_factor")?.unwrap_or(DEFAULT_LOAD_FACTOR);
    if !(factor.is_finite() && factor >= 1.0) {
        return Err(format!("config load_factor: must be a number >= 1, not {factor}"));
    }
    Ok(factor)
}

/// The rendezvous (highest-random-weight) weight of `node_id` for `user`: the first 8
/// bytes, big-endian, of SHA-256(user ‖ 0x00 ‖ node id). Identical to the host's
/// (`host/src/pool/ownership.rs`), so plugin and host rank nodes the same way; the 0x00
/// separator keeps `("ab", "c")` and `("a", "bc")` apart.
pub fn rendezvous_weight(user: &str, node_id: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(user.as_bytes());
    h.update([0]);
    h.update(node_id.as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The most sessions a node should hold after taking one more user:
/// ceil(`factor` × (sessions on accepting nodes + 1) / accepting nodes), computed in that
/// order in `f64` (the host's bounded-load fallback uses the same formula). The `+ 1`
/// counts the user being placed, so an empty pool has room. 0 when no node accepts.
pub fn load_cap(view: &PoolView, factor: f64) -> u32 {
    let (count, total) = view
        .accepting()
        .fold((0u64, 0u64), |(c, t), n| (c + 1, t + u64::from(n.sessions)));
    if count == 0 {
        return 0;
    }
    // `as` saturates for floats: an absurd factor gives u32::MAX, not a wrap.
    (factor * (total + 1) as f64 / count as f64).ceil() as u32
}

/// Consistent hashing with bounded load, the host's built-in strategy and fallback: among
/// the accepting nodes in descending [`rendezvous_weight`] order, the first with room
/// under [`load_cap`]; if none has room (possible only with `factor` < 1: otherwise the
/// least-loaded node is always under the cap), the highest-weight accepting node. `None`
/// when no node accepts. A user's favourite node does not change as other nodes come and
/// go, and a dead node's users spread evenly over the survivors.
pub fn hash_with_bounded_load(user: &str, view: &PoolView, factor: f64) -> Option<String> {
    let cap = load_cap(view, factor);
    let mut ranked: Vec<(u64, &NodeView)> = view.accepting().map(|n| (rendezvous_weight(user, &n.id), n)).collect();
    // Equal weights (practically only for duplicate ids) fall back to the id, so the
    // order never depends on the view's order.
    ranked.sort_by(|(wa, a), (wb, b)| wb.cmp(wa).then_with(|| a.id.cmp(&b.id)));
    ranked
        .iter()
        .find(|(_, n)| n.has_room(cap))
        .or(ranked.first())
        .map(|(_, n)| n.id.clone())
}

/// The accepting node of `candidates` with the fewest sessions; ties go to the higher
/// [`rendezvous_weight`], so equally loaded pools still spread users deterministically.
/// `None` when no candidate accepts.
pub fn least_loaded<'a>(user: &str, candidates: impl IntoIterator<Item = &'a NodeView>) -> Option<&'a NodeView> {
    candidates
        .into_iter()
        .filter(|n| n.accepting)
        .max_by_key(|n| least_loaded_key(user, n))
}

/// The key under which [`least_loaded`]'s choice is the maximum: fewer sessions first,
/// then higher weight. Compose it behind a strategy's own score (`(score, key)`) to break
/// that score's ties the same way.
pub fn least_loaded_key(user: &str, node: &NodeView) -> (Reverse<u32>, u64) {
    (Reverse(node.sessions), rendezvous_weight(user, &node.id))
}

impl PoolView {
    /// The nodes taking new users (not draining): the only valid answers.
    pub fn accepting(&self) -> impl Iterator<Item = &NodeView> {
        self.nodes.iter().filter(|n| n.accepting)
    }

    /// The node with this id, if it is in the view.
    pub fn node(&self, id: &str) -> Option<&NodeView> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// Whether `id` is an accepting node of the view, i.e. an answer the host will take.
    pub fn accepts(&self, id: &str) -> bool {
        self.node(id).is_some_and(|n| n.accepting)
    }
}

impl NodeView {
    /// Whether one more session keeps the node within `cap` (`sessions + 1 <= cap`).
    pub fn has_room(&self, cap: u32) -> bool {
        self.sessions < cap
    }
}

/// What the export macro calls; not part of the API.
#[doc(hidden)]
pub mod __private {
    use super::*;

    pub fn init<T: Placement>(config: Vec<(String, String)>) -> Result<(), String> {
        crate::log::install_panic_hook();
        instance::set(T::init(&Config(config))?);
        Ok(())
    }

    pub fn choose_node<T: Placement>(user: String, view: PoolView) -> Option<String> {
        // Not initialised cannot happen (the host inits first); no choice makes the host
        // fall back to its own hashing.
        instance::with(|p: &mut T| p.choose_node(&user, &view)).flatten()
    }

    pub fn on_pool_change<T: Placement>(view: PoolView) {
        instance::with(|p: &mut T| p.on_pool_change(&view));
    }
}

/// Export a [`Placement`] implementation as this component's `placement-plugin`. Use it
/// once, at the top level of a `cdylib` crate.
#[macro_export]
#[rustfmt::skip] // rustfmt does not format this body stably (`with_types_in` is not Rust syntax)
macro_rules! export_placement {
    ($plugin:ty) => {
        // Exports exist only in the component: a native build (unit tests, clippy of the
        // workspace) must not emit symbols named like `poolxmpp:plugin/...#choose-node`,
        // which native linkers reject.
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct PoolxmppPlacementExport;

            impl $crate::bindings::placement::exports::poolxmpp::plugin::placement_plugin::Guest for PoolxmppPlacementExport {
                fn init(config: $crate::bindings::types::Config) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::placement::__private::init::<$plugin>(config)
                }

                fn choose_node(user: ::std::string::String, view: $crate::placement::PoolView) -> ::std::option::Option<::std::string::String> {
                    $crate::placement::__private::choose_node::<$plugin>(user, view)
                }

                fn on_pool_change(view: $crate::placement::PoolView) {
                    $crate::placement::__private::on_pool_change::<$plugin>(view)
                }
            }

            $crate::bindings::placement::export!(PoolxmppPlacementExport with_types_in $crate::bindings::placement);
        };
    };
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::testing::{node, view};

    #[test]
    fn weight_is_the_hosts() {
        // SHA-256("alice@example.com\0n1")[..8], computed independently of this code
        // (python3: hashlib.sha256(b"alice@example.com\x00n1").digest()[:8]).
        assert_eq!(rendezvous_weight("alice@example.com", "n1"), WEIGHT_ALICE_N1);
        assert_ne!(rendezvous_weight("ab", "c"), rendezvous_weight("a", "bc"));
    }
    const WEIGHT_ALICE_N1: u64 = 0xeadb_40b8_7cc3_b976;

    #[test]
    fn cap_counts_accepting_nodes_and_the_newcomer() {
        let v = view([
            node("a", 3),
            node("b", 5),
            NodeView {
                accepting: false,
                ..node("c", 100)
            },
        ]);
        // ceil(1.25 * (8 + 1) / 2) = ceil(5.625)
        assert_eq!(load_cap(&v, 1.25), 6);
        assert_eq!(load_cap(&view([node("a", 0)]), 1.25), 2);
        assert_eq!(load_cap(&view([node("a", 1), node("b", 1)]), 1.0), 2);
        assert_eq!(load_cap(&view([]), 1.25), 0);
        assert_eq!(load_cap(&view([node("a", 1)]), f64::MAX), u32::MAX);
    }

    #[test]
    fn hashing_prefers_weight_then_room() {
        let ids = ["n1", "n2", "n3", "n4"];
        let user = "alice@example.com";
        let mut by_weight = ids.to_vec();
        by_weight.sort_by_key(|id| Reverse(rendezvous_weight(user, id)));
        let even = view(ids.map(|id| node(id, 10)));
        assert_eq!(hash_with_bounded_load(user, &even, 1.25).as_deref(), Some(by_weight[0]));
        // The favourite is full (cap = ceil(1.25 * 61 / 4) = 20): the runner-up takes it.
        let full = view(ids.map(|id| node(id, if id == by_weight[0] { 30 } else { 10 })));
        assert_eq!(load_cap(&full, 1.25), 20);
        assert_eq!(hash_with_bounded_load(user, &full, 1.25).as_deref(), Some(by_weight[1]));
        // Draining nodes are never chosen, even when they would win.
        let draining = view(ids.map(|id| NodeView {
            accepting: id != by_weight[0],
            ..node(id, 10)
        }));
        assert_eq!(
            hash_with_bounded_load(user, &draining, 1.25).as_deref(),
            Some(by_weight[1])
        );
        assert_eq!(hash_with_bounded_load(user, &view([]), 1.25), None);
        let none_accept = view([NodeView {
            accepting: false,
            ..node("n1", 0)
        }]);
        assert_eq!(hash_with_bounded_load(user, &none_accept, 1.25), None);
    }

    #[test]
    fn hashing_with_every_node_full_takes_the_favourite() {
        // With a factor >= 1 the least-loaded node always has room; below 1 every node
        // can be over the cap, and then the favourite takes the user anyway.
        let user = "bob@example.com";
        let v = view([node("a", 4), node("b", 4)]);
        assert_eq!(load_cap(&v, 0.5), 3);
        let favourite = if rendezvous_weight(user, "a") > rendezvous_weight(user, "b") {
            "a"
        } else {
            "b"
        };
        assert_eq!(hash_with_bounded_load(user, &v, 0.5).as_deref(), Some(favourite));
    }

    #[test]
    fn least_loaded_skips_draining_and_breaks_ties_by_weight() {
        let user = "carol@example.com";
        let v = view([
            node("a", 5),
            NodeView {
                accepting: false,
                ..node("b", 0)
            },
            node("c", 2),
            node("d", 2),
        ]);
        let tie_winner = if rendezvous_weight(user, "c") > rendezvous_weight(user, "d") {
            "c"
        } else {
            "d"
        };
        assert_eq!(least_loaded(user, &v.nodes).map(|n| n.id.as_str()), Some(tie_winner));
        assert!(least_loaded(user, v.nodes.iter().filter(|n| !n.accepting)).is_none());
    }

    #[test]
    fn view_lookups() {
        let v = view([
            node("a", 1),
            NodeView {
                accepting: false,
                ..node("b", 0)
            },
        ]);
        assert!(v.accepts("a"));
        assert!(!v.accepts("b"));
        assert!(!v.accepts("zz"));
        assert_eq!(v.accepting().count(), 1);
        assert!(node("a", 1).has_room(2));
        assert!(!node("a", 2).has_room(2));
    }

    #[test]
    fn load_factor_from_config() {
        assert_eq!(load_factor(&Config::default()), Ok(DEFAULT_LOAD_FACTOR));
        assert_eq!(load_factor(&Config::from([("load_factor", "2")])), Ok(2.0));
        assert!(load_factor(&Config::from([("load_factor", "0.5")])).is_err());
        assert!(load_factor(&Config::from([("load_factor", "NaN")])).is_err());
        assert!(load_factor(&Config::from([("load_factor", "lots")])).is_err());
    }
}
