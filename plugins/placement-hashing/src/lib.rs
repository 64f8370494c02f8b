//! Consistent hashing with bounded load, as a placement plugin: the same choice the host
//! makes when no strategy is configured, so selecting it changes nothing but proves the
//! plugin path, and it is the starting point for a custom strategy (sdk/README.md shows
//! this file as its worked example; a test keeps the two identical).
//!
//! `[config] load_factor` (default 1.25): how far above an even share of the sessions a
//! node may fill before new users spill over to their next-ranked node.

use poolxmpp_sdk::placement::{self, hash_with_bounded_load, Placement, PoolView};
use poolxmpp_sdk::Config;

pub struct Hashing {
    load_factor: f64,
}

impl Placement for Hashing {
    fn init(config: &Config) -> Result<Self, String> {
        let load_factor = placement::load_factor(config)?; // refuses values below 1
        Ok(Hashing { load_factor })
    }

    fn choose_node(&mut self, user: &str, view: &PoolView) -> Option<String> {
        match hash_with_bounded_load(user, view, self.load_factor) {
            Some(node) => {
                poolxmpp_sdk::debug!("placing {user} on {node} (hashing, load factor {})", self.load_factor);
                Some(node)
            }
            None => {
                poolxmpp_sdk::debug!("no accepting node for {user}; leaving it to the host");
                None // no preference: the host falls back to its own choice
            }
        }
    }
}

poolxmpp_sdk::export_placement!(Hashing);

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use poolxmpp_sdk::host::LogLevel;
    use poolxmpp_sdk::placement::{load_cap, rendezvous_weight, NodeView};
    use poolxmpp_sdk::testing::{self, node, view};

    fn hashing(factor: &str) -> Hashing {
        Hashing::init(&Config::from([("load_factor", factor)])).unwrap()
    }

    /// `ids` in descending rendezvous weight for `user`: the order hashing tries them in.
    fn ranked(user: &str, ids: &[&'static str]) -> Vec<&'static str> {
        let mut ids = ids.to_vec();
        ids.sort_by_key(|id| std::cmp::Reverse(rendezvous_weight(user, id)));
        ids
    }

    #[test]
    fn evenly_loaded_pool_gives_the_favourite() {
        testing::reset();
        let ids = ["n1", "n2", "n3"];
        let v = view(ids.map(|id| node(id, 7)));
        for user in ["a@l", "b@l", "c@l", "d@l"] {
            assert_eq!(
                hashing("1.25").choose_node(user, &v).unwrap_or_default(),
                ranked(user, &ids)[0]
            );
        }
        assert!(testing::logs()
            .iter()
            .any(|(level, line)| *level == LogLevel::Debug && line.starts_with("placing a@l on ")));
    }

    #[test]
    fn a_full_favourite_spills_to_the_runner_up() {
        testing::reset();
        let ids = ["n1", "n2", "n3"];
        let order = ranked("a@l", &ids);
        let v = view(ids.map(|id| node(id, if id == order[0] { 20 } else { 5 })));
        let cap = load_cap(&v, 1.25); // ceil(1.25 * 31 / 3) = 13
        assert!(!v.node(order[0]).unwrap().has_room(cap));
        assert_eq!(hashing("1.25").choose_node("a@l", &v).unwrap_or_default(), order[1]);
        // A generous factor lets the favourite keep it.
        assert_eq!(hashing("3").choose_node("a@l", &v).unwrap_or_default(), order[0]);
    }

    #[test]
    fn draining_nodes_are_never_chosen() {
        testing::reset();
        let ids = ["n1", "n2"];
        let order = ranked("a@l", &ids);
        let v = view(ids.map(|id| NodeView {
            accepting: id != order[0],
            ..node(id, 0)
        }));
        assert_eq!(hashing("1.25").choose_node("a@l", &v).unwrap_or_default(), order[1]);
        let none = view([NodeView {
            accepting: false,
            ..node("n1", 0)
        }]);
        assert_eq!(hashing("1.25").choose_node("a@l", &none).unwrap_or_default(), "");
    }

    #[test]
    fn config_is_checked() {
        assert_eq!(Hashing::init(&Config::default()).unwrap().load_factor, 1.25);
        assert!(Hashing::init(&Config::from([("load_factor", "0.9")])).is_err());
    }

    #[test]
    fn the_guide_shows_this_code() {
        // Everything after the module docs and before the tests is the guide's example.
        let code: String = include_str!("lib.rs")
            .lines()
            .skip_while(|l| l.starts_with("//!") || l.is_empty())
            .take_while(|l| !l.starts_with("#[cfg(all(test"))
            .map(|l| format!("{l}\n"))
            .collect();
        let guide = include_str!("../../../sdk/README.md");
        assert!(
            guide.contains(code.trim()),
            "sdk/README.md (Writing a placement strategy) must show plugins/placement-hashing/src/lib.rs:\n{code}"
        );
    }
}
